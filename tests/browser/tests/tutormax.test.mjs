// The dashboard page with TutorMax's data, in real headless Chromium against a real
// gateway node: its analytics fields (tiers chart, alert counts by severity, ratings,
// sessions), its alerts / tasks / per-window metrics, the reconnect label counting each
// attempt, and the end-to-end test of TutorMax's testing guide at /dashboard.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  launchBrowser, publish, publisherSend, sel, startGateway, startRedis, stop, trackProblems,
  waitForChildren, waitForStatus, waitForText,
} from '../lib/harness.mjs';

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { if (browser) await browser.close(); });
const newPage = () => browser.context.newPage();
// (and, with the WebSocket failing before it opens, the page's SSE fallback attempts)
const OUTAGE_NOISE = [/WebSocket connection to/, /ERR_CONNECTION_REFUSED/, /\/ws\/status/, /\/sse\/dashboard/];

const ANALYTICS = {
  total_tutors: 120, active_tutors: 97,
  performance_distribution: { 'Needs Support': 8, Developing: 30, Strong: 55, Exemplary: 27 },
  avg_rating: 4.43, avg_engagement_score: 0.81, total_sessions_7day: 640, total_sessions_30day: 2710,
  alerts_count: { critical: 2, warning: 5, info: 9 },
};

/** What the tiers chart shows: tier -> [count text, percent text, bar width]. */
const tiers = (page) => page.evaluate(() => Object.fromEntries(
  [...document.querySelectorAll('[data-testid="performance-distribution"] [data-tier]')].map((row) => [
    row.getAttribute('data-tier'),
    [row.querySelector('.tier-count').textContent, row.querySelector('.tier-pct').textContent,
      row.querySelector('.tier-fill').getAttribute('width')],
  ])));

test('TutorMax analytics: tiles, the performance tiers chart and alerts by severity', async (t) => {
  const gw = await startGateway();
  t.after(() => stop(gw));
  const page = await newPage();
  t.after(() => page.close());
  const problems = trackProblems(page);
  await page.goto(`${gw.base}/`);
  await waitForStatus(page, 'connected');
  // nothing yet: dashes, empty bars, and the older optional tiles hidden
  assert.equal((await tiers(page)).Strong[0], '–');
  assert.equal(await page.isVisible('[data-testid="sessions-in-progress"]'), false);

  await publish(gw, 'analytics_update', ANALYTICS);
  await waitForText(page, sel.totalTutors, '120');
  const text = async (id) => (await page.textContent(`[data-testid="${id}"]`)).trim();
  assert.equal(await text('active-tutors'), '97');
  assert.equal(await text('avg-rating'), '4.43');
  assert.equal(await text('avg-engagement-score'), '0.81');
  assert.equal(await text('total-sessions-7day'), '640');
  assert.equal(await text('total-sessions-30day'), '2710');
  assert.deepEqual(await tiers(page), {
    'Needs Support': ['8', '7%', '6.7'], Developing: ['30', '25%', '25'],
    Strong: ['55', '46%', '45.8'], Exemplary: ['27', '23%', '22.5'],
  });
  assert.equal((await page.textContent('#tier-total')).trim(), '120');
  const severities = await page.evaluate(() => [...document.querySelectorAll('[data-testid="alerts-count"] [data-severity]')]
    .map((n) => [n.getAttribute('data-severity'), n.querySelector('b').textContent]));
  assert.deepEqual(severities, [['critical', '2'], ['warning', '5'], ['info', '9']]);
  // another backend's scale (the demo's): every severity shown, most urgent first
  await publish(gw, 'analytics_update', { ...ANALYTICS, alerts_count: { low: 4, critical: 1, medium: 3, high: 2 } });
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="alerts-count"] [data-severity]').length === 4);
  const scale = await page.evaluate(() => [...document.querySelectorAll('[data-testid="alerts-count"] [data-severity]')]
    .map((n) => [n.getAttribute('data-severity'), n.querySelector('b').textContent]));
  assert.deepEqual(scale, [['critical', '1'], ['high', '2'], ['medium', '3'], ['low', '4']]);
  await publish(gw, 'analytics_update', ANALYTICS);
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="alerts-count"] [data-severity]').length === 3);
  // the bars are drawn: the Strong bar is wider than the Needs Support one
  const widths = await page.evaluate(() => Object.fromEntries([...document.querySelectorAll('[data-tier] .tier-fill')]
    .map((r) => [r.closest('[data-tier]').getAttribute('data-tier'), r.getBoundingClientRect().width])));
  assert.ok(widths.Strong > 3 * widths['Needs Support'] && widths['Needs Support'] > 0, JSON.stringify(widths));
  assert.equal(await page.isVisible('[data-testid="sessions-in-progress"]'), false);

  // a snapshot with the older fields shows those tiles next to TutorMax's
  await publish(gw, 'analytics_update', { ...ANALYTICS, total_tutors: 121, sessions_in_progress: 41 });
  await waitForText(page, sel.totalTutors, '121');
  assert.equal(await page.isVisible('[data-testid="sessions-in-progress"]'), true);
  assert.equal(await text('sessions-in-progress'), '41');
  assert.deepEqual(problems, []);
});

test('TutorMax alerts, intervention tasks and per-window metrics are rendered', async (t) => {
  const gw = await startGateway();
  t.after(() => stop(gw));
  const page = await newPage();
  t.after(() => page.close());
  const problems = trackProblems(page);
  await page.goto(`${gw.base}/`);
  await waitForStatus(page, 'connected');

  await publish(gw, 'alert', {
    id: 'al-1', tutor_id: 't-07', tutor_name: 'Ada Lovelace', alert_type: 'critical', severity: 'high',
    title: 'No-show spike', message: '3 no-shows this week', resolved: false,
  });
  await waitForText(page, sel.alertBadge, '1');
  const alert = page.locator('[data-alert-id="al-1"]');
  assert.match(await alert.textContent(), /critical.*No-show spike · Ada Lovelace.*3 no-shows this week/);
  assert.match(await alert.getAttribute('class'), /sev-critical/);
  assert.equal((await page.textContent('#alert-critical')).trim(), '1 critical');

  await publish(gw, 'intervention', {
    id: 'task-1', tutor_id: 't-07', tutor_name: 'Ada Lovelace', task_type: 'coaching', title: 'Coaching call',
    description: 'Review no-shows', priority: 'high', status: 'pending',
  });
  await publish(gw, 'intervention', {
    id: 'task-1', tutor_id: 't-07', tutor_name: 'Ada Lovelace', task_type: 'coaching', title: 'Coaching call',
    description: 'Review no-shows', priority: 'high', status: 'completed',
  });
  await waitForChildren(page, sel.queue, 2); // one child per intervention received
  const items = await page.locator(`${sel.queue} > li`).evaluateAll((lis) => lis.map((li) => [li.textContent, li.className]));
  assert.match(items[0][0], /Coaching call · Ada Lovelace.*completed.*Review no-shows/);
  assert.match(items[1][1], /is-done/, 'the earlier entry of the same id is dimmed');

  for (const [window, rating, tier] of [['7day', 3.9, 'Developing'], ['30day', 4.3, 'Strong'], ['7day', 4.1, 'Strong']]) {
    await publish(gw, 'metrics_update', {
      tutor_id: 't-07', tutor_name: 'Ada Lovelace', window, avg_rating: rating, performance_tier: tier, sessions_completed: 12,
    });
  }
  await page.waitForFunction(() => /4\.10/.test(document.querySelector('[data-window="7day"]')?.textContent || ''),
    null, { timeout: 10000 });
  const rows = await page.locator('[data-testid="tutor-table"] tr').evaluateAll((trs) => trs.map((tr) => tr.textContent));
  assert.equal(rows.length, 2, 'one row per (tutor, window)');
  assert.match(rows.find((r) => r.includes('30day')), /Ada Lovelace.*Strong.*4\.30/);
  assert.match(rows.find((r) => r.includes('7day')), /Ada Lovelace.*Strong.*4\.10/);
  assert.deepEqual(problems, []);
});

test('the reconnect label counts every attempt: (1/10), (2/10) ... (10/10), then Disconnected', async (t) => {
  const gw = await startGateway();
  t.after(() => stop(gw));
  const page = await newPage();
  t.after(() => page.close());
  const problems = trackProblems(page, OUTAGE_NOISE);
  await page.goto(`${gw.base}/?backoff_ms=20&backoff_cap_ms=60`);
  await waitForStatus(page, 'connected');
  await page.evaluate(() => {
    window.__labels = [];
    const label = document.getElementById('conn-label');
    new MutationObserver(() => window.__labels.push(label.textContent))
      .observe(label, { childList: true, characterData: true, subtree: true });
  });
  await stop(gw);
  await waitForStatus(page, 'disconnected', 20000);
  const labels = (await page.evaluate(() => window.__labels)).filter((l, i, all) => l !== all[i - 1]);
  const want = Array.from({ length: 10 }, (_, i) => `Reconnecting (${i + 1}/10)…`);
  assert.deepEqual(labels, [...want, 'Disconnected']);
  assert.deepEqual(problems, []);
});

// TutorMax's testing guide, "E2E Testing with Playwright" (dashboard receives real-time
// updates), with this harness: the page at /dashboard, analytics published before it loads,
// then the "trigger backend update" step as a `publisher send` through Redis.
async function guideScenario(t, route) {
  const redis = await startRedis();
  t.after(() => stop(redis));
  const gw = await startGateway({ redis });
  t.after(() => stop(gw));
  await publisherSend(redis, 'analytics_update', ANALYTICS);
  const page = await newPage();
  t.after(() => page.close());
  const problems = trackProblems(page);

  const status = (await fetch(`${gw.base}${route}`)).status;
  assert.equal(status, 200, `GET ${route} answered ${status} (the contract: / and /dashboard serve the same page)`);
  await page.goto(`${gw.base}${route}`);

  // Wait for WebSocket connection
  await page.waitForSelector('[data-testid="connection-indicator"][data-status="connected"]');

  // Verify initial analytics loaded
  const tutorCount = await page.textContent('[data-testid="total-tutors"]');
  assert.ok(parseInt(tutorCount) > 0, `total-tutors ${tutorCount}`);

  // Trigger backend update
  await publisherSend(redis, 'alert', { id: 'al-1', alert_type: 'critical', severity: 'high', title: 'No-show spike', resolved: false });

  // Verify dashboard updates
  await page.waitForFunction(() => document.querySelector('[data-testid="alert-badge"]')?.textContent.includes('1'),
    null, { timeout: 5000 });
  assert.deepEqual(problems, []);
}

test("TutorMax's E2E guide test at /dashboard: connected, analytics loaded, a published alert shows", (t) => guideScenario(t, '/dashboard'));
test("TutorMax's E2E guide test at / (the same page)", (t) => guideScenario(t, '/'));
