// @vitest-environment jsdom
// The keyed state at connect against a real gateway node (the in-process bus): events
// published through POST /api/publish with TutorMax's default keys and tombstones, then a
// client that connects with state=1 (the default) over a WebSocket and over SSE gets them
// as one `state` event (the tombstoned key absent), resumes from the marker's id, and gets
// what is published later live, once; a resume the node cannot recover is followed by the
// state; the drop-in useWebSocket() opens full and applies tombstones and evictions.
// jsdom's own WebSocket does not work inside Vitest's jsdom environment: `ws` is injected.
import WebSocket from 'ws';
import { cleanup, renderHook, waitFor } from '@testing-library/react';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { WebSocketService, type StateData, type WebSocketServiceOptions } from '../src/index.js';
import { useWebSocket } from '../src/react.js';
import { type Gateway, publish as publishTo, startGateway, stop } from './helpers/processes.js';
import { record } from './helpers/recorder.js';

let gw: Gateway;
const services: WebSocketService[] = [];
const ids: Record<string, string> = {};
/** The id of the last event published: where the history (and so the state's marker) stands. */
let head = '';
async function publish(target: Gateway, type: string, data: unknown): Promise<string> {
  const id = await publishTo(target, type, data);
  if (target === gw) head = id;
  return id;
}

beforeAll(async () => {
  gw = await startGateway();
  (globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = false;
  ids.a1 = await publish(gw, 'alert', { id: 'a-1', title: 'No-show spike', status: 'open' });
  ids.a2 = await publish(gw, 'alert', { id: 'a-2', title: 'Rating drop', status: 'open' });
  ids.a1done = await publish(gw, 'alert', { id: 'a-1', title: 'No-show spike', status: 'resolved' }); // tombstone
  ids.t1 = await publish(gw, 'intervention', { id: 'task-1', title: 'Coaching call', status: 'pending' });
  ids.m1 = await publish(gw, 'metrics_update', { tutor_id: 't-1', window: '7day', avg_rating: 4.1 });
});
afterEach(() => {
  services.splice(0).forEach((s) => s.destroy());
  cleanup();
});
afterAll(async () => { await stop(gw); });

function connect(opts: WebSocketServiceOptions = {}, target: Gateway = gw) {
  const svc = new WebSocketService({ url: target.wsUrl, WebSocket, token: null, ...opts });
  services.push(svc);
  const rec = record(svc);
  const states: StateData[] = [];
  svc.on('state', (d) => { states.push(d); });
  svc.connect();
  return { svc, rec, states };
}

const current = (s: StateData) => s.events.map((e) => [e.type, e.key, e.id]).sort();
const EXPECTED = () => [
  ['alert', 'a-2', ids.a2], ['intervention', 'task-1', ids.t1], ['metrics_update', 't-1|7day', ids.m1],
].sort();

describe('the keyed state from a real gateway', () => {
  for (const transport of ['websocket', 'sse'] as const) {
    it(`${transport}: one state event with the current key of each; the marker's id is the position; then live, once`, async () => {
      const { svc, rec, states } = connect({ transport });
      await rec.waitFor('the state', () => states.length === 1);
      expect(rec.urls[0]).toMatch(/[?&]state=1$/);
      expect(svc.transport).toBe(transport);
      expect(current(states[0])).toEqual(EXPECTED()); // a-1 was resolved: not current
      expect(states[0].count).toBe(3);
      expect(states[0].id).toBe(head); // where the history stands
      expect(svc.lastId).toBe(head);
      expect(svc.statePhase).toBe('complete');
      expect(rec.messages.map((m) => m.type)).toEqual(['analytics_update']); // state events are not messages
      expect(rec.messages[0].id).toBeUndefined(); // the greeting carries no position with state=1

      const live = await publish(gw, 'alert', { id: 'a-3', title: 'Late', status: 'open' });
      await rec.waitFor('the live alert', () => rec.of('alert').length === 1);
      await new Promise((r) => setTimeout(r, 200)); // nothing more comes
      expect(rec.messages.slice(1).map((m) => [m.type, m.key, m.id])).toEqual([['alert', 'a-3', live]]);
      expect(svc.lastId).toBe(live);
      expect(svc.stats.duplicates).toBe(0);
      // the tombstone, live: an ordinary message carrying removed: true
      await publish(gw, 'alert', { id: 'a-3', title: 'Late', status: 'resolved' });
      await rec.waitFor('the tombstone', () => rec.of('alert').length === 2);
      expect(rec.of('alert')[1]).toMatchObject({ key: 'a-3', removed: true });
      svc.disconnect();
    });
  }

  it('a resume the node cannot recover (recovered: false) is followed by the state', async () => {
    const { svc, rec, states } = connect({ since: 'ffffffff:1-0' }); // another history's id
    const resyncs: unknown[] = [];
    svc.on('client:resync', (d) => { resyncs.push(d); });
    await rec.waitFor('the state', () => states.length === 1);
    expect(rec.urls[0]).toBe(`${gw.wsUrl}?since=ffffffff%3A1-0&state=1`);
    expect(resyncs).toHaveLength(1);
    expect(current(states[0]).map((e) => e[1])).toEqual(['a-2', 'task-1', 't-1|7day']);
    expect(svc.lastId).toBe(states[0].id);
    svc.disconnect();
  });

  it('state: false: live only, the greeting with its position, as before', async () => {
    const { svc, rec, states } = connect({ state: false });
    await rec.waitFor('the greeting', () => rec.messages.length === 1);
    await new Promise((r) => setTimeout(r, 200));
    expect(states).toEqual([]);
    expect(rec.messages[0].id).toMatch(/:\d+-\d+$/);
    expect(svc.statePhase).toBe('off');
    svc.disconnect();
  });
});

describe('the drop-in useWebSocket() against a real gateway', () => {
  it('opens full (no REST prefetch), then applies tombstones live', async () => {
    const { result, unmount } = renderHook(() => useWebSocket({ url: gw.wsUrl, WebSocket }));
    await waitFor(() => expect(result.current.statePhase).toBe('complete'), { timeout: 10000 });
    const s = result.current.state;
    expect(s.alerts.map((a) => a.id)).toEqual(['a-2']);
    expect(s.interventionTasks.map((t) => [t.id, t.status])).toEqual([['task-1', 'pending']]);
    expect(s.tutorMetrics.map((m) => [m.tutor_id, m.window, m.avg_rating])).toEqual([['t-1', '7day', 4.1]]);

    await publish(gw, 'intervention', { id: 'task-1', title: 'Coaching call', status: 'completed' }); // tombstone
    await publish(gw, 'alert', { id: 'a-4', title: 'New', status: 'open' });
    await waitFor(() => expect(result.current.state.alerts.map((a) => a.id)).toEqual(['a-4', 'a-2']), { timeout: 10000 });
    expect(result.current.state.interventionTasks).toEqual([]);
    unmount();
  });

  it('drops what the state evicted (STATE_MAX_KEYS)', async () => {
    const small = await startGateway({ env: { STATE_MAX_KEYS: '2' } });
    try {
      await publish(small, 'alert', { id: 'b-1', title: 'one' });
      await publish(small, 'alert', { id: 'b-2', title: 'two' });
      const { result, unmount } = renderHook(() => useWebSocket({ url: small.wsUrl, WebSocket }));
      await waitFor(() => expect(result.current.statePhase).toBe('complete'), { timeout: 10000 });
      expect(result.current.state.alerts.map((a) => a.id)).toEqual(['b-2', 'b-1']);
      await publish(small, 'alert', { id: 'b-3', title: 'three' }); // evicts b-1, the least recently updated
      await waitFor(() => expect(result.current.state.alerts.map((a) => a.id)).toEqual(['b-3', 'b-2']), { timeout: 10000 });
      unmount();
    } finally {
      await stop(small);
    }
  });
});
