//! One client's connection, from greeting to close.
//!
//! A single task per client owns the socket and `select!`s over: the hub's
//! broadcast, the client's frames, the ping timer and the node's shutdown.
//! One task (not a reader and a writer) keeps idle connections small.
//!
//! Order on the wire, per the spec: the `analytics_update` greeting; with
//! `?since=`, the replay and the `recovery` frame; then live. The client
//! joined the broadcast *before* the history was read, so nothing published
//! meanwhile is lost; the `seam` (the last id the replay covered) drops the
//! overlap, so nothing arrives twice.
//!
//! A replay streams the history page by page (memory bounded by a page, not
//! by the history), holds one of the node's few replay permits while it
//! runs (a client that cannot get one in time is closed with 1013 and
//! retries), and stops at shutdown. `recovered: true` is sent only when every
//! page continued the previous one with nothing trimmed in between.
//!
//! Slow clients: the broadcast ring holds `CLIENT_BUFFER` events; a client
//! that falls further behind is closed with 1013 and counted — it can
//! reconnect with `?since=` and lose nothing the history still holds. A
//! write that blocks longer than `WRITE_TIMEOUT_MS` drops the client too.
//!
//! A token is good until its `exp` (plus the leeway): then the session
//! closes with 4001 "token expired". The client fetches a fresh token and
//! resumes with `?since=`, losing nothing the history holds.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, close_code};
use chrono::Utc;
use futures_util::SinkExt;
use metrics::counter;
use shared::client::{self, ClientCommand, codes};
use shared::{EventId, Position, TypeFilter};
use tokio::sync::Semaphore;
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::time::{Instant, sleep_until, timeout};
use tokio_util::sync::CancellationToken;

use super::{ClientParams, Resume};
use crate::bus::{Bus, PAGE, Standing};
use crate::hub::{Frame, Hub, Snapshot};
use crate::rate::{Bucket, burst_for};
use crate::state::AppState;
use crate::telemetry::{
    BROADCAST_LATENCY, CLIENT_ERRORS, CONNECTIONS_CLOSED, CONNECTIONS_OPENED, RECOVERIES_FAILED,
    REPLAYED_EVENTS, REPLAYS, REPLAYS_DEFERRED, SLOW_CLIENT_DISCONNECTS, Throttle,
};

/// Most frames written before one flush (one syscall for many small frames).
const MAX_BATCH: usize = 64;
/// How long a close frame may take to go out before the socket is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Messages read, at most, while waiting for the client's close reply.
const CLOSE_DRAIN_MESSAGES: usize = 64;
/// The close code of a connection whose token expired (4000-4999: for
/// applications, RFC 6455 §7.4.2).
pub const TOKEN_EXPIRED: u16 = 4001;
/// How long a resume waits for one of the node's replay permits before it
/// is told to come back (1013).
const REPLAY_QUEUE_WAIT: Duration = Duration::from_secs(5);

/// Failed replays are logged once per interval, with how many were not.
static REPLAY_FAILURES: Throttle = Throttle::new(Duration::from_secs(10));

/// Why a connection ended: the `reason` label of the closed counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    ClientClose,
    ClientGone,
    SlowClient,
    PingTimeout,
    WriteTimeout,
    MessageTooLarge,
    RateLimited,
    Shutdown,
    /// Too many replays running on this node: retry shortly.
    ReplayBusy,
    /// A text frame (or close reason) that is not UTF-8.
    InvalidData,
    /// The client's token passed its `exp` (plus the leeway).
    TokenExpired,
    Error,
}

impl Ended {
    fn label(self) -> &'static str {
        match self {
            Ended::ClientClose => "client_close",
            Ended::ClientGone => "client_gone",
            Ended::SlowClient => "slow_client",
            Ended::PingTimeout => "ping_timeout",
            Ended::WriteTimeout => "write_timeout",
            Ended::MessageTooLarge => "message_too_large",
            Ended::RateLimited => "rate_limited",
            Ended::Shutdown => "shutdown",
            Ended::ReplayBusy => "replay_busy",
            Ended::InvalidData => "invalid_data",
            Ended::TokenExpired => "token_expired",
            Ended::Error => "error",
        }
    }

    /// The close frame we send, if the peer can still read one.
    fn close_frame(self) -> Option<(u16, &'static str)> {
        match self {
            Ended::Shutdown => Some((close_code::AWAY, "server shutting down; reconnect")),
            Ended::SlowClient => Some((close_code::AGAIN, "too slow; reconnect with ?since=")),
            Ended::ReplayBusy => Some((close_code::AGAIN, "busy; reconnect with ?since= shortly")),
            Ended::MessageTooLarge => Some((close_code::SIZE, "message too large")),
            Ended::RateLimited => Some((close_code::POLICY, "message rate limit exceeded")),
            Ended::PingTimeout => Some((close_code::POLICY, "no pong")),
            Ended::InvalidData => Some((close_code::INVALID, "invalid UTF-8")),
            Ended::TokenExpired => Some((TOKEN_EXPIRED, "token expired")),
            Ended::Error => Some((close_code::PROTOCOL, "protocol error")),
            Ended::ClientClose | Ended::ClientGone | Ended::WriteTimeout => None,
        }
    }
}

/// What a session needs from its node, and nothing more: the hub it reads,
/// the bus it replays from, the replay permits, the shutdown signal, and
/// its limits.
pub struct SessionContext {
    pub hub: Arc<Hub>,
    pub bus: Arc<dyn Bus>,
    pub replays: Arc<Semaphore>,
    pub shutdown: CancellationToken,
    pub limits: SessionLimits,
}

/// The per-client numbers from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
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

pub async fn run(socket: WebSocket, ctx: SessionContext, params: ClientParams) {
    counter!(CONNECTIONS_OPENED).increment(1);
    let mut session = Session {
        socket,
        write_timeout: ctx.limits.write_timeout,
        filter: params.filter,
        good_until: params.good_until.and_then(|at| {
            Instant::now().checked_add(
                at.duration_since(std::time::SystemTime::now())
                    .unwrap_or_default(),
            )
        }),
        seam: EventId::ZERO,
        inbound: Bucket::full(burst_for(ctx.limits.message_rate)),
        latency: metrics::histogram!(BROADCAST_LATENCY),
        state: &ctx,
    };
    let ended = session.serve(params.resume).await;
    // Counted when decided, not after the closing handshake's wait.
    counter!(CONNECTIONS_CLOSED, "reason" => ended.label()).increment(1);
    if matches!(ended, Ended::SlowClient | Ended::WriteTimeout) {
        counter!(SLOW_CLIENT_DISCONNECTS).increment(1);
    }
    session.close(ended).await;
    tracing::debug!(reason = ended.label(), "client disconnected");
}

struct Session<'a> {
    socket: WebSocket,
    state: &'a SessionContext,
    write_timeout: Duration,
    filter: TypeFilter,
    /// When the client's token expires (`None`: no token).
    good_until: Option<Instant>,
    /// The seam between what the client has (its greeting's position, or its
    /// `?since=` plus the replay) and the live stream: no live event at or
    /// before it is sent. Fixed once live: the hub sends each id once, and
    /// on a Redis Cluster a late event may carry a smaller id than the last.
    seam: EventId,
    /// The client's message allowance (`MESSAGE_RATE`).
    inbound: Bucket,
    /// `gateway_broadcast_latency_seconds`, looked up once per client.
    latency: metrics::Histogram,
}

impl Session<'_> {
    async fn serve(&mut self, resume: Resume) -> Ended {
        let sub = self.state.hub.subscribe();
        let mut rx = sub.rx;
        self.seam = sub.position.map_or(EventId::ZERO, |p| p.id);
        let greeting_id = sub.position.filter(|_| resume == Resume::Fresh);
        let greeting = Snapshot::frame(sub.analytics.as_deref(), greeting_id);
        if let Err(ended) = self.send_text(greeting.into()).await {
            return ended;
        }
        if resume != Resume::Fresh
            && let Err(ended) = self.replay(resume).await
        {
            return ended;
        }
        self.live(&mut rx).await
    }

    async fn replay(&mut self, resume: Resume) -> Result<(), Ended> {
        counter!(REPLAYS).increment(1);
        let (recovered, replayed) = match resume {
            Resume::Since(since) => self.replay_from(since).await?,
            Resume::Fresh | Resume::Malformed => (false, 0),
        };
        if !recovered {
            counter!(RECOVERIES_FAILED).increment(1);
        }
        counter!(REPLAYED_EVENTS).increment(replayed as u64);
        self.send_text(client::recovery(recovered, replayed, Utc::now()).into())
            .await
    }

    /// Streams the history after `since` to the client, page by page, up to
    /// where it stood at the first read (the live ring has what follows).
    /// Returns whether every event after `since` was sent, and how many.
    async fn replay_from(&mut self, since: Position) -> Result<(bool, usize), Ended> {
        let state = self.state;
        let permit = tokio::select! {
            permit = timeout(REPLAY_QUEUE_WAIT, state.replays.acquire()) => permit,
            () = state.shutdown.cancelled() => return Err(Ended::Shutdown),
        };
        let Ok(Ok(_permit)) = permit else {
            counter!(REPLAYS_DEFERRED).increment(1);
            return Err(Ended::ReplayBusy);
        };
        let mut cursor = since;
        let mut until = None;
        let mut replayed = 0;
        loop {
            let page = tokio::select! {
                page = state.bus.read_history(cursor, until, PAGE) => page,
                () = state.shutdown.cancelled() => return Err(Ended::Shutdown),
            };
            let page = match page {
                Ok(page) => page,
                Err(err) => {
                    if let Some(suppressed) = REPLAY_FAILURES.allow() {
                        tracing::warn!(%since, suppressed, "replay failed: {err}");
                    }
                    return Ok((false, replayed));
                }
            };
            match page.standing {
                Standing::Intact { top } => {
                    if until.is_none() {
                        // The client holds everything up to `since` already.
                        self.seam = self.seam.max(since.id);
                        until = Some(top);
                    }
                }
                Standing::Gone | Standing::OtherEpoch(_) => return Ok((false, replayed)),
            }
            for event in page.events {
                self.seam = self.seam.max(event.id);
                if self.filter.allows(&event.kind) {
                    self.feed(event.text.into()).await?;
                    replayed += 1;
                }
            }
            self.flush().await?;
            match page.last {
                Some(last) if !page.done => cursor.id = last,
                _ => return Ok((true, replayed)),
            }
        }
    }

    async fn live(&mut self, rx: &mut Receiver<Arc<Frame>>) -> Ended {
        let ping_interval = self.state.limits.ping_interval;
        let pong_timeout = self.state.limits.pong_timeout;
        let mut ping = tokio::time::interval_at(Instant::now() + ping_interval, ping_interval);
        let pong_deadline = sleep_until(Instant::now() + ping_interval);
        tokio::pin!(pong_deadline);
        let mut awaiting_pong = false;
        // Made once: a fresh `cancelled()` future on every turn costs a
        // registration per event per client.
        let shutdown = self.state.shutdown.clone();
        let shutdown = shutdown.cancelled();
        tokio::pin!(shutdown);
        let expiry = sleep_until(self.good_until.unwrap_or_else(Instant::now));
        tokio::pin!(expiry);
        let expires = self.good_until.is_some();
        loop {
            // Not `biased`: a busy broadcast must not starve the client's
            // pongs, or the ping deadline would drop a healthy client.
            let step = tokio::select! {
                () = &mut shutdown => Err(Ended::Shutdown),
                frame = rx.recv() => match frame {
                    Ok(frame) => self.forward(frame, rx).await,
                    Err(RecvError::Lagged(_)) => Err(Ended::SlowClient),
                    Err(RecvError::Closed) => Err(Ended::Shutdown),
                },
                inbound = self.socket.recv() => {
                    awaiting_pong = false;
                    self.on_inbound(inbound).await
                }
                _ = ping.tick() => {
                    if awaiting_pong {
                        Ok(())
                    } else {
                        awaiting_pong = true;
                        pong_deadline.as_mut().reset(Instant::now() + pong_timeout);
                        self.send(Message::Ping(Default::default())).await
                    }
                }
                () = &mut pong_deadline, if awaiting_pong => Err(Ended::PingTimeout),
                () = &mut expiry, if expires => Err(Ended::TokenExpired),
            };
            if let Err(ended) = step {
                return ended;
            }
        }
    }

    /// Writes `first` and whatever else is already waiting (up to a batch),
    /// then flushes once.
    async fn forward(
        &mut self,
        first: Arc<Frame>,
        rx: &mut Receiver<Arc<Frame>>,
    ) -> Result<(), Ended> {
        let mut batch = Vec::with_capacity(8);
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(frame) => batch.push(frame),
                Err(TryRecvError::Lagged(_)) => return Err(Ended::SlowClient),
                Err(TryRecvError::Empty | TryRecvError::Closed) => break,
            }
        }
        // Bit i set: batch[i] is for this client (MAX_BATCH fits in 64 bits).
        let mut wanted: u64 = 0;
        for (i, frame) in batch.iter().enumerate() {
            if self.wants(frame) {
                wanted |= 1 << i;
            }
        }
        if wanted == 0 {
            return Ok(());
        }
        // The whole batch under one timeout: one timer per write, not per frame.
        let socket = &mut self.socket;
        let write = async {
            for (i, frame) in batch.iter().enumerate() {
                if wanted & (1 << i) != 0 {
                    socket.feed(Message::Text(frame.text.clone())).await?;
                }
            }
            socket.flush().await
        };
        match timeout(self.write_timeout, write).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(Ended::ClientGone),
            Err(_) => return Err(Ended::WriteTimeout),
        }
        let now = Utc::now();
        for (i, frame) in batch.iter().enumerate() {
            if wanted & (1 << i) != 0 {
                frame.sent.increment(1);
                let micros = (now - frame.published_at).num_microseconds().unwrap_or(0);
                self.latency.record(micros.max(0) as f64 / 1e6);
            }
        }
        Ok(())
    }

    /// Whether this client should get `frame`: a type it asked for, and not
    /// at or before the seam (it has that already).
    fn wants(&self, frame: &Frame) -> bool {
        self.filter.allows(&frame.kind) && frame.id.is_none_or(|id| id > self.seam)
    }

    async fn on_inbound(
        &mut self,
        inbound: Option<Result<Message, axum::Error>>,
    ) -> Result<(), Ended> {
        match inbound {
            None => Err(Ended::ClientGone),
            Some(Err(err)) => Err(classify(err)),
            Some(Ok(Message::Close(_))) => Err(Ended::ClientClose),
            // Control frames count too: a ping flood costs a pong each.
            Some(Ok(_)) if !self.within_rate() => Err(Ended::RateLimited),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => Ok(()),
            Some(Ok(Message::Text(text))) => match client::parse_command(&text) {
                Some(ClientCommand::Ping) => self.send_text(client::pong(Utc::now()).into()).await,
                None => {
                    self.reply_error(codes::UNKNOWN_MESSAGE, "unknown message; send \"ping\"")
                        .await
                }
            },
            Some(Ok(Message::Binary(_))) => {
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
        let rate = self.state.limits.message_rate;
        rate == 0.0 || self.inbound.take(rate, burst_for(rate))
    }

    async fn reply_error(&mut self, code: &'static str, message: &str) -> Result<(), Ended> {
        counter!(CLIENT_ERRORS, "code" => code).increment(1);
        self.send_text(client::error(code, message, Utc::now()).into())
            .await
    }

    async fn send_text(&mut self, text: Utf8Bytes) -> Result<(), Ended> {
        self.send(Message::Text(text)).await
    }

    async fn send(&mut self, message: Message) -> Result<(), Ended> {
        self.write(|socket| socket.send(message)).await
    }

    async fn feed(&mut self, text: Utf8Bytes) -> Result<(), Ended> {
        self.write(|socket| socket.feed(Message::Text(text))).await
    }

    async fn flush(&mut self) -> Result<(), Ended> {
        self.write(|socket| socket.flush()).await
    }

    /// Runs one write with the write timeout: a client that does not read
    /// cannot hold its task (or its memory) forever.
    async fn write<'s, F, Fut>(&'s mut self, op: F) -> Result<(), Ended>
    where
        F: FnOnce(&'s mut WebSocket) -> Fut,
        Fut: std::future::Future<Output = Result<(), axum::Error>> + 's,
    {
        match timeout(self.write_timeout, op(&mut self.socket)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Ended::ClientGone),
            Err(_) => Err(Ended::WriteTimeout),
        }
    }

    /// The closing handshake (RFC 6455), boundedly: a client's close frame
    /// is answered (tungstenite queued the echo of its code, or 1002 for a
    /// code that is not allowed; it goes out with this flush); our own close
    /// frame is sent, then input is read until the client's close arrives,
    /// so unread input never turns the close into a TCP reset.
    async fn close(&mut self, ended: Ended) {
        let socket = &mut self.socket;
        let handshake = async {
            if ended == Ended::ClientClose {
                let _ = socket.flush().await;
                return;
            }
            let Some((code, reason)) = ended.close_frame() else {
                return;
            };
            let frame = CloseFrame {
                code,
                reason: Utf8Bytes::from_static(reason),
            };
            if socket.send(Message::Close(Some(frame))).await.is_err() {
                return;
            }
            // A bounded drain: a client still flooding after its close frame
            // gets no more of the node's time (its reset is its own doing).
            for _ in 0..CLOSE_DRAIN_MESSAGES {
                match socket.recv().await {
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                    Some(Ok(_)) => {}
                }
            }
        };
        let _ = timeout(CLOSE_TIMEOUT, handshake).await;
    }
}

/// Sorts a read error: an oversized message (close 1009), or a peer that
/// broke the protocol or vanished.
fn classify(err: axum::Error) -> Ended {
    let inner = err.into_inner();
    match inner.downcast_ref::<tungstenite::Error>() {
        Some(tungstenite::Error::Capacity(_)) => Ended::MessageTooLarge,
        // tungstenite reports a text frame and a close reason that are not
        // UTF-8 alike; both close with 1007 (inconsistent data).
        Some(tungstenite::Error::Utf8(_)) => Ended::InvalidData,
        Some(tungstenite::Error::Protocol(
            tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
        )) => Ended::ClientGone,
        Some(tungstenite::Error::Protocol(_)) => Ended::Error,
        _ => Ended::ClientGone,
    }
}
