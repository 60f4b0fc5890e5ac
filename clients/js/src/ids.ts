/**
 * Event ids and the few facts about an envelope the service needs before it dispatches
 * one: parsing and ordering ids (`<epoch>:<ms>-<seq>`, or a plain Redis stream id
 * `ms-seq`), an envelope's `id` as a string, whether it is a pong, and `SeenIds`, the
 * window of recent ids that exact duplicates are dropped by.
 */

function stripZeros(digits: string): string {
  const s = digits.replace(/^0+/, '');
  return s === '' ? '0' : s;
}

/**
 * A parsed event id: `epoch` (null for a plain Redis stream id), then the ms and seq parts
 * as digit strings without leading zeros.
 */
export interface StreamId {
  epoch: string | null;
  ms: string;
  seq: string;
}

/**
 * Parse an event id: `<epoch>:<ms>-<seq>` (epoch: 1-32 of [0-9a-z], the history the id
 * belongs to), or a plain Redis stream id `ms-seq` / `ms`. Null when it is neither.
 */
export function parseStreamId(id: unknown): StreamId | null {
  if (typeof id !== 'string') return null;
  const m = /^(?:([0-9a-z]{1,32}):)?(\d+)(?:-(\d+))?$/.exec(id.trim());
  if (!m) return null;
  return { epoch: m[1] ?? null, ms: stripZeros(m[2]), seq: stripZeros(m[3] || '0') };
}

function compareDigits(a: string, b: string): number {
  if (a.length !== b.length) return a.length < b.length ? -1 : 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Order two event ids: ms numerically, then seq. Returns -1, 0 or 1; null when they cannot
 * be ordered: either is not an id, or their epochs differ (ids of two different histories;
 * a plain `ms-seq` id and an epoch id differ too). The client then takes the latest
 * received as its resume point.
 */
export function compareIds(a: unknown, b: unknown): -1 | 0 | 1 | null {
  const pa = parseStreamId(a);
  const pb = parseStreamId(b);
  if (!pa || !pb || pa.epoch !== pb.epoch) return null;
  return (compareDigits(pa.ms, pb.ms) || compareDigits(pa.seq, pb.seq)) as -1 | 0 | 1;
}

/** An envelope's `id` as a string (a non-empty string, or a number); null when it has none. */
export function idOf(msg: { id?: unknown }): string | null {
  const id = msg.id;
  return (typeof id === 'string' && id !== '') || typeof id === 'number' ? String(id) : null;
}

/** The server's answer to `ping`: `{"type":"analytics_update","data":{"pong":true}}`. */
export function isPong(msg: { type?: unknown; data?: unknown }): boolean {
  const d = msg.data as Record<string, unknown> | null;
  return msg.type === 'analytics_update' && d !== null && typeof d === 'object' &&
    !Array.isArray(d) && d.pong === true;
}

/** Ids remembered to drop exact duplicates. */
export const DEDUPE_WINDOW = 2048;

/**
 * The last `DEDUPE_WINDOW` distinct ids added (or `capacity`): a Set to look them up, and
 * a fixed-size ring buffer of the same ids in the order they came, whose oldest slot the
 * next id takes once it is full (O(1) per id, unlike shifting an array).
 */
export class SeenIds {
  private readonly _ids = new Set<string>();
  private readonly _ring: (string | undefined)[];
  /** The slot the next id goes in: once the ring is full, the oldest id's. */
  private _next = 0;

  constructor(capacity: number = DEDUPE_WINDOW) {
    this._ring = new Array<string | undefined>(Math.max(1, Math.floor(capacity)));
  }

  /** The id is one of the last ones added. */
  has(id: string): boolean {
    return this._ids.has(id);
  }

  /** Remember an id (a no-op when it is remembered already), forgetting the oldest when full. */
  add(id: string): void {
    if (this._ids.has(id)) return;
    const oldest = this._ring[this._next];
    if (oldest !== undefined) this._ids.delete(oldest);
    this._ring[this._next] = id;
    this._next = (this._next + 1) % this._ring.length;
    this._ids.add(id);
  }

  /** How many ids are remembered (at most the capacity). */
  get size(): number {
    return this._ids.size;
  }
}
