/*
 * dashboard.js: renders the live operations dashboard from the gateway's live stream
 * (needs ws-client.js loaded first): a WebSocket, or Server-Sent Events (GET
 * /sse/dashboard) when a WebSocket cannot be opened, e.g. behind a proxy that strips
 * Upgrade. The connection indicator says which (`data-transport`, "Live · SSE"). Every piece of data goes into the DOM
 * through textContent; nothing from the wire is ever parsed as HTML.
 *
 * Whatever a publisher sends renders or is skipped; it never hangs or breaks the page
 * (the latest analytics greets every new visitor, so one bad snapshot would reach every
 * tab): values are read only through the helpers below (no String() of wire objects,
 * which can throw; no lookups that reach Object.prototype), texts are clipped, numbers
 * beyond ±1e15 stay out of the chart, the chart's grid has a bounded number of lines,
 * and every list has a cap: the newest MAX_ALERTS_SHOWN alerts and
 * MAX_INTERVENTIONS_SHOWN interventions, the MAX_TUTOR_ROWS most recently updated tutor
 * rows, MAX_SEVERITIES severities.
 *
 * Page URL options (all optional):
 *   ?token=JWT           sent to /ws/dashboard as the socket's first frame (?auth=frame),
 *                        never in its URL (when the server requires auth)
 *   ?auth=query          send the token as ?token= instead (a gateway without ?auth=frame)
 *   ?types=a,b           only receive these types (analytics always comes)
 *   ?backoff_ms=N        base reconnection delay (default 500); ?backoff_cap_ms=N its cap (30000)
 *   ?max_attempts=N      reconnection attempts before giving up (default 10)
 *   ?heartbeat_ms=N      client ping interval (default 15000)
 *   ?transport=T         auto (default: WebSocket, falling back to SSE), websocket or sse
 *   ?state=0             open live only; by default the page asks for the keyed state
 *                        (?state=1) and opens on it: the tutor table, alert feed and
 *                        intervention queue show what is current, then update live
 *
 * Test hooks on the connection indicator: data-status (connected | reconnecting |
 * disconnected), data-transport (websocket | sse | ''), data-state (off | loading |
 * complete: the keyed state; `complete` once the table, feed and queue show it) and
 * data-state-count (how many state events the page opened with; '' before).
 */
(function () {
  'use strict';

  var MAX_ALERTS_SHOWN = 200;          // the badge keeps counting; the feed keeps the newest
  var MAX_INTERVENTIONS_SHOWN = 1000;  // queue entries kept in the DOM
  var MAX_TUTOR_ROWS = 500;            // the most recently updated rows; older ones leave
  var MAX_SEVERITIES = 8;              // severities shown from alerts_count
  var MAX_TEXT = 300;                  // characters of one wire string shown
  var MAX_CHART_VALUE = 1e15;          // beyond ±this a value is shown in its tile, not charted
  var MAX_GRID_LINES = 12;
  var CHART_WINDOW_MS = 15 * 60 * 1000;
  var CHART_MAX_POINTS = 600;
  var STATUS_POLL_MS = 15000;

  var params = new URLSearchParams(window.location.search);
  function numParam(name) {
    var v = params.get(name);
    if (v == null || v === '') return undefined;
    var n = Number(v);
    return isFinite(n) && n >= 0 ? n : undefined;
  }

  function $(id) { return document.getElementById(id); }

  /** Create an element with a class and (escaped) text. */
  function el(tag, className, text) {
    var e = document.createElement(tag);
    if (className) e.className = className;
    if (text != null) e.textContent = String(text);
    return e;
  }

  function isObject(v) { return v !== null && typeof v === 'object' && !Array.isArray(v); }
  function isNum(v) { return typeof v === 'number' && isFinite(v); }
  /** map[key] if the map itself has it (never Object.prototype's `constructor`...) */
  function own(map, key) { return Object.prototype.hasOwnProperty.call(map, key) ? map[key] : undefined; }
  function clip(text) { return text.length > MAX_TEXT ? text.slice(0, MAX_TEXT - 1) + '…' : text; }
  /**
   * A string, finite number or boolean from wire data as (clipped) text; null for
   * anything else. Never String() of an object: {"toString": 1} would throw.
   */
  function scalar(v) {
    if (typeof v === 'string') return clip(v);
    if (isNum(v)) return String(v);
    if (typeof v === 'boolean') return String(v);
    return null;
  }
  /** wire data as text, `fallback` (default a dash) when it has none */
  function str(v, fallback) {
    var text = scalar(v);
    if (text == null || text === '') return fallback == null ? '–' : fallback;
    return text;
  }
  /** a CSS-class-safe token from wire data */
  function token(v) {
    return (scalar(v) || 'unknown').slice(0, 40).toLowerCase().replace(/[^a-z0-9_-]/g, '') || 'unknown';
  }

  /** past this a number is shown in exponent form (its digits would not fit) */
  function huge(v) { return Math.abs(v) >= 1e15; }
  function fmtCount(v) {
    if (!isNum(v)) return str(v);
    if (huge(v)) return v.toExponential(2);
    return Number.isInteger(v) ? String(v) : v.toFixed(1);
  }
  function fmtScore(v) {
    if (!isNum(v)) return str(v);
    return huge(v) ? v.toExponential(2) : v.toFixed(2);
  }
  function fmtMs(v) {
    if (!isNum(v)) return str(v);
    if (huge(v)) return v.toExponential(2) + ' ms';
    return v >= 10000 ? (v / 1000).toFixed(1) + ' s' : Math.round(v) + ' ms';
  }
  function msgTime(msg) {
    var t = msg && typeof msg.timestamp === 'string' ? Date.parse(msg.timestamp) : NaN;
    return isFinite(t) ? new Date(t) : new Date();
  }
  function hhmmss(d) {
    var p = function (n) { return (n < 10 ? '0' : '') + n; };
    return p(d.getHours()) + ':' + p(d.getMinutes()) + ':' + p(d.getSeconds());
  }
  // Restarting a CSS animation needs a reflow; one per frame for every node that changed,
  // not one per message (a burst of thousands would lay out the page thousands of times).
  var toFlash = new Map(); // node -> class
  var flashQueued = false;
  function flash(node, cls) {
    if (toFlash.size >= 1000) return; // a background tab, where frames do not run
    toFlash.set(node, cls);
    if (flashQueued) return;
    flashQueued = true;
    window.requestAnimationFrame(function () {
      flashQueued = false;
      var nodes = Array.from(toFlash);
      toFlash.clear();
      nodes.forEach(function (e) { e[0].classList.remove(e[1]); });
      void document.body.offsetWidth;
      nodes.forEach(function (e) { e[0].classList.add(e[1]); });
    });
  }

  // ------------------------------------------------------------------ connection

  var service = new window.WebSocketService({
    types: params.get('types') || undefined,
    auth: params.get('auth') === 'query' ? 'query' : 'frame',
    baseDelayMs: numParam('backoff_ms'),
    maxDelayMs: numParam('backoff_cap_ms'),
    maxAttempts: numParam('max_attempts'),
    heartbeatMs: numParam('heartbeat_ms'),
    pongTimeoutMs: numParam('pong_timeout_ms'),
    transport: transportParam(),
    state: params.get('state') !== '0'
  });

  function transportParam() {
    var t = params.get('transport');
    return t === 'websocket' || t === 'sse' ? t : 'auto';
  }

  var indicator = document.querySelector('[data-testid="connection-indicator"]');
  var connLabel = $('conn-label');
  var connTransport = $('conn-transport');
  var TRANSPORT_LABEL = { websocket: 'WebSocket', sse: 'SSE' };
  var retryButton = $('retry-button');
  var replaying = false;
  var statusTimer = null;

  function renderState(state) {
    var status = state === 'connected' ? 'connected'
      : state === 'disconnected' ? 'disconnected'
      : 'reconnecting'; // 'connecting' and 'reconnecting'
    indicator.setAttribute('data-status', status);
    var label;
    if (state === 'connected') label = 'Live';
    else if (state === 'connecting') label = 'Connecting…';
    else if (state === 'reconnecting') {
      label = service.attempt > 0
        ? 'Reconnecting (' + service.attempt + '/' + service.options.maxAttempts + ')…'
        : 'Reconnecting…';
    } else label = 'Disconnected';
    connLabel.textContent = label;
    // which transport is live: websocket | sse | '' (not connected)
    var transport = service.transport || '';
    indicator.setAttribute('data-transport', transport);
    var transportText = own(TRANSPORT_LABEL, transport) ? '· ' + own(TRANSPORT_LABEL, transport) : '';
    if (connTransport.textContent !== transportText) connTransport.textContent = transportText;
    connTransport.hidden = !transportText;
    indicator.title = transport === 'sse' ? 'live over Server-Sent Events (WebSocket unavailable)'
      : transport === 'websocket' ? 'live over WebSocket' : '';
    retryButton.hidden = state !== 'disconnected';
  }

  service.onStateChange(function (state, prev) {
    renderState(state);
    if (state === 'connected') {
      // a reconnect carrying ?since= first replays what was missed, until `recovery`
      replaying = prev === 'reconnecting' && service.lastId != null;
      pollStatus();
    } else {
      stopStatusPoll();
      $('node-info').textContent = ''; // would be stale
    }
    if (state === 'disconnected') {
      showNotice('warn', 'Connection lost after ' + service.options.maxAttempts +
        ' reconnection attempts. Press "Retry now" to try again.');
    }
  });

  // the state stays `reconnecting` from one attempt to the next: count each one
  service.on('client:reconnecting', function () { renderState(service.state); });
  service.on('client:transport', function () { renderState(service.state); });

  // the keyed state: off | loading | complete (the page's hook for tests and tools)
  function renderStatePhase() {
    indicator.setAttribute('data-state', service.statePhase);
  }
  service.on('client:state_phase', renderStatePhase);

  retryButton.addEventListener('click', function () {
    hideNotice();
    service.retry();
  });

  // cluster info for the header (same origin; quietly skipped when unavailable)
  function pollStatus() {
    stopStatusPoll();
    if (typeof fetch !== 'function') return;
    fetch('/ws/status', { cache: 'no-store' })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (s) {
        if (!isObject(s)) return;
        var parts = [];
        if (s.node_id != null) parts.push('node ' + str(s.node_id));
        if (isNum(s.active_connections)) {
          parts.push(s.active_connections + (s.active_connections === 1 ? ' dashboard' : ' dashboards') + ' live');
        }
        if (Array.isArray(s.nodes) && s.nodes.length > 1) parts.push(s.nodes.length + ' nodes');
        $('node-info').textContent = parts.join(' · ');
      })
      .catch(function () { /* not fatal: the header just shows less */ })
      .then(function () {
        if (service.state === 'connected') statusTimer = setTimeout(pollStatus, STATUS_POLL_MS);
      });
  }
  function stopStatusPoll() {
    if (statusTimer != null) { clearTimeout(statusTimer); statusTimer = null; }
  }

  // ------------------------------------------------------------------ notices

  var noticeTimer = null;
  function showNotice(kind, text, autoHideMs) {
    var n = $('notice');
    $('notice-text').textContent = text;
    n.classList.toggle('is-info', kind === 'info');
    n.hidden = false;
    if (noticeTimer) { clearTimeout(noticeTimer); noticeTimer = null; }
    if (autoHideMs) noticeTimer = setTimeout(hideNotice, autoHideMs);
  }
  function hideNotice() {
    $('notice').hidden = true;
    if (noticeTimer) { clearTimeout(noticeTimer); noticeTimer = null; }
  }
  $('notice-close').addEventListener('click', hideNotice);

  var lastEvent = $('last-event');
  service.on('*', function (data, msg) {
    if (msg.type === 'recovery') return;
    lastEvent.textContent = 'last event ' + hhmmss(msgTime(msg));
  });

  service.on('recovery', function (data) {
    replaying = false;
    if (!isObject(data)) return;
    if (data.recovered === true && isNum(data.replayed) && data.replayed > 0) {
      showNotice('info', 'Reconnected: ' + data.replayed +
        (data.replayed === 1 ? ' missed event' : ' missed events') + ' replayed.', 6000);
    } else if (data.recovered === true) {
      if (!$('notice').classList.contains('is-info')) hideNotice();
    }
  });

  // The server could not replay what we missed: with the keyed state, the current state
  // follows and replaces what is shown; without it, reset what can be reset.
  service.on('client:resync', function () {
    if (service.statePhase === 'loading') {
      showNotice('info', 'Reconnected: the events missed meanwhile could not be replayed; ' +
        'the current state replaces what was shown.', 6000);
      return;
    }
    tutors.forEach(function (t) { t.row.classList.add('is-stale'); });
    showNotice('warn', 'Reconnected, but the events missed meanwhile could not be replayed ' +
      '(history expired or the node restarted). Tutor rows are dimmed until their next update; ' +
      'the alert feed and queue may be incomplete.');
  });

  // ------------------------------------------------------------------ analytics

  var tiles = Array.prototype.slice.call(document.querySelectorAll('.tiles [data-field]'));
  var formatters = {
    avg_rating: fmtScore,
    avg_engagement_score: fmtScore,
    avg_satisfaction: fmtScore,
    avg_response_time_ms: fmtMs
  };
  var series = []; // {t: ms, d: analytics object}
  var chartMetric = 'avg_rating';

  service.on('analytics_update', function (data, msg) {
    // each analytics_update is a full snapshot; {} means nothing was published yet
    var d = isObject(data) ? data : {};
    tiles.forEach(function (node) {
      var field = node.getAttribute('data-field');
      var fmt = own(formatters, field) || fmtCount;
      var value = own(d, field);
      var text = value == null ? '–' : fmt(value);
      var tile = node.parentElement;
      if (tile.hasAttribute('data-optional')) tile.hidden = value == null;
      if (node.textContent !== text) {
        node.textContent = text;
        flash(node, 'is-updated');
      }
    });
    var shown = tiles.filter(function (node) { return !node.parentElement.hidden; }).length;
    $('tiles').classList.toggle('is-dense', shown > 8);
    renderTiers(own(d, 'performance_distribution'));
    renderSeverities(own(d, 'alerts_count'));
    if (Object.keys(d).length) {
      // only the charted numbers are kept, not the snapshot (which may be large)
      var point = {};
      chartMetrics.forEach(function (m) {
        var v = own(d, m);
        if (isNum(v) && Math.abs(v) <= MAX_CHART_VALUE) point[m] = v;
      });
      series.push({ t: msgTime(msg).getTime(), d: point });
      showChartMetrics(point);
      var cutoff = series[series.length - 1].t - CHART_WINDOW_MS;
      while (series.length > CHART_MAX_POINTS || (series.length && series[0].t < cutoff)) series.shift();
      scheduleChart();
    }
  });

  // ------------------------------------------------------------------ performance tiers

  // TutorMax's `performance_distribution`: tutors per tier, one SVG bar each (share of all).
  var tierRows = Array.prototype.slice.call(document.querySelectorAll('#tiers [data-tier]'));
  function renderTiers(dist) {
    var counts = tierRows.map(function (row) {
      var v = isObject(dist) ? own(dist, row.getAttribute('data-tier')) : undefined;
      return isNum(v) && v >= 0 ? v : null;
    });
    var total = counts.reduce(function (a, v) { return a + (v || 0); }, 0);
    tierRows.forEach(function (row, i) {
      var v = counts[i];
      var share = v != null && total > 0 && isFinite(total) ? v / total : 0;
      row.querySelector('.tier-fill').setAttribute('width', String(Math.round(share * 1000) / 10));
      row.querySelector('.tier-count').textContent = v == null ? '–' : fmtCount(v);
      row.querySelector('.tier-pct').textContent = v == null || total === 0 ? '' : Math.round(share * 100) + '%';
    });
    $('tier-total').textContent = counts.some(function (v) { return v != null; }) ? fmtCount(total) : '–';
  }

  // TutorMax's `alerts_count`: alerts by severity, as the backend counts them.
  // Backends name their scales differently (critical / warning / info, or
  // critical / high / medium / low): every severity present is shown, the
  // known ones in order of urgency, others after.
  var SEVERITY_RANK = ['critical', 'high', 'warning', 'medium', 'low', 'info'];
  var SEVERITY_COLOR = { critical: 'critical', high: 'critical', warning: 'warning', medium: 'warning', low: 'info', info: 'info' };
  var severityBox = document.querySelector('[data-testid="alerts-count"]');
  function renderSeverities(counts) {
    if (!isObject(counts)) return;
    // the known ones in order of urgency, then others as they come, MAX_SEVERITIES in all
    var keys = SEVERITY_RANK.filter(function (k) { return isNum(own(counts, k)); });
    for (var k in counts) {
      if (keys.length >= MAX_SEVERITIES) break;
      if (own(counts, k) !== undefined && SEVERITY_RANK.indexOf(k) < 0 && isNum(counts[k])) keys.push(k);
    }
    keys = keys.slice(0, MAX_SEVERITIES);
    if (!keys.length) return;
    Array.prototype.slice.call(severityBox.querySelectorAll('[data-severity]')).forEach(function (node) {
      node.parentNode.removeChild(node);
    });
    keys.forEach(function (key) {
      var span = document.createElement('span');
      span.className = 'sev-count sev-' + (own(SEVERITY_COLOR, key) || 'info');
      span.setAttribute('data-severity', key.slice(0, 40));
      var b = document.createElement('b');
      b.textContent = fmtCount(counts[key]);
      span.appendChild(b);
      span.appendChild(document.createTextNode(' ' + (key.length > 40 ? key.slice(0, 39) + '…' : key)));
      severityBox.appendChild(span);
    });
  }

  // ------------------------------------------------------------------ chart

  var canvas = $('chart');
  var chartLabels = {
    avg_rating: 'Average rating',
    avg_engagement_score: 'Average engagement',
    active_tutors: 'Active tutors',
    sessions_in_progress: 'Sessions in progress',
    avg_satisfaction: 'Average satisfaction',
    avg_response_time_ms: 'Average response time'
  };
  // the metrics the chart can show (one button each): all a series point keeps
  var chartMetrics = Array.prototype.map.call(document.querySelectorAll('.seg-btn'), function (b) {
    return b.getAttribute('data-metric');
  });
  var chartQueued = false;
  function scheduleChart() {
    if (chartQueued) return;
    chartQueued = true;
    window.requestAnimationFrame(function () { chartQueued = false; drawChart(); });
  }

  var segButtons = Array.prototype.slice.call(document.querySelectorAll('.seg-btn'));
  function selectChartMetric(metric) {
    chartMetric = metric;
    segButtons.forEach(function (o) { o.classList.toggle('is-active', o.getAttribute('data-metric') === metric); });
    $('chart-title').textContent = own(chartLabels, metric) || metric;
    scheduleChart();
  }
  segButtons.forEach(function (b) {
    b.addEventListener('click', function () { selectChartMetric(b.getAttribute('data-metric')); });
  });
  // Optional metrics get a button once a snapshot carries them; a chart of a metric the
  // stream never had moves to the first one it has.
  var seenMetrics = {};
  function showChartMetrics(d) {
    segButtons.forEach(function (b) {
      var m = b.getAttribute('data-metric');
      if (isNum(d[m])) seenMetrics[m] = true;
      if (b.hasAttribute('data-optional')) b.hidden = !seenMetrics[m];
    });
    if (!seenMetrics[chartMetric]) {
      var first = segButtons.filter(function (b) { return seenMetrics[b.getAttribute('data-metric')]; })[0];
      if (first) selectChartMetric(first.getAttribute('data-metric'));
    }
  }

  function niceStep(range) {
    var raw = range / 4;
    var mag = Math.pow(10, Math.floor(Math.log10(raw)));
    var n = raw / mag;
    return (n <= 1 ? 1 : n <= 2 ? 2 : n <= 5 ? 5 : 10) * mag;
  }

  /**
   * The y axis for values in [lo, hi] (finite, within ±MAX_CHART_VALUE): rounded ends and
   * a step that moves them (a range too small for its magnitude is widened first, or
   * `lo + step` could equal `lo` and a grid loop would never end), so that at most
   * MAX_GRID_LINES lines are drawn.
   */
  function yScale(lo, hi, whole) {
    var pad = Math.max(whole ? 1 : 1e-6, Math.abs(hi) * 1e-3, Math.abs(lo) * 1e-3);
    if (hi - lo < pad) { lo -= pad; hi += pad; }
    var step = niceStep(hi - lo);
    if (whole) step = Math.max(1, step); // counts and ms are whole
    lo = Math.floor(lo / step) * step;
    hi = Math.ceil(hi / step) * step;
    var lines = Math.round((hi - lo) / step);
    if (!(lines >= 1 && lines <= MAX_GRID_LINES) || !(hi > lo)) return null;
    return { lo: lo, hi: hi, step: step, lines: lines };
  }

  function drawChart() {
    var wrap = canvas.parentElement;
    var w = wrap.clientWidth;
    var h = wrap.clientHeight;
    if (!w || !h) return;
    var dpr = window.devicePixelRatio || 1;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    var ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);

    var pts = [];
    for (var i = 0; i < series.length; i++) {
      var v = own(series[i].d, chartMetric);
      if (isNum(v)) pts.push({ t: series[i].t, v: v });
    }
    $('chart-empty').hidden = pts.length > 0;
    if (!pts.length) return;

    var css = getComputedStyle(document.documentElement);
    var cAccent = css.getPropertyValue('--accent').trim() || '#4fb3ff';
    var cGrid = css.getPropertyValue('--border').trim() || '#27313d';
    var cText = css.getPropertyValue('--muted').trim() || '#8b98a9';
    var fmt = own(formatters, chartMetric) || fmtCount;
    var fractional = fmt === fmtScore; // ratings and scores are not whole numbers

    var padL = 56, padR = 16, padT = 12, padB = 22;
    var pw = Math.max(10, w - padL - padR);
    var ph = Math.max(10, h - padT - padB);

    var lo = Infinity, hi = -Infinity;
    pts.forEach(function (p) { lo = Math.min(lo, p.v); hi = Math.max(hi, p.v); });
    var scale = yScale(lo, hi, !fractional);
    if (!scale) return;
    var step = scale.step;
    lo = scale.lo;
    hi = scale.hi;
    if (!fractional && lo < 0 && pts.every(function (p) { return p.v >= 0; })) lo = 0;

    var t1 = pts[pts.length - 1].t;
    var t0 = Math.min(pts[0].t, t1 - 20000); // at least 20 s wide
    var x = function (t) { return padL + ((t - t0) / (t1 - t0)) * pw; };
    var y = function (v) { return padT + (1 - (v - lo) / (hi - lo)) * ph; };

    // grid and y labels
    ctx.font = '11px system-ui, sans-serif';
    ctx.lineWidth = 1;
    ctx.textBaseline = 'middle';
    ctx.textAlign = 'right';
    // by line count, not `g += step`: a step too small for g's magnitude would not move it
    for (var k = 0; k <= scale.lines; k++) {
      var g = scale.lo + k * step;
      if (g < lo - step / 2) continue;
      var gy = Math.round(y(g)) + 0.5;
      ctx.strokeStyle = cGrid;
      ctx.beginPath(); ctx.moveTo(padL, gy); ctx.lineTo(padL + pw, gy); ctx.stroke();
      ctx.fillStyle = cText;
      ctx.fillText(fmt(Math.round(g * 100) / 100), padL - 8, gy);
    }
    // x labels
    ctx.textBaseline = 'alphabetic';
    ctx.textAlign = 'left';
    ctx.fillText(hhmmss(new Date(t0)), padL, h - 6);
    ctx.textAlign = 'right';
    ctx.fillText(hhmmss(new Date(t1)), padL + pw, h - 6);

    // area + line
    var grad = ctx.createLinearGradient(0, padT, 0, padT + ph);
    grad.addColorStop(0, 'rgba(79, 179, 255, 0.28)');
    grad.addColorStop(1, 'rgba(79, 179, 255, 0)');
    ctx.beginPath();
    pts.forEach(function (p, k) {
      if (k === 0) ctx.moveTo(x(p.t), y(p.v)); else ctx.lineTo(x(p.t), y(p.v));
    });
    ctx.lineTo(x(pts[pts.length - 1].t), padT + ph);
    ctx.lineTo(x(pts[0].t), padT + ph);
    ctx.closePath();
    ctx.fillStyle = grad;
    ctx.fill();

    ctx.beginPath();
    pts.forEach(function (p, k) {
      if (k === 0) ctx.moveTo(x(p.t), y(p.v)); else ctx.lineTo(x(p.t), y(p.v));
    });
    ctx.strokeStyle = cAccent;
    ctx.lineWidth = 2;
    ctx.lineJoin = 'round';
    ctx.stroke();

    var last = pts[pts.length - 1];
    ctx.beginPath();
    ctx.arc(x(last.t), y(last.v), 3.5, 0, Math.PI * 2);
    ctx.fillStyle = cAccent;
    ctx.fill();
  }

  if (typeof ResizeObserver === 'function') {
    new ResizeObserver(scheduleChart).observe(canvas.parentElement);
  } else {
    window.addEventListener('resize', scheduleChart);
  }

  // ------------------------------------------------------------------ keyed state

  // An event's envelope key (the keyed state's, `?state=1`); null for an unkeyed event.
  function envKey(msg) {
    return msg && typeof msg.key === 'string' && msg.key !== '' ? msg.key : null;
  }
  // The keys an event says the state dropped (its bounds): removed from its list too.
  function evictedKeys(msg) {
    if (!msg || !Array.isArray(msg.evicted)) return [];
    return msg.evicted.filter(function (k) { return typeof k === 'string'; });
  }
  /**
   * Removals a live event carries for `list` (evicted keys, then itself when it is a
   * tombstone, `removed: true`, matched by its key or, for entries that came without one,
   * by its data's id `id`). True for a tombstone: it removes, it shows nothing.
   */
  function applyRemovals(list, msg, id) {
    evictedKeys(msg).forEach(function (k) { list.removeKey(k); });
    if (!msg || msg.removed !== true) return false;
    var key = envKey(msg);
    if (key != null) list.removeKey(key);
    if (id != null) list.removeId(id);
    return true;
  }
  // Order of publication: by id (one history), else by timestamp.
  function byPosition(a, b) {
    var c = window.WebSocketService.compareIds(a.id, b.id);
    if (c !== null) return c;
    return msgTime(a).getTime() - msgTime(b).getTime();
  }
  /** The state's events of `type` (tombstones never are state), oldest first, the newest `max`. */
  function stateOf(events, type, max) {
    var list = events.filter(function (m) { return m.type === type && m.removed !== true; });
    return list.length > max ? list.slice(list.length - max) : list;
  }

  // ------------------------------------------------------------------ tutors

  // one row per tutor, or per (tutor, window) when the metrics carry a `window` (TutorMax
  // sends 7day and 30day figures for each tutor); the MAX_TUTOR_ROWS most recently updated
  var tutors = new Map(); // row key -> {row, cells, key}, least recently updated first
  var tutorKeys = new Map(); // envelope key -> row key
  var rowKeys = []; // the row keys in table order (by tutor id), for a binary search
  var tutorsDropped = 0;
  var tutorBody = $('tutor-rows');
  var collator = new Intl.Collator(undefined, { numeric: true, sensitivity: 'base' });

  /** where `key` is, or goes, in rowKeys */
  function rowIndex(key) {
    var lo = 0, hi = rowKeys.length;
    while (lo < hi) {
      var mid = (lo + hi) >> 1;
      var c = collator.compare(rowKeys[mid], key);
      if (c < 0 || (c === 0 && rowKeys[mid] < key)) lo = mid + 1; else hi = mid;
    }
    return lo;
  }

  function renderTutorCount() {
    $('tutor-count').textContent = String(tutors.size);
    var cap = $('tutor-cap');
    cap.hidden = tutorsDropped === 0;
    cap.textContent = 'the ' + MAX_TUTOR_ROWS + ' most recently updated';
    $('tutors-empty').hidden = tutors.size > 0;
  }

  function dropTutorRow(key) {
    var t = tutors.get(key);
    if (!t) return;
    tutorBody.removeChild(t.row);
    tutors.delete(key);
    if (t.key != null && tutorKeys.get(t.key) === key) tutorKeys.delete(t.key);
    var i = rowIndex(key);
    rowKeys.splice(rowKeys[i] === key ? i : rowKeys.indexOf(key), 1);
  }

  function newTutorRow(key, id, window_) {
    var row = el('tr');
    row.setAttribute('data-tutor-id', id);
    row.setAttribute('data-row-key', key);
    if (window_ != null) row.setAttribute('data-window', window_);
    var cells = {};
    var tutorCell = el('td');
    cells.name = el('span', 'tutor-name');
    cells.id = el('span', 'tutor-id', window_ != null ? id + ' · ' + window_ : id);
    tutorCell.appendChild(cells.name);
    tutorCell.appendChild(cells.id);
    row.appendChild(tutorCell);
    cells.subject = row.appendChild(el('td', 'muted'));
    var statusCell = row.appendChild(el('td'));
    cells.status = statusCell.appendChild(el('span', 'pill'));
    var tierCell = row.appendChild(el('td'));
    cells.tier = tierCell.appendChild(el('span', 'pill'));
    cells.tier.hidden = true;
    cells.rating = row.appendChild(el('td', 'num'));
    cells.sessions = row.appendChild(el('td', 'num'));
    cells.response = row.appendChild(el('td', 'num'));
    cells.satisfaction = row.appendChild(el('td', 'num'));
    cells.completed = row.appendChild(el('td', 'num'));
    cells.updated = row.appendChild(el('td', 'num muted'));
    // keep rows ordered by tutor id so they do not jump around
    var at = rowIndex(key);
    var next = at < rowKeys.length ? tutors.get(rowKeys[at]) : null;
    tutorBody.insertBefore(row, next ? next.row : null);
    rowKeys.splice(at, 0, key);
    var entry = { row: row, cells: cells, key: null };
    tutors.set(key, entry);
    while (tutors.size > MAX_TUTOR_ROWS) {
      dropTutorRow(tutors.keys().next().value);
      tutorsDropped++;
    }
    renderTutorCount();
    return entry;
  }

  /** the row key of a metrics_update's data: tutor id, and window when there is one */
  function tutorRowKey(data) {
    if (!isObject(data)) return null;
    var id = scalar(data.tutor_id) || scalar(data.name);
    if (id == null || id === '') return null;
    var window_ = scalar(data.window);
    return { key: window_ == null ? id : id + ' ' + window_, id: id, window_: window_ };
  }

  var tutorList = {
    removeKey: function (k) { if (tutorKeys.has(k)) dropTutorRow(tutorKeys.get(k)); },
    removeId: function (rowKey) {
      var t = tutors.get(rowKey);
      if (t && t.key == null) dropTutorRow(rowKey);
    }
  };

  function showMetrics(data, msg, live) {
    var rk = tutorRowKey(data);
    if (!rk) return;
    var key = rk.key, id = rk.id, window_ = rk.window_;
    var t = tutors.get(key);
    if (t) {
      tutors.delete(key); // to the most recent end
      tutors.set(key, t);
    } else {
      t = newTutorRow(key, id, window_);
    }
    var k = envKey(msg);
    if (k != null && k !== t.key) {
      if (t.key != null && tutorKeys.get(t.key) === key) tutorKeys.delete(t.key);
      t.key = k;
      tutorKeys.set(k, key);
    }
    var c = t.cells;
    var name = data.name != null ? data.name : data.tutor_name;
    c.name.textContent = name != null ? str(name) : (c.name.textContent || id);
    if (data.subject !== undefined) c.subject.textContent = str(data.subject);
    if (data.status !== undefined) {
      c.status.textContent = str(data.status, 'unknown');
      c.status.className = 'pill status-' + token(data.status);
    } else if (!c.status.textContent) {
      c.status.textContent = '–'; // TutorMax's metrics carry no live status
      c.status.className = 'muted';
    }
    if (data.performance_tier !== undefined) {
      c.tier.textContent = str(data.performance_tier);
      c.tier.className = 'pill tier-pill-' + token((scalar(data.performance_tier) || '').replace(/\s+/g, '-'));
      c.tier.hidden = false;
    }
    if (data.avg_rating !== undefined) {
      var ar = data.avg_rating;
      c.rating.textContent = fmtScore(ar);
      c.rating.className = 'num ' + (!isNum(ar) ? '' : ar >= 4.5 ? 'v-good' : ar < 3.5 ? 'v-bad' : ar < 4 ? 'v-warn' : '');
    }
    if (data.active_sessions !== undefined) c.sessions.textContent = fmtCount(data.active_sessions);
    if (data.avg_response_time_ms !== undefined) {
      var rt = data.avg_response_time_ms;
      c.response.textContent = fmtMs(rt);
      c.response.className = 'num ' + (!isNum(rt) ? '' : rt > 3000 ? 'v-bad' : rt > 1500 ? 'v-warn' : '');
    }
    if (data.satisfaction_score !== undefined) {
      var s = data.satisfaction_score;
      c.satisfaction.textContent = isNum(s) && !huge(s) ? s.toFixed(1) : fmtScore(s);
      c.satisfaction.className = 'num ' + (!isNum(s) ? '' : s >= 4.5 ? 'v-good' : s < 3.5 ? 'v-bad' : s < 4 ? 'v-warn' : '');
    }
    if (data.sessions_completed !== undefined) c.completed.textContent = fmtCount(data.sessions_completed);
    c.updated.textContent = hhmmss(msgTime(msg));
    ['subject', 'rating', 'sessions', 'response', 'satisfaction', 'completed'].forEach(function (f) {
      if (!c[f].textContent) c[f].textContent = '–';
    });
    t.row.classList.remove('is-stale');
    if (live) flash(t.row, 'is-updated');
  }

  service.on('metrics_update', function (data, msg) {
    var rk = tutorRowKey(data);
    if (applyRemovals(tutorList, msg, rk && rk.key)) {
      renderTutorCount();
      return;
    }
    showMetrics(data, msg, true);
    renderTutorCount();
  });

  // ------------------------------------------------------------------ feeds

  /**
   * A feed (the alert feed, the intervention queue): newest first, at most `max` items.
   * An item may stand for a key of the state (`key`: a later event of that key replaces
   * it; a tombstone or an eviction of it removes it) and carries its data's id in
   * `idAttr` (how a tombstone finds an item that came without a key). `byId`: an item
   * with the same id replaces the older one as well (one per intervention).
   */
  // `history`: every event received stays an item (the intervention queue: one child per
  // intervention received, the contract's test hook), earlier items of the same id dimmed;
  // otherwise a later event of the same key replaces its item (and, with `byId`, of the
  // same id).
  function makeFeed(list, idAttr, max, empty, count, byId, history) {
    var keyOfItem = new Map(); // li -> envelope key
    function remove(li) {
      keyOfItem.delete(li);
      list.removeChild(li);
    }
    function items(test) {
      return Array.prototype.filter.call(list.children, test);
    }
    function withId(id, unkeyedOnly) {
      return items(function (li) {
        return li.getAttribute(idAttr) === id && !(unkeyedOnly && keyOfItem.has(li));
      });
    }
    function withKey(k) {
      return items(function (li) { return keyOfItem.get(li) === k; });
    }
    var feed = {
      add: function (li, key, id) {
        if (history) {
          if (id != null) withId(id, false).forEach(function (old) { old.classList.add('is-done'); });
        } else {
          if (key != null) withKey(key).forEach(remove);
          if (byId && id != null) withId(id, false).forEach(remove);
        }
        if (key != null) keyOfItem.set(li, key);
        list.insertBefore(li, list.firstChild);
        while (list.children.length > max) remove(list.lastChild);
      },
      removeKey: function (k) { withKey(k).forEach(remove); },
      // a tombstone's id: the items that came without a key (keyed ones go by their key)
      removeId: function (id) { withId(id, true).forEach(remove); },
      clear: function () {
        while (list.firstChild) list.removeChild(list.firstChild);
        keyOfItem.clear();
      },
      render: function () {
        if (count) count.textContent = String(list.children.length);
        empty.hidden = list.children.length > 0;
      }
    };
    return feed;
  }

  // ------------------------------------------------------------------ alerts

  var alertCount = 0; // alerts that arrived live since the page loaded (not the state's)
  var criticalCount = 0;
  var alertFeed = $('alert-feed');
  var alertBadge = $('alert-badge');
  alertBadge.classList.add('is-zero');
  var alerts = makeFeed(alertFeed, 'data-alert-id', MAX_ALERTS_SHOWN, $('alerts-empty'), null, false);

  // TutorMax's alerts carry `alert_type` (critical | warning | info) and a `severity` of
  // high | medium | low; other publishers send `severity` critical | warning | info.
  var SEVERITY_CLASS = { critical: 'critical', high: 'critical', warning: 'warning', medium: 'warning', info: 'info', low: 'info' };

  function alertIdOf(raw) {
    return isObject(raw) ? scalar(raw.alert_id) || scalar(raw.id) : null;
  }

  /** An alert's feed item; `live`: it arrived now (counted, flashed), not with the state. */
  function showAlert(raw, msg, live) {
    var data = isObject(raw) ? raw : { message: raw };
    var label = scalar(data.alert_type) || scalar(data.severity) || 'info';
    var sev = own(SEVERITY_CLASS, token(label)) || token(label);
    if (live) {
      alertCount++;
      if (sev === 'critical') criticalCount++;
      alertBadge.textContent = String(alertCount);
      alertBadge.classList.remove('is-zero');
      $('alert-critical').textContent = criticalCount ? criticalCount + ' critical' : '';
    }
    var li = el('li', 'feed-item sev-' + sev);
    if (live) li.classList.add('is-new');
    if (live && replaying) li.classList.add('replayed');
    if (data.resolved === true) li.classList.add('is-done');
    li.appendChild(el('span', 'pill', label));
    var title = [scalar(data.title) || scalar(data.kind), scalar(data.tutor_name) || scalar(data.tutor_id)]
      .filter(function (v) { return v != null; }).join(' · ');
    li.appendChild(el('span', 'item-title', title || 'alert'));
    li.appendChild(el('span', 'item-time', hhmmss(msgTime(msg))));
    li.appendChild(el('span', 'item-body', str(data.message, '')));
    var alertId = alertIdOf(data);
    if (alertId != null) li.setAttribute('data-alert-id', alertId);
    alerts.add(li, envKey(msg), alertId);
  }

  service.on('alert', function (raw, msg) {
    // a resolved alert's tombstone leaves the feed, as a page opened now would not show it
    if (!applyRemovals(alerts, msg, alertIdOf(raw))) showAlert(raw, msg, true);
    alerts.render();
  });

  // ------------------------------------------------------------------ interventions

  // One child per intervention received (the contract's test hook): a status change is a new
  // item, the earlier ones of the same id dimmed; a completed task (a tombstone by the
  // default rules) shows as done. The state at connect fills it with the current tasks;
  // an explicit removal (no task in its data) or an eviction takes a task's items out.
  var queue = $('intervention-queue');
  var interventions = makeFeed(queue, 'data-intervention-id', MAX_INTERVENTIONS_SHOWN, $('queue-empty'),
    $('intervention-count'), true, true);
  var DONE = { done: 1, completed: 1, resolved: 1, dismissed: 1, cancelled: 1, canceled: 1, closed: 1 };

  function interventionIdOf(raw) {
    return isObject(raw) ? scalar(raw.intervention_id) || scalar(raw.id) : null;
  }

  function showIntervention(raw, msg, live) {
    var data = isObject(raw) ? raw : { reason: raw };
    var key = interventionIdOf(data);
    var prio = token(scalar(data.priority) || 'medium');
    var li = el('li', 'feed-item prio-' + prio);
    if (live) li.classList.add('is-new');
    if (live && replaying) li.classList.add('replayed');
    if (key != null) li.setAttribute('data-intervention-id', key);
    li.appendChild(el('span', 'pill', str(data.priority, 'medium')));
    // TutorMax's tasks: title, task_type, tutor_name, description; others: action, reason
    var kind = scalar(data.action) || scalar(data.task_type);
    var action = scalar(data.title) || (kind != null ? kind.replace(/_/g, ' ') : 'intervention');
    var who = scalar(data.tutor_name) || scalar(data.tutor_id);
    li.appendChild(el('span', 'item-title', action + (who != null ? ' · ' + who : '')));
    var status = str(data.status, 'pending');
    li.appendChild(el('span', 'item-tag', status + ' · ' + hhmmss(msgTime(msg))));
    li.appendChild(el('span', 'item-body', str(data.reason != null ? data.reason : data.description, '')));
    if (own(DONE, token(status))) li.classList.add('is-done');
    interventions.add(li, envKey(msg), key);
  }

  service.on('intervention', function (raw, msg) {
    var id = interventionIdOf(raw);
    evictedKeys(msg).forEach(function (k) { interventions.removeKey(k); });
    if (msg && msg.removed === true && id == null) applyRemovals(interventions, msg, null);
    else showIntervention(raw, msg, true);
    interventions.render();
  });

  // ------------------------------------------------------------------ the state at connect

  // The connection opened on the keyed state (fresh, or after a resume that could not
  // recover): it replaces what the table, the feed and the queue show, all at once. Its
  // alerts are not counted in the badge: they did not arrive since the page loaded.
  var stateCount = null;
  service.on('state', function (st) {
    var events = st && Array.isArray(st.events) ? st.events.slice().sort(byPosition) : [];
    Array.from(tutors.keys()).forEach(dropTutorRow);
    tutorsDropped = 0;
    var metrics = events.filter(function (m) { return m.type === 'metrics_update' && m.removed !== true; });
    if (metrics.length > MAX_TUTOR_ROWS) {
      tutorsDropped = metrics.length - MAX_TUTOR_ROWS; // the table keeps the most recently updated
      metrics = metrics.slice(tutorsDropped);
    }
    metrics.forEach(function (m) { showMetrics(m.data, m, false); });
    renderTutorCount();
    alerts.clear();
    stateOf(events, 'alert', MAX_ALERTS_SHOWN).forEach(function (m) { showAlert(m.data, m, false); });
    alerts.render();
    interventions.clear();
    stateOf(events, 'intervention', MAX_INTERVENTIONS_SHOWN).forEach(function (m) { showIntervention(m.data, m, false); });
    interventions.render();
    stateCount = events.length;
    indicator.setAttribute('data-state-count', String(stateCount));
  });

  // ------------------------------------------------------------------ go

  window.dashboard = {
    service: service,
    counts: function () {
      return {
        alerts: alertCount, interventions: queue.children.length, tutors: tutors.size,
        state: service.statePhase, stateEvents: stateCount
      };
    }
  };
  window.addEventListener('pagehide', function () { service.disconnect(); });
  window.addEventListener('pageshow', function (ev) {
    if (ev.persisted) service.connect(); // restored from the back/forward cache
  });
  renderState('connecting');
  renderStatePhase();
  service.connect();
})();
