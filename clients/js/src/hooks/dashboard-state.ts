/**
 * The drop-in hook's state, as a pure reducer (no React): how TutorMax-shaped messages
 * become `{ tutorMetrics, alerts, interventionTasks, analytics, lastUpdate }`.
 *
 * Elements are the messages' `data`, untouched (only `resolveAlert` and
 * `updateInterventionStatus` change them, locally). Every update returns new arrays, so
 * React sees each change.
 */
import { isObject, scalarKey } from './util.js';
import type { ServerMessage } from '../types.js';

/** The data part of the drop-in state (`connected` comes from the socket). */
export interface DashboardData<M, A, T, N> {
  /** The latest `metrics_update` data per (`tutor_id`, `window`), in order of first arrival. */
  tutorMetrics: M[];
  /** `alert` data, newest first, one per `id` (else `alert_id`); a repeated id is ignored. */
  alerts: A[];
  /** `intervention` data, one per `id` (else `intervention_id`), in order of first arrival; a later message with the same id replaces the task. */
  interventionTasks: T[];
  /** The latest `analytics_update` data (`{}` before the backend published any); null before the first. Pongs are not analytics. */
  analytics: N | null;
  /** The `timestamp` of the last message (pongs, `recovery` and `error` frames excluded). */
  lastUpdate: string | null;
}

export type DashboardAction =
  | { kind: 'message'; msg: ServerMessage; max: number }
  | { kind: 'resolveAlert'; id: string }
  | { kind: 'interventionStatus'; id: string; status: string };

type Item = Record<string, unknown>;
type Data = DashboardData<Item, Item, Item, Item>;

export const EMPTY_DASHBOARD: Data = {
  tutorMetrics: [],
  alerts: [],
  interventionTasks: [],
  analytics: null,
  lastUpdate: null,
};

const alertKey = (d: Item) => scalarKey(d.id) ?? scalarKey(d.alert_id);
const taskKey = (d: Item) => scalarKey(d.id) ?? scalarKey(d.intervention_id);
const metricsKey = (d: Item) =>
  JSON.stringify([scalarKey(d.tutor_id) ?? scalarKey(d.name), scalarKey(d.window)]);

/** Replace the element with `key`, or append; keep at most `max` (the oldest go first). */
function upsert(list: Item[], item: Item, keyOf: (d: Item) => string | null, max: number): Item[] {
  const key = keyOf(item);
  const i = key == null ? -1 : list.findIndex((d) => keyOf(d) === key);
  if (i >= 0) {
    const next = list.slice();
    next[i] = item;
    return next;
  }
  const next = list.concat([item]);
  return next.length > max ? next.slice(next.length - max) : next;
}

function applyMessage(s: Data, msg: ServerMessage, max: number): Data {
  if (msg.type === 'recovery' || msg.type === 'error') return s;
  const next: Data = { ...s, lastUpdate: typeof msg.timestamp === 'string' ? msg.timestamp : s.lastUpdate };
  const d = msg.data;
  switch (msg.type) {
    case 'analytics_update':
      next.analytics = isObject(d) ? d : {};
      break;
    case 'metrics_update':
      if (isObject(d)) next.tutorMetrics = upsert(s.tutorMetrics, d, metricsKey, Infinity);
      break;
    case 'alert': {
      if (!isObject(d)) break;
      const key = alertKey(d);
      if (key != null && s.alerts.some((a) => alertKey(a) === key)) break; // one per id
      next.alerts = [d, ...s.alerts].slice(0, max);
      break;
    }
    case 'intervention':
      if (isObject(d)) next.interventionTasks = upsert(s.interventionTasks, d, taskKey, max);
      break;
    default:
      break; // publisher-chosen types: only lastUpdate
  }
  return next;
}

export function dashboardReducer(s: Data, a: DashboardAction): Data {
  switch (a.kind) {
    case 'message':
      return applyMessage(s, a.msg, a.max);
    case 'resolveAlert':
      if (!s.alerts.some((d) => alertKey(d) === a.id)) return s;
      return { ...s, alerts: s.alerts.map((d) => (alertKey(d) === a.id ? { ...d, resolved: true } : d)) };
    case 'interventionStatus':
      if (!s.interventionTasks.some((d) => taskKey(d) === a.id)) return s;
      return {
        ...s,
        interventionTasks: s.interventionTasks.map((d) => (taskKey(d) === a.id ? { ...d, status: a.status } : d)),
      };
    default:
      return s;
  }
}
