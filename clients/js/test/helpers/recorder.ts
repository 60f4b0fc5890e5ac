// Records what a WebSocketService delivers, for the wire tests.
import type { ConnectionState, ServerMessage, WebSocketService } from '../../src/index.js';
import { waitUntil } from './processes.js';

export interface Recorder {
  messages: ServerMessage[];
  states: ConnectionState[];
  pongs: number;
  closes: { code: number | undefined; reason: string | undefined }[];
  urls: string[];
  of(type: string): ServerMessage[];
  waitFor(desc: string, fn: () => boolean, timeoutMs?: number): Promise<void>;
}

export function record(svc: WebSocketService): Recorder {
  const r: Recorder = {
    messages: [],
    states: [],
    pongs: 0,
    closes: [],
    urls: [],
    of: (type) => r.messages.filter((m) => m.type === type),
    waitFor: (desc, fn, timeoutMs = 15000) => waitUntil(desc, fn, { timeoutMs, intervalMs: 20 }),
  };
  svc.on('*', (_d, m) => { r.messages.push(m); });
  svc.on('client:pong', () => { r.pongs++; });
  svc.on('client:close', (d) => { r.closes.push(d); });
  svc.onStateChange((s) => {
    r.states.push(s);
    if (s === 'connecting' || s === 'reconnecting') r.urls.push(svc.buildUrl());
  });
  return r;
}
