// Process and browser harness for the dashboard browser tests: free ports, a real
// redis-server, the real gateway and publisher binaries, and headless Chromium.
import { spawn, execFile } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = path.resolve(here, '..', '..', '..');
const TARGET_DIR = process.env.CARGO_TARGET_DIR
  ? path.resolve(REPO_ROOT, process.env.CARGO_TARGET_DIR)
  : path.join(REPO_ROOT, 'target');
export const GATEWAY_BIN = process.env.GATEWAY_BIN || path.join(TARGET_DIR, 'debug', 'gateway');
export const PUBLISHER_BIN = process.env.PUBLISHER_BIN || path.join(TARGET_DIR, 'debug', 'publisher');
export const CHROMIUM_BIN = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
export const REDIS_BIN = process.env.REDIS_SERVER_BIN || 'redis-server';
export const API_KEY = 'browser-test-publish-key';
const GATEWAY_VARS = ['BIND_ADDR', 'REDIS_URL', 'REDIS_CLUSTER_NODES', 'NODE_ID', 'CHANNEL_PREFIX',
  'CORS_ORIGINS', 'PUBLISH_API_KEY', 'AUTH_JWT_SECRET', 'DEMO', 'DEMO_RATE', 'RUST_LOG',
  'AUTH_JWT_PUBLIC_KEY_FILE', 'AUTH_JWKS_URL', 'AUTH_JWT_AUDIENCE', 'AUTH_JWT_ISSUER', 'AUTH_JWT_LEEWAY_SECS',
  'MAX_CONNECTIONS_PER_USER', 'STATE_KEYS', 'STATE_TOMBSTONES', 'STATE_MAX_KEYS', 'STATE_TTL_SECS'];

const live = new Set(); // every child we started, killed on exit whatever happens

function killAllSync() {
  for (const child of live) {
    try { child.kill('SIGKILL'); } catch { /* already gone */ }
  }
}
process.on('exit', killAllSync);
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => { killAllSync(); process.exit(130); });
}

export function requireBinary(file, what) {
  if (!fs.existsSync(file)) {
    throw new Error(`${what} binary not found at ${file}; build it first with ` +
      '`cargo build -p gateway -p publisher` (or set CARGO_TARGET_DIR / GATEWAY_BIN / PUBLISHER_BIN)');
  }
  return file;
}

/** A free TCP port on 127.0.0.1 (bind port 0, read it, release it). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Spawn a long-running child; its output is kept (last 64 KiB) for failure messages. */
function startChild(name, file, args, env, { replaceEnv = false } = {}) {
  const child = spawn(file, args, {
    env: replaceEnv ? env : { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(child);
  let log = '';
  const keep = (chunk) => {
    log += chunk.toString();
    if (log.length > 65536) log = log.slice(-65536);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  child.exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      live.delete(child);
      resolve({ code, signal });
    });
    child.on('error', (err) => {
      live.delete(child);
      keep(`spawn error: ${err.message}\n`);
      resolve({ code: null, signal: null, error: err });
    });
  });
  child.label = name;
  child.output = () => log;
  return child;
}

/** Send `signal`, wait for the exit; SIGKILL after `timeoutMs`. */
export async function stop(child, signal = 'SIGTERM', timeoutMs = 15000) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return child && child.exited;
  try { child.kill(signal); } catch { /* gone */ }
  let timer;
  const res = await Promise.race([
    child.exited,
    new Promise((resolve) => { timer = setTimeout(() => resolve(null), timeoutMs); }),
  ]);
  clearTimeout(timer);
  if (res) return res;
  try { child.kill('SIGKILL'); } catch { /* gone */ }
  return child.exited;
}

async function waitFor(desc, fn, { timeoutMs = 15000, intervalMs = 100, child } = {}) {
  const deadline = Date.now() + timeoutMs;
  let lastErr;
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
    (lastErr ? ` (last error: ${lastErr.message})` : '') +
    (child ? `; ${child.label} output:\n${child.output()}` : ''));
}

/** A throwaway redis-server on a free port, no persistence. */
export async function startRedis() {
  const port = await freePort();
  const child = startChild('redis-server', REDIS_BIN,
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {});
  await waitFor(`redis on ${port}`, () => new Promise((resolve) => {
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
 * `redis`: a child from startRedis() for the Redis bus; none = in-process bus.
 */
export async function startGateway({ port, redis, env = {}, args = [] } = {}) {
  requireBinary(GATEWAY_BIN, 'gateway');
  port = port || await freePort();
  // start from the caller's environment minus every gateway setting, so nothing leaks in
  const fullEnv = { ...process.env };
  for (const k of GATEWAY_VARS) delete fullEnv[k];
  Object.assign(fullEnv, {
    BIND_ADDR: `127.0.0.1:${port}`,
    PUBLISH_API_KEY: API_KEY,
    RUST_LOG: 'warn',
    ...(redis ? { REDIS_URL: redis.url } : {}),
    ...env,
  });
  const child = startChild(`gateway :${port}`, GATEWAY_BIN, args, fullEnv, { replaceEnv: true });
  child.port = port;
  child.base = `http://127.0.0.1:${port}`;
  gatewayPorts.add(port);
  await waitFor(`gateway ready on ${port}`, async () => {
    const r = await fetch(`${child.base}/readyz`);
    return r.status === 200;
  }, { child, timeoutMs: 20000 });
  return child;
}

/** POST /api/publish; resolves to the response (expects 202). */
export async function publish(gateway, type, data) {
  const r = await fetch(`${gateway.base}/api/publish`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${API_KEY}` },
    body: JSON.stringify({ type, data }),
  });
  if (r.status !== 202) {
    throw new Error(`POST /api/publish ${type} answered ${r.status}: ${await r.text()}`);
  }
  return r;
}

/** `publisher send --type T --data JSON` against `redis`; resolves to stdout (the id). */
export function publisherSend(redis, type, data, env = {}) {
  requireBinary(PUBLISHER_BIN, 'publisher');
  return new Promise((resolve, reject) => {
    execFile(PUBLISHER_BIN, ['send', '--type', type, '--data', JSON.stringify(data)], {
      env: { ...process.env, REDIS_URL: redis.url, RUST_LOG: 'warn', ...env },
      timeout: 15000,
    }, (err, stdout, stderr) => {
      if (err) reject(new Error(`publisher send ${type} failed: ${err.message}\n${stdout}${stderr}`));
      else resolve(stdout.trim());
    });
  });
}

// The page's assets are compiled into the gateway binary (include_str!). A prebuilt binary
// older than gateway/assets/ serves yesterday's page; then the browser is given the files
// from the checkout instead (same status and headers from the gateway, the body from disk),
// so the tests check the page in this tree. A binary built from this tree serves exactly
// these files and nothing is substituted. Routes the binary does not serve stay as they are,
// and so does every other server (only ports of gateways started here are looked at).
const ASSET_DIR = path.join(REPO_ROOT, 'gateway', 'assets');
const PAGE_FILES = {
  '/': 'index.html', '/dashboard': 'index.html', '/assets/dashboard.css': 'dashboard.css',
  '/assets/dashboard.js': 'dashboard.js', '/assets/ws-client.js': 'ws-client.js',
};
const substituted = new Set();
const gatewayPorts = new Set();

async function serveCheckoutAssets(context) {
  const isGatewayPage = (url) => url.hostname === '127.0.0.1' && gatewayPorts.has(Number(url.port)) &&
    PAGE_FILES[url.pathname] !== undefined;
  await context.route(isGatewayPage, async (route) => {
    const response = await route.fetch();
    const file = PAGE_FILES[new URL(route.request().url()).pathname];
    const onDisk = fs.readFileSync(path.join(ASSET_DIR, file));
    if (response.status() !== 200 || onDisk.equals(await response.body())) {
      await route.fulfill({ response });
      return;
    }
    if (!substituted.has(file)) {
      substituted.add(file);
      console.error(`harness: the gateway binary serves an older ${file} than gateway/assets/; ` +
        'the tests use the checkout\'s file (rebuild the gateway to test its embedded copy)');
    }
    await route.fulfill({ response, body: onDisk });
  });
}

/** Headless Chromium with a fresh profile; `close()` also removes the profile. */
export async function launchBrowser() {
  if (!fs.existsSync(CHROMIUM_BIN)) {
    throw new Error(`Chromium not found at ${CHROMIUM_BIN} (apt-get install -y chromium, or set CHROMIUM_BIN)`);
  }
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dash-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM_BIN,
    headless: true,
    viewport: { width: 1366, height: 768 },
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--disable-dev-shm-usage',
      // a document fulfilled by serveCheckoutAssets has no IP address space, so Chromium's
      // Local Network Access checks would block its WebSocket to 127.0.0.1
      '--disable-features=LocalNetworkAccessChecks',
    ],
  });
  await serveCheckoutAssets(context);
  const close = async () => {
    try { await context.close(); } finally {
      fs.rmSync(userDataDir, { recursive: true, force: true });
    }
  };
  return { context, close };
}

/**
 * Record console errors, uncaught page errors and HTTP errors of `page`. `ignore`:
 * regexps of console messages / URLs a test provokes on purpose (e.g. failed
 * WebSocket handshakes while the gateway is down). Returns the live array.
 */
export function trackProblems(page, ignore = []) {
  const problems = [];
  const ignored = (text) => ignore.some((re) => re.test(text));
  page.on('console', (m) => {
    if (m.type() === 'error' && !ignored(m.text())) problems.push(`console.error: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  page.on('requestfailed', (r) => {
    if (!ignored(r.url())) problems.push(`request failed: ${r.url()} (${r.failure()?.errorText})`);
  });
  page.on('response', (r) => {
    if (r.status() >= 400 && !ignored(r.url())) problems.push(`HTTP ${r.status()} for ${r.url()}`);
  });
  return problems;
}

export const sel = {
  indicator: '[data-testid="connection-indicator"]',
  totalTutors: '[data-testid="total-tutors"]',
  alertBadge: '[data-testid="alert-badge"]',
  queue: '[data-testid="intervention-queue"]',
  retry: '[data-testid="retry-button"]',
};

/** Wait until the indicator's data-status is `status`. */
export async function waitForStatus(page, status, timeoutMs = 15000) {
  await page.waitForFunction(
    ([s, want]) => document.querySelector(s)?.getAttribute('data-status') === want,
    [sel.indicator, status], { timeout: timeoutMs, polling: 50 });
}

/** Wait until the text of `selector` is `text`. */
export async function waitForText(page, selector, text, timeoutMs = 10000) {
  try {
    await page.waitForFunction(
      ([s, want]) => document.querySelector(s)?.textContent.trim() === want,
      [selector, text], { timeout: timeoutMs, polling: 50 });
  } catch (err) {
    const got = await page.locator(selector).first().textContent().catch(() => '<missing>');
    throw new Error(`${selector}: expected text ${JSON.stringify(text)}, got ${JSON.stringify(got)}`);
  }
}

/** Wait until `selector` has exactly `n` element children. */
export async function waitForChildren(page, selector, n, timeoutMs = 10000) {
  try {
    await page.waitForFunction(
      ([s, want]) => document.querySelector(s)?.children.length === want,
      [selector, n], { timeout: timeoutMs, polling: 50 });
  } catch (err) {
    const got = await page.evaluate((s) => document.querySelector(s)?.children.length, selector);
    throw new Error(`${selector}: expected ${n} children, got ${got}`);
  }
}

export { sleep };
