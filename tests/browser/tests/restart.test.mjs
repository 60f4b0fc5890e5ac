// Resume without loss across a gateway restart, with Redis as the bus: events
// published (with the `publisher` CLI) while the only node is down show up once the
// page has reconnected with ?since=, exactly once.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  launchBrowser, publish, publisherSend, sel, sleep, startGateway, startRedis, stop,
  trackProblems, waitForChildren, waitForStatus, waitForText,
} from '../lib/harness.mjs';

// (and, with the WebSocket failing before it opens, the page's SSE fallback attempts)
const OUTAGE_NOISE = [/WebSocket connection to/, /ERR_CONNECTION_REFUSED/, /\/ws\/status/, /\/sse\/dashboard/];

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { if (browser) await browser.close(); });

test('gateway restart: the page reconnects and shows what was published meanwhile, once', async (t) => {
  const redis = await startRedis();
  t.after(() => stop(redis));
  let gw = await startGateway({ redis });
  const port = gw.port;
  t.after(() => stop(gw));

  const page = await browser.context.newPage();
  t.after(() => page.close());
  const problems = trackProblems(page, OUTAGE_NOISE);
  // short backoff so the test does not wait up to 30 s; still 10 attempts with full jitter
  await page.goto(`${gw.base}/?backoff_ms=200&backoff_cap_ms=2000`);
  await waitForStatus(page, 'connected');

  // seen live before the outage (also gives the page an id to resume from)
  await publish(gw, 'alert', { alert_id: 'a-before', tutor_id: 't-01', severity: 'warning', message: 'before' });
  await publisherSend(redis, 'intervention', { intervention_id: 'i-before', tutor_id: 't-01', priority: 'low' });
  await waitForText(page, sel.alertBadge, '1');
  await waitForChildren(page, sel.queue, 1);

  // the node goes away (graceful drain: clients get 1001 and start reconnecting)
  const exit = await stop(gw, 'SIGTERM');
  assert.equal(exit.signal === 'SIGKILL', false, 'the gateway exits on SIGTERM by itself');
  await waitForStatus(page, 'reconnecting', 10000);

  // published while no node is up: only Redis history has them
  await publisherSend(redis, 'alert', { alert_id: 'a-away-1', tutor_id: 't-02', severity: 'critical', message: 'while away 1' });
  await publisherSend(redis, 'intervention', { intervention_id: 'i-away-1', tutor_id: 't-02', action: 'reassign_session', priority: 'high' });
  await publisherSend(redis, 'alert', { alert_id: 'a-away-2', tutor_id: 't-03', severity: 'warning', message: 'while away 2' });
  assert.equal(await page.getAttribute(sel.indicator, 'data-status'), 'reconnecting');

  gw = await startGateway({ redis, port });
  await waitForStatus(page, 'connected', 30000);

  await waitForText(page, sel.alertBadge, '3');
  await waitForChildren(page, sel.queue, 2);
  // the replayed ones are the ones published while away, newest first
  const ids = await page.$$eval(`${sel.queue} > *`, (els) => els.map((e) => e.getAttribute('data-intervention-id')));
  assert.deepEqual(ids, ['i-away-1', 'i-before']);
  const alerts = await page.$$eval('[data-testid="alert-feed"] > *', (els) => els.map((e) => e.getAttribute('data-alert-id')));
  assert.deepEqual(alerts, ['a-away-2', 'a-away-1', 'a-before']);

  // nothing arrives twice, later either
  await sleep(1000);
  assert.equal((await page.textContent(sel.alertBadge)).trim(), '3');
  assert.equal(await page.locator(`${sel.queue} > *`).count(), 2);
  const stats = await page.evaluate(() => window.dashboard.service.stats);
  assert.equal(stats.duplicates, 0, 'no id delivered twice');
  assert.equal(stats.recoveriesFailed, 0, 'the server recovered the missed events');
  assert.equal(stats.replayed, 3, 'recovery reported 3 replayed events');

  // and the live stream continues after the replay
  await publish(gw, 'alert', { alert_id: 'a-after', severity: 'info', message: 'after' });
  await waitForText(page, sel.alertBadge, '4');
  assert.deepEqual(problems, []);
});
