// @vitest-environment jsdom
// The hooks report the live transport (`transport`: websocket | sse | null), and the SSE
// fallback behaves under React as it does alone: the same state, no request left after
// unmount.
import { act, cleanup, renderHook } from '@testing-library/react';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { useDashboardStream, useWebSocket } from '../src/react.js';
import { FakeWebSocket, env } from './helpers/fake-ws.js';
import { FakeFetch, flush, sse } from './helpers/fake-fetch.js';

const URL = 'ws://gw.test/ws/dashboard';
let net: FakeFetch;

beforeEach(() => {
  FakeWebSocket.reset();
  net = new FakeFetch();
  vi.useFakeTimers();
  vi.stubGlobal('fetch', () => Promise.reject(new Error('the real fetch was called')));
});
afterEach(() => {
  cleanup();
  vi.useRealTimers();
});

describe('transport in the hooks', () => {
  it('useWebSocket(): websocket while the socket is live, null when it drops, sse after the fallback', async () => {
    vi.spyOn(Math, 'random').mockReturnValue(0);
    const { result, unmount } = renderHook(() => useWebSocket({ url: URL, WebSocket: FakeWebSocket, fetch: net.fetch }));
    expect(result.current.transport).toBeNull();
    act(() => FakeWebSocket.last.open());
    expect(result.current.transport).toBe('websocket');
    expect(result.current.state.connected).toBe(true);
    act(() => FakeWebSocket.last.msg(env('analytics_update', { total_tutors: 1 }, '1-0')));
    act(() => FakeWebSocket.last.drop(1006));
    expect(result.current.transport).toBeNull();
    act(() => { vi.advanceTimersByTime(0); });
    act(() => FakeWebSocket.last.drop(1006)); // the retry fails before it opened: SSE
    act(() => { vi.advanceTimersByTime(0); });
    expect(net.last.url).toBe('http://gw.test/sse/dashboard?since=1-0&state=1');
    await act(() => flush());
    expect(result.current.transport).toBe('sse');
    expect(result.current.status).toBe('connected');
    net.last.push(sse(env('analytics_update', { total_tutors: 7 })));
    await act(() => flush());
    expect(result.current.state.analytics).toEqual({ total_tutors: 7 });
    // the shape TutorMax's page reads is unchanged; transport (and statePhase) are more fields
    expect(Object.keys(result.current).sort()).toEqual(
      ['attempt', 'resolveAlert', 'retry', 'service', 'state', 'statePhase', 'status', 'transport', 'updateInterventionStatus']);
    const req = net.last;
    unmount();
    expect(req.aborted).toBe(true);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("useDashboardStream({ transport: 'sse' }) never opens a socket", async () => {
    const { result } = renderHook(() => useDashboardStream({ url: URL, WebSocket: FakeWebSocket, fetch: net.fetch, transport: 'sse' }));
    await act(() => flush());
    expect(FakeWebSocket.sockets).toHaveLength(0);
    expect(result.current.state).toBe('connected');
    expect(result.current.transport).toBe('sse');
    net.last.push(sse(env('alert', { alert_id: 'a-1' }, '1-0')));
    await act(() => flush());
    expect(result.current.alerts.map((m) => m.id)).toEqual(['1-0']);
  });
});
