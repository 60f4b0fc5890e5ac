/**
 * useWebSocket(): the gateway's live stream as React state.
 *
 *   const { state, analytics, alerts, interventions, metrics } = useWebSocket({ url });
 *
 * One WebSocketService per mounted component, created in an effect (so it is safe under
 * server rendering and StrictMode) and destroyed on unmount or when a connection option
 * changes: no socket, timer or listener outlives the component.
 */
import { useCallback, useEffect, useReducer, useRef, useState } from 'react';
import { WebSocketService } from './service.js';
import type { WebSocketServiceOptions } from './service.js';
import type {
  AlertMessage,
  AnalyticsData,
  ConnectionState,
  Envelope,
  InterventionMessage,
  MetricsUpdateData,
  RecoveryData,
  ServerMessage,
} from './types.js';

export interface UseWebSocketOptions extends Omit<WebSocketServiceOptions, 'onStateChange'> {
  /** false: no connection (and any open one is closed). Default true. */
  enabled?: boolean;
  /** How many alerts and interventions are kept (newest first). Default 100. */
  maxItems?: number;
  /** Every server message (after dedup; pongs excluded). */
  onMessage?: (msg: ServerMessage) => void;
  /** The server could not replay what was missed (`recovered: false`): refetch your state. */
  onResync?: (data: RecoveryData) => void;
  /** Connection state changes. */
  onStateChange?: (state: ConnectionState, previous: ConnectionState) => void;
}

/** What `useWebSocket` tracks from the stream. */
export interface LiveState {
  /** `connecting` | `connected` | `reconnecting` | `disconnected`. */
  state: ConnectionState;
  /** Reconnection attempts made since the last healthy connection (for "Reconnecting (3/10)"). */
  attempt: number;
  /** The latest `analytics_update` snapshot (`{}` before anything was published); null before the first. */
  analytics: AnalyticsData | null;
  /** Alerts received, newest first (at most `maxItems`). */
  alerts: AlertMessage[];
  /**
   * Interventions received, newest first (at most `maxItems`). A message whose
   * `intervention_id` is already listed replaces that entry (a status change).
   */
  interventions: InterventionMessage[];
  /** The latest `metrics_update` of each tutor, by `tutor_id`. */
  metrics: Record<string, MetricsUpdateData>;
  /** The last server message of any type (pongs excluded). */
  lastMessage: ServerMessage | null;
  /** The last `recovery` frame's data (after a reconnection with `?since=`). */
  recovery: RecoveryData | null;
}

export interface UseWebSocketResult extends LiveState {
  /** The underlying service (null before the effect ran or while `enabled` is false). */
  service: WebSocketService | null;
  /** Reconnect now (after giving up, or to skip the backoff wait). */
  retry: () => void;
}


type Action =
  | { kind: 'state'; state: ConnectionState; attempt: number }
  | { kind: 'message'; msg: Envelope; max: number };

const INITIAL: LiveState = {
  state: 'disconnected',
  attempt: 0,
  analytics: null,
  alerts: [],
  interventions: [],
  metrics: {},
  lastMessage: null,
  recovery: null,
};

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function scalarKey(v: unknown): string | null {
  return typeof v === 'string' || typeof v === 'number' ? String(v) : null;
}

function reducer(s: LiveState, a: Action): LiveState {
  if (a.kind === 'state') {
    if (s.state === a.state && s.attempt === a.attempt) return s;
    return { ...s, state: a.state, attempt: a.attempt };
  }
  const msg = a.msg as ServerMessage;
  const next: LiveState = { ...s, lastMessage: msg };
  switch (msg.type) {
    case 'analytics_update':
      next.analytics = isObject(msg.data) ? (msg.data as AnalyticsData) : {};
      break;
    case 'alert':
      next.alerts = [msg as AlertMessage, ...s.alerts].slice(0, a.max);
      break;
    case 'intervention': {
      const key = isObject(msg.data) ? scalarKey(msg.data.intervention_id) : null;
      const rest = key == null
        ? s.interventions
        : s.interventions.filter((m) => !isObject(m.data) || scalarKey(m.data.intervention_id) !== key);
      next.interventions = [msg as InterventionMessage, ...rest].slice(0, a.max);
      break;
    }
    case 'metrics_update': {
      if (isObject(msg.data)) {
        const key = scalarKey(msg.data.tutor_id) ?? scalarKey(msg.data.name) ?? '';
        next.metrics = { ...s.metrics, [key]: msg.data as MetricsUpdateData };
      }
      break;
    }
    case 'recovery':
      if (isObject(msg.data)) next.recovery = msg.data as RecoveryData;
      break;
    default:
      break;
  }
  return next;
}

/**
 * Connect to the gateway while the component is mounted and return its live state.
 * Options that shape the connection (url, path, token, types, backoff, heartbeat, the
 * WebSocket implementation) reconnect when they change; callbacks may change freely.
 */
export function useWebSocket(options: UseWebSocketOptions = {}): UseWebSocketResult {
  const [live, dispatch] = useReducer(reducer, INITIAL);
  const [service, setService] = useState<WebSocketService | null>(null);
  const latest = useRef(options);
  latest.current = options;

  const enabled = options.enabled !== false;
  const types = Array.isArray(options.types) ? options.types.join(',') : options.types ?? null;
  const connectionKey = JSON.stringify([
    options.url ?? null,
    options.path ?? null,
    options.token === undefined ? '\u0000page' : options.token,
    types,
    options.baseDelayMs ?? null,
    options.maxDelayMs ?? null,
    options.maxAttempts ?? null,
    options.heartbeatMs ?? null,
    options.pongTimeoutMs ?? null,
  ]);
  const impl = options.WebSocket || options.WebSocketImpl;
  const timers = options.timers;

  useEffect(() => {
    if (!enabled) return undefined;
    const o = latest.current;
    const svc = new WebSocketService({
      url: o.url,
      path: o.path,
      token: o.token,
      types: o.types,
      since: o.since,
      baseDelayMs: o.baseDelayMs,
      maxDelayMs: o.maxDelayMs,
      maxAttempts: o.maxAttempts,
      heartbeatMs: o.heartbeatMs,
      pongTimeoutMs: o.pongTimeoutMs,
      random: o.random,
      WebSocket: impl,
      location: o.location,
      timers,
    });
    svc.onStateChange((state, prev) => {
      dispatch({ kind: 'state', state, attempt: svc.attempt });
      latest.current.onStateChange?.(state, prev);
    });
    svc.on('*', (_data, msg) => {
      dispatch({ kind: 'message', msg, max: Math.max(1, latest.current.maxItems ?? 100) });
      latest.current.onMessage?.(msg);
    });
    svc.on('client:resync', (data) => latest.current.onResync?.(data));
    setService(svc);
    svc.connect();
    return () => {
      svc.destroy();
      setService((cur) => (cur === svc ? null : cur));
      dispatch({ kind: 'state', state: 'disconnected', attempt: 0 });
    };
  }, [enabled, connectionKey, impl, timers]);

  const retry = useCallback(() => { service?.retry(); }, [service]);

  return { ...live, service, retry };
}

export { WebSocketService } from './service.js';
export type * from './types.js';
