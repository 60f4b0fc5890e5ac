//! One client's connection, from greeting to close, for every transport.
//!
//! The sequence a dashboard relies on is written here once: the greeting,
//! the replay and its `recovery`, the seam to the live stream, live, and
//! the end. What differs per transport (the encoding, what the client may
//! send, the heartbeat, how a connection is closed) comes through
//! [`Transport`]: WebSocket (`ws::socket`) and Server-Sent Events (`sse`).
//!
//! A single task per client reads the transport and `select!`s over: the
//! client's messages, its outbox needing a drain, the heartbeat timer, token
//! expiry and the node's shutdown. Live events do not pass through this task: the
//! node's fan-out writes them to the client's [`Outbox`] directly, and the
//! task wakes only when the socket could not take them at once. One task
//! (not a reader and a writer) keeps idle connections small.
//!
//! Order on the wire, per the spec: the `analytics_update` greeting; with
//! `?since=`, the replay and the `recovery` frame; with `?state=1` (fresh,
//! or a resume that could not recover), the keyed state and its `state`
//! marker; then live. The client
//! joined the broadcast *before* the history was read, so nothing published
//! meanwhile is lost; the `seam` (the last id the replay covered) drops the
//! overlap, so nothing arrives twice.
//!
//! A replay streams the history page by page (memory bounded by a page, not
//! by the history). Each page's read holds one of the node's few replay
//! permits, and only the read: a socket that does not take its page holds
//! no permit while the session waits for it, so clients that never read
//! cannot starve the node's resumes. A resume with nothing to replay (its
//! `since` is where the node stands) reads nothing and takes no permit. A
//! client that cannot get a permit in time is closed with 1013 and retries;
//! a replay stops at shutdown. `recovered: true` is sent only when every
//! page continued the previous one with nothing trimmed in between.
//!
//! Before it is live a client is a place in the node's ring; if its greeting
//! and replay took so long that the ring no longer holds what arrived
//! meanwhile, it reads the history again from its seam (a few times at
//! most), so a slow replay costs time, not events.
//!
//! Slow clients: the outbox has a budget of unsent bytes and age
//! (`CLIENT_BUFFER_BYTES`, `WRITE_TIMEOUT_MS`); a client past it is closed
//! with 1013 and counted — it can reconnect with `?since=` and lose nothing
//! the history still holds.
//!
//! A token is good until its `exp` (plus the leeway): then the session
//! closes with 4001 "token expired". The client fetches a fresh token and
//! resumes with `?since=`, losing nothing the history holds.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use metrics::counter;
use shared::client::{self, ClientCommand, codes};
use shared::{EventId, Position, TypeFilter};
use tokio::sync::Semaphore;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use self::clock::{Clock, Due};
use self::ended::Ended;
use crate::bus::Bus;
use crate::connect::{ClientParams, Resume};
use crate::hub::{Behind, Hub, Snapshot};
use crate::rate::{Bucket, burst_for};
use crate::state::AppState;
use crate::telemetry::{
    CLIENT_ERRORS, CONNECTIONS_CLOSED, CONNECTIONS_OPENED, SLOW_CLIENT_DISCONNECTS,
};
use crate::transport::outbox::{DrainError, Outbox, Status};
use crate::transport::{Encoding, Inbound, Transport};

mod catch_up;
pub mod clock;
pub mod ended;

/// How many times a client about to go live reads the history again because
/// the ring no longer held what arrived during its replay.
const CATCH_UP_ROUNDS: usize = 3;

/// What a session needs from its node, and nothing more: the hub it reads,
/// the bus it replays from, the replay permits, the shutdown signal, and
/// its limits.
pub struct SessionContext {
    pub hub: Arc<Hub>,
    pub bus: Arc<dyn Bus>,
    pub replays: Arc<Semaphore>,
    pub state_sends: Arc<Semaphore>,
    pub shutdown: CancellationToken,
    pub limits: SessionLimits,
}

/// The per-client numbers from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    /// `WRITE_TIMEOUT_MS`: the age a client's oldest unsent byte may reach.
    pub write_timeout: Duration,
    pub ping_interval: Duration,
    pub pong_timeout: Duration,
    /// `MESSAGE_RATE` (0: no limit).
    pub message_rate: f64,
}

impl SessionContext {
    pub fn of(state: &AppState) -> Self {
        let config = &state.config;
        Self {
            hub: state.hub.clone(),
            bus: state.bus.clone(),
            replays: state.replays.clone(),
            state_sends: state.state_sends.clone(),
            shutdown: state.shutdown.clone(),
            limits: SessionLimits {
                write_timeout: config.write_timeout(),
                ping_interval: config.ping_interval(),
                pong_timeout: config.pong_timeout(),
                message_rate: config.message_rate,
            },
        }
    }
}

/// Serves one client until it ends. Not an `async fn`: the session is
/// built before the future, so the future holds it once (an `async fn`
/// keeps its arguments beside what it builds from them, for every idle
/// connection's whole life).
pub fn run<T: Transport>(
    transport: T,
    outbox: Arc<Outbox>,
    ctx: SessionContext,
    params: ClientParams,
) -> impl Future<Output = ()> + Send {
    counter!(CONNECTIONS_OPENED, "transport" => transport.encoding().label()).increment(1);
    let resume = params.resume;
    let wants_state = params.state;
    let mut session = Session {
        encoding: transport.encoding(),
        transport,
        outbox,
        filter: params.filter,
        sees_analytics: params.sees_analytics,
        good_until: params.good_until.and_then(|at| {
            Instant::now().checked_add(
                at.duration_since(std::time::SystemTime::now())
                    .unwrap_or_default(),
            )
        }),
        seam: EventId::ZERO,
        ring_seam: None,
        state_reset: None,
        inbound: Bucket::full(burst_for(ctx.limits.message_rate)),
        ctx,
    };
    async move {
        let ended = session.serve(resume, wants_state).await;
        // Counted when decided, not after the closing handshake's wait.
        counter!(CONNECTIONS_CLOSED, "reason" => ended.label()).increment(1);
        if matches!(ended, Ended::SlowClient | Ended::WriteTimeout) {
            counter!(SLOW_CLIENT_DISCONNECTS).increment(1);
        }
        session.transport.close(&session.outbox, ended).await;
        tracing::debug!(reason = ended.label(), "client disconnected");
    }
}

struct Session<T> {
    transport: T,
    /// How its own messages are written (the transport's).
    encoding: Encoding,
    /// The socket's write side, shared with the fan-out once live.
    outbox: Arc<Outbox>,
    ctx: SessionContext,
    filter: TypeFilter,
    /// False: the token's `types` claim excludes analytics, so the greeting
    /// carries `data: {}`.
    sees_analytics: bool,
    /// When the client's token expires (`None`: no token).
    good_until: Option<Instant>,
    /// The seam between what the client has (its greeting's position, or its
    /// `?since=` plus the replay) and the live stream: no live event at or
    /// before it is sent. Fixed once live: the hub sends each id once, and
    /// on a Redis Cluster a late event may carry a smaller id than the last.
    seam: EventId,
    /// What the ring's events are compared with instead of `seam` when the
    /// client was sent `state` ([`crate::hub::Joined::state_seam`]); gone
    /// once a catch-up reads the history from `seam`.
    ring_seam: Option<EventId>,
    /// With `state`: cancelled when the node's state changed in a way the
    /// live stream did not carry; the session then ends (1012).
    state_reset: Option<CancellationToken>,
    /// The client's message allowance (`MESSAGE_RATE`).
    inbound: Bucket,
}

impl<T: Transport> Session<T> {
    async fn serve(&mut self, resume: Resume, wants_state: bool) -> Ended {
        let hub = self.ctx.hub.clone();
        let mut sub = if resume == Resume::Fresh && wants_state {
            hub.subscribe_with_state()
        } else {
            hub.subscribe()
        };
        self.seam = sub.position.map_or(EventId::ZERO, |p| p.id);
        // With state, the position comes with its end (the marker): a
        // client cut off before it has no position to resume from.
        let greeting_id = sub
            .position
            .filter(|_| resume == Resume::Fresh && !wants_state);
        let analytics = sub.analytics.as_deref().filter(|_| self.sees_analytics);
        let greeting = Snapshot::frame(analytics, greeting_id);
        if let Err(ended) = self.send_text(&greeting, greeting_id).await {
            return ended;
        }
        // Boxed, here and on the live loop's rarer paths: a future held
        // inline is held by every idle connection for its whole life.
        let needs_state = match resume {
            Resume::Fresh => wants_state,
            _ => match Box::pin(self.replay(resume, sub.position)).await {
                // A resume that could not recover gets the state instead
                // (when asked for), as of now: the client replaces what
                // it had with it.
                Ok(recovered) => wants_state && !recovered,
                Err(ended) => return ended,
            },
        };
        if needs_state {
            if resume != Resume::Fresh {
                sub = hub.subscribe_with_state();
            }
            let state = sub.state.take().unwrap_or_default();
            self.state_reset = sub.state_reset.take();
            let sent = self.send_state(state, sub.state_position, sub.state_seam);
            if let Err(ended) = Box::pin(sent).await {
                return ended;
            }
        }
        self.live(sub.next_seq, sub.position).await
    }

    /// Hands the client to the fan-out (from its place in the ring, taken
    /// before its greeting), then serves it until it ends.
    async fn live(&mut self, mut next_seq: u64, mut joined: Option<Position>) -> Ended {
        let outbox = self.outbox.clone();
        let mut rounds = 0;
        // Leaves the fan-out when dropped, before the close frame is queued.
        let _live = loop {
            let hub = &self.ctx.hub;
            match hub.go_live(
                next_seq,
                outbox.clone(),
                self.encoding,
                &self.filter,
                self.ring_seam.unwrap_or(self.seam),
            ) {
                Ok(live) => break live,
                Err(Behind) if rounds < CATCH_UP_ROUNDS => rounds += 1,
                Err(Behind) => return Ended::SlowClient,
            }
            // The ring no longer holds what arrived since the client joined:
            // join again, and read what it lacks from the history.
            let Some(epoch) = joined.map(|p| p.epoch) else {
                return Ended::SlowClient;
            };
            let sub = hub.subscribe();
            (next_seq, joined) = (sub.next_seq, sub.position);
            self.ring_seam = None;
            match Box::pin(self.replay_from(Position::new(epoch, self.seam))).await {
                Ok((true, _)) => {}
                Ok((false, _)) => return Ended::SlowClient,
                Err(ended) => return ended,
            }
        };
        // One timer for pings, the pong deadline and the token's expiry.
        let limits = &self.ctx.limits;
        let mut clock = Clock::new(
            Instant::now(),
            limits.ping_interval,
            limits.pong_timeout,
            self.good_until,
        );
        let timer = sleep_until(clock.next());
        tokio::pin!(timer);
        // Made once: a fresh `cancelled()` future on every turn costs a
        // registration per turn.
        let shutdown = self.ctx.shutdown.clone();
        let shutdown = shutdown.cancelled();
        tokio::pin!(shutdown);
        // Boxed: two words for the many clients without state (a box of
        // `pending` allocates nothing).
        let mut reset: std::pin::Pin<Box<dyn Future<Output = ()> + Send>> =
            match self.state_reset.clone() {
                Some(reset) => Box::pin(reset.cancelled_owned()),
                None => Box::pin(std::future::pending()),
            };
        loop {
            // Not `biased`: a busy outbox must not starve the client's
            // pongs, or the ping deadline would drop a healthy client.
            let step = tokio::select! {
                () = &mut shutdown => Err(Ended::Shutdown),
                () = &mut reset => Err(Ended::StateReset),
                () = outbox.ready.notified() => Box::pin(self.flush()).await,
                inbound = self.transport.next() => {
                    clock.heard();
                    Box::pin(self.on_inbound(inbound)).await
                }
                () = &mut timer => match clock.due(Instant::now()) {
                    Due::Nothing => Ok(()),
                    Due::Ping => {
                        let heartbeat = self.transport.heartbeat();
                        if !heartbeat.answered {
                            clock.heard();
                        }
                        Box::pin(self.send(heartbeat.bytes)).await
                    }
                    Due::PongOverdue => Err(Ended::PingTimeout),
                    Due::Expired => Err(Ended::TokenExpired),
                },
            };
            if let Err(ended) = step {
                return ended;
            }
            // Re-armed when the deadline moved, and always once fired: a
            // fired timer left as it is would be ready again at once.
            let next = clock.next();
            if next != timer.deadline() || timer.is_elapsed() {
                timer.as_mut().reset(next);
            }
        }
    }

    async fn on_inbound(&mut self, inbound: Inbound) -> Result<(), Ended> {
        match inbound {
            Inbound::Ended(ended) => Err(ended),
            // Control frames count too: a ping flood costs a pong each.
            _ if !self.within_rate() => Err(Ended::RateLimited),
            // The transport answers control messages itself.
            Inbound::Control => Ok(()),
            Inbound::Text(text) => match client::parse_command(&text) {
                Some(ClientCommand::Ping) => self.send_text(&client::pong(Utc::now()), None).await,
                None => {
                    self.reply_error(codes::UNKNOWN_MESSAGE, "unknown message; send \"ping\"")
                        .await
                }
            },
            Inbound::Binary => {
                self.reply_error(
                    codes::BINARY_NOT_SUPPORTED,
                    "binary frames are not supported",
                )
                .await
            }
        }
    }

    /// Takes one message (data or control) from the client's allowance.
    fn within_rate(&mut self) -> bool {
        let rate = self.ctx.limits.message_rate;
        rate == 0.0 || self.inbound.take(rate, burst_for(rate))
    }

    async fn reply_error(&mut self, code: &'static str, message: &str) -> Result<(), Ended> {
        counter!(CLIENT_ERRORS, "code" => code).increment(1);
        self.send_text(&client::error(code, message, Utc::now()), None)
            .await
    }

    /// Sends one of the session's own messages; `id`: its position, if it
    /// has one.
    async fn send_text(&mut self, text: &str, id: Option<Position>) -> Result<(), Ended> {
        self.send(self.encoding.encode(text, id)).await
    }

    async fn send(&mut self, frame: Bytes) -> Result<(), Ended> {
        self.feed(frame)?;
        self.flush().await
    }

    /// Queues a frame, written at once if the socket takes it; the next
    /// [`Self::flush`] writes out the rest.
    fn feed(&mut self, frame: Bytes) -> Result<(), Ended> {
        self.outbox.push_frame(frame).map_err(|_| Ended::ClientGone)
    }

    /// Writes out what the outbox holds (the session's frames, events the
    /// socket did not take at once, tungstenite's replies), giving up when
    /// its oldest unsent byte is older than `WRITE_TIMEOUT_MS`: a client
    /// that does not read cannot hold its task (or its memory) forever.
    /// Also how the session learns that the fan-out found the client too
    /// slow, or its socket gone.
    async fn flush(&mut self) -> Result<(), Ended> {
        match self.outbox.status() {
            Status::Failed => return Err(Ended::ClientGone),
            Status::Overflowed => return Err(Ended::SlowClient),
            Status::Drain => {}
        }
        match self
            .outbox
            .drain_within(self.ctx.limits.write_timeout)
            .await
        {
            Ok(()) if self.outbox.status() == Status::Overflowed => Err(Ended::SlowClient),
            Ok(()) => Ok(()),
            Err(DrainError::Gone) => Err(Ended::ClientGone),
            Err(DrainError::TooOld) => Err(Ended::WriteTimeout),
        }
    }
}
