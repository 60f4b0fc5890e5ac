/**
 * The gateway's wire contract (SPEC.md, "Messages, server -> client"), as types.
 *
 * Every frame is one JSON envelope `{type, data, timestamp}`; resumable events also carry
 * `id` (a Redis stream id such as `"1795574865260-0"`, opaque to most clients), and events
 * of the keyed state (`?state=1`) their `key`, `removed` (a tombstone) and `evicted`. Extra
 * fields are allowed and passed through.
 */

/** One server -> client frame. `D` is the type of `data`. */
export interface Envelope<T extends string = string, D = unknown> {
  type: T;
  data: D;
  /** RFC 3339, UTC: when the event was published. */
  timestamp: string;
  /** Present on events published through the publisher crate, its CLI or /api/publish. */
  id?: string;
  /**
   * The event's key in the gateway's keyed state (by default TutorMax's: `tutor_id|window`
   * for `metrics_update`, `id` for `alert` and `intervention`); absent on unkeyed events.
   */
  key?: string;
  /** A tombstone: `key` leaves the state (e.g. a resolved alert, a completed task). */
  removed?: boolean;
  /** Keys of the same type the state dropped when this event was written (its bounds): remove them too. */
  evicted?: string[];
  [extra: string]: unknown;
}

/** `metrics_update`: live numbers of one tutor. Every field is optional on the wire. */
export interface MetricsUpdateData {
  tutor_id?: string;
  tutor_name?: string;
  /** TutorMax: the metrics window, e.g. `7day`, `30day`; the hooks keep one entry per (tutor_id, window). */
  window?: string;
  performance_tier?: PerformanceTier | (string & {});
  avg_rating?: number;
  engagement_score?: number;
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
  /** TutorMax's alert id (the drop-in hook keeps one alert per `id`, else per `alert_id`). */
  id?: string;
  alert_id?: string;
  tutor_name?: string;
  alert_type?: 'critical' | 'warning' | 'info' | (string & {});
  title?: string;
  resolved?: boolean;
  tutor_id?: string;
  severity?: 'critical' | 'high' | 'warning' | 'info' | (string & {});
  kind?: string;
  message?: string;
  [extra: string]: unknown;
}

/** `intervention`: a task for the intervention queue; the same id may come again with a new status. */
export interface InterventionData {
  /** TutorMax's task id (the drop-in hook keeps one task per `id`, else per `intervention_id`). */
  id?: string;
  intervention_id?: string;
  tutor_name?: string;
  task_type?: string;
  title?: string;
  description?: string;
  due_date?: string;
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
  performance_distribution?: Partial<Record<PerformanceTier, number>>;
  avg_rating?: number;
  avg_engagement_score?: number;
  total_sessions_7day?: number;
  total_sessions_30day?: number;
  alerts_count?: { critical?: number; warning?: number; info?: number; [severity: string]: number | undefined };
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

/**
 * `state`: the marker that ends the keyed state sent after the greeting (`?state=1`); its
 * `id` is the position the live stream continues from. The client does not dispatch it as
 * a message: it emits one `state` event (`StateData`) with every state event before it.
 */
export interface StateMarkerData {
  complete: boolean;
  /** How many state events the server sent before the marker. */
  count: number;
  [extra: string]: unknown;
}

/** The `state` event: the keyed state a connection opened with, all at once. */
export interface StateData {
  /**
   * The current event of every key of the client's types (normal envelopes with their own
   * `id`, `key`, `data`, `timestamp`), in no particular order, each key at most once.
   * Replace what you hold with them.
   */
  events: Envelope[];
  /** The marker's count (the number of events sent). */
  count: number;
  /** The marker's id: the position the live stream continues from (the new `lastId`). */
  id: string | undefined;
}

/**
 * Where the connection stands with the keyed state (`statePhase`): `off` (not asked for:
 * `state: false`, or a gateway that does not send it), `loading` (asked for, not complete:
 * the events before the marker are being collected), `complete` (the marker came; live
 * events apply on top of it).
 */
export type StatePhase = 'off' | 'loading' | 'complete';

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
export type StateMarkerMessage = Envelope<'state', StateMarkerData>;
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
  /**
   * The keyed state (`?state=1`) is complete: every state event the server sent before its
   * marker, at once (the marker is the second argument). Emitted once per fresh connection,
   * and after a `recovery` with `recovered: false`; not a `client:` name because it stands
   * for the wire's reserved `state` type (never dispatched as a message itself).
   */
  state: StateData;
  /** `statePhase` changed (`off` | `loading` | `complete`). */
  'client:state_phase': StatePhase;
  /** `recovery` said `recovered: false`: refetch or reset your state (with `state: true`, a `state` event follows). */
  'client:resync': RecoveryData;
  /** `recovery` said `recovered: true`. */
  'client:recovered': RecoveryData;
  /** The server answered a heartbeat ping. */
  'client:pong': { pong: true };
  /** `maxAttempts` reconnection attempts failed; the state is `disconnected` (call `retry()`). */
  'client:gave_up': { attempts: number };
  /**
   * Reconnection attempt `attempt` (1-based, of `maxAttempts`) is scheduled in `delayMs`;
   * emitted for every attempt (the state stays `reconnecting` between attempts).
   */
  'client:reconnecting': { attempt: number; maxAttempts: number; delayMs: number };
  /**
   * The connection closed (not by `disconnect()`); a reconnection follows. On SSE: the
   * code of the stream's `event: close` (1006 without one); for a refusal, `status` is the
   * HTTP status, and `code` the close code it stands for (401: 4001, 403/400: 1008,
   * 429/503: 1013) and `reason` the error's `code`.
   */
  'client:close': { code: number | undefined; reason: string | undefined; status?: number };
  /**
   * The live transport changed: `websocket` or `sse` when a connection turns `connected`,
   * null when it stops being connected.
   */
  'client:transport': Transport | null;
  /** `getToken()` threw or rejected; the attempt counts as failed (backoff follows). */
  'client:token_error': { error: unknown };
  /** A frame with an id already seen: dropped. */
  'client:duplicate': unknown;
  /** A frame that is not a JSON envelope (data is the raw frame). */
  'client:invalid': unknown;
}

export type ClientEventType = keyof ClientEventMap;

/** How the stream travels: a WebSocket, or Server-Sent Events (`GET /sse/dashboard`). */
export type Transport = 'websocket' | 'sse';

/** `connecting` (first attempt), `connected`, `reconnecting`, `disconnected`. */
export type ConnectionState = 'connecting' | 'connected' | 'reconnecting' | 'disconnected';

/** TutorMax's performance tiers, lowest first. */
export type PerformanceTier = 'Needs Support' | 'Developing' | 'Strong' | 'Exemplary';

// ---------------------------------------------------------------------------------------
// The shapes TutorMax's backend publishes, as its dashboard components expect them. They
// are the default element types of the drop-in `useWebSocket()` state, so a page written
// against TutorMax's own hook type-checks unchanged. The client does not validate `data`:
// these describe what the publisher promises, not what the gateway enforces.

/** `metrics_update` data: one tutor's metrics over one window. */
export interface TutorMetrics {
  tutor_id: string;
  tutor_name: string;
  window: '7day' | '30day' | '90day';
  calculation_date: string;
  sessions_completed: number;
  avg_rating: number;
  first_session_success_rate: number;
  reschedule_rate: number;
  no_show_count: number;
  engagement_score: number;
  learning_objectives_met_pct: number;
  performance_tier: PerformanceTier;
}

/** `alert` data. `resolved` is also set locally by `resolveAlert(id)`. */
export interface DashboardAlert {
  id: string;
  tutor_id: string;
  tutor_name: string;
  alert_type: 'critical' | 'warning' | 'info';
  severity: 'high' | 'medium' | 'low';
  title: string;
  message: string;
  timestamp: string;
  resolved: boolean;
  metrics?: Partial<TutorMetrics>;
}

/** `intervention` data; a later message with the same `id` replaces the task. */
export interface InterventionTask {
  id: string;
  tutor_id: string;
  tutor_name: string;
  task_type: 'coaching' | 'training' | 'review' | 'followup';
  title: string;
  description: string;
  priority: 'high' | 'medium' | 'low';
  status: 'pending' | 'in_progress' | 'completed';
  created_at: string;
  due_date: string;
  assigned_to?: string;
}

/** `analytics_update` data (the greeting is `{}` until the backend published analytics). */
export interface PerformanceAnalytics {
  total_tutors: number;
  active_tutors: number;
  performance_distribution: Record<PerformanceTier, number>;
  avg_rating: number;
  avg_engagement_score: number;
  total_sessions_7day: number;
  total_sessions_30day: number;
  alerts_count: { critical: number; warning: number; info: number };
}
