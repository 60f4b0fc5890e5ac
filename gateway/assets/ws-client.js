/*
 * gateway/assets/ws-client.js: generated from clients/js — do not edit; run npm run build:page
 * (in clients/js). The source is clients/js/src/service.ts (and the modules it imports), the
 * same WebSocketService that the npm package @dashboard-gateway/client exports; here it is the
 * global window.WebSocketService used by dashboard.js.
 */
"use strict";
(() => {
  // src/ids.ts
  function stripZeros(digits) {
    const s = digits.replace(/^0+/, "");
    return s === "" ? "0" : s;
  }
  function parseStreamId(id) {
    var _a;
    if (typeof id !== "string") return null;
    const m = /^(?:([0-9a-z]{1,32}):)?(\d+)(?:-(\d+))?$/.exec(id.trim());
    if (!m) return null;
    return { epoch: (_a = m[1]) != null ? _a : null, ms: stripZeros(m[2]), seq: stripZeros(m[3] || "0") };
  }
  function compareDigits(a, b) {
    if (a.length !== b.length) return a.length < b.length ? -1 : 1;
    return a < b ? -1 : a > b ? 1 : 0;
  }
  function compareIds(a, b) {
    const pa = parseStreamId(a);
    const pb = parseStreamId(b);
    if (!pa || !pb || pa.epoch !== pb.epoch) return null;
    return compareDigits(pa.ms, pb.ms) || compareDigits(pa.seq, pb.seq);
  }
  function idOf(msg) {
    const id = msg.id;
    return typeof id === "string" && id !== "" || typeof id === "number" ? String(id) : null;
  }
  function isPong(msg) {
    const d = msg.data;
    return msg.type === "analytics_update" && d !== null && typeof d === "object" && !Array.isArray(d) && d.pong === true;
  }
  var DEDUPE_WINDOW = 2048;
  var SeenIds = class {
    constructor(capacity = DEDUPE_WINDOW) {
      this._ids = /* @__PURE__ */ new Set();
      /** The slot the next id goes in: once the ring is full, the oldest id's. */
      this._next = 0;
      this._ring = new Array(Math.max(1, Math.floor(capacity)));
    }
    /** The id is one of the last ones added. */
    has(id) {
      return this._ids.has(id);
    }
    /** Remember an id (a no-op when it is remembered already), forgetting the oldest when full. */
    add(id) {
      if (this._ids.has(id)) return;
      const oldest = this._ring[this._next];
      if (oldest !== void 0) this._ids.delete(oldest);
      this._ring[this._next] = id;
      this._next = (this._next + 1) % this._ring.length;
      this._ids.add(id);
    }
    /** How many ids are remembered (at most the capacity). */
    get size() {
      return this._ids.size;
    }
  };

  // src/http.ts
  function sseUrlOf(wsUrl) {
    const m = /^([a-z][a-z0-9+.-]*:)?(\/\/[^/?#]*)?([^?#]*)(.*)$/i.exec(wsUrl);
    if (!m) return null;
    const path = m[3].replace(/\/ws\/dashboard(\/?)$/, "/sse/dashboard$1");
    if (path === m[3]) return null;
    const scheme = (m[1] || "").toLowerCase();
    const httpScheme = scheme === "wss:" ? "https:" : scheme === "ws:" ? "http:" : m[1] || "";
    return httpScheme + (m[2] || "") + path + m[4];
  }
  function retryAfterMs(value) {
    if (value == null || value.trim() === "") return null;
    const v = value.trim();
    if (/^\d+$/.test(v)) return parseInt(v, 10) * 1e3;
    const at = Date.parse(v);
    return isFinite(at) ? Math.max(0, at - Date.now()) : null;
  }
  function refusalCode(status) {
    if (status === 401) return 4001;
    if (status === 403 || status === 400) return 1008;
    if (status === 429 || status === 503) return 1013;
    return 1006;
  }
  function withQuery(base, q) {
    if (!q.length) return base;
    return base + (base.indexOf("?") >= 0 ? "&" : "?") + q.join("&");
  }

  // src/options.ts
  var root = typeof globalThis !== "undefined" ? globalThis : {};
  function resolveOptions(o) {
    const loc = o.location !== void 0 ? o.location : root.location || null;
    return {
      url: o.url || null,
      path: o.path || "/ws/dashboard",
      token: o.token !== void 0 ? o.token : pageParam(loc, "token"),
      auth: o.auth === "query" ? "query" : "frame",
      getToken: typeof o.getToken === "function" ? o.getToken : null,
      types: normalizeTypes(o.types),
      baseDelayMs: num(o.baseDelayMs, 500),
      maxDelayMs: num(o.maxDelayMs, 3e4),
      maxAttempts: num(o.maxAttempts, 10),
      healthyAfterMs: num(o.healthyAfterMs, 5e3),
      heartbeatMs: num(o.heartbeatMs, 15e3),
      pongTimeoutMs: num(o.pongTimeoutMs, 1e4),
      random: typeof o.random === "function" ? o.random : () => Math.random(),
      WebSocket: o.WebSocket || o.WebSocketImpl,
      transport: o.transport === "websocket" || o.transport === "sse" ? o.transport : "auto",
      sseUrl: o.sseUrl || null,
      fetch: typeof o.fetch === "function" ? o.fetch : void 0,
      location: loc,
      timers: o.timers || {
        setTimeout: (fn, ms) => root.setTimeout(fn, ms),
        clearTimeout: (h) => root.clearTimeout(h),
        setInterval: (fn, ms) => root.setInterval(fn, ms),
        clearInterval: (h) => root.clearInterval(h)
      },
      state: o.state !== false
    };
  }
  function webSocketImpl(o) {
    const WS = o.WebSocket || root.WebSocket;
    if (typeof WS !== "function") {
      throw new TypeError("WebSocketService: no WebSocket implementation; pass options.WebSocket (e.g. the `ws` package in Node < 22)");
    }
    return WS;
  }
  function fetchImpl(o) {
    if (o.fetch) return o.fetch;
    if (typeof root.fetch !== "function") return null;
    return (url, init) => root.fetch(url, init);
  }
  function normalizeTypes(types) {
    if (types == null || types === "") return null;
    const list = (Array.isArray(types) ? types : String(types).split(",")).map((t) => String(t).trim()).filter(Boolean);
    return list.length ? list : null;
  }
  function pageParam(loc, name) {
    try {
      if (!loc || typeof loc.search !== "string") return null;
      return new URLSearchParams(loc.search).get(name);
    } catch {
      return null;
    }
  }
  function num(v, d) {
    return typeof v === "number" && isFinite(v) && v >= 0 ? v : d;
  }

  // src/sse.ts
  var SseParser = class {
    constructor(handlers) {
      this.handlers = handlers;
      /** The last event id (the `id:` field), as the standard's "last event ID string". */
      this.lastEventId = "";
      this._buf = "";
      /** The previous chunk ended with a CR: an LF at the start of the next one ends nothing. */
      this._skipLf = false;
      this._data = "";
      this._hasData = false;
      this._type = "";
      this._idBuffer = "";
      /** Set by stop(): no more events, even from the rest of the current chunk. */
      this._stopped = false;
    }
    /** Feed decoded text; complete lines are interpreted now, the rest is kept. */
    feed(text) {
      if (this._stopped || text === "") return;
      let s = text;
      if (this._skipLf) {
        this._skipLf = false;
        if (s.charCodeAt(0) === 10) s = s.slice(1);
      }
      const kept = this._buf.length;
      let buf = this._buf + s;
      let start = 0;
      const n = buf.length;
      for (let i = kept; i < n; i++) {
        const c = buf.charCodeAt(i);
        if (c !== 10 && c !== 13) continue;
        this._line(buf.slice(start, i));
        if (this._stopped) {
          this._buf = "";
          return;
        }
        if (c === 13) {
          if (i + 1 < n) {
            if (buf.charCodeAt(i + 1) === 10) i++;
          } else {
            this._skipLf = true;
          }
        }
        start = i + 1;
      }
      buf = start === 0 ? buf : buf.slice(start);
      this._buf = buf;
    }
    /** The stream ended: an incomplete line or event is discarded. */
    end() {
      this._buf = "";
      this._skipLf = false;
      this._data = "";
      this._hasData = false;
      this._type = "";
    }
    /** Deliver nothing more (the rest of the current chunk included). */
    stop() {
      this._stopped = true;
      this.end();
    }
    _line(line) {
      var _a, _b, _c, _d;
      if (line === "") {
        this._dispatch();
        return;
      }
      const colon = line.indexOf(":");
      if (colon === 0) {
        (_b = (_a = this.handlers).comment) == null ? void 0 : _b.call(_a, line.slice(1));
        return;
      }
      let field = line;
      let value = "";
      if (colon > 0) {
        field = line.slice(0, colon);
        value = line.slice(colon + 1);
        if (value.charCodeAt(0) === 32) value = value.slice(1);
      }
      switch (field) {
        case "data":
          this._data += value + "\n";
          this._hasData = true;
          break;
        case "event":
          this._type = value;
          break;
        case "id":
          if (value.indexOf("\0") < 0) this._idBuffer = value;
          break;
        case "retry":
          if (/^[0-9]+$/.test(value)) (_d = (_c = this.handlers).retry) == null ? void 0 : _d.call(_c, parseInt(value, 10));
          break;
        default:
          break;
      }
    }
    _dispatch() {
      this.lastEventId = this._idBuffer;
      if (!this._hasData) {
        this._type = "";
        return;
      }
      const data = this._data.slice(0, -1);
      const type = this._type || "message";
      this._data = "";
      this._hasData = false;
      this._type = "";
      this.handlers.event({ type, data, lastEventId: this.lastEventId });
    }
  };

  // src/transport.ts
  function newConnection(transport) {
    return {
      transport,
      opened: false,
      heard: false,
      ws: null,
      abort: null,
      reader: null,
      parser: null,
      closeInfo: null,
      stateEvents: null
    };
  }
  function noop() {
  }
  function attachWebSocket(conn, ws, sink) {
    conn.ws = ws;
    ws.onopen = () => sink.opened(conn);
    ws.onmessage = (ev) => sink.text(conn, ev.data);
    ws.onerror = noop;
    ws.onclose = (ev) => {
      if (!sink.isCurrent(conn)) return;
      detach(ws);
      sink.ended(conn, { code: ev && ev.code, reason: ev && ev.reason });
    };
  }
  function dialSse(conn, doFetch, url, token, sink) {
    const headers = { Accept: "text/event-stream" };
    if (token) headers.Authorization = "Bearer " + token;
    const init = { method: "GET", headers, cache: "no-store" };
    const AC = root.AbortController;
    if (typeof AC === "function") {
      conn.abort = new AC();
      init.signal = conn.abort.signal;
    }
    const failed = (e) => {
      if (!sink.isCurrent(conn)) return;
      sink.ended(conn, { code: 1006, reason: e instanceof Error ? e.message : void 0 });
    };
    sink.alive(conn);
    let pending;
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
      const type = res.headers && res.headers.get("content-type") || "";
      if (res.status !== 200 || !/^\s*text\/event-stream/i.test(type) || !res.body) {
        refused(conn, res, sink);
        return;
      }
      readSse(conn, res, sink);
    }, failed);
  }
  function refused(conn, res, sink) {
    const status = res.status;
    const wait = status === 429 || status === 503 ? retryAfterMs(res.headers && res.headers.get("retry-after")) : null;
    const end = (reason) => {
      if (!sink.isCurrent(conn)) return;
      sink.ended(conn, { code: status === 200 ? 1006 : refusalCode(status), reason, status, retryAfterMs: wait });
    };
    if (status === 200) {
      cancelBody(res);
      end("not an event stream");
      return;
    }
    let body;
    try {
      body = Promise.resolve(res.text());
    } catch {
      end(void 0);
      return;
    }
    body.then((text) => {
      let reason;
      try {
        const e = JSON.parse(text).error;
        if (e && typeof e.code === "string") reason = e.code;
        else if (e && typeof e.message === "string") reason = e.message;
      } catch {
      }
      end(reason);
    }, () => end(void 0));
  }
  function readSse(conn, res, sink) {
    const TD = root.TextDecoder;
    const reader = res.body.getReader();
    conn.reader = reader;
    if (typeof TD !== "function") {
      shut(conn, 1006, "no TextDecoder");
      sink.ended(conn, { code: 1006, reason: "no TextDecoder" });
      return;
    }
    const decoder = new TD("utf-8");
    const parser = new SseParser({
      event: (ev) => {
        if (ev.type === "message") {
          sink.text(conn, ev.data);
        } else if (ev.type === "close") {
          let code = 1006;
          let reason = "";
          try {
            const d = JSON.parse(ev.data);
            if (typeof d.code === "number") code = d.code;
            if (typeof d.reason === "string") reason = d.reason;
          } catch {
          }
          conn.closeInfo = { code, reason };
          if (sink.isCurrent(conn)) endSse(conn, sink);
        }
      }
    });
    conn.parser = parser;
    sink.alive(conn);
    sink.opened(conn);
    const pump = () => reader.read().then(({ done, value }) => {
      if (!sink.isCurrent(conn)) return void 0;
      if (done) {
        parser.feed(decoder.decode());
        parser.end();
        if (sink.isCurrent(conn)) endSse(conn, sink);
        return void 0;
      }
      sink.alive(conn);
      parser.feed(typeof value === "string" ? value : decoder.decode(value, { stream: true }));
      return sink.isCurrent(conn) ? pump() : void 0;
    });
    pump().catch((e) => {
      if (!sink.isCurrent(conn)) return;
      shut(conn, 1006, "read error");
      sink.ended(conn, { code: 1006, reason: e instanceof Error ? e.message : void 0 });
    });
  }
  function endSse(conn, sink) {
    const info = conn.closeInfo;
    shut(conn, 1e3, "stream ended");
    sink.ended(conn, { code: info ? info.code : 1006, reason: info ? info.reason : "" });
  }
  function shut(conn, code, reason) {
    const ws = conn.ws;
    if (ws) {
      detach(ws);
      try {
        ws.close(code, reason);
      } catch {
      }
    }
    if (conn.parser) conn.parser.stop();
    if (conn.abort) {
      try {
        conn.abort.abort();
      } catch {
      }
    }
    if (conn.reader) conn.reader.cancel().catch(noop);
  }
  function detach(ws) {
    ws.onopen = null;
    ws.onmessage = null;
    ws.onclose = null;
    ws.onerror = noop;
  }
  function cancelBody(res) {
    try {
      if (res.body) res.body.getReader().cancel().catch(noop);
    } catch {
    }
  }

  // src/service.ts
  var STATES = ["connecting", "connected", "reconnecting", "disconnected"];
  function reportError(e) {
    if (typeof root.setTimeout === "function") {
      root.setTimeout(() => {
        throw e;
      }, 0);
    }
  }
  var WebSocketService = class {
    constructor(options = {}) {
      /** The current connection state. */
      this.state = "disconnected";
      /** Reconnection attempts made since the last healthy connection. */
      this.attempt = 0;
      this.stats = { received: 0, duplicates: 0, connects: 0, replayed: 0, recoveriesFailed: 0 };
      this._handlers = /* @__PURE__ */ new Map();
      this._stateHandlers = [];
      /** The current connection attempt (either transport); null between attempts. */
      this._conn = null;
      /** The transport of the next attempt (`transport: 'auto'`). */
      this._nextTransport = "websocket";
      /** A WebSocket failed before it opened since connect(): SSE from then on (auto). */
      this._wsFailedBeforeOpen = false;
      /** An SSE connection delivered a message since connect(): SSE from then on (auto). */
      this._sseProven = false;
      /** The live transport (`transport` getter): the current connection's, while connected. */
      this._transport = null;
      /** The current socket's greeting has not come yet. */
      this._awaitingGreeting = false;
      /** The current socket resumed with `?since=` and its `recovery` has not come yet. */
      this._awaitingRecovery = false;
      /** When the current socket's live stream began (greeting, or `recovery` when resuming). */
      this._liveSince = null;
      /** The current socket sends its token as the first frame (`?auth=frame`). */
      this._authFrame = null;
      /** disconnect() called, or never connected. */
      this._stopped = true;
      // eslint-disable-next-line @typescript-eslint/no-explicit-any
      this._reconnectTimer = null;
      // eslint-disable-next-line @typescript-eslint/no-explicit-any
      this._heartbeatTimer = null;
      // eslint-disable-next-line @typescript-eslint/no-explicit-any
      this._pongTimer = null;
      /** SSE: no bytes for heartbeatMs + pongTimeoutMs ends the connection. */
      // eslint-disable-next-line @typescript-eslint/no-explicit-any
      this._livenessTimer = null;
      /** The last ids seen (DEDUPE_WINDOW of them): one seen again is a duplicate. */
      this._seen = new SeenIds();
      this._windowListening = false;
      /** A `getToken()` promise is pending: the socket is about to be opened. */
      this._awaitingToken = false;
      /** Bumped by disconnect(): a token that arrives after it opens nothing. */
      this._generation = 0;
      /** The last fresh connection's greeting carried an id: its gateway sends no state. */
      this._stateUnsupported = false;
      /** How a connection's transport reports to the service (transport.ts). */
      this._sink = {
        isCurrent: (conn) => conn === this._conn,
        opened: (conn) => this._handleOpen(conn),
        text: (conn, text) => this._handleText(conn, text),
        alive: (conn) => this._armLiveness(conn),
        ended: (conn, end) => this._ended(conn, end)
      };
      this._onOnline = () => {
        if (this._reconnectTimer != null && !this._conn && !this._stopped && !this._awaitingToken) {
          this._clearTimer("_reconnectTimer");
          this._open("reconnecting");
        }
      };
      const o = options;
      this.options = resolveOptions(o);
      this._statePhase = this.options.state ? "loading" : "off";
      this.lastId = o.since ? String(o.since) : null;
      this._nextTransport = this.options.transport === "sse" ? "sse" : "websocket";
      if (typeof o.onStateChange === "function") this._stateHandlers.push(o.onStateChange);
    }
    /** The live transport: `websocket` or `sse` while connected, else null. */
    get transport() {
      return this._transport;
    }
    /**
     * Where the keyed state stands: `off` (not asked for, or not sent: a gateway without it,
     * or a resume that recovered before any state came), `loading` (asked for and not
     * complete: before the first marker, or after a `recovered: false` until the next one;
     * also while reconnecting from a connection cut in that phase), `complete` (the marker
     * came; live events apply on top of it).
     */
    get statePhase() {
      return this._statePhase;
    }
    /** The transport the next connection attempt uses. */
    get nextTransport() {
      const t = this.options.transport;
      return t === "auto" ? this._nextTransport : t;
    }
    on(type, handler) {
      if (typeof handler !== "function") throw new TypeError("handler must be a function");
      const key = String(type);
      let set = this._handlers.get(key);
      if (!set) this._handlers.set(key, set = /* @__PURE__ */ new Set());
      const entry = (data, msg) => handler(data, msg);
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
    onStateChange(handler) {
      const list = this._stateHandlers;
      list.push(handler);
      return () => {
        const i = list.indexOf(handler);
        if (i >= 0) list.splice(i, 1);
      };
    }
    /** How many message subscribers and state subscribers there are (for leak checks). */
    get listenerCount() {
      let n = this._stateHandlers.length;
      this._handlers.forEach((s) => {
        n += s.size;
      });
      return n;
    }
    /** The full-jitter backoff delay before reconnection attempt number `attempt` (0-based). */
    backoffDelay(attempt) {
      const o = this.options;
      const ceiling = Math.min(o.maxDelayMs, o.baseDelayMs * Math.pow(2, attempt));
      return Math.floor(o.random() * ceiling);
    }
    /**
     * The URL the next connection attempt uses (never the token, unless `auth: 'query'` on a
     * WebSocket): of `transport` when given, else of the next attempt's transport. The SSE
     * URL is the empty string when there is none (see `sseUrl`).
     */
    buildUrl(transport = this.nextTransport) {
      const o = this.options;
      if (transport === "sse") {
        const base = this._sseBase();
        if (base == null) return "";
        return withQuery(base, this._commonQuery());
      }
      const q = [];
      if (o.token) q.push(o.auth === "query" ? "token=" + encodeURIComponent(o.token) : "auth=frame");
      return withQuery(this._wsBase(), q.concat(this._commonQuery()));
    }
    /** Open the connection (no-op when one is already open or being opened). */
    connect() {
      if (this._conn || this._awaitingToken) return this;
      this._requireImpl();
      if (this.attempt >= this.options.maxAttempts) this.attempt = 0;
      this._stopped = false;
      this._listenWindow(true);
      this._clearTimer("_reconnectTimer");
      this._open(this.stats.connects > 0 || this.attempt > 0 ? "reconnecting" : "connecting");
      return this;
    }
    /** Start over after giving up (or skip the current backoff wait): resets the attempt count. */
    retry() {
      this._requireImpl();
      this.attempt = 0;
      this._stopped = false;
      this._listenWindow(true);
      this._clearTimer("_reconnectTimer");
      if (!this._conn && !this._awaitingToken) this._open("reconnecting");
      return this;
    }
    /**
     * Close cleanly (code 1000; SSE: the request is aborted); clears every timer, socket,
     * request and window listener. Subscribers stay. The transport choice starts over: the
     * next connect() tries a WebSocket first again (`transport: 'auto'`).
     */
    disconnect() {
      this._stopped = true;
      this._generation++;
      this._awaitingToken = false;
      this._clearTimer("_reconnectTimer");
      this._stopHeartbeat();
      this._listenWindow(false);
      const conn = this._conn;
      this._conn = null;
      if (conn) shut(conn, 1e3, "client disconnect");
      this._wsFailedBeforeOpen = false;
      this._sseProven = false;
      this._nextTransport = this.options.transport === "sse" ? "sse" : "websocket";
      this._setState("disconnected");
      return this;
    }
    /** disconnect() and drop every subscriber. */
    destroy() {
      this.disconnect();
      this._handlers = /* @__PURE__ */ new Map();
      this._stateHandlers = [];
    }
    /** Send a text frame; false when not connected (always on SSE: the client sends nothing there). */
    send(text) {
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
    _setState(next) {
      const prev = this.state;
      if (prev === next) return;
      this.state = next;
      const transport = next === "connected" && this._conn ? this._conn.transport : null;
      const transportChanged = transport !== this._transport;
      this._transport = transport;
      for (const fn of this._stateHandlers.slice()) {
        try {
          fn(next, prev);
        } catch (e) {
          reportError(e);
        }
      }
      if (transportChanged) this._emit("client:transport", transport, null);
    }
    _emit(type, data, msg) {
      const set = this._handlers.get(type);
      if (!set) return;
      for (const fn of Array.from(set)) {
        try {
          fn(data, msg);
        } catch (e) {
          reportError(e);
        }
      }
    }
    _clearTimer(name) {
      if (this[name] != null) {
        const t = this.options.timers;
        t.clearTimeout(this[name]);
        t.clearInterval(this[name]);
        this[name] = null;
      }
    }
    _open(state) {
      this._setState(state);
      const getToken = this.options.getToken;
      if (!getToken) {
        this._dial();
        return;
      }
      const generation = this._generation;
      const failed = (error) => {
        this._emit("client:token_error", { error }, null);
        this._scheduleReconnect();
      };
      let result;
      try {
        result = getToken();
      } catch (e) {
        failed(e);
        return;
      }
      if (!result || typeof result.then !== "function") {
        this.options.token = result != null ? result : null;
        this._dial();
        return;
      }
      this._awaitingToken = true;
      result.then(
        (token) => {
          if (generation !== this._generation || this._stopped || this._conn) return;
          this._awaitingToken = false;
          this.options.token = token != null ? token : null;
          this._dial();
        },
        (e) => {
          if (generation !== this._generation || this._stopped) return;
          this._awaitingToken = false;
          failed(e);
        }
      );
    }
    _dial() {
      if (this.nextTransport === "sse") this._dialSse();
      else this._dialWebSocket();
    }
    _newConnection(transport) {
      const conn = newConnection(transport);
      this._conn = conn;
      this._awaitingGreeting = true;
      this._awaitingRecovery = this.lastId != null;
      this._liveSince = null;
      return conn;
    }
    _dialWebSocket() {
      const WS = webSocketImpl(this.options);
      const url = this.buildUrl("websocket");
      let ws;
      try {
        ws = new WS(url);
      } catch {
        this._ended(this._newConnection("websocket"), { code: 1006, reason: void 0 });
        return;
      }
      const conn = this._newConnection("websocket");
      const o = this.options;
      this._authFrame = o.token && o.auth === "frame" ? o.token : null;
      attachWebSocket(conn, ws, this._sink);
    }
    // GET the SSE endpoint with fetch (transport.ts: the token in Authorization, never in
    // the URL); each event's data goes to the same handler as a WebSocket text frame.
    _dialSse() {
      const url = this.buildUrl("sse");
      const conn = this._newConnection("sse");
      this._authFrame = null;
      const doFetch = fetchImpl(this.options);
      if (!doFetch || !url) {
        this._ended(conn, { code: 1006, reason: "no fetch or SSE URL" });
        return;
      }
      dialSse(conn, doFetch, url, this.options.token, this._sink);
    }
    _armLiveness(conn) {
      this._clearTimer("_livenessTimer");
      const o = this.options;
      if (!o.heartbeatMs || !o.pongTimeoutMs) return;
      this._livenessTimer = o.timers.setTimeout(() => {
        this._livenessTimer = null;
        if (conn === this._conn) this._dropDead(conn);
      }, o.heartbeatMs + o.pongTimeoutMs);
    }
    // What the configured transport needs, or a TypeError now (not on a later attempt).
    _requireImpl() {
      if (this.options.transport !== "sse") {
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
    _wsBase() {
      const o = this.options;
      if (o.url) return o.url;
      const loc = o.location || {};
      const scheme = loc.protocol === "https:" ? "wss:" : "ws:";
      return scheme + "//" + (loc.host || "localhost") + o.path;
    }
    _sseBase() {
      return this.options.sseUrl || sseUrlOf(this._wsBase());
    }
    _commonQuery() {
      const o = this.options;
      const q = [];
      if (o.types) q.push("types=" + o.types.map(encodeURIComponent).join(","));
      if (this.lastId) q.push("since=" + encodeURIComponent(this.lastId));
      if (o.state) q.push("state=1");
      return q;
    }
    _handleOpen(conn) {
      if (conn !== this._conn) return;
      conn.opened = true;
      this.stats.connects++;
      const ws = conn.ws;
      if (ws && this._authFrame != null) {
        try {
          ws.send(JSON.stringify({ type: "auth", token: this._authFrame }));
        } catch {
        }
      } else {
        this._setState("connected");
      }
      if (ws) this._startHeartbeat();
    }
    // The one handler of a server text message: a WebSocket text frame, or the data of an
    // SSE event (the same JSON envelope).
    _handleText(conn, text) {
      if (conn !== this._conn) return;
      conn.heard = true;
      this._clearTimer("_pongTimer");
      const ev = { data: text };
      const greeting = this._awaitingGreeting;
      if (greeting) {
        this._awaitingGreeting = false;
        if (this._authFrame != null) this._setState("connected");
      }
      let msg = null;
      try {
        msg = JSON.parse(ev.data);
      } catch {
      }
      if (!msg || typeof msg !== "object" || typeof msg.type !== "string") {
        if (greeting) this._greeted(conn, null);
        this._emit("client:invalid", ev.data, null);
        return;
      }
      if (conn.stateEvents && this._collectState(conn, msg)) return;
      if (greeting) this._greeted(conn, msg);
      if (msg.type === "state") return;
      this.stats.received++;
      if (!greeting) this._noteProgress(msg);
      const id = idOf(msg);
      if (id != null) {
        if (this._seen.has(id)) {
          this.stats.duplicates++;
          this._emit("client:duplicate", msg.data, msg);
          return;
        }
        this._seen.add(id);
        if (this.lastId == null) {
          this.lastId = id;
        } else {
          const c = compareIds(id, this.lastId);
          if (c === null || c > 0) this.lastId = id;
        }
      }
      if (isPong(msg)) {
        this._emit("client:pong", msg.data, msg);
        return;
      }
      if (msg.type === "recovery") {
        const d = msg.data || {};
        if (d.recovered === false) {
          this.stats.recoveriesFailed++;
          if (this.options.state && !this._stateUnsupported) this._beginState(conn);
          this._emit("client:resync", d, msg);
        } else {
          this.stats.replayed += Number(d.replayed) || 0;
          if (this._statePhase === "loading") this._setStatePhase("off");
          this._emit("client:recovered", d, msg);
        }
      }
      this._emit(msg.type, msg.data, msg);
      this._emit("*", msg.data, msg);
    }
    // The first message of a connection. A fresh one (no `?since=`) asked for state: what
    // follows until the marker is the state, unless the greeting carries an id (the position
    // a gateway without keyed state greets with; with state=1 the position is the marker's).
    _greeted(conn, msg) {
      if (this._awaitingRecovery) return;
      if (this.options.state) {
        this._stateUnsupported = msg != null && idOf(msg) != null;
        if (!this._stateUnsupported) {
          this._beginState(conn);
          return;
        }
        this._setStatePhase("off");
      }
      this._liveSince = Date.now();
    }
    // The state phase begins: the position is none until the marker names one, so a
    // connection cut before it is followed by a fresh one (state=1, no `?since=`).
    _beginState(conn) {
      conn.stateEvents = [];
      this.lastId = null;
      this._liveSince = null;
      this._setStatePhase("loading");
    }
    // A message of the state phase: true when it was taken (a state event, or the marker).
    // Pongs and `error` replies answer this client, whenever: not state, dispatched as ever.
    _collectState(conn, msg) {
      const events = conn.stateEvents;
      if (!events || isPong(msg) || msg.type === "error") return false;
      if (msg.type !== "state") {
        events.push(msg);
        return true;
      }
      conn.stateEvents = null;
      const id = idOf(msg);
      if (id != null) {
        this.lastId = id;
        this._seen.add(id);
      }
      this._liveSince = Date.now();
      const d = msg.data || {};
      const count = typeof d.count === "number" && d.count >= 0 ? d.count : events.length;
      const prev = this._statePhase;
      this._statePhase = "complete";
      this._emit("state", { events, count, id: id != null ? id : void 0 }, msg);
      if (prev !== "complete") this._emit("client:state_phase", "complete", null);
      return true;
    }
    _setStatePhase(next) {
      if (this._statePhase === next) return;
      this._statePhase = next;
      this._emit("client:state_phase", next, null);
    }
    // A connection proves itself with its first live event: not the greeting, a pong, an
    // error reply or what a resume replays (everything before `recovery`).
    _noteProgress(msg) {
      if (this._awaitingRecovery) {
        if (msg.type === "recovery") {
          this._awaitingRecovery = false;
          this._liveSince = Date.now();
        }
        return;
      }
      if (this._liveSince != null && msg.type !== "error" && !isPong(msg)) this.attempt = 0;
    }
    // ...or by staying up `healthyAfterMs` into its live stream; judged when it ends.
    _judgeEnded() {
      const since = this._liveSince;
      this._liveSince = null;
      this._awaitingGreeting = false;
      this._awaitingRecovery = false;
      if (since != null && Date.now() - since >= this.options.healthyAfterMs) this.attempt = 0;
    }
    // A connection ended (closed, refused, failed, dropped): pick the next transport, report
    // the close, and schedule the next attempt.
    _ended(conn, end) {
      if (conn !== this._conn) return;
      this._conn = null;
      this._stopHeartbeat();
      this._judgeEnded();
      const now = this._nextAfter(conn, end);
      if (this._stopped) return;
      const info = { code: end.code, reason: end.reason };
      if (end.status !== void 0) info.status = end.status;
      this._emit("client:close", info, null);
      if (now) {
        this._scheduleReconnect(0);
        return;
      }
      let floor = 0;
      if (end.retryAfterMs != null) floor = Math.min(end.retryAfterMs, this.options.maxDelayMs);
      this._scheduleReconnect(void 0, floor);
    }
    // `transport: 'auto'`: which transport the next attempt uses; true when it is the
    // switch to SSE that goes at once.
    _nextAfter(conn, end) {
      if (this.options.transport !== "auto") return false;
      if (conn.transport === "websocket") {
        if (!conn.opened) this._wsFailedBeforeOpen = true;
        const blocked = !conn.opened || !conn.heard && end.code === 1006;
        if (blocked && fetchImpl(this.options) && this._sseBase() != null) {
          this._nextTransport = "sse";
          return true;
        }
        return false;
      }
      if (conn.heard) this._sseProven = true;
      this._nextTransport = this._sseProven || this._wsFailedBeforeOpen ? "sse" : "websocket";
      return false;
    }
    _scheduleReconnect(fixedDelay, minDelay = 0) {
      if (this._stopped) return;
      this._clearTimer("_reconnectTimer");
      if (this.attempt >= this.options.maxAttempts) {
        this._setState("disconnected");
        this._emit("client:gave_up", { attempts: this.attempt }, null);
        return;
      }
      const delay = fixedDelay !== void 0 ? fixedDelay : Math.max(minDelay, this.backoffDelay(this.attempt));
      this.attempt++;
      this._setState("reconnecting");
      this._emit("client:reconnecting", { attempt: this.attempt, maxAttempts: this.options.maxAttempts, delayMs: delay }, null);
      this._reconnectTimer = this.options.timers.setTimeout(() => {
        this._reconnectTimer = null;
        if (!this._stopped && !this._conn && !this._awaitingToken) this._open("reconnecting");
      }, delay);
    }
    _startHeartbeat() {
      this._stopHeartbeat();
      if (!this.options.heartbeatMs) return;
      const t = this.options.timers;
      this._heartbeatTimer = t.setInterval(() => {
        if (!this.send("ping")) return;
        if (this._pongTimer == null && this.options.pongTimeoutMs) {
          this._pongTimer = t.setTimeout(() => {
            this._pongTimer = null;
            if (this._conn) this._dropDead(this._conn);
          }, this.options.pongTimeoutMs);
        }
      }, this.options.heartbeatMs);
    }
    _stopHeartbeat() {
      this._clearTimer("_heartbeatTimer");
      this._clearTimer("_pongTimer");
      this._clearTimer("_livenessTimer");
    }
    // No answer to a ping (SSE: no bytes within heartbeatMs + pongTimeoutMs): do not wait
    // for the browser's (possibly minutes long) closing handshake on a dead TCP connection;
    // drop it (abort the request) and reconnect now.
    _dropDead(conn) {
      if (conn !== this._conn) return;
      shut(conn, 4e3, "heartbeat timeout");
      this._ended(conn, { code: 4e3, reason: "heartbeat timeout" });
    }
    _listenWindow(on) {
      if (on === this._windowListening) return;
      if (typeof root.addEventListener !== "function") return;
      if (on) root.addEventListener("online", this._onOnline);
      else root.removeEventListener("online", this._onOnline);
      this._windowListening = on;
    }
  };
  WebSocketService.STATES = STATES;
  WebSocketService.compareIds = compareIds;
  WebSocketService.parseStreamId = parseStreamId;

  // src/page.ts
  globalThis.WebSocketService = WebSocketService;
})();
