// The keyed state at connect (`state: true`, the default: `?state=1`): the URL on both
// transports, the state phase (greeting, state events, the `state` marker -> one `state`
// event; the marker's id is the resume position), a connection cut in that phase (the next
// one is fresh), resumes that recover (no state) and that do not (the state follows the
// `recovery`), tombstones and evictions as ordinary messages, and a gateway without keyed
// state. A fake socket, a fake fetch, Vitest's fake timers.
import { afterEach, beforeEach, describe, expect, expectTypeOf, it, vi } from 'vitest';
import {
  WebSocketService,
  type ServerMessage,
  type StateData,
  type StatePhase,
  type WebSocketServiceOptions,
} from '../src/index.js';
import { FakeWebSocket, env } from './helpers/fake-ws.js';
import { FakeFetch, flush, sse } from './helpers/fake-fetch.js';

const URL = 'ws://gw.test/ws/dashboard';
const SSE_URL = 'http://gw.test/sse/dashboard';

let net: FakeFetch;

beforeEach(() => {
  FakeWebSocket.reset();
  net = new FakeFetch();
  vi.useFakeTimers();
  vi.stubGlobal('fetch', () => Promise.reject(new Error('the real fetch was called')));
});
afterEach(() => {
  vi.useRealTimers();
});

function service(opts: WebSocketServiceOptions = {}) {
  const s = new WebSocketService({ url: URL, WebSocket: FakeWebSocket, fetch: net.fetch, token: null, ...opts });
  const got: ServerMessage[] = [];
  const states: StateData[] = [];
  const markers: (ServerMessage | null)[] = [];
  const phases: StatePhase[] = [];
  s.on('*', (_d, m) => { got.push(m); });
  s.on('state', (d, m) => { states.push(d); markers.push(m); });
  s.on('client:state_phase', (p) => { phases.push(p); });
  return { s, got, states, markers, phases };
}

/** A keyed event as the state (or the live stream) carries it. */
const keyed = (type: string, key: string, data: unknown, id: string, extra: Record<string, unknown> = {}) =>
  ({ ...env(type, data, id), key, ...extra });
const marker = (count: number, id: string) => env('state', { complete: true, count }, id);
const greeting = () => env('analytics_update', { total_tutors: 3 }); // no id with state=1

describe('the URL', () => {
  it('carries state=1 by default, on the WebSocket and on the SSE URL, after types and since', () => {
    const { s } = service({ types: ['alert'] });
    expect(s.options.state).toBe(true);
    expect(s.buildUrl()).toBe(`${URL}?types=alert&state=1`);
    expect(s.buildUrl('sse')).toBe(`${SSE_URL}?types=alert&state=1`);
    s.lastId = 'e1:5-0';
    expect(s.buildUrl()).toBe(`${URL}?types=alert&since=e1%3A5-0&state=1`);
    expect(s.buildUrl('sse')).toBe(`${SSE_URL}?types=alert&since=e1%3A5-0&state=1`);
  });

  it('state: false asks for no state, on either transport; the phase is off', () => {
    const { s, states } = service({ state: false, token: 'jwt' });
    expect(s.buildUrl()).toBe(`${URL}?auth=frame`);
    expect(s.buildUrl('sse')).toBe(SSE_URL);
    expect(s.statePhase).toBe('off');
    s.connect();
    expect(FakeWebSocket.last.url).not.toContain('state');
    s.disconnect();
    expect(states).toEqual([]);
  });

  it('the SSE fallback asks for state too', async () => {
    const { s } = service();
    s.connect();
    FakeWebSocket.last.drop(); // failed before it opened: SSE at once
    vi.advanceTimersByTime(0);
    await flush();
    expect(net.requests.map((r) => r.url)).toEqual([`${SSE_URL}?state=1`]);
    s.disconnect();
  });
});

describe('the state phase', () => {
  it('greeting, state events, marker: ONE state event with all of them; lastId is the marker id; then live', () => {
    const { s, got, states, markers, phases } = service();
    const alerts: unknown[] = [];
    s.on('alert', (d) => { alerts.push(d); });
    expect(s.statePhase).toBe('loading'); // asked for, not there yet
    s.connect();
    const ws = FakeWebSocket.last;
    ws.open();
    ws.msg(greeting());
    expect(s.state).toBe('connected');
    expect(got.map((m) => m.type)).toEqual(['analytics_update']); // the greeting is a message
    const events = [
      keyed('alert', 'a-2', { id: 'a-2' }, 'e1:20-0'),
      keyed('metrics_update', 't-1|7day', { tutor_id: 't-1', window: '7day' }, 'e1:31-0'),
      keyed('alert', 'a-1', { id: 'a-1' }, 'e1:10-0'), // in no particular order
      keyed('intervention', 'i-1', { id: 'i-1' }, 'e1:25-0', { evicted: ['i-0'] }),
    ];
    for (const e of events) ws.msg(e);
    // collected, not dispatched: not messages, not a position, not counted as received
    expect(got).toHaveLength(1);
    expect(alerts).toEqual([]);
    expect(s.lastId).toBeNull();
    expect(s.stats.received).toBe(1);
    expect(states).toEqual([]);
    expect(s.statePhase).toBe('loading');

    ws.msg(marker(4, 'e1:31-0')); // the position: here the id of the newest state event
    expect(states).toEqual([{ events, count: 4, id: 'e1:31-0' }]);
    expect(markers[0]).toMatchObject({ type: 'state', id: 'e1:31-0' });
    expect(s.lastId).toBe('e1:31-0');
    expect(s.statePhase).toBe('complete');
    expect(phases).toEqual(['complete']);
    expect(got.map((m) => m.type)).toEqual(['analytics_update']); // the marker is no message either
    expect(s.stats.duplicates).toBe(0);

    ws.msg(keyed('alert', 'a-3', { id: 'a-3' }, 'e1:32-0'));
    expect(got.map((m) => [m.type, m.id])).toEqual([['analytics_update', undefined], ['alert', 'e1:32-0']]);
    expect(alerts).toEqual([{ id: 'a-3' }]);
    expect(s.lastId).toBe('e1:32-0');
    ws.drop();
    vi.runOnlyPendingTimers();
    expect(FakeWebSocket.last.url).toBe(`${URL}?since=e1%3A32-0&state=1`);
    s.disconnect();
  });

  it('the event is typed; its msg is the marker', () => {
    const s = new WebSocketService({ url: URL, WebSocket: FakeWebSocket });
    s.on('state', (data, msg) => {
      expectTypeOf(data).toEqualTypeOf<StateData>();
      expectTypeOf(data.events[0].key).toEqualTypeOf<string | undefined>();
      expectTypeOf(msg).toEqualTypeOf<ServerMessage | null>();
    });
    s.on('client:state_phase', (p) => { expectTypeOf(p).toEqualTypeOf<StatePhase>(); });
    expectTypeOf(s.statePhase).toEqualTypeOf<StatePhase>();
  });

  it('an empty state is one state event with no events; the marker id is the position even when seen before', () => {
    const { s, states } = service();
    s.connect();
    const ws = FakeWebSocket.last;
    ws.open();
    ws.msg(greeting());
    ws.msg(marker(0, 'e1:0-0'));
    expect(states).toEqual([{ events: [], count: 0, id: 'e1:0-0' }]);
    expect(s.lastId).toBe('e1:0-0');
    s.disconnect();
  });

  it('pongs and error replies during the state phase are dispatched as ever, not collected', () => {
    const { s, got, states } = service({ heartbeatMs: 1000 });
    const pongs: unknown[] = [];
    const errors: unknown[] = [];
    s.on('client:pong', (d) => { pongs.push(d); });
    s.on('error', (d) => { errors.push(d); });
    s.connect();
    const ws = FakeWebSocket.last;
    ws.open();
    ws.msg(greeting());
    ws.msg(keyed('alert', 'a-1', { id: 'a-1' }, 'e1:1-0'));
    vi.advanceTimersByTime(1000);
    expect(ws.sent).toEqual(['ping']);
    ws.msg(env('analytics_update', { pong: true }));
    ws.msg(env('error', { code: 'unknown_message', message: '?' }));
    ws.msg(keyed('alert', 'a-2', { id: 'a-2' }, 'e1:2-0'));
    ws.msg(marker(2, 'e1:2-0'));
    expect(pongs).toHaveLength(1);
    expect(errors).toEqual([{ code: 'unknown_message', message: '?' }]);
    expect(states[0].events.map((e) => e.key)).toEqual(['a-1', 'a-2']);
    expect(got.map((m) => m.type)).toEqual(['analytics_update', 'error']);
    s.disconnect();
  });

  it('a marker outside the state phase is not dispatched (a reserved type)', () => {
    const { s, got, states } = service();
    s.connect();
    const ws = FakeWebSocket.last;
    ws.open();
    ws.msg(greeting());
    ws.msg(marker(0, 'e1:1-0'));
    ws.msg(marker(0, 'e1:2-0'));
    expect(states).toHaveLength(1);
    expect(got.map((m) => m.type)).toEqual(['analytics_update']);
    expect(s.lastId).toBe('e1:1-0');
    s.disconnect();
  });

  it('the marker is no proof of health; the first live event after it is', () => {
    vi.spyOn(Math, 'random').mockReturnValue(0.5);
    const { s } = service({ transport: 'websocket' });
    s.connect();
    FakeWebSocket.last.drop();
    vi.advanceTimersByTime(250);
    expect(s.attempt).toBe(1);
    const ws = FakeWebSocket.last;
    ws.open();
    ws.msg(greeting());
    ws.msg(keyed('alert', 'a-1', { id: 'a-1' }, 'e1:1-0'));
    ws.msg(marker(1, 'e1:1-0'));
    expect(s.attempt).toBe(1); // a busy node may send its state, then close
    ws.msg(keyed('alert', 'a-2', { id: 'a-2' }, 'e1:2-0'));
    expect(s.attempt).toBe(0);
    s.disconnect();
  });

  it('tombstones and evictions are ordinary messages, their fields passed through', () => {
    const { s, got } = service();
    s.connect();
    const ws = FakeWebSocket.last;
    ws.open();
    ws.msg(greeting());
    ws.msg(marker(0, 'e1:1-0'));
    ws.msg(keyed('alert', 'a-1', { id: 'a-1', status: 'resolved' }, 'e1:2-0', { removed: true }));
    ws.msg(keyed('metrics_update', 't-2|7day', { tutor_id: 't-2', window: '7day' }, 'e1:3-0', { evicted: ['t-1|7day'] }));
    expect(got.slice(1).map((m) => [m.type, m.key, m.removed, m.evicted])).toEqual([
      ['alert', 'a-1', true, undefined],
      ['metrics_update', 't-2|7day', undefined, ['t-1|7day']],
    ]);
    expect(s.lastId).toBe('e1:3-0');
    s.disconnect();
  });
});

describe('a connection cut in the state phase', () => {
  it('drops what it collected; the next connection is fresh (state=1, no since) and loads it again', () => {
    vi.spyOn(Math, 'random').mockReturnValue(0);
    const { s, got, states, phases } = service();
    s.connect();
    const first = FakeWebSocket.last;
    first.open();
    first.msg(greeting());
    first.msg(keyed('alert', 'a-1', { id: 'a-1' }, 'e1:9-0'));
    first.msg(keyed('alert', 'a-2', { id: 'a-2' }, 'e1:7-0'));
    first.drop(1013);
    expect(s.lastId).toBeNull(); // no position: the state events' ids are not one
    expect(s.statePhase).toBe('loading');
    vi.advanceTimersByTime(0);
    const second = FakeWebSocket.last;
    expect(second).not.toBe(first);
    expect(second.url).toBe(`${URL}?state=1`);
    second.open();
    second.msg(greeting());
    second.msg(keyed('alert', 'a-2', { id: 'a-2' }, 'e1:7-0'));
    second.msg(marker(1, 'e1:12-0'));
    expect(states).toEqual([{ events: [keyed('alert', 'a-2', { id: 'a-2' }, 'e1:7-0')], count: 1, id: 'e1:12-0' }]);
    expect(got.map((m) => m.type)).toEqual(['analytics_update', 'analytics_update']);
    expect(phases).toEqual(['complete']); // loading all along, then complete
    s.disconnect();
  });

  it('also after disconnect(): connect() starts fresh', () => {
    const { s } = service();
    s.connect();
    FakeWebSocket.last.open();
    FakeWebSocket.last.msg(greeting());
    FakeWebSocket.last.msg(keyed('alert', 'a-1', { id: 'a-1' }, 'e1:9-0'));
    s.disconnect();
    s.connect();
    expect(FakeWebSocket.last.url).toBe(`${URL}?state=1`);
    s.disconnect();
  });
});

describe('resuming', () => {
  it('recovered: true gets no state: the live stream goes on, the phase stays complete', () => {
    vi.spyOn(Math, 'random').mockReturnValue(0);
    const { s, got, states, phases } = service();
    s.connect();
    const first = FakeWebSocket.last;
    first.open();
    first.msg(greeting());
    first.msg(marker(0, 'e1:5-0'));
    first.drop();
    vi.advanceTimersByTime(0);
    const second = FakeWebSocket.last;
    expect(second.url).toBe(`${URL}?since=e1%3A5-0&state=1`);
    second.open();
    second.msg(env('analytics_update', {}));
    second.msg(keyed('alert', 'a-1', { id: 'a-1' }, 'e1:6-0')); // replayed
    second.msg(env('recovery', { recovered: true, replayed: 1 }));
    second.msg(keyed('alert', 'a-2', { id: 'a-2' }, 'e1:7-0')); // live
    expect(got.map((m) => [m.type, m.id])).toEqual([
      ['analytics_update', undefined], ['analytics_update', undefined], ['alert', 'e1:6-0'],
      ['recovery', undefined], ['alert', 'e1:7-0'],
    ]);
    expect(states).toHaveLength(1);
    expect(s.statePhase).toBe('complete');
    expect(phases).toEqual(['complete']);
    expect(s.lastId).toBe('e1:7-0');
    s.disconnect();
  });

  it('recovered: false is followed by the state: one state event, the marker id the position', () => {
    vi.spyOn(Math, 'random').mockReturnValue(0);
    const { s, got, states, phases } = service({ since: 'e0:99-0' });
    const resyncs: unknown[] = [];
    s.on('client:resync', (d) => { resyncs.push(d); });
    s.connect();
    const ws = FakeWebSocket.last;
    expect(ws.url).toBe(`${URL}?since=e0%3A99-0&state=1`);
    ws.open();
    ws.msg(env('analytics_update', {}));
    ws.msg(env('recovery', { recovered: false, replayed: 0 }));
    expect(resyncs).toHaveLength(1);
    expect(s.statePhase).toBe('loading');
    expect(s.lastId).toBeNull(); // what it had is to be replaced, not resumed from
    ws.msg(keyed('intervention', 'i-1', { id: 'i-1' }, 'e1:3-0'));
    ws.msg(marker(1, 'e1:4-0'));
    expect(states).toEqual([{ events: [keyed('intervention', 'i-1', { id: 'i-1' }, 'e1:3-0')], count: 1, id: 'e1:4-0' }]);
    expect(got.map((m) => m.type)).toEqual(['analytics_update', 'recovery']);
    expect(s.lastId).toBe('e1:4-0');
    expect(phases).toEqual(['complete']);
    ws.drop();
    vi.advanceTimersByTime(0);
    expect(FakeWebSocket.last.url).toBe(`${URL}?since=e1%3A4-0&state=1`);
    s.disconnect();
  });

  it('cut between recovered: false and the marker: the next connection is fresh', () => {
    vi.spyOn(Math, 'random').mockReturnValue(0);
    const { s, states } = service({ since: 'e1:1-0' });
    s.connect();
    const ws = FakeWebSocket.last;
    ws.open();
    ws.msg(env('analytics_update', {}));
    ws.msg(keyed('alert', 'a-1', { id: 'a-1' }, 'e1:2-0')); // replayed, then the replay failed
    ws.msg(env('recovery', { recovered: false, replayed: 1 }));
    ws.msg(keyed('alert', 'a-1', { id: 'a-1' }, 'e1:2-0'));
    ws.drop();
    vi.advanceTimersByTime(0);
    expect(FakeWebSocket.last.url).toBe(`${URL}?state=1`);
    expect(states).toEqual([]);
    s.disconnect();
  });

  it('a resume that recovers before any state came: off (none is coming)', () => {
    const { s, states } = service({ since: 'e1:1-0' });
    s.connect();
    FakeWebSocket.last.open();
    FakeWebSocket.last.msg(env('analytics_update', {}));
    FakeWebSocket.last.msg(env('recovery', { recovered: true, replayed: 0 }));
    expect(s.statePhase).toBe('off');
    expect(states).toEqual([]);
    s.disconnect();
  });
});

describe('a gateway without keyed state', () => {
  it('greets a fresh connection with its position (an id): off, and everything is live', () => {
    const { s, got, states, phases } = service();
    s.connect();
    const ws = FakeWebSocket.last;
    ws.open();
    ws.msg(env('analytics_update', {}, 'e1:5-0'));
    ws.msg(env('alert', { id: 'a-1' }, 'e1:6-0'));
    expect(s.statePhase).toBe('off');
    expect(phases).toEqual(['off']);
    expect(got.map((m) => m.type)).toEqual(['analytics_update', 'alert']);
    expect(states).toEqual([]);
    expect(s.lastId).toBe('e1:6-0');
    // ...and a failed resume there is not followed by a state either
    ws.drop();
    vi.runOnlyPendingTimers();
    const next = FakeWebSocket.last;
    next.open();
    next.msg(env('analytics_update', {}));
    next.msg(env('recovery', { recovered: false, replayed: 0 }));
    next.msg(env('alert', { id: 'a-2' }, 'e2:1-0'));
    expect(got.map((m) => m.type)).toEqual(['analytics_update', 'alert', 'analytics_update', 'recovery', 'alert']);
    expect(s.statePhase).toBe('off');
    s.disconnect();
  });
});

describe('over Server-Sent Events', () => {
  it('state events without id: lines, the marker with one: the same state event', async () => {
    const { s, got, states } = service({ transport: 'sse' });
    s.connect();
    await flush();
    expect(net.last.url).toBe(`${SSE_URL}?state=1`);
    const events = [
      keyed('alert', 'a-1', { id: 'a-1' }, 'e1:4-0'),
      keyed('metrics_update', 't\\|1|7day', { tutor_id: 't|1', window: '7day' }, 'e1:2-0'),
    ];
    net.last.push(`data: ${JSON.stringify(greeting())}\n\n`);
    for (const e of events) net.last.push(`data: ${JSON.stringify(e)}\n\n`); // no id: line
    net.last.push(sse(marker(2, 'e1:4-0')));
    await flush();
    expect(states).toEqual([{ events, count: 2, id: 'e1:4-0' }]);
    expect(got.map((m) => m.type)).toEqual(['analytics_update']);
    expect(s.lastId).toBe('e1:4-0');
    net.last.push(sse(keyed('alert', 'a-1', { id: 'a-1', status: 'resolved' }, 'e1:5-0', { removed: true })));
    await flush();
    expect(got.map((m) => [m.type, m.removed])).toEqual([['analytics_update', undefined], ['alert', true]]);
    net.last.end();
    await flush();
    vi.runOnlyPendingTimers();
    await flush();
    expect(net.last.url).toBe(`${SSE_URL}?since=e1%3A5-0&state=1`);
    s.disconnect();
  });

  it('a stream cut before the marker: the next request is fresh', async () => {
    vi.spyOn(Math, 'random').mockReturnValue(0);
    const { s, states } = service({ transport: 'sse' });
    s.connect();
    await flush();
    net.last.push(`data: ${JSON.stringify(greeting())}\n\n`);
    net.last.push(`data: ${JSON.stringify(keyed('alert', 'a-1', { id: 'a-1' }, 'e1:4-0'))}\n\n`);
    await flush();
    net.last.end();
    await flush();
    vi.advanceTimersByTime(0);
    await flush();
    expect(net.requests.map((r) => r.url)).toEqual([`${SSE_URL}?state=1`, `${SSE_URL}?state=1`]);
    expect(states).toEqual([]);
    s.disconnect();
  });
});
