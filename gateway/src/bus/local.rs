//! The in-process bus: one node, no Redis. Publishing hands the event
//! straight to the hub; the history is a bounded in-memory ring with the
//! same rules (size and age) and the same ids as the Redis stream.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use publisher::HistoryPolicy;
use serde_json::value::RawValue;
use shared::EventId;

use super::{Bus, BusError, NodeStatus, Replay, ReplayEvent};
use crate::hub::Hub;

#[derive(Debug)]
struct Stored {
    id: EventId,
    kind: String,
    text: String,
    at: Instant,
}

#[derive(Debug, Default)]
struct History {
    events: VecDeque<Stored>,
    last: Option<EventId>,
    trimmed: bool,
}

#[derive(Debug)]
pub struct LocalBus {
    hub: Arc<Hub>,
    policy: HistoryPolicy,
    history: Mutex<History>,
}

impl LocalBus {
    pub fn new(hub: Arc<Hub>, policy: HistoryPolicy) -> Self {
        Self {
            hub,
            policy,
            history: Mutex::default(),
        }
    }

    fn trim(&self, history: &mut History, now: Instant) {
        let ttl = self.policy.ttl;
        while history.events.len() > self.policy.max_len
            || (ttl > Duration::ZERO
                && history
                    .events
                    .front()
                    .is_some_and(|e| now.duration_since(e.at) > ttl))
        {
            history.events.pop_front();
            history.trimmed = true;
        }
    }
}

#[async_trait]
impl Bus for LocalBus {
    fn name(&self) -> &'static str {
        "in-process"
    }

    fn is_ready(&self) -> bool {
        true
    }

    async fn publish(&self, kind: &str, data: &RawValue) -> Result<EventId, BusError> {
        shared::validate_kind(kind).map_err(publisher::PublishError::from)?;
        let now = Utc::now();
        // Held across the dispatch so history order and live order agree.
        let mut history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        let now_ms = u64::try_from(now.timestamp_millis()).unwrap_or(0);
        let id = history
            .last
            .map_or(EventId::new(now_ms, 0), |last| last.next(now_ms));
        let text = shared::encode_with_id(id, kind, data, now);
        history.last = Some(id);
        history.events.push_back(Stored {
            id,
            kind: kind.to_owned(),
            text: text.clone(),
            at: Instant::now(),
        });
        self.trim(&mut history, Instant::now());
        self.hub
            .dispatch(text.as_bytes())
            .expect("the gateway's own envelope decodes");
        Ok(id)
    }

    async fn replay(&self, since: EventId) -> Result<Replay, BusError> {
        let mut history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        self.trim(&mut history, Instant::now());
        let start = if since == EventId::ZERO {
            (!history.trimmed).then_some(0)
        } else {
            history
                .events
                .binary_search_by_key(&since, |e| e.id)
                .ok()
                .map(|i| i + 1)
        };
        let Some(start) = start else {
            return Ok(Replay::default());
        };
        let events = history
            .events
            .range(start..)
            .map(|e| ReplayEvent {
                id: e.id,
                kind: e.kind.clone(),
                text: e.text.clone(),
            })
            .collect();
        Ok(Replay {
            events,
            recovered: true,
        })
    }

    async fn nodes(&self) -> Result<Vec<NodeStatus>, BusError> {
        Ok(Vec::new())
    }

    async fn leave(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bus(max_len: usize) -> LocalBus {
        let policy = HistoryPolicy {
            max_len,
            ttl: Duration::from_secs(60),
        };
        LocalBus::new(Arc::new(Hub::new(64, crate::hub::Arrival::InOrder)), policy)
    }

    fn data(n: u32) -> Box<RawValue> {
        serde_json::value::to_raw_value(&n).unwrap()
    }

    #[tokio::test]
    async fn replay_returns_exactly_the_events_after_the_id_in_order() {
        let bus = bus(100);
        let mut ids = Vec::new();
        for n in 0..5 {
            ids.push(bus.publish("alert", &data(n)).await.unwrap());
        }
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");
        let replay = bus.replay(ids[1]).await.unwrap();
        assert!(replay.recovered);
        let got: Vec<EventId> = replay.events.iter().map(|e| e.id).collect();
        assert_eq!(got, ids[2..]);
        assert!(
            bus.replay(*ids.last().unwrap())
                .await
                .unwrap()
                .events
                .is_empty()
        );
    }

    #[tokio::test]
    async fn unknown_or_trimmed_ids_are_not_recovered() {
        let bus = bus(3);
        let first = bus.publish("alert", &data(0)).await.unwrap();
        assert!(
            bus.replay(EventId::ZERO).await.unwrap().recovered,
            "nothing trimmed yet"
        );
        for n in 1..6 {
            bus.publish("alert", &data(n)).await.unwrap();
        }
        assert!(!bus.replay(first).await.unwrap().recovered, "trimmed");
        assert!(!bus.replay(EventId::ZERO).await.unwrap().recovered);
        assert!(
            !bus.replay(EventId::new(1, 0)).await.unwrap().recovered,
            "unknown"
        );
    }
}
