/**
 * The two transports under a connection attempt: a WebSocket (the handlers of a socket
 * the service opened), and Server-Sent Events (`GET /sse/dashboard` read with `fetch`: a
 * refusal's status and body, the event stream, `event: close`). Neither knows what a
 * message means: each reports to the service through a `ConnectionSink` (opened, a text
 * message, still alive, ended), and the service owns the rest (the greeting, recovery,
 * state, dedupe, timers, reconnection: service.ts). `shut` stops either one.
 */
import type { Envelope, Transport } from './types.js';
import { SseParser } from './sse.js';
import { refusalCode, retryAfterMs } from './http.js';
import { root, type FetchInit, type FetchLike, type FetchResponseLike, type WebSocketLike } from './options.js';

/** One connection attempt, over either transport. */
export interface Connection {
  readonly transport: Transport;
  /** WebSocket: `open` fired; SSE: a 200 `text/event-stream` response arrived. */
  opened: boolean;
  /** A server message arrived on it. */
  heard: boolean;
  /** The WebSocket transport's socket. */
  ws: WebSocketLike | null;
  /** The SSE transport's request. */
  abort: AbortController | null;
  reader: { cancel(reason?: unknown): Promise<void> } | null;
  parser: SseParser | null;
  /** SSE: the `event: close` data, when it came. */
  closeInfo: { code: number; reason: string } | null;
  /**
   * In the state phase (after the greeting or a failed `recovery`, before the `state`
   * marker): the state events collected so far. Null otherwise; a connection that ends
   * takes what it collected with it.
   */
  stateEvents: Envelope[] | null;
}

/** How a connection ended. */
export interface Ending {
  code: number | undefined;
  reason: string | undefined;
  /** The HTTP status of an SSE refusal. */
  status?: number;
  /** An SSE refusal's Retry-After (ms). */
  retryAfterMs?: number | null;
}

/** What a connection reports to the service that opened it. */
export interface ConnectionSink {
  /** It is still the service's current connection: once not, it reports nothing more. */
  isCurrent(conn: Connection): boolean;
  /** WebSocket: `open`; SSE: a 200 event stream. */
  opened(conn: Connection): void;
  /** A server message: a WebSocket text frame, or the data of an SSE `message` event. */
  text(conn: Connection, text: unknown): void;
  /** SSE: the request went out, or bytes came (a `: ping` too): the liveness deadline starts over. */
  alive(conn: Connection): void;
  /** It ended: closed, refused, failed. */
  ended(conn: Connection, end: Ending): void;
}

/** A new connection attempt: nothing opened, heard or collected yet. */
export function newConnection(transport: Transport): Connection {
  return {
    transport, opened: false, heard: false, ws: null, abort: null, reader: null, parser: null, closeInfo: null,
    stateEvents: null,
  };
}

// A socket we dropped may still fire `error` (e.g. `ws` closing during the handshake);
// keep a no-op handler so that it is never an unhandled error event.
function noop(): void { /* ignore */ }

/** Report the events of `ws`, a socket just created, as those of `conn`. */
export function attachWebSocket(conn: Connection, ws: WebSocketLike, sink: ConnectionSink): void {
  conn.ws = ws;
  ws.onopen = () => sink.opened(conn);
  ws.onmessage = (ev: { data: unknown }) => sink.text(conn, ev.data);
  ws.onerror = noop; // a close event always follows
  ws.onclose = (ev: { code?: number; reason?: string }) => {
    if (!sink.isCurrent(conn)) return;
    detach(ws);
    sink.ended(conn, { code: ev && ev.code, reason: ev && ev.reason });
  };
}

// GET the SSE endpoint with fetch (the token in Authorization, never in the URL) and
// feed each event's data to the same handler as a WebSocket text frame.
export function dialSse(conn: Connection, doFetch: FetchLike, url: string, token: string | null, sink: ConnectionSink): void {
  const headers: Record<string, string> = { Accept: 'text/event-stream' };
  if (token) headers.Authorization = 'Bearer ' + token;
  const init: FetchInit = { method: 'GET', headers, cache: 'no-store' };
  const AC = root.AbortController;
  if (typeof AC === 'function') {
    conn.abort = new AC() as AbortController;
    init.signal = conn.abort.signal;
  }
  const failed = (e: unknown) => {
    if (!sink.isCurrent(conn)) return;
    sink.ended(conn, { code: 1006, reason: e instanceof Error ? e.message : undefined });
  };
  sink.alive(conn); // a request that hangs before its headers is as dead
  let pending: Promise<FetchResponseLike>;
  try {
    pending = doFetch(url, init);
  } catch (e) {
    failed(e);
    return;
  }
  Promise.resolve(pending).then((res) => {
    if (!sink.isCurrent(conn)) {
      cancelBody(res);
      return;
    }
    const type = (res.headers && res.headers.get('content-type')) || '';
    if (res.status !== 200 || !/^\s*text\/event-stream/i.test(type) || !res.body) {
      refused(conn, res, sink);
      return;
    }
    readSse(conn, res, sink);
  }, failed);
}

// A refusal: the HTTP status stands for the close code a WebSocket would carry.
function refused(conn: Connection, res: FetchResponseLike, sink: ConnectionSink): void {
  const status = res.status;
  const wait = status === 429 || status === 503 ? retryAfterMs(res.headers && res.headers.get('retry-after')) : null;
  const end = (reason: string | undefined) => {
    if (!sink.isCurrent(conn)) return;
    sink.ended(conn, { code: status === 200 ? 1006 : refusalCode(status), reason, status, retryAfterMs: wait });
  };
  if (status === 200) {
    cancelBody(res);
    end('not an event stream');
    return;
  }
  let body: Promise<string>;
  try {
    body = Promise.resolve(res.text());
  } catch {
    end(undefined);
    return;
  }
  body.then((text) => {
    let reason: string | undefined;
    try {
      const e = (JSON.parse(text) as { error?: { code?: unknown; message?: unknown } }).error;
      if (e && typeof e.code === 'string') reason = e.code;
      else if (e && typeof e.message === 'string') reason = e.message;
    } catch { /* not JSON */ }
    end(reason);
  }, () => end(undefined));
}

function readSse(conn: Connection, res: FetchResponseLike, sink: ConnectionSink): void {
  const TD = root.TextDecoder;
  const reader = res.body!.getReader();
  conn.reader = reader;
  if (typeof TD !== 'function') {
    shut(conn, 1006, 'no TextDecoder');
    sink.ended(conn, { code: 1006, reason: 'no TextDecoder' });
    return;
  }
  const decoder = new TD('utf-8') as TextDecoder;
  const parser = new SseParser({
    event: (ev) => {
      if (ev.type === 'message') {
        sink.text(conn, ev.data);
      } else if (ev.type === 'close') {
        // not an envelope: the close code the stream ends with
        let code = 1006;
        let reason = '';
        try {
          const d = JSON.parse(ev.data) as { code?: unknown; reason?: unknown };
          if (typeof d.code === 'number') code = d.code;
          if (typeof d.reason === 'string') reason = d.reason;
        } catch { /* keep 1006 */ }
        conn.closeInfo = { code, reason };
        // the server ends the stream next; do not wait for it (a proxy may hold it open)
        if (sink.isCurrent(conn)) endSse(conn, sink);
      }
      // other event types: not the gateway's; ignored
    },
  });
  conn.parser = parser;
  sink.alive(conn);
  sink.opened(conn);
  const pump = (): Promise<void> => reader.read().then(({ done, value }) => {
    if (!sink.isCurrent(conn)) return undefined;
    if (done) {
      parser.feed(decoder.decode());
      parser.end();
      if (sink.isCurrent(conn)) endSse(conn, sink);
      return undefined;
    }
    sink.alive(conn); // any bytes at all (a `: ping` too) prove it alive
    parser.feed(typeof value === 'string' ? value : decoder.decode(value, { stream: true }));
    return sink.isCurrent(conn) ? pump() : undefined;
  });
  pump().catch((e: unknown) => {
    if (!sink.isCurrent(conn)) return;
    shut(conn, 1006, 'read error');
    sink.ended(conn, { code: 1006, reason: e instanceof Error ? e.message : undefined });
  });
}

// The stream ended (or said `event: close`): a close with that code (none: 1006).
function endSse(conn: Connection, sink: ConnectionSink): void {
  const info = conn.closeInfo;
  shut(conn, 1000, 'stream ended');
  sink.ended(conn, { code: info ? info.code : 1006, reason: info ? info.reason : '' });
}

/** Stop a connection's transport; no event of it is handled after this. */
export function shut(conn: Connection, code: number, reason: string): void {
  const ws = conn.ws;
  if (ws) {
    detach(ws);
    try { ws.close(code, reason); } catch { /* already closed */ }
  }
  if (conn.parser) conn.parser.stop();
  if (conn.abort) {
    try { conn.abort.abort(); } catch { /* ignore */ }
  }
  if (conn.reader) conn.reader.cancel().catch(noop);
}

function detach(ws: WebSocketLike): void {
  ws.onopen = null;
  ws.onmessage = null;
  ws.onclose = null;
  ws.onerror = noop;
}

// A response not read: release its connection.
function cancelBody(res: FetchResponseLike): void {
  try {
    if (res.body) res.body.getReader().cancel().catch(noop);
  } catch { /* locked or gone */ }
}
