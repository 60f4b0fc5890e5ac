// @vitest-environment jsdom
// The hooks on the keyed state (`state: true`, the default): the drop-in useWebSocket()
// replaces tutorMetrics, alerts and interventionTasks with the state (one render,
// analytics untouched), then applies live events on top, tombstones (`removed: true`) and
// `evicted` keys deleting their entries; resolveAlert and updateInterventionStatus keep
// working on what came in the state; useDashboardStream() replaces its lists too. A fake
// socket and fake timers.
import { act, cleanup, renderHook } from '@testing-library/react';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { useDashboardStream, useWebSocket, type UseWebSocketOptions, type UseWebSocketResult } from '../src/react.js';
import { FakeWebSocket, env } from './helpers/fake-ws.js';

const URL = 'ws://gw.test/ws/dashboard';

beforeEach(() => {
  FakeWebSocket.reset();
  vi.useFakeTimers();
});
afterEach(() => {
  cleanup();
  vi.useRealTimers();
});

const at = (s: number) => `2026-11-25T10:00:${String(s).padStart(2, '0')}.000Z`;
/** A keyed event, as the state and the live stream carry it. */
const ev = (type: string, key: string, data: unknown, seq: number, extra: Record<string, unknown> = {}) =>
  ({ ...env(type, data, `e1:${seq}-0`), key, timestamp: at(seq), ...extra });
const marker = (count: number, seq: number) => ({ ...env('state', { complete: true, count }, `e1:${seq}-0`), timestamp: at(59) });

const metrics = (tutor: string, window: string, rating: number, seq: number) =>
  ev('metrics_update', `${tutor}|${window}`, { tutor_id: tutor, window, avg_rating: rating }, seq);
const alert = (id: string, seq: number, extra: Record<string, unknown> = {}) =>
  ev('alert', id, { id, title: `alert ${id}`, resolved: false, ...extra }, seq);
const task = (id: string, status: string, seq: number) => ev('intervention', id, { id, title: `task ${id}`, status }, seq);

function mount(options: UseWebSocketOptions = {}) {
  let renders = 0;
  const hook = renderHook(() => {
    renders++;
    return useWebSocket({ url: URL, WebSocket: FakeWebSocket, ...options });
  });
  const ws = FakeWebSocket.last;
  act(() => ws.open());
  return { ...hook, ws, renders: () => renders };
}

/** Greet, send `events` as the state and end it with the marker. */
function openWithState(ws: FakeWebSocket, events: unknown[], markerSeq = 50) {
  act(() => {
    ws.msg(env('analytics_update', { total_tutors: 3 })); // no id with state=1
    for (const e of events) ws.msg(e);
  });
  act(() => ws.msg(marker(events.length, markerSeq)));
}

const tutors = (r: { current: UseWebSocketResult }) =>
  r.current.state.tutorMetrics.map((m) => [m.tutor_id, m.window, m.avg_rating]);
const alertIds = (r: { current: UseWebSocketResult }) => r.current.state.alerts.map((a) => a.id);
const tasks = (r: { current: UseWebSocketResult }) =>
  r.current.state.interventionTasks.map((t) => [t.id, t.status]);

describe('useWebSocket() on the keyed state', () => {
  it('asks for it, and fills the three lists from it in one render; analytics untouched', () => {
    const { result, ws, renders } = mount();
    expect(ws.url).toBe(`${URL}?state=1`);
    expect(result.current.statePhase).toBe('loading');
    act(() => {
      ws.msg(env('analytics_update', { total_tutors: 3 }));
      // in no particular order, as the gateway sends them
      ws.msg(alert('al-1', 3));
      ws.msg(metrics('t-2', '7day', 4.9, 6));
      ws.msg(task('task-2', 'pending', 8));
      ws.msg(metrics('t-1', '7day', 4.1, 2));
      ws.msg(alert('al-2', 7));
      ws.msg(task('task-1', 'in_progress', 5));
      ws.msg(metrics('t-1', '30day', 4.3, 4));
    });
    // nothing yet: the state is not complete
    expect(result.current.state.tutorMetrics).toEqual([]);
    expect(result.current.state.alerts).toEqual([]);
    expect(result.current.state.analytics).toEqual({ total_tutors: 3 });
    const before = renders();
    act(() => ws.msg(marker(7, 9)));
    expect(renders() - before).toBe(1); // the whole state, and the phase, in one render
    expect(result.current.statePhase).toBe('complete');
    expect(tutors(result)).toEqual([['t-1', '7day', 4.1], ['t-1', '30day', 4.3], ['t-2', '7day', 4.9]]);
    expect(alertIds(result)).toEqual(['al-2', 'al-1']); // newest first
    expect(tasks(result)).toEqual([['task-1', 'in_progress'], ['task-2', 'pending']]);
    expect(result.current.state.analytics).toEqual({ total_tutors: 3 });
    expect(result.current.state.lastUpdate).toBe(at(8)); // the newest event of the state
    expect(result.current.state.connected).toBe(true);
  });

  it('replaces what it held: a failed resume is followed by the state, which is all there is', () => {
    vi.spyOn(Math, 'random').mockReturnValue(0);
    const { result, ws } = mount();
    openWithState(ws, [alert('al-1', 1), task('task-1', 'pending', 2), metrics('t-1', '7day', 4.0, 3)], 10);
    act(() => {
      ws.msg(alert('al-live', 11));
      ws.msg({ ...env('alert', { title: 'unkeyed' }, 'e1:12-0'), timestamp: at(12) });
    });
    expect(alertIds(result)).toEqual([undefined, 'al-live', 'al-1']);
    act(() => ws.drop());
    act(() => { vi.advanceTimersByTime(0); });
    const next = FakeWebSocket.last;
    expect(next.url).toBe(`${URL}?since=e1%3A12-0&state=1`);
    act(() => {
      next.open();
      next.msg(env('analytics_update', {}));
      next.msg(env('recovery', { recovered: false, replayed: 0 }));
      next.msg(alert('al-2', 20));
      next.msg(metrics('t-9', '7day', 3.1, 21));
    });
    expect(result.current.statePhase).toBe('loading');
    act(() => next.msg(marker(2, 22)));
    expect(alertIds(result)).toEqual(['al-2']);
    expect(tasks(result)).toEqual([]);
    expect(tutors(result)).toEqual([['t-9', '7day', 3.1]]);
    expect(result.current.statePhase).toBe('complete');
  });

  it('live events apply on top of the state, as before', () => {
    const { result, ws } = mount();
    openWithState(ws, [alert('al-1', 1), task('task-1', 'pending', 2), metrics('t-1', '7day', 4.0, 3)]);
    act(() => {
      ws.msg(metrics('t-1', '7day', 3.5, 51)); // replaces
      ws.msg(metrics('t-1', '30day', 4.4, 52)); // another window: another entry
      ws.msg(alert('al-1', 53)); // a repeated id is not a second alert
      ws.msg(alert('al-2', 54));
      ws.msg(task('task-1', 'in_progress', 55));
    });
    expect(tutors(result)).toEqual([['t-1', '7day', 3.5], ['t-1', '30day', 4.4]]);
    expect(alertIds(result)).toEqual(['al-2', 'al-1']);
    expect(tasks(result)).toEqual([['task-1', 'in_progress']]);
  });

  it('a tombstone (removed: true) deletes its entry: a resolved alert, a completed task, a metrics key', () => {
    const { result, ws } = mount();
    openWithState(ws, [
      alert('al-1', 1), alert('al-2', 2), task('task-1', 'pending', 3), task('task-2', 'pending', 4),
      metrics('t-1', '7day', 4.0, 5), metrics('t-2', '7day', 4.2, 6),
    ]);
    act(() => {
      ws.msg({ ...alert('al-1', 51, { status: 'resolved' }), removed: true });
      ws.msg({ ...task('task-2', 'completed', 52), removed: true });
      ws.msg({ ...metrics('t-1', '7day', 0, 53), removed: true });
    });
    expect(alertIds(result)).toEqual(['al-2']);
    expect(tasks(result)).toEqual([['task-1', 'pending']]);
    expect(tutors(result)).toEqual([['t-2', '7day', 4.2]]);
    // a tombstone of a key never seen changes nothing but lastUpdate
    act(() => ws.msg({ ...alert('al-9', 54), removed: true }));
    expect(alertIds(result)).toEqual(['al-2']);
    expect(result.current.state.lastUpdate).toBe(at(54));
  });

  it('a tombstone matches by key, or by id for an entry that came without one', () => {
    const { result, ws } = mount();
    openWithState(ws, []);
    act(() => {
      // published raw (no key): kept by its data id
      ws.msg({ ...env('alert', { id: 'al-raw', title: 'raw' }, 'e1:51-0'), timestamp: at(51) });
      ws.msg({ ...env('intervention', { id: 'task-raw', status: 'pending' }, 'e1:52-0'), timestamp: at(52) });
      // an explicit key that is not the id: matched by the key
      ws.msg(ev('alert', 'custom-key', { id: 'al-x', title: 'x' }, 53));
    });
    expect(alertIds(result)).toEqual(['al-x', 'al-raw']);
    act(() => {
      ws.msg({ ...alert('al-raw', 54), removed: true });
      ws.msg({ ...task('task-raw', 'completed', 55), removed: true });
      ws.msg(ev('alert', 'custom-key', { id: 'other' }, 56, { removed: true }));
    });
    expect(alertIds(result)).toEqual([]);
    expect(tasks(result)).toEqual([]);
  });

  it('evicted keys delete the entries stored with those keys, then the event applies', () => {
    const { result, ws } = mount();
    openWithState(ws, [
      metrics('t-1', '7day', 4.0, 1), metrics('t-2', '7day', 4.2, 2), alert('al-1', 3), alert('al-2', 4),
      // a state event may still name what its own write evicted: nothing to apply
      { ...task('task-1', 'pending', 5), evicted: ['task-0'] },
    ]);
    act(() => {
      ws.msg({ ...metrics('t-3', '7day', 3.9, 51), evicted: ['t-1|7day'] });
      ws.msg({ ...alert('al-3', 52), evicted: ['al-1', 'al-2', 'never-held'] });
      ws.msg({ ...task('task-2', 'pending', 53), evicted: ['t-2|7day'] }); // another type's key: not this list
    });
    expect(tutors(result)).toEqual([['t-2', '7day', 4.2], ['t-3', '7day', 3.9]]);
    expect(alertIds(result)).toEqual(['al-3']);
    expect(tasks(result)).toEqual([['task-1', 'pending'], ['task-2', 'pending']]);
  });

  it('resolveAlert and updateInterventionStatus work on entries from the state, which keep their keys', () => {
    const { result, ws } = mount();
    openWithState(ws, [alert('al-1', 1), alert('al-2', 2), task('task-1', 'pending', 3)]);
    act(() => result.current.resolveAlert('al-1'));
    act(() => result.current.updateInterventionStatus('task-1', 'in_progress'));
    expect(result.current.state.alerts.map((a) => [a.id, a.resolved])).toEqual([['al-2', false], ['al-1', true]]);
    expect(tasks(result)).toEqual([['task-1', 'in_progress']]);
    act(() => {
      ws.msg({ ...alert('al-1', 51), removed: true });
      ws.msg({ ...task('task-9', 'pending', 52), evicted: ['task-1'] });
    });
    expect(alertIds(result)).toEqual(['al-2']);
    expect(tasks(result)).toEqual([['task-9', 'pending']]);
    expect(ws.sent).toEqual([]);
  });

  it('maxItems bounds alerts and tasks from the state too (the newest kept)', () => {
    const { result, ws } = mount({ maxItems: 2 });
    openWithState(ws, [alert('al-1', 1), alert('al-3', 3), alert('al-2', 2), task('k-1', 'pending', 4),
      task('k-2', 'pending', 5), task('k-3', 'pending', 6)]);
    expect(alertIds(result)).toEqual(['al-3', 'al-2']);
    expect(tasks(result)).toEqual([['k-2', 'pending'], ['k-3', 'pending']]);
  });

  it('state: false: live only, as before (no state=1, phase off)', () => {
    const { result, ws } = mount({ state: false });
    expect(ws.url).toBe(URL);
    act(() => {
      ws.msg(env('analytics_update', {}));
      ws.msg(alert('al-1', 1));
    });
    expect(alertIds(result)).toEqual(['al-1']);
    expect(result.current.statePhase).toBe('off');
  });

  it('onState gets the state; onMessage does not see its events', () => {
    const onState = vi.fn();
    const onMessage = vi.fn();
    const { ws } = mount({ onState, onMessage });
    openWithState(ws, [alert('al-1', 1)]);
    expect(onState).toHaveBeenCalledTimes(1);
    expect(onState.mock.calls[0][0]).toMatchObject({ count: 1, id: 'e1:50-0' });
    expect(onMessage.mock.calls.map((c) => c[0].type)).toEqual(['analytics_update']);
  });
});

describe('useDashboardStream() on the keyed state', () => {
  it('replaces alerts, interventions and metrics with the state (newest first); live envelopes as ever', () => {
    const { result } = renderHook(() => useDashboardStream({ url: URL, WebSocket: FakeWebSocket }));
    const ws = FakeWebSocket.last;
    act(() => ws.open());
    act(() => {
      ws.msg(env('analytics_update', {}));
      ws.msg(ev('alert', 'a-1', { alert_id: 'a-1' }, 2));
      ws.msg(ev('intervention', 'i-1', { intervention_id: 'i-1', status: 'pending' }, 1));
      ws.msg(ev('alert', 'a-2', { alert_id: 'a-2' }, 4));
      ws.msg(ev('metrics_update', 't-1|7day', { tutor_id: 't-1', active_sessions: 2 }, 3));
    });
    expect(result.current.alerts).toEqual([]);
    act(() => ws.msg(marker(4, 5)));
    expect(result.current.statePhase).toBe('complete');
    expect(result.current.alerts.map((m) => m.data.alert_id)).toEqual(['a-2', 'a-1']);
    expect(result.current.interventions.map((m) => m.data.intervention_id)).toEqual(['i-1']);
    expect(result.current.metrics['t-1'].active_sessions).toBe(2);
    act(() => ws.msg(ev('alert', 'a-3', { alert_id: 'a-3' }, 6)));
    expect(result.current.alerts.map((m) => m.data.alert_id)).toEqual(['a-3', 'a-2', 'a-1']);
  });
});
