// @vitest-environment jsdom
// The README's React example compiles (typecheck) and renders live data. The
// component below is the README's code block; a test fails if the two ever
// differ (but for the fake socket this test injects).
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { act, cleanup, render, screen } from '@testing-library/react';
import { afterEach, expect, it, vi } from 'vitest';
import { useWebSocket } from '@dashboard-gateway/client/react';
import { FakeWebSocket, env } from './helpers/fake-ws.js';

afterEach(() => cleanup());

// ---- the README example, verbatim but for the injected fake socket
export function OpsDashboard() {
  const { state, status, attempt, retry, resolveAlert } = useWebSocket({ url: 'wss://gw.example.com/ws/dashboard', WebSocket: FakeWebSocket });
  return <main>
    <p>{status}{status === 'reconnecting' && ` (${attempt}/10)`} {status === 'disconnected' && <button onClick={retry}>Retry</button>}</p>
    <h2>{state.analytics?.total_tutors ?? '–'} tutors · {state.tutorMetrics.length} metrics · {state.interventionTasks.length} tasks</h2>
    <ul>{state.alerts.map((a) => <li key={a.id}>{a.title} {!a.resolved && <button onClick={() => resolveAlert(a.id)}>Resolve</button>}</li>)}</ul>
  </main>;
}
// ----

it('is the README example, line for line', () => {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const readme = fs.readFileSync(path.join(here, '..', 'README.md'), 'utf8');
  const block = readme.split('```tsx\n')[1].split('```')[0];
  const readmeComponent = block.slice(block.indexOf('export function OpsDashboard'));
  const source = fs.readFileSync(fileURLToPath(import.meta.url), 'utf8');
  const start = source.indexOf('export function OpsDashboard');
  const tested = source.slice(start, source.indexOf('// ----', start));
  expect(tested.replace(', WebSocket: FakeWebSocket', '').trim()).toBe(readmeComponent.trim());
});

it('renders the README example', () => {
  FakeWebSocket.reset();
  const { container } = render(<OpsDashboard />);
  const ws = FakeWebSocket.last;
  act(() => {
    ws.open();
    ws.msg(env('analytics_update', { total_tutors: 12 }, '1-0'));
    ws.msg(env('metrics_update', { tutor_id: 't-1', window: '7day' }, '2-0'));
    ws.msg(env('metrics_update', { tutor_id: 't-1', window: '30day' }, '3-0'));
    ws.msg(env('intervention', { id: 'task-1' }, '4-0'));
    ws.msg(env('alert', { id: 'al-1', title: 'queue over SLA', resolved: false }, '5-0'));
  });
  expect(container.querySelector('p')?.textContent).toBe('connected ');
  expect(screen.getByRole('heading').textContent).toBe('12 tutors · 2 metrics · 1 tasks');
  expect(screen.getByRole('listitem').textContent).toBe('queue over SLA Resolve');
  act(() => screen.getByRole('button').click());
  expect(screen.getByRole('listitem').textContent).toBe('queue over SLA ');
  cleanup();
  expect(ws.closed?.code).toBe(1000);
});

it('counts every reconnection attempt; Retry after the last', () => {
  // the WebSocket transport's backoff: without fetch, 'auto' cannot switch to SSE after a
  // socket that never opened (that switch: sse.test.ts)
  vi.stubGlobal('fetch', undefined);
  vi.useFakeTimers();
  FakeWebSocket.reset();
  const { container } = render(<OpsDashboard />);
  const label = () => container.querySelector('p')?.textContent;
  for (let n = 1; n <= 10; n++) {
    act(() => FakeWebSocket.last.drop());
    expect(label()).toBe(`reconnecting (${n}/10) `);
    act(() => { vi.advanceTimersByTime(30_000); });
  }
  act(() => FakeWebSocket.last.drop());
  expect(label()).toBe('disconnected Retry');
  act(() => screen.getByRole('button').click());
  act(() => FakeWebSocket.last.open());
  expect(label()).toBe('connected ');
  vi.useRealTimers();
});
