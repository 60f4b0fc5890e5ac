// WebSocketService against a real gateway node (the in-process bus), started by the test:
// connect, the greeting, typed messages published through POST /api/publish, the pong,
// ?types=, recovered:false, and a clean close the server sees.
// Node 20 has no global WebSocket: the `ws` package (a devDependency) is injected.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { WebSocketService, type WebSocketServiceOptions } from '../src/index.js';
import { type Gateway, publish, startGateway, stop, waitUntil } from './helpers/processes.js';
import { record } from './helpers/recorder.js';

let gw: Gateway;
const services: WebSocketService[] = [];

beforeAll(async () => { gw = await startGateway(); });
afterEach(() => { services.splice(0).forEach((s) => s.destroy()); });
afterAll(async () => { await stop(gw); });

// The live-only protocol (`state: false`); the state at connect: state.wire.test.ts.
function connect(opts: WebSocketServiceOptions = {}) {
  const svc = new WebSocketService({ url: gw.wsUrl, WebSocket, state: false, ...opts });
  services.push(svc);
  const rec = record(svc);
  svc.connect();
  return { svc, rec };
}

async function localConnections(): Promise<number> {
  const r = await fetch(`${gw.base}/ws/status`);
  return ((await r.json()) as { local_connections: number }).local_connections;
}

describe('against a real gateway', () => {
  it('connects and gets the analytics greeting at once', async () => {
    const { svc, rec } = connect();
    expect(svc.state).toBe('connecting');
    await rec.waitFor('connected', () => svc.state === 'connected');
    await rec.waitFor('the greeting', () => rec.of('analytics_update').length === 1, 1000);
    const greeting = rec.messages[0];
    expect(greeting.type).toBe('analytics_update');
    expect(typeof greeting.data).toBe('object');
    expect(greeting.timestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
    expect(rec.states).toEqual(['connecting', 'connected']);
    // the greeting of a fresh connection carries the history position it is current to,
    // so even a client that saw no event yet resumes without loss
    // (`epoch:ms-seq`; a gateway from before epochs sends a plain `ms-seq`)
    expect(greeting.id).toMatch(/^(?:[0-9a-z]{1,32}:)?\d+-\d+$/);
    expect(svc.lastId).toBe(greeting.id);
    svc.disconnect();
  });

  it('receives each message type, typed, with its id, in publish order', async () => {
    const { svc, rec } = connect();
    const alerts: string[] = [];
    svc.on('alert', (data, msg) => { alerts.push(`${data.alert_id}@${msg.id}`); });
    await rec.waitFor('the greeting', () => rec.messages.length === 1);

    const ids = [
      await publish(gw, 'metrics_update', { tutor_id: 't-1', active_sessions: 2 }),
      await publish(gw, 'alert', { alert_id: 'a-1', severity: 'critical', message: '<b>x</b>' }),
      await publish(gw, 'intervention', { intervention_id: 'i-1', priority: 'high' }),
      await publish(gw, 'analytics_update', { total_tutors: 42 }),
      await publish(gw, 'test_message', [1, 'two', null]),
    ];
    await rec.waitFor('5 events', () => rec.messages.length === 6);
    expect(rec.messages.slice(1).map((m) => [m.type, m.id])).toEqual([
      ['metrics_update', ids[0]], ['alert', ids[1]], ['intervention', ids[2]],
      ['analytics_update', ids[3]], ['test_message', ids[4]],
    ]);
    expect(rec.messages[2].data).toEqual({ alert_id: 'a-1', severity: 'critical', message: '<b>x</b>' });
    expect(rec.messages[5].data).toEqual([1, 'two', null]);
    expect(alerts).toEqual([`a-1@${ids[1]}`]);
    expect(svc.lastId).toBe(ids[4]);
    expect(svc.stats.duplicates).toBe(0);
    svc.disconnect();
  });

  it('sends ping; the server pongs and the pong is not analytics', async () => {
    const { svc, rec } = connect({ heartbeatMs: 150, pongTimeoutMs: 2000 });
    await rec.waitFor('the greeting', () => rec.messages.length === 1);
    await rec.waitFor('3 pongs', () => rec.pongs >= 3, 5000);
    expect(rec.of('analytics_update')).toHaveLength(1); // the greeting only
    expect(rec.closes).toEqual([]);
    expect(svc.state).toBe('connected');
    svc.disconnect();
  });

  it('a frame the server does not understand gets a typed error; the connection stays', async () => {
    const { svc, rec } = connect();
    const errors: string[] = [];
    svc.on('error', (data) => { errors.push(data.code); });
    await rec.waitFor('the greeting', () => rec.messages.length === 1);
    expect(svc.send('hello')).toBe(true);
    await rec.waitFor('the error frame', () => errors.length === 1);
    expect(typeof errors[0]).toBe('string');
    expect(svc.send('ping')).toBe(true);
    await rec.waitFor('a pong after the error', () => rec.pongs === 1);
    expect(svc.state).toBe('connected');
    expect(rec.closes).toEqual([]);
    svc.disconnect();
  });

  it('passes ?types= through: only those types (and the greeting) arrive', async () => {
    const { svc, rec } = connect({ types: ['intervention'] });
    await rec.waitFor('the greeting', () => rec.messages.length === 1);
    await publish(gw, 'alert', { alert_id: 'filtered-out' });
    await publish(gw, 'intervention', { intervention_id: 'i-kept' });
    await rec.waitFor('the intervention', () => rec.of('intervention').length === 1);
    expect(rec.messages.map((m) => m.type)).toEqual(['analytics_update', 'intervention']);
    svc.disconnect();
  });

  it('resumes with ?since= after a drop, and resyncs when the id is unknown', async () => {
    const before = await publish(gw, 'alert', { alert_id: 'before' });
    const { svc, rec } = connect({ since: before, baseDelayMs: 50 });
    await rec.waitFor('recovery', () => rec.of('recovery').length === 1);
    expect(rec.of('recovery')[0].data).toEqual({ recovered: true, replayed: 0 });
    expect(rec.urls[0]).toBe(`${gw.wsUrl}?since=${encodeURIComponent(before)}`);
    svc.disconnect();

    const missed = await publish(gw, 'alert', { alert_id: 'missed' });
    svc.connect(); // reconnects from the greatest id seen
    await rec.waitFor('the replay', () => rec.of('recovery').length === 2);
    const second = rec.messages.slice(rec.messages.indexOf(rec.of('recovery')[0]) + 1);
    // the greeting comes first on every connection, then the replay, then `recovery`
    expect(second.map((m) => [m.type, m.id])).toEqual([
      ['analytics_update', undefined], ['alert', missed], ['recovery', undefined],
    ]);
    expect(second[2].data).toEqual({ recovered: true, replayed: 1 });
    expect(rec.urls.at(-1)).toBe(`${gw.wsUrl}?since=${encodeURIComponent(before)}`);
    svc.disconnect();

    const resyncs: unknown[] = [];
    const bad = connect({ since: 'not-an-id' });
    bad.svc.on('client:resync', (d) => { resyncs.push(d); });
    await bad.rec.waitFor('recovery', () => bad.rec.of('recovery').length === 1);
    expect(resyncs).toEqual([{ recovered: false, replayed: 0 }]);
    expect(bad.svc.stats.recoveriesFailed).toBe(1);
    bad.svc.disconnect();
  });

  it('disconnect() closes cleanly: the server sees the client go', async () => {
    await waitUntil('no clients from earlier tests', async () => (await localConnections()) === 0);
    const { svc, rec } = connect();
    await rec.waitFor('connected', () => svc.state === 'connected');
    await waitUntil('the server counts the client', async () => (await localConnections()) === 1);
    svc.disconnect();
    await waitUntil('the server forgets the client', async () => (await localConnections()) === 0);
    expect(svc.state).toBe('disconnected');
    expect(rec.closes).toEqual([]); // a clean disconnect is not a drop
  });
});
