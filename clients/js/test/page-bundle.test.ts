// The dashboard page served by the gateway runs this package's code: gateway/assets/ws-client.js
// is built from src/ (checked in, so the Rust build needs no npm). Fails when it is stale.
import fs from 'node:fs';
import vm from 'node:vm';
import { describe, expect, it } from 'vitest';
import { PAGE_BUNDLE, STALE_MESSAGE, buildPageBundle } from '../scripts/build.mjs';

describe('gateway/assets/ws-client.js', () => {
  it('is the build of clients/js/src, byte for byte', async () => {
    const fresh = Buffer.from(await buildPageBundle(), 'utf8');
    const checkedIn = fs.readFileSync(PAGE_BUNDLE);
    if (!fresh.equals(checkedIn)) expect.fail(STALE_MESSAGE);
    expect(STALE_MESSAGE).toContain('run `npm run build:page` in clients/js');
  });

  it('builds deterministically, with the generated-file header', async () => {
    const a = await buildPageBundle();
    const b = await buildPageBundle();
    expect(a).toBe(b);
    expect(a.split('\n')[1]).toContain('generated from clients/js — do not edit; run npm run build:page');
    expect(a).not.toMatch(/\/work\/|sourceMappingURL/);
  });

  it('exposes the global WebSocketService that dashboard.js uses, and nothing else', () => {
    const sandbox: Record<string, unknown> = { URLSearchParams };
    vm.createContext(sandbox);
    vm.runInContext(fs.readFileSync(PAGE_BUNDLE, 'utf8'), sandbox);
    expect(Object.keys(sandbox).sort()).toEqual(['URLSearchParams', 'WebSocketService']);
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const WSS = sandbox.WebSocketService as any;
    const s = new WSS({ location: { protocol: 'http:', host: 'h:1', search: '?token=t' }, types: 'alert' });
    for (const m of ['on', 'onStateChange', 'connect', 'retry', 'disconnect', 'destroy', 'send', 'buildUrl', 'backoffDelay']) {
      expect(typeof s[m], m).toBe('function');
    }
    expect(s.state).toBe('disconnected');
    expect(s.attempt).toBe(0);
    expect(s.lastId).toBeNull();
    expect(s.options.maxAttempts).toBe(10);
    expect(s.stats).toEqual({ received: 0, duplicates: 0, connects: 0, replayed: 0, recoveriesFailed: 0 });
    // the page's ?token= goes in the first frame, not in the socket's URL
    expect(s.buildUrl()).toBe('ws://h:1/ws/dashboard?auth=frame&types=alert&state=1'); // the keyed state by default
    expect(WSS.compareIds('2-0', '10-0')).toBe(-1);
  });
});
