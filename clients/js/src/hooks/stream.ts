/**
 * useDashboardStream(): the gateway's live stream as React state, as envelopes.
 *
 *   const { state, analytics, alerts, interventions, metrics } = useDashboardStream({ url });
 *
 * (Before the TutorMax drop-in this was `useWebSocket`; that name is now the drop-in.)
 * With `state: true` (the default) the keyed state the connection opens with replaces
 * `alerts`, `interventions` and `metrics` at once; live envelopes are then added as they
 * come, tombstones (`removed: true`) included: this hook keeps envelopes, not a state.
 */
import { useReducer } from 'react';
import { useConnection, type ConnectionOptions } from './connection.js';
import { isObject, scalarKey } from './util.js';
import { compareIds } from '../ids.js';
import type {
  AlertMessage,
  AnalyticsData,
  ConnectionState,
  Envelope,
  InterventionMessage,
  MetricsUpdateData,
  RecoveryData,
  ServerMessage,
  StatePhase,
  Transport,
} from '../types.js';
import type { WebSocketService } from '../service.js';

export interface UseDashboardStreamOptions extends ConnectionOptions {
  /** How many alerts and interventions are kept (newest first). Default 100. */
  maxItems?: number;
}

/** What `useDashboardStream` tracks from the stream. */
export interface LiveState {
  /** `connecting` | `connected` | `reconnecting` | `disconnected`. */
  state: ConnectionState;
  /** Reconnection attempts made since the last healthy connection (for "Reconnecting (3/10)"). */
  attempt: number;
  /** The live transport: `websocket`, `sse` (the fallback) or null when not connected. */
  transport: Transport | null;
  /** Where the keyed state stands: `off` | `loading` | `complete`. */
  statePhase: StatePhase;
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

export interface UseDashboardStreamResult extends LiveState {
  /** The underlying service (null before the effect ran or while `enabled` is false). */
  service: WebSocketService | null;
  /** Reconnect now (after giving up, or to skip the backoff wait). */
  retry: () => void;
}

type Data = Omit<LiveState, 'state' | 'attempt' | 'transport' | 'statePhase'>;

const INITIAL: Data = {
  analytics: null,
  alerts: [],
  interventions: [],
  metrics: {},
  lastMessage: null,
  recovery: null,
};

type Action = { msg: ServerMessage; max: number } | { state: Envelope[]; max: number };

const interventionKey = (m: Envelope) => (isObject(m.data) ? scalarKey(m.data.intervention_id) : null);

/** The keyed state as the lists: newest first (by id), one intervention per id, metrics per tutor. */
function fromState(s: Data, events: Envelope[], max: number): Data {
  const newestFirst = events.slice().sort((a, b) => -(compareIds(a.id, b.id) ?? 0));
  const alerts: AlertMessage[] = [];
  const interventions: InterventionMessage[] = [];
  const seen = new Set<string>();
  const metrics: Record<string, MetricsUpdateData> = {};
  for (const m of newestFirst) {
    if (m.removed === true) continue;
    if (m.type === 'alert') {
      if (alerts.length < max) alerts.push(m as AlertMessage);
    } else if (m.type === 'intervention') {
      const key = interventionKey(m);
      if (key != null && seen.has(key)) continue;
      if (key != null) seen.add(key);
      if (interventions.length < max) interventions.push(m as InterventionMessage);
    } else if (m.type === 'metrics_update' && isObject(m.data)) {
      const key = scalarKey(m.data.tutor_id) ?? scalarKey(m.data.name) ?? '';
      if (!(key in metrics)) metrics[key] = m.data as MetricsUpdateData;
    }
  }
  return { ...s, alerts, interventions, metrics };
}

function reducer(s: Data, a: Action): Data {
  if ('state' in a) return fromState(s, a.state, a.max);
  const msg = a.msg;
  const next: Data = { ...s, lastMessage: msg };
  switch (msg.type) {
    case 'analytics_update':
      next.analytics = isObject(msg.data) ? (msg.data as AnalyticsData) : {};
      break;
    case 'alert':
      next.alerts = [msg as AlertMessage, ...s.alerts].slice(0, a.max);
      break;
    case 'intervention': {
      const key = interventionKey(msg);
      const rest = key == null ? s.interventions : s.interventions.filter((m) => interventionKey(m) !== key);
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
 * Connect to the gateway while the component is mounted and return its live state, as
 * envelopes. Options that shape the connection (url, path, token, types, backoff,
 * heartbeat, transport, sseUrl, the WebSocket implementation) reconnect when they change;
 * callbacks may change freely.
 */
export function useDashboardStream(options: UseDashboardStreamOptions = {}): UseDashboardStreamResult {
  const [data, dispatch] = useReducer(reducer, INITIAL);
  const max = Math.max(1, options.maxItems ?? 100);
  const conn = useConnection(options, (msg) => dispatch({ msg, max }), (st) => dispatch({ state: st.events, max }));
  return {
    ...data,
    state: conn.status,
    attempt: conn.attempt,
    transport: conn.transport,
    statePhase: conn.statePhase,
    service: conn.service,
    retry: conn.retry,
  };
}
