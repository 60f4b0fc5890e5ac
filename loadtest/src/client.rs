//! One WebSocket client: connect (optionally from a given local address),
//! wait for the greeting, then count every test event it receives.
//!
//! Each event's `data` carries the publisher's sequence number (`seq`) and
//! its send time in Unix nanoseconds (`t`); the client keeps a bitmap of the
//! sequence numbers it has seen, so duplicates and losses are exact, and the
//! latency is the receive time minus `t` (same machine clock).
//!
//! A filtered client (`--filtered-clients`) subscribes to types that are
//! never published: it only counts what it receives (nothing, if the
//! gateway filters right) and whether the server closed it.
//!
//! Every client reads through a [`Wire`], which counts the bytes from the
//! socket and, with `--deflate`, inflates permessage-deflate messages.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{FutureExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Semaphore, oneshot, watch};
use tokio::time::{Instant, sleep_until, timeout};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::http::Request;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::stats::{PublishCounts, Shard};
use crate::wire::{self, Wire};

type Ws = tokio_tungstenite::WebSocketStream<Wire<TcpStream>>;

/// Where the run stands; clients watch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Connecting,
    Running,
    /// Publishing has stopped; the last deliveries are awaited (no churn).
    Draining,
    Done,
}

/// How a churned client leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Churn {
    /// Drops the TCP socket, no WebSocket close (the kernel sends a FIN, or
    /// an RST if unread data was in the receive buffer).
    Drop,
    /// Sends a close frame, then drops the socket.
    Close,
    /// Stops reading (so never answers a ping) and holds the socket open
    /// for a while, then drops it.
    Silent(Duration),
}

/// A shard's connected clients that churn may pick: each entry wakes one
/// client. A client that ended on its own has dropped its receiver, so a
/// send to it fails and another is picked.
pub type ChurnPool = Arc<std::sync::Mutex<Vec<oneshot::Sender<Churn>>>>;

/// What a client needs to connect.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// `ws://host:port/path?query`, as sent in the handshake.
    pub url: String,
}

#[derive(Debug)]
pub struct ClientSpec {
    pub target: Arc<Target>,
    pub source_ip: Option<IpAddr>,
    pub slow: bool,
    /// Churn may pick this client once it is connected.
    pub churnable: bool,
    /// A replacement, connected while publishing: counted apart.
    pub late: bool,
    /// Subscribed to types the publisher never sends: counted apart.
    pub filtered: bool,
}

#[derive(Debug, Clone)]
pub struct Common {
    pub shard: Arc<Shard>,
    pub published: Arc<PublishCounts>,
    pub phase: watch::Receiver<Phase>,
    pub connect_gate: Arc<Semaphore>,
    pub connect_timeout: Duration,
    pub read_buffer: usize,
    pub slow_after: Duration,
    pub slow_rcvbuf: u32,
    pub churn_pool: ChurnPool,
    /// `--burst N`: a reading client notes when it has all N.
    pub burst: Option<u64>,
    /// `--deflate`: offer permessage-deflate.
    pub deflate: bool,
}

pub async fn run(spec: ClientSpec, common: Common) {
    let (started, connected) = {
        let _permit = common.connect_gate.acquire().await;
        // Handshake time, not time queued behind --connect-concurrency.
        let started = Instant::now();
        (
            started,
            timeout(common.connect_timeout, connect(&spec, &common)).await,
        )
    };
    let mut ws = match connected {
        Ok(Ok(ws)) => ws,
        Ok(Err(err)) => {
            fail(&common, &spec, &err.to_string());
            return;
        }
        Err(_) => {
            fail(&common, &spec, "connect timeout");
            return;
        }
    };
    // A replacement is owed every event handed to the publisher from now on.
    let owed_from = common.published.attempted.load(Ordering::Relaxed);
    {
        let mut counts = common.shard.lock();
        counts.wire_bytes_connect += ws.get_ref().bytes_read();
        counts.deflate_negotiated += u64::from(ws.get_ref().negotiated());
        let micros = started.elapsed().as_micros().max(1) as u64;
        if spec.filtered {
            counts.filtered_connected += 1;
        } else if spec.late {
            counts.late_connected += 1;
            let _ = counts.late_connect_time.record(micros);
        } else {
            counts.connected += 1;
            let _ = counts.connect_time.record(micros);
        }
        if spec.slow {
            counts.slow_clients += 1;
        }
    }
    let mut churn_rx = None;
    if spec.churnable {
        let (tx, rx) = oneshot::channel();
        common
            .churn_pool
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(tx);
        churn_rx = Some(rx);
    }
    let mut churned: Option<Churn> = None;

    let mut phase = common.phase.clone();
    let mut seen = Seen {
        owed_from,
        ..Seen::default()
    };
    let mut ended: Option<String> = None;
    let stall_at = sleep_until(far_future());
    tokio::pin!(stall_at);
    let mut stalled = false;
    if spec.slow && *phase.borrow() == Phase::Running {
        stall_at.as_mut().reset(Instant::now() + common.slow_after);
    }
    loop {
        tokio::select! {
            changed = phase.changed() => {
                let now = changed.map(|()| *phase.borrow_and_update()).unwrap_or(Phase::Done);
                match now {
                    Phase::Done => break,
                    // No churn while draining: the pool's senders stay but
                    // nobody sends on them any more.
                    Phase::Running if spec.slow => {
                        stall_at.as_mut().reset(Instant::now() + common.slow_after);
                    }
                    _ => {}
                }
            }
            () = &mut stall_at, if !stalled => {
                // Stop reading: the socket buffers fill and the gateway sees
                // a client that cannot keep up.
                stalled = true;
            }
            kind = churn_signal(&mut churn_rx), if churn_rx.is_some() => match kind {
                Some(kind) => {
                    churned = Some(kind);
                    break;
                }
                None => churn_rx = None,
            },
            message = ws.next(), if !stalled && ended.is_none() => {
                ended = on_message(message, &spec, &mut seen, &common);
                // Then whatever else is already read or readable, without
                // going round the select (a new phase and churn future per
                // message): at a million deliveries a second that loop was
                // a good part of a client thread. Bounded, so the other
                // branches are looked at often enough.
                let mut more = READ_BATCH;
                while ended.is_none() && more > 0 {
                    let Some(message) = ws.next().now_or_never() else { break };
                    ended = on_message(message, &spec, &mut seen, &common);
                    more -= 1;
                }
                if ended.is_some() {
                    // Ended by the server: not churn's to pick any more.
                    churn_rx = None;
                }
            }
        }
    }

    if let Some(kind) = churned {
        {
            let mut counts = common.shard.lock();
            counts.wire_bytes += ws.get_ref().bytes_read();
            match kind {
                Churn::Drop => counts.churned_drop += 1,
                Churn::Close => counts.churned_close += 1,
                Churn::Silent(_) => counts.churned_silent += 1,
            }
            // Its deliveries leave the steady (or replacement) totals.
            if spec.late {
                counts.late_delivered -= seen.delivered;
                counts.late_duplicated -= seen.duplicated;
            } else {
                counts.delivered -= seen.delivered;
                counts.duplicated -= seen.duplicated;
                counts.churned_initial += 1;
            }
            counts.churned_delivered += seen.delivered;
            counts.churned_duplicated += seen.duplicated;
        }
        match kind {
            // Gone: the socket is closed with no WebSocket close frame.
            Churn::Drop => drop(ws),
            Churn::Close => {
                let _ = timeout(Duration::from_millis(500), ws.close(None)).await;
            }
            Churn::Silent(hold) => {
                // Read nothing, answer nothing; leave early only if the run ends.
                let hold = tokio::time::sleep(hold);
                tokio::pin!(hold);
                loop {
                    tokio::select! {
                        () = &mut hold => break,
                        changed = phase.changed() => {
                            if changed.is_err() || *phase.borrow_and_update() == Phase::Done {
                                break;
                            }
                        }
                    }
                }
                drop(ws);
            }
        }
        return;
    }

    let slow_closed = if spec.slow {
        // Was it dropped by the server? Anything but a clean, readable socket
        // within a short look says so; buffered events are skipped over.
        ended.is_some() || probe_closed(&mut ws).await
    } else {
        false
    };
    let published = common.published.ok.load(Ordering::Relaxed);
    {
        let mut counts = common.shard.lock();
        if spec.filtered {
            if let Some(reason) = ended {
                counts.filtered_closed += 1;
                if counts.close_reasons.len() < 20 {
                    counts
                        .close_reasons
                        .push(format!("filtered client: {reason}"));
                }
            }
        } else if spec.slow {
            if slow_closed {
                counts.slow_closed += 1;
            }
        } else if spec.late {
            counts.late_alive += u64::from(ended.is_none());
            counts.late_lost += published
                .saturating_sub(owed_from)
                .saturating_sub(seen.owed_seen);
            if let Some(reason) = ended {
                counts.disconnected += 1;
                if counts.close_reasons.len() < 20 {
                    counts.close_reasons.push(reason);
                }
            }
        } else {
            counts.lost += published.saturating_sub(seen.distinct);
            if let Some(reason) = ended {
                counts.disconnected += 1;
                if counts.close_reasons.len() < 20 {
                    counts.close_reasons.push(reason);
                }
            }
        }
    }
    // Close politely, without waiting long.
    let _ = timeout(Duration::from_millis(200), ws.close(None)).await;
    common.shard.lock().wire_bytes += ws.get_ref().bytes_read();
}

async fn connect(spec: &ClientSpec, common: &Common) -> anyhow::Result<Ws> {
    let target = &spec.target;
    let socket = if target.addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = spec.source_ip {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    if spec.slow {
        socket.set_recv_buffer_size(common.slow_rcvbuf)?;
    }
    let stream = socket.connect(target.addr).await?;
    stream.set_nodelay(true)?;
    let mut request = Request::builder();
    if common.deflate {
        request = request.header("Sec-WebSocket-Extensions", wire::OFFER);
    }
    let request = request
        .uri(&target.url)
        .header("Host", target.addr.to_string())
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header(
            "Sec-WebSocket-Key",
            tokio_tungstenite::tungstenite::handshake::client::generate_key(),
        )
        .body(())?;
    let config = WebSocketConfig::default()
        .read_buffer_size(common.read_buffer)
        .write_buffer_size(0);
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(
        request,
        Wire::new(stream, common.deflate),
        Some(config),
    )
    .await?;
    // The greeting (`analytics_update`) comes first: the client is live.
    match ws.next().await {
        Some(Ok(Message::Text(_))) => Ok(ws),
        Some(Ok(other)) => anyhow::bail!("unexpected first frame: {other:?}"),
        Some(Err(err)) => Err(err.into()),
        None => anyhow::bail!("closed before the greeting"),
    }
}

/// The churn signal, if one comes; `None` once the sender is gone.
async fn churn_signal(rx: &mut Option<oneshot::Receiver<Churn>>) -> Option<Churn> {
    match rx.as_mut() {
        Some(rx) => rx.await.ok(),
        None => std::future::pending().await,
    }
}

fn fail(common: &Common, spec: &ClientSpec, reason: &str) {
    let mut counts = common.shard.lock();
    if spec.filtered {
        counts.filtered_connect_failed += 1;
    } else if spec.late {
        counts.late_connect_failed += 1;
    } else {
        counts.connect_failed += 1;
    }
    if counts.close_reasons.len() < 20 {
        counts.close_reasons.push(format!("connect: {reason}"));
    }
}

/// Whether a stalled client's connection was closed by the server: reads
/// (and discards) what is buffered for up to a second.
async fn probe_closed(ws: &mut Ws) -> bool {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return false,
            Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return true,
            Ok(Some(Ok(_))) => {}
        }
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}

/// The sequence numbers a client has seen.
#[derive(Debug, Default)]
struct Seen {
    bits: Vec<u64>,
    distinct: u64,
    /// Test events received (duplicates included) and duplicates, by this
    /// client: moved to the churned totals if it is churned.
    delivered: u64,
    duplicated: u64,
    /// The publisher's `attempted` at the greeting: every `seq` from here on
    /// was handed out after the client was subscribed.
    owed_from: u64,
    /// Distinct `seq`s at or after `owed_from`.
    owed_seen: u64,
    /// The highest `seq` seen so far (order violations are counted against it).
    highest: Option<u64>,
    /// `--burst`: already counted as having every event.
    complete: bool,
}

impl Seen {
    /// Marks `seq`; false if it was already there.
    fn insert(&mut self, seq: u64) -> bool {
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if word >= self.bits.len() {
            self.bits.resize((word + 1).next_power_of_two(), 0);
        }
        let fresh = self.bits[word] & (1 << bit) == 0;
        self.bits[word] |= 1 << bit;
        self.distinct += u64::from(fresh);
        fresh
    }
}

/// Messages a client handles in one go once one has arrived.
const READ_BATCH: usize = 64;

/// Counts one message; `Some(why)` when it ends the connection.
fn on_message(
    message: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    spec: &ClientSpec,
    seen: &mut Seen,
    common: &Common,
) -> Option<String> {
    match message {
        Some(Ok(Message::Text(text))) => {
            on_text(&text, spec, seen, common);
            None
        }
        Some(Ok(Message::Close(frame))) => Some(frame.map_or("close".to_owned(), |f| {
            format!("close {}", u16::from(f.code))
        })),
        Some(Ok(_)) => None,
        Some(Err(err)) => Some(format!("error: {err}")),
        None => Some("eof".to_owned()),
    }
}

fn on_text(text: &str, spec: &ClientSpec, seen: &mut Seen, common: &Common) {
    if spec.filtered {
        // The greeting was read in `connect`: anything else is a frame the
        // filter should have kept away.
        common.shard.lock().filtered_received += 1;
        return;
    }
    let received = unix_nanos();
    let Some((seq, sent)) = parse_event(text) else {
        common.shard.lock().other_frames += 1;
        return;
    };
    let fresh = seen.insert(seq);
    seen.delivered += 1;
    seen.duplicated += u64::from(!fresh);
    seen.owed_seen += u64::from(fresh && seq >= seen.owed_from);
    let out_of_order = fresh && seen.highest.is_some_and(|h| seq < h);
    if fresh {
        seen.highest = seen.highest.max(Some(seq));
    }
    let mut counts = common.shard.lock();
    counts.bytes += text.len() as u64;
    if spec.slow {
        counts.slow_delivered += 1;
        return;
    }
    counts.order_violations += u64::from(out_of_order);
    if spec.late {
        counts.late_delivered += 1;
        counts.late_duplicated += u64::from(!fresh);
    } else {
        counts.delivered += 1;
        counts.duplicated += u64::from(!fresh);
        if let Some(n) = common.burst
            && !seen.complete
            && seen.distinct >= n
        {
            seen.complete = true;
            counts.burst_complete += 1;
            if counts.burst_first_complete_nanos == 0 {
                counts.burst_first_complete_nanos = received;
            }
            counts.burst_last_complete_nanos = counts.burst_last_complete_nanos.max(received);
        }
    }
    if !fresh {
        return;
    }
    if seq >= common.published.measure_from.load(Ordering::Relaxed) {
        let micros = (received.saturating_sub(sent) / 1000).max(1);
        let _ = counts.latency.record(micros);
        let _ = counts.latency_interval.record(micros);
    }
}

/// `(seq, sent_unix_nanos)` from a test event's text, without a JSON parse:
/// the publisher writes `"seq":N,"t":N` at the start of `data`, which the
/// gateway passes through untouched.
///
/// This runs once per delivery (a million a second at 100,000 events/s to
/// 10 clients), so it scans for the key's first letter and reads `t` right
/// after `seq`, where the publisher put it: `str::find`, building a two-way
/// searcher per call, was a fifth of the load tool's profile at 50,000
/// events/s × 10 clients.
pub fn parse_event(text: &str) -> Option<(u64, u64)> {
    let bytes = text.as_bytes();
    let (seq, end) = number_after(bytes, 0, b"\"seq\":")?;
    let (sent, _) = match bytes[end..].strip_prefix(b",\"t\":") {
        Some(_) => digits(bytes, end + 5)?,
        None => number_after(bytes, 0, b"\"t\":")?,
    };
    Some((seq, sent))
}

/// The number after the first `key` at or after `from`, and where it ends.
fn number_after(bytes: &[u8], from: usize, key: &[u8]) -> Option<(u64, usize)> {
    // `key` is `"name":`; the byte after the quote is the one scanned for.
    let first = key[1];
    let mut at = from;
    loop {
        at += bytes.get(at..)?.iter().position(|&b| b == first)?;
        if at >= 1 && bytes[at - 1..].starts_with(key) {
            return digits(bytes, at - 1 + key.len());
        }
        at += 1;
    }
}

/// The decimal number starting at `start`, and the index after it.
fn digits(bytes: &[u8], start: usize) -> Option<(u64, usize)> {
    let rest = bytes.get(start..)?;
    let len = rest
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(rest.len());
    if len == 0 || len > 20 {
        return None;
    }
    let mut n = 0u64;
    for &b in &rest[..len] {
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some((n, start + len))
}

pub fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_parsed_from_the_frame_text() {
        let frame = r#"{"id":"1-0","type":"loadtest","data":{"seq":42,"t":1700000000123456789,"pad":"xx"},"timestamp":"2026-11-25T10:00:00.000Z"}"#;
        assert_eq!(parse_event(frame), Some((42, 1_700_000_000_123_456_789)));
        assert_eq!(
            parse_event(r#"{"type":"analytics_update","data":{}}"#),
            None
        );
        // Keys in another order, or with look-alikes before them.
        assert_eq!(
            parse_event(r#"{"type":"x","data":{"t":5,"xseq":1,"sq":2,"seq":3},"ts":"s"}"#),
            Some((3, 5))
        );
        assert_eq!(parse_event(r#"{"data":{"seq":":1}}"#), None);
        assert_eq!(
            parse_event(r#"{"data":{"seq":99999999999999999999999,"t":1}}"#),
            None
        );
    }

    #[test]
    fn seen_counts_each_sequence_number_once() {
        let mut seen = Seen::default();
        assert!(seen.insert(0));
        assert!(seen.insert(1000));
        assert!(!seen.insert(1000));
        assert!(seen.insert(63));
        assert_eq!(seen.distinct, 3);
    }
}
