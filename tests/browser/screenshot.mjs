#!/usr/bin/env node
// Saves a 1366x900 PNG of the dashboard with live demo data (for the README).
//
//   node screenshot.mjs OUT.png                 # starts `gateway --demo` on a free port itself
//   node screenshot.mjs OUT.png --url URL       # or shoots an already running node
//   node screenshot.mjs OUT.png --wait-ms 8000  # how long demo data flows first (default 30000;
//                                               # the demo only alerts once tutors drift)
import path from 'node:path';
import { launchBrowser, startGateway, stop, sleep, waitForStatus } from './lib/harness.mjs';

const args = process.argv.slice(2);
const out = args.find((a, i) => !a.startsWith('--') && !(args[i - 1] || '').startsWith('--'));
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] ? args[i + 1] : dflt;
};
if (!out) {
  console.error('usage: node screenshot.mjs OUT.png [--url http://127.0.0.1:8000/] [--wait-ms 30000]');
  process.exit(2);
}

let gateway = null;
let browser = null;
try {
  let url = opt('--url', null);
  if (!url) {
    gateway = await startGateway({ args: ['--demo'] });
    url = `${gateway.base}/`;
  }
  browser = await launchBrowser();
  const page = await browser.context.newPage();
  await page.setViewportSize({ width: 1366, height: 900 });
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  await page.goto(url);
  await waitForStatus(page, 'connected', 20000);
  await sleep(Number(opt('--wait-ms', 30000)));
  await page.screenshot({ path: path.resolve(out), fullPage: false });
  console.log(`saved ${path.resolve(out)}`);
  if (errors.length) console.warn(`page reported errors:\n  ${errors.join('\n  ')}`);
} finally {
  if (browser) await browser.close();
  if (gateway) await stop(gateway);
}
