'use client';
/**
 * @dashboard-gateway/client/react: React hooks over the gateway's live stream.
 *
 *  - `useWebSocket()`: a drop-in for TutorMax's `hooks/useWebSocket.ts`
 *    (`{ state: { connected, analytics, tutorMetrics, alerts, interventionTasks, lastUpdate },
 *    resolveAlert, updateInterventionStatus, ... }`).
 *  - `useDashboardStream(options)`: the same stream as envelopes (`{ state, analytics,
 *    alerts, interventions, metrics, recovery, ... }`).
 *
 * Each mounted component owns one WebSocketService, created in an effect and destroyed on
 * unmount: no socket, timer or listener outlives it.
 */
export { useWebSocket, defaultUrl, DEFAULT_WS_URL } from './hooks/dashboard.js';
export type { UseWebSocketOptions, UseWebSocketResult, DashboardState } from './hooks/dashboard.js';
export { useDashboardStream } from './hooks/stream.js';
export type { UseDashboardStreamOptions, UseDashboardStreamResult, LiveState } from './hooks/stream.js';
export type { ConnectionOptions } from './hooks/connection.js';
export type { DashboardData } from './hooks/dashboard-state.js';
export { WebSocketService } from './service.js';
export type * from './types.js';
