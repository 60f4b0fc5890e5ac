/**
 * The HTTP side of the two transports, as plain functions of strings and numbers: the SSE
 * endpoint that goes with a WebSocket URL, adding a query to a URL, and what an SSE
 * refusal means (its status as the close code a WebSocket would have carried, its
 * `Retry-After` in ms).
 */

/**
 * The SSE endpoint of a WebSocket URL: ws: -> http:, wss: -> https:, a trailing
 * `/ws/dashboard` -> `/sse/dashboard`, the query kept. Null when the path has none.
 */
export function sseUrlOf(wsUrl: string): string | null {
  const m = /^([a-z][a-z0-9+.-]*:)?(\/\/[^/?#]*)?([^?#]*)(.*)$/i.exec(wsUrl);
  if (!m) return null;
  const path = m[3].replace(/\/ws\/dashboard(\/?)$/, '/sse/dashboard$1');
  if (path === m[3]) return null;
  const scheme = (m[1] || '').toLowerCase();
  const httpScheme = scheme === 'wss:' ? 'https:' : scheme === 'ws:' ? 'http:' : m[1] || '';
  return httpScheme + (m[2] || '') + path + m[4];
}

/** A `Retry-After` header (seconds, or an HTTP date) in ms; null when absent or invalid. */
export function retryAfterMs(value: string | null): number | null {
  if (value == null || value.trim() === '') return null;
  const v = value.trim();
  if (/^\d+$/.test(v)) return parseInt(v, 10) * 1000;
  const at = Date.parse(v);
  return isFinite(at) ? Math.max(0, at - Date.now()) : null;
}

/** The close code an SSE refusal stands for (the one a WebSocket would have closed with). */
export function refusalCode(status: number): number {
  if (status === 401) return 4001; // bad or expired token: a fresh one is fetched first
  if (status === 403 || status === 400) return 1008; // policy: origin, types
  if (status === 429 || status === 503) return 1013; // limits: try again later
  return 1006;
}

/** `base` with the query parts `q` (already encoded) appended, after `?` or `&`. */
export function withQuery(base: string, q: string[]): string {
  if (!q.length) return base;
  return base + (base.indexOf('?') >= 0 ? '&' : '?') + q.join('&');
}
