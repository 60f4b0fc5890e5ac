//! One Redis: a dedicated connection `PSUBSCRIBE`s to `{prefix}:events:*`,
//! every type's channel (types are open-ended, so a pattern), and hands each
//! payload to the hub. Publishing is one atomic script, so events arrive in
//! id order.

use std::time::Duration;

use futures_util::StreamExt;
use metrics::counter;
use publisher::Connector;
use shared::keys;
use tokio_util::sync::CancellationToken;

use super::{BusError, Reconnect, RedisBus, bounded};
use crate::telemetry::BUS_MESSAGES_RECEIVED;

/// How often an idle subscription is checked with PING (a half-open TCP
/// connection would otherwise look like a quiet bus).
const SUBSCRIPTION_HEALTH: Duration = Duration::from_secs(5);
/// How often the node checks, after a payload named another epoch, whether
/// the history was created anew (at most this often, however many arrive).
const EPOCH_CHECK: Duration = Duration::from_secs(1);

pub(super) async fn follow(
    bus: &RedisBus,
    connector: &Connector,
    shutdown: &CancellationToken,
    reconnect: &mut Reconnect,
) -> Result<(), BusError> {
    // With Sentinels, this asks them for the master now.
    let client = bounded(connector.client()).await?;
    let pubsub = bounded(client.get_async_pubsub()).await?;
    let (mut sink, mut stream) = pubsub.split();
    bus.init_position().await?;
    let pattern = keys::events_pattern(bus.prefix());
    bounded(sink.psubscribe(&pattern)).await?;
    bus.subscribed(reconnect).await?;
    tracing::info!(%pattern, "subscribed");

    let mut health = tokio::time::interval(SUBSCRIPTION_HEALTH);
    health.reset();
    let mut epoch_check = tokio::time::interval(EPOCH_CHECK);
    let received = counter!(BUS_MESSAGES_RECEIVED);
    loop {
        tokio::select! {
            message = stream.next() => match message {
                Some(message) => {
                    received.increment(1);
                    // Malformed payloads are counted and logged by the hub.
                    let _ = bus.hub.dispatch(message.get_payload_bytes());
                }
                None => return Err(BusError::Unavailable),
            },
            _ = health.tick() => {
                bounded(sink.ping::<redis::Value>()).await?;
            }
            _ = epoch_check.tick() => {
                // A history created anew while this node stayed subscribed
                // (the stream deleted by hand): follow it from its start.
                if bus.hub.take_foreign_epoch_seen()
                    && let Some(position) = bus.hub.position()
                {
                    bus.catch_up(position).await?;
                }
            }
            _ = shutdown.cancelled() => return Ok(()),
        }
    }
}
