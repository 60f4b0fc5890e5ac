// Transports in real headless Chromium: behind a real nginx that refuses WebSocket
// upgrades (it drops Upgrade/Connection and keeps its default response buffering, as
// proxies in the wild do) the page goes live over Server-Sent Events and resumes across
// the switch with nothing lost or doubled; talking to a node directly, Chromium
// negotiates permessage-deflate with the page.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  freePort, launchBrowser, publish, sel, sleep, startGateway, stop, trackProblems,
  waitForChildren, waitForStatus, waitForText,
} from '../lib/harness.mjs';

const NGINX = ['/usr/sbin/nginx', '/usr/bin/nginx'].find((p) => fs.existsSync(p)) || 'nginx';

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { if (browser) await browser.close(); });

/** nginx on `port` in front of `upstream`; `refuseUpgrades`: drop Upgrade/Connection. */
async function startNginx(port, upstream, refuseUpgrades) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dash-nginx-'));
  // workers run as nobody when started as root: they must read the prefix
  fs.chmodSync(dir, 0o755);
  const upgrade = refuseUpgrades
    // what an upgrade-refusing proxy does: the hop-by-hop headers never reach the node
    ? 'proxy_set_header Upgrade ""; proxy_set_header Connection "";'
    : 'proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection "upgrade";';
  fs.writeFileSync(path.join(dir, 'nginx.conf'), `
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fcgi; uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://127.0.0.1:${upstream};
      proxy_http_version 1.1;
      ${upgrade}
      proxy_read_timeout 75s;
    }
  }
}`);
  const child = spawn(NGINX, ['-p', `${dir}/`, '-c', `${dir}/nginx.conf`, '-g', 'daemon off;'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  child.dir = dir;
  const deadline = Date.now() + 10000;
  for (;;) {
    try {
      const r = await fetch(`http://127.0.0.1:${port}/healthz`);
      if (r.status === 200) break;
    } catch { /* not up yet */ }
    if (Date.now() > deadline) {
      throw new Error(`nginx did not come up: ${fs.readFileSync(path.join(dir, 'error.log'), 'utf8')}`);
    }
    await sleep(100);
  }
  return child;
}

async function stopNginx(child) {
  if (child.exitCode === null) {
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await exited;
  }
  fs.rmSync(child.dir, { recursive: true, force: true });
}

const transportOf = (page) => page.getAttribute(sel.indicator, 'data-transport');

async function waitForTransport(page, transport, timeoutMs = 15000) {
  await page.waitForFunction(
    ([s, t]) => document.querySelector(s)?.getAttribute('data-transport') === t,
    [sel.indicator, transport], { timeout: timeoutMs },
  );
}

test('behind a proxy that refuses upgrades the page goes live over SSE and loses nothing at the switch', async (t) => {
  const gw = await startGateway();
  t.after(() => stop(gw));
  const port = await freePort();
  let nginx = await startNginx(port, gw.port, false);
  t.after(() => stopNginx(nginx));

  const page = await browser.context.newPage();
  t.after(() => page.close());
  await page.goto(`http://127.0.0.1:${port}/`);
  await waitForStatus(page, 'connected');
  assert.equal(await transportOf(page), 'websocket', 'upgrades pass: a WebSocket');
  await publish(gw, 'alert', { alert_id: 'a-1', tutor_id: 't-1', severity: 'critical', message: 'one' });
  await waitForText(page, sel.alertBadge, '1');

  // The network changes: the proxy now refuses upgrades. Events published meanwhile
  // must reach the page once it is back, over SSE.
  await stopNginx(nginx);
  await waitForStatus(page, 'reconnecting');
  await publish(gw, 'alert', { alert_id: 'a-2', tutor_id: 't-2', severity: 'warning', message: 'two' });
  await publish(gw, 'intervention', { id: 'i-1', tutor_id: 't-2', status: 'pending', title: 'call' });
  nginx = await startNginx(port, gw.port, true);
  const switched = Date.now();
  await waitForStatus(page, 'connected', 30000);
  await waitForTransport(page, 'sse');
  console.log(`live over SSE ${Date.now() - switched} ms after the refusing proxy came up`);
  await waitForText(page, sel.alertBadge, '2');
  await waitForChildren(page, sel.queue, 1);

  // live events arrive over the stream at once, through nginx's default buffering
  const sent = Date.now();
  await publish(gw, 'alert', { alert_id: 'a-3', tutor_id: 't-3', severity: 'warning', message: 'three' });
  await waitForText(page, sel.alertBadge, '3', 3000);
  console.log(`a live event over SSE through nginx: ${Date.now() - sent} ms`);
  await sleep(1000);
  assert.equal((await page.textContent(sel.alertBadge)).trim(), '3', 'each alert once');
  assert.equal(await page.locator(`${sel.queue} > *`).count(), 1, 'the intervention once');

  // a fresh page behind the refusing proxy goes live over SSE within seconds
  const fresh = await browser.context.newPage();
  t.after(() => fresh.close());
  const problems = trackProblems(fresh, [/WebSocket connection to/]);
  const opened = Date.now();
  await fresh.goto(`http://127.0.0.1:${port}/`);
  await waitForStatus(fresh, 'connected', 10000);
  await waitForTransport(fresh, 'sse');
  const took = Date.now() - opened;
  assert.ok(took < 5000, `live over SSE in ${took} ms`);
  await publish(gw, 'alert', { alert_id: 'a-4', tutor_id: 't-4', severity: 'warning', message: 'four' });
  await waitForText(fresh, sel.alertBadge, '1');
  assert.deepEqual(problems.filter((p) => !/\/ws\/dashboard/.test(p)), [], 'nothing else failed');
});

test('Chromium negotiates permessage-deflate with the page, and large events arrive intact', async (t) => {
  const gw = await startGateway();
  t.after(() => stop(gw));
  const page = await browser.context.newPage();
  t.after(() => page.close());
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Network.enable');
  const handshakes = [];
  const frames = [];
  cdp.on('Network.webSocketHandshakeResponseReceived', (e) => handshakes.push(e.response));
  cdp.on('Network.webSocketFrameReceived', (e) => frames.push(e.response.payloadData));
  await page.goto(`${gw.base}/`);
  await waitForStatus(page, 'connected');
  assert.equal(await transportOf(page), 'websocket');
  assert.equal(handshakes.length, 1);
  const headers = Object.fromEntries(
    Object.entries(handshakes[0].headers).map(([k, v]) => [k.toLowerCase(), v]),
  );
  assert.equal(
    headers['sec-websocket-extensions'],
    'permessage-deflate; server_no_context_takeover; client_no_context_takeover',
  );

  const data = {
    tutor_id: 'tutor-00042', window: '7day', sessions_completed: 42, avg_rating: 4.72,
    first_session_success_rate: 0.81, reschedule_rate: 0.07, no_show_count: 1,
    engagement_score: 0.86, performance_tier: 'Exemplary', churn_risk: 'low',
    notes: 'steady week; '.repeat(40),
  };
  await publish(gw, 'metrics_update', data);
  await page.waitForFunction(() => document.body.textContent.includes('tutor-00042'), null, { timeout: 5000 });
  const row = frames.map((f) => JSON.parse(f)).find((m) => m.type === 'metrics_update');
  assert.deepEqual(row.data, data, 'inflated by the browser to the same envelope');
  const metrics = await (await fetch(`${gw.base}/metrics`)).text();
  assert.match(metrics, /gateway_connections_opened_total\{transport="websocket_deflate"\} 1/);
});
