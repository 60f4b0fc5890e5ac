// A real WebSocket server that greets every client, then closes it with 1013 ("busy, try
// again later"), as a node does when it cannot serve a resume. A greeting is no proof that
// the connection works: the client must back off further on every attempt, not reconnect
// at its base delay forever.
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { WebSocketService } from '../src/index.js';
import { sleep } from './helpers/processes.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

/** A server on a free port that greets and then closes every connection with `code`. */
async function greetThenClose(code: number) {
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise<void>((resolve) => server.once('listening', () => resolve()));
  const connectedAt: number[] = [];
  server.on('connection', (socket) => {
    connectedAt.push(Date.now());
    socket.send(JSON.stringify({ type: 'analytics_update', data: {}, timestamp: new Date().toISOString() }));
    setTimeout(() => socket.close(code, 'busy; reconnect with ?since= shortly'), 5);
  });
  cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const { port } = server.address() as { port: number };
  return { url: `ws://127.0.0.1:${port}/ws/dashboard`, connectedAt };
}

describe('a server that greets then closes 1013', () => {
  it('is retried with a growing backoff, not in a loop at the base delay', async () => {
    const server = await greetThenClose(1013);
    const svc = new WebSocketService({
      url: server.url, WebSocket, baseDelayMs: 40, maxDelayMs: 10_000, heartbeatMs: 0,
      random: () => 1, // the full ceiling every time: delays 40, 80, 160, 320, 640, 1280 ms
    });
    cleanups.push(() => svc.destroy());
    const closes: (number | undefined)[] = [];
    svc.on('client:close', (d) => { closes.push(d.code); });
    svc.connect();
    await sleep(1800);
    svc.destroy();

    // 0 + 40 + 80 + 160 + 320 + 640 = 1240 ms to the sixth connection, 2520 ms to the
    // seventh; a client that took the greeting as proof reconnects every ~40 ms (~40 times).
    expect(server.connectedAt.length).toBeGreaterThanOrEqual(4);
    expect(server.connectedAt.length).toBeLessThanOrEqual(7);
    expect(closes.every((c) => c === 1013)).toBe(true);
    const gaps = server.connectedAt.slice(1).map((t, i) => t - server.connectedAt[i]);
    for (let i = 1; i < gaps.length; i++) {
      expect(gaps[i], `gap ${i} after ${gaps[i - 1]} ms`).toBeGreaterThan(gaps[i - 1]);
    }
    expect(svc.attempt).toBeGreaterThanOrEqual(3);
  }, 20000);
});
