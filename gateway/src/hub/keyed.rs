//! The node's copy of the keyed state: the latest event per key of each
//! type, as the history's publish script keeps it in Redis (or the
//! in-process bus in memory).
//!
//! Updated by `dispatch` under the hub's lock, from the events themselves
//! (their `key`, `removed` and `evicted` members), so it is always exactly
//! the state after the last event in the ring: a client joining takes a
//! [`View`] (persistent maps: O(1), however many keys) together with its
//! place in the ring, and gets state and stream from one position, with
//! nothing missing or doubled between them. Loaded from Redis whole when a
//! node (re)subscribes ([`Keyed::replace`], the `floor` being where the
//! history stood then); cleared when the history is created anew.
//!
//! Only events the history gave a position are kept: a raw `PUBLISH` is
//! live-only, here as everywhere.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use shared::envelope::StateChange;
use shared::{EventId, TypeFilter};

use super::Event;

type Keys = imbl::HashMap<Arc<str>, Arc<Event>>;

/// The state, per type.
#[derive(Debug, Clone, Default)]
pub struct Keyed {
    types: imbl::HashMap<Arc<str>, Keys>,
    /// Where the history stood when the state was loaded: events at or
    /// before it are in it already (a catch-up or a late live copy of one
    /// changes nothing).
    floor: Option<EventId>,
    /// While a load from the history is under way: what was applied
    /// meanwhile, applied again on the loaded state where it is later than
    /// the read (on a cluster, live events reach the hub during the read).
    journal: Option<Vec<(Arc<Event>, StateChange)>>,
    /// `Some` where events can reach the node late, behind later ones of
    /// their key (a Redis Cluster's history re-read): the keys taken out
    /// lately, so that a late event of one is known to be stale.
    gone: Option<Gone>,
}

/// Keys recently removed or evicted, with the id that took each out: at
/// most `cap` (the hub's window of recent ids: an event older than the
/// oldest one forgotten here is older than every id the hub forgot, and
/// the hub drops it as too old to tell).
#[derive(Debug, Clone, Default)]
struct Gone {
    /// Type → key → the id that took it out.
    ids: HashMap<Arc<str>, HashMap<Arc<str>, EventId>>,
    order: VecDeque<(Arc<str>, Arc<str>, EventId)>,
    cap: usize,
}

impl Gone {
    fn insert(&mut self, kind: &str, key: &str, id: EventId) {
        // The type's name allocated once, on its first removal.
        let kind = match self.ids.get_key_value(kind) {
            Some((name, _)) => name.clone(),
            None => Arc::from(kind),
        };
        let key: Arc<str> = Arc::from(key);
        let at = self
            .ids
            .entry(kind.clone())
            .or_default()
            .entry(key.clone())
            .or_insert(id);
        *at = (*at).max(id);
        self.order.push_back((kind, key, id));
        if self.order.len() > self.cap {
            let (kind, key, id) = self.order.pop_front().expect("not empty");
            if let Some(keys) = self.ids.get_mut(&kind)
                && keys.get(&key) == Some(&id)
            {
                keys.remove(&key);
                if keys.is_empty() {
                    self.ids.remove(&kind);
                }
            }
        }
    }

    fn at(&self, kind: &str, key: &str) -> Option<EventId> {
        self.ids.get(kind)?.get(key).copied()
    }
}

impl Keyed {
    /// A state for a node where events can arrive late (a Redis Cluster):
    /// it remembers the last `window` keys taken out, for [`Self::superseded`].
    pub fn remembering_removals(window: usize) -> Self {
        Self {
            gone: Some(Gone {
                cap: window,
                ..Gone::default()
            }),
            ..Self::default()
        }
    }

    /// Whether the event at `id` of `kind`'s `key` arrived after a later
    /// one of its key (an update, a removal, an eviction) did: it is not
    /// the key's latest, and a client applying it would go back in time.
    /// Only where events can arrive late; elsewhere always false.
    pub fn superseded(&self, kind: &str, change: &StateChange, id: EventId) -> bool {
        let Some(gone) = &self.gone else { return false };
        let key = change.key.as_str();
        let had = self.types.get(kind).and_then(|keys| keys.get(key));
        if let Some(had) = had {
            return newer(had, id);
        }
        // Not held: taken out after it (remembered), or, for an update the
        // loaded state covers, taken out before the load (else it would be
        // held, as the key's latest or behind a newer one). Not so for a
        // removal: it may be what took the key out of the load, and sending
        // one for a key nobody holds changes nothing.
        gone_after(Some(gone), kind, key, id)
            || (!change.removed && self.floor.is_some_and(|floor| id <= floor))
    }

    /// Applies one event with a position; the keys it evicted, counted.
    pub fn apply(&mut self, event: &Arc<Event>, change: &StateChange) -> usize {
        let Some(id) = event.id() else { return 0 };
        if self.floor.is_some_and(|floor| id <= floor) {
            return 0;
        }
        if let Some(journal) = &mut self.journal {
            journal.push((event.clone(), change.clone()));
        }
        let kind = event.kind.as_str();
        let keys = keys_of(&mut self.types, kind);
        // Nothing newer than the event is taken out or replaced by it: on
        // a Redis Cluster the history re-read may bring an event whose live
        // copy was lost, after later ones of its key. (Taken out, then put
        // back in that rare case: one lookup a key, not two.)
        for key in &change.evicted {
            take_out(keys, key, id, kind, self.gone.as_mut());
        }
        if change.removed {
            take_out(keys, &change.key, id, kind, self.gone.as_mut());
        } else if !gone_after(self.gone.as_ref(), kind, &change.key, id) {
            put(keys, Arc::from(change.key.as_str()), event.clone());
        }
        change.evicted.len()
    }

    /// A load from the history begins: remember what is applied until
    /// [`Self::replace`].
    pub fn begin_load(&mut self) {
        self.journal = Some(Vec::new());
    }

    pub fn cancel_load(&mut self) {
        self.journal = None;
    }

    /// The state loaded whole, current to `floor`; what was applied since
    /// [`Self::begin_load`] and is later than `floor` is applied again.
    pub fn replace(&mut self, events: Vec<(Arc<Event>, String)>, floor: EventId) {
        let journal = self.journal.take().unwrap_or_default();
        let mut types = imbl::HashMap::new();
        for (event, key) in events {
            // A paged read may bring a key twice: the newer stays.
            put(keys_of(&mut types, &event.kind), Arc::from(key), event);
        }
        self.types = types;
        self.floor = Some(floor);
        // What was taken out before `floor` is absent from the load; what
        // was taken out after it, the journal takes out again.
        if let Some(gone) = &mut self.gone {
            *gone = Gone {
                cap: gone.cap,
                ..Gone::default()
            };
        }
        for (event, change) in journal {
            self.apply(&event, &change);
        }
    }

    /// No state (a history created anew: nothing of the old one is current).
    pub fn clear(&mut self) {
        let window = self.gone.as_ref().map(|gone| gone.cap);
        *self = window.map_or_else(Self::default, Self::remembering_removals);
    }

    /// Where the state is current to, if loaded later than the last event
    /// the node sent.
    pub fn floor(&self) -> Option<EventId> {
        self.floor
    }

    /// Keys in all.
    pub fn len(&self) -> usize {
        self.types.values().map(imbl::HashMap::len).sum()
    }

    /// A snapshot: O(1), and unaffected by later updates.
    pub fn view(&self) -> View {
        View {
            types: self.types.clone(),
        }
    }
}

/// A type's keys, made on its first one (the name allocated only then).
fn keys_of<'a>(types: &'a mut imbl::HashMap<Arc<str>, Keys>, kind: &str) -> &'a mut Keys {
    if !types.contains_key(kind) {
        types.insert(Arc::from(kind), Keys::default());
    }
    types.get_mut(kind).expect("inserted above")
}

/// Whether `key` was taken out by an event later than `id`.
fn gone_after(gone: Option<&Gone>, kind: &str, key: &str, id: EventId) -> bool {
    gone.and_then(|gone| gone.at(kind, key))
        .is_some_and(|at| at > id)
}

/// Takes `key` out unless it holds an event newer than `id`; remembered in
/// `gone` when it was.
fn take_out(keys: &mut Keys, key: &str, id: EventId, kind: &str, gone: Option<&mut Gone>) {
    if let Some(had) = keys.remove(key).filter(|had| newer(had, id)) {
        keys.insert(Arc::from(key), had);
        return;
    }
    if let Some(gone) = gone {
        gone.insert(kind, key, id);
    }
}

/// Whether `had` is later than the event at `id`.
fn newer(had: &Event, id: EventId) -> bool {
    had.id() > Some(id)
}

/// Sets `key` to `event` unless it holds a newer one.
fn put(keys: &mut Keys, key: Arc<str>, event: Arc<Event>) {
    let Some(id) = event.id() else { return };
    if let Some(had) = keys.insert(key.clone(), event).filter(|had| newer(had, id)) {
        keys.insert(key, had);
    }
}

/// The state as it was when a client joined.
#[derive(Debug, Clone, Default)]
pub struct View {
    types: imbl::HashMap<Arc<str>, Keys>,
}

impl View {
    /// The events a client with `filter` gets: its types' keys, without
    /// those whose latest event is older than `ttl` (a type nobody
    /// published to lately keeps its keys in Redis until its next publish;
    /// they are not current all the same). Zero `ttl`: no age limit.
    pub fn events<'a>(
        &'a self,
        filter: &'a TypeFilter,
        ttl: Duration,
    ) -> impl Iterator<Item = &'a Arc<Event>> + 'a {
        let now_ms = u64::try_from(Utc::now().timestamp_millis()).unwrap_or(0);
        let cutoff = u64::try_from(ttl.as_millis())
            .ok()
            .filter(|&ttl| ttl > 0)
            .map(|ttl| now_ms.saturating_sub(ttl));
        self.types
            .iter()
            .filter(|(kind, _)| filter.allows(kind))
            .flat_map(|(_, keys)| keys.values())
            .filter(move |event| {
                cutoff.is_none_or(|cutoff| event.id().is_some_and(|id| id.ms >= cutoff))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::Position;

    fn event(kind: &str, ms: u64) -> Arc<Event> {
        let id = EventId { ms, seq: 0 };
        let position = Position::new(shared::Epoch(1), id);
        Arc::new(Event::new(
            "{}",
            kind.to_owned(),
            Some(position),
            Utc::now(),
        ))
    }

    fn change(key: &str, removed: bool, evicted: &[&str]) -> StateChange {
        StateChange {
            key: key.into(),
            removed,
            evicted: evicted.iter().map(|k| k.to_string()).collect(),
        }
    }

    fn ids(view: &View, filter: &TypeFilter) -> Vec<u64> {
        let mut ids: Vec<u64> = view
            .events(filter, Duration::ZERO)
            .map(|e| e.id().unwrap().ms)
            .collect();
        ids.sort_unstable();
        ids
    }

    #[test]
    fn the_latest_event_per_key_stays_and_removals_and_evictions_take_keys_out() {
        let mut keyed = Keyed::default();
        let all = TypeFilter::default();
        keyed.apply(&event("alert", 1), &change("a", false, &[]));
        keyed.apply(&event("alert", 2), &change("b", false, &[]));
        let before = keyed.view();
        keyed.apply(&event("alert", 3), &change("a", false, &[]));
        keyed.apply(&event("metrics_update", 4), &change("a", false, &[]));
        assert_eq!(ids(&keyed.view(), &all), [2, 3, 4]);
        assert_eq!(ids(&before, &all), [1, 2], "a view does not change");
        keyed.apply(&event("alert", 5), &change("b", true, &[]));
        assert_eq!(
            keyed.apply(&event("alert", 6), &change("c", false, &["a"])),
            1
        );
        assert_eq!(ids(&keyed.view(), &all), [4, 6]);
        let alerts = TypeFilter::parse("alert").unwrap();
        assert_eq!(ids(&keyed.view(), &alerts), [6]);
        assert_eq!(keyed.len(), 2);
    }

    #[test]
    fn an_older_event_of_a_key_never_replaces_or_removes_a_newer_one() {
        let mut keyed = Keyed::default();
        keyed.apply(&event("alert", 7), &change("a", false, &[]));
        keyed.apply(&event("alert", 5), &change("a", false, &[]));
        keyed.apply(&event("alert", 6), &change("a", true, &[]));
        keyed.apply(&event("alert", 6), &change("b", false, &["a"]));
        let mut got = ids(&keyed.view(), &TypeFilter::default());
        got.sort_unstable();
        assert_eq!(got, [6, 7]);
    }

    #[test]
    fn a_loaded_state_ignores_events_it_already_holds() {
        let mut keyed = Keyed::default();
        keyed.replace(
            vec![(event("alert", 10), "a".into())],
            EventId { ms: 10, seq: 0 },
        );
        keyed.apply(&event("alert", 9), &change("a", true, &[]));
        keyed.apply(&event("alert", 10), &change("b", false, &[]));
        assert_eq!(ids(&keyed.view(), &TypeFilter::default()), [10]);
        keyed.apply(&event("alert", 11), &change("b", false, &[]));
        assert_eq!(ids(&keyed.view(), &TypeFilter::default()), [10, 11]);
        keyed.clear();
        assert_eq!(keyed.len(), 0);
    }

    #[test]
    fn what_arrives_during_a_load_and_is_later_than_it_survives_it() {
        let mut keyed = Keyed::default();
        keyed.begin_load();
        keyed.apply(&event("alert", 5), &change("a", false, &[]));
        keyed.apply(&event("alert", 12), &change("b", false, &[]));
        keyed.apply(&event("alert", 13), &change("x", true, &[]));
        let loaded = vec![
            (event("alert", 5), "a".into()),
            (event("alert", 8), "x".into()),
        ];
        keyed.replace(loaded, EventId { ms: 10, seq: 0 });
        assert_eq!(ids(&keyed.view(), &TypeFilter::default()), [5, 12]);
    }

    #[test]
    fn a_late_event_behind_a_later_one_of_its_key_is_known_superseded() {
        let at = |ms| EventId { ms, seq: 0 };
        let mut keyed = Keyed::remembering_removals(3);
        keyed.apply(&event("alert", 5), &change("a", false, &[]));
        keyed.apply(&event("alert", 7), &change("a", true, &[]));
        keyed.apply(&event("alert", 10), &change("b", false, &[]));
        keyed.apply(&event("alert", 12), &change("c", false, &["b"]));
        assert!(
            keyed.superseded("alert", &change("a", false, &[]), at(6)),
            "behind its removal"
        );
        keyed.apply(&event("alert", 6), &change("a", false, &[]));
        assert_eq!(
            ids(&keyed.view(), &TypeFilter::default()),
            [12],
            "not put back"
        );
        assert!(
            !keyed.superseded("alert", &change("a", false, &[]), at(8)),
            "after it: current"
        );
        assert!(
            keyed.superseded("alert", &change("b", false, &[]), at(9)),
            "behind its eviction"
        );
        assert!(
            keyed.superseded("alert", &change("c", false, &[]), at(11)),
            "behind an update"
        );
        assert!(!keyed.superseded("alert", &change("c", false, &[]), at(13)));
        assert!(
            !keyed.superseded("alert", &change("d", false, &[]), at(1)),
            "a key never seen"
        );
        assert!(
            !keyed.superseded("metrics_update", &change("a", false, &[]), at(6)),
            "per type"
        );
        // The removals remembered are the last few: the hub forgets ids too.
        for (ms, key) in [(20, "x"), (21, "y"), (22, "z")] {
            keyed.apply(&event("alert", ms), &change(key, true, &[]));
        }
        assert!(!keyed.superseded("alert", &change("a", false, &[]), at(6)));
        assert!(keyed.superseded("alert", &change("z", false, &[]), at(19)));

        // Loaded: what the load covers and does not hold was taken out.
        keyed.replace(vec![(event("alert", 30), "k".into())], at(30));
        assert!(keyed.superseded("alert", &change("gone-before", false, &[]), at(25)));
        assert!(keyed.superseded("alert", &change("k", false, &[]), at(29)));
        assert!(
            !keyed.superseded("alert", &change("k", false, &[]), at(30)),
            "its own late copy"
        );
        assert!(!keyed.superseded("alert", &change("new", false, &[]), at(31)));
        assert!(
            !keyed.superseded("alert", &change("gone-before", true, &[]), at(25)),
            "a removal the load covers may be what took its key out: it still goes"
        );
        keyed.clear();
        keyed.apply(&event("alert", 40), &change("q", true, &[]));
        assert!(
            keyed.superseded("alert", &change("q", false, &[]), at(39)),
            "still remembering after a clear"
        );

        // In order (one Redis) nothing arrives late: never superseded.
        let mut in_order = Keyed::default();
        in_order.apply(&event("alert", 7), &change("a", true, &[]));
        assert!(!in_order.superseded("alert", &change("a", false, &[]), at(6)));
    }

    #[test]
    fn keys_past_their_age_are_not_current() {
        let mut keyed = Keyed::default();
        let now = u64::try_from(Utc::now().timestamp_millis()).unwrap();
        keyed.apply(&event("alert", now - 60_000), &change("old", false, &[]));
        keyed.apply(&event("alert", now), &change("new", false, &[]));
        let all = TypeFilter::default();
        assert_eq!(
            keyed.view().events(&all, Duration::from_secs(30)).count(),
            1
        );
        assert_eq!(keyed.view().events(&all, Duration::ZERO).count(), 2);
    }
}
