/**
 * The drop-in hook's state, as a pure reducer (no React): how TutorMax-shaped messages
 * become `{ tutorMetrics, alerts, interventionTasks, analytics, lastUpdate }`.
 *
 * Elements are the messages' `data`, untouched (only `resolveAlert` and
 * `updateInterventionStatus` change them, locally). Every update returns new arrays, so
 * React sees each change.
 *
 * The keyed state (`state` event) replaces the three lists at once. Each element is kept
 * with its envelope's `key` (`entries`), so that a tombstone (`removed: true`) and an
 * event's `evicted` keys remove exactly the elements the gateway's state dropped; an
 * element that came without a key is matched by its data (`id`, or `tutor_id` + `window`).
 */
import { compareIds } from '../ids.js';
import { isObject, scalarKey } from './util.js';
import type { Envelope, ServerMessage } from '../types.js';

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
  | { kind: 'state'; events: Envelope[]; max: number }
  | { kind: 'resolveAlert'; id: string }
  | { kind: 'interventionStatus'; id: string; status: string };

type Item = Record<string, unknown>;
type ListName = 'tutorMetrics' | 'alerts' | 'interventionTasks';

/** One element of a list, with the `key` of the envelope it came in (null: unkeyed). */
interface Entry {
  data: Item;
  key: string | null;
}

/** The reducer's state: the public lists, and the same elements with their keys. */
export interface DashboardStore extends DashboardData<Item, Item, Item, Item> {
  entries: Record<ListName, Entry[]>;
}

export const EMPTY_DASHBOARD: DashboardStore = {
  tutorMetrics: [],
  alerts: [],
  interventionTasks: [],
  analytics: null,
  lastUpdate: null,
  entries: { tutorMetrics: [], alerts: [], interventionTasks: [] },
};

const alertKey = (d: Item) => scalarKey(d.id) ?? scalarKey(d.alert_id);
const taskKey = (d: Item) => scalarKey(d.id) ?? scalarKey(d.intervention_id);
const metricsKey = (d: Item) =>
  JSON.stringify([scalarKey(d.tutor_id) ?? scalarKey(d.name), scalarKey(d.window)]);

/** Which list a message type feeds, and how its elements are told apart without a key. */
const LISTS: Record<string, { list: ListName; idOf: (d: Item) => string | null } | undefined> = {
  metrics_update: { list: 'tutorMetrics', idOf: metricsKey },
  alert: { list: 'alerts', idOf: alertKey },
  intervention: { list: 'interventionTasks', idOf: taskKey },
};

function keyOf(msg: { key?: unknown }): string | null {
  return typeof msg.key === 'string' && msg.key !== '' ? msg.key : null;
}

/** The same element: by key when both have one, else by their data's id. */
function matches(e: Entry, key: string | null, id: string | null, idOf: (d: Item) => string | null): boolean {
  if (key != null && e.key != null) return e.key === key;
  return id != null && idOf(e.data) === id;
}

function withList(s: DashboardStore, name: ListName, entries: Entry[]): DashboardStore {
  if (entries === s.entries[name]) return s;
  return { ...s, [name]: entries.map((e) => e.data), entries: { ...s.entries, [name]: entries } };
}

/** A live event on a list: evictions, then the tombstone's removal or the element itself. */
function applyListEvent(entries: Entry[], msg: ServerMessage, name: ListName, idOf: (d: Item) => string | null, max: number): Entry[] {
  let next = entries;
  if (Array.isArray(msg.evicted) && msg.evicted.length) {
    const gone = new Set(msg.evicted.filter((k): k is string => typeof k === 'string'));
    if (next.some((e) => e.key != null && gone.has(e.key))) next = next.filter((e) => e.key == null || !gone.has(e.key));
  }
  const d = msg.data;
  const key = keyOf(msg);
  const id = isObject(d) ? idOf(d) : null;
  if (msg.removed === true) {
    if (key == null && id == null) return next;
    return next.some((e) => matches(e, key, id, idOf)) ? next.filter((e) => !matches(e, key, id, idOf)) : next;
  }
  if (!isObject(d)) return next;
  const entry: Entry = { data: d, key };
  const i = key == null && id == null ? -1 : next.findIndex((e) => matches(e, key, id, idOf));
  if (name === 'alerts') {
    if (i >= 0) return next; // one per id: a repeat is ignored (so a local resolve stays)
    return [entry, ...next].slice(0, max);
  }
  if (i >= 0) {
    const copy = next.slice();
    copy[i] = key == null ? { data: d, key: next[i].key } : entry; // an unkeyed update keeps the key
    return copy;
  }
  const grown = next.concat([entry]);
  const cap = name === 'tutorMetrics' ? Infinity : max;
  return grown.length > cap ? grown.slice(grown.length - cap) : grown;
}

function applyMessage(s: DashboardStore, msg: ServerMessage, max: number): DashboardStore {
  if (msg.type === 'recovery' || msg.type === 'error') return s;
  let next: DashboardStore = { ...s, lastUpdate: typeof msg.timestamp === 'string' ? msg.timestamp : s.lastUpdate };
  if (msg.type === 'analytics_update') {
    next.analytics = isObject(msg.data) ? msg.data : {};
    return next;
  }
  const kind = LISTS[msg.type];
  if (kind) next = withList(next, kind.list, applyListEvent(s.entries[kind.list], msg, kind.list, kind.idOf, max));
  return next; // publisher-chosen types: only lastUpdate
}

/** Order of publication: by id (one history), else by timestamp. */
function byPosition(a: Envelope, b: Envelope): number {
  const c = compareIds(a.id, b.id);
  if (c !== null) return c;
  const ta = Date.parse(String(a.timestamp));
  const tb = Date.parse(String(b.timestamp));
  return isFinite(ta) && isFinite(tb) ? ta - tb : 0;
}

/**
 * The lists from the keyed state alone, as if its events had arrived in order of
 * publication (alerts newest first; tasks and metrics in that order). One pass over maps:
 * a state may hold tens of thousands of keys.
 */
function fromState(s: DashboardStore, events: Envelope[], max: number): DashboardStore {
  const lists: Record<ListName, Map<string, Entry>> = {
    tutorMetrics: new Map(), alerts: new Map(), interventionTasks: new Map(),
  };
  let newest = NaN;
  let lastUpdate = s.lastUpdate;
  let unkeyed = 0;
  for (const msg of events.slice().sort(byPosition)) {
    const kind = LISTS[msg.type];
    const t = Date.parse(String(msg.timestamp));
    if (isFinite(t) && !(t <= newest)) {
      newest = t;
      lastUpdate = msg.timestamp;
    }
    if (!kind || msg.removed === true || !isObject(msg.data)) continue;
    const key = keyOf(msg);
    const id = kind.idOf(msg.data);
    const name = key != null ? 'k' + key : id != null ? 'i' + id : 'u' + unkeyed++;
    lists[kind.list].set(name, { data: msg.data, key }); // each key comes once
  }
  const metrics = Array.from(lists.tutorMetrics.values());
  const alerts = Array.from(lists.alerts.values()).reverse().slice(0, max);
  const tasks = Array.from(lists.interventionTasks.values());
  const entries = { tutorMetrics: metrics, alerts, interventionTasks: tasks.slice(Math.max(0, tasks.length - max)) };
  return {
    ...s,
    lastUpdate,
    tutorMetrics: entries.tutorMetrics.map((e) => e.data),
    alerts: entries.alerts.map((e) => e.data),
    interventionTasks: entries.interventionTasks.map((e) => e.data),
    entries,
  };
}

function mapEntries(s: DashboardStore, name: ListName, idOf: (d: Item) => string | null, id: string, change: (d: Item) => Item): DashboardStore {
  const entries = s.entries[name];
  if (!entries.some((e) => idOf(e.data) === id)) return s;
  return withList(s, name, entries.map((e) => (idOf(e.data) === id ? { data: change(e.data), key: e.key } : e)));
}

export function dashboardReducer(s: DashboardStore, a: DashboardAction): DashboardStore {
  switch (a.kind) {
    case 'message':
      return applyMessage(s, a.msg, a.max);
    case 'state':
      return fromState(s, a.events, a.max);
    case 'resolveAlert':
      return mapEntries(s, 'alerts', alertKey, a.id, (d) => ({ ...d, resolved: true }));
    case 'interventionStatus':
      return mapEntries(s, 'interventionTasks', taskKey, a.id, (d) => ({ ...d, status: a.status }));
    default:
      return s;
  }
}
