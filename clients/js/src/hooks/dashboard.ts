/**
 * useWebSocket(): a drop-in for TutorMax's `hooks/useWebSocket.ts`.
 *
 *   const { state, resolveAlert, updateInterventionStatus } = useWebSocket();
 *   state.connected; state.analytics; state.tutorMetrics; state.alerts;
 *   state.interventionTasks; state.lastUpdate;
 *
 * With no arguments it connects to `process.env.NEXT_PUBLIC_WS_URL`, else
 * `ws://localhost:8000/ws/dashboard`, as TutorMax's hook did; options override the URL
 * and everything else. Unlike TutorMax's hook it resumes with `?since=` after a drop (so
 * nothing is missed), backs off with full jitter, sends heartbeats, never takes a pong for
 * analytics, and leaves no socket or timer behind on unmount. It opens on the gateway's
 * keyed state (`state: true`, the default): the current metrics, alerts and tasks arrive
 * at once, from the same position as the live stream, so no REST prefetch is needed; a
 * tombstone (`removed: true`) or an event's `evicted` keys remove their entries.
 */
import { useCallback, useReducer } from 'react';
import { useConnection, type Connection, type ConnectionOptions } from './connection.js';
import { EMPTY_DASHBOARD, dashboardReducer, type DashboardData } from './dashboard-state.js';
import type {
  DashboardAlert,
  InterventionTask,
  PerformanceAnalytics,
  ServerMessage,
  TutorMetrics,
} from '../types.js';

/** Where `useWebSocket()` connects when no `url` (or `path`) is given. */
export const DEFAULT_WS_URL = 'ws://localhost:8000/ws/dashboard';

// `process` may not exist (a browser bundle without Node globals). Written out in full so
// that bundlers which inline `process.env.NEXT_PUBLIC_WS_URL` (Next.js, or Vite's `define`)
// replace it; the try/catch covers bundles where nothing was inlined and there is no process.
declare const process: { env: Record<string, string | undefined> };

function envUrl(): string | undefined {
  try {
    return process.env.NEXT_PUBLIC_WS_URL || undefined;
  } catch {
    return undefined;
  }
}

/** The URL `useWebSocket()` uses without options: NEXT_PUBLIC_WS_URL, else DEFAULT_WS_URL. */
export function defaultUrl(): string {
  return envUrl() || DEFAULT_WS_URL;
}

export interface UseWebSocketOptions extends ConnectionOptions {
  /** How many alerts and intervention tasks are kept (the oldest go first). Default 1000. */
  maxItems?: number;
}

/** `state` of the drop-in: the fields TutorMax's dashboard reads. */
export interface DashboardState<
  M = TutorMetrics,
  A = DashboardAlert,
  T = InterventionTask,
  N = PerformanceAnalytics,
> extends DashboardData<M, A, T, N> {
  /** True while the socket is open. */
  connected: boolean;
}

export interface UseWebSocketResult<M = TutorMetrics, A = DashboardAlert, T = InterventionTask, N = PerformanceAnalytics> {
  state: DashboardState<M, A, T, N>;
  /** Mark the alert with this `id` resolved (`resolved: true`), locally. */
  resolveAlert: (alertId: string) => void;
  /** Set the status of the task with this `id`, locally (a later message with that id replaces it). */
  updateInterventionStatus: (taskId: string, status: string) => void;
  /** `connecting` | `connected` | `reconnecting` | `disconnected` (finer than `state.connected`). */
  status: Connection['status'];
  /** Where the keyed state stands: `loading` until it came (`complete`); `off` with `state: false`. */
  statePhase: Connection['statePhase'];
  /** Reconnection attempts since the last healthy connection ("Reconnecting (3/10)"). */
  attempt: number;
  /** The live transport: `websocket`, `sse` (the fallback through proxies that block WebSockets) or null when not connected. */
  transport: Connection['transport'];
  /** Reconnect now (after giving up, or to skip the backoff wait). */
  retry: () => void;
  /** The underlying WebSocketService (null before the effect ran or while `enabled` is false). */
  service: Connection['service'];
}

/**
 * TutorMax's `useWebSocket()`, on this gateway. Element types default to TutorMax's data
 * shapes; pass your own as type arguments (`useWebSocket<MyMetrics, MyAlert, MyTask, MyAnalytics>()`).
 */
export function useWebSocket<M = TutorMetrics, A = DashboardAlert, T = InterventionTask, N = PerformanceAnalytics>(
  options: UseWebSocketOptions = {},
): UseWebSocketResult<M, A, T, N> {
  const [data, dispatch] = useReducer(dashboardReducer, EMPTY_DASHBOARD);
  const max = Math.max(1, options.maxItems ?? 1000);
  const url = options.url || (options.path ? undefined : defaultUrl());
  const conn = useConnection(
    { ...options, url },
    (msg: ServerMessage) => dispatch({ kind: 'message', msg, max }),
    (st) => dispatch({ kind: 'state', events: st.events, max }), // one render for the whole state
  );
  const resolveAlert = useCallback((id: string) => dispatch({ kind: 'resolveAlert', id: String(id) }), []);
  const updateInterventionStatus = useCallback(
    (id: string, status: string) => dispatch({ kind: 'interventionStatus', id: String(id), status }),
    [],
  );
  const state = {
    connected: conn.status === 'connected',
    analytics: data.analytics,
    tutorMetrics: data.tutorMetrics,
    alerts: data.alerts,
    interventionTasks: data.interventionTasks,
    lastUpdate: data.lastUpdate,
  } as unknown as DashboardState<M, A, T, N>;
  return {
    state,
    resolveAlert,
    updateInterventionStatus,
    status: conn.status,
    statePhase: conn.statePhase,
    attempt: conn.attempt,
    transport: conn.transport,
    retry: conn.retry,
    service: conn.service,
  };
}
