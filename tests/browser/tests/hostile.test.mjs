// Whatever a publisher sends, the page renders it or skips it: it never hangs or breaks.
// One bad analytics snapshot matters most: it greets every new visitor, so a value that
// froze the chart's grid loop (1e20 counts, a step too small to move a large value) froze
// every tab that opened. Real Chromium, a real gateway, the exact bytes a publisher sent.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  API_KEY, launchBrowser, publish, sel, sleep, startGateway, stop, trackProblems,
  waitForStatus, waitForText,
} from '../lib/harness.mjs';

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { if (browser) await browser.close(); });

/** POST /api/publish with `data` as raw JSON text (1e400, -1e300: bytes JSON.stringify cannot write). */
async function publishRaw(gw, type, dataJson) {
  const r = await fetch(`${gw.base}/api/publish`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${API_KEY}` },
    body: `{"type":${JSON.stringify(type)},"data":${dataJson}}`,
  });
  assert.equal(r.status, 202, `${type} ${dataJson.slice(0, 80)}: ${await r.text()}`);
}

/**
 * The page answers within `ms`, after two animation frames (so the chart was drawn);
 * a page stuck in a loop never does.
 */
async function assertResponsive(page, what, ms = 3000) {
  const answered = page.evaluate(() => new Promise((resolve) => {
    requestAnimationFrame(() => requestAnimationFrame(() => resolve('ok')));
  }));
  const outcome = await Promise.race([answered, sleep(ms).then(() => 'hung')]);
  assert.equal(outcome, 'ok', `the page did not answer within ${ms} ms ${what}`);
}

const text = (page, testid) => page.locator(`[data-testid="${testid}"]`).first().textContent();

test('hostile analytics greet a new tab, and hostile events arrive: the page stays responsive and shows sane output', async (t) => {
  const gw = await startGateway();
  t.after(() => stop(gw));

  // The latest snapshot, which every new visitor is greeted with.
  const manySeverities = Object.fromEntries(Array.from({ length: 2000 }, (_, i) => [`sev-${i}`, i]));
  await publishRaw(gw, 'analytics_update', JSON.stringify({
    total_tutors: 'TOTAL', avg_engagement_score: 'SCORE', total_sessions_7day: 'S7',
    total_sessions_30day: 'S30', sessions_in_progress: 'IP',
    performance_distribution: Array.from({ length: 3000 }, (_, i) => i),
    alerts_count: { constructor: 5, __proto__x: 1, ...manySeverities },
    avg_satisfaction: 'x'.repeat(3000),
  }).replace('"TOTAL"', '-1e300').replace('"SCORE"', '1e400')
    .replace('"S7"', '{"toString":1,"valueOf":1}').replace('"S30"', '[[[[[1]]]]]')
    .replace('"IP"', '"NaN"')
    .replace('{', '{"active_tutors":1e20,"avg_rating":"Infinity",'));

  const page = await browser.context.newPage();
  t.after(() => page.close());
  const problems = trackProblems(page);
  await page.goto(`${gw.base}/`);
  // (a page stuck in its chart loop fails here already: it never answers these polls)
  await waitForStatus(page, 'connected');
  await page.waitForFunction((s) => document.querySelector(s).textContent !== '–', sel.totalTutors,
    { timeout: 10000, polling: 50 }); // the greeting is rendered; its chart is drawn next frame
  await assertResponsive(page, 'after a greeting with 1e20 active tutors (the chart shows them: no rating)');
  assert.equal(await text(page, 'total-tutors'), '-1.00e+300');
  assert.equal(await text(page, 'active-tutors'), '1.00e+20');
  assert.equal(await text(page, 'avg-rating'), 'Infinity', 'a string is shown as text');
  assert.equal(await text(page, 'avg-engagement-score'), '–', '1e400 is no number to show');
  assert.equal(await text(page, 'total-sessions-7day'), '–', 'an object that throws in String() is skipped');
  assert.equal(await text(page, 'total-sessions-30day'), '–');
  assert.equal(await text(page, 'sessions-in-progress'), 'NaN', 'a string is shown as text');
  const satisfaction = await text(page, 'avg-satisfaction');
  assert.ok(satisfaction.length <= 300, `a long string is clipped (${satisfaction.length} characters)`);
  const severities = await page.locator('[data-testid="alerts-count"] [data-severity]').count();
  assert.ok(severities >= 1 && severities <= 8, `${severities} severities shown, at most 8`);
  assert.equal(await page.locator('#tiers .tier-count').first().textContent(), '–', 'an array is no distribution');

  // The grid loop's other trap: values too large for their spread (1e14 apart by 0.02).
  await publishRaw(gw, 'analytics_update', '{"avg_rating":100000000000000,"active_tutors":1}');
  await publishRaw(gw, 'analytics_update', '{"avg_rating":100000000000000.02,"active_tutors":2}');
  await waitForText(page, '[data-testid="active-tutors"]', '2');
  await assertResponsive(page, 'after ratings of 1e14 and 1e14 + 0.02');

  // Wrong shapes for every type, and values that reach Object.prototype or throw.
  for (const data of ['"oops"', '[1,2,3]', 'null', '42']) {
    await publishRaw(gw, 'analytics_update', data);
    await publishRaw(gw, 'metrics_update', data);
    await publishRaw(gw, 'alert', data);
    await publishRaw(gw, 'intervention', data);
  }
  await publishRaw(gw, 'metrics_update', '{"tutor_id":{"toString":1}}');
  await publishRaw(gw, 'metrics_update', JSON.stringify({
    tutor_id: 't-hostile', window: [1], status: 'S', performance_tier: 'T',
    avg_rating: 'R', satisfaction_score: 'F', name: 'n'.repeat(10000),
  }).replace('"S"', '{"toString":1}').replace('"T"', '{"toString":1}')
    .replace('"R"', '1e308').replace('"F"', '-1e300'));
  await publishRaw(gw, 'alert', JSON.stringify({
    alert_id: 'a-hostile', alert_type: 'A', severity: 'constructor', message: 'm'.repeat(20000),
  }).replace('"A"', '{"toString":1}'));
  await publishRaw(gw, 'intervention', JSON.stringify({
    intervention_id: 'i-hostile', priority: 'P', status: 'constructor', title: 't'.repeat(10000),
  }).replace('"P"', '{"toString":1}'));
  await assertResponsive(page, 'after events of every wrong shape');

  // Then a normal event of each kind still renders.
  await publish(gw, 'analytics_update', { total_tutors: 31, active_tutors: 12, avg_rating: 4.5 });
  await publish(gw, 'alert', { alert_id: 'a-ok', severity: 'critical', message: 'still live' });
  await publish(gw, 'intervention', { intervention_id: 'i-ok', tutor_id: 't-1', priority: 'high' });
  await publish(gw, 'metrics_update', { tutor_id: 't-ok', avg_rating: 4.2 });
  await waitForText(page, sel.totalTutors, '31');
  await waitForText(page, sel.alertBadge, '6'); // 4 wrong shapes + the hostile one + this one
  await page.waitForSelector('[data-alert-id="a-ok"]');
  await page.waitForSelector('[data-intervention-id="i-ok"]');
  await page.waitForSelector('tr[data-tutor-id="t-ok"]');
  await assertResponsive(page, 'at the end');

  const hostileRow = page.locator('tr[data-tutor-id="t-hostile"]');
  assert.equal(await hostileRow.count(), 1, 'the hostile tutor has a row');
  assert.ok((await hostileRow.locator('.tutor-name').textContent()).length <= 300, 'its name is clipped');
  assert.equal(await hostileRow.locator('td.num').first().textContent(), '1.00e+308');
  const hostileAlert = page.locator('[data-alert-id="a-hostile"]');
  assert.ok((await hostileAlert.locator('.item-body').textContent()).length <= 300, 'the alert body is clipped');
  assert.doesNotMatch(await hostileAlert.getAttribute('class'), /function|native/,
    'no Object.prototype member became a class');
  const hostileTask = page.locator('[data-intervention-id="i-hostile"]');
  assert.doesNotMatch(await hostileTask.getAttribute('class'), /is-done/, '"constructor" is no finished status');
  assert.equal(await page.locator('tr[data-tutor-id]').count(), 2, 'an object tutor_id makes no row');
  assert.deepEqual(problems, [], 'no page errors or console errors');
});

test('the tutor table keeps the 500 most recently updated rows', async (t) => {
  const gw = await startGateway();
  t.after(() => stop(gw));
  const page = await browser.context.newPage();
  t.after(() => page.close());
  const problems = trackProblems(page);
  await page.goto(`${gw.base}/`);
  await waitForStatus(page, 'connected');

  // one at a time, so the order of updates is known: t-0000 is updated again halfway
  const id = (i) => `t-${String(i).padStart(4, '0')}`;
  for (let i = 0; i < 300; i++) await publish(gw, 'metrics_update', { tutor_id: id(i), avg_rating: 4 });
  await publish(gw, 'metrics_update', { tutor_id: id(0), avg_rating: 3 });
  for (let i = 300; i < 620; i++) await publish(gw, 'metrics_update', { tutor_id: id(i), avg_rating: 4 });
  await publish(gw, 'metrics_update', { tutor_id: 't-last', avg_rating: 5 });
  await page.waitForSelector('tr[data-tutor-id="t-last"]', { timeout: 20000 });
  await assertResponsive(page, 'after 621 tutors');
  assert.equal(await page.locator('tr[data-tutor-id]').count(), 500);
  assert.equal(await page.textContent('#tutor-count'), '500');
  assert.equal(await page.isVisible('[data-testid="tutor-cap"]'), true);
  assert.match(await page.textContent('[data-testid="tutor-cap"]'), /500 most recently updated/);
  // 621 tutors, 500 rows: the 121 least recently updated left (t-0001 to t-0121)
  const has = async (tutor) => (await page.locator(`tr[data-tutor-id="${tutor}"]`).count()) === 1;
  assert.equal(await has(id(0)), true, 'updated again halfway: kept');
  assert.equal(await has(id(1)), false);
  assert.equal(await has(id(121)), false);
  assert.equal(await has(id(122)), true);
  assert.equal(await has(id(619)), true);
  // the rows are still ordered by tutor id
  const order = await page.$$eval('tr[data-tutor-id]', (rows) => {
    const shown = rows.map((r) => r.getAttribute('data-row-key'));
    const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: 'base' });
    return { shown, sorted: [...shown].sort(collator.compare) };
  });
  assert.deepEqual(order.shown, order.sorted);
  assert.deepEqual(problems, []);
});
