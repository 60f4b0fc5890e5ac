/**
 * The gateway's wire contract (SPEC.md, "Messages, server -> client"), as types.
 *
 * Every frame is one JSON envelope `{type, data, timestamp}`; resumable events also carry
 * `id` (a Redis stream id such as `"1795574865260-0"`, opaque to most clients). Extra fields
 * are allowed and passed through.
 */

/** One server -> client frame. `D` is the type of `data`. */
export interface Envelope<T extends string = string, D = unknown> {
  type: T;
  data: D;
  /** RFC 3339, UTC: when the event was published. */
  timestamp: string;
  /** Present on events published through the publisher crate, its CLI or /api/publish. */
  id?: string;
  [extra: string]: unknown;
}

/** `metrics_update`: live numbers of one tutor. Every field is optional on the wire. */
export interface MetricsUpdateData {
  tutor_id?: string;
  name?: string;
  subject?: string;
  active_sessions?: number;
  avg_response_time_ms?: number;
  satisfaction_score?: number;
  sessions_completed?: number;
  status?: string;
  [extra: string]: unknown;
}

/** `alert`: a critical (or less) condition to show in the alert feed. */
export interface AlertData {
  alert_id?: string;
  tutor_id?: string;
  severity?: 'critical' | 'high' | 'warning' | 'info' | (string & {});
  kind?: string;
  message?: string;
  [extra: string]: unknown;
}

/** `intervention`: a task for the intervention queue; the same id may come again with a new status. */
export interface InterventionData {
  intervention_id?: string;
  tutor_id?: string;
  action?: string;
  priority?: 'critical' | 'high' | 'medium' | 'low' | (string & {});
  reason?: string;
  status?: string;
  [extra: string]: unknown;
}

/**
 * `analytics_update`: a full snapshot (`{}` before anything was published). The server's
 * answer to `ping` is also an `analytics_update`, with data `{"pong": true}`; the client
 * never dispatches that one as analytics (it emits `client:pong` instead).
 */
export interface AnalyticsData {
  total_tutors?: number;
  active_tutors?: number;
  sessions_in_progress?: number;
  avg_satisfaction?: number;
  avg_response_time_ms?: number;
  alerts_last_hour?: number;
  open_interventions?: number;
  [extra: string]: unknown;
}

/** `recovery`: sent once after the replay of a `?since=` reconnection. */
export interface RecoveryData {
  recovered: boolean;
  replayed: number;
  [extra: string]: unknown;
}

/** `error`: the server did not understand a frame this client sent (the connection stays). */
export interface ErrorData {
  code: string;
  message: string;
  [extra: string]: unknown;
}

/** The `data` type of each message type the gateway defines. */
export interface MessageDataMap {
  metrics_update: MetricsUpdateData;
  alert: AlertData;
  intervention: InterventionData;
  analytics_update: AnalyticsData;
  recovery: RecoveryData;
  error: ErrorData;
}

export type KnownMessageType = keyof MessageDataMap;

export type MetricsUpdateMessage = Envelope<'metrics_update', MetricsUpdateData>;
export type AlertMessage = Envelope<'alert', AlertData>;
export type InterventionMessage = Envelope<'intervention', InterventionData>;
export type AnalyticsUpdateMessage = Envelope<'analytics_update', AnalyticsData>;
export type RecoveryMessage = Envelope<'recovery', RecoveryData>;
export type ErrorMessage = Envelope<'error', ErrorData>;

/** Any frame: one of the known messages, or a publisher-chosen type with unknown data. */
export type ServerMessage =
  | MetricsUpdateMessage
  | AlertMessage
  | InterventionMessage
  | AnalyticsUpdateMessage
  | RecoveryMessage
  | ErrorMessage
  | Envelope<string, unknown>;

/**
 * Events the client itself emits (never sent by the server; the `client:` prefix keeps them
 * apart from publisher-chosen types).
 */
export interface ClientEventMap {
  /** `recovery` said `recovered: false`: refetch or reset your state. */
  'client:resync': RecoveryData;
  /** `recovery` said `recovered: true`. */
  'client:recovered': RecoveryData;
  /** The server answered a heartbeat ping. */
  'client:pong': { pong: true };
  /** `maxAttempts` reconnection attempts failed; the state is `disconnected` (call `retry()`). */
  'client:gave_up': { attempts: number };
  /** The socket closed (not by `disconnect()`); a reconnection follows. */
  'client:close': { code: number | undefined; reason: string | undefined };
  /** A frame with an id already seen: dropped. */
  'client:duplicate': unknown;
  /** A frame that is not a JSON envelope (data is the raw frame). */
  'client:invalid': unknown;
}

export type ClientEventType = keyof ClientEventMap;

/** `connecting` (first attempt), `connected`, `reconnecting`, `disconnected`. */
export type ConnectionState = 'connecting' | 'connected' | 'reconnecting' | 'disconnected';
