// @vitest-environment jsdom
// The README's ten-line React example compiles (typecheck) and renders live data.
import { act, cleanup, render, screen } from '@testing-library/react';
import { afterEach, expect, it } from 'vitest';
import { useDashboardStream } from '../src/react.js';
import { FakeWebSocket, env } from './helpers/fake-ws.js';

afterEach(() => cleanup());

// ---- the README example, verbatim but for the import path and the injected fake socket
export function OpsDashboard() {
  const { state, analytics, alerts, interventions, metrics, retry } = useDashboardStream({ url: 'wss://gw.example.com/ws/dashboard', WebSocket: FakeWebSocket });
  return <main>
    <p>{state} {state === 'disconnected' && <button onClick={retry}>Retry</button>}</p>
    <h2>{analytics?.total_tutors ?? '–'} tutors · {Object.keys(metrics).length} reporting · {interventions.length} interventions</h2>
    <ul>{alerts.map((a) => <li key={a.id ?? a.timestamp}>{a.data.severity}: {a.data.message}</li>)}</ul>
  </main>;
}
// ----

it('renders the README example', () => {
  FakeWebSocket.reset();
  render(<OpsDashboard />);
  const ws = FakeWebSocket.last;
  act(() => {
    ws.open();
    ws.msg(env('analytics_update', { total_tutors: 12 }, '1-0'));
    ws.msg(env('metrics_update', { tutor_id: 't-1' }, '2-0'));
    ws.msg(env('intervention', { intervention_id: 'i-1' }, '3-0'));
    ws.msg(env('alert', { severity: 'critical', message: 'queue over SLA' }, '4-0'));
  });
  expect(screen.getByRole('heading').textContent).toBe('12 tutors · 1 reporting · 1 interventions');
  expect(screen.getByRole('listitem').textContent).toBe('critical: queue over SLA');
  expect(screen.queryByRole('button')).toBeNull();
  cleanup();
  expect(ws.closed?.code).toBe(1000);
});
