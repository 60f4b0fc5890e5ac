//! `--demo`: the publisher's [`Generator`] feeding this node's own bus, so a
//! newcomer sees a live dashboard with nothing else running.

use std::sync::Arc;

use publisher::simulate::Generator;
use tokio_util::sync::CancellationToken;

use crate::bus::Bus;

pub async fn run(bus: Arc<dyn Bus>, rate: u32, shutdown: CancellationToken) {
    let mut generator = Generator::new(rate, fastrand::u64(..));
    let mut tick = tokio::time::interval(generator.interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(
        rate,
        "demo: publishing generated tutor metrics, alerts, interventions and analytics"
    );
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let event = generator.next_event();
        let data = serde_json::value::to_raw_value(&event.data).expect("generated data is JSON");
        if let Err(err) = bus.publish(event.kind, &data).await {
            tracing::debug!("demo publish failed (bus down?): {err}");
        }
    }
}
