// Driver of test-install.sh: pack, install into a fresh Vite app, build, and check it in
// headless Chromium against a real gateway node. Exits non-zero on the first failure.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import {
  freePort, launchBrowser, publish, startGateway, stop, trackProblems,
} from '../../../tests/browser/lib/harness.mjs';

const PKG_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const PKG = JSON.parse(fs.readFileSync(path.join(PKG_DIR, 'package.json'), 'utf8'));
// the app's own toolchain, pinned (npm's cache makes reruns fast)
const APP_DEPS = { react: '19.3.1', 'react-dom': '19.3.1' };
const APP_DEV_DEPS = {
  vite: '7.3.8', '@vitejs/plugin-react': '5.1.4', typescript: PKG.devDependencies.typescript,
  '@types/react': '19.3.0', '@types/react-dom': '19.3.0',
};

const log = (s) => console.log(`== ${s}`);
function run(cmd, args, cwd, env = {}) {
  execFileSync(cmd, args, { cwd, stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, ...env } });
}
const npm = (args, cwd, env) => run('npm', [...args, '--no-audit', '--no-fund', '--prefer-offline'], cwd, env);

const APP_FILES = {
  'index.html': `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>vite app</title></head>
<body><div id="root"></div><script type="module" src="/src/main.tsx"></script></body></html>
`,
  'vite.config.ts': `import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';
// as Next.js does for NEXT_PUBLIC_* variables: inline the gateway URL at build time
export default defineConfig({
  plugins: [react()],
  define: { 'process.env.NEXT_PUBLIC_WS_URL': JSON.stringify(process.env.NEXT_PUBLIC_WS_URL) },
});
`,
  'tsconfig.json': JSON.stringify({
    compilerOptions: {
      target: 'ES2020', module: 'ESNext', moduleResolution: 'Bundler', jsx: 'react-jsx',
      lib: ['ES2020', 'DOM'], strict: true, noEmit: true, skipLibCheck: false, types: [],
    },
    include: ['src'],
  }, null, 2),
  // TutorMax's dashboard reads these fields; the component is the README's migration, run
  'src/main.tsx': `import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { useWebSocket } from '@dashboard-gateway/client/react';

function Dashboard() {
  const { state, resolveAlert } = useWebSocket();
  const a = state.analytics;
  return (
    <main>
      <p data-testid="connection">{state.connected ? 'connected' : 'disconnected'}</p>
      <p data-testid="total-tutors">{a?.total_tutors ?? '-'}</p>
      <p data-testid="strong">{a?.performance_distribution?.Strong ?? '-'}</p>
      <p data-testid="last-update">{state.lastUpdate ?? 'never'}</p>
      <ul data-testid="alerts">
        {state.alerts.map((al) => (
          <li key={al.id}>
            {al.title}: {al.resolved ? 'resolved' : <button onClick={() => resolveAlert(al.id)}>Resolve</button>}
          </li>
        ))}
      </ul>
    </main>
  );
}

createRoot(document.getElementById('root')!).render(<StrictMode><Dashboard /></StrictMode>);
`,
};

function serve(dir, port) {
  const types = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css' };
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    let file = path.join(dir, path.normalize(url.pathname).replace(/^([/\\])+/, ''));
    if (!file.startsWith(dir) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) file = path.join(dir, 'index.html');
    res.writeHead(200, { 'content-type': types[path.extname(file)] || 'application/octet-stream' });
    res.end(fs.readFileSync(file));
  });
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve(server)));
}

async function main() {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'dashboard-client-install-'));
  const app = path.join(work, 'app');
  let gw;
  let browser;
  let server;
  try {
    log('npm pack (prepack builds dist/)');
    npm(['pack', '--pack-destination', work, '--loglevel', 'warn'], PKG_DIR);
    const tarball = path.join(work, `dashboard-gateway-client-${PKG.version}.tgz`);
    assert.ok(fs.existsSync(tarball), `${tarball} was made`);

    log(`a fresh Vite + React app in ${app}`);
    fs.mkdirSync(path.join(app, 'src'), { recursive: true });
    fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({
      name: 'vite-app', private: true, version: '0.0.0', type: 'module',
      dependencies: APP_DEPS, devDependencies: APP_DEV_DEPS,
    }, null, 2));
    for (const [file, text] of Object.entries(APP_FILES)) fs.writeFileSync(path.join(app, file), text);
    npm(['install'], app);

    log('install the package the README way: npm install <the tarball>');
    npm(['install', tarball], app);
    const installed = path.join(app, 'node_modules', '@dashboard-gateway', 'client');
    assert.ok(fs.existsSync(path.join(installed, 'dist', 'react.js')), 'dist/ came in the tarball');
    assert.ok(!fs.existsSync(path.join(installed, 'node_modules')), 'the package brought no node_modules');
    assert.ok(!fs.lstatSync(installed).isSymbolicLink(), 'a copy, not a link to the checkout');
    const reacts = execFileSync('find', ['node_modules', '-name', 'package.json', '-path', '*/react/package.json', '-not', '-path', '*/@types/*'],
      { cwd: app, encoding: 'utf8' }).trim().split('\n').filter(Boolean);
    assert.deepEqual(reacts, ['node_modules/react/package.json'], 'exactly one React in the app');

    gw = await startGateway();
    const wsUrl = `ws://127.0.0.1:${gw.port}/ws/dashboard`;
    log(`type-check and build (NEXT_PUBLIC_WS_URL=${wsUrl})`);
    run(path.join(app, 'node_modules', '.bin', 'tsc'), ['-p', 'tsconfig.json'], app);
    run(path.join(app, 'node_modules', '.bin', 'vite'), ['build', '--logLevel', 'warn'], app, { NEXT_PUBLIC_WS_URL: wsUrl });

    const port = await freePort();
    server = await serve(path.join(app, 'dist'), port);
    log(`headless Chromium: http://127.0.0.1:${port}/ against the node on :${gw.port}`);
    browser = await launchBrowser();
    const page = await browser.context.newPage();
    const problems = trackProblems(page);
    await page.goto(`http://127.0.0.1:${port}/`);
    const text = (sel, want, timeout = 10000) => page.waitForFunction(
      ([s, w]) => document.querySelector(s)?.textContent === w, [sel, want], { timeout, polling: 50 });
    await text('[data-testid="connection"]', 'connected', 15000);

    await publish(gw, 'analytics_update', {
      total_tutors: 42, active_tutors: 37,
      performance_distribution: { 'Needs Support': 3, Developing: 9, Strong: 17, Exemplary: 13 },
      avg_rating: 4.5, avg_engagement_score: 0.8, total_sessions_7day: 300, total_sessions_30day: 1200,
      alerts_count: { critical: 1, warning: 0, info: 0 },
    });
    await text('[data-testid="total-tutors"]', '42');
    await text('[data-testid="strong"]', '17');
    await publish(gw, 'alert', { id: 'al-1', alert_type: 'critical', title: 'No-show spike', resolved: false });
    await text('[data-testid="alerts"] li', 'No-show spike: Resolve');
    await page.click('[data-testid="alerts"] button');
    await text('[data-testid="alerts"] li', 'No-show spike: resolved');
    // StrictMode mounted the component twice: still exactly one dashboard on the node
    const status = await (await fetch(`${gw.base}/ws/status`)).json();
    assert.equal(status.local_connections, 1, 'one socket after StrictMode');
    assert.deepEqual(problems, [], 'no console errors (a second React would say "Invalid hook call")');
    log('ok: installed from the tarball, built by Vite, live in Chromium, one React');
  } finally {
    if (browser) await browser.close();
    if (server) server.close();
    await stop(gw);
    if (process.env.KEEP_APP) console.log(`kept ${work}`);
    else fs.rmSync(work, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
