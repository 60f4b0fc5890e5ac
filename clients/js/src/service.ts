/**
 * WebSocketService: a small, dependency-free client for the gateway's `/ws/dashboard`
 * endpoint (SPEC.md, "Messages", "Choosing types, and resuming without loss").
 *
 *   const ws = new WebSocketService({ url: 'wss://gateway.example/ws/dashboard' });
 *   const off = ws.on('alert', (data, envelope) => ...);   // returns an unsubscribe fn
 *   ws.on('*', (data, envelope) => ...);                   // every server message
 *   ws.connect();
 *   ...
 *   ws.disconnect();                                       // clears every timer and listener
 *
 *  - URL: `url`, or the page's own host (ws: or wss: following location.protocol) + `path`;
 *    `types` is passed through.
 *  - Token (default: the page URL's `?token=`): kept out of the URL, where proxy logs and
 *    browser history would keep it. The client opens `?auth=frame` and sends
 *    `{"type":"auth","token":"<JWT>"}` as its first frame; the state turns `connected`
 *    once the server greets (it sends nothing before it accepted the token; a bad one
 *    closes with 4001). `auth: 'query'` sends `?token=` instead, for gateways without
 *    `?auth=frame`.
 *  - Tokens that expire: `getToken()` (sync or async) is called before each connection
 *    attempt and its result replaces `token`. The server closes a connection whose token
 *    expired with 4001; the client then reconnects with a fresh token and `?since=`, so
 *    nothing is lost. A `getToken()` that throws or rejects counts as a failed attempt
 *    (`client:token_error`, then the backoff).
 *  - Heartbeat: sends the text `ping` every `heartbeatMs` (15 s); the server's pong (an
 *    analytics_update whose data is {"pong":true}) is NOT dispatched as analytics; if
 *    nothing at all arrives within `pongTimeoutMs` of a ping the socket is replaced.
 *  - Reconnection: exponential backoff with FULL jitter,
 *    delay = random(0, min(maxDelayMs, baseDelayMs * 2^attempt)), at most `maxAttempts`
 *    (10) attempts, then state `disconnected` and `client:gave_up` (call retry()).
 *    The attempt count goes back to 0 only once a connection proved itself: a live event
 *    arrived (after the greeting, after the `recovery` when resuming, after the `state`
 *    marker when the state was sent), or it stayed up `healthyAfterMs` (5 s) past that
 *    point. A greeting alone proves nothing: a node that greets and then closes (1013,
 *    busy) is retried with a growing backoff, not hammered.
 *  - Resume without loss: tracks the greatest `id` seen (ids of one history, `epoch:ms-seq`
 *    or plain `ms-seq`, order by ms then seq; across histories the latest received wins)
 *    and reconnects with `?since=<id>`; the server replays what was missed, then sends
 *    `recovery`. `recovered: false` also emits `client:resync`. Ids seen twice are dropped.
 *  - Keyed state at connect (`state: true`, the default: `?state=1`): after the greeting of
 *    a fresh connection (after a `recovery` with `recovered: false` on a resumed one) the
 *    server sends the current event of every key, then the marker
 *    `{"type":"state","data":{"complete":true,"count":N},"id":"<position>"}`, then live
 *    from that position. The events before the marker are collected, not dispatched (nor
 *    counted in `stats.received`, nor used as the resume position: their ids are old and in
 *    no order), and handed over at the marker as ONE `state` event
 *    (`{events, count, id}`); `lastId` becomes the marker's id. A connection cut before
 *    the marker drops what it collected, and the next one starts fresh (`state=1`, no
 *    `?since=`). `statePhase` (`off` | `loading` | `complete`, `client:state_phase` on each
 *    change) says where it stands. Tombstones (`removed: true`) and `evicted` keys are
 *    ordinary messages. A fresh connection whose greeting carries an `id` is from a gateway
 *    without keyed state: `off`, everything live.
 *  - Fallback to Server-Sent Events (`transport: 'auto'`, the default): when a WebSocket
 *    attempt fails before it opened (a proxy that strips `Upgrade` answers 400: the browser
 *    reports 1006 before `open`), or opened and closed with 1006 before any server message,
 *    the next attempt, at once (it still counts as an attempt), is `GET /sse/dashboard`
 *    (`sseUrl`; default: the WebSocket URL with http(s): and `/sse/dashboard`) read with
 *    `fetch`, resuming with `?since=`. The token goes in `Authorization: Bearer`, never in
 *    the URL. Each event's data is the envelope the WebSocket would send, handled by the
 *    same code (greeting, recovery, dedupe); `event: close` carries the close code; no
 *    bytes (the server's `: ping` comments count) within `heartbeatMs + pongTimeoutMs`
 *    aborts the request and reconnects. The client sends nothing on SSE (no `ping`). Once
 *    an SSE connection delivered a message, or once a WebSocket failed before it opened,
 *    every later attempt uses SSE, until `disconnect()`; a failed SSE attempt is followed
 *    by a WebSocket one (after the backoff) only when neither happened. `transport`
 *    (`websocket` | `sse` | null) says which one is live; `client:transport` reports changes.
 *    `transport: 'websocket'` never fetches; `transport: 'sse'` never opens a WebSocket.
 *
 * The same code is the dashboard page's `window.WebSocketService` (gateway/assets/ws-client.js
 * is built from this package).
 *
 * This module is the state machine: connection state, the greeting, recovery and the
 * state phase, dedupe, heartbeat, backoff, the choice of transport. What it stands on is
 * beside it: options.ts (the options and their defaults), transport.ts (the WebSocket and
 * SSE connections), http.ts (URLs, what an SSE refusal means), ids.ts (event ids, the
 * dedupe window), sse.ts (the event-stream parser).
 */
import type {
  ClientEventMap,
  ConnectionState,
  Envelope,
  MessageDataMap,
  RecoveryData,
  ServerMessage,
  StatePhase,
  Transport,
} from './types.js';
import { SeenIds, compareIds, idOf, isPong, parseStreamId } from './ids.js';
import { sseUrlOf, withQuery } from './http.js';
import {
  fetchImpl,
  resolveOptions,
  root,
  webSocketImpl,
  type ResolvedOptions,
  type StateHandler,
  type TokenResult,
  type WebSocketLike,
  type WebSocketServiceOptions,
} from './options.js';
import {
  attachWebSocket,
  dialSse,
  newConnection,
  shut,
  type Connection,
  type ConnectionSink,
  type Ending,
} from './transport.js';

export interface ServiceStats {
  /** Envelopes received (including pongs, duplicates excluded from nothing). */
  received: number;
  /** Frames dropped because their id was seen before. */
  duplicates: number;
  /** Successful opens. */
  connects: number;
  /** Events the server said it replayed (sum over `recovery` frames). */
  replayed: number;
  /** `recovery` frames with `recovered: false`. */
  recoveriesFailed: number;
}

export type Unsubscribe = () => void;

/** Data type of message type `K` given the extra type map `X`. */
type DataOf<X, K extends string> = K extends keyof X
  ? X[K]
  : K extends keyof MessageDataMap
    ? MessageDataMap[K]
    : unknown;

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyHandler = (data: any, msg: any) => void;

export const STATES: readonly ConnectionState[] = ['connecting', 'connected', 'reconnecting', 'disconnected'];

function reportError(e: unknown): void {
  // a subscriber threw: surface it without breaking the dispatch loop
  if (typeof root.setTimeout === 'function') {
    root.setTimeout(() => { throw e; }, 0);
  }
}

/**
 * The connection to one gateway. `X` adds types for publisher-chosen message types:
 * `new WebSocketService<{ test_message: { n: number } }>()`.
 */
// eslint-disable-next-line @typescript-eslint/no-empty-object-type
export class WebSocketService<X extends object = {}> {
  static readonly STATES = STATES;
  static readonly compareIds = compareIds;
  static readonly parseStreamId = parseStreamId;

  readonly options: ResolvedOptions;
  /** The current connection state. */
  state: ConnectionState = 'disconnected';
  /** The greatest id seen so far: the next connection resumes with `?since=` it. */
  lastId: string | null;
  /** Reconnection attempts made since the last healthy connection. */
  attempt = 0;
  readonly stats: ServiceStats = { received: 0, duplicates: 0, connects: 0, replayed: 0, recoveriesFailed: 0 };

  private _handlers = new Map<string, Set<AnyHandler>>();
  private _stateHandlers: StateHandler[] = [];
  /** The current connection attempt (either transport); null between attempts. */
  private _conn: Connection | null = null;
  /** The transport of the next attempt (`transport: 'auto'`). */
  private _nextTransport: Transport = 'websocket';
  /** A WebSocket failed before it opened since connect(): SSE from then on (auto). */
  private _wsFailedBeforeOpen = false;
  /** An SSE connection delivered a message since connect(): SSE from then on (auto). */
  private _sseProven = false;
  /** The live transport (`transport` getter): the current connection's, while connected. */
  private _transport: Transport | null = null;
  /** The current socket's greeting has not come yet. */
  private _awaitingGreeting = false;
  /** The current socket resumed with `?since=` and its `recovery` has not come yet. */
  private _awaitingRecovery = false;
  /** When the current socket's live stream began (greeting, or `recovery` when resuming). */
  private _liveSince: number | null = null;
  /** The current socket sends its token as the first frame (`?auth=frame`). */
  private _authFrame: string | null = null;
  /** disconnect() called, or never connected. */
  private _stopped = true;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  private _reconnectTimer: any = null;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  private _heartbeatTimer: any = null;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  private _pongTimer: any = null;
  /** SSE: no bytes for heartbeatMs + pongTimeoutMs ends the connection. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  private _livenessTimer: any = null;
  /** The last ids seen (DEDUPE_WINDOW of them): one seen again is a duplicate. */
  private readonly _seen = new SeenIds();
  private _windowListening = false;
  /** A `getToken()` promise is pending: the socket is about to be opened. */
  private _awaitingToken = false;
  /** Bumped by disconnect(): a token that arrives after it opens nothing. */
  private _generation = 0;
  /** `statePhase`. */
  private _statePhase: StatePhase;
  /** The last fresh connection's greeting carried an id: its gateway sends no state. */
  private _stateUnsupported = false;
  /** How a connection's transport reports to the service (transport.ts). */
  private readonly _sink: ConnectionSink = {
    isCurrent: (conn) => conn === this._conn,
    opened: (conn) => this._handleOpen(conn),
    text: (conn, text) => this._handleText(conn, text),
    alive: (conn) => this._armLiveness(conn),
    ended: (conn, end) => this._ended(conn, end),
  };

  constructor(options: WebSocketServiceOptions = {}) {
    const o = options;
    this.options = resolveOptions(o);
    this._statePhase = this.options.state ? 'loading' : 'off';
    this.lastId = o.since ? String(o.since) : null;
    this._nextTransport = this.options.transport === 'sse' ? 'sse' : 'websocket';
    if (typeof o.onStateChange === 'function') this._stateHandlers.push(o.onStateChange);
  }

  /** The live transport: `websocket` or `sse` while connected, else null. */
  get transport(): Transport | null {
    return this._transport;
  }

  /**
   * Where the keyed state stands: `off` (not asked for, or not sent: a gateway without it,
   * or a resume that recovered before any state came), `loading` (asked for and not
   * complete: before the first marker, or after a `recovered: false` until the next one;
   * also while reconnecting from a connection cut in that phase), `complete` (the marker
   * came; live events apply on top of it).
   */
  get statePhase(): StatePhase {
    return this._statePhase;
  }

  /** The transport the next connection attempt uses. */
  get nextTransport(): Transport {
    const t = this.options.transport;
    return t === 'auto' ? this._nextTransport : t;
  }

  /** Subscribe to one message type. Returns an unsubscribe function. */
  on<K extends keyof ClientEventMap>(
    type: K,
    handler: (data: ClientEventMap[K], msg: ServerMessage | null) => void,
  ): Unsubscribe;
  /** Subscribe to every server message (not the `client:` events). */
  on(type: '*', handler: (data: unknown, msg: ServerMessage) => void): Unsubscribe;
  on<K extends string>(type: K, handler: (data: DataOf<X, K>, msg: Envelope<K, DataOf<X, K>>) => void): Unsubscribe;
  on(type: string, handler: AnyHandler): Unsubscribe {
    if (typeof handler !== 'function') throw new TypeError('handler must be a function');
    const key = String(type);
    let set = this._handlers.get(key);
    if (!set) this._handlers.set(key, (set = new Set()));
    // wrap so that the same function may be subscribed twice and unsubscribed once
    const entry: AnyHandler = (data, msg) => handler(data, msg);
    set.add(entry);
    return () => {
      const s = this._handlers.get(key);
      if (s) {
        s.delete(entry);
        if (s.size === 0) this._handlers.delete(key);
      }
    };
  }

  /** Subscribe to state changes: fn(newState, previousState). Returns an unsubscribe function. */
  onStateChange(handler: StateHandler): Unsubscribe {
    const list = this._stateHandlers;
    list.push(handler);
    return () => {
      const i = list.indexOf(handler);
      if (i >= 0) list.splice(i, 1);
    };
  }

  /** How many message subscribers and state subscribers there are (for leak checks). */
  get listenerCount(): number {
    let n = this._stateHandlers.length;
    this._handlers.forEach((s) => { n += s.size; });
    return n;
  }

  /** The full-jitter backoff delay before reconnection attempt number `attempt` (0-based). */
  backoffDelay(attempt: number): number {
    const o = this.options;
    const ceiling = Math.min(o.maxDelayMs, o.baseDelayMs * Math.pow(2, attempt));
    return Math.floor(o.random() * ceiling);
  }

  /**
   * The URL the next connection attempt uses (never the token, unless `auth: 'query'` on a
   * WebSocket): of `transport` when given, else of the next attempt's transport. The SSE
   * URL is the empty string when there is none (see `sseUrl`).
   */
  buildUrl(transport: Transport = this.nextTransport): string {
    const o = this.options;
    if (transport === 'sse') {
      const base = this._sseBase();
      if (base == null) return '';
      return withQuery(base, this._commonQuery());
    }
    const q: string[] = [];
    if (o.token) q.push(o.auth === 'query' ? 'token=' + encodeURIComponent(o.token) : 'auth=frame');
    return withQuery(this._wsBase(), q.concat(this._commonQuery()));
  }

  /** Open the connection (no-op when one is already open or being opened). */
  connect(): this {
    if (this._conn || this._awaitingToken) return this;
    this._requireImpl(); // throws at once when the transport cannot work at all
    if (this.attempt >= this.options.maxAttempts) this.attempt = 0; // after giving up: start over
    this._stopped = false;
    this._listenWindow(true);
    this._clearTimer('_reconnectTimer');
    this._open(this.stats.connects > 0 || this.attempt > 0 ? 'reconnecting' : 'connecting');
    return this;
  }

  /** Start over after giving up (or skip the current backoff wait): resets the attempt count. */
  retry(): this {
    this._requireImpl();
    this.attempt = 0;
    this._stopped = false;
    this._listenWindow(true);
    this._clearTimer('_reconnectTimer');
    if (!this._conn && !this._awaitingToken) this._open('reconnecting');
    return this;
  }

  /**
   * Close cleanly (code 1000; SSE: the request is aborted); clears every timer, socket,
   * request and window listener. Subscribers stay. The transport choice starts over: the
   * next connect() tries a WebSocket first again (`transport: 'auto'`).
   */
  disconnect(): this {
    this._stopped = true;
    this._generation++;
    this._awaitingToken = false;
    this._clearTimer('_reconnectTimer');
    this._stopHeartbeat();
    this._listenWindow(false);
    const conn = this._conn;
    this._conn = null;
    if (conn) shut(conn, 1000, 'client disconnect');
    this._wsFailedBeforeOpen = false;
    this._sseProven = false;
    this._nextTransport = this.options.transport === 'sse' ? 'sse' : 'websocket';
    this._setState('disconnected');
    return this;
  }

  /** disconnect() and drop every subscriber. */
  destroy(): void {
    this.disconnect();
    this._handlers = new Map();
    this._stateHandlers = [];
  }

  /** Send a text frame; false when not connected (always on SSE: the client sends nothing there). */
  send(text: string): boolean {
    const ws = this._conn && this._conn.ws;
    if (!ws || ws.readyState !== 1) return false;
    try {
      ws.send(text);
      return true;
    } catch {
      return false;
    }
  }

  // ---------------------------------------------------------------- internals

  private _setState(next: ConnectionState): void {
    const prev = this.state;
    if (prev === next) return;
    this.state = next;
    // the live transport changes with the state, and is current when state handlers run
    const transport = next === 'connected' && this._conn ? this._conn.transport : null;
    const transportChanged = transport !== this._transport;
    this._transport = transport;
    for (const fn of this._stateHandlers.slice()) {
      try { fn(next, prev); } catch (e) { reportError(e); }
    }
    if (transportChanged) this._emit('client:transport', transport, null);
  }

  private _emit(type: string, data: unknown, msg: unknown): void {
    const set = this._handlers.get(type);
    if (!set) return;
    for (const fn of Array.from(set)) {
      try { fn(data, msg); } catch (e) { reportError(e); }
    }
  }

  private _clearTimer(name: '_reconnectTimer' | '_heartbeatTimer' | '_pongTimer' | '_livenessTimer'): void {
    if (this[name] != null) {
      const t = this.options.timers;
      t.clearTimeout(this[name]);
      t.clearInterval(this[name]);
      this[name] = null;
    }
  }

  private _open(state: ConnectionState): void {
    this._setState(state);
    const getToken = this.options.getToken;
    if (!getToken) {
      this._dial();
      return;
    }
    const generation = this._generation;
    const failed = (error: unknown) => {
      this._emit('client:token_error', { error }, null);
      this._scheduleReconnect();
    };
    let result: TokenResult | Promise<TokenResult>;
    try {
      result = getToken();
    } catch (e) {
      failed(e);
      return;
    }
    if (!result || typeof (result as Promise<TokenResult>).then !== 'function') {
      this.options.token = (result as TokenResult) ?? null;
      this._dial();
      return;
    }
    this._awaitingToken = true;
    (result as Promise<TokenResult>).then(
      (token) => {
        if (generation !== this._generation || this._stopped || this._conn) return;
        this._awaitingToken = false;
        this.options.token = token ?? null;
        this._dial();
      },
      (e) => {
        if (generation !== this._generation || this._stopped) return;
        this._awaitingToken = false;
        failed(e);
      },
    );
  }

  private _dial(): void {
    if (this.nextTransport === 'sse') this._dialSse();
    else this._dialWebSocket();
  }

  private _newConnection(transport: Transport): Connection {
    const conn = newConnection(transport);
    this._conn = conn;
    this._awaitingGreeting = true;
    this._awaitingRecovery = this.lastId != null; // the URL carries ?since=
    this._liveSince = null;
    return conn;
  }

  private _dialWebSocket(): void {
    const WS = webSocketImpl(this.options);
    const url = this.buildUrl('websocket');
    let ws: WebSocketLike;
    try {
      ws = new WS(url);
    } catch {
      // no socket at all: as a WebSocket that failed before it opened
      this._ended(this._newConnection('websocket'), { code: 1006, reason: undefined });
      return;
    }
    const conn = this._newConnection('websocket');
    const o = this.options;
    this._authFrame = o.token && o.auth === 'frame' ? o.token : null;
    attachWebSocket(conn, ws, this._sink);
  }

  // GET the SSE endpoint with fetch (transport.ts: the token in Authorization, never in
  // the URL); each event's data goes to the same handler as a WebSocket text frame.
  private _dialSse(): void {
    const url = this.buildUrl('sse');
    const conn = this._newConnection('sse');
    this._authFrame = null; // the token is in the request's headers
    const doFetch = fetchImpl(this.options);
    if (!doFetch || !url) {
      this._ended(conn, { code: 1006, reason: 'no fetch or SSE URL' });
      return;
    }
    dialSse(conn, doFetch, url, this.options.token, this._sink);
  }

  private _armLiveness(conn: Connection): void {
    this._clearTimer('_livenessTimer');
    const o = this.options;
    if (!o.heartbeatMs || !o.pongTimeoutMs) return; // either off: no liveness deadline
    this._livenessTimer = o.timers.setTimeout(() => {
      this._livenessTimer = null;
      if (conn === this._conn) this._dropDead(conn);
    }, o.heartbeatMs + o.pongTimeoutMs);
  }

  // What the configured transport needs, or a TypeError now (not on a later attempt).
  private _requireImpl(): void {
    if (this.options.transport !== 'sse') {
      webSocketImpl(this.options);
      return;
    }
    if (!fetchImpl(this.options)) {
      throw new TypeError("WebSocketService: transport 'sse' needs fetch; pass options.fetch");
    }
    if (this._sseBase() == null) {
      throw new TypeError("WebSocketService: transport 'sse' needs an SSE URL; pass options.sseUrl");
    }
  }

  private _wsBase(): string {
    const o = this.options;
    if (o.url) return o.url;
    const loc = o.location || {};
    const scheme = loc.protocol === 'https:' ? 'wss:' : 'ws:';
    return scheme + '//' + (loc.host || 'localhost') + o.path;
  }

  private _sseBase(): string | null {
    return this.options.sseUrl || sseUrlOf(this._wsBase());
  }

  private _commonQuery(): string[] {
    const o = this.options;
    const q: string[] = [];
    if (o.types) q.push('types=' + o.types.map(encodeURIComponent).join(','));
    if (this.lastId) q.push('since=' + encodeURIComponent(this.lastId));
    if (o.state) q.push('state=1');
    return q;
  }

  private _handleOpen(conn: Connection): void {
    if (conn !== this._conn) return;
    conn.opened = true;
    this.stats.connects++;
    const ws = conn.ws;
    if (ws && this._authFrame != null) {
      // the first frame; the server says nothing until it has accepted it
      try { ws.send(JSON.stringify({ type: 'auth', token: this._authFrame })); } catch { /* the close follows */ }
    } else {
      this._setState('connected'); // SSE: a 200 means the token was accepted
    }
    if (ws) this._startHeartbeat(); // SSE: the liveness deadline instead (no ping)
  }

  // The one handler of a server text message: a WebSocket text frame, or the data of an
  // SSE event (the same JSON envelope).
  private _handleText(conn: Connection, text: unknown): void {
    if (conn !== this._conn) return;
    conn.heard = true;
    this._clearTimer('_pongTimer'); // anything at all proves the connection alive
    const ev = { data: text };
    const greeting = this._awaitingGreeting;
    if (greeting) {
      this._awaitingGreeting = false;
      if (this._authFrame != null) this._setState('connected'); // the token was accepted
    }
    let msg: Envelope | null = null;
    try {
      msg = JSON.parse(ev.data as string);
    } catch { /* below */ }
    if (!msg || typeof msg !== 'object' || typeof msg.type !== 'string') {
      if (greeting) this._greeted(conn, null);
      this._emit('client:invalid', ev.data, null);
      return;
    }
    // before the greeting's own handling: the greeting is never a state event
    if (conn.stateEvents && this._collectState(conn, msg)) return;
    if (greeting) this._greeted(conn, msg);
    // a reserved type: a marker outside the state phase is no message (and no `state` event)
    if (msg.type === 'state') return;
    this.stats.received++;
    if (!greeting) this._noteProgress(msg);

    const id = idOf(msg);
    if (id != null) {
      if (this._seen.has(id)) {
        this.stats.duplicates++;
        this._emit('client:duplicate', msg.data, msg);
        return;
      }
      this._seen.add(id);
      if (this.lastId == null) {
        this.lastId = id;
      } else {
        const c = compareIds(id, this.lastId);
        if (c === null || c > 0) this.lastId = id; // opaque ids: the latest seen wins
      }
    }

    if (isPong(msg)) {
      this._emit('client:pong', msg.data, msg);
      return;
    }

    if (msg.type === 'recovery') {
      const d = (msg.data || {}) as RecoveryData;
      if (d.recovered === false) {
        this.stats.recoveriesFailed++;
        // the server sends the state next (we asked): what we had is to be replaced
        if (this.options.state && !this._stateUnsupported) this._beginState(conn);
        this._emit('client:resync', d, msg);
      } else {
        this.stats.replayed += Number(d.replayed) || 0;
        // a resume that recovered gets no state: one never loaded is not coming
        if (this._statePhase === 'loading') this._setStatePhase('off');
        this._emit('client:recovered', d, msg);
      }
    }

    this._emit(msg.type, msg.data, msg);
    this._emit('*', msg.data, msg);
  }

  // The first message of a connection. A fresh one (no `?since=`) asked for state: what
  // follows until the marker is the state, unless the greeting carries an id (the position
  // a gateway without keyed state greets with; with state=1 the position is the marker's).
  private _greeted(conn: Connection, msg: Envelope | null): void {
    if (this._awaitingRecovery) return; // resumed: live after `recovery` (or its state)
    if (this.options.state) {
      this._stateUnsupported = msg != null && idOf(msg) != null;
      if (!this._stateUnsupported) {
        this._beginState(conn);
        return;
      }
      this._setStatePhase('off');
    }
    this._liveSince = Date.now();
  }

  // The state phase begins: the position is none until the marker names one, so a
  // connection cut before it is followed by a fresh one (state=1, no `?since=`).
  private _beginState(conn: Connection): void {
    conn.stateEvents = [];
    this.lastId = null;
    this._liveSince = null; // live (and healthy) only after the marker
    this._setStatePhase('loading');
  }

  // A message of the state phase: true when it was taken (a state event, or the marker).
  // Pongs and `error` replies answer this client, whenever: not state, dispatched as ever.
  private _collectState(conn: Connection, msg: Envelope): boolean {
    const events = conn.stateEvents;
    if (!events || isPong(msg) || msg.type === 'error') return false;
    if (msg.type !== 'state') {
      events.push(msg); // its id is old and in no order: neither a position nor deduped
      return true;
    }
    conn.stateEvents = null;
    const id = idOf(msg);
    if (id != null) {
      this.lastId = id; // the marker's id is the position, whatever came before
      this._seen.add(id); // (a no-op when seen already)
    }
    this._liveSince = Date.now();
    const d = (msg.data || {}) as { count?: unknown };
    const count = typeof d.count === 'number' && d.count >= 0 ? d.count : events.length;
    const prev = this._statePhase;
    this._statePhase = 'complete'; // already, for the `state` handlers
    this._emit('state', { events, count, id: id ?? undefined }, msg);
    if (prev !== 'complete') this._emit('client:state_phase', 'complete', null);
    return true;
  }

  private _setStatePhase(next: StatePhase): void {
    if (this._statePhase === next) return;
    this._statePhase = next;
    this._emit('client:state_phase', next, null);
  }

  // A connection proves itself with its first live event: not the greeting, a pong, an
  // error reply or what a resume replays (everything before `recovery`).
  private _noteProgress(msg: Envelope): void {
    if (this._awaitingRecovery) {
      if (msg.type === 'recovery') {
        this._awaitingRecovery = false;
        this._liveSince = Date.now();
      }
      return;
    }
    if (this._liveSince != null && msg.type !== 'error' && !isPong(msg)) this.attempt = 0;
  }

  // ...or by staying up `healthyAfterMs` into its live stream; judged when it ends.
  private _judgeEnded(): void {
    const since = this._liveSince;
    this._liveSince = null;
    this._awaitingGreeting = false;
    this._awaitingRecovery = false;
    if (since != null && Date.now() - since >= this.options.healthyAfterMs) this.attempt = 0;
  }

  // A connection ended (closed, refused, failed, dropped): pick the next transport, report
  // the close, and schedule the next attempt.
  private _ended(conn: Connection, end: Ending): void {
    if (conn !== this._conn) return;
    this._conn = null;
    this._stopHeartbeat();
    this._judgeEnded();
    const now = this._nextAfter(conn, end);
    if (this._stopped) return;
    const info: ClientEventMap['client:close'] = { code: end.code, reason: end.reason };
    if (end.status !== undefined) info.status = end.status;
    this._emit('client:close', info, null);
    if (now) {
      this._scheduleReconnect(0);
      return;
    }
    let floor = 0;
    if (end.retryAfterMs != null) floor = Math.min(end.retryAfterMs, this.options.maxDelayMs);
    this._scheduleReconnect(undefined, floor);
  }

  // `transport: 'auto'`: which transport the next attempt uses; true when it is the
  // switch to SSE that goes at once.
  private _nextAfter(conn: Connection, end: Ending): boolean {
    if (this.options.transport !== 'auto') return false;
    if (conn.transport === 'websocket') {
      if (!conn.opened) this._wsFailedBeforeOpen = true;
      const blocked = !conn.opened || (!conn.heard && end.code === 1006);
      if (blocked && fetchImpl(this.options) && this._sseBase() != null) {
        this._nextTransport = 'sse';
        return true;
      }
      return false;
    }
    if (conn.heard) this._sseProven = true;
    this._nextTransport = this._sseProven || this._wsFailedBeforeOpen ? 'sse' : 'websocket';
    return false;
  }

  private _scheduleReconnect(fixedDelay?: number, minDelay = 0): void {
    if (this._stopped) return;
    this._clearTimer('_reconnectTimer');
    if (this.attempt >= this.options.maxAttempts) {
      this._setState('disconnected');
      this._emit('client:gave_up', { attempts: this.attempt }, null);
      return;
    }
    const delay = fixedDelay !== undefined ? fixedDelay : Math.max(minDelay, this.backoffDelay(this.attempt));
    this.attempt++;
    this._setState('reconnecting');
    // every attempt, not only the first: the state stays `reconnecting` between them
    this._emit('client:reconnecting', { attempt: this.attempt, maxAttempts: this.options.maxAttempts, delayMs: delay }, null);
    this._reconnectTimer = this.options.timers.setTimeout(() => {
      this._reconnectTimer = null;
      if (!this._stopped && !this._conn && !this._awaitingToken) this._open('reconnecting');
    }, delay);
  }

  private _startHeartbeat(): void {
    this._stopHeartbeat();
    if (!this.options.heartbeatMs) return;
    const t = this.options.timers;
    this._heartbeatTimer = t.setInterval(() => {
      if (!this.send('ping')) return;
      if (this._pongTimer == null && this.options.pongTimeoutMs) {
        this._pongTimer = t.setTimeout(() => {
          this._pongTimer = null;
          if (this._conn) this._dropDead(this._conn);
        }, this.options.pongTimeoutMs);
      }
    }, this.options.heartbeatMs);
  }

  private _stopHeartbeat(): void {
    this._clearTimer('_heartbeatTimer');
    this._clearTimer('_pongTimer');
    this._clearTimer('_livenessTimer');
  }

  // No answer to a ping (SSE: no bytes within heartbeatMs + pongTimeoutMs): do not wait
  // for the browser's (possibly minutes long) closing handshake on a dead TCP connection;
  // drop it (abort the request) and reconnect now.
  private _dropDead(conn: Connection): void {
    if (conn !== this._conn) return;
    shut(conn, 4000, 'heartbeat timeout');
    this._ended(conn, { code: 4000, reason: 'heartbeat timeout' });
  }

  private _onOnline = (): void => {
    // the network came back: skip the rest of the backoff wait
    if (this._reconnectTimer != null && !this._conn && !this._stopped && !this._awaitingToken) {
      this._clearTimer('_reconnectTimer');
      this._open('reconnecting');
    }
  };

  private _listenWindow(on: boolean): void {
    if (on === this._windowListening) return;
    if (typeof root.addEventListener !== 'function') return;
    if (on) root.addEventListener('online', this._onOnline);
    else root.removeEventListener('online', this._onOnline);
    this._windowListening = on;
  }
}