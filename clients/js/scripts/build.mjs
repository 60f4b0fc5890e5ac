// Builds the package (dist/: ESM + .d.ts, via tsc) and the dashboard page's bundle
// (gateway/assets/ws-client.js: an IIFE exposing window.WebSocketService, via esbuild).
//
//   node scripts/build.mjs          both
//   node scripts/build.mjs dist     the npm package output only
//   node scripts/build.mjs page     the page bundle only (checked in: the Rust build needs no npm)
//   node scripts/build.mjs check    exit 1 when the checked-in page bundle is stale
//
// The page bundle is deterministic: pinned esbuild, no source maps, no paths or dates in it.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const PKG_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const PAGE_BUNDLE = path.resolve(PKG_DIR, '..', '..', 'gateway', 'assets', 'ws-client.js');
export const STALE_MESSAGE = 'gateway/assets/ws-client.js is stale: run `npm run build:page` in clients/js';

const BANNER = `/*
 * gateway/assets/ws-client.js: generated from clients/js — do not edit; run npm run build:page
 * (in clients/js). The source is clients/js/src/service.ts (and the modules it imports), the
 * same WebSocketService that the npm package @dashboard-gateway/client exports; here it is the
 * global window.WebSocketService used by dashboard.js.
 */`;

/** The page bundle's text, built in memory. */
export async function buildPageBundle() {
  const result = await esbuild.build({
    absWorkingDir: PKG_DIR,
    entryPoints: ['src/page.ts'],
    bundle: true,
    write: false,
    format: 'iife',
    platform: 'browser',
    target: ['es2019'],
    charset: 'utf8',
    legalComments: 'none',
    sourcemap: false,
    minify: false,
    banner: { js: BANNER },
    logLevel: 'silent',
  });
  if (result.outputFiles.length !== 1) throw new Error('expected exactly one output file');
  return result.outputFiles[0].text;
}

async function writePage() {
  const text = await buildPageBundle();
  fs.writeFileSync(PAGE_BUNDLE, text);
  console.log(`wrote ${path.relative(process.cwd(), PAGE_BUNDLE)} (${Buffer.byteLength(text)} bytes)`);
}

/** True when the checked-in bundle equals a fresh build, byte for byte. */
export async function pageIsFresh() {
  const fresh = Buffer.from(await buildPageBundle(), 'utf8');
  let current;
  try {
    current = fs.readFileSync(PAGE_BUNDLE);
  } catch {
    return false;
  }
  return fresh.equals(current);
}

function buildDist() {
  fs.rmSync(path.join(PKG_DIR, 'dist'), { recursive: true, force: true });
  const tsc = path.join(PKG_DIR, 'node_modules', 'typescript', 'bin', 'tsc');
  execFileSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: PKG_DIR, stdio: 'inherit' });
  console.log('wrote dist/ (ESM + .d.ts)');
}

async function main(mode) {
  switch (mode) {
    case 'dist':
      buildDist();
      break;
    case 'page':
      await writePage();
      break;
    case 'check':
      if (!(await pageIsFresh())) {
        console.error(STALE_MESSAGE);
        process.exit(1);
      }
      console.log('gateway/assets/ws-client.js is up to date with clients/js/src');
      break;
    case undefined:
    case 'all':
      buildDist();
      await writePage();
      break;
    default:
      console.error(`unknown mode ${mode}: dist | page | check`);
      process.exit(2);
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await main(process.argv[2]);
}
