/**
 * @dashboard-gateway/client: a typed, dependency-free client for the dashboard gateway's
 * `/ws/dashboard` WebSocket. The React hook lives in `@dashboard-gateway/client/react`.
 */
export {
  WebSocketService,
  STATES,
  compareIds,
  parseStreamId,
  isPong,
} from './service.js';
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
} from './service.js';
export type * from './types.js';
