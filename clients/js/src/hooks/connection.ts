/**
 * The connection part both hooks share: one WebSocketService per mounted component,
 * created in an effect (safe under server rendering and StrictMode) and destroyed on
 * unmount or when an option that shapes the connection changes. No socket, timer or
 * listener outlives the component.
 */
import { useCallback, useEffect, useReducer, useRef, useState } from 'react';
import { WebSocketService } from '../service.js';
import type { WebSocketServiceOptions } from '../options.js';
import type { ConnectionState, RecoveryData, ServerMessage, StateData, StatePhase, Transport } from '../types.js';

export interface ConnectionOptions extends Omit<WebSocketServiceOptions, 'onStateChange'> {
  /** false: no connection (and any open one is closed). Default true. */
  enabled?: boolean;
  /** Every server message (after dedup; pongs excluded). */
  onMessage?: (msg: ServerMessage) => void;
  /**
   * The server could not replay what was missed (`recovered: false`): with `state` on (the
   * default) the current state follows (`onState`); without it, refetch your state.
   */
  onResync?: (data: RecoveryData) => void;
  /** The keyed state the connection opened with (`state: true`, the default), all at once. */
  onState?: (data: StateData) => void;
  /** Connection state changes. */
  onStateChange?: (state: ConnectionState, previous: ConnectionState) => void;
}

export interface Connection {
  /** `connecting` | `connected` | `reconnecting` | `disconnected`. */
  status: ConnectionState;
  /** Reconnection attempts made since the last healthy connection (for "Reconnecting (3/10)"). */
  attempt: number;
  /** The live transport: `websocket` or `sse` (the fallback) while connected, else null. */
  transport: Transport | null;
  /** Where the keyed state stands: `off` | `loading` | `complete` (the service's `statePhase`). */
  statePhase: StatePhase;
  /** The underlying service (null before the effect ran or while `enabled` is false). */
  service: WebSocketService | null;
  /** Reconnect now (after giving up, or to skip the backoff wait). */
  retry: () => void;
}

type Status = { status: ConnectionState; attempt: number; transport: Transport | null; statePhase: StatePhase };
const DISCONNECTED: Status = { status: 'disconnected', attempt: 0, transport: null, statePhase: 'off' };

function statusReducer(s: Status, next: Status): Status {
  return s.status === next.status && s.attempt === next.attempt && s.transport === next.transport &&
    s.statePhase === next.statePhase ? s : next;
}

function statusOf(svc: WebSocketService, patch: Partial<Status> = {}): Status {
  return { status: svc.state, attempt: svc.attempt, transport: svc.transport, statePhase: svc.statePhase, ...patch };
}

/**
 * Connect while mounted; `onMessage` (which may change every render) gets every server
 * message, `onState` the keyed state (the `state` event). Options that shape the
 * connection reconnect when they change.
 */
export function useConnection(
  options: ConnectionOptions,
  onMessage: (msg: ServerMessage) => void,
  onState?: (data: StateData) => void,
): Connection {
  const [status, setStatus] = useReducer(statusReducer, DISCONNECTED);
  const [service, setService] = useState<WebSocketService | null>(null);
  const latest = useRef({ options, onMessage, onState });
  latest.current = { options, onMessage, onState };

  const enabled = options.enabled !== false;
  const types = Array.isArray(options.types) ? options.types.join(',') : options.types ?? null;
  const connectionKey = JSON.stringify([
    options.url ?? null,
    options.path ?? null,
    options.token === undefined ? '\u0000page' : options.token,
    options.auth ?? null,
    typeof options.getToken === 'function',
    types,
    options.baseDelayMs ?? null,
    options.maxDelayMs ?? null,
    options.maxAttempts ?? null,
    options.healthyAfterMs ?? null,
    options.heartbeatMs ?? null,
    options.pongTimeoutMs ?? null,
    options.transport ?? null,
    options.sseUrl ?? null,
    typeof options.fetch === 'function',
    options.state ?? null,
  ]);
  const impl = options.WebSocket || options.WebSocketImpl;
  const timers = options.timers;

  useEffect(() => {
    if (!enabled) return undefined;
    const o = latest.current.options;
    const svc = new WebSocketService({
      url: o.url,
      path: o.path,
      token: o.token,
      auth: o.auth,
      // the latest function, without reconnecting when a render makes a new one
      getToken: typeof o.getToken === 'function' ? () => latest.current.options.getToken!() : null,
      types: o.types,
      since: o.since,
      baseDelayMs: o.baseDelayMs,
      maxDelayMs: o.maxDelayMs,
      maxAttempts: o.maxAttempts,
      healthyAfterMs: o.healthyAfterMs,
      heartbeatMs: o.heartbeatMs,
      pongTimeoutMs: o.pongTimeoutMs,
      random: o.random,
      WebSocket: impl,
      transport: o.transport,
      sseUrl: o.sseUrl,
      // the latest function, as getToken
      fetch: typeof o.fetch === 'function' ? (url, init) => latest.current.options.fetch!(url, init) : undefined,
      location: o.location,
      timers,
      state: o.state,
    });
    svc.onStateChange((state, prev) => {
      setStatus(statusOf(svc, { status: state }));
      latest.current.options.onStateChange?.(state, prev);
    });
    svc.on('client:reconnecting', (d) => setStatus(statusOf(svc, { attempt: d.attempt })));
    svc.on('client:transport', (t) => setStatus(statusOf(svc, { transport: t })));
    svc.on('client:state_phase', (phase) => setStatus(statusOf(svc, { statePhase: phase })));
    svc.on('*', (_data, msg) => {
      latest.current.onMessage(msg);
      latest.current.options.onMessage?.(msg);
    });
    svc.on('state', (data) => {
      latest.current.onState?.(data);
      latest.current.options.onState?.(data);
    });
    svc.on('client:resync', (data) => latest.current.options.onResync?.(data));
    setService(svc);
    setStatus(statusOf(svc));
    svc.connect();
    return () => {
      svc.destroy();
      setService((cur) => (cur === svc ? null : cur));
      setStatus(DISCONNECTED);
    };
  }, [enabled, connectionKey, impl, timers]);

  const retry = useCallback(() => { service?.retry(); }, [service]);
  return {
    status: status.status,
    attempt: status.attempt,
    transport: status.transport,
    statePhase: status.statePhase,
    service,
    retry,
  };
}
