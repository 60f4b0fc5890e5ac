/*
 * gateway/assets/ws-client.js: generated from clients/js — do not edit; run npm run build:page
 * (in clients/js). The source is clients/js/src/service.ts, the same WebSocketService that
 * the npm package @dashboard-gateway/client exports; here it is the global
 * window.WebSocketService used by dashboard.js.
 */
"use strict";
(() => {
  // src/service.ts
  var STATES = ["connecting", "connected", "reconnecting", "disconnected"];
  var DEDUPE_WINDOW = 2048;
  var root = typeof globalThis !== "undefined" ? globalThis : {};
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
  function normalizeTypes(types) {
    if (types == null || types === "") return null;
    const list = (Array.isArray(types) ? types : String(types).split(",")).map((t) => String(t).trim()).filter(Boolean);
    return list.length ? list : null;
  }
  function isPong(msg) {
    const d = msg.data;
    return msg.type === "analytics_update" && d !== null && typeof d === "object" && !Array.isArray(d) && d.pong === true;
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
  function reportError(e) {
    if (typeof root.setTimeout === "function") {
      root.setTimeout(() => {
        throw e;
      }, 0);
    }
  }
  function noop() {
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
      this._ws = null;
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
      this._seen = /* @__PURE__ */ new Set();
      this._seenOrder = [];
      this._windowListening = false;
      /** A `getToken()` promise is pending: the socket is about to be opened. */
      this._awaitingToken = false;
      /** Bumped by disconnect(): a token that arrives after it opens nothing. */
      this._generation = 0;
      this._onOnline = () => {
        if (this._reconnectTimer != null && !this._ws && !this._stopped && !this._awaitingToken) {
          this._clearTimer("_reconnectTimer");
          this._open("reconnecting");
        }
      };
      const o = options;
      const loc = o.location !== void 0 ? o.location : root.location || null;
      this.options = {
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
        location: loc,
        timers: o.timers || {
          setTimeout: (fn, ms) => root.setTimeout(fn, ms),
          clearTimeout: (h) => root.clearTimeout(h),
          setInterval: (fn, ms) => root.setInterval(fn, ms),
          clearInterval: (h) => root.clearInterval(h)
        }
      };
      this.lastId = o.since ? String(o.since) : null;
      if (typeof o.onStateChange === "function") this._stateHandlers.push(o.onStateChange);
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
    /** The URL the next connection attempt uses (never the token, unless `auth: 'query'`). */
    buildUrl() {
      const o = this.options;
      let base = o.url;
      if (!base) {
        const loc = o.location || {};
        const scheme = loc.protocol === "https:" ? "wss:" : "ws:";
        base = scheme + "//" + (loc.host || "localhost") + o.path;
      }
      const q = [];
      if (o.token) q.push(o.auth === "query" ? "token=" + encodeURIComponent(o.token) : "auth=frame");
      if (o.types) q.push("types=" + o.types.map(encodeURIComponent).join(","));
      if (this.lastId) q.push("since=" + encodeURIComponent(this.lastId));
      if (!q.length) return base;
      return base + (base.indexOf("?") >= 0 ? "&" : "?") + q.join("&");
    }
    /** Open the connection (no-op when one is already open or being opened). */
    connect() {
      if (this._ws || this._awaitingToken) return this;
      this._impl();
      if (this.attempt >= this.options.maxAttempts) this.attempt = 0;
      this._stopped = false;
      this._listenWindow(true);
      this._clearTimer("_reconnectTimer");
      this._open(this.stats.connects > 0 || this.attempt > 0 ? "reconnecting" : "connecting");
      return this;
    }
    /** Start over after giving up (or skip the current backoff wait): resets the attempt count. */
    retry() {
      this._impl();
      this.attempt = 0;
      this._stopped = false;
      this._listenWindow(true);
      this._clearTimer("_reconnectTimer");
      if (!this._ws && !this._awaitingToken) this._open("reconnecting");
      return this;
    }
    /** Close cleanly (code 1000); clears every timer, socket and window listener. Subscribers stay. */
    disconnect() {
      this._stopped = true;
      this._generation++;
      this._awaitingToken = false;
      this._clearTimer("_reconnectTimer");
      this._stopHeartbeat();
      this._listenWindow(false);
      const ws = this._ws;
      this._ws = null;
      if (ws) {
        this._detach(ws);
        try {
          ws.close(1e3, "client disconnect");
        } catch {
        }
      }
      this._setState("disconnected");
      return this;
    }
    /** disconnect() and drop every subscriber. */
    destroy() {
      this.disconnect();
      this._handlers = /* @__PURE__ */ new Map();
      this._stateHandlers = [];
    }
    /** Send a text frame; false when not connected. */
    send(text) {
      const ws = this._ws;
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
      for (const fn of this._stateHandlers.slice()) {
        try {
          fn(next, prev);
        } catch (e) {
          reportError(e);
        }
      }
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
          if (generation !== this._generation || this._stopped || this._ws) return;
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
      const WS = this._impl();
      let ws;
      try {
        ws = new WS(this.buildUrl());
      } catch {
        this._scheduleReconnect();
        return;
      }
      this._ws = ws;
      const o = this.options;
      this._authFrame = o.token && o.auth === "frame" ? o.token : null;
      this._awaitingGreeting = true;
      this._awaitingRecovery = this.lastId != null;
      this._liveSince = null;
      ws.onopen = () => this._handleOpen(ws);
      ws.onmessage = (ev) => this._handleMessage(ws, ev);
      ws.onerror = noop;
      ws.onclose = (ev) => this._handleClose(ws, ev);
    }
    _impl() {
      const WS = this.options.WebSocket || root.WebSocket;
      if (typeof WS !== "function") {
        throw new TypeError("WebSocketService: no WebSocket implementation; pass options.WebSocket (e.g. the `ws` package in Node < 22)");
      }
      return WS;
    }
    _detach(ws) {
      ws.onopen = null;
      ws.onmessage = null;
      ws.onclose = null;
      ws.onerror = noop;
    }
    _handleOpen(ws) {
      if (ws !== this._ws) return;
      this.stats.connects++;
      if (this._authFrame != null) {
        try {
          ws.send(JSON.stringify({ type: "auth", token: this._authFrame }));
        } catch {
        }
      } else {
        this._setState("connected");
      }
      this._startHeartbeat();
    }
    _handleMessage(ws, ev) {
      if (ws !== this._ws) return;
      this._clearTimer("_pongTimer");
      const greeting = this._awaitingGreeting;
      if (greeting) {
        this._awaitingGreeting = false;
        if (!this._awaitingRecovery) this._liveSince = Date.now();
        if (this._authFrame != null) this._setState("connected");
      }
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        this._emit("client:invalid", ev.data, null);
        return;
      }
      if (!msg || typeof msg !== "object" || typeof msg.type !== "string") {
        this._emit("client:invalid", ev.data, null);
        return;
      }
      this.stats.received++;
      if (!greeting) this._noteProgress(msg);
      if (typeof msg.id === "string" && msg.id !== "" || typeof msg.id === "number") {
        const id = String(msg.id);
        if (this._seen.has(id)) {
          this.stats.duplicates++;
          this._emit("client:duplicate", msg.data, msg);
          return;
        }
        this._remember(id);
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
          this._emit("client:resync", d, msg);
        } else {
          this.stats.replayed += Number(d.replayed) || 0;
          this._emit("client:recovered", d, msg);
        }
      }
      this._emit(msg.type, msg.data, msg);
      this._emit("*", msg.data, msg);
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
    _remember(id) {
      this._seen.add(id);
      this._seenOrder.push(id);
      if (this._seenOrder.length > DEDUPE_WINDOW) {
        this._seen.delete(this._seenOrder.shift());
      }
    }
    _handleClose(ws, ev) {
      if (ws !== this._ws) return;
      this._detach(ws);
      this._ws = null;
      this._stopHeartbeat();
      this._judgeEnded();
      if (this._stopped) return;
      this._emit("client:close", { code: ev && ev.code, reason: ev && ev.reason }, null);
      this._scheduleReconnect();
    }
    _scheduleReconnect() {
      if (this._stopped) return;
      this._clearTimer("_reconnectTimer");
      if (this.attempt >= this.options.maxAttempts) {
        this._setState("disconnected");
        this._emit("client:gave_up", { attempts: this.attempt }, null);
        return;
      }
      const delay = this.backoffDelay(this.attempt);
      this.attempt++;
      this._setState("reconnecting");
      this._emit("client:reconnecting", { attempt: this.attempt, maxAttempts: this.options.maxAttempts, delayMs: delay }, null);
      this._reconnectTimer = this.options.timers.setTimeout(() => {
        this._reconnectTimer = null;
        if (!this._stopped && !this._ws && !this._awaitingToken) this._open("reconnecting");
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
            this._dropDeadSocket();
          }, this.options.pongTimeoutMs);
        }
      }, this.options.heartbeatMs);
    }
    _stopHeartbeat() {
      this._clearTimer("_heartbeatTimer");
      this._clearTimer("_pongTimer");
    }
    // No answer to a ping: do not wait for the browser's (possibly minutes long) closing
    // handshake on a dead TCP connection; drop it and reconnect now.
    _dropDeadSocket() {
      const ws = this._ws;
      if (!ws) return;
      this._detach(ws);
      try {
        ws.close(4e3, "heartbeat timeout");
      } catch {
      }
      this._ws = null;
      this._stopHeartbeat();
      this._judgeEnded();
      if (this._stopped) return;
      this._emit("client:close", { code: 4e3, reason: "heartbeat timeout" }, null);
      this._scheduleReconnect();
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
