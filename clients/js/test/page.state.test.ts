// @vitest-environment jsdom
// The dashboard page (gateway/assets: index.html, the built ws-client.js, dashboard.js) on
// the keyed state, in jsdom with a fake socket: it asks for the state (?state=0 does not),
// fills the tutor table, alert feed and intervention queue from it at once (the badge
// counts only alerts that arrive live), applies tombstones and evictions, replaces
// everything when a failed resume brings the state again, and says where it stands on
// the connection indicator (data-state, data-state-count). The browser tests
// (tests/browser) run the same page against a real gateway in Chromium.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { FakeWebSocket, env } from './helpers/fake-ws.js';

// (not scripts/build.mjs's PAGE_BUNDLE: esbuild does not load under jsdom)
const ASSETS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'gateway', 'assets');
const read = (f: string) => fs.readFileSync(path.join(ASSETS, f), 'utf8');

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Dashboard = { service: any; counts(): Record<string, unknown> };
let dashboard: Dashboard | null = null;
let problems: unknown[] = [];

function load(search = '') {
  window.history.replaceState(null, '', `/${search}`);
  const html = read('index.html');
  document.body.innerHTML = html.slice(html.indexOf('<body>') + 6, html.indexOf('</body>'));
  // indirect eval: the scripts run as the page's classic scripts do, in the global scope
  (0, eval)(read('ws-client.js'));
  (0, eval)(read('dashboard.js'));
  dashboard = (window as unknown as { dashboard: Dashboard }).dashboard;
  const ws = FakeWebSocket.last;
  ws.open();
  return ws;
}

beforeEach(() => {
  FakeWebSocket.reset();
  problems = [];
  vi.stubGlobal('WebSocket', FakeWebSocket);
  vi.stubGlobal('fetch', () => Promise.resolve({ ok: false, json: () => Promise.resolve(null) }));
  vi.spyOn(console, 'error').mockImplementation((...args) => { problems.push(args); });
  window.onerror = (e) => { problems.push(e); };
});
afterEach(() => {
  dashboard?.service.destroy();
  dashboard = null;
  expect(problems).toEqual([]);
});

const q = (sel: string) => document.querySelector(sel) as HTMLElement;
const indicator = () => q('[data-testid="connection-indicator"]');
const badge = () => q('[data-testid="alert-badge"]').textContent;
const alertIds = () => Array.from(q('[data-testid="alert-feed"]').children).map((li) => li.getAttribute('data-alert-id'));
const queueIds = () => Array.from(q('[data-testid="intervention-queue"]').children)
  .map((li) => li.getAttribute('data-intervention-id'));
const rows = () => Array.from(q('[data-testid="tutor-table"]').children).map((tr) => tr.getAttribute('data-row-key'));

const ev = (type: string, key: string, data: Record<string, unknown>, seq: number, extra: Record<string, unknown> = {}) =>
  ({ ...env(type, data, `e1:${seq}-0`), key, ...extra });
const metrics = (tutor: string, window: string, seq: number, extra: Record<string, unknown> = {}) =>
  ev('metrics_update', `${tutor}|${window}`, { tutor_id: tutor, tutor_name: `Tutor ${tutor}`, window, avg_rating: 4.2 }, seq, extra);
const alert = (id: string, seq: number, data: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) =>
  ev('alert', id, { id, title: `alert ${id}`, alert_type: 'critical', ...data }, seq, extra);
const task = (id: string, status: string, seq: number, extra: Record<string, unknown> = {}) =>
  ev('intervention', id, { id, title: `task ${id}`, status }, seq, extra);
const marker = (count: number, seq: number) => env('state', { complete: true, count }, `e1:${seq}-0`);

function openWithState(ws: FakeWebSocket, events: unknown[], seq = 50) {
  ws.msg(env('analytics_update', {}));
  expect(indicator().getAttribute('data-state')).toBe('loading');
  for (const e of events) ws.msg(e);
  ws.msg(marker(events.length, seq));
}

describe('the dashboard page on the keyed state', () => {
  it('asks for it, and shows it all at once: table, feed, queue; the badge counts none of it', () => {
    const ws = load();
    expect(ws.url).toMatch(/\/ws\/dashboard\?state=1$/);
    expect(indicator().getAttribute('data-state')).toBe('loading');
    expect(indicator().getAttribute('data-state-count')).toBe('');
    ws.msg(env('analytics_update', {}));
    ws.msg(alert('a-2', 4));
    ws.msg(metrics('t-2', '7day', 3));
    ws.msg(task('i-1', 'pending', 2));
    ws.msg(alert('a-1', 1));
    ws.msg(metrics('t-1', '30day', 5));
    ws.msg(task('i-2', 'in_progress', 6));
    // nothing shown before the marker: the state is not complete
    expect(alertIds()).toEqual([]);
    expect(rows()).toEqual([]);
    ws.msg(marker(6, 7));
    expect(indicator().getAttribute('data-state')).toBe('complete');
    expect(indicator().getAttribute('data-state-count')).toBe('6');
    expect(rows()).toEqual(['t-1 30day', 't-2 7day']); // by tutor id
    expect(alertIds()).toEqual(['a-2', 'a-1']); // newest first
    expect(queueIds()).toEqual(['i-2', 'i-1']);
    expect(q('#intervention-count').textContent).toBe('2');
    expect(q('#tutor-count').textContent).toBe('2');
    expect(badge()).toBe('0');
    expect(q('#alerts-empty').hidden).toBe(true);
    expect(q('#queue-empty').hidden).toBe(true);
    expect(q('#tutors-empty').hidden).toBe(true);
    expect(dashboard!.counts()).toMatchObject({ alerts: 0, interventions: 2, tutors: 2, state: 'complete', stateEvents: 6 });
  });

  it('live events: counted and shown; a later event of a key replaces its entry; tombstones and evictions remove', () => {
    const ws = load();
    openWithState(ws, [
      alert('a-1', 1), alert('a-2', 2), task('i-1', 'pending', 3), task('i-2', 'pending', 4),
      metrics('t-1', '7day', 5), metrics('t-2', '7day', 6),
    ]);
    ws.msg(alert('a-3', 51));
    expect(badge()).toBe('1');
    expect(q('#alert-critical').textContent).toBe('1 critical');
    expect(alertIds()).toEqual(['a-3', 'a-2', 'a-1']);
    // a resolved alert's tombstone leaves the feed (a page opened now would not show it)
    ws.msg(alert('a-1', 52, { status: 'resolved' }, { removed: true }));
    expect(alertIds()).toEqual(['a-3', 'a-2']);
    expect(badge()).toBe('1'); // a removal is not an alert
    // one child per intervention received (the contract's hook): a status change is a new
    // item on top, the earlier one of that id dimmed...
    ws.msg(task('i-1', 'in_progress', 53));
    expect(queueIds()).toEqual(['i-1', 'i-2', 'i-1']);
    const firstI1 = () => q('[data-testid="intervention-queue"]').children[0];
    expect(firstI1().textContent).toMatch(/in_progress/);
    expect(q('[data-testid="intervention-queue"]').children[2].className).toMatch(/is-done/);
    // ...and a completed task (a tombstone by the default rules) shows as done
    ws.msg(task('i-2', 'completed', 54, { removed: true }));
    expect(queueIds()).toEqual(['i-2', 'i-1', 'i-2', 'i-1']);
    expect(firstI1().className).toMatch(/is-done/);
    expect(q('#intervention-count').textContent).toBe('4');
    // evicted keys leave the table (and the event itself applies)
    ws.msg(metrics('t-3', '7day', 55, { evicted: ['t-1|7day'] }));
    expect(rows()).toEqual(['t-2 7day', 't-3 7day']);
    ws.msg(metrics('t-2', '7day', 56, { removed: true }));
    expect(rows()).toEqual(['t-3 7day']);
    ws.msg(alert('a-4', 57, {}, { evicted: ['a-2', 'a-3'] }));
    expect(alertIds()).toEqual(['a-4']);
    expect(badge()).toBe('2');
    // an eviction, or an explicit removal (no task in its data), takes a task's items out
    ws.msg(task('i-3', 'pending', 58, { evicted: ['i-2'] }));
    expect(queueIds()).toEqual(['i-3', 'i-1', 'i-1']);
    ws.msg(ev('intervention', 'i-1', {}, 59, { removed: true }));
    expect(queueIds()).toEqual(['i-3']);
  });

  it('unkeyed events (raw, or without the key fields) behave as before; a tombstone finds them by id', () => {
    const ws = load();
    openWithState(ws, []);
    ws.msg(env('alert', { alert_id: 'x-1', severity: 'warning', message: 'one' }, 'e1:51-0'));
    ws.msg(env('alert', { alert_id: 'x-1', severity: 'warning', message: 'again' }, 'e1:52-0'));
    ws.msg(env('intervention', { intervention_id: 'j-1', status: 'pending' }, 'e1:53-0'));
    ws.msg(env('intervention', { intervention_id: 'j-1', status: 'in_progress' }, 'e1:54-0'));
    expect(alertIds()).toEqual(['x-1', 'x-1']); // the feed is a log of unkeyed alerts
    expect(queueIds()).toEqual(['j-1', 'j-1']); // one child per intervention received
    expect(badge()).toBe('2');
    ws.msg(ev('alert', 'x-1', { id: 'x-1', status: 'resolved' }, 55, { removed: true }));
    expect(alertIds()).toEqual([]);
  });

  it('a failed resume brings the state again: it replaces what is shown; the badge keeps its count', () => {
    vi.spyOn(Math, 'random').mockReturnValue(0);
    vi.useFakeTimers();
    try {
      const ws = load('?backoff_ms=10');
      openWithState(ws, [alert('a-1', 1), task('i-1', 'pending', 2), metrics('t-1', '7day', 3)]);
      ws.msg(alert('a-live', 51));
      expect(badge()).toBe('1');
      ws.drop();
      vi.advanceTimersByTime(20);
      const next = FakeWebSocket.last;
      expect(next.url).toBe(`${ws.url.replace(/\?.*$/, '')}?since=e1%3A51-0&state=1`);
      next.open();
      next.msg(env('analytics_update', {}));
      next.msg(env('recovery', { recovered: false, replayed: 0 }));
      expect(indicator().getAttribute('data-state')).toBe('loading');
      expect(q('#notice').hidden).toBe(false);
      next.msg(alert('a-9', 60));
      next.msg(metrics('t-9', '30day', 61));
      next.msg(marker(2, 62));
      expect(indicator().getAttribute('data-state')).toBe('complete');
      expect(indicator().getAttribute('data-state-count')).toBe('2');
      expect(alertIds()).toEqual(['a-9']);
      expect(queueIds()).toEqual([]);
      expect(rows()).toEqual(['t-9 30day']);
      expect(badge()).toBe('1');
    } finally {
      vi.useRealTimers();
    }
  });

  it('?state=0: live only, as before', () => {
    const ws = load('?state=0');
    expect(ws.url).not.toMatch(/state=/);
    expect(indicator().getAttribute('data-state')).toBe('off');
    ws.msg(env('analytics_update', {}, 'e1:1-0'));
    ws.msg(alert('a-1', 2));
    expect(alertIds()).toEqual(['a-1']);
    expect(badge()).toBe('1');
    expect(indicator().getAttribute('data-state')).toBe('off');
    expect(indicator().getAttribute('data-state-count')).toBe('');
  });
});
