// @vitest-environment jsdom
// useWebSocket() as a drop-in for TutorMax's hook (fake socket, fake timers): where it
// connects with no arguments, the state TutorMax's dashboard reads, built from
// TutorMax-shaped messages, the two local actions, and what it keeps from our client
// (resume with ?since=, backoff, heartbeat, retry, cleanup on unmount).
import { act, cleanup, renderHook } from '@testing-library/react';
import { useWebSocket, DEFAULT_WS_URL, type UseWebSocketOptions } from '@dashboard-gateway/client/react';
import { FakeWebSocket, env } from './helpers/fake-ws.js';

beforeEach(() => {
  FakeWebSocket.reset();
  vi.useFakeTimers();
  vi.stubGlobal('WebSocket', FakeWebSocket);
  vi.stubEnv('NEXT_PUBLIC_WS_URL', '');
});
afterEach(() => {
  cleanup();
  vi.useRealTimers();
  vi.unstubAllEnvs();
});

function mount(options?: UseWebSocketOptions) {
  const hook = renderHook(() => (options ? useWebSocket(options) : useWebSocket()));
  const ws = FakeWebSocket.last;
  act(() => ws.open());
  return { ...hook, ws };
}

const at = (s: number) => `2026-11-25T10:00:${String(s).padStart(2, '0')}.000Z`;
const msg = (type: string, data: unknown, id: string, s: number) => ({ ...env(type, data, id), timestamp: at(s) });

describe('where useWebSocket() connects', () => {
  it('with no arguments and no NEXT_PUBLIC_WS_URL: ws://localhost:8000/ws/dashboard', () => {
    renderHook(() => useWebSocket());
    expect(FakeWebSocket.last.url).toBe('ws://localhost:8000/ws/dashboard?state=1'); // opens on the keyed state
    expect(DEFAULT_WS_URL).toBe('ws://localhost:8000/ws/dashboard');
  });

  it('with no arguments: NEXT_PUBLIC_WS_URL when set', () => {
    vi.stubEnv('NEXT_PUBLIC_WS_URL', 'wss://gw.example.com/ws/dashboard');
    renderHook(() => useWebSocket());
    expect(FakeWebSocket.last.url).toBe('wss://gw.example.com/ws/dashboard?state=1');
  });

  it('options override the URL and the rest', () => {
    vi.stubEnv('NEXT_PUBLIC_WS_URL', 'wss://ignored.example/ws/dashboard');
    renderHook(() => useWebSocket({ url: 'ws://gw.test/ws/dashboard', types: ['alert', 'intervention'], token: 'jwt' }));
    // the token goes in the first frame, not in the URL
    expect(FakeWebSocket.last.url).toBe('ws://gw.test/ws/dashboard?auth=frame&types=alert,intervention&state=1');
    act(() => FakeWebSocket.last.open());
    expect(FakeWebSocket.last.sent).toEqual([JSON.stringify({ type: 'auth', token: 'jwt' })]);
  });

  it('`path` alone means the page host, as WebSocketService does', () => {
    renderHook(() => useWebSocket({ path: '/ws/dashboard', location: { protocol: 'https:', host: 'ops.example', search: '' } }));
    expect(FakeWebSocket.last.url).toBe('wss://ops.example/ws/dashboard?state=1');
  });
});

describe('the state TutorMax reads', () => {
  it('starts disconnected and empty; connected follows the socket', () => {
    const { result } = renderHook(() => useWebSocket());
    expect(result.current.state).toEqual({
      connected: false, analytics: null, tutorMetrics: [], alerts: [], interventionTasks: [], lastUpdate: null,
    });
    act(() => FakeWebSocket.last.open());
    expect(result.current.state.connected).toBe(true);
    expect(result.current.status).toBe('connected');
    act(() => FakeWebSocket.last.drop());
    expect(result.current.state.connected).toBe(false);
    expect(result.current.status).toBe('reconnecting');
  });

  it('analytics: the latest snapshot; the greeting {} counts; a pong never does', () => {
    const { result, ws } = mount();
    act(() => ws.msg(msg('analytics_update', {}, 'e1:1-0', 1)));
    expect(result.current.state.analytics).toEqual({});
    const snapshot = {
      total_tutors: 120, active_tutors: 97,
      performance_distribution: { 'Needs Support': 8, Developing: 30, Strong: 55, Exemplary: 27 },
      avg_rating: 4.4, avg_engagement_score: 0.81, total_sessions_7day: 640, total_sessions_30day: 2710,
      alerts_count: { critical: 2, warning: 5, info: 9 },
    };
    act(() => ws.msg(msg('analytics_update', snapshot, 'e1:2-0', 2)));
    act(() => ws.msg({ type: 'analytics_update', data: { pong: true }, timestamp: at(3) }));
    expect(result.current.state.analytics).toEqual(snapshot);
    expect(result.current.state.lastUpdate).toBe(at(2)); // the pong is not an update either
  });

  it('tutorMetrics: the latest per (tutor_id, window), 7day and 30day apart', () => {
    const { result, ws } = mount();
    act(() => {
      ws.msg(msg('metrics_update', { tutor_id: 't-1', window: '7day', avg_rating: 4.1, performance_tier: 'Strong' }, '1-0', 1));
      ws.msg(msg('metrics_update', { tutor_id: 't-1', window: '30day', avg_rating: 4.3, performance_tier: 'Strong' }, '2-0', 2));
      ws.msg(msg('metrics_update', { tutor_id: 't-2', window: '7day', avg_rating: 4.9, performance_tier: 'Exemplary' }, '3-0', 3));
      ws.msg(msg('metrics_update', { tutor_id: 't-1', window: '7day', avg_rating: 3.8, performance_tier: 'Developing' }, '4-0', 4));
    });
    expect(result.current.state.tutorMetrics.map((m) => [m.tutor_id, m.window, m.avg_rating, m.performance_tier])).toEqual([
      ['t-1', '7day', 3.8, 'Developing'],
      ['t-1', '30day', 4.3, 'Strong'],
      ['t-2', '7day', 4.9, 'Exemplary'],
    ]);
    expect(result.current.state.lastUpdate).toBe(at(4));
  });

  it('alerts: newest first, one per id (a repeated id is not a second alert)', () => {
    const { result, ws } = mount();
    act(() => {
      ws.msg(msg('alert', { id: 'al-1', alert_type: 'critical', severity: 'high', title: 'No-show spike', resolved: false }, '1-0', 1));
      ws.msg(msg('alert', { id: 'al-2', alert_type: 'warning', severity: 'medium', title: 'Rating drop', resolved: false }, '2-0', 2));
      ws.msg(msg('alert', { id: 'al-1', alert_type: 'critical', severity: 'high', title: 'No-show spike', resolved: false }, '3-0', 3));
      ws.msg(msg('alert', { alert_type: 'info', title: 'no id' }, '4-0', 4));
      ws.msg(msg('alert', { alert_type: 'info', title: 'no id either' }, '5-0', 5));
    });
    expect(result.current.state.alerts.map((a) => a.title))
      .toEqual(['no id either', 'no id', 'Rating drop', 'No-show spike']);
  });

  it('interventionTasks: one per id; a later message with the same id replaces it (a status change)', () => {
    const { result, ws } = mount();
    act(() => {
      ws.msg(msg('intervention', { id: 'task-1', tutor_id: 't-1', title: 'Coaching call', status: 'pending' }, '1-0', 1));
      ws.msg(msg('intervention', { id: 'task-2', tutor_id: 't-2', title: 'Training', status: 'pending' }, '2-0', 2));
      ws.msg(msg('intervention', { id: 'task-1', tutor_id: 't-1', title: 'Coaching call', status: 'in_progress' }, '3-0', 3));
    });
    expect(result.current.state.interventionTasks.map((t) => [t.id, t.status]))
      .toEqual([['task-1', 'in_progress'], ['task-2', 'pending']]);
    act(() => ws.msg(msg('intervention', { id: 'task-2', tutor_id: 't-2', title: 'Training', status: 'completed' }, '4-0', 4)));
    expect(result.current.state.interventionTasks.map((t) => [t.id, t.status]))
      .toEqual([['task-1', 'in_progress'], ['task-2', 'completed']]);
  });

  it('resolveAlert(id) marks that alert resolved, locally; a repeat of its id does not undo it', () => {
    const { result, ws } = mount();
    act(() => {
      ws.msg(msg('alert', { id: 'al-1', title: 'A', resolved: false }, '1-0', 1));
      ws.msg(msg('alert', { id: 'al-2', title: 'B', resolved: false }, '2-0', 2));
    });
    const before = result.current.state.alerts;
    act(() => result.current.resolveAlert('al-1'));
    expect(result.current.state.alerts.map((a) => [a.id, a.resolved])).toEqual([['al-2', false], ['al-1', true]]);
    expect(before[1].resolved).toBe(false); // new objects: React sees the change
    act(() => ws.msg(msg('alert', { id: 'al-1', title: 'A', resolved: false }, '3-0', 3)));
    expect(result.current.state.alerts.map((a) => [a.id, a.resolved])).toEqual([['al-2', false], ['al-1', true]]);
    act(() => result.current.resolveAlert('unknown'));
    expect(result.current.state.alerts).toHaveLength(2);
    expect(ws.sent).toEqual([]); // local only: nothing goes to the server
  });

  it('updateInterventionStatus(id, status) sets that task\'s status locally; the server\'s next word wins', () => {
    const { result, ws } = mount();
    act(() => {
      ws.msg(msg('intervention', { id: 'task-1', title: 'Coaching call', status: 'pending' }, '1-0', 1));
      ws.msg(msg('intervention', { id: 'task-2', title: 'Training', status: 'pending' }, '2-0', 2));
    });
    act(() => result.current.updateInterventionStatus('task-2', 'completed'));
    expect(result.current.state.interventionTasks.map((t) => [t.id, t.status]))
      .toEqual([['task-1', 'pending'], ['task-2', 'completed']]);
    act(() => ws.msg(msg('intervention', { id: 'task-2', title: 'Training', status: 'in_progress' }, '3-0', 3)));
    expect(result.current.state.interventionTasks[1].status).toBe('in_progress');
    expect(ws.sent).toEqual([]);
  });

  it('the actions are stable across renders (safe in effect dependencies and memoized children)', () => {
    const { result, ws } = mount();
    const { resolveAlert, updateInterventionStatus } = result.current;
    act(() => ws.msg(msg('alert', { id: 'al-1' }, '1-0', 1)));
    expect(result.current.resolveAlert).toBe(resolveAlert);
    expect(result.current.updateInterventionStatus).toBe(updateInterventionStatus);
  });
});

describe('what it keeps from this client', () => {
  it('resumes with ?since= after a drop; what the node replays arrives once', () => {
    const { result, ws } = mount();
    act(() => {
      ws.msg(msg('analytics_update', {}, 'e1:1-0', 1));
      ws.msg(msg('alert', { id: 'al-1', title: 'A' }, 'e1:2-0', 2));
    });
    act(() => ws.drop());
    act(() => { vi.advanceTimersByTime(30_000); });
    const next = FakeWebSocket.last;
    expect(next).not.toBe(ws);
    expect(next.url).toBe('ws://localhost:8000/ws/dashboard?since=e1%3A2-0&state=1');
    act(() => {
      next.open();
      next.msg(msg('analytics_update', {}, undefined as unknown as string, 5));
      next.msg(msg('alert', { id: 'al-1', title: 'A' }, 'e1:2-0', 2)); // already seen: dropped
      next.msg(msg('alert', { id: 'al-3', title: 'missed' }, 'e1:3-0', 3));
      next.msg({ type: 'recovery', data: { recovered: true, replayed: 1 }, timestamp: at(6) });
    });
    expect(result.current.state.alerts.map((a) => a.id)).toEqual(['al-3', 'al-1']);
    expect(result.current.state.connected).toBe(true);
  });

  it('counts every reconnection attempt, gives up after 10, and retry() starts over', () => {
    vi.spyOn(Math, 'random').mockReturnValue(0.5);
    // the WebSocket transport's backoff ('auto' would switch to SSE after a socket that never opened: sse.test.ts)
    const { result, ws } = mount({ transport: 'websocket' });
    act(() => ws.drop());
    const attempts = [result.current.attempt];
    for (let i = 0; i < 10; i++) {
      act(() => { vi.advanceTimersByTime(30_000); });
      act(() => FakeWebSocket.last.drop());
      attempts.push(result.current.attempt);
    }
    expect(attempts).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 10]);
    expect(result.current.status).toBe('disconnected');
    expect(vi.getTimerCount()).toBe(0);
    act(() => result.current.retry());
    act(() => FakeWebSocket.last.open());
    expect(result.current.state.connected).toBe(true);
  });

  it('heartbeat: pings every 15 s while connected', () => {
    const { ws } = mount();
    act(() => { vi.advanceTimersByTime(15_000); });
    expect(ws.sent).toEqual(['ping']);
  });

  it('unmount closes the socket (1000) and leaves no timer behind', () => {
    const { ws, unmount } = mount();
    act(() => { vi.advanceTimersByTime(15_000); });
    unmount();
    expect(ws.closed?.code).toBe(1000);
    expect(vi.getTimerCount()).toBe(0);
    vi.advanceTimersByTime(10 * 60_000);
    expect(FakeWebSocket.sockets).toHaveLength(1);
  });
});

// ---- type level: a page typed the way TutorMax's is compiles against the default state.
// These prop types restate the shapes TutorMax's components take (its lib/types), so
// `tsc` (run-tests.sh) fails if the drop-in's state stops fitting them.
type Tier = 'Needs Support' | 'Developing' | 'Strong' | 'Exemplary';
interface TmMetrics { tutor_id: string; tutor_name: string; window: '7day' | '30day' | '90day'; calculation_date: string;
  sessions_completed: number; avg_rating: number; first_session_success_rate: number; reschedule_rate: number;
  no_show_count: number; engagement_score: number; learning_objectives_met_pct: number; performance_tier: Tier }
interface TmAlert { id: string; tutor_id: string; tutor_name: string; alert_type: 'critical' | 'warning' | 'info';
  severity: 'high' | 'medium' | 'low'; title: string; message: string; timestamp: string; resolved: boolean;
  metrics?: Partial<TmMetrics> }
interface TmTask { id: string; tutor_id: string; tutor_name: string; task_type: 'coaching' | 'training' | 'review' | 'followup';
  title: string; description: string; priority: 'high' | 'medium' | 'low'; status: 'pending' | 'in_progress' | 'completed';
  created_at: string; due_date: string; assigned_to?: string }
interface TmAnalytics { total_tutors: number; active_tutors: number; performance_distribution: Record<Tier, number>;
  avg_rating: number; avg_engagement_score: number; total_sessions_7day: number; total_sessions_30day: number;
  alerts_count: { critical: number; warning: number; info: number } }
interface TmDashboardState { tutorMetrics: TmMetrics[]; alerts: TmAlert[]; interventionTasks: TmTask[];
  analytics: TmAnalytics | null; connected: boolean; lastUpdate: string | null }
declare function CriticalAlerts(p: { alerts: TmAlert[]; onResolve: (alertId: string) => void }): null;
declare function InterventionTaskList(p: { tasks: TmTask[]; onUpdateStatus: (taskId: string, status: 'pending' | 'in_progress' | 'completed') => void }): null;
declare function PerformanceTiers(p: { analytics: TmAnalytics | null; tutorMetrics: TmMetrics[] }): null;
export function TutorMaxShapedPage() {
  const { state, resolveAlert, updateInterventionStatus } = useWebSocket();
  const whole: TmDashboardState = state;
  return [
    CriticalAlerts({ alerts: state.alerts, onResolve: resolveAlert }),
    InterventionTaskList({ tasks: state.interventionTasks, onUpdateStatus: updateInterventionStatus }),
    PerformanceTiers({ analytics: whole.analytics, tutorMetrics: state.tutorMetrics }),
  ];
}
