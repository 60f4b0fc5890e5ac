// A scriptable stand-in for `fetch` as the SSE transport uses it: records every request
// (URL, headers, whether its AbortSignal fired) and answers with a Response whose body is a
// ReadableStream the test writes to, chunk by chunk, and ends.
import type { FetchInit, FetchLike } from '../../src/index.js';

const encoder = new TextEncoder();

export interface FakeRequest {
  url: string;
  init: FetchInit;
  headers: Record<string, string>;
  /** The request's AbortSignal fired. */
  aborted: boolean;
  /** Answer 200 `text/event-stream` (done by default, see `FakeFetch.manual`). */
  ok(): void;
  /** Answer with a refusal: `status`, a JSON error body, extra headers. */
  refuse(status: number, code: string, headers?: Record<string, string>): void;
  /** The request fails (a network error: fetch rejects). */
  fail(message?: string): void;
  /** Write to the body: text (UTF-8) or raw bytes. */
  push(chunk: string | Uint8Array): void;
  /** The server ends the body. */
  end(): void;
}

export class FakeFetch {
  requests: FakeRequest[] = [];
  /** When true, requests wait for ok()/refuse()/fail(); else they get a 200 at once. */
  manual = false;
  get last(): FakeRequest { return this.requests[this.requests.length - 1]; }

  readonly fetch: FetchLike = (url, init) => new Promise((resolve, reject) => {
    let controller!: ReadableStreamDefaultController<Uint8Array>;
    let settled = false;
    let ended = false;
    const body = new ReadableStream<Uint8Array>({ start: (c) => { controller = c; } });
    const headers: Record<string, string> = {};
    for (const k of Object.keys(init.headers)) headers[k.toLowerCase()] = init.headers[k];
    const req: FakeRequest = {
      url,
      init,
      headers,
      aborted: false,
      ok: () => {
        if (settled) return;
        settled = true;
        resolve(new Response(body, { status: 200, headers: { 'content-type': 'text/event-stream' } }));
      },
      refuse: (status, code, extra = {}) => {
        if (settled) return;
        settled = true;
        resolve(new Response(JSON.stringify({ error: { code, message: `${code} (test)` } }), {
          status, headers: { 'content-type': 'application/json', ...extra },
        }));
      },
      fail: (message = 'network error') => {
        if (settled) return;
        settled = true;
        reject(new TypeError(message));
      },
      push: (chunk) => {
        if (ended) throw new Error('push after end');
        controller.enqueue(typeof chunk === 'string' ? encoder.encode(chunk) : chunk);
      },
      end: () => {
        if (ended) return;
        ended = true;
        controller.close();
      },
    };
    init.signal?.addEventListener('abort', () => {
      req.aborted = true;
      const err = new DOMException('The operation was aborted.', 'AbortError');
      if (!settled) {
        settled = true;
        reject(err);
      }
      if (!ended) {
        ended = true;
        try { controller.error(err); } catch { /* already closed */ }
      }
    });
    this.requests.push(req);
    if (!this.manual) req.ok();
  });
}

/** Let promise callbacks (fetch, the body reader) run. */
export async function flush(rounds = 20): Promise<void> {
  for (let i = 0; i < rounds; i++) await Promise.resolve();
}

/** One SSE message carrying `envelope` as its data (`id:` when it has one). */
export function sse(envelope: { id?: string } & Record<string, unknown>): string {
  return (envelope.id ? `id: ${envelope.id}\n` : '') + `data: ${JSON.stringify(envelope)}\n\n`;
}
