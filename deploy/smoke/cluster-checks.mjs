// Loopback cluster smoke, client side. Started by deploy/smoke.sh once redis-server,
// three gateway nodes and nginx (deploy/nginx.conf) are up on 127.0.0.1.
//
// Uses Node's built-in WebSocket (Node >= 22, or Node 20 with --experimental-websocket)
// and fetch; no npm packages.
//
// Environment (set by smoke.sh):
//   SMOKE_LB_URL      http://127.0.0.1:<nginx port>
//   SMOKE_CLIENTS     number of WebSocket clients (default 30)
//   SMOKE_API_KEY     bearer key for POST /api/publish
//   SMOKE_NODE_PIDS   "smoke-1=1234,smoke-2=1235,smoke-3=1236"
//   SMOKE_NGINX_LOG   the file nginx's access log (stdout) and error log (stderr) go to
//
// Prints one `PASS <check>` or `FAIL <check>: <why>` line per check (always all of
// them; checks that could not run after an earlier failure are reported as FAIL) and
// exits 0 only when every check passed.

import { readFileSync } from 'node:fs';
import http from 'node:http';

const LB = process.env.SMOKE_LB_URL;
const WS_URL = LB.replace(/^http/, 'ws') + '/ws/dashboard';
const N = Number(process.env.SMOKE_CLIENTS || 30);
const API_KEY = process.env.SMOKE_API_KEY || 'smoke-key';
const NGINX_LOG = process.env.SMOKE_NGINX_LOG;
const NODE_PIDS = Object.fromEntries(
  (process.env.SMOKE_NODE_PIDS || '')
    .split(',')
    .filter(Boolean)
    .map((kv) => {
      const [k, v] = kv.split('=');
      return [k, Number(v)];
    }),
);

const CHECKS = [
  'connect',   // N clients connect through nginx and get the initial analytics_update
  'origin',    // CORS_ORIGINS set: own origin (address, localhost) 101; a rebound name 403
  'broadcast', // POST /api/publish through nginx -> 202, every client gets the event
  'status',    // /ws/status through nginx: active_connections == N summed over the nodes
  'logs',      // a page load and a ws connect with ?token=: no token in nginx's log; no-referrer
  'drain',     // SIGTERM one node: exactly its clients are closed with 1001, it exits
  'failover',  // they reconnect (resuming with ?since=) through nginx; N live again, new event reaches all N
];
const results = new Map();

function report(name, ok, why) {
  results.set(name, ok);
  console.log(ok ? `PASS ${name}${why ? ` (${why})` : ''}` : `FAIL ${name}: ${why}`);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
function log(msg) {
  console.log(`   .. ${msg}`);
}

async function waitFor(pred, timeoutMs, stepMs = 100) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() > deadline) return null;
    await sleep(stepMs);
  }
}

// One dashboard client that reconnects by itself (after a close it did not ask for),
// resuming with ?since=<last id it saw>, like the dashboard page does.
class Client {
  constructor(index) {
    this.index = index;
    this.messages = []; // every envelope received, across connections
    this.lastId = null;
    this.generation = 0; // connections opened so far
    this.open = false;
    this.closes = []; // {code, reason, generation}
    this.gotInitial = false; // analytics_update seen on the current connection
    this.recoveries = []; // recovery envelopes, across connections
    this.errors = [];
    this.stopping = false;
    this.reconnectAttempts = 0;
  }

  connect() {
    const url = this.lastId !== null ? `${WS_URL}?since=${encodeURIComponent(this.lastId)}` : WS_URL;
    const ws = new WebSocket(url);
    this.ws = ws;
    this.gotInitial = false;
    ws.addEventListener('open', () => {
      this.open = true;
      this.generation += 1;
      this.reconnectAttempts = 0;
    });
    ws.addEventListener('message', (ev) => {
      let msg;
      try {
        msg = JSON.parse(typeof ev.data === 'string' ? ev.data : Buffer.from(ev.data).toString('utf8'));
      } catch (e) {
        this.errors.push(`non-JSON frame: ${String(ev.data).slice(0, 100)}`);
        return;
      }
      msg._generation = this.generation;
      this.messages.push(msg);
      if (msg.type === 'analytics_update') this.gotInitial = true;
      if (msg.type === 'recovery') this.recoveries.push({ ...msg.data, generation: this.generation });
      if (msg.id !== undefined && msg.id !== null) this.lastId = String(msg.id);
    });
    ws.addEventListener('error', () => {});
    ws.addEventListener('close', (ev) => {
      const wasOpen = this.open;
      this.open = false;
      if (wasOpen) this.closes.push({ code: ev.code, reason: ev.reason, generation: this.generation });
      if (this.stopping) return;
      this.reconnectAttempts += 1;
      if (this.reconnectAttempts > 30) {
        this.errors.push('gave up reconnecting after 30 attempts');
        return;
      }
      // Backoff with jitter, short: this is a test.
      const delay = Math.min(2000, 100 * 2 ** Math.min(this.reconnectAttempts - 1, 4)) * (0.5 + Math.random());
      setTimeout(() => this.connect(), delay);
    });
  }

  stop() {
    this.stopping = true;
    try {
      this.ws?.close(1000, 'smoke done');
    } catch {}
  }

  hasEvent(marker) {
    return this.messages.some((m) => m.type === 'alert' && m.data && m.data.smoke_marker === marker);
  }
}

async function publish(marker) {
  const res = await fetch(`${LB}/api/publish`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${API_KEY}` },
    body: JSON.stringify({
      type: 'alert',
      data: { smoke_marker: marker, tutor_id: 't-smoke', severity: 'critical', message: 'loopback cluster smoke' },
    }),
  });
  const body = await res.text();
  return { status: res.status, body };
}

// The status of a WebSocket handshake through nginx as a browser page on `origin`
// sends it, with `host` as its Host.
function handshake(host, origin) {
  const lb = new URL(LB);
  return new Promise((resolve) => {
    const req = http.request({
      host: lb.hostname,
      port: lb.port,
      path: '/ws/dashboard',
      headers: {
        Host: host,
        Origin: origin,
        Connection: 'Upgrade',
        Upgrade: 'websocket',
        'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
        'Sec-WebSocket-Version': '13',
      },
    });
    req.on('upgrade', (res, socket) => {
      socket.destroy();
      resolve(res.statusCode);
    });
    req.on('response', (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.on('error', (e) => resolve(`error: ${e.message}`));
    req.setTimeout(5000, () => {
      req.destroy();
      resolve('timeout');
    });
    req.end();
  });
}

async function status() {
  try {
    const res = await fetch(`${LB}/ws/status`);
    if (res.status !== 200) return { error: `HTTP ${res.status}` };
    return await res.json();
  } catch (e) {
    return { error: String(e) };
  }
}

// Polls /ws/status through nginx until pred(status) holds (up to timeoutMs).
async function pollStatus(pred, timeoutMs) {
  let last = null;
  const ok = await waitFor(async () => {
    last = await status();
    return !last.error && pred(last);
  }, timeoutMs, 250);
  return { ok: !!ok, last };
}

// The page's URL carries ?token=<JWT>, and so does an older client's WebSocket URL: load
// the page and its assets as a browser would (a Referer naming the page, as a browser
// without the page's Referrer-Policy sends), open a WebSocket with ?token=, close it (nginx
// logs a WebSocket when it ends), then read nginx's log: the paths are there, the token
// is not. The page and its assets must also say Referrer-Policy: no-referrer.
async function tokenStaysOutOfLogs() {
  const token = `eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJzbW9rZS${process.pid}${Date.now()}.c21va2Utc2ln`;
  const pageUrl = `${LB}/?token=${token}`;
  const why = [];
  for (const path of [`/?token=${token}`, `/dashboard?token=${token}`, '/assets/dashboard.css',
    '/assets/ws-client.js', '/assets/dashboard.js']) {
    try {
      const res = await fetch(LB + path, { headers: { referer: pageUrl } });
      await res.arrayBuffer();
      if (res.status !== 200) why.push(`GET ${path.split('?')[0]} answered ${res.status}`);
      const policy = res.headers.get('referrer-policy');
      if (policy !== 'no-referrer') why.push(`GET ${path.split('?')[0]}: Referrer-Policy ${policy}, want no-referrer`);
    } catch (e) {
      why.push(`GET ${path.split('?')[0]}: ${e}`);
    }
  }
  const greeted = await new Promise((resolve) => {
    const ws = new WebSocket(`${WS_URL}?token=${token}`);
    const done = (ok) => { try { ws.close(1000, 'logs check'); } catch {} resolve(ok); };
    ws.addEventListener('message', () => done(true));
    ws.addEventListener('error', () => done(false));
    setTimeout(() => done(false), 5000);
  });
  if (!greeted) why.push('a WebSocket with ?token= got no greeting through nginx');
  if (!NGINX_LOG) return { ok: false, why: 'SMOKE_NGINX_LOG is not set' };
  let log = '';
  const logged = await waitFor(() => {
    log = readFileSync(NGINX_LOG, 'utf8');
    return /"GET \/ws\/dashboard HTTP\/1\.1" 101/.test(log) && log.includes('"GET /assets/dashboard.js HTTP/1.1" 200');
  }, 5000, 100);
  if (!logged) why.push(`nginx's log has no line for the asset or the WebSocket: ${log.split('\n').slice(-5).join(' | ')}`);
  const leaks = log.split('\n').filter((line) => line.includes(token) || line.includes(token.split('.')[1]));
  if (leaks.length) why.push(`${leaks.length} lines of nginx's log hold the token, e.g. ${leaks[0]}`);
  if (why.length) return { ok: false, why: why.join('; ') };
  return { ok: true, why: 'page, assets and a ?token= WebSocket logged as paths only; Referrer-Policy: no-referrer' };
}

function pidAlive(pid) {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // An exited child that its parent (smoke.sh) has not reaped yet is a zombie.
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\d+ \(.*\) Z/.test(stat);
  } catch {
    return true;
  }
}

async function main() {
  const clients = Array.from({ length: N }, (_, i) => new Client(i));
  const remaining = () => CHECKS.filter((c) => !results.has(c));
  const finish = () => {
    for (const c of remaining()) report(c, false, 'not run (an earlier check failed)');
    for (const c of clients) c.stop();
    const failed = [...results.values()].filter((v) => !v).length;
    setTimeout(() => process.exit(failed === 0 ? 0 : 1), 200);
  };

  // 1. connect ---------------------------------------------------------------
  for (const c of clients) c.connect();
  const connected = await waitFor(() => clients.every((c) => c.open && c.gotInitial), 10000);
  if (!connected) {
    const open = clients.filter((c) => c.open).length;
    const initial = clients.filter((c) => c.gotInitial).length;
    report('connect', false, `after 10 s ${open}/${N} open, ${initial}/${N} got the initial analytics_update`);
    return finish();
  }
  const badFirst = clients.filter((c) => c.messages[0]?.type !== 'analytics_update');
  if (badFirst.length) {
    report('connect', false, `${badFirst.length} clients' first frame was not analytics_update: ${JSON.stringify(badFirst[0].messages[0])}`);
    return finish();
  }
  report('connect', true, `${N}/${N} clients open through nginx, each got analytics_update first`);

  // 1b. origin ---------------------------------------------------------------
  const port = new URL(LB).port;
  const cases = [
    [`127.0.0.1:${port}`, `http://127.0.0.1:${port}`, 101],
    [`localhost:${port}`, `http://localhost:${port}`, 101],
    [`evil.example:${port}`, `http://evil.example:${port}`, 403],
  ];
  const wrong = [];
  for (const [host, origin, want] of cases) {
    const got = await handshake(host, origin);
    if (got !== want) wrong.push(`Origin ${origin} (Host ${host}) got ${got}, want ${want}`);
  }
  if (wrong.length) {
    report('origin', false, wrong.join('; '));
    return finish();
  }
  report('origin', true, 'own page by address and as localhost 101, a rebound name 403');

  // 2. broadcast -------------------------------------------------------------
  const marker1 = `smoke-${process.pid}-${Date.now()}-1`;
  let pub;
  try {
    pub = await publish(marker1);
  } catch (e) {
    pub = { status: 0, body: String(e) };
  }
  if (pub.status !== 202) {
    report('broadcast', false, `POST /api/publish answered ${pub.status}, want 202: ${pub.body.slice(0, 200)}`);
    return finish();
  }
  const allGot1 = await waitFor(() => clients.every((c) => c.hasEvent(marker1)), 5000);
  if (!allGot1) {
    report('broadcast', false, `only ${clients.filter((c) => c.hasEvent(marker1)).length}/${N} clients got the published alert within 5 s`);
    return finish();
  }
  const ev = clients[0].messages.find((m) => m.type === 'alert' && m.data?.smoke_marker === marker1);
  const envelopeOk = typeof ev.timestamp === 'string' && !Number.isNaN(Date.parse(ev.timestamp)) && ev.id !== undefined;
  if (!envelopeOk) {
    report('broadcast', false, `event envelope lacks an RFC 3339 timestamp or an id: ${JSON.stringify(ev)}`);
    return finish();
  }
  report('broadcast', true, `POST /api/publish -> 202, alert id ${ev.id} reached ${N}/${N} clients`);

  // 3. status ----------------------------------------------------------------
  const st = await pollStatus((s) => s.active_connections === N, 10000);
  if (!st.ok) {
    report('status', false, `/ws/status active_connections never reached ${N} within 10 s; last: ${JSON.stringify(st.last)}`);
    return finish();
  }
  const perNode = Object.fromEntries((st.last.nodes || []).map((n) => [n.node_id, n.active_connections]));
  const nodeSum = Object.values(perNode).reduce((a, b) => a + b, 0);
  const liveNodes = Object.keys(NODE_PIDS).filter((id) => id in perNode);
  if (nodeSum !== N || liveNodes.length !== Object.keys(NODE_PIDS).length) {
    report('status', false, `nodes list does not add up to ${N} over ${Object.keys(NODE_PIDS).join(',')}: ${JSON.stringify(st.last)}`);
    return finish();
  }
  report('status', true, `active_connections=${N} via ${st.last.node_id}; per node ${JSON.stringify(perNode)}`);

  // 4. logs ------------------------------------------------------------------
  const logs = await tokenStaysOutOfLogs();
  report('logs', logs.ok, logs.why);
  if (!logs.ok) return finish();

  // 5. drain -----------------------------------------------------------------
  // Stop the busiest node (least_conn spreads the clients, so it has some).
  const [victim, victimCount] = Object.entries(perNode).sort((a, b) => b[1] - a[1])[0];
  const victimPid = NODE_PIDS[victim];
  if (!victimPid || victimCount === 0) {
    report('drain', false, `no node to stop (per node ${JSON.stringify(perNode)}, pids ${JSON.stringify(NODE_PIDS)})`);
    return finish();
  }
  log(`SIGTERM -> ${victim} (pid ${victimPid}, ${victimCount} clients)`);
  const closesBefore = clients.map((c) => c.closes.length);
  process.kill(victimPid, 'SIGTERM');
  const closedEnough = await waitFor(
    () => clients.filter((c, i) => c.closes.length > closesBefore[i]).length >= victimCount,
    15000,
  );
  await sleep(500); // let any extra (wrong) closes show up too
  const closed = clients.filter((c, i) => c.closes.length > closesBefore[i]);
  const codes = closed.map((c) => c.closes[closesBefore[c.index]].code);
  const exited = await waitFor(() => !pidAlive(victimPid), 15000, 200);
  const why = [];
  if (!closedEnough || closed.length !== victimCount)
    why.push(`${closed.length} clients closed, want exactly ${victimCount} (the clients of ${victim})`);
  const not1001 = codes.filter((c) => c !== 1001);
  if (not1001.length) why.push(`close codes ${JSON.stringify(codes)}, want all 1001`);
  if (!exited) why.push(`${victim} (pid ${victimPid}) still running 15 s after SIGTERM`);
  if (why.length) {
    report('drain', false, why.join('; '));
    return finish();
  }
  report('drain', true, `${victim} closed its ${victimCount} clients with 1001 and exited`);

  // 6. failover --------------------------------------------------------------
  const movers = closed;
  const back = await waitFor(
    () => clients.every((c) => c.open && c.gotInitial) && movers.every((c) => c.generation >= 2),
    15000,
  );
  if (!back) {
    const open = clients.filter((c) => c.open).length;
    const errs = clients.flatMap((c) => c.errors);
    report('failover', false, `after 15 s only ${open}/${N} clients open again${errs.length ? `; ${errs[0]}` : ''}`);
    return finish();
  }
  // Every mover resumed with ?since=<id of the first alert>: nothing was published since,
  // so the gateway owes it recovered=true (replayed 0) from the shared history.
  const badRecovery = movers.filter((c) => !c.recoveries.some((r) => r.generation >= 2 && r.recovered === true));
  if (badRecovery.length) {
    const c = badRecovery[0];
    report('failover', false, `${badRecovery.length}/${movers.length} reconnected clients did not get {"type":"recovery","data":{"recovered":true,...}} after ?since=${c.lastId}; got ${JSON.stringify(c.recoveries)}`);
    return finish();
  }
  const st2 = await pollStatus(
    (s) => s.active_connections === N && !(s.nodes || []).some((n) => n.node_id === victim),
    10000,
  );
  if (!st2.ok) {
    report('failover', false, `/ws/status never showed ${N} connections without ${victim} within 10 s; last: ${JSON.stringify(st2.last)}`);
    return finish();
  }
  const marker2 = `smoke-${process.pid}-${Date.now()}-2`;
  let pub2;
  try {
    pub2 = await publish(marker2);
  } catch (e) {
    pub2 = { status: 0, body: String(e) };
  }
  if (pub2.status !== 202) {
    report('failover', false, `second POST /api/publish answered ${pub2.status}, want 202: ${pub2.body.slice(0, 200)}`);
    return finish();
  }
  const allGot2 = await waitFor(() => clients.every((c) => c.hasEvent(marker2)), 5000);
  if (!allGot2) {
    report('failover', false, `only ${clients.filter((c) => c.hasEvent(marker2)).length}/${N} clients got the second alert within 5 s`);
    return finish();
  }
  const dupes = clients.filter((c) => c.messages.filter((m) => m.data?.smoke_marker === marker1).length > 1);
  if (dupes.length) {
    report('failover', false, `${dupes.length} clients got the first alert twice after resuming`);
    return finish();
  }
  const perNode2 = Object.fromEntries(st2.last.nodes.map((n) => [n.node_id, n.active_connections]));
  report('failover', true, `${movers.length} clients resumed (recovered=true) on the other nodes, ${N}/${N} live ${JSON.stringify(perNode2)}, second alert reached all ${N}`);

  finish();
}

main().catch((e) => {
  console.log(`FAIL smoke-client: ${e?.stack || e}`);
  for (const c of CHECKS) if (!results.has(c)) console.log(`FAIL ${c}: not run (client crashed)`);
  process.exit(1);
});
