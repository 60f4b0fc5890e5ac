// Unit tests of gateway/assets/ws-client.js (the page bundle built from clients/js) with a fake WebSocket and fake timers
// (no browser, no gateway needed).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import vm from 'node:vm';
import { REPO_ROOT } from '../lib/harness.mjs';

const SOURCE = fs.readFileSync(path.join(REPO_ROOT, 'gateway', 'assets', 'ws-client.js'), 'utf8');

class FakeTimers {
  constructor() { this.now = 0; this.nextId = 1; this.timers = new Map(); }
  setTimeout(fn, ms) { const id = this.nextId++; this.timers.set(id, { fn, at: this.now + ms }); return id; }
  setInterval(fn, ms) { const id = this.nextId++; this.timers.set(id, { fn, at: this.now + ms, every: ms }); return id; }
  clearTimeout(id) { this.timers.delete(id); }
  clearInterval(id) { this.timers.delete(id); }
  get pending() { return this.timers.size; }
  advance(ms) {
    const end = this.now + ms;
    for (;;) {
      let next = null;
      for (const [id, t] of this.timers) if (t.at <= end && (!next || t.at < next[1].at)) next = [id, t];
      if (!next) break;
      const [id, t] = next;
      this.now = t.at;
      if (t.every) t.at += t.every; else this.timers.delete(id);
      t.fn();
    }
    this.now = end;
  }
}

function load() {
  const sandbox = { URLSearchParams, Set, Map, Math, Array, Object, String, Number, JSON, isFinite };
  sandbox.globalThis = sandbox;
  vm.createContext(sandbox);
  vm.runInContext(SOURCE, sandbox);
  return sandbox.WebSocketService;
}

function makeEnv(search = '') {
  const sockets = [];
  class FakeWS {
    constructor(url) { this.url = url; this.readyState = 0; this.sent = []; this.closed = null; sockets.push(this); }
    send(t) { this.sent.push(t); }
    close(code, reason) { this.closed = { code, reason }; this.readyState = 3; }
    // test helpers
    open() { this.readyState = 1; this.onopen?.({}); }
    msg(obj) { this.onmessage?.({ data: typeof obj === 'string' ? obj : JSON.stringify(obj) }); }
    drop(code = 1006) { this.readyState = 3; this.onclose?.({ code, reason: '' }); }
  }
  const timers = new FakeTimers();
  const location = { protocol: 'http:', host: 'dash.example:8000', search };
  return { sockets, FakeWS, timers, location };
}

const WebSocketService = load();

function service(env, opts = {}) {
  return new WebSocketService({ WebSocket: env.FakeWS, timers: env.timers, location: env.location, random: () => 0.5, ...opts });
}

test('stream ids compare as ms then seq, numerically, within one epoch', () => {
  const c = WebSocketService.compareIds;
  assert.equal(c('1764064800123-0', '1764064800123-1'), -1);
  assert.equal(c('1764064800124-0', '1764064800123-9'), 1);
  assert.equal(c('99-0', '100-0'), -1);          // not lexicographic
  assert.equal(c('5-10', '5-9'), 1);
  assert.equal(c('5-9', '5-9'), 0);
  assert.equal(c('abc', '5-9'), null);
  // ids with an epoch (the history they belong to): ordered within one epoch only
  assert.equal(c('3fa91c2e:99-0', '3fa91c2e:100-0'), -1);
  assert.equal(c('3fa91c2e:100-0', 'b7:5-0'), null);
  assert.equal(c('3fa91c2e:100-0', '5-0'), null);
});

test('builds the same-host URL with token, types and since', () => {
  const env = makeEnv('?token=abc.def&x=1');
  const s = service(env, { types: ['alert', 'intervention'] });
  assert.equal(s.buildUrl(), 'ws://dash.example:8000/ws/dashboard?token=abc.def&types=alert,intervention');
  env.location.protocol = 'https:';
  s.lastId = '17-3';
  assert.equal(s.buildUrl(), 'wss://dash.example:8000/ws/dashboard?token=abc.def&types=alert,intervention&since=17-3');
});

test('dispatches by type and wildcard; unsubscribe works; pong is not analytics', () => {
  const env = makeEnv();
  const s = service(env);
  const got = [];
  const off = s.on('alert', (d) => got.push(['alert', d.n]));
  s.on('*', (d, m) => got.push(['*', m.type]));
  s.on('analytics_update', (d) => got.push(['analytics', d]));
  let pongs = 0;
  s.on('client:pong', () => pongs++);
  s.connect();
  env.sockets[0].open();
  env.sockets[0].msg({ type: 'alert', data: { n: 1 }, timestamp: 't', id: '1-0' });
  env.sockets[0].msg({ type: 'analytics_update', data: { pong: true }, timestamp: 't' });
  off();
  env.sockets[0].msg({ type: 'alert', data: { n: 2 }, timestamp: 't', id: '2-0' });
  env.sockets[0].msg('not json');
  assert.deepEqual(got, [['alert', 1], ['*', 'alert'], ['*', 'alert']]);
  assert.equal(pongs, 1);
  assert.equal(s.lastId, '2-0');
  s.disconnect();
});

test('heartbeat sends ping; silence after a ping replaces the socket', () => {
  const env = makeEnv();
  const s = service(env, { heartbeatMs: 15000, pongTimeoutMs: 10000 });
  s.connect();
  env.sockets[0].open();
  env.sockets[0].msg({ type: 'analytics_update', data: {}, timestamp: 't' });
  env.timers.advance(15000);
  assert.deepEqual(env.sockets[0].sent, ['ping']);
  env.sockets[0].msg({ type: 'analytics_update', data: { pong: true }, timestamp: 't' });
  env.timers.advance(15000);
  assert.deepEqual(env.sockets[0].sent, ['ping', 'ping']);
  env.timers.advance(10000); // no answer
  assert.equal(s.state, 'reconnecting');
  assert.equal(env.sockets[0].closed?.code, 4000);
  env.timers.advance(1000);
  assert.equal(env.sockets.length, 2);
  s.disconnect();
});

test('full-jitter exponential backoff, 10 attempts, then disconnected; retry() starts over', () => {
  const env = makeEnv();
  const states = [];
  const s = service(env, { random: () => 0.999999, baseDelayMs: 500, maxDelayMs: 30000,
    onStateChange: (st) => states.push(st) });
  assert.equal(s.backoffDelay(0), 499);
  assert.equal(s.backoffDelay(3), 3999);
  assert.equal(s.backoffDelay(10), 29999); // capped
  let gaveUp = 0;
  s.on('client:gave_up', () => gaveUp++);
  s.connect();
  env.sockets[0].open();
  env.sockets[0].msg({ type: 'alert', data: {}, timestamp: 't', id: '5-0' });
  env.sockets[0].drop(1001);
  assert.equal(s.state, 'reconnecting');
  for (let i = 0; i < 10; i++) {
    const before = env.sockets.length;
    env.timers.advance(Math.min(30000, 500 * 2 ** i) - 2);
    assert.equal(env.sockets.length, before, `attempt ${i + 1} not before its delay`);
    env.timers.advance(2);
    assert.equal(env.sockets.length, before + 1, `attempt ${i + 1} made`);
    assert.match(env.sockets.at(-1).url, /since=5-0$/);
    env.sockets.at(-1).drop();
  }
  assert.equal(s.state, 'disconnected');
  assert.equal(gaveUp, 1);
  env.timers.advance(120000);
  assert.equal(env.sockets.length, 11); // no more attempts
  s.retry();
  assert.equal(env.sockets.length, 12);
  assert.equal(s.state, 'reconnecting');
  env.sockets.at(-1).open();
  assert.equal(s.state, 'connected');
  assert.deepEqual(states.slice(0, 3), ['connecting', 'connected', 'reconnecting']);
  s.disconnect();
  assert.equal(env.timers.pending, 0);
});

test('jitter is uniform in [0, ceiling)', () => {
  const env = makeEnv();
  const s = service(env, { random: () => 0, baseDelayMs: 500 });
  assert.equal(s.backoffDelay(4), 0);
});

test('recovery=false emits client:resync; duplicate ids are dropped and counted', () => {
  const env = makeEnv();
  const s = service(env);
  const seen = [];
  s.on('client:resync', (d) => seen.push(['resync', d.recovered]));
  s.on('recovery', (d) => seen.push(['recovery', d.replayed]));
  s.on('alert', (d, m) => seen.push(['alert', m.id]));
  s.connect();
  env.sockets[0].open();
  env.sockets[0].msg({ type: 'alert', data: {}, timestamp: 't', id: '10-0' });
  env.sockets[0].msg({ type: 'alert', data: {}, timestamp: 't', id: '10-0' });
  env.sockets[0].msg({ type: 'recovery', data: { recovered: false, replayed: 0 }, timestamp: 't' });
  assert.deepEqual(seen, [['alert', '10-0'], ['resync', false], ['recovery', 0]]);
  assert.equal(s.stats.duplicates, 1);
  s.disconnect();
});

test('disconnect() clears every timer and the socket listeners', () => {
  const env = makeEnv();
  const s = service(env);
  s.connect();
  env.sockets[0].open();
  s.disconnect();
  assert.equal(s.state, 'disconnected');
  assert.equal(env.timers.pending, 0);
  assert.equal(env.sockets[0].onmessage, null);
  assert.equal(env.sockets[0].onclose, null);
  assert.equal(env.sockets[0].closed.code, 1000);
  env.timers.advance(60000);
  assert.equal(env.sockets.length, 1); // never reconnects by itself
});
