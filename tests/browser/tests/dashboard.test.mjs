// The dashboard page in real headless Chromium against a real gateway node
// (in-process bus): it connects, renders what /api/publish sends, and gives up
// after 10 failed reconnection attempts with a working retry button.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import {
  launchBrowser, publish, sel, sleep, startGateway, stop, trackProblems,
  waitForChildren, waitForStatus, waitForText,
} from '../lib/harness.mjs';

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { if (browser) await browser.close(); });

// one tab per test, in the shared browser; each test closes its own
const newPage = () => browser.context.newPage();
// what failing WebSocket handshakes and header polls log while a node is down
// (and, with the WebSocket failing before it opens, the page's SSE fallback attempts)
const OUTAGE_NOISE = [/WebSocket connection to/, /ERR_CONNECTION_REFUSED/, /\/ws\/status/, /\/sse\/dashboard/];

test('the page and its assets are served; it connects with no console or page errors', async (t) => {
  const gw = await startGateway();
  t.after(() => stop(gw));

  // the four embedded assets, with types a browser accepts
  const assets = {
    '/': /^text\/html/,
    '/assets/dashboard.css': /^text\/css/,
    '/assets/ws-client.js': /^(text|application)\/(javascript|ecmascript)/,
    '/assets/dashboard.js': /^(text|application)\/(javascript|ecmascript)/,
  };
  for (const [route, type] of Object.entries({ ...assets, '/dashboard': /^text\/html/ })) {
    const r = await fetch(gw.base + route);
    assert.equal(r.status, 200, `GET ${route}`);
    assert.match(r.headers.get('content-type') || '', type, `content-type of ${route}`);
    // the page's URL may carry ?token=: no Referer may copy it anywhere
    assert.equal(r.headers.get('referrer-policy'), 'no-referrer', `Referrer-Policy of ${route}`);
    assert.ok((await r.text()).length > 100, `${route} has a body`);
  }

  const page = await newPage();
  t.after(() => page.close());
  const problems = trackProblems(page);
  await page.goto(`${gw.base}/`);

  await waitForStatus(page, 'connected');
  // nothing published yet: the initial analytics_update is {} and the tiles show a dash
  await waitForText(page, sel.totalTutors, '–');
  assert.equal((await page.textContent(sel.alertBadge)).trim(), '0');
  assert.equal(await page.locator(`${sel.queue} > *`).count(), 0);
  assert.equal(await page.isVisible(sel.retry), false, 'retry button hidden while connected');
  // the stylesheet applied (dark background), i.e. it was really served and parsed
  const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  assert.equal(bg, 'rgb(13, 17, 23)');
  await sleep(1000);
  assert.deepEqual(problems, [], 'no console errors, page errors or failed requests');
});

test('analytics, alerts, interventions and metrics published through /api/publish appear', async (t) => {
  const gw = await startGateway();
  t.after(() => stop(gw));
  const page = await newPage();
  t.after(() => page.close());
  const problems = trackProblems(page);
  // a fast heartbeat, to check that the server's pong is not taken for analytics
  await page.goto(`${gw.base}/?heartbeat_ms=300`);
  await waitForStatus(page, 'connected');

  await publish(gw, 'analytics_update', {
    total_tutors: 24, active_tutors: 17, sessions_in_progress: 41, avg_satisfaction: 4.52,
    avg_response_time_ms: 910, alerts_last_hour: 6, open_interventions: 3,
  });
  await waitForText(page, sel.totalTutors, '24');
  await waitForText(page, '[data-testid="active-tutors"]', '17');
  await waitForText(page, '[data-testid="avg-satisfaction"]', '4.52');

  for (let i = 1; i <= 3; i++) {
    await publish(gw, 'alert', {
      alert_id: `a-${i}`, tutor_id: 't-07', severity: i === 1 ? 'critical' : 'warning',
      kind: 'response_time', message: `<img src=x onerror="window.__xss=1"> alert ${i}`,
    });
  }
  await waitForText(page, sel.alertBadge, '3');

  await publish(gw, 'intervention', {
    intervention_id: 'i-1', tutor_id: 't-07', action: 'reassign_session', priority: 'high',
    reason: 'Student waiting', status: 'pending',
  });
  await publish(gw, 'intervention', { intervention_id: 'i-2', tutor_id: 't-03' }); // fields missing
  await waitForChildren(page, sel.queue, 2);

  await publish(gw, 'metrics_update', {
    tutor_id: 't-07', name: 'Ada Lovelace', subject: 'Mathematics', active_sessions: 3,
    avg_response_time_ms: 840, satisfaction_score: 4.6, sessions_completed: 57, status: 'online',
  });
  await publish(gw, 'metrics_update', { tutor_id: 't-07', active_sessions: 5, status: 'busy' });
  await publish(gw, 'metrics_update', { tutor_id: 't-08' });
  await page.waitForFunction(() => {
    const rows = document.querySelectorAll('[data-testid="tutor-table"] tr');
    const ada = document.querySelector('[data-tutor-id="t-07"]');
    return rows.length === 2 && ada && /Ada Lovelace/.test(ada.textContent) && /busy/.test(ada.textContent);
  }, null, { timeout: 10000 });

  // text is escaped, never parsed as HTML
  const feedText = await page.textContent('[data-testid="alert-feed"]');
  assert.match(feedText, /<img src=x onerror=/);
  assert.equal(await page.evaluate(() => window.__xss), undefined);
  assert.equal(await page.locator('[data-testid="alert-feed"] img').count(), 0);

  // several heartbeats later the pong replies have not blanked the analytics
  await sleep(1200);
  assert.equal((await page.textContent(sel.totalTutors)).trim(), '24');
  assert.equal((await page.textContent(sel.alertBadge)).trim(), '3');
  assert.equal(await page.evaluate(() => window.dashboard.service.stats.duplicates), 0);
  assert.deepEqual(problems, []);
});

test('after 10 failed reconnection attempts the retry button appears and works', async (t) => {
  let gw = await startGateway();
  const port = gw.port;
  t.after(() => stop(gw));
  const page = await newPage();
  t.after(() => page.close());
  const problems = trackProblems(page, OUTAGE_NOISE);
  await page.goto(`${gw.base}/?backoff_ms=20&backoff_cap_ms=60`);
  await waitForStatus(page, 'connected');
  await publish(gw, 'alert', { alert_id: 'a-1', severity: 'info', message: 'before the outage' });
  await waitForText(page, sel.alertBadge, '1');

  await stop(gw, 'SIGTERM');
  await waitForStatus(page, 'disconnected', 20000);
  assert.equal(await page.isVisible(sel.retry), true, 'retry button visible once given up');
  assert.equal(await page.evaluate(() => window.dashboard.service.attempt), 10);

  gw = await startGateway({ port });
  await sleep(300);
  // it gave up: it does not come back by itself
  assert.equal(await page.getAttribute(sel.indicator, 'data-status'), 'disconnected');
  await page.click(sel.retry);
  await waitForStatus(page, 'connected');
  assert.equal(await page.isVisible(sel.retry), false);
  // the in-process bus of the new process knows nothing of the id we resume from:
  // the page is told so (recovered=false) and says so
  await page.waitForSelector('#notice:not([hidden])', { timeout: 5000 });
  assert.equal((await page.textContent(sel.alertBadge)).trim(), '1', 'the badge kept its count');
  assert.deepEqual(problems, []);
});

/** An HS256 JWT, as the gateway expects when AUTH_JWT_SECRET is set. */
function jwt(secret, claims) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
  const sig = crypto.createHmac('sha256', secret).update(body).digest('base64url');
  return `${body}.${sig}`;
}

test('page URL ?token= connects with ?auth=frame: the token is the first frame, never in the socket URL (AUTH_JWT_SECRET set)', async (t) => {
  const secret = 'browser-test-secret';
  const gw = await startGateway({ env: { AUTH_JWT_SECRET: secret } });
  t.after(() => stop(gw));

  // without a token the handshake is refused (401): the page never gets connected
  const anon = await newPage();
  t.after(() => anon.close());
  await anon.goto(`${gw.base}/?backoff_ms=20&backoff_cap_ms=40`);
  await waitForStatus(anon, 'disconnected', 15000);
  assert.equal(await anon.evaluate(() => window.dashboard.service.stats.connects), 0,
    'no connection opened without a token');

  const token = jwt(secret, { sub: 'ops', exp: Math.floor(Date.now() / 1000) + 600 });
  const page = await newPage();
  t.after(() => page.close());
  const problems = trackProblems(page);
  const sockets = [];
  page.on('websocket', (ws) => {
    const seen = { url: ws.url(), sent: [], received: [] };
    sockets.push(seen);
    ws.on('framesent', (f) => seen.sent.push(String(f.payload)));
    ws.on('framereceived', (f) => seen.received.push(String(f.payload)));
  });
  await page.goto(`${gw.base}/?token=${token}`);
  await waitForStatus(page, 'connected');
  await publish(gw, 'alert', { alert_id: 'a-1', severity: 'critical', message: 'authorized' });
  await waitForText(page, sel.alertBadge, '1');
  assert.equal(sockets.length, 1, 'one socket');
  const [ws] = sockets;
  assert.equal(new URL(ws.url).searchParams.get('auth'), 'frame', ws.url);
  assert.ok(!ws.url.includes(token) && !new URL(ws.url).searchParams.has('token'), `no token in ${ws.url}`);
  assert.deepEqual(JSON.parse(ws.sent[0]), { type: 'auth', token }, 'the first frame is the auth frame');
  assert.equal(JSON.parse(ws.received[0]).type, 'analytics_update', 'then the greeting');
  assert.deepEqual(problems, []);
});

test('page URL ?types= is passed through', async (t) => {
  const gw = await startGateway();
  t.after(() => stop(gw));
  const page = await newPage();
  t.after(() => page.close());
  const problems = trackProblems(page);
  await page.goto(`${gw.base}/?types=alert`);
  await waitForStatus(page, 'connected');
  await publish(gw, 'intervention', { intervention_id: 'i-filtered', tutor_id: 't-01' });
  await publish(gw, 'alert', { alert_id: 'a-1', severity: 'critical', message: 'kept' });
  await waitForText(page, sel.alertBadge, '1');
  await sleep(300);
  assert.equal(await page.locator(`${sel.queue} > *`).count(), 0, 'interventions filtered out by ?types=alert');
  assert.deepEqual(problems, []);
});
