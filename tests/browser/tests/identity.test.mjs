// CORS_ORIGINS and the node's own page, in real headless Chromium: with CORS_ORIGINS set
// to some other site (and a token required), the page the node serves itself still
// connects and goes live, while a page from another origin is refused (403).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import {
  launchBrowser, publish, sel, startGateway, stop, trackProblems, waitForStatus, waitForText,
} from '../lib/harness.mjs';

const SECRET = 'browser-identity-secret';
const b64url = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
function mint(claims) {
  const head = `${b64url({ alg: 'HS256', typ: 'JWT' })}.${b64url(claims)}`;
  return `${head}.${crypto.createHmac('sha256', SECRET).update(head).digest('base64url')}`;
}

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { if (browser) await browser.close(); });

test("with CORS_ORIGINS set, the node's own page connects and a foreign page is refused", async (t) => {
  const env = { CORS_ORIGINS: 'https://ops.example.com', AUTH_JWT_SECRET: SECRET };
  const gw = await startGateway({ env });
  t.after(() => stop(gw));
  const other = await startGateway({ env });
  t.after(() => stop(other));
  const token = mint({ sub: 'ana', exp: Date.now() / 1000 + 600 });

  const page = await browser.context.newPage();
  t.after(() => page.close());
  const problems = trackProblems(page);
  await page.goto(`${gw.base}/?token=${token}`);
  await waitForStatus(page, 'connected');
  await publish(gw, 'analytics_update', { total_tutors: 31 });
  await waitForText(page, sel.totalTutors, '31');
  assert.deepEqual(problems, [], 'no 403, no console errors');

  // A page served by another node (another origin: another port) may not open it.
  const foreign = await browser.context.newPage();
  t.after(() => foreign.close());
  await foreign.goto(`${other.base}/?token=${token}`);
  const outcome = await foreign.evaluate((url) => new Promise((resolve) => {
    const ws = new WebSocket(url);
    ws.onopen = () => { ws.close(); resolve('open'); };
    ws.onclose = () => resolve('refused');
  }), `ws://127.0.0.1:${gw.port}/ws/dashboard?token=${token}`);
  assert.equal(outcome, 'refused');
  const metrics = await (await fetch(`${gw.base}/metrics`)).text();
  assert.match(metrics, /gateway_handshakes_rejected_total\{reason="origin"\} 1/);
  // logged once, naming the setting to change
  const lines = gw.output().split('\n').filter((l) => l.includes('not in CORS_ORIGINS'));
  assert.equal(lines.length, 1, gw.output());
  assert.match(lines[0], new RegExp(`127\\.0\\.0\\.1:${other.port}`));
});
