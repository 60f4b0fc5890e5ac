// @vitest-environment jsdom
// useDashboardStream() with React Testing Library: state from messages, and nothing left behind
// (socket, timer, window listener, subscriber) after unmount, option changes or StrictMode.
import { StrictMode, type ReactNode } from 'react';
import { act, cleanup, renderHook } from '@testing-library/react';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { useDashboardStream, type UseDashboardStreamOptions } from '../src/react.js';
import { WebSocketService } from '../src/index.js';
import { FakeWebSocket, env } from './helpers/fake-ws.js';

const URL = 'ws://gw.test/ws/dashboard';

let added: string[];
let removed: string[];

beforeEach(() => {
  FakeWebSocket.reset();
  vi.useFakeTimers();
  added = [];
  removed = [];
  const add = window.addEventListener.bind(window);
  const remove = window.removeEventListener.bind(window);
  vi.spyOn(window, 'addEventListener').mockImplementation((type, fn, o) => { added.push(type); add(type, fn, o); });
  vi.spyOn(window, 'removeEventListener').mockImplementation((type, fn, o) => { removed.push(type); remove(type, fn, o); });
});
afterEach(() => {
  cleanup();
  vi.useRealTimers();
});

function mount(options: UseDashboardStreamOptions = {}, wrapper?: (p: { children: ReactNode }) => ReactNode) {
  return renderHook((o: UseDashboardStreamOptions) => useDashboardStream(o), {
    initialProps: { url: URL, WebSocket: FakeWebSocket, ...options },
    wrapper,
  });
}

const open = () => FakeWebSocket.sockets.filter((s) => !s.closed);

describe('useDashboardStream', () => {
  it('exposes connection state, latest analytics, alerts, interventions and metrics', () => {
    const onMessage = vi.fn();
    const { result } = mount({ onMessage });
    expect(result.current.state).toBe('connecting');
    expect(result.current.service).toBeInstanceOf(WebSocketService);
    const ws = FakeWebSocket.last;
    act(() => ws.open());
    expect(result.current.state).toBe('connected');

    act(() => {
      ws.msg(env('analytics_update', {}, '0-0'));
      ws.msg(env('analytics_update', { total_tutors: 12 }, '1-0'));
      ws.msg(env('analytics_update', { pong: true })); // heartbeat answer: not analytics
      ws.msg(env('alert', { alert_id: 'a-1', severity: 'critical' }, '2-0'));
      ws.msg(env('alert', { alert_id: 'a-2', severity: 'info' }, '3-0'));
      ws.msg(env('alert', { alert_id: 'a-2', severity: 'info' }, '3-0')); // duplicate id
      ws.msg(env('intervention', { intervention_id: 'i-1', status: 'pending' }, '4-0'));
      ws.msg(env('intervention', { intervention_id: 'i-2', status: 'pending' }, '5-0'));
      ws.msg(env('intervention', { intervention_id: 'i-1', status: 'resolved' }, '6-0'));
      ws.msg(env('metrics_update', { tutor_id: 't-1', active_sessions: 2 }, '7-0'));
      ws.msg(env('metrics_update', { tutor_id: 't-2', active_sessions: 1 }, '8-0'));
      ws.msg(env('metrics_update', { tutor_id: 't-1', active_sessions: 3 }, '9-0'));
    });
    const r = result.current;
    expect(r.analytics).toEqual({ total_tutors: 12 });
    expect(r.alerts.map((m) => m.data.alert_id)).toEqual(['a-2', 'a-1']);
    expect(r.alerts[0].timestamp).toBe('2026-11-25T10:00:00.123Z');
    expect(r.interventions.map((m) => [m.data.intervention_id, m.data.status]))
      .toEqual([['i-1', 'resolved'], ['i-2', 'pending']]);
    expect(r.metrics).toEqual({ 't-1': { tutor_id: 't-1', active_sessions: 3 }, 't-2': { tutor_id: 't-2', active_sessions: 1 } });
    expect(r.lastMessage?.id).toBe('9-0');
    expect(onMessage).toHaveBeenCalledTimes(10); // 12 frames less the pong and the duplicate
  });

  it('keeps at most maxItems alerts and interventions', () => {
    const { result } = mount({ maxItems: 3 });
    const ws = FakeWebSocket.last;
    act(() => {
      ws.open();
      for (let i = 1; i <= 5; i++) ws.msg(env('alert', { alert_id: `a-${i}` }, `${i}-0`));
    });
    expect(result.current.alerts.map((m) => m.data.alert_id)).toEqual(['a-5', 'a-4', 'a-3']);
  });

  it('cleans up on unmount: socket closed, no timer, no window listener, no subscriber', () => {
    const { result, unmount } = mount();
    const svc = result.current.service!;
    const ws = FakeWebSocket.last;
    act(() => {
      ws.open();
      ws.msg(env('analytics_update', {}, '0-0'));
    });
    act(() => { vi.advanceTimersByTime(15000); }); // heartbeat ping out, pong deadline pending
    expect(ws.sent).toEqual(['ping']);
    expect(vi.getTimerCount()).toBeGreaterThan(0);
    expect(added).toEqual(['online']);

    unmount();
    expect(ws.closed?.code).toBe(1000);
    expect(ws.detached).toBe(true);
    expect(vi.getTimerCount()).toBe(0);
    expect(removed).toEqual(['online']);
    expect(svc.listenerCount).toBe(0);
    expect(svc.state).toBe('disconnected');
    vi.advanceTimersByTime(10 * 60_000);
    expect(FakeWebSocket.sockets).toHaveLength(1); // never reconnects after unmount
  });

  it('cleans up on unmount while waiting to reconnect', () => {
    const { result, unmount } = mount();
    act(() => FakeWebSocket.last.drop());
    expect(result.current.state).toBe('reconnecting');
    expect(result.current.attempt).toBe(1);
    expect(vi.getTimerCount()).toBe(1);
    unmount();
    expect(vi.getTimerCount()).toBe(0);
    expect(removed).toEqual(['online']);
    vi.advanceTimersByTime(60_000);
    expect(FakeWebSocket.sockets).toHaveLength(1);
  });

  it('StrictMode (mount, unmount, mount) leaves exactly one live socket, and none after unmount', () => {
    const { result, unmount } = mount({}, ({ children }) => <StrictMode>{children}</StrictMode>);
    expect(FakeWebSocket.sockets.length).toBeGreaterThanOrEqual(1);
    expect(open()).toHaveLength(1);
    act(() => open()[0].open());
    expect(result.current.state).toBe('connected');
    unmount();
    expect(open()).toHaveLength(0);
    expect(vi.getTimerCount()).toBe(0);
    expect(added.length).toBe(removed.length);
  });

  it('reconnects when a connection option changes, not when a callback does', () => {
    const { result, rerender } = mount({ types: ['alert'] });
    const first = FakeWebSocket.last;
    expect(first.url).toBe(`${URL}?types=alert&state=1`);
    act(() => first.open());
    rerender({ url: URL, WebSocket: FakeWebSocket, types: ['alert'], onMessage: () => undefined });
    expect(FakeWebSocket.sockets).toHaveLength(1);
    rerender({ url: URL, WebSocket: FakeWebSocket, types: ['alert', 'intervention'] });
    expect(first.closed?.code).toBe(1000);
    expect(FakeWebSocket.sockets).toHaveLength(2);
    expect(FakeWebSocket.last.url).toBe(`${URL}?types=alert,intervention&state=1`);
    expect(result.current.state).toBe('connecting');
    rerender({ url: URL, WebSocket: FakeWebSocket, types: ['alert', 'intervention'], enabled: false });
    expect(open()).toHaveLength(0);
    expect(result.current.state).toBe('disconnected');
    expect(result.current.service).toBeNull();
    expect(vi.getTimerCount()).toBe(0);
  });

  it('enabled: false never connects', () => {
    const { result } = mount({ enabled: false });
    expect(FakeWebSocket.sockets).toHaveLength(0);
    expect(result.current.state).toBe('disconnected');
  });

  it('gives up after 10 attempts; retry() starts over', () => {
    vi.spyOn(Math, 'random').mockReturnValue(0.5);
    // the WebSocket transport's backoff ('auto' would switch to SSE after a socket that never opened: sse.test.ts)
    const { result } = mount({ transport: 'websocket' });
    act(() => FakeWebSocket.last.drop());
    for (let i = 0; i < 10; i++) {
      act(() => { vi.advanceTimersByTime(30000); });
      act(() => FakeWebSocket.last.drop());
    }
    expect(result.current.state).toBe('disconnected');
    expect(FakeWebSocket.sockets).toHaveLength(11);
    expect(vi.getTimerCount()).toBe(0);
    act(() => result.current.retry());
    expect(FakeWebSocket.sockets).toHaveLength(12);
    act(() => FakeWebSocket.last.open());
    expect(result.current.state).toBe('connected');
  });

  it('reports recovery and calls onResync when the server could not replay', () => {
    const onResync = vi.fn();
    const { result } = mount({ onResync, since: '42-0' });
    const ws = FakeWebSocket.last;
    expect(ws.url).toBe(`${URL}?since=42-0&state=1`);
    act(() => {
      ws.open();
      ws.msg(env('recovery', { recovered: false, replayed: 0 }));
    });
    expect(result.current.recovery).toEqual({ recovered: false, replayed: 0 });
    expect(onResync).toHaveBeenCalledWith({ recovered: false, replayed: 0 });
  });
});

describe('WebSocketService in a window', () => {
  it('the browser coming back online skips the rest of the backoff wait', () => {
    vi.spyOn(Math, 'random').mockReturnValue(0.999);
    // the WebSocket transport's backoff ('auto' would switch to SSE after a socket that never opened: sse.test.ts)
    const s = new WebSocketService({ url: URL, WebSocket: FakeWebSocket, transport: 'websocket' });
    s.connect();
    expect(added).toEqual(['online']);
    FakeWebSocket.last.drop(); // attempt 1 would wait up to 499 ms
    vi.advanceTimersByTime(250);
    expect(FakeWebSocket.sockets).toHaveLength(1);
    window.dispatchEvent(new Event('online'));
    expect(FakeWebSocket.sockets).toHaveLength(2);
    s.disconnect();
    expect(removed).toEqual(['online']);
    expect(vi.getTimerCount()).toBe(0);
  });
});
