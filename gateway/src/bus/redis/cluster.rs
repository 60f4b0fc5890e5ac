//! Redis Cluster: sharded pub/sub, one channel per type, spread over shards.
//!
//! - Sharded channels have no patterns: a node `SSUBSCRIBE`s to each known
//!   type's channel and to every custom type in `{prefix}:types` (the
//!   publisher adds to it; refreshed every 2 s).
//! - One RESP3 cluster connection carries commands and subscriptions; its
//!   push sender is a closure that dispatches each message straight into the
//!   hub (no queue in between). redis-rs re-subscribes by itself when slots
//!   move or a shard fails over.
//! - A publish is two steps on two shards (history, then `SPUBLISH`), and
//!   types travel through different shards, so events can arrive out of id
//!   order (the hub runs in [`crate::hub::Arrival::Unordered`]) and a publish
//!   can be lost between the steps. The node re-reads the history every
//!   second from where it last read (anti-entropy): whatever the live path
//!   did not bring is sent then, once.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use metrics::counter;
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{AsyncCommands, ProtocolVersion, PushInfo, PushKind, Value};
use shared::{keys, kind};
use tokio_util::sync::CancellationToken;

use super::{BusError, Reconnect, RedisBus, bounded};
use crate::hub::Hub;
use crate::telemetry::BUS_MESSAGES_RECEIVED;

/// How often the set of custom types is re-read.
const REGISTRY_REFRESH: Duration = Duration::from_secs(2);
/// How often the history is re-read for events the live path lost.
const ANTI_ENTROPY: Duration = Duration::from_secs(1);
/// Most sharded channels one node subscribes to: a publisher inventing types
/// without end cannot make a node subscribe without end.
const MAX_CHANNELS: usize = 1024;

/// A cluster client (seeds, TLS and time limits from `builder`) whose
/// sharded messages go straight to `hub`.
pub(super) fn client(
    builder: ClusterClientBuilder,
    hub: Arc<Hub>,
) -> Result<ClusterClient, BusError> {
    let received = counter!(BUS_MESSAGES_RECEIVED);
    let deliver = move |push: PushInfo| -> Result<(), std::convert::Infallible> {
        if let (PushKind::SMessage, Some(Value::BulkString(payload))) =
            (&push.kind, push.data.get(1))
        {
            received.increment(1);
            // Malformed payloads are counted and logged by the hub.
            let _ = hub.dispatch(payload);
        }
        Ok(())
    };
    Ok(builder
        .use_protocol(ProtocolVersion::RESP3)
        .push_sender(deliver)
        .build()?)
}

pub(super) async fn follow(
    bus: &RedisBus,
    client: &ClusterClient,
    slot: &RwLock<Option<ClusterConnection>>,
    shutdown: &CancellationToken,
    reconnect: &mut Reconnect,
) -> Result<(), BusError> {
    let mut conn = bounded(client.get_async_connection()).await?;
    *slot.write().unwrap_or_else(|p| p.into_inner()) = Some(conn.clone());
    bus.init_position().await?;
    let mut channels = HashSet::new();
    subscribe_types(bus, &mut conn, &mut channels).await?;
    let read = bus.subscribed(reconnect).await?;
    tracing::info!(channels = channels.len(), "subscribed to sharded channels");

    // The history has been read through `read` by now; the re-read goes on
    // from there, not from the node's head: live events that came during the
    // state load may have carried the head past events still to come or lost
    // between the two. It also notices a history created anew.
    let mut checked = read
        .or_else(|| bus.hub.position())
        .ok_or(BusError::Unavailable)?;
    let mut registry = tokio::time::interval(REGISTRY_REFRESH);
    let mut entropy = tokio::time::interval(ANTI_ENTROPY);
    loop {
        tokio::select! {
            _ = registry.tick() => subscribe_types(bus, &mut conn, &mut channels).await?,
            _ = entropy.tick() => checked = bus.catch_up(checked).await?,
            _ = shutdown.cancelled() => return Ok(()),
        }
    }
}

/// Subscribes to the channels of the known types and of every registered
/// custom type not subscribed yet.
async fn subscribe_types(
    bus: &RedisBus,
    conn: &mut ClusterConnection,
    channels: &mut HashSet<String>,
) -> Result<(), BusError> {
    let custom: Vec<String> = bounded(conn.smembers(keys::types_key(bus.prefix()))).await?;
    let kinds = kind::KNOWN.iter().map(|k| (*k).to_owned()).chain(
        custom
            .into_iter()
            .filter(|k| shared::validate_kind(k).is_ok()),
    );
    for kind in kinds {
        let channel = keys::events_channel(bus.prefix(), &kind);
        if channels.contains(&channel) {
            continue;
        }
        if channels.len() >= MAX_CHANNELS {
            tracing::warn!(%kind, "too many custom types; not subscribing (the history still delivers them)");
            continue;
        }
        // One channel per call: channels of one SSUBSCRIBE must share a slot.
        bounded(conn.ssubscribe(&channel)).await?;
        channels.insert(channel);
    }
    Ok(())
}
