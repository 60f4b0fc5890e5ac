// The Server-Sent Events transport against a real gateway node (the in-process bus),
// started by the test: GET /sse/dashboard read with Node's fetch. A service on SSE gets the
// greeting and a published event with its id; a service in `auto` mode whose WebSocket
// always fails before it opens (as behind a proxy that strips Upgrade) falls back to SSE
// and receives what is published after the switch exactly once; with auth on, the token
// goes in the Authorization header, never in the URL.
import { createHmac } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  WebSocketService,
  type FetchLike,
  type WebSocketLike,
  type WebSocketServiceOptions,
} from '../src/index.js';
import { type Gateway, publish, startGateway, stop } from './helpers/processes.js';
import { record } from './helpers/recorder.js';

let gw: Gateway;
const services: WebSocketService[] = [];

beforeAll(async () => { gw = await startGateway(); });
afterEach(() => { services.splice(0).forEach((s) => s.destroy()); });
afterAll(async () => { await stop(gw); });

/** Node's fetch, recording each request's URL and headers. */
function recordingFetch() {
  const requests: { url: string; headers: Record<string, string> }[] = [];
  const fetchImpl: FetchLike = (url, init) => {
    requests.push({ url, headers: { ...init.headers } });
    return fetch(url, init);
  };
  return { requests, fetch: fetchImpl };
}

/** A WebSocket that always fails before it opens: an error, then close 1006. */
function refusingWebSocket(dialed: string[]) {
  return class Refused implements WebSocketLike {
    readyState = 0;
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    onopen: ((ev: any) => void) | null = null;
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    onmessage: ((ev: any) => void) | null = null;
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    onerror: ((ev: any) => void) | null = null;
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    onclose: ((ev: any) => void) | null = null;
    constructor(url: string) {
      dialed.push(url);
      setTimeout(() => {
        this.readyState = 3;
        this.onerror?.({ type: 'error' });
        this.onclose?.({ code: 1006, reason: '' });
      }, 5);
    }
    send(): void { throw new Error('not open'); }
    close(): void { this.readyState = 3; }
  };
}

// The live-only protocol (`state: false`); the state over SSE: state.wire.test.ts.
function start(opts: WebSocketServiceOptions, target: Gateway = gw) {
  const svc = new WebSocketService({ url: target.wsUrl, token: null, state: false, ...opts });
  services.push(svc);
  const rec = record(svc);
  const transports: (string | null)[] = [];
  svc.on('client:transport', (t) => { transports.push(t); });
  svc.connect();
  return { svc, rec, transports };
}

describe('Server-Sent Events against a real gateway', () => {
  it("transport: 'sse' gets the greeting and a published event with its id", async () => {
    const net = recordingFetch();
    const { svc, rec, transports } = start({ transport: 'sse', fetch: net.fetch });
    await rec.waitFor('connected', () => svc.state === 'connected');
    expect(svc.transport).toBe('sse');
    expect(transports).toEqual(['sse']);
    await rec.waitFor('the greeting', () => rec.messages.length === 1);
    expect(rec.messages[0].type).toBe('analytics_update');
    expect(rec.messages[0].timestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);

    const id = await publish(gw, 'alert', { alert_id: 'sse-1', severity: 'critical' });
    await rec.waitFor('the alert', () => rec.of('alert').length === 1);
    const alert = rec.of('alert')[0];
    expect(alert.id).toBe(id);
    expect(alert.data).toEqual({ alert_id: 'sse-1', severity: 'critical' });
    expect(svc.lastId).toBe(id);
    expect(svc.stats.duplicates).toBe(0);
    expect(rec.closes).toEqual([]);
    expect(net.requests.map((r) => r.url)).toEqual([`${gw.base}/sse/dashboard`]);
    svc.disconnect();
    expect(svc.transport).toBeNull();
  });

  it("auto: a WebSocket that fails before it opens falls back to SSE; an event published after the switch arrives once", async () => {
    const dialed: string[] = [];
    const net = recordingFetch();
    const { svc, rec, transports } = start({
      WebSocket: refusingWebSocket(dialed), fetch: net.fetch, baseDelayMs: 50, maxDelayMs: 200,
    });
    await rec.waitFor('connected over SSE', () => svc.state === 'connected');
    expect(svc.transport).toBe('sse');
    expect(transports).toEqual(['sse']);
    expect(dialed).toEqual([gw.wsUrl]);
    expect(rec.closes).toEqual([{ code: 1006, reason: '' }]);
    await rec.waitFor('the greeting', () => rec.messages.length === 1);

    const ids = [
      await publish(gw, 'alert', { alert_id: 'after-switch' }),
      await publish(gw, 'intervention', { intervention_id: 'i-after-switch' }),
    ];
    await rec.waitFor('both events', () => rec.messages.length === 3);
    await new Promise((r) => setTimeout(r, 200)); // nothing more comes
    expect(rec.messages.slice(1).map((m) => [m.type, m.id])).toEqual([['alert', ids[0]], ['intervention', ids[1]]]);
    expect(svc.stats.duplicates).toBe(0);
    expect(dialed).toHaveLength(1); // it stayed on SSE
    expect(net.requests).toHaveLength(1);
    svc.disconnect();
  });

  it('with auth on: the token goes in Authorization, never in the URL; a bad one is a 401 (4001)', async () => {
    const SECRET = 'sse-wire-secret';
    const b64url = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
    const head = `${b64url({ alg: 'HS256', typ: 'JWT' })}.${b64url({ sub: 'ana', exp: Math.floor(Date.now() / 1000) + 600 })}`;
    const token = `${head}.${createHmac('sha256', SECRET).update(head).digest('base64url')}`;
    const authed = await startGateway({ env: { AUTH_JWT_SECRET: SECRET } });
    try {
      const net = recordingFetch();
      const { svc, rec } = start({ transport: 'sse', fetch: net.fetch, token }, authed);
      await rec.waitFor('the greeting', () => rec.messages.length === 1);
      expect(svc.transport).toBe('sse');
      expect(net.requests[0].url).toBe(`${authed.base}/sse/dashboard`);
      expect(net.requests[0].url).not.toMatch(/token=|eyJ/);
      expect(net.requests[0].headers.Authorization).toBe(`Bearer ${token}`);
      svc.disconnect();

      const bad = start({ transport: 'sse', token: 'not-a-jwt', baseDelayMs: 1000, maxAttempts: 1 }, authed);
      await bad.rec.waitFor('the refusal', () => bad.rec.closes.length === 1);
      expect(bad.rec.closes[0]).toMatchObject({ code: 4001, status: 401 });
      expect(bad.svc.state).not.toBe('connected');
      bad.svc.disconnect();
    } finally {
      await stop(authed);
    }
  });
});
