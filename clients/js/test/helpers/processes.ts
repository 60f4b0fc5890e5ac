// Real processes for the wire tests: the gateway and publisher binaries built by
// `cargo build --workspace` (or GATEWAY_BIN / PUBLISHER_BIN / CARGO_TARGET_DIR), and a
// throwaway redis-server (REDIS_SERVER_BIN). Every child is killed when the worker exits.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = path.resolve(here, '..', '..', '..', '..');
const TARGET_DIR = process.env.CARGO_TARGET_DIR
  ? path.resolve(REPO_ROOT, process.env.CARGO_TARGET_DIR)
  : path.join(REPO_ROOT, 'target');
export const GATEWAY_BIN = process.env.GATEWAY_BIN || path.join(TARGET_DIR, 'debug', 'gateway');
export const PUBLISHER_BIN = process.env.PUBLISHER_BIN || path.join(TARGET_DIR, 'debug', 'publisher');
export const REDIS_BIN = process.env.REDIS_SERVER_BIN || 'redis-server';
export const API_KEY = 'js-test-publish-key-0001';

const GATEWAY_VARS = ['BIND_ADDR', 'REDIS_URL', 'REDIS_CLUSTER_NODES', 'NODE_ID', 'CHANNEL_PREFIX',
  'CORS_ORIGINS', 'PUBLISH_API_KEY', 'AUTH_JWT_SECRET', 'DEMO', 'DEMO_RATE', 'RUST_LOG',
  'AUTH_JWT_PUBLIC_KEY_FILE', 'AUTH_JWKS_URL', 'AUTH_JWT_AUDIENCE', 'AUTH_JWT_ISSUER', 'AUTH_JWT_LEEWAY_SECS',
  'MAX_CONNECTIONS_PER_USER'];

export interface Child extends ChildProcess {
  label: string;
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}
export interface Gateway extends Child { port: number; base: string; wsUrl: string }
export interface Redis extends Child { port: number; url: string }

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of live) {
    try { c.kill('SIGKILL'); } catch { /* gone */ }
  }
});

export function requireBinary(file: string, what: string): string {
  if (!fs.existsSync(file)) {
    throw new Error(`${what} binary not found at ${file}; build it first with ` +
      '`cargo build --workspace` (or set CARGO_TARGET_DIR / GATEWAY_BIN / PUBLISHER_BIN)');
  }
  return file;
}

/** A free TCP port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

function startChild(label: string, file: string, args: string[], env: NodeJS.ProcessEnv): Child {
  const child = spawn(file, args, { env, stdio: ['ignore', 'pipe', 'pipe'] }) as Child;
  live.add(child);
  let log = '';
  const keep = (chunk: Buffer) => {
    log += chunk.toString();
    if (log.length > 65536) log = log.slice(-65536);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  child.exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => { live.delete(child); resolve({ code, signal }); });
    child.on('error', (err) => { live.delete(child); keep(Buffer.from(`spawn error: ${err.message}\n`)); resolve({ code: null, signal: null }); });
  });
  child.label = label;
  child.output = () => log;
  return child;
}

/** Send `signal`, wait for the exit; SIGKILL after `timeoutMs`. */
export async function stop(child: Child | undefined, signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 15000) {
  if (!child) return undefined;
  if (child.exitCode !== null || child.signalCode !== null) return child.exited;
  try { child.kill(signal); } catch { /* gone */ }
  let timer: NodeJS.Timeout | undefined;
  const res = await Promise.race([
    child.exited,
    new Promise<null>((resolve) => { timer = setTimeout(() => resolve(null), timeoutMs); }),
  ]);
  clearTimeout(timer);
  if (res) return res;
  try { child.kill('SIGKILL'); } catch { /* gone */ }
  return child.exited;
}

/** Poll `fn` until it returns truthy; fails with `desc` (and a child's output) on timeout. */
export async function waitUntil(desc: string, fn: () => unknown | Promise<unknown>,
  { timeoutMs = 15000, intervalMs = 50, child }: { timeoutMs?: number; intervalMs?: number; child?: Child } = {}) {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  while (Date.now() < deadline) {
    if (child && (child.exitCode !== null || child.signalCode !== null)) {
      throw new Error(`${child.label} exited (code ${child.exitCode}, signal ${child.signalCode}) ` +
        `while waiting for ${desc}; its output:\n${child.output()}`);
    }
    try {
      if (await fn()) return;
    } catch (err) {
      lastErr = err;
    }
    await sleep(intervalMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${desc}` +
    (lastErr instanceof Error ? ` (last error: ${lastErr.message})` : '') +
    (child ? `; ${child.label} output:\n${child.output()}` : ''));
}

/** A throwaway redis-server on a free port, no persistence. */
export async function startRedis(): Promise<Redis> {
  const port = await freePort();
  const child = startChild('redis-server', REDIS_BIN,
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { ...process.env }) as Redis;
  await waitUntil(`redis on ${port}`, () => new Promise<boolean>((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.setTimeout(500);
    s.once('connect', () => s.write('PING\r\n'));
    s.once('data', (d) => { s.destroy(); resolve(d.toString().startsWith('+PONG')); });
    s.once('error', () => resolve(false));
    s.once('timeout', () => { s.destroy(); resolve(false); });
  }), { child });
  child.port = port;
  child.url = `redis://127.0.0.1:${port}`;
  return child;
}

/**
 * Start the gateway on `port` (a free one when omitted) and wait until /readyz is 200.
 * `redis`: the Redis bus; none = the in-process bus.
 */
export async function startGateway({ port, redis, env = {} }: { port?: number; redis?: Redis; env?: Record<string, string> } = {}): Promise<Gateway> {
  requireBinary(GATEWAY_BIN, 'gateway');
  const p = port || await freePort();
  const fullEnv: NodeJS.ProcessEnv = { ...process.env };
  for (const k of GATEWAY_VARS) delete fullEnv[k];
  Object.assign(fullEnv, {
    BIND_ADDR: `127.0.0.1:${p}`,
    PUBLISH_API_KEY: API_KEY,
    RUST_LOG: 'warn',
    ...(redis ? { REDIS_URL: redis.url } : {}),
    ...env,
  });
  const child = startChild(`gateway :${p}`, GATEWAY_BIN, [], fullEnv) as Gateway;
  child.port = p;
  child.base = `http://127.0.0.1:${p}`;
  child.wsUrl = `ws://127.0.0.1:${p}/ws/dashboard`;
  await waitUntil(`gateway ready on ${p}`, async () => (await fetch(`${child.base}/readyz`)).status === 200,
    { child, timeoutMs: 20000 });
  return child;
}

/** POST /api/publish (expects 202); resolves to the event id. */
export async function publish(gw: Gateway, type: string, data: unknown): Promise<string> {
  const r = await fetch(`${gw.base}/api/publish`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${API_KEY}` },
    body: JSON.stringify({ type, data }),
  });
  const text = await r.text();
  if (r.status !== 202) throw new Error(`POST /api/publish ${type} answered ${r.status}: ${text}`);
  return (JSON.parse(text) as { id: string }).id;
}

/** `publisher send --type T --data JSON` against `redis`; resolves to its stdout (the id). */
export function publisherSend(redis: Redis, type: string, data: unknown): Promise<string> {
  requireBinary(PUBLISHER_BIN, 'publisher');
  return new Promise((resolve, reject) => {
    execFile(PUBLISHER_BIN, ['send', '--type', type, '--data', JSON.stringify(data)], {
      env: { ...process.env, REDIS_URL: redis.url, RUST_LOG: 'warn' },
      timeout: 15000,
    }, (err, stdout, stderr) => {
      if (err) reject(new Error(`publisher send ${type} failed: ${err.message}\n${stdout}${stderr}`));
      else resolve(stdout.trim());
    });
  });
}

export { sleep };
