// A scriptable stand-in for the browser's WebSocket: records every socket made, what was
// sent and how it was closed; the test opens it, feeds it frames and drops it.
import type { WebSocketLike } from '../../src/index.js';

export class FakeWebSocket implements WebSocketLike {
  static sockets: FakeWebSocket[] = [];
  static reset(): void { FakeWebSocket.sockets = []; }
  static get last(): FakeWebSocket { return FakeWebSocket.sockets[FakeWebSocket.sockets.length - 1]; }

  readyState = 0;
  sent: string[] = [];
  closed: { code?: number; reason?: string } | null = null;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  onopen: ((ev: any) => void) | null = null;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  onmessage: ((ev: any) => void) | null = null;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  onerror: ((ev: any) => void) | null = null;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  onclose: ((ev: any) => void) | null = null;

  constructor(public url: string) { FakeWebSocket.sockets.push(this); }
  send(text: string): void { this.sent.push(text); }
  close(code?: number, reason?: string): void { this.closed = { code, reason }; this.readyState = 3; }

  // test helpers
  open(): void { this.readyState = 1; this.onopen?.({}); }
  msg(obj: unknown): void { this.onmessage?.({ data: typeof obj === 'string' ? obj : JSON.stringify(obj) }); }
  drop(code = 1006): void { this.readyState = 3; this.onclose?.({ code, reason: '' }); }
  /** True when the service no longer listens to this socket. */
  get detached(): boolean { return this.onopen === null && this.onmessage === null && this.onclose === null; }
}

export const env = (type: string, data: unknown, id?: string) =>
  ({ type, data, timestamp: '2026-11-25T10:00:00.123Z', ...(id ? { id } : {}) });
