/**
 * @dashboard-gateway/client: a typed, dependency-free client for the dashboard gateway's
 * `/ws/dashboard` WebSocket, falling back to Server-Sent Events (`/sse/dashboard`). The
 * React hook lives in `@dashboard-gateway/client/react`.
 */
export { WebSocketService, STATES } from './service.js';
export { compareIds, parseStreamId, isPong } from './ids.js';
export { sseUrlOf } from './http.js';
export { SseParser } from './sse.js';
export type { SseEvent, SseHandlers } from './sse.js';
export type { ServiceStats, Unsubscribe } from './service.js';
export type {
  WebSocketServiceOptions,
  ResolvedOptions,
  StateHandler,
  WebSocketLike,
  WebSocketConstructor,
  Timers,
  LocationLike,
  FetchLike,
  FetchInit,
  FetchResponseLike,
  TransportOption,
} from './options.js';
export type * from './types.js';
