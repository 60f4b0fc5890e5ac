// @vitest-environment jsdom
// TutorMax's testing guide ("WebSocket Integration Testing Guide", React Testing Library
// Tests) run against a real gateway node: the test block below is the guide's, verbatim
// but for its import path. useWebSocket() is called with no arguments, so it connects
// where TutorMax's hook did: NEXT_PUBLIC_WS_URL (set here to the node this file starts).
//
// Its second test only simulates the disconnection in a comment ("... (mock WebSocket)"),
// so as written it passes as soon as the hook is not yet connected; the real disconnection
// is tested after the guide's block, against the same node.
import WebSocket from 'ws';
import { cleanup, renderHook as rtlRenderHook, waitFor as rtlWaitFor } from '@testing-library/react';
import { afterAll, beforeAll, describe as vDescribe, expect as vExpect, it as vIt } from 'vitest';
import { type Gateway, publish, startGateway, stop, waitUntil } from './helpers/processes.js';

let gw: Gateway;
const saved = { url: process.env.NEXT_PUBLIC_WS_URL, WebSocket: globalThis.WebSocket };
beforeAll(async () => {
  gw = await startGateway();
  process.env.NEXT_PUBLIC_WS_URL = gw.wsUrl;
  // jsdom's own WebSocket does not work inside Vitest's jsdom environment; a browser's
  // (or Node 22's) global WebSocket is what the hook uses, and `ws` stands in for it here
  (globalThis as { WebSocket: unknown }).WebSocket = WebSocket;
  // frames arrive from a real socket, outside act(): this is not an act() environment
  (globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = false;
});
afterAll(async () => {
  cleanup();
  if (saved.url === undefined) delete process.env.NEXT_PUBLIC_WS_URL;
  else process.env.NEXT_PUBLIC_WS_URL = saved.url;
  (globalThis as { WebSocket: unknown }).WebSocket = saved.WebSocket;
  await stop(gw);
});

// ---- TutorMax's guide, verbatim but for the import path ----------------------------------
// tests/websocket.test.tsx
import { renderHook, waitFor } from '@testing-library/react';
import { useWebSocket } from '@dashboard-gateway/client/react';

describe('useWebSocket', () => {
  it('should connect and receive initial data', async () => {
    const { result } = renderHook(() => useWebSocket());

    await waitFor(() => {
      expect(result.current.state.connected).toBe(true);
      expect(result.current.state.analytics).not.toBeNull();
    });
  });

  it('should handle disconnection', async () => {
    const { result } = renderHook(() => useWebSocket());

    // Simulate disconnection
    // ... (mock WebSocket)

    await waitFor(() => {
      expect(result.current.state.connected).toBe(false);
    });
  });
});
// ---- end of the guide's test -------------------------------------------------------------

async function localConnections(): Promise<number> {
  const r = await fetch(`${gw.base}/ws/status`);
  return ((await r.json()) as { local_connections: number }).local_connections;
}

vDescribe('the drop-in useWebSocket() against a real node', () => {
  vIt('renders TutorMax-shaped messages published through /api/publish, then closes on unmount', async () => {
    const { result, unmount } = rtlRenderHook(() => useWebSocket());
    await rtlWaitFor(() => vExpect(result.current.state.connected).toBe(true), { timeout: 10000 });

    await publish(gw, 'analytics_update', {
      total_tutors: 120, active_tutors: 97,
      performance_distribution: { 'Needs Support': 8, Developing: 30, Strong: 55, Exemplary: 27 },
      avg_rating: 4.4, avg_engagement_score: 0.81, total_sessions_7day: 640, total_sessions_30day: 2710,
      alerts_count: { critical: 2, warning: 5, info: 9 },
    });
    await publish(gw, 'metrics_update', { tutor_id: 't-1', window: '7day', avg_rating: 4.1, performance_tier: 'Strong' });
    await publish(gw, 'metrics_update', { tutor_id: 't-1', window: '30day', avg_rating: 4.3, performance_tier: 'Strong' });
    await publish(gw, 'metrics_update', { tutor_id: 't-1', window: '7day', avg_rating: 3.9, performance_tier: 'Developing' });
    await publish(gw, 'alert', { id: 'al-1', alert_type: 'critical', title: 'No-show spike', resolved: false });
    await publish(gw, 'alert', { id: 'al-1', alert_type: 'critical', title: 'No-show spike', resolved: false });
    await publish(gw, 'intervention', { id: 'task-1', title: 'Coaching call', status: 'pending' });
    await publish(gw, 'intervention', { id: 'task-1', title: 'Coaching call', status: 'in_progress' });
    await rtlWaitFor(() => vExpect(result.current.state.interventionTasks[0]?.status).toBe('in_progress'), { timeout: 10000 });

    const { state } = result.current;
    vExpect(state.analytics?.performance_distribution.Strong).toBe(55);
    vExpect(state.tutorMetrics.map((m) => [m.window, m.avg_rating])).toEqual([['7day', 3.9], ['30day', 4.3]]);
    vExpect(state.alerts.map((a) => a.id)).toEqual(['al-1']);
    vExpect(state.interventionTasks).toHaveLength(1);
    vExpect(Date.parse(state.lastUpdate ?? '')).toBeGreaterThan(Date.now() - 60_000);

    result.current.service!.send('ping'); // the pong is not analytics
    await new Promise((r) => setTimeout(r, 300));
    vExpect(result.current.state.analytics?.total_tutors).toBe(120);

    await waitUntil('the server counts the dashboard', async () => (await localConnections()) === 1);
    unmount();
    await waitUntil('the server sees the dashboard go', async () => (await localConnections()) === 0);
  });

  vIt('reports a real disconnection, and reconnects by itself when the node is back', async () => {
    const port = gw.port;
    const { result } = rtlRenderHook(() => useWebSocket({ baseDelayMs: 50, maxDelayMs: 200 }));
    await rtlWaitFor(() => vExpect(result.current.state.connected).toBe(true), { timeout: 10000 });
    await stop(gw);
    await rtlWaitFor(() => vExpect(result.current.state.connected).toBe(false), { timeout: 10000 });
    vExpect(result.current.status).toBe('reconnecting');
    gw = await startGateway({ port });
    await rtlWaitFor(() => vExpect(result.current.state.connected).toBe(true), { timeout: 15000 });
  });
});
