// Resume without loss across a node restart, with Redis as the bus: a real redis-server
// and gateway started by the test; events published with the `publisher` CLI while the
// only node is down arrive after the reconnection (with ?since=), in order, exactly once.
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { WebSocketService } from '../src/index.js';
import {
  type Child, publish, publisherSend, sleep, startGateway, startRedis, stop,
} from './helpers/processes.js';
import { record } from './helpers/recorder.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});
const track = <T extends Child>(c: T) => { cleanups.push(() => stop(c)); return c; };

describe('node restart', () => {
  it('reconnects with ?since= and gets what was published meanwhile, once, in order', async () => {
    const redis = track(await startRedis());
    let gw = track(await startGateway({ redis }));
    const port = gw.port;

    // short backoff so the test does not wait up to 30 s; more attempts than the default
    // 10, so that a slow restart of a debug build cannot make it give up
    const svc = new WebSocketService({
      url: gw.wsUrl, WebSocket, baseDelayMs: 100, maxDelayMs: 1000, maxAttempts: 60,
    });
    cleanups.push(() => svc.destroy());
    const rec = record(svc);
    svc.connect();
    await rec.waitFor('the greeting', () => rec.messages.length === 1);

    const before = await publisherSend(redis, 'alert', { alert_id: 'a-before' });
    await rec.waitFor('the live alert', () => rec.of('alert').length === 1);
    expect(rec.of('alert')[0].id).toBe(before);

    // the node drains: clients get 1001 and start reconnecting
    await stop(gw, 'SIGTERM');
    // At least one: a fast reconnect attempt refused by the draining node is a close too.
    await rec.waitFor('the close', () => rec.closes.length >= 1);
    expect(rec.closes[0].code).toBe(1001);
    expect(svc.state).toBe('reconnecting');

    // published while no node is up: only Redis history has them
    const away = [
      await publisherSend(redis, 'alert', { alert_id: 'a-away-1', severity: 'critical' }),
      await publisherSend(redis, 'intervention', { intervention_id: 'i-away-1', priority: 'high' }),
      await publisherSend(redis, 'metrics_update', { tutor_id: 't-2', active_sessions: 4 }),
      await publisherSend(redis, 'alert', { alert_id: 'a-away-2', severity: 'warning' }),
    ];
    const seenBeforeRestart = rec.messages.length;
    await sleep(300); // a few failed attempts meanwhile
    expect(svc.state).toBe('reconnecting');

    gw = track(await startGateway({ redis, port }));
    await rec.waitFor('the recovery', () => rec.of('recovery').length === 1, 30000);
    // state=1 (the default): a resume that recovers gets no state
    expect(rec.urls.at(-1)).toBe(`${gw.wsUrl}?since=${encodeURIComponent(before)}&state=1`);

    const after = rec.messages.slice(seenBeforeRestart);
    expect(after.map((m) => m.type)).toEqual([
      'analytics_update', 'alert', 'intervention', 'metrics_update', 'alert', 'recovery',
    ]);
    expect(after.slice(1, 5).map((m) => m.id)).toEqual(away);
    expect(after[5].data).toEqual({ recovered: true, replayed: 4 });
    expect(svc.stats).toMatchObject({ duplicates: 0, recoveriesFailed: 0, replayed: 4 });
    expect(svc.lastId).toBe(away[3]);

    // the live stream continues, and nothing arrives twice
    const live = await publish(gw, 'alert', { alert_id: 'a-after' });
    await rec.waitFor('the live alert after the replay', () => rec.of('alert').length === 4);
    await sleep(300);
    expect(rec.of('alert').map((m) => m.id)).toEqual([before, away[0], away[3], live]);
    expect(svc.state).toBe('connected');
  });
});
