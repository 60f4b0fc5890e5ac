//! The node's listening socket and accept loop: a backlog for bursts,
//! socket options for small frames, hyper's HTTP/1 with a header-read timer
//! (`HANDSHAKE_TIMEOUT_MS`), TLS first when the node has a certificate, and
//! a bound on connections not yet upgraded, so no flood of half-open sockets
//! can take the file descriptors health checks and dashboards need.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::app;
use crate::state::AppState;
use crate::telemetry;

/// The kernel send buffer asked for on each client socket (Linux doubles
/// it). Without a cap, loopback autotuning lets a stalled client park up to
/// 4 MiB in the kernel; with it, a client that stops reading soon blocks its
/// writes and meets `CLIENT_BUFFER_BYTES` / `WRITE_TIMEOUT_MS` instead.
const SOCKET_SEND_BUFFER: usize = 64 * 1024;
/// Pending connections the kernel queues before `accept`. tokio's
/// `TcpListener::bind` asks for 128, which a reconnect storm (or a burst of
/// new dashboards) overflows: dropped SYNs come back only after a 1 s
/// retransmit. The kernel caps this at `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 4096;
/// Addresses with connections accepted but not yet upgraded (or done with
/// their HTTP request): each connection is a file descriptor and a little
/// memory until its head arrives or `HANDSHAKE_TIMEOUT_MS` ends it.
const MAX_PENDING_CONNECTIONS: usize = 4096;
/// Such connections from one address: a flood from one source cannot take
/// the descriptors that health checks and other dashboards need.
const MAX_PENDING_PER_IP: usize = 128;
/// The same for a `TRUSTED_PROXIES` address (a load balancer).
const MAX_PENDING_PER_PROXY: usize = 8192;

/// Binds the node's listening socket with a backlog that absorbs connection
/// bursts (see [`LISTEN_BACKLOG`]).
pub fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // A restarted node can take its port back while old connections linger
    // in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The accept loop. Each connection is served by hyper's HTTP/1 with a
/// header-read timer: one that has not sent a whole request head within
/// `HANDSHAKE_TIMEOUT_MS` (a silent socket, half a head, a byte a second, an
/// idle keep-alive) is closed. Connections not yet upgraded are bounded per
/// address ([`MAX_PENDING_PER_IP`]) and in addresses
/// ([`MAX_PENDING_CONNECTIONS`]): past that new ones are closed at once, so
/// a flood of them cannot take the file descriptors that health checks and
/// dashboards need. Upgraded sessions count against `MAX_CONNECTIONS`.
///
/// With `TLS_CERT_FILE` each connection first completes a TLS handshake in
/// its own task, within `HANDSHAKE_TIMEOUT_MS` too (the header timer starts
/// after it, so a slow client gets at most twice that in all); the pending
/// place is held meanwhile, so silent TLS clients are bounded the same way.
pub(crate) async fn accept(listener: TcpListener, state: Arc<AppState>) {
    let shutdown = state.shutdown.clone();
    let pending = Arc::new(Pending::default());
    let router = app(state.clone());
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(state.config.handshake_timeout());
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors, mostly: wait instead of spinning.
                    tracing::warn!("accept: {err}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => return,
        };
        // A trusted proxy carries many clients' handshakes at once.
        let per_ip = if state
            .config
            .trusted_proxies
            .iter()
            .any(|net| net.contains(&peer.ip()))
        {
            MAX_PENDING_PER_PROXY
        } else {
            MAX_PENDING_PER_IP
        };
        // Keyed like every per-IP rule: an IPv6 client by its /64.
        let Some(permit) = pending.admit(crate::admission::ip_key(peer.ip()), per_ip) else {
            metrics::counter!(telemetry::HANDSHAKES_REJECTED, "reason" => "too_many_pending")
                .increment(1);
            continue;
        };
        tune(&tcp);
        let connection = Connection::new(permit);
        let handle = connection.clone();
        let router = hyper_util::service::TowerToHyperService::new(router.clone());
        let service = hyper::service::service_fn(move |mut request: hyper::Request<_>| {
            request
                .extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            request.extensions_mut().insert(handle.clone());
            // One span per request: method, path (never the query: it may
            // hold a token) and peer on every line logged while serving it.
            let span = tracing::debug_span!(
                "request",
                method = %request.method(),
                path = %request.uri().path(),
                %peer
            );
            tracing::Instrument::instrument(hyper::service::Service::call(&router, request), span)
        });
        let http = http.clone();
        let tls = state.tls.clone();
        let handshake_timeout = state.config.handshake_timeout();
        let shutdown = shutdown.clone();
        state.tracker.spawn(async move {
            let abort = &connection.abort;
            match tls {
                None => serve_connection(&http, tcp, service, &shutdown, abort).await,
                Some(acceptor) => {
                    // The TLS handshake runs here, in the connection's own
                    // task (never in the accept loop), under the same
                    // deadline as the HTTP head: a client that opens a
                    // socket and stays silent is closed either way.
                    let handshake = tokio::time::timeout(handshake_timeout, acceptor.accept(tcp));
                    match tokio::select! {
                        result = handshake => Some(result),
                        () = shutdown.cancelled() => None,
                    } {
                        Some(Ok(Ok(stream))) => {
                            serve_connection(&http, stream, service, &shutdown, abort).await;
                        }
                        Some(Ok(Err(err))) => {
                            metrics::counter!(telemetry::HANDSHAKES_REJECTED, "reason" => "tls")
                                .increment(1);
                            tracing::debug!(%peer, "TLS handshake failed: {err}");
                        }
                        Some(Err(_)) => {
                            metrics::counter!(telemetry::HANDSHAKES_REJECTED, "reason" => "tls_timeout")
                                .increment(1);
                        }
                        None => {}
                    }
                }
            }
            // Served, closed, or handed over to a WebSocket session.
            connection.release_pending();
        });
    }
}

/// Serves one connection (plain TCP, or TLS once its handshake is done)
/// until it ends or is upgraded; on shutdown, lets its request finish.
async fn serve_connection<IO, S>(
    http: &hyper::server::conn::http1::Builder,
    io: IO,
    service: S,
    shutdown: &CancellationToken,
    abort: &CancellationToken,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    let connection = http
        .serve_connection(hyper_util::rt::TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        // Dropped as it is: its response cannot be finished (a stalled
        // reader of an SSE stream whose session ended).
        () = abort.cancelled() => {}
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

/// What a request's handler may do to the connection it came on (a request
/// extension): give back its pending place once it is no longer a pending
/// connection but a long-lived stream (`/sse/dashboard`), and drop the
/// connection when the stream it served is over but cannot be finished.
#[derive(Clone)]
pub struct Connection {
    pending: Arc<std::sync::Mutex<Option<PendingPlace>>>,
    pub abort: CancellationToken,
}

impl Connection {
    fn new(place: PendingPlace) -> Self {
        Self {
            pending: Arc::new(std::sync::Mutex::new(Some(place))),
            abort: CancellationToken::new(),
        }
    }

    /// The connection stops counting toward the pending limits (idempotent).
    pub fn release_pending(&self) {
        drop(
            self.pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
        );
    }
}

/// Connections not yet upgraded, in all and per address.
#[derive(Debug, Default)]
struct Pending {
    by_ip: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
}

/// A pending connection's place, given back when dropped.
struct PendingPlace {
    pending: Arc<Pending>,
    ip: std::net::IpAddr,
}

impl Pending {
    fn admit(self: &Arc<Self>, ip: std::net::IpAddr, per_ip: usize) -> Option<PendingPlace> {
        let mut by_ip = self.by_ip.lock().unwrap_or_else(|p| p.into_inner());
        let total: usize = by_ip.len(); // distinct addresses, bounded below
        let count = by_ip.get(&ip).copied().unwrap_or(0);
        if count >= per_ip || (count == 0 && total >= MAX_PENDING_CONNECTIONS) {
            return None;
        }
        *by_ip.entry(ip).or_insert(0) += 1;
        Some(PendingPlace {
            pending: self.clone(),
            ip,
        })
    }
}

impl Drop for PendingPlace {
    fn drop(&mut self) {
        let mut by_ip = self.pending.by_ip.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = by_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                by_ip.remove(&self.ip);
            }
        }
    }
}

/// Frames are small and latency matters: no Nagle delay; and a capped
/// kernel send buffer (see [`SOCKET_SEND_BUFFER`]).
fn tune(tcp: &tokio::net::TcpStream) {
    if let Err(err) = tcp.set_nodelay(true) {
        tracing::debug!("TCP_NODELAY: {err}");
    }
    if let Err(err) = socket2::SockRef::from(tcp).set_send_buffer_size(SOCKET_SEND_BUFFER) {
        tracing::debug!("SO_SNDBUF: {err}");
    }
}
