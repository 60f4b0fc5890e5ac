// Short-lived tokens against a real gateway: the node closes a connection whose token
// expired with 4001; the client's getToken() mints a fresh one before each connection,
// sends it as its first frame (never in the URL) and resumes with ?since=, so a stream
// published throughout arrives whole, once, in order.
import { createHmac } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { WebSocketService } from '../src/index.js';
import { type Child, publish, sleep, startGateway, stop } from './helpers/processes.js';
import { record } from './helpers/recorder.js';

const SECRET = 'token-refresh-secret';
const LIFETIME_S = 2;

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});
const track = <T extends Child>(c: T) => { cleanups.push(() => stop(c)); return c; };

const b64url = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');

/** An HS256 JWT for `sub`, expiring LIFETIME_S from now (a fractional NumericDate). */
function mint(sub: string): string {
  const head = `${b64url({ alg: 'HS256', typ: 'JWT' })}.${b64url({ sub, exp: Date.now() / 1000 + LIFETIME_S })}`;
  return `${head}.${createHmac('sha256', SECRET).update(head).digest('base64url')}`;
}

describe('tokens that expire', () => {
  it('stays live across several expiries with getToken(), losing nothing', async () => {
    // No leeway, so that a 2 s token really ends after 2 s.
    const gw = track(await startGateway({ env: { AUTH_JWT_SECRET: SECRET, AUTH_JWT_LEEWAY_SECS: '0' } }));
    let minted = 0;
    const dialed: string[] = [];
    class Dialing extends WebSocket {
      constructor(url: string) { super(url); dialed.push(url); }
    }
    const svc = new WebSocketService({
      url: gw.wsUrl, WebSocket: Dialing, baseDelayMs: 100, maxDelayMs: 1000, heartbeatMs: 0,
      getToken: async () => { minted++; await sleep(5); return mint('ana'); },
    });
    cleanups.push(() => svc.destroy());
    const rec = record(svc);
    svc.connect();
    await rec.waitFor('the greeting', () => rec.messages.length === 1);

    const published: string[] = [];
    const until = Date.now() + 3.5 * LIFETIME_S * 1000;
    for (let i = 0; Date.now() < until; i++) {
      published.push(await publish(gw, 'alert', { alert_id: `a-${i}` }));
      await sleep(50);
    }
    await rec.waitFor('every event', () => rec.of('alert').length >= published.length, 20000);

    const expiries = rec.closes.filter((c) => c.code === 4001);
    expect(expiries.length).toBeGreaterThanOrEqual(3);
    expect(expiries[0].reason).toBe('token expired');
    expect(minted).toBeGreaterThanOrEqual(expiries.length + 1);
    expect(rec.of('alert').map((m) => m.id)).toEqual(published);
    expect(svc.stats.duplicates).toBe(0);
    expect(svc.state).toBe('connected');
    // the token never went into a URL (it is the first frame: ?auth=frame); every
    // reconnection carried the resume point
    expect(dialed.length).toBeGreaterThanOrEqual(expiries.length + 1);
    for (const url of dialed) expect(url).not.toMatch(/token=|eyJ/);
    for (const url of dialed) expect(url).toMatch(/[?&]auth=frame(&|$)/);
    for (const url of dialed.slice(1)) expect(url).toMatch(/&since=/);
  }, 60000);

  it('a getToken() that fails counts as a failed attempt and is retried', async () => {
    const gw = track(await startGateway({ env: { AUTH_JWT_SECRET: SECRET } }));
    let calls = 0;
    const svc = new WebSocketService({
      url: gw.wsUrl, WebSocket, baseDelayMs: 50, maxDelayMs: 100, heartbeatMs: 0,
      getToken: () => {
        calls++;
        if (calls === 1) throw new Error('IdP unreachable');
        return Promise.resolve(mint('bo'));
      },
    });
    cleanups.push(() => svc.destroy());
    const errors: unknown[] = [];
    svc.on('client:token_error', (d) => { errors.push(d.error); });
    const rec = record(svc);
    svc.connect();
    await rec.waitFor('the greeting', () => rec.messages.length === 1);
    expect(errors).toHaveLength(1);
    expect(calls).toBe(2);
  }, 30000);
});
