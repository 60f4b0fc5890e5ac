/*
 * ws-client.js: a small, dependency-free WebSocket client for the gateway's
 * /ws/dashboard endpoint (see SPEC.md, "Messages, server -> client").
 *
 *   const ws = new WebSocketService({ onStateChange: (s) => ... });
 *   const off = ws.on('alert', (data, envelope) => ...);   // returns an unsubscribe fn
 *   ws.on('*', (data, envelope) => ...);                   // every server message
 *   ws.connect();
 *   ...
 *   ws.disconnect();                                       // clears every timer and listener
 *
 * Features
 *  - same-host URL (ws: or wss: following location.protocol), `token` passed through
 *    from the page URL, optional `types` filter;
 *  - heartbeat: sends the text `ping` every ~15 s; the server's pong reply (an
 *    analytics_update whose data is {"pong":true}) is NOT dispatched as analytics;
 *    if nothing at all arrives within `pongTimeoutMs` of a ping the socket is
 *    considered dead and replaced;
 *  - automatic reconnection, exponential backoff with FULL jitter:
 *    delay = random(0, min(maxDelayMs, baseDelayMs * 2^attempt)), at most
 *    `maxAttempts` (10) attempts, then state `disconnected` (call retry());
 *  - resume without loss: tracks the greatest `id` seen (Redis stream id order,
 *    "ms-seq") and reconnects with `?since=<id>`; the server replays what was
 *    missed and then sends {"type":"recovery","data":{"recovered":bool,"replayed":N}}.
 *    When recovered is false a `client:resync` event is emitted so the page can
 *    reset what it can.
 *
 * Connection states: `connecting` (first attempt), `connected`, `reconnecting`,
 * `disconnected`.
 *
 * Client-side events (never sent by the server; prefixed with `client:` so they cannot
 * collide with publisher-chosen types): `client:resync` (recovery failed),
 * `client:recovered` (recovery succeeded), `client:pong`, `client:gave_up`
 * (maxAttempts exhausted), `client:close` ({code, reason}), `client:duplicate`
 * (an id seen twice; dropped), `client:invalid` (a frame that is not a JSON envelope).
 */
(function (root) {
  'use strict';

  var STATES = ['connecting', 'connected', 'reconnecting', 'disconnected'];
  var DEDUPE_WINDOW = 2048; // ids remembered to drop exact duplicates

  function stripZeros(digits) {
    var s = digits.replace(/^0+/, '');
    return s === '' ? '0' : s;
  }

  /** Parse a Redis stream id "ms-seq" (or a bare "ms"); null when it is not one. */
  function parseStreamId(id) {
    if (typeof id !== 'string') return null;
    var m = /^(\d+)(?:-(\d+))?$/.exec(id.trim());
    if (!m) return null;
    return [stripZeros(m[1]), stripZeros(m[2] || '0')];
  }

  function compareDigits(a, b) {
    if (a.length !== b.length) return a.length < b.length ? -1 : 1;
    return a < b ? -1 : a > b ? 1 : 0;
  }

  /**
   * Compare two ids as Redis stream ids: the ms part numerically, then the seq part.
   * Returns -1, 0 or 1; null when either id is not a stream id (opaque ids cannot be
   * ordered).
   */
  function compareIds(a, b) {
    var pa = parseStreamId(a);
    var pb = parseStreamId(b);
    if (!pa || !pb) return null;
    return compareDigits(pa[0], pb[0]) || compareDigits(pa[1], pb[1]);
  }

  function normalizeTypes(types) {
    if (types == null || types === '') return null;
    var list = Array.isArray(types) ? types : String(types).split(',');
    list = list.map(function (t) { return String(t).trim(); }).filter(Boolean);
    return list.length ? list : null;
  }

  function isPong(msg) {
    var d = msg.data;
    return msg.type === 'analytics_update' && d !== null && typeof d === 'object' &&
      !Array.isArray(d) && d.pong === true;
  }

  function pageParam(loc, name) {
    try {
      if (!loc || typeof loc.search !== 'string') return null;
      return new URLSearchParams(loc.search).get(name);
    } catch (e) {
      return null;
    }
  }

  function WebSocketService(options) {
    if (!(this instanceof WebSocketService)) return new WebSocketService(options);
    var o = options || {};
    var loc = o.location || root.location || null;
    var num = function (v, d) { return typeof v === 'number' && isFinite(v) && v >= 0 ? v : d; };
    this.options = {
      url: o.url || null,
      path: o.path || '/ws/dashboard',
      token: o.token !== undefined ? o.token : pageParam(loc, 'token'),
      types: normalizeTypes(o.types),
      baseDelayMs: num(o.baseDelayMs, 500),
      maxDelayMs: num(o.maxDelayMs, 30000),
      maxAttempts: num(o.maxAttempts, 10),
      heartbeatMs: num(o.heartbeatMs, 15000),
      pongTimeoutMs: num(o.pongTimeoutMs, 10000),
      random: typeof o.random === 'function' ? o.random : Math.random,
      WebSocket: o.WebSocket || root.WebSocket,
      location: loc,
      timers: o.timers || root
    };
    this.state = 'disconnected';
    this.lastId = o.since ? String(o.since) : null;
    this.attempt = 0;          // reconnection attempts made since the last healthy connection
    this.stats = { received: 0, duplicates: 0, connects: 0, replayed: 0, recoveriesFailed: 0 };

    this._handlers = Object.create(null); // type -> Set<fn>
    this._stateHandlers = [];
    if (typeof o.onStateChange === 'function') this._stateHandlers.push(o.onStateChange);
    this._ws = null;
    this._healthy = false;     // the current socket delivered at least one message
    this._stopped = true;      // disconnect() called / never connected
    this._reconnectTimer = null;
    this._heartbeatTimer = null;
    this._pongTimer = null;
    this._seen = new Set();
    this._seenOrder = [];
    this._onOnline = this._onOnline.bind(this);
    this._windowListening = false;
  }

  WebSocketService.STATES = STATES;
  WebSocketService.compareIds = compareIds;
  WebSocketService.parseStreamId = parseStreamId;

  var P = WebSocketService.prototype;

  /** Subscribe to one message type ('*' = every message). Returns an unsubscribe fn. */
  P.on = function (type, handler) {
    if (typeof handler !== 'function') throw new TypeError('handler must be a function');
    var key = String(type);
    var set = this._handlers[key] || (this._handlers[key] = new Set());
    // wrap so that the same function may be subscribed twice and unsubscribed once
    var entry = function (data, msg) { handler(data, msg); };
    set.add(entry);
    var self = this;
    return function unsubscribe() {
      var s = self._handlers[key];
      if (s) {
        s.delete(entry);
        if (s.size === 0) delete self._handlers[key];
      }
    };
  };

  /** Subscribe to state changes: fn(newState, previousState). Returns an unsubscribe fn. */
  P.onStateChange = function (handler) {
    var list = this._stateHandlers;
    list.push(handler);
    return function () {
      var i = list.indexOf(handler);
      if (i >= 0) list.splice(i, 1);
    };
  };

  /** The full-jitter backoff delay before reconnection attempt number `attempt` (0-based). */
  P.backoffDelay = function (attempt) {
    var o = this.options;
    var ceiling = Math.min(o.maxDelayMs, o.baseDelayMs * Math.pow(2, attempt));
    return Math.floor(o.random() * ceiling);
  };

  /** The URL the next connection attempt uses. */
  P.buildUrl = function () {
    var o = this.options;
    var base = o.url;
    if (!base) {
      var loc = o.location || {};
      var scheme = loc.protocol === 'https:' ? 'wss:' : 'ws:';
      base = scheme + '//' + (loc.host || 'localhost') + o.path;
    }
    var q = [];
    if (o.token) q.push('token=' + encodeURIComponent(o.token));
    if (o.types) q.push('types=' + o.types.map(encodeURIComponent).join(','));
    if (this.lastId) q.push('since=' + encodeURIComponent(this.lastId));
    if (!q.length) return base;
    return base + (base.indexOf('?') >= 0 ? '&' : '?') + q.join('&');
  };

  /** Open the connection (no-op when one is already open or being opened). */
  P.connect = function () {
    if (this._ws) return this;
    if (this.attempt >= this.options.maxAttempts) this.attempt = 0; // after giving up: start over
    this._stopped = false;
    this._listenWindow(true);
    this._clearTimer('_reconnectTimer');
    this._open(this.stats.connects > 0 || this.attempt > 0 ? 'reconnecting' : 'connecting');
    return this;
  };

  /** Start over after giving up (or skip the current backoff wait): resets the attempt count. */
  P.retry = function () {
    this.attempt = 0;
    this._stopped = false;
    this._listenWindow(true);
    this._clearTimer('_reconnectTimer');
    if (!this._ws) this._open('reconnecting');
    return this;
  };

  /** Close cleanly; clears every timer, socket and window listener. Subscribers stay. */
  P.disconnect = function () {
    this._stopped = true;
    this._clearTimer('_reconnectTimer');
    this._stopHeartbeat();
    this._listenWindow(false);
    var ws = this._ws;
    this._ws = null;
    if (ws) {
      this._detach(ws);
      try { ws.close(1000, 'client disconnect'); } catch (e) { /* already closed */ }
    }
    this._setState('disconnected');
    return this;
  };

  /** disconnect() and drop every subscriber. */
  P.destroy = function () {
    this.disconnect();
    this._handlers = Object.create(null);
    this._stateHandlers = [];
  };

  /** Send a text frame; false when not connected. */
  P.send = function (text) {
    var ws = this._ws;
    if (!ws || ws.readyState !== 1) return false;
    try { ws.send(text); return true; } catch (e) { return false; }
  };

  // ---------------------------------------------------------------- internals

  P._setState = function (next) {
    var prev = this.state;
    if (prev === next) return;
    this.state = next;
    var list = this._stateHandlers.slice();
    for (var i = 0; i < list.length; i++) {
      try { list[i](next, prev); } catch (e) { reportError(e); }
    }
  };

  P._emit = function (type, data, msg) {
    var set = this._handlers[type];
    if (!set) return;
    Array.from(set).forEach(function (fn) {
      try { fn(data, msg); } catch (e) { reportError(e); }
    });
  };

  P._clearTimer = function (name) {
    if (this[name] != null) {
      var t = this.options.timers;
      t.clearTimeout(this[name]);
      t.clearInterval(this[name]);
      this[name] = null;
    }
  };

  P._open = function (state) {
    this._setState(state);
    this._healthy = false;
    var WS = this.options.WebSocket;
    var ws;
    try {
      ws = new WS(this.buildUrl());
    } catch (e) {
      this._scheduleReconnect();
      return;
    }
    this._ws = ws;
    var self = this;
    ws.onopen = function () { self._handleOpen(ws); };
    ws.onmessage = function (ev) { self._handleMessage(ws, ev); };
    ws.onerror = function () { /* a close event always follows */ };
    ws.onclose = function (ev) { self._handleClose(ws, ev); };
  };

  P._detach = function (ws) {
    ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
  };

  P._handleOpen = function (ws) {
    if (ws !== this._ws) return;
    this.stats.connects++;
    this._setState('connected');
    this._startHeartbeat();
  };

  P._handleMessage = function (ws, ev) {
    if (ws !== this._ws) return;
    this._clearTimer('_pongTimer'); // anything at all proves the connection alive
    if (!this._healthy) {
      this._healthy = true;
      this.attempt = 0;
    }
    var msg;
    try {
      msg = JSON.parse(ev.data);
    } catch (e) {
      this._emit('client:invalid', ev.data, null);
      return;
    }
    if (!msg || typeof msg !== 'object' || typeof msg.type !== 'string') {
      this._emit('client:invalid', ev.data, null);
      return;
    }
    this.stats.received++;

    if (msg.id != null && msg.id !== '') {
      var id = String(msg.id);
      if (this._seen.has(id)) {
        this.stats.duplicates++;
        this._emit('client:duplicate', msg.data, msg);
        return;
      }
      this._remember(id);
      if (this.lastId == null) {
        this.lastId = id;
      } else {
        var c = compareIds(id, this.lastId);
        if (c === null || c > 0) this.lastId = id; // opaque ids: the latest seen wins
      }
    }

    if (isPong(msg)) {
      this._emit('client:pong', msg.data, msg);
      return;
    }

    if (msg.type === 'recovery') {
      var d = msg.data || {};
      if (d.recovered === false) {
        this.stats.recoveriesFailed++;
        this._emit('client:resync', d, msg);
      } else {
        this.stats.replayed += Number(d.replayed) || 0;
        this._emit('client:recovered', d, msg);
      }
    }

    this._emit(msg.type, msg.data, msg);
    this._emit('*', msg.data, msg);
  };

  P._remember = function (id) {
    this._seen.add(id);
    this._seenOrder.push(id);
    if (this._seenOrder.length > DEDUPE_WINDOW) {
      this._seen.delete(this._seenOrder.shift());
    }
  };

  P._handleClose = function (ws, ev) {
    if (ws !== this._ws) return;
    this._detach(ws);
    this._ws = null;
    this._stopHeartbeat();
    if (this._stopped) return;
    this._emit('client:close', { code: ev && ev.code, reason: ev && ev.reason }, null);
    this._scheduleReconnect();
  };

  P._scheduleReconnect = function () {
    if (this._stopped) return;
    this._clearTimer('_reconnectTimer');
    if (this.attempt >= this.options.maxAttempts) {
      this._setState('disconnected');
      this._emit('client:gave_up', { attempts: this.attempt }, null);
      return;
    }
    var delay = this.backoffDelay(this.attempt);
    this.attempt++;
    this._setState('reconnecting');
    var self = this;
    this._reconnectTimer = this.options.timers.setTimeout(function () {
      self._reconnectTimer = null;
      if (!self._stopped && !self._ws) self._open('reconnecting');
    }, delay);
  };

  P._startHeartbeat = function () {
    this._stopHeartbeat();
    if (!this.options.heartbeatMs) return;
    var self = this;
    var t = this.options.timers;
    this._heartbeatTimer = t.setInterval(function () {
      if (!self.send('ping')) return;
      if (self._pongTimer == null && self.options.pongTimeoutMs) {
        self._pongTimer = t.setTimeout(function () {
          self._pongTimer = null;
          self._dropDeadSocket();
        }, self.options.pongTimeoutMs);
      }
    }, this.options.heartbeatMs);
  };

  P._stopHeartbeat = function () {
    this._clearTimer('_heartbeatTimer');
    this._clearTimer('_pongTimer');
  };

  // No answer to a ping: do not wait for the browser's (possibly minutes long)
  // closing handshake on a dead TCP connection; drop it and reconnect now.
  P._dropDeadSocket = function () {
    var ws = this._ws;
    if (!ws) return;
    this._detach(ws);
    try { ws.close(4000, 'heartbeat timeout'); } catch (e) { /* ignore */ }
    this._ws = null;
    this._stopHeartbeat();
    if (this._stopped) return;
    this._emit('client:close', { code: 4000, reason: 'heartbeat timeout' }, null);
    this._scheduleReconnect();
  };

  P._onOnline = function () {
    // the network came back: skip the rest of the backoff wait
    if (this._reconnectTimer != null && !this._ws && !this._stopped) {
      this._clearTimer('_reconnectTimer');
      this._open('reconnecting');
    }
  };

  P._listenWindow = function (on) {
    if (on === this._windowListening) return;
    if (!root || typeof root.addEventListener !== 'function') return;
    if (on) root.addEventListener('online', this._onOnline);
    else root.removeEventListener('online', this._onOnline);
    this._windowListening = on;
  };

  function reportError(e) {
    // a subscriber threw: surface it without breaking the dispatch loop
    if (root && typeof root.setTimeout === 'function') {
      root.setTimeout(function () { throw e; }, 0);
    }
  }

  root.WebSocketService = WebSocketService;
  if (typeof module === 'object' && module && module.exports) module.exports = WebSocketService;
})(typeof globalThis !== 'undefined' ? globalThis : this);
