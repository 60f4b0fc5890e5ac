//! Keyed state as a dashboard sees it: read after the greeting up to the
//! `state` marker, then kept by applying live events, the way the hook
//! does (`key`, `removed`, `evicted`).

use std::collections::{BTreeMap, HashSet};

use serde_json::Value;

use crate::Client;

/// A dashboard's table: (type, key) → the event, and every id applied.
#[derive(Debug, Default)]
pub struct Table {
    pub rows: BTreeMap<(String, String), Value>,
    /// Ids applied, to catch an event applied twice.
    pub applied: HashSet<String>,
    pub twice: Vec<String>,
}

impl Table {
    /// Applies one event (state or live); events without a key change
    /// nothing.
    pub fn apply(&mut self, event: &Value) {
        if let Some(id) = event["id"].as_str()
            && !self.applied.insert(id.to_owned())
        {
            self.twice.push(id.to_owned());
        }
        let kind = event["type"].as_str().unwrap_or_default().to_owned();
        let Some(key) = event["key"].as_str() else {
            return;
        };
        for gone in event["evicted"].as_array().into_iter().flatten() {
            self.rows
                .remove(&(kind.clone(), gone.as_str().unwrap_or_default().to_owned()));
        }
        if event["removed"] == true {
            self.rows.remove(&(kind, key.to_owned()));
        } else {
            self.rows.insert((kind, key.to_owned()), event.clone());
        }
    }

    /// The table as (type, key, id) rows, to compare.
    pub fn ids(&self) -> Vec<(String, String, String)> {
        self.rows
            .iter()
            .map(|((kind, key), event)| {
                let id = event["id"].as_str().unwrap_or_default().to_owned();
                (kind.clone(), key.clone(), id)
            })
            .collect()
    }
}

/// What came between the greeting and the marker, and the marker.
pub struct StateRead {
    pub greeting: Value,
    pub events: Vec<Value>,
    pub marker: Value,
}

/// Reads a `?state=1` client's greeting, state events and marker.
pub async fn read_state(client: &mut Client) -> StateRead {
    let greeting = client.next_json().await;
    assert_eq!(greeting["type"], "analytics_update", "{greeting}");
    let mut events = Vec::new();
    loop {
        let event = client.next_json().await;
        if event["type"] == "state" {
            return StateRead {
                greeting,
                events,
                marker: event,
            };
        }
        events.push(event);
    }
}
