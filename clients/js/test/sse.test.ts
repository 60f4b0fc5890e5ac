// The Server-Sent Events transport (GET /sse/dashboard read with fetch) and the fallback
// to it: the event-stream parser, the service on SSE (URL, Authorization header, the same
// message handling as the WebSocket, event: close, refusals, liveness), and `auto`
// switching to SSE after a WebSocket that never opened. A fake fetch whose body the test
// writes (helpers/fake-fetch.ts), a fake socket, Vitest's fake timers.
import fs from 'node:fs';
import vm from 'node:vm';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  SseParser,
  WebSocketService,
  sseUrlOf,
  type ServerMessage,
  type SseEvent,
  type Transport,
  type WebSocketServiceOptions,
} from '../src/index.js';
import { PAGE_BUNDLE } from '../scripts/build.mjs';
import { FakeWebSocket, env } from './helpers/fake-ws.js';
import { FakeFetch, flush, sse } from './helpers/fake-fetch.js';

const WS_URL = 'ws://gw.test/ws/dashboard';
const SSE_URL = 'http://gw.test/sse/dashboard';

let net: FakeFetch;

beforeEach(() => {
  FakeWebSocket.reset();
  net = new FakeFetch();
  vi.useFakeTimers();
  // never the real network, whatever a test forgets to inject
  vi.stubGlobal('fetch', () => Promise.reject(new Error('the real fetch was called')));
});
afterEach(() => {
  vi.useRealTimers();
});

// The live-only protocol (`state: false`): the state phase over SSE is in state.test.ts.
function service(opts: WebSocketServiceOptions = {}) {
  const s = new WebSocketService({ url: WS_URL, WebSocket: FakeWebSocket, fetch: net.fetch, token: null, state: false, ...opts });
  const got: ServerMessage[] = [];
  const closes: unknown[] = [];
  const transports: (Transport | null)[] = [];
  s.on('*', (_d, m) => { got.push(m); });
  s.on('client:close', (d) => { closes.push(d); });
  s.on('client:transport', (t) => { transports.push(t); });
  return { s, got, closes, transports };
}

// ---------------------------------------------------------------------------- parser

function parse(chunks: string[]) {
  const events: SseEvent[] = [];
  const comments: string[] = [];
  const retries: number[] = [];
  const p = new SseParser({
    event: (e) => events.push(e),
    comment: (c) => comments.push(c),
    retry: (ms) => retries.push(ms),
  });
  for (const c of chunks) p.feed(c);
  return { events, comments, retries, p };
}

describe('SseParser (the HTML standard\'s event-stream interpretation)', () => {
  it('one event per blank line; data lines joined with \\n; one leading space dropped', () => {
    const { events } = parse(['data: a\ndata:b\ndata:  c\ndata\n\n', 'data: second\n\n']);
    expect(events).toEqual([
      { type: 'message', data: 'a\nb\n c\n', lastEventId: '' },
      { type: 'message', data: 'second', lastEventId: '' },
    ]);
  });

  it('a line split across chunks, anywhere', () => {
    const text = 'id: 7-0\ndata: {"type":"alert"}\n\n';
    for (let cut = 1; cut < text.length; cut++) {
      const { events } = parse([text.slice(0, cut), text.slice(cut)]);
      expect(events, `cut at ${cut}`).toEqual([{ type: 'message', data: '{"type":"alert"}', lastEventId: '7-0' }]);
    }
    const { events } = parse(text.split(''));
    expect(events).toEqual([{ type: 'message', data: '{"type":"alert"}', lastEventId: '7-0' }]);
  });

  it('CRLF, lone CR and LF all end lines; a CRLF split between chunks ends one line, not two', () => {
    expect(parse(['data: a\r\ndata: b\rdata: c\n\r\n']).events.map((e) => e.data)).toEqual(['a\nb\nc']);
    // "\r" ends one chunk, "\n" opens the next: still one line end, so no blank line between
    const split = parse(['data: a\r', '\ndata: b\r', '\n\r', '\n']);
    expect(split.events.map((e) => e.data)).toEqual(['a\nb']);
    // a lone CR at the end of a chunk, then another line: the CR was a line end
    const lone = parse(['data: a\r', 'data: b\r\r']);
    expect(lone.events.map((e) => e.data)).toEqual(['a\nb']);
  });

  it('comments are reported and dispatch nothing; unknown fields are ignored', () => {
    const { events, comments } = parse([': ping\n', ':\n\n', 'foo: bar\nfoo\n\n', 'data: x\n: in the middle\n\n']);
    expect(comments).toEqual([' ping', '', ' in the middle']);
    expect(events.map((e) => e.data)).toEqual(['x']);
  });

  it('id sets the last event id, kept by later events; an id with NUL is ignored', () => {
    const { events, p } = parse(['id: 1-0\ndata: a\n\n', 'data: b\n\n', 'id: 2\u00000\ndata: c\n\n', 'id\ndata: d\n\n']);
    expect(events.map((e) => [e.data, e.lastEventId])).toEqual([['a', '1-0'], ['b', '1-0'], ['c', '1-0'], ['d', '']]);
    expect(p.lastEventId).toBe('');
  });

  it('event sets the type of that event only; retry reports digits only', () => {
    const { events, retries } = parse([
      'event: close\ndata: {"code":4001,"reason":"token expired"}\n\n', 'data: next\n\n',
      'retry: 3000\nretry: 2s\nretry:\n\n',
    ]);
    expect(events.map((e) => [e.type, e.data])).toEqual([['close', '{"code":4001,"reason":"token expired"}'], ['message', 'next']]);
    expect(retries).toEqual([3000]);
  });

  it('an event without data dispatches nothing; what is pending at the end is dropped', () => {
    const { events, p } = parse(['event: close\n\n', 'id: 9-0\n\n', 'data: unfinished\n']);
    expect(events).toEqual([]);
    expect(p.lastEventId).toBe('9-0');
    p.end();
    p.feed('\n');
    expect(events).toEqual([]);
  });

  it('stop() delivers nothing more, even from the rest of the chunk', () => {
    const events: string[] = [];
    const p: SseParser = new SseParser({ event: (e) => { events.push(e.data); p.stop(); } });
    p.feed('data: 1\n\ndata: 2\n\n');
    p.feed('data: 3\n\n');
    expect(events).toEqual(['1']);
  });
});

// ---------------------------------------------------------------------------- URLs

describe('the SSE URL', () => {
  it('is the WebSocket URL with http(s): and /sse/dashboard, the query kept', () => {
    expect(sseUrlOf('ws://gw.test/ws/dashboard')).toBe('http://gw.test/sse/dashboard');
    expect(sseUrlOf('wss://gw.example:8443/prefix/ws/dashboard?x=1')).toBe('https://gw.example:8443/prefix/sse/dashboard?x=1');
    expect(sseUrlOf('WSS://h/ws/dashboard/')).toBe('https://h/sse/dashboard/');
    expect(sseUrlOf('/ws/dashboard')).toBe('/sse/dashboard');
    expect(sseUrlOf('ws://h/socket')).toBeNull();
    expect(sseUrlOf('ws://h/ws/dashboard/more')).toBeNull();
  });

  it('carries types and since; never the token, nor auth=frame', () => {
    const { s } = service({ token: 'jwt', types: ['alert', 'intervention'], since: '5-0' });
    expect(s.buildUrl('sse')).toBe(`${SSE_URL}?types=alert,intervention&since=5-0`);
    expect(s.buildUrl()).toBe(`${WS_URL}?auth=frame&types=alert,intervention&since=5-0`); // the next attempt: WebSocket
    const q = service({ token: 'jwt', auth: 'query', transport: 'sse' });
    expect(q.s.buildUrl()).toBe(SSE_URL);
    expect(service({ sseUrl: 'https://events.test/stream' }).s.buildUrl('sse')).toBe('https://events.test/stream');
    const page = new WebSocketService({ location: { protocol: 'https:', host: 'dash.example', search: '?token=t' } });
    expect(page.buildUrl('sse')).toBe('https://dash.example/sse/dashboard?state=1'); // state: true by default
  });

  it("transport: 'sse' needs fetch and an SSE URL, and says so at connect()", () => {
    vi.stubGlobal('fetch', undefined);
    expect(() => new WebSocketService({ url: WS_URL, transport: 'sse' }).connect()).toThrow(/needs fetch/);
    expect(() => new WebSocketService({ url: 'ws://h/socket', transport: 'sse', fetch: net.fetch }).connect())
      .toThrow(/needs an SSE URL/);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('importing and constructing touches no fetch, window or TextDecoder (server rendering)', () => {
    const touched: string[] = [];
    const sandbox: Record<string, unknown> = { URLSearchParams };
    for (const name of ['fetch', 'window', 'TextDecoder', 'AbortController', 'ReadableStream', 'location', 'WebSocket']) {
      Object.defineProperty(sandbox, name, { get: () => { touched.push(name); return undefined; }, configurable: true });
    }
    vm.createContext(sandbox);
    vm.runInContext(fs.readFileSync(PAGE_BUNDLE, 'utf8'), sandbox);
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const WSS = sandbox.WebSocketService as any;
    const s = new WSS({ url: WS_URL, location: null, token: null });
    expect(s.buildUrl('sse')).toBe(`${SSE_URL}?state=1`); // state: true by default
    expect(s.transport).toBeNull();
    expect(touched).toEqual([]);
  });
});

// ---------------------------------------------------------------------------- SSE transport

describe("transport: 'sse'", () => {
  it('GETs the SSE URL with the token in Authorization; the envelopes go through the WebSocket code path', async () => {
    const { s, got, transports } = service({ transport: 'sse', token: 'jwt.tok', types: 'alert', since: '5-0' });
    const dups: unknown[] = [];
    const recovered: unknown[] = [];
    s.on('client:duplicate', (d) => dups.push(d));
    s.on('client:recovered', (d) => recovered.push(d));
    const pongs: unknown[] = [];
    s.on('client:pong', (d) => pongs.push(d));
    s.connect();
    expect(FakeWebSocket.sockets).toHaveLength(0);
    expect(net.requests).toHaveLength(1);
    const req = net.last;
    expect(req.url).toBe(`${SSE_URL}?types=alert&since=5-0`);
    expect(req.url).not.toMatch(/jwt|token=|auth=/);
    expect(req.headers).toEqual({ accept: 'text/event-stream', authorization: 'Bearer jwt.tok' });
    expect(req.init.method).toBe('GET');
    expect(req.init.signal).toBeDefined();
    expect(s.state).toBe('connecting');
    await flush();
    expect(s.state).toBe('connected'); // a 200 stream: the token was accepted
    expect(s.transport).toBe('sse');
    expect(transports).toEqual(['sse']);
    expect(s.send('ping')).toBe(false); // the client sends nothing on SSE

    req.push(sse(env('analytics_update', { total_tutors: 3 })));
    req.push(sse(env('alert', { n: 6 }, '6-0')));
    req.push(sse(env('alert', { n: 6 }, '6-0'))); // a duplicate
    req.push(sse(env('recovery', { recovered: true, replayed: 1 })));
    req.push(sse(env('analytics_update', { pong: true }))); // never analytics
    req.push('data: not json\n\n');
    await flush();
    expect(got.map((m) => [m.type, m.id])).toEqual([
      ['analytics_update', undefined], ['alert', '6-0'], ['recovery', undefined],
    ]);
    expect(dups).toHaveLength(1);
    expect(recovered).toEqual([{ recovered: true, replayed: 1 }]);
    expect(pongs).toEqual([{ pong: true }]);
    expect(s.lastId).toBe('6-0');
    expect(s.stats).toMatchObject({ received: 5, duplicates: 1, connects: 1, replayed: 1 });
    s.disconnect();
    expect(req.aborted).toBe(true);
    expect(s.transport).toBeNull();
    expect(transports).toEqual(['sse', null]);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('a message split over chunks, across a CRLF and inside a UTF-8 character, arrives whole', async () => {
    const { s, got } = service({ transport: 'sse' });
    s.connect();
    await flush();
    const bytes = new TextEncoder().encode(
      `id: 1-0\r\ndata: ${JSON.stringify(env('alert', { message: 'Überlast – 🚨' }, '1-0'))}\r\n\r\n`);
    const euro = bytes.indexOf(0xc3); // the first byte of "Ü"
    const crlf = bytes.indexOf(0x0d); // the CR of the first CRLF
    const emoji = bytes.indexOf(0xf0); // the first byte of the emoji
    const cuts = [crlf + 1, euro + 1, emoji + 2, bytes.length - 2];
    let from = 0;
    for (const cut of cuts) {
      net.last.push(bytes.slice(from, cut));
      from = cut;
      await flush();
    }
    expect(got).toEqual([]); // the blank line has not come yet
    net.last.push(bytes.slice(from));
    await flush();
    expect(got).toEqual([env('alert', { message: 'Überlast – 🚨' }, '1-0')]);
    s.disconnect();
  });

  it('event: close 4001 ends the stream; getToken() is asked again; the reconnection resumes with ?since=', async () => {
    vi.spyOn(Math, 'random').mockReturnValue(0.5);
    let n = 0;
    const { s, closes } = service({ transport: 'sse', getToken: () => `t${++n}` });
    s.connect();
    await flush();
    const first = net.last;
    expect(first.headers.authorization).toBe('Bearer t1');
    first.push(sse(env('analytics_update', {}, '5-0')));
    first.push(sse(env('alert', {}, '6-0')));
    first.push('event: close\ndata: {"code":4001,"reason":"token expired"}\n\n');
    first.push(sse(env('alert', {}, '7-0'))); // after the close: never handled
    await flush();
    expect(closes).toEqual([{ code: 4001, reason: 'token expired' }]);
    expect(first.aborted).toBe(true); // not waiting for the server to end it
    expect(s.state).toBe('reconnecting');
    expect(s.lastId).toBe('6-0');
    vi.advanceTimersByTime(250); // attempt 1: random(0, 500)
    expect(net.requests).toHaveLength(2);
    expect(net.last.url).toBe(`${SSE_URL}?since=6-0`);
    expect(net.last.headers.authorization).toBe('Bearer t2');
    expect(n).toBe(2);
    s.disconnect();
  });

  it('the end of the stream without event: close is a 1006; so is a network error', async () => {
    vi.spyOn(Math, 'random').mockReturnValue(0);
    const { s, closes } = service({ transport: 'sse' });
    s.connect();
    await flush();
    net.last.push('data: {"type":"analytics_update","data":{},"timestamp":"t"}\n\ndata: unfinished');
    net.last.end();
    await flush();
    expect(closes).toEqual([{ code: 1006, reason: '' }]);
    expect(s.state).toBe('reconnecting');
    net.manual = true;
    vi.advanceTimersByTime(0);
    net.last.fail('connection refused');
    await flush();
    expect(closes[1]).toEqual({ code: 1006, reason: 'connection refused' });
    expect(s.attempt).toBe(2);
    s.disconnect();
  });

  it('refusals: 401 is a 4001 (a fresh token next); 429 waits its Retry-After', async () => {
    vi.spyOn(Math, 'random').mockReturnValue(0);
    net.manual = true;
    let n = 0;
    const { s, closes } = service({ transport: 'sse', getToken: () => `t${++n}` });
    const states: string[] = [];
    s.onStateChange((st) => states.push(st));
    s.connect();
    net.last.refuse(401, 'invalid_token');
    await flush();
    expect(closes).toEqual([{ code: 4001, reason: 'invalid_token', status: 401 }]);
    expect(states).toEqual(['connecting', 'reconnecting']); // never connected
    vi.advanceTimersByTime(0);
    expect(net.last.headers.authorization).toBe('Bearer t2');
    net.last.refuse(429, 'too_many_connections', { 'retry-after': '3' });
    await flush();
    expect(closes[1]).toEqual({ code: 1013, reason: 'too_many_connections', status: 429 });
    vi.advanceTimersByTime(2999);
    expect(net.requests).toHaveLength(2);
    vi.advanceTimersByTime(1);
    expect(net.requests).toHaveLength(3);
    net.last.refuse(403, 'forbidden');
    await flush();
    expect(closes[2]).toEqual({ code: 1008, reason: 'forbidden', status: 403 });
    s.disconnect();
  });

  it('no bytes within heartbeatMs + pongTimeoutMs aborts the request and reconnects; comments count as bytes', async () => {
    vi.spyOn(Math, 'random').mockReturnValue(0);
    const { s, closes } = service({ transport: 'sse', heartbeatMs: 15000, pongTimeoutMs: 10000 });
    s.connect();
    await flush();
    const req = net.last;
    req.push(sse(env('analytics_update', {}, '1-0')));
    await flush();
    expect(vi.getTimerCount()).toBe(1); // the liveness deadline only: no ping on SSE
    vi.advanceTimersByTime(20000);
    req.push(': ping\n\n');
    await flush();
    vi.advanceTimersByTime(24999);
    expect(req.aborted).toBe(false);
    expect(closes).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(req.aborted).toBe(true);
    expect(closes).toEqual([{ code: 4000, reason: 'heartbeat timeout' }]);
    expect(s.state).toBe('reconnecting');
    vi.advanceTimersByTime(1); // (a 0 ms timer set inside a timer callback runs 1 ms later)
    expect(net.requests).toHaveLength(2);
    expect(net.last.url).toBe(`${SSE_URL}?since=1-0`);
    s.disconnect();
    expect(vi.getTimerCount()).toBe(0);
  });

  it('a request that hangs before its headers is as dead', async () => {
    net.manual = true;
    const { s, closes } = service({ transport: 'sse', heartbeatMs: 1000, pongTimeoutMs: 500 });
    s.connect();
    vi.advanceTimersByTime(1500);
    expect(net.last.aborted).toBe(true);
    expect(closes).toEqual([{ code: 4000, reason: 'heartbeat timeout' }]);
    s.disconnect();
  });

  it('heartbeatMs: 0 (or pongTimeoutMs: 0) sets no liveness deadline', async () => {
    const { s } = service({ transport: 'sse', heartbeatMs: 0 });
    s.connect();
    await flush();
    expect(vi.getTimerCount()).toBe(0);
    s.disconnect();
  });
});

// ---------------------------------------------------------------------------- fallback

describe("transport: 'auto' (the default): the fallback to SSE", () => {
  it('a WebSocket that fails before it opened: SSE at once, with Authorization and ?since=, no token in the URL', async () => {
    const { s, got, transports } = service({ token: 'jwt.tok', since: '5-0' });
    const announced: unknown[] = [];
    s.on('client:reconnecting', (d) => announced.push(d));
    expect(s.options.transport).toBe('auto');
    s.connect();
    expect(FakeWebSocket.last.url).toBe(`${WS_URL}?auth=frame&since=5-0`);
    FakeWebSocket.last.drop(1006); // e.g. a proxy that strips Upgrade answered 400
    expect(announced).toEqual([{ attempt: 1, maxAttempts: 10, delayMs: 0 }]); // counts as an attempt, no wait
    expect(s.nextTransport).toBe('sse');
    expect(s.buildUrl()).toBe(`${SSE_URL}?since=5-0`);
    vi.advanceTimersByTime(0);
    expect(net.requests).toHaveLength(1);
    expect(net.last.url).toBe(`${SSE_URL}?since=5-0`);
    expect(net.last.url).not.toMatch(/jwt|token=|auth=/);
    expect(net.last.headers.authorization).toBe('Bearer jwt.tok');
    await flush();
    expect(s.state).toBe('connected');
    expect(s.transport).toBe('sse');
    expect(transports).toEqual(['sse']);
    net.last.push(sse(env('analytics_update', {})));
    net.last.push(sse(env('recovery', { recovered: true, replayed: 0 })));
    net.last.push(sse(env('alert', { n: 1 }, '6-0')));
    await flush();
    expect(got.map((m) => m.type)).toEqual(['analytics_update', 'recovery', 'alert']);
    expect(s.attempt).toBe(0); // a live event proved it
    s.disconnect();
  });

  it('an error event then close before open is the same; so is a socket the constructor refuses', () => {
    const s = service().s;
    s.connect();
    FakeWebSocket.last.onerror?.({});
    FakeWebSocket.last.drop(1006);
    vi.advanceTimersByTime(0);
    expect(net.requests).toHaveLength(1);
    s.disconnect();

    class Throwing extends FakeWebSocket {
      constructor(url: string) { super(url); throw new SyntaxError('blocked'); }
    }
    const t = service({ WebSocket: Throwing }).s;
    t.connect();
    vi.advanceTimersByTime(0);
    expect(net.requests).toHaveLength(2);
    t.disconnect();
  });

  it('once on SSE it stays there (every later attempt) until disconnect(); connect() tries WebSocket first again', async () => {
    vi.spyOn(Math, 'random').mockReturnValue(0);
    const { s, transports } = service();
    s.connect();
    FakeWebSocket.last.drop();
    vi.advanceTimersByTime(0);
    await flush();
    net.last.push(sse(env('analytics_update', {}, '1-0')));
    await flush();
    net.last.end(); // the node went away
    await flush();
    net.manual = true;
    for (let i = 0; i < 3; i++) {
      vi.advanceTimersByTime(0);
      net.last.fail();
      await flush();
    }
    expect(FakeWebSocket.sockets).toHaveLength(1);
    expect(net.requests).toHaveLength(4); // the first, then 3 failed attempts, all SSE
    expect(net.requests.slice(1).every((r) => r.url === `${SSE_URL}?since=1-0`)).toBe(true);
    expect(transports).toEqual(['sse', null]);
    s.disconnect();
    expect(s.nextTransport).toBe('websocket');
    s.connect();
    expect(FakeWebSocket.sockets).toHaveLength(2);
    expect(FakeWebSocket.last.url).toBe(`${WS_URL}?since=1-0`);
    FakeWebSocket.last.open();
    expect(s.transport).toBe('websocket');
    expect(transports).toEqual(['sse', null, 'websocket']);
    s.disconnect();
  });

  it('a WebSocket that opened but closed 1006 before any server message switches too; one that spoke does not', async () => {
    vi.spyOn(Math, 'random').mockReturnValue(0);
    const { s } = service();
    s.connect();
    let ws = FakeWebSocket.last;
    ws.open();
    ws.msg(env('analytics_update', {}, '1-0'));
    ws.drop(1006); // a real drop of a working socket: WebSocket again
    vi.advanceTimersByTime(0);
    expect(FakeWebSocket.sockets).toHaveLength(2);
    expect(net.requests).toHaveLength(0);
    ws = FakeWebSocket.last;
    ws.open();
    ws.drop(1013); // closed before speaking, but on purpose (busy): WebSocket again
    vi.advanceTimersByTime(0);
    expect(FakeWebSocket.sockets).toHaveLength(3);
    ws = FakeWebSocket.last;
    ws.open();
    ws.drop(1006); // opened, then cut before any message: a proxy that does not pass frames
    expect(s.nextTransport).toBe('sse');
    vi.advanceTimersByTime(0);
    expect(net.requests).toHaveLength(1);
    expect(net.last.url).toBe(`${SSE_URL}?since=1-0`);
    // that SSE attempt fails before it delivered anything: WebSocket never failed before
    // it opened, so the next attempt (after the backoff) is a WebSocket again
    net.last.end();
    await flush();
    expect(s.nextTransport).toBe('websocket');
    vi.advanceTimersByTime(0);
    expect(FakeWebSocket.sockets).toHaveLength(4);
    s.disconnect();
  });

  it('an id seen on the WebSocket and again on SSE is dispatched once', async () => {
    vi.spyOn(Math, 'random').mockReturnValue(0);
    const { s, got } = service();
    const dups: unknown[] = [];
    s.on('client:duplicate', (_d, m) => dups.push(m?.id));
    s.connect();
    const ws = FakeWebSocket.last;
    ws.open();
    ws.msg(env('analytics_update', {}, '1-0'));
    ws.msg(env('alert', { n: 2 }, '2-0'));
    ws.drop(1006); // a working socket dropped: WebSocket again...
    vi.advanceTimersByTime(0);
    FakeWebSocket.last.drop(1006); // ...which fails before it opened: SSE
    vi.advanceTimersByTime(0);
    expect(net.last.url).toBe(`${SSE_URL}?since=2-0`);
    await flush();
    net.last.push(sse(env('analytics_update', {})));
    net.last.push(sse(env('alert', { n: 2 }, '2-0'))); // replayed again by the node
    net.last.push(sse(env('alert', { n: 3 }, '3-0')));
    net.last.push(sse(env('recovery', { recovered: true, replayed: 2 })));
    await flush();
    expect(got.filter((m) => m.type === 'alert').map((m) => m.id)).toEqual(['2-0', '3-0']);
    expect(dups).toEqual(['2-0']);
    expect(s.lastId).toBe('3-0');
    s.disconnect();
  });

  it("transport: 'websocket' never fetches", () => {
    vi.spyOn(Math, 'random').mockReturnValue(0);
    const fetchSpy = vi.fn(net.fetch);
    const { s } = service({ transport: 'websocket', fetch: fetchSpy });
    s.connect();
    for (let i = 0; i < 4; i++) {
      FakeWebSocket.last.drop();
      vi.advanceTimersByTime(0);
    }
    FakeWebSocket.last.open();
    FakeWebSocket.last.drop(1006);
    vi.advanceTimersByTime(0);
    expect(fetchSpy).not.toHaveBeenCalled();
    expect(FakeWebSocket.sockets).toHaveLength(6);
    expect(s.buildUrl()).toBe(WS_URL);
    s.disconnect();
  });

  it('without fetch (or an SSE URL) auto stays on WebSocket', () => {
    vi.spyOn(Math, 'random').mockReturnValue(0);
    vi.stubGlobal('fetch', undefined);
    const s = new WebSocketService({ url: WS_URL, WebSocket: FakeWebSocket });
    s.connect();
    FakeWebSocket.last.drop();
    vi.advanceTimersByTime(0);
    expect(FakeWebSocket.sockets).toHaveLength(2);
    s.disconnect();
    const other = service({ url: 'ws://gw.test/socket' }).s;
    other.connect();
    FakeWebSocket.last.drop();
    vi.advanceTimersByTime(0);
    expect(FakeWebSocket.sockets).toHaveLength(4);
    expect(net.requests).toHaveLength(0);
    other.disconnect();
  });

  it('the switch counts against maxAttempts like any attempt', async () => {
    vi.spyOn(Math, 'random').mockReturnValue(0);
    net.manual = true;
    const { s } = service({ maxAttempts: 3 });
    const gaveUp: unknown[] = [];
    s.on('client:gave_up', (d) => gaveUp.push(d));
    s.connect();
    FakeWebSocket.last.drop();
    for (let i = 0; i < 3; i++) {
      vi.advanceTimersByTime(0);
      net.last.fail();
      await flush();
    }
    expect(net.requests).toHaveLength(3);
    expect(s.state).toBe('disconnected');
    expect(gaveUp).toEqual([{ attempts: 3 }]);
    expect(vi.getTimerCount()).toBe(0);
  });
});
