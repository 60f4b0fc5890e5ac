// WebSocketService alone: a fake socket and Vitest's fake timers (the service uses the
// global timers and Math.random, looked up at call time, so vi.useFakeTimers() and
// vi.spyOn(Math, 'random') drive it directly).
import { afterEach, beforeEach, describe, expect, expectTypeOf, it, vi } from 'vitest';
import {
  WebSocketService,
  compareIds,
  parseStreamId,
  type AlertData,
  type AlertMessage,
  type ConnectionState,
  type RecoveryData,
} from '../src/index.js';
import { FakeWebSocket, env } from './helpers/fake-ws.js';

const URL = 'ws://gw.test/ws/dashboard';

// The live-only protocol (`state: false`): the state phase has its own tests (state.test.ts).
function service(opts: ConstructorParameters<typeof WebSocketService>[0] = {}) {
  return new WebSocketService({ url: URL, WebSocket: FakeWebSocket, token: null, state: false, ...opts });
}

beforeEach(() => {
  FakeWebSocket.reset();
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe('ids', () => {
  it('compares stream ids as ms then seq, numerically', () => {
    expect(compareIds('1764064800123-0', '1764064800123-1')).toBe(-1);
    expect(compareIds('1764064800124-0', '1764064800123-9')).toBe(1);
    expect(compareIds('99-0', '100-0')).toBe(-1); // not lexicographic
    expect(compareIds('5-10', '5-9')).toBe(1);
    expect(compareIds('5-9', '5-9')).toBe(0);
    expect(compareIds('007-1', '7-01')).toBe(0);
    expect(compareIds('abc', '5-9')).toBeNull();
    expect(parseStreamId('12')).toEqual({ epoch: null, ms: '12', seq: '0' });
    expect(parseStreamId('x-1')).toBeNull();
    expect(WebSocketService.compareIds).toBe(compareIds);
  });

  it('ids of one epoch compare as ms then seq; ids of different epochs (or none) are incomparable', () => {
    expect(parseStreamId('3fa91c2e:1764064800123-0')).toEqual({ epoch: '3fa91c2e', ms: '1764064800123', seq: '0' });
    expect(compareIds('3fa91c2e:1764064800123-0', '3fa91c2e:1764064800123-1')).toBe(-1);
    expect(compareIds('3fa91c2e:99-0', '3fa91c2e:100-0')).toBe(-1);
    expect(compareIds('e1:5-10', 'e1:5-9')).toBe(1);
    expect(compareIds('e1:5-9', 'e1:005-9')).toBe(0);
    expect(compareIds('e1:100-0', 'e2:5-0')).toBeNull(); // another history: no order
    expect(compareIds('e1:100-0', '5-0')).toBeNull();
    expect(parseStreamId('x'.repeat(32) + ':1-0')?.epoch).toBe('x'.repeat(32));
    for (const bad of ['x'.repeat(33) + ':1-0', 'E1:1-0', ':1-0', 'e1:', 'e1:1-', 'e-1:1-0', 'e1:1-0-0']) {
      expect(parseStreamId(bad), bad).toBeNull();
    }
  });

  it('resumes from the greatest id of an epoch, and from the latest received across epochs', () => {
    const s = service();
    s.connect();
    const ws = FakeWebSocket.last;
    ws.open();
    ws.msg(env('alert', {}, 'e1:100-1'));
    ws.msg(env('alert', {}, 'e1:99-7')); // older, same history
    expect(s.lastId).toBe('e1:100-1');
    ws.msg(env('alert', {}, 'e2:5-0')); // a new history (Redis restarted empty): incomparable
    expect(s.lastId).toBe('e2:5-0');
    ws.msg(env('alert', {}, '7-0')); // a node still sending plain ids
    expect(s.lastId).toBe('7-0');
    ws.msg(env('alert', {}, '6-0'));
    expect(s.lastId).toBe('7-0');
    ws.drop();
    vi.runOnlyPendingTimers();
    expect(FakeWebSocket.last.url).toBe(`${URL}?since=7-0`);
    s.disconnect();
  });
});

describe('URL', () => {
  it('passes types and since through; the token never', () => {
    const s = service({ token: 'a.b c', types: ['alert', 'intervention'] });
    expect(s.buildUrl()).toBe(`${URL}?auth=frame&types=alert,intervention`);
    s.lastId = '17-3';
    expect(s.buildUrl()).toBe(`${URL}?auth=frame&types=alert,intervention&since=17-3`);
    expect(service({ url: `${URL}?x=1`, types: 'alert, metrics_update', since: '5-0' }).buildUrl())
      .toBe(`${URL}?x=1&types=alert,metrics_update&since=5-0`);
  });

  it("auth: 'query' puts the token in ?token= (gateways without ?auth=frame)", () => {
    const s = service({ token: 'a.b c', types: ['alert'], auth: 'query' });
    expect(s.buildUrl()).toBe(`${URL}?token=a.b%20c&types=alert`);
    s.connect();
    FakeWebSocket.last.open();
    expect(FakeWebSocket.last.sent).toEqual([]);
    expect(s.state).toBe('connected');
    s.disconnect();
  });

  it('defaults to the page host and its ?token=, sent as the first frame', () => {
    const s = new WebSocketService({
      WebSocket: FakeWebSocket,
      location: { protocol: 'https:', host: 'dash.example:8443', search: '?token=jwt&x=1' },
    });
    expect(s.buildUrl()).toBe('wss://dash.example:8443/ws/dashboard?auth=frame&state=1'); // state: true by default
    s.connect();
    const ws = FakeWebSocket.last;
    expect(ws.url).not.toContain('jwt');
    ws.open();
    expect(ws.sent).toEqual([JSON.stringify({ type: 'auth', token: 'jwt' })]);
    // the server says nothing before it accepted the token: connected once it greets
    expect(s.state).toBe('connecting');
    ws.msg(env('analytics_update', {}));
    expect(s.state).toBe('connected');
    s.disconnect();
  });

  it('a token the server refuses (4001 before any greeting) never reads as connected', () => {
    const states: ConnectionState[] = [];
    const s = service({ token: 'bad', onStateChange: (st) => states.push(st) });
    s.connect();
    FakeWebSocket.last.open();
    FakeWebSocket.last.drop(4001);
    expect(states).toEqual(['connecting', 'reconnecting']);
    s.disconnect();
  });

  it('says so at once when there is no WebSocket implementation', () => {
    vi.stubGlobal('WebSocket', undefined);
    const s = new WebSocketService({ url: URL });
    expect(() => s.connect()).toThrow(/no WebSocket implementation/);
    expect(vi.getTimerCount()).toBe(0);
  });
});

describe('messages', () => {
  it('dispatches typed messages by type and to "*"; unsubscribe works', () => {
    const s = service();
    const got: unknown[] = [];
    const off = s.on('alert', (data, msg) => {
      expectTypeOf(data).toEqualTypeOf<AlertData>();
      expectTypeOf(msg.type).toEqualTypeOf<'alert'>();
      got.push(['alert', data.alert_id, msg.id]);
    });
    s.on('*', (_d, msg) => got.push(['*', msg.type]));
    s.on('test_message', (data) => got.push(['test_message', data]));
    s.connect();
    FakeWebSocket.last.open();
    FakeWebSocket.last.msg(env('alert', { alert_id: 'a-1' }, '1-0'));
    FakeWebSocket.last.msg(env('test_message', [1, 2], '2-0'));
    off();
    FakeWebSocket.last.msg(env('alert', { alert_id: 'a-2' }, '3-0'));
    expect(got).toEqual([
      ['alert', 'a-1', '1-0'], ['*', 'alert'],
      ['test_message', [1, 2]], ['*', 'test_message'],
      ['*', 'alert'],
    ]);
    expect(s.lastId).toBe('3-0');
    s.disconnect();
  });

  it('supports extra typed message types', () => {
    const s = new WebSocketService<{ test_message: { n: number } }>({ url: URL, WebSocket: FakeWebSocket });
    const ns: number[] = [];
    s.on('test_message', (data) => { expectTypeOf(data).toEqualTypeOf<{ n: number }>(); ns.push(data.n); });
    s.connect();
    FakeWebSocket.last.open();
    FakeWebSocket.last.msg(env('test_message', { n: 7 }));
    expect(ns).toEqual([7]);
    s.disconnect();
  });

  it('does not dispatch the pong as analytics; reports invalid frames', () => {
    const s = service();
    const analytics: unknown[] = [];
    const pongs: unknown[] = [];
    const invalid: unknown[] = [];
    s.on('analytics_update', (d) => analytics.push(d));
    s.on('client:pong', (d) => pongs.push(d));
    s.on('client:invalid', (d) => invalid.push(d));
    s.connect();
    FakeWebSocket.last.open();
    FakeWebSocket.last.msg(env('analytics_update', { total_tutors: 3 }, '0-0'));
    FakeWebSocket.last.msg(env('analytics_update', { pong: true }));
    FakeWebSocket.last.msg('not json');
    FakeWebSocket.last.msg('{"data":1}');
    expect(analytics).toEqual([{ total_tutors: 3 }]);
    expect(pongs).toEqual([{ pong: true }]);
    expect(invalid).toEqual(['not json', '{"data":1}']);
    s.disconnect();
  });

  it('keeps the greatest id, drops duplicates, reports recovery', () => {
    const s = service();
    const seen: unknown[] = [];
    s.on('alert', (_d, m) => seen.push(['alert', m.id]));
    s.on('client:resync', (d) => { expectTypeOf(d).toEqualTypeOf<RecoveryData>(); seen.push(['resync', d.recovered]); });
    s.on('client:recovered', (d) => seen.push(['recovered', d.replayed]));
    s.on('recovery', (d) => seen.push(['recovery', d.recovered, d.replayed]));
    s.connect();
    FakeWebSocket.last.open();
    FakeWebSocket.last.msg(env('alert', {}, '100-1'));
    FakeWebSocket.last.msg(env('alert', {}, '99-7')); // older (another type's history order)
    FakeWebSocket.last.msg(env('alert', {}, '100-1')); // duplicate
    FakeWebSocket.last.msg(env('recovery', { recovered: true, replayed: 2 }));
    FakeWebSocket.last.msg(env('recovery', { recovered: false, replayed: 0 }));
    expect(seen).toEqual([
      ['alert', '100-1'], ['alert', '99-7'],
      ['recovered', 2], ['recovery', true, 2],
      ['resync', false], ['recovery', false, 0],
    ]);
    expect(s.lastId).toBe('100-1');
    expect(s.stats).toMatchObject({ duplicates: 1, replayed: 2, recoveriesFailed: 1 });
    s.disconnect();
  });

  it('drops a repeat of any of the last 2048 ids, not of an older one', () => {
    const s = service();
    const got: unknown[] = [];
    s.on('alert', (_d, m) => got.push(m.id));
    s.connect();
    FakeWebSocket.last.open();
    for (let i = 1; i <= 2049; i++) FakeWebSocket.last.msg(env('alert', {}, `${i}-0`));
    expect(got).toHaveLength(2049);
    FakeWebSocket.last.msg(env('alert', {}, '2-0')); // among the last 2048: a duplicate
    FakeWebSocket.last.msg(env('alert', {}, '2049-0'));
    FakeWebSocket.last.msg(env('alert', {}, '1-0')); // forgotten: delivered again
    expect(got.slice(2049)).toEqual(['1-0']);
    expect(s.stats).toMatchObject({ received: 2052, duplicates: 2 });
    s.disconnect();
  });

  it('a throwing subscriber does not stop the others', () => {
    const s = service();
    const got: string[] = [];
    s.on('alert', () => { throw new Error('boom'); });
    s.on('alert', () => got.push('second'));
    s.connect();
    FakeWebSocket.last.open();
    FakeWebSocket.last.msg(env('alert', {}));
    expect(got).toEqual(['second']);
    expect(() => vi.runOnlyPendingTimers()).toThrow('boom'); // rethrown asynchronously
    s.disconnect();
  });
});

describe('heartbeat', () => {
  it('pings every 15 s; a pong (or any frame) clears the deadline; silence replaces the socket', () => {
    const s = service();
    const closes: unknown[] = [];
    s.on('client:close', (d) => closes.push(d));
    s.connect();
    const first = FakeWebSocket.last;
    first.open();
    first.msg(env('analytics_update', {}, '0-0'));
    vi.advanceTimersByTime(15000);
    expect(first.sent).toEqual(['ping']);
    vi.advanceTimersByTime(9999);
    first.msg(env('analytics_update', { pong: true }));
    vi.advanceTimersByTime(5001);
    expect(first.sent).toEqual(['ping', 'ping']);
    expect(s.state).toBe('connected');
    vi.advanceTimersByTime(10000); // no answer this time
    expect(first.closed).toEqual({ code: 4000, reason: 'heartbeat timeout' });
    expect(first.detached).toBe(true);
    expect(closes).toEqual([{ code: 4000, reason: 'heartbeat timeout' }]);
    expect(s.state).toBe('reconnecting');
    vi.advanceTimersByTime(500);
    expect(FakeWebSocket.sockets).toHaveLength(2);
    expect(FakeWebSocket.last.url).toBe(`${URL}?since=0-0`);
    s.disconnect();
  });

  it('heartbeatMs: 0 turns it off', () => {
    const s = service({ heartbeatMs: 0 });
    s.connect();
    FakeWebSocket.last.open();
    expect(vi.getTimerCount()).toBe(0);
    s.disconnect();
  });
});

describe('reconnection', () => {
  it('waits random(0, min(30 s, 500 ms * 2^n)) before attempt n (full jitter)', () => {
    const random = vi.spyOn(Math, 'random').mockReturnValue(0.999999);
    const states: ConnectionState[] = [];
    // the WebSocket transport's backoff ('auto' would switch to SSE after a socket that never opened: sse.test.ts)
    const s = service({ transport: 'websocket', onStateChange: (st) => states.push(st) });
    const announced: [number, number, number][] = [];
    s.on('client:reconnecting', (d) => announced.push([d.attempt, d.maxAttempts, d.delayMs]));
    expect([0, 1, 2, 3, 5, 6, 9].map((n) => s.backoffDelay(n)))
      .toEqual([499, 999, 1999, 3999, 15999, 29999, 29999]);
    random.mockReturnValue(0);
    expect(s.backoffDelay(9)).toBe(0);
    random.mockReturnValue(0.5);
    expect(s.backoffDelay(4)).toBe(4000);
    random.mockClear();

    random.mockReturnValue(0.5);
    s.connect();
    FakeWebSocket.last.open();
    FakeWebSocket.last.msg(env('alert', {}, '5-0'));
    FakeWebSocket.last.drop(1001);
    expect(states).toEqual(['connecting', 'connected', 'reconnecting']);
    const schedule = [250, 500, 1000, 2000, 4000, 8000, 15000, 15000, 15000, 15000];
    schedule.forEach((delay, i) => {
      const before = FakeWebSocket.sockets.length;
      vi.advanceTimersByTime(delay - 1);
      expect(FakeWebSocket.sockets, `attempt ${i + 1} not before ${delay} ms`).toHaveLength(before);
      vi.advanceTimersByTime(1);
      expect(FakeWebSocket.sockets, `attempt ${i + 1} at ${delay} ms`).toHaveLength(before + 1);
      expect(s.attempt).toBe(i + 1);
      expect(FakeWebSocket.last.url).toBe(`${URL}?since=5-0`);
      FakeWebSocket.last.drop();
    });
    expect(random).toHaveBeenCalledTimes(10); // a fresh draw for every attempt
    // every attempt is announced (the state stays `reconnecting` between them)
    expect(announced).toEqual(schedule.map((delay, i) => [i + 1, 10, delay]));
    s.disconnect();
  });

  it('gives up after 10 attempts: disconnected, client:gave_up, no timer left; retry() starts over', () => {
    vi.spyOn(Math, 'random').mockReturnValue(0.999999);
    // the WebSocket transport's backoff ('auto' would switch to SSE after a socket that never opened: sse.test.ts)
    const s = service({ transport: 'websocket' });
    const gaveUp: unknown[] = [];
    s.on('client:gave_up', (d) => gaveUp.push(d));
    s.connect();
    FakeWebSocket.last.drop(); // the very first attempt fails too
    for (let i = 0; i < 10; i++) {
      vi.advanceTimersByTime(30000);
      FakeWebSocket.last.drop();
    }
    expect(FakeWebSocket.sockets).toHaveLength(11); // the first try + 10 attempts
    expect(s.state).toBe('disconnected');
    expect(gaveUp).toEqual([{ attempts: 10 }]);
    expect(vi.getTimerCount()).toBe(0);
    vi.advanceTimersByTime(10 * 60_000);
    expect(FakeWebSocket.sockets).toHaveLength(11); // no more attempts by itself

    s.retry();
    expect(FakeWebSocket.sockets).toHaveLength(12);
    expect(s.state).toBe('reconnecting');
    FakeWebSocket.last.open();
    expect(s.state).toBe('connected');
    s.disconnect();
  });

  it('a live event after the greeting resets the attempt count; the greeting alone does not', () => {
    vi.spyOn(Math, 'random').mockReturnValue(0.5);
    // the WebSocket transport's backoff ('auto' would switch to SSE after a socket that never opened: sse.test.ts)
    const s = service({ transport: 'websocket' });
    s.connect();
    FakeWebSocket.last.drop();
    vi.advanceTimersByTime(250);
    FakeWebSocket.last.drop();
    vi.advanceTimersByTime(500);
    expect(s.attempt).toBe(2);
    FakeWebSocket.last.open();
    expect(s.attempt).toBe(2); // an open alone is not proof (a proxy may accept and drop)
    FakeWebSocket.last.msg(env('analytics_update', {}));
    expect(s.attempt).toBe(2); // nor is the greeting (a busy node greets, then closes 1013)
    FakeWebSocket.last.msg(env('analytics_update', { pong: true }));
    FakeWebSocket.last.msg(env('error', { code: 'unknown_message' }));
    expect(s.attempt).toBe(2); // nor a pong or an error reply
    FakeWebSocket.last.msg(env('alert', { n: 1 }, '9-0'));
    expect(s.attempt).toBe(0);
    FakeWebSocket.last.drop();
    expect(vi.getTimerCount()).toBe(1);
    vi.advanceTimersByTime(250); // attempt 0's delay again
    expect(FakeWebSocket.sockets).toHaveLength(4);
    s.disconnect();
  });

  it('when resuming, only an event after the recovery is live; staying up healthyAfterMs past it also counts', () => {
    vi.spyOn(Math, 'random').mockReturnValue(0.5);
    // the WebSocket transport's backoff ('auto' would switch to SSE after a socket that never opened: sse.test.ts)
    const s = service({ transport: 'websocket', since: '5-0', healthyAfterMs: 5000, heartbeatMs: 0 });
    s.connect();
    FakeWebSocket.last.drop();
    vi.advanceTimersByTime(250);
    expect(s.attempt).toBe(1);
    let ws = FakeWebSocket.last;
    ws.open();
    ws.msg(env('analytics_update', {}));
    ws.msg(env('alert', { n: 6 }, '6-0')); // replayed: not proof
    vi.advanceTimersByTime(60_000); // a replay that waits long is not proof either
    ws.drop(1013);
    expect(s.attempt).toBe(2);
    vi.advanceTimersByTime(500);
    ws = FakeWebSocket.last;
    ws.open();
    ws.msg(env('analytics_update', {}));
    ws.msg(env('recovery', { recovered: true, replayed: 0 }));
    vi.advanceTimersByTime(4999);
    expect(s.attempt).toBe(2);
    vi.advanceTimersByTime(1);
    ws.drop(1006); // up 5 s past its recovery, with no event meanwhile: it was healthy
    expect(s.attempt).toBe(1); // the count restarted at 0; this close is attempt 1
    s.disconnect();
  });

  it('a node that greets then closes 1013 is retried with a growing backoff, not hammered', () => {
    vi.spyOn(Math, 'random').mockReturnValue(0.999);
    const s = service({ maxAttempts: 6 });
    const delays: number[] = [];
    s.on('client:reconnecting', (d) => delays.push(d.delayMs));
    s.connect();
    for (let i = 0; i <= 6; i++) {
      const ws = FakeWebSocket.last;
      ws.open();
      ws.msg(env('analytics_update', { total_tutors: 1 })); // greeted...
      ws.drop(1013); // ...then "busy"
      if (i < 6) vi.advanceTimersByTime(delays[i]);
    }
    expect(delays).toEqual([499, 999, 1998, 3996, 7992, 15984]);
    expect(s.state).toBe('disconnected'); // gave up: the Retry button, not a hot loop
    expect(FakeWebSocket.sockets).toHaveLength(7);
  });
});

describe('disconnect()', () => {
  it('clears every timer and the socket listeners, closes with 1000 and stays closed', () => {
    const s = service();
    s.connect();
    const ws = FakeWebSocket.last;
    ws.open();
    vi.advanceTimersByTime(15000); // a ping out: heartbeat interval + pong deadline pending
    expect(vi.getTimerCount()).toBe(2);
    s.disconnect();
    expect(s.state).toBe('disconnected');
    expect(vi.getTimerCount()).toBe(0);
    expect(ws.closed).toEqual({ code: 1000, reason: 'client disconnect' });
    expect(ws.detached).toBe(true);
    vi.advanceTimersByTime(60 * 60_000);
    expect(FakeWebSocket.sockets).toHaveLength(1);
  });

  it('during a backoff wait cancels the pending attempt', () => {
    const s = service();
    s.connect();
    FakeWebSocket.last.drop();
    expect(vi.getTimerCount()).toBe(1);
    s.disconnect();
    expect(vi.getTimerCount()).toBe(0);
    vi.advanceTimersByTime(60_000);
    expect(FakeWebSocket.sockets).toHaveLength(1);
  });

  it('keeps subscribers for a later connect(); destroy() drops them', () => {
    const s = service();
    const got: AlertMessage[] = [];
    s.on('alert', (_d, m) => got.push(m));
    s.onStateChange(() => undefined);
    s.connect();
    s.disconnect();
    s.connect();
    FakeWebSocket.last.open();
    FakeWebSocket.last.msg(env('alert', { n: 1 }, '1-0'));
    expect(got).toHaveLength(1);
    expect(s.listenerCount).toBe(2);
    s.destroy();
    expect(s.listenerCount).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
  });
});

describe('getToken', () => {
  it('is asked before every connection and its token is the one sent', async () => {
    let n = 0;
    const s = service({ token: 'stale', getToken: () => `t${++n}` });
    s.connect();
    expect(FakeWebSocket.last.url).toBe(`${URL}?auth=frame`);
    FakeWebSocket.last.open();
    expect(FakeWebSocket.last.sent).toEqual([JSON.stringify({ type: 'auth', token: 't1' })]);
    FakeWebSocket.last.msg(env('analytics_update', {}, '5-0'));
    FakeWebSocket.last.drop(4001);
    await vi.runOnlyPendingTimersAsync();
    expect(FakeWebSocket.last.url).toBe(`${URL}?auth=frame&since=5-0`);
    FakeWebSocket.last.open();
    expect(FakeWebSocket.last.sent).toEqual([JSON.stringify({ type: 'auth', token: 't2' })]);
    s.destroy();
  });

  it('an async token that arrives after disconnect() opens nothing', async () => {
    let resolve: (t: string) => void = () => {};
    const s = service({ getToken: () => new Promise<string>((r) => { resolve = r; }) });
    s.connect();
    s.connect(); // already opening: no second request
    expect(FakeWebSocket.sockets).toHaveLength(0);
    s.disconnect();
    resolve('late');
    await Promise.resolve();
    expect(FakeWebSocket.sockets).toHaveLength(0);
    expect(s.state).toBe('disconnected');
    expect(vi.getTimerCount()).toBe(0);
  });
});
