//! `GET /ws/dashboard`: the WebSocket transport. The checks every
//! dashboard connection passes ([`crate::connect`]), then the upgrade
//! ([`upgrade`], with permessage-deflate when offered), then the session
//! ([`crate::session`]) over a [`socket::WebSocket`].
//!
//! `?auth=frame` moves the token out of the URL: the checks that need it
//! (the token itself, its `types` claim, its user's limit) are made after
//! the upgrade, on the client's first frame, by [`auth_frame`], and refused
//! with close codes instead of statuses.

mod auth_frame;
pub mod frame;
mod socket;
mod upgrade;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::FutureExt;
use futures_util::future::Either;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tracing::Instrument;

use crate::connect::{self, Checked, DashboardQuery};
use crate::session;
use crate::state::AppState;
use upgrade::Upgrade;

/// Bytes tungstenite reads from the socket at a time, allocated for every
/// connection: its default (128 KiB) would dominate an idle connection's
/// memory. Clients send tiny frames (a ping, a close); the buffer grows for a
/// larger one. 256 rather than 1 KiB: 1 KiB less per idle connection, measured.
const READ_BUFFER: usize = 256;
/// What tungstenite may hold of its own output: it writes only control
/// frames (pongs and the close echo, at most 127 bytes each; everything else
/// goes out through [`frame`]) and hands each to the outbox at once.
const MAX_WRITE_BUFFER: usize = 1024;

pub async fn dashboard(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    query: Result<Query<DashboardQuery>, QueryRejection>,
    ws: Upgrade,
) -> Response {
    let query = match query {
        Ok(Query(query)) => query,
        Err(rejection) => return connect::bad_query(&rejection),
    };
    let (params, admitted, ip) = match connect::check(&state, peer, &headers, query, true).await {
        Ok(Checked::Ready {
            params,
            admitted,
            ip,
        }) => (params, admitted, ip),
        Ok(Checked::AwaitingToken(awaiting)) => {
            return upgrade_awaiting_token(ws, state, peer, awaiting);
        }
        Err(refused) => return refused,
    };
    let token = state.tracker.token();
    tracing::debug!(%peer, %ip, "websocket upgrade");
    let config = socket_config(&state);
    let compress = state.config.compression();
    ws.on_upgrade(config, compress, move |socket, outbox| {
        // Every line a session logs says which client on which node.
        let span = tracing::info_span!("session", %peer, %ip, node = %state.node.id);
        let ctx = session::SessionContext::of(&state);
        // `map`, not `async { session.await; ... }`: an async block would
        // hold the session future twice (captured, and being awaited).
        session::run(socket, outbox, ctx, params)
            .map(move |()| drop((admitted, token)))
            .instrument(span)
    })
}

/// The upgrade of an `?auth=frame` client: its auth frame first, then, if
/// accepted, the session, as [`dashboard`] starts it. `then`, not an async
/// block: the session's future replaces the wait's rather than joining it.
fn upgrade_awaiting_token(
    ws: Upgrade,
    state: Arc<AppState>,
    peer: SocketAddr,
    awaiting: connect::Awaiting,
) -> Response {
    let ip = awaiting.ip;
    let token = state.tracker.token();
    tracing::debug!(%peer, %ip, "websocket upgrade, token awaited in the first frame");
    let config = socket_config(&state);
    let compress = state.config.compression();
    ws.on_upgrade(config, compress, move |socket, outbox| {
        let span = tracing::info_span!("session", %peer, %ip, node = %state.node.id);
        auth_frame::accept(socket, outbox, state.clone(), awaiting)
            .then(move |accepted| match accepted {
                Some(accepted) => {
                    let ctx = session::SessionContext::of(&state);
                    let auth_frame::Accepted {
                        socket,
                        outbox,
                        params,
                        admitted,
                    } = accepted;
                    Either::Left(
                        session::run(socket, outbox, ctx, params)
                            .map(move |()| drop((admitted, token))),
                    )
                }
                None => Either::Right(std::future::ready(())),
            })
            .instrument(span)
    })
}

/// tungstenite's limits for a client's socket.
fn socket_config(state: &AppState) -> WebSocketConfig {
    let max = state.config.max_message_bytes;
    WebSocketConfig::default()
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
}
