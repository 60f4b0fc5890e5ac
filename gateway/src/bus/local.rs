//! The in-process bus: one node, no Redis. Publishing hands the event
//! straight to the hub; the history is a bounded in-memory ring with the
//! same rules (size and age) and the same ids as the Redis stream, and the
//! keyed state's bounds are kept as the publish script keeps them (its
//! evictions named in the event, so the hub applies the same thing).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use publisher::{Batch, Encoded, HistoryPolicy, Item, StatePolicy};
use serde_json::value::RawValue;
use shared::state::MAX_EVICTED_BYTES;
use shared::{Epoch, EventId, Position};

use super::{Bus, BusError, HistoryPage, ReplayEvent, StreamInfo};
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
    /// The newest id ever assigned.
    last: EventId,
    /// Events ever added.
    added: u64,
    /// The newest id trimmed.
    max_deleted: EventId,
}

/// What publish.lua keeps in Redis to bound a type's state: each key's
/// latest id, and the keys by it (oldest first).
#[derive(Debug, Default)]
struct Ages {
    by_key: HashMap<String, EventId>,
    oldest: BTreeSet<(EventId, String)>,
}

impl Ages {
    fn remove(&mut self, key: &str) {
        if let Some(id) = self.by_key.remove(key) {
            self.oldest.remove(&(id, key.to_owned()));
        }
    }

    fn set(&mut self, key: &str, id: EventId) {
        self.remove(key);
        self.by_key.insert(key.to_owned(), id);
        self.oldest.insert((id, key.to_owned()));
    }

    /// The keys to drop before `key` is written at `now_ms`, as publish.lua
    /// picks them: too old (up to 64 at a time; `key` itself too, written
    /// again right after), then the least recently updated while a new key
    /// would exceed `policy.max_keys`.
    fn evictions(
        &mut self,
        key: &str,
        removal: bool,
        now_ms: u64,
        policy: &StatePolicy,
    ) -> Vec<String> {
        let mut gone = Vec::new();
        let mut bytes = 0;
        // As many as the event can name (its "evicted" list's bytes).
        let mut fits = |k: &str| {
            let named = serde_json::to_string(k).map_or(usize::MAX, |j| j.len() + 1);
            bytes += named;
            bytes <= MAX_EVICTED_BYTES
        };
        let ttl = u64::try_from(policy.ttl.as_millis()).unwrap_or(u64::MAX);
        if ttl > 0 {
            let cutoff = now_ms.saturating_sub(ttl);
            for (_, k) in self
                .oldest
                .iter()
                .take_while(|(id, _)| id.ms < cutoff)
                .take(64)
            {
                if !fits(k) {
                    break;
                }
                gone.push(k.clone());
            }
            for k in &gone {
                self.remove(k);
            }
        }
        if !removal && !self.by_key.contains_key(key) {
            while self.by_key.len() >= policy.max_keys.max(1) {
                let Some((_, k)) = self.oldest.first().cloned() else {
                    break;
                };
                if !fits(&k) {
                    break;
                }
                self.remove(&k);
                gone.push(k);
            }
        }
        gone
    }
}

#[derive(Debug)]
pub struct LocalBus {
    hub: Arc<Hub>,
    policy: HistoryPolicy,
    state: StatePolicy,
    ages: Mutex<HashMap<String, Ages>>,
    /// This process's history: a restarted node's is a new one.
    epoch: Epoch,
    history: Mutex<History>,
}

impl LocalBus {
    /// With the default state rules (tests).
    #[cfg(test)]
    pub fn new(hub: Arc<Hub>, policy: HistoryPolicy) -> Self {
        Self::with_state(hub, policy, StatePolicy::default())
    }

    pub fn with_state(hub: Arc<Hub>, policy: HistoryPolicy, state: StatePolicy) -> Self {
        let epoch = publisher::wire::new_epoch();
        hub.init(Position::new(epoch, EventId::ZERO));
        Self {
            hub,
            policy,
            state,
            ages: Mutex::default(),
            epoch,
            history: Mutex::default(),
        }
    }

    fn history(&self) -> std::sync::MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends a checked batch to the history and hands each event to the
    /// hub, in order, under the history's lock: history order = live order,
    /// and no reader sees part of the batch.
    fn append(&self, batch: &Batch) -> Vec<Position> {
        let mut history = self.history();
        let mut ages = self.ages.lock().unwrap_or_else(|p| p.into_inner());
        let now_ms = u64::try_from(Utc::now().timestamp_millis()).unwrap_or(0);
        let mut positions = Vec::with_capacity(batch.len());
        for event in batch.events() {
            let position = Position::new(self.epoch, history.last.next(now_ms));
            let mut payload = std::borrow::Cow::Borrowed(event.payload());
            if let Some(keyed) = event.state_key() {
                let ages = ages.entry(event.kind().to_owned()).or_default();
                let gone = ages.evictions(&keyed.key, keyed.removed, now_ms, &self.state);
                if keyed.removed {
                    ages.remove(&keyed.key);
                } else {
                    ages.set(&keyed.key, position.id);
                }
                if !gone.is_empty() {
                    payload = std::borrow::Cow::Owned(name_evictions(event, &gone));
                }
            }
            let text = shared::insert_id(&payload, position).expect("an envelope is an object");
            history.last = position.id;
            history.added += 1;
            history.events.push_back(Stored {
                id: position.id,
                kind: event.kind().to_owned(),
                text: text.clone(),
                at: Instant::now(),
            });
            // What the hub refuses (it cannot be, for an event checked by
            // the batch) it counts and logs itself.
            let _ = self.hub.dispatch(text.as_bytes());
            positions.push(position);
        }
        self.trim(&mut history, Instant::now());
        positions
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
            if let Some(gone) = history.events.pop_front() {
                history.max_deleted = gone.id;
            }
        }
    }
}

/// `event`'s envelope with `"evicted":[...]` after its key (and removal),
/// where publish.lua puts it.
fn name_evictions(event: &Encoded, gone: &[String]) -> String {
    let payload = event.payload();
    let keyed = event.state_key().expect("a keyed event");
    let mut head = format!(
        "{{\"type\":\"{}\",\"key\":{}",
        event.kind(),
        serde_json::to_string(&keyed.key).expect("a string serializes")
    );
    if keyed.removed {
        head.push_str(",\"removed\":true");
    }
    debug_assert!(payload.starts_with(&head), "{payload}");
    let evicted = serde_json::to_string(gone).expect("strings serialize");
    format!("{head},\"evicted\":{evicted}{}", &payload[head.len()..])
}

#[async_trait]
impl Bus for LocalBus {
    fn name(&self) -> &'static str {
        "in-process"
    }

    fn is_ready(&self) -> bool {
        true
    }

    async fn publish(&self, kind: &str, data: &RawValue) -> Result<Position, BusError> {
        let item = Item::new(kind, data);
        let event = Encoded::keyed(
            &item,
            &self.state.keying,
            Utc::now(),
            self.hub.max_event_bytes(),
        )?;
        Ok(self.append(&Batch::one(event))[0])
    }

    async fn publish_many(&self, events: &[Item<'_, RawValue>]) -> Result<Vec<Position>, BusError> {
        let batch = Batch::encode_items(
            events.iter().copied(),
            &self.state.keying,
            Utc::now(),
            self.hub.max_event_bytes(),
        )?;
        Ok(self.append(&batch))
    }

    async fn read_history(
        &self,
        after: Position,
        until: Option<EventId>,
        limit: usize,
    ) -> Result<HistoryPage, BusError> {
        let mut history = self.history();
        self.trim(&mut history, Instant::now());
        let info = StreamInfo {
            length: history.events.len() as u64,
            added: history.added,
            first: history.events.front().map_or(EventId::ZERO, |e| e.id),
            last: history.last,
            max_deleted: history.max_deleted,
        };
        let standing = info.standing(Some(self.epoch), after);
        let start = history.events.partition_point(|e| e.id <= after.id);
        let until = until.unwrap_or(history.last);
        let events: Vec<ReplayEvent> = history
            .events
            .range(start..)
            .take_while(|e| e.id <= until)
            .take(limit)
            .map(|e| ReplayEvent {
                id: e.id,
                kind: e.kind.clone(),
                text: e.text.clone(),
            })
            .collect();
        Ok(HistoryPage {
            last: events.last().map(|e| e.id),
            done: events.len() < limit,
            events,
            standing,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::Standing;

    fn bus(max_len: usize) -> LocalBus {
        let policy = HistoryPolicy {
            max_len,
            ttl: Duration::from_secs(60),
        };
        let hub = Hub::new(64, crate::hub::Arrival::InOrder, 1024);
        LocalBus::new(Arc::new(hub), policy)
    }

    fn data(n: u32) -> Box<RawValue> {
        serde_json::value::to_raw_value(&n).unwrap()
    }

    #[tokio::test]
    async fn a_page_holds_exactly_the_events_after_the_position_in_order() {
        let bus = bus(100);
        let mut ids = Vec::new();
        for n in 0..5 {
            ids.push(bus.publish("alert", &data(n)).await.unwrap());
        }
        assert!(
            ids.windows(2).all(|w| w[1].is_after(&w[0])),
            "ids increase: {ids:?}"
        );
        let page = bus.read_history(ids[1], None, 2).await.unwrap();
        assert_eq!(page.standing, Standing::Intact { top: ids[4].id });
        let got: Vec<EventId> = page.events.iter().map(|e| e.id).collect();
        assert_eq!(got, [ids[2].id, ids[3].id]);
        assert!(!page.done, "a full page may have more after it");
        let rest = bus.read_history(ids[3], None, 2).await.unwrap();
        assert_eq!(rest.events.len(), 1);
        assert!(rest.done);
    }

    #[tokio::test]
    async fn a_batch_lands_in_order_or_not_at_all() {
        let bus = bus(100);
        let (a, b, c) = (data(1), data(2), data(3));
        let start = bus.hub.position().unwrap();
        let ids = bus
            .publish_many(&[
                Item::new("alert", &*a),
                Item::new("metrics_update", &*b),
                Item::new("alert", &*c),
            ])
            .await
            .unwrap();
        assert!(ids.windows(2).all(|w| w[1].is_after(&w[0])), "{ids:?}");
        let page = bus.read_history(start, None, 10).await.unwrap();
        let got: Vec<(EventId, &str)> = page
            .events
            .iter()
            .map(|e| (e.id, e.kind.as_str()))
            .collect();
        let want: Vec<(EventId, &str)> = ids
            .iter()
            .zip(["alert", "metrics_update", "alert"])
            .map(|(id, kind)| (id.id, kind))
            .collect();
        assert_eq!(got, want);

        let err = bus
            .publish_many(&[Item::new("alert", &*a), Item::new("bad type", &*b)])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("events[1]: "), "{err}");
        let after = bus.read_history(ids[2], None, 10).await.unwrap();
        assert!(
            after.events.is_empty(),
            "nothing of a refused batch is kept"
        );
    }

    #[tokio::test]
    async fn trimmed_foreign_or_unknown_positions_are_not_intact() {
        let bus = bus(3);
        let start = bus.hub.position().unwrap();
        let first = bus.publish("alert", &data(0)).await.unwrap();
        assert!(matches!(
            bus.read_history(start, None, 10).await.unwrap().standing,
            Standing::Intact { .. }
        ));
        for n in 1..6 {
            bus.publish("alert", &data(n)).await.unwrap();
        }
        for (position, why) in [
            (first, "trimmed"),
            (start, "from before a trimmed event"),
            (
                Position::new(first.epoch, EventId::new(u64::MAX, 0)),
                "beyond the end",
            ),
        ] {
            let page = bus.read_history(position, None, 10).await.unwrap();
            assert_eq!(page.standing, Standing::Gone, "{why}");
        }
        let restarted = Position::new(Epoch(first.epoch.0.wrapping_add(1)), first.id);
        assert!(matches!(
            bus.read_history(restarted, None, 10)
                .await
                .unwrap()
                .standing,
            Standing::OtherEpoch(_)
        ));
    }
}
