/**
 * @dashboard-gateway/client: a typed, dependency-free client for the dashboard gateway's
 * `/ws/dashboard` WebSocket, falling back to Server-Sent Events (`/sse/dashboard`). The
 * React hook lives in `@dashboard-gateway/client/react`.
 */
export {
  WebSocketService,
  STATES,
  compareIds,
  parseStreamId,
  isPong,
  sseUrlOf,
} from './service.js';
export { SseParser } from './sse.js';
export type { SseEvent, SseHandlers } from './sse.js';
export type {
  WebSocketServiceOptions,
  ResolvedOptions,
  ServiceStats,
  StateHandler,
  Unsubscribe,
  WebSocketLike,
  WebSocketConstructor,
  Timers,
  LocationLike,
  FetchLike,
  FetchInit,
  FetchResponseLike,
  TransportOption,
} from './service.js';
export type * from './types.js';
