/**
 * What a WebSocketService is given, and what it makes of it: the surfaces of the
 * implementations it can be handed (a WebSocket, a `fetch`, timers, a location: the
 * browser's by default, any look-alike in Node and in tests), `WebSocketServiceOptions`,
 * and `resolveOptions`, which fills in every default once, in the constructor, giving
 * `ResolvedOptions` (the service's `options`). The implementations the options leave out
 * are the global ones (`root`), looked up when they are used, not when this module loads
 * (server rendering imports it without a window).
 */
import type { ConnectionState, Transport } from './types.js';

/** The global object: where the default implementations are looked up, at call time. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const root: any = typeof globalThis !== 'undefined' ? globalThis : {};

/** Minimal WebSocket surface the service needs (the browser's, `ws`'s, undici's...). */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  onopen: ((ev: any) => void) | null;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  onmessage: ((ev: any) => void) | null;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  onerror: ((ev: any) => void) | null;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  onclose: ((ev: any) => void) | null;
}

/** A WebSocket constructor: `new WebSocketImpl(url)`. */
export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** What the SSE transport passes to `fetch`. */
export interface FetchInit {
  method: 'GET';
  headers: Record<string, string>;
  cache: 'no-store';
  signal?: AbortSignal;
}

/** The part of a fetch `Response` the SSE transport reads. */
export interface FetchResponseLike {
  readonly status: number;
  readonly headers: { get(name: string): string | null };
  readonly body: {
    getReader(): {
      read(): Promise<{ done: boolean; value?: Uint8Array | string }>;
      cancel(reason?: unknown): Promise<void>;
    };
  } | null;
  text(): Promise<string>;
}

/** A `fetch` implementation (the browser's, Node's, undici's...), used by the SSE transport. */
export type FetchLike = (url: string, init: FetchInit) => Promise<FetchResponseLike>;

/** Which transport the client uses: `auto` (WebSocket, falling back to SSE), or only one. */
export type TransportOption = 'auto' | Transport;

/** Timer functions (defaults to the global ones, looked up at call time). */
export interface Timers {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  setTimeout(fn: () => void, ms: number): any;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  clearTimeout(handle: any): void;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  setInterval(fn: () => void, ms: number): any;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  clearInterval(handle: any): void;
}

/** The parts of `window.location` used to build a same-host URL and read `?token=`. */
export interface LocationLike {
  protocol?: string;
  host?: string;
  search?: string;
}

/** Called on every state change with (next, previous). */
export type StateHandler = (state: ConnectionState, previous: ConnectionState) => void;

export interface WebSocketServiceOptions {
  /** Full endpoint URL, e.g. `wss://gw.example/ws/dashboard`. Default: the page's host + `path`. */
  url?: string | null;
  /** Path used with the page's host when `url` is not given. Default `/ws/dashboard`. */
  path?: string;
  /** JWT, sent as the first frame (see `auth`). Default: the page URL's `token` parameter; `null` for none. */
  token?: string | null;
  /**
   * How the token travels: `'frame'` (default) opens `?auth=frame` and sends
   * `{"type":"auth","token":...}` first, so the token stays out of URLs and logs;
   * `'query'` puts it in `?token=` (gateways that predate `?auth=frame`).
   */
  auth?: 'frame' | 'query';
  /**
   * Called before each connection attempt (sync or async); its result replaces `token`.
   * Use it with short-lived tokens: return a fresh one (e.g. from your IdP's SDK).
   */
  getToken?: (() => TokenResult | Promise<TokenResult>) | null;
  /** Only these message types (`?types=`); the greeting analytics and pongs always come. */
  types?: string[] | string | null;
  /** Resume from this id on the first connection (`?since=`). */
  since?: string | null;
  /** Backoff base (ms); attempt n waits random(0, min(maxDelayMs, baseDelayMs * 2^n)). Default 500. */
  baseDelayMs?: number;
  /** Backoff cap (ms). Default 30000. */
  maxDelayMs?: number;
  /** Reconnection attempts before giving up (state `disconnected`). Default 10. */
  maxAttempts?: number;
  /**
   * How long a connection must stay up past its greeting (past `recovery` when resuming)
   * to count as healthy and reset the attempt count, if no live event proved it sooner (ms).
   * Default 5000.
   */
  healthyAfterMs?: number;
  /** Heartbeat ping interval (ms); 0 turns the heartbeat off. Default 15000. */
  heartbeatMs?: number;
  /** Silence after a ping before the socket counts as dead (ms); 0: never. Default 10000. */
  pongTimeoutMs?: number;
  /** Random source in [0, 1) for the jitter. Default `Math.random` (looked up at call time). */
  random?: () => number;
  /** WebSocket implementation (e.g. `ws` in Node < 22). Default `globalThis.WebSocket`. */
  WebSocket?: WebSocketConstructor;
  /** Alias of `WebSocket`. */
  WebSocketImpl?: WebSocketConstructor;
  /**
   * `'auto'` (default): WebSocket, falling back to Server-Sent Events when a WebSocket
   * cannot be opened (see the top of service.ts); `'websocket'`: never SSE; `'sse'`: only SSE.
   */
  transport?: TransportOption;
  /**
   * The SSE endpoint, e.g. `https://gw.example/sse/dashboard`. Default: the WebSocket URL
   * with `http:`/`https:` for `ws:`/`wss:` and its trailing `/ws/dashboard` replaced by
   * `/sse/dashboard` (no fallback when the path has no `/ws/dashboard`).
   */
  sseUrl?: string | null;
  /** `fetch` for the SSE transport. Default `globalThis.fetch`, looked up at call time. */
  fetch?: FetchLike;
  /** Default `globalThis.location`. */
  location?: LocationLike | null;
  /** Default the global timer functions. */
  timers?: Timers;
  /**
   * Open on the gateway's keyed state (`?state=1` on both transports), delivered as one
   * `state` event before the live stream; false: live only. Default true.
   */
  state?: boolean;
  /** Called on every state change with (next, previous). */
  onStateChange?: StateHandler;
}

/** What `getToken()` may give: a token, or nothing (connect without one). */
export type TokenResult = string | null | undefined;

export interface ResolvedOptions {
  url: string | null;
  path: string;
  token: string | null;
  auth: 'frame' | 'query';
  getToken: (() => TokenResult | Promise<TokenResult>) | null;
  types: string[] | null;
  baseDelayMs: number;
  maxDelayMs: number;
  maxAttempts: number;
  healthyAfterMs: number;
  heartbeatMs: number;
  pongTimeoutMs: number;
  random: () => number;
  WebSocket: WebSocketConstructor | undefined;
  transport: TransportOption;
  sseUrl: string | null;
  fetch: FetchLike | undefined;
  location: LocationLike | null;
  timers: Timers;
  state: boolean;
}

/** Every option with its default filled in (`root.location` is read now, when not given). */
export function resolveOptions(o: WebSocketServiceOptions): ResolvedOptions {
  const loc: LocationLike | null = o.location !== undefined ? o.location : root.location || null;
  return {
    url: o.url || null,
    path: o.path || '/ws/dashboard',
    token: o.token !== undefined ? o.token : pageParam(loc, 'token'),
    auth: o.auth === 'query' ? 'query' : 'frame',
    getToken: typeof o.getToken === 'function' ? o.getToken : null,
    types: normalizeTypes(o.types),
    baseDelayMs: num(o.baseDelayMs, 500),
    maxDelayMs: num(o.maxDelayMs, 30000),
    maxAttempts: num(o.maxAttempts, 10),
    healthyAfterMs: num(o.healthyAfterMs, 5000),
    heartbeatMs: num(o.heartbeatMs, 15000),
    pongTimeoutMs: num(o.pongTimeoutMs, 10000),
    random: typeof o.random === 'function' ? o.random : () => Math.random(),
    WebSocket: o.WebSocket || o.WebSocketImpl,
    transport: o.transport === 'websocket' || o.transport === 'sse' ? o.transport : 'auto',
    sseUrl: o.sseUrl || null,
    fetch: typeof o.fetch === 'function' ? o.fetch : undefined,
    location: loc,
    timers: o.timers || {
      setTimeout: (fn, ms) => root.setTimeout(fn, ms),
      clearTimeout: (h) => root.clearTimeout(h),
      setInterval: (fn, ms) => root.setInterval(fn, ms),
      clearInterval: (h) => root.clearInterval(h),
    },
    state: o.state !== false,
  };
}

/** The WebSocket constructor to use; a TypeError when there is none. */
export function webSocketImpl(o: ResolvedOptions): WebSocketConstructor {
  const WS = o.WebSocket || root.WebSocket;
  if (typeof WS !== 'function') {
    throw new TypeError('WebSocketService: no WebSocket implementation; pass options.WebSocket (e.g. the `ws` package in Node < 22)');
  }
  return WS;
}

/** The `fetch` to use for SSE; null when there is none. */
export function fetchImpl(o: ResolvedOptions): FetchLike | null {
  if (o.fetch) return o.fetch;
  if (typeof root.fetch !== 'function') return null;
  return (url, init) => root.fetch(url, init); // called on its global, as browsers require
}

function normalizeTypes(types: string[] | string | null | undefined): string[] | null {
  if (types == null || types === '') return null;
  const list = (Array.isArray(types) ? types : String(types).split(','))
    .map((t) => String(t).trim())
    .filter(Boolean);
  return list.length ? list : null;
}

function pageParam(loc: LocationLike | null, name: string): string | null {
  try {
    if (!loc || typeof loc.search !== 'string') return null;
    return new URLSearchParams(loc.search).get(name);
  } catch {
    return null;
  }
}

function num(v: unknown, d: number): number {
  return typeof v === 'number' && isFinite(v) && v >= 0 ? v : d;
}
