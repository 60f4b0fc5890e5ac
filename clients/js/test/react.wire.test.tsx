// @vitest-environment jsdom
// useDashboardStream() against a real gateway node: events published through POST /api/publish
// become React state, and unmounting closes the socket (the server sees it go).
// jsdom's global WebSocket (undici's) does not work inside Vitest's jsdom environment
// (its events are not jsdom's Event), so the `ws` package is injected, as in Node.
import WebSocket from 'ws';
import { cleanup, renderHook, waitFor } from '@testing-library/react';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { useDashboardStream } from '../src/react.js';
import { type Gateway, publish, startGateway, stop, waitUntil } from './helpers/processes.js';

let gw: Gateway;
beforeAll(async () => {
  gw = await startGateway();
  // frames arrive from a real socket, outside act(): this is not an act() environment
  (globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = false;
});
afterAll(async () => { await stop(gw); });
afterEach(() => cleanup());

async function localConnections(): Promise<number> {
  const r = await fetch(`${gw.base}/ws/status`);
  return ((await r.json()) as { local_connections: number }).local_connections;
}

describe('useDashboardStream against a real gateway', () => {
  it('renders live state, then closes the socket on unmount', async () => {
    const { result, unmount } = renderHook(() => useDashboardStream({ url: gw.wsUrl, WebSocket }));
    await waitFor(() => expect(result.current.state).toBe('connected'), { timeout: 10000 });
    await waitFor(() => expect(result.current.analytics).not.toBeNull());

    await publish(gw, 'analytics_update', { total_tutors: 7, active_tutors: 5 });
    await publish(gw, 'alert', { alert_id: 'a-1', severity: 'critical', message: 'queue over SLA' });
    await publish(gw, 'intervention', { intervention_id: 'i-1', action: 'coach_check_in' });
    await publish(gw, 'metrics_update', { tutor_id: 't-9', active_sessions: 3 });
    await waitFor(() => expect(result.current.metrics['t-9']).toBeDefined(), { timeout: 10000 });

    expect(result.current.analytics).toEqual({ total_tutors: 7, active_tutors: 5 });
    expect(result.current.alerts.map((a) => a.data.message)).toEqual(['queue over SLA']);
    expect(result.current.interventions.map((i) => i.data.action)).toEqual(['coach_check_in']);
    expect(result.current.metrics['t-9'].active_sessions).toBe(3);
    await waitUntil('the server counts the dashboard', async () => (await localConnections()) === 1);

    unmount();
    await waitUntil('the server sees the dashboard go', async () => (await localConnections()) === 0);
  });
});
