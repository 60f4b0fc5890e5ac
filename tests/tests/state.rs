//! Dashboards open on the current state (`?state=1`): the latest event per
//! key, kept by the publish script beside the history, read by nodes from
//! their own copy, and continued by the live stream from the same position.
//! Real Redis, real gateway processes, the publisher crate and CLI.

use std::collections::BTreeMap;
use std::time::Duration;

use publisher::{Publisher, WireConfig, WireFormat};
use serde_json::{Value, json};
use system_tests::state::{Table, read_state};
use system_tests::{Client, GatewayProcess, RedisServer, eventually, metric, send};

async fn node(redis: &RedisServer, env: &[(&str, &str)]) -> GatewayProcess {
    GatewayProcess::on_redis(redis, env).await
}

fn metrics(tutor: &str, window: &str, score: u32) -> Value {
    json!({"tutor_id": tutor, "window": window, "score": score})
}

#[tokio::test]
async fn a_dashboard_opens_on_the_latest_event_per_key_on_any_node_then_live() {
    let redis = RedisServer::start();
    let a = node(&redis, &[]).await;
    send(&redis, "metrics_update", &metrics("t-1", "7day", 1), &[]);
    send(&redis, "metrics_update", &metrics("t-2", "7day", 2), &[]);
    let latest = send(&redis, "metrics_update", &metrics("t-1", "7day", 3), &[]);
    send(&redis, "metrics_update", &metrics("t-1", "30day", 4), &[]);
    send(
        &redis,
        "alert",
        &json!({"id": "a-1", "status": "open"}),
        &[],
    );
    send(
        &redis,
        "alert",
        &json!({"id": "a-2", "status": "open"}),
        &[],
    );
    // A resolved alert and a completed intervention are no longer current.
    send(
        &redis,
        "alert",
        &json!({"id": "a-2", "status": "resolved"}),
        &[],
    );
    send(
        &redis,
        "intervention",
        &json!({"id": "i-1", "status": "pending"}),
        &[],
    );
    send(
        &redis,
        "intervention",
        &json!({"id": "i-1", "status": "completed"}),
        &[],
    );
    send(&redis, "test_message", &json!({"unkeyed": true}), &[]);
    // A node started now loads the state from Redis; `a` kept its own.
    let b = node(&redis, &[]).await;

    let mut expected = BTreeMap::from([
        (
            ("alert", "a-1".to_owned()),
            json!({"id": "a-1", "status": "open"}),
        ),
        (
            ("metrics_update", "t-1|30day".to_owned()),
            metrics("t-1", "30day", 4),
        ),
        (
            ("metrics_update", "t-1|7day".to_owned()),
            metrics("t-1", "7day", 3),
        ),
        (
            ("metrics_update", "t-2|7day".to_owned()),
            metrics("t-2", "7day", 2),
        ),
    ]);
    for (n, gateway) in [&a, &b].into_iter().enumerate() {
        let mut client = Client::connect(&gateway.ws_url("?state=1")).await.unwrap();
        let read = read_state(&mut client).await;
        assert_eq!(
            read.greeting.get("id"),
            None,
            "with state, the marker has the position"
        );
        let mut table = Table::default();
        read.events.iter().for_each(|e| table.apply(e));
        let rows: BTreeMap<_, _> = table
            .rows
            .iter()
            .map(|((kind, key), e)| ((kind.as_str(), key.clone()), e["data"].clone()))
            .collect();
        assert_eq!(rows, expected);
        assert_eq!(
            table.rows[&("metrics_update".into(), "t-1|7day".into())]["id"],
            latest
        );
        assert_eq!(
            read.marker["data"],
            json!({"complete": true, "count": expected.len()})
        );
        let position = read.marker["id"].as_str().expect("the marker's position");

        let key = format!("live-{n}");
        let data = json!({"id": key, "status": "open"});
        let live = send(&redis, "alert", &data, &[]);
        let next = client.next_json().await;
        assert_eq!(
            next["id"], live,
            "live right after the state, nothing between"
        );
        assert_eq!(next["key"], key.as_str());
        expected.insert(("alert", key), data);
        client.close().await;

        // The marker's position is a position: a resume from it replays
        // what came after it.
        let mut back = Client::connect(&gateway.ws_url(&format!("?since={position}")))
            .await
            .unwrap();
        back.next_json().await;
        assert_eq!(back.next_json().await["id"], live);
        assert_eq!(back.next_json().await["data"]["recovered"], true);
    }
}

/// The property: whatever the moment a dashboard connects (to whichever
/// node, while publishers are busy, one node loading its state from Redis
/// meanwhile), its state plus the live stream after it is the history's
/// final state per key, and no event reaches it twice.
#[tokio::test]
async fn state_plus_stream_is_the_final_state_for_clients_joining_during_publishing() {
    let redis = RedisServer::start();
    let a = node(&redis, &[]).await;
    let wire: WireFormat = WireConfig::default().wire_format(publisher::Topology::Single);
    let publisher = Publisher::connect_with(&redis.url(), wire).await.unwrap();
    let seed = fastrand::u64(..);
    eprintln!("seed {seed}");
    let mut rng = fastrand::Rng::with_seed(seed);

    let publishing = {
        let publisher = publisher.clone();
        let mut rng = rng.clone();
        tokio::spawn(async move {
            for n in 0..600u32 {
                let key = format!("k-{}", rng.u32(0..25));
                let outcome = match rng.u32(0..10) {
                    0 => publisher.remove("alert", &key).await,
                    1 => {
                        // A tombstone by rule: resolved.
                        let data = json!({"id": key, "status": "resolved", "n": n});
                        publisher.alert(&data).await
                    }
                    2..=3 => {
                        let window = if rng.bool() { "7day" } else { "30day" };
                        publisher
                            .metrics_update(&json!({"tutor_id": key, "window": window, "n": n}))
                            .await
                    }
                    4 => {
                        let events = [
                            ("alert", json!({"id": key, "status": "open", "n": n})),
                            (
                                "intervention",
                                json!({"id": key, "status": "pending", "n": n}),
                            ),
                        ];
                        publisher
                            .publish_many(events.iter().map(|(k, d)| (*k, d)))
                            .await
                            .map(|ids| ids[0])
                    }
                    _ => {
                        publisher
                            .alert(&json!({"id": key, "status": "open", "n": n}))
                            .await
                    }
                };
                outcome.expect("publish");
                if n % 20 == 0 {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        })
    };
    // A second node starts meanwhile: it loads the state (page by page)
    // while the publisher writes.
    tokio::time::sleep(Duration::from_millis(30)).await;
    let b = node(&redis, &[]).await;
    // Dashboards join at random moments, on either node.
    let mut clients = Vec::new();
    for i in 0..8 {
        tokio::time::sleep(Duration::from_millis(rng.u64(5..60))).await;
        let gateway = if i % 2 == 0 { &a } else { &b };
        let mut client = Client::connect(&gateway.ws_url("?state=1")).await.unwrap();
        let read = read_state(&mut client).await;
        let mut table = Table::default();
        read.events.iter().for_each(|e| table.apply(e));
        assert_eq!(read.marker["data"]["count"], read.events.len());
        clients.push((
            client,
            table,
            read.marker["id"].as_str().unwrap().to_owned(),
        ));
    }
    publishing.await.unwrap();
    let done = publisher
        .publish("test_message", &json!({"done": true}))
        .await
        .unwrap();

    // The truth: the history's events, in order, folded per key.
    let mut truth = Table::default();
    let entries = redis.cli(&["XRANGE", "ws:history", "-", "+"]);
    let epoch = redis.cli(&["GET", "{ws:history}:epoch"]);
    for event in history_events(&entries, &epoch) {
        truth.apply(&event);
    }
    assert!(!truth.rows.is_empty());
    // Redis's own state agrees with its history.
    for kind in ["alert", "metrics_update", "intervention"] {
        let keys = redis.cli(&["HLEN", &format!("{{ws:history}}:state:{kind}")]);
        let expected = truth.rows.keys().filter(|(k, _)| k == kind).count();
        assert_eq!(keys.trim(), expected.to_string(), "{kind}");
    }

    for (client, mut table, marker) in clients {
        let mut client = client;
        loop {
            let event = client.next_json().await;
            if event["id"] == done.to_string() {
                break;
            }
            let id: shared::Position = event["id"].as_str().unwrap().parse().unwrap();
            let marker: shared::Position = marker.parse().unwrap();
            assert!(id.is_after(&marker), "live is after the marker: {event}");
            table.apply(&event);
        }
        assert_eq!(table.twice, Vec::<String>::new(), "no event applied twice");
        assert_eq!(table.ids(), truth.ids(), "seed {seed}");
    }
}

/// `XRANGE` output of redis-cli (id line, then field/value lines) as
/// envelopes with their ids.
fn history_events(text: &str, epoch: &str) -> Vec<Value> {
    let lines: Vec<&str> = text.lines().collect();
    lines
        .chunks(3)
        .filter(|c| c.len() == 3 && c[1] == "e")
        .map(|c| {
            let mut event: Value = serde_json::from_str(c[2]).unwrap();
            event["id"] = json!(format!("{epoch}:{}", c[0]));
            event
        })
        .collect()
}

#[tokio::test]
async fn keys_are_bounded_and_an_eviction_reaches_every_dashboard() {
    let redis = RedisServer::start();
    let bound = [("STATE_MAX_KEYS", "3")];
    let gateway = node(&redis, &bound).await;
    let mut live = Client::connect(&gateway.ws_url("?state=1")).await.unwrap();
    let read = read_state(&mut live).await;
    assert_eq!(read.marker["data"]["count"], 0);
    let mut table = Table::default();
    for n in 1..=5 {
        send(&redis, "alert", &json!({"id": format!("a-{n}")}), &bound);
        table.apply(&live.next_json().await);
    }
    let keys = |t: &Table| t.rows.keys().map(|(_, k)| k.clone()).collect::<Vec<_>>();
    assert_eq!(
        keys(&table),
        ["a-3", "a-4", "a-5"],
        "the least recently updated went"
    );
    let mut fresh = Client::connect(&gateway.ws_url("?state=1")).await.unwrap();
    let mut opened = Table::default();
    read_state(&mut fresh)
        .await
        .events
        .iter()
        .for_each(|e| opened.apply(e));
    assert_eq!(
        keys(&opened),
        keys(&table),
        "a fresh dashboard shows the same"
    );
    assert_eq!(redis.cli(&["HLEN", "{ws:history}:state:alert"]).trim(), "3");
    eventually("evictions counted", || async {
        let text = gateway.get("/metrics").await.ok()?.body;
        (metric(&text, "gateway_state_evictions_total") == 2.0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_client_gets_the_state_of_its_types_only() {
    let redis = RedisServer::start();
    let gateway = node(&redis, &[]).await;
    send(&redis, "alert", &json!({"id": "a-1"}), &[]);
    send(&redis, "metrics_update", &metrics("t-1", "7day", 1), &[]);
    let mut client = Client::connect(&gateway.ws_url("?types=alert&state=1"))
        .await
        .unwrap();
    let read = read_state(&mut client).await;
    let kinds: Vec<&Value> = read.events.iter().map(|e| &e["type"]).collect();
    assert_eq!(kinds, [&json!("alert")]);
    assert_eq!(read.marker["data"]["count"], 1);

    let bad = Client::connect(&gateway.ws_url("?state=maybe")).await;
    assert!(bad.is_err(), "a bad ?state= is refused at the handshake");
}

#[tokio::test]
async fn after_redis_restarts_empty_the_state_is_the_new_historys_never_the_old() {
    let mut redis = RedisServer::start();
    let gateway = node(&redis, &[]).await;
    send(&redis, "alert", &json!({"id": "old"}), &[]);
    let mut client = Client::connect(&gateway.ws_url("?state=1")).await.unwrap();
    assert_eq!(read_state(&mut client).await.events.len(), 1);
    let mut plain = Client::connect(&gateway.ws_url("")).await.unwrap();
    plain.next_json().await;

    redis.restart();
    gateway.wait_ready(200).await;
    let new = send(&redis, "alert", &json!({"id": "new"}), &[]);
    // The dashboard holding the old state is told to come back for the new
    // one (1012); one without state just goes on.
    assert_eq!(client.closed().await, system_tests::Closed::Code(1012));
    assert_eq!(plain.next_json().await["id"], new.as_str());
    let read = eventually("the node follows the new history", || async {
        let mut client = Client::connect(&gateway.ws_url("?state=1")).await.ok()?;
        let read = read_state(&mut client).await;
        (read.marker["id"].as_str()?.split(':').next() == new.split(':').next()).then_some(read)
    })
    .await;
    let keys: Vec<&Value> = read.events.iter().map(|e| &e["key"]).collect();
    assert!(
        keys.iter().all(|k| **k != "old"),
        "nothing of the old history's state: {keys:?}"
    );
}

#[tokio::test]
async fn a_raw_publish_is_never_state_whatever_it_claims() {
    let redis = RedisServer::start();
    let gateway = node(&redis, &[]).await;
    let mut live = Client::connect(&gateway.ws_url("?state=1")).await.unwrap();
    read_state(&mut live).await;
    // No id (live only), then an id of another history: delivered, never kept.
    for payload in [
        r#"{"type":"alert","key":"forged","data":{"id":"forged"}}"#,
        r#"{"id":"00000001:1-0","type":"alert","key":"forged-2","removed":true,"data":{}}"#,
    ] {
        redis.cli(&["PUBLISH", "ws:events:alert", payload]);
        let got = live.next_json().await;
        assert_eq!(got["type"], "alert", "delivered live: {got}");
    }
    let kept = send(&redis, "alert", &json!({"id": "real"}), &[]);
    assert_eq!(live.next_json().await["id"], kept);
    let mut fresh = Client::connect(&gateway.ws_url("?state=1")).await.unwrap();
    let keys: Vec<Value> = read_state(&mut fresh)
        .await
        .events
        .iter()
        .map(|e| e["key"].clone())
        .collect();
    assert_eq!(keys, [json!("real")]);
}

#[tokio::test]
async fn a_lowered_bound_evicts_over_several_events_each_one_still_delivered() {
    let redis = RedisServer::start();
    let gateway = node(&redis, &[("MAX_EVENT_BYTES", "1024")]).await;
    let long = |n: usize| format!("{n:03}{}", "k".repeat(200));
    let publisher = Publisher::connect(&redis.url(), "ws").await.unwrap();
    for n in 0..40 {
        publisher
            .publish_keyed("note", &long(n), &json!({}))
            .await
            .unwrap();
    }
    let mut live = Client::connect(&gateway.ws_url("?types=note"))
        .await
        .unwrap();
    live.next_json().await;
    // Now with a bound of 2 and events near MAX_EVENT_BYTES: each names as many
    // evictions as fit, and every one reaches the client.
    let bounded = WireConfig {
        state_max_keys: 2,
        max_event_bytes: 1024,
        ..WireConfig::default()
    };
    let tight = Publisher::connect_with(
        &redis.url(),
        bounded.wire_format(publisher::Topology::Single),
    )
    .await
    .unwrap();
    let blob = "x".repeat(700);
    let mut named = 0;
    for n in 100..110 {
        tight
            .publish_keyed("note", &long(n), &json!({"blob": blob}))
            .await
            .unwrap();
        let event = live.next_json().await;
        assert_eq!(
            event["key"],
            long(n).as_str(),
            "delivered, whatever it evicted"
        );
        let evicted = event["evicted"].as_array().cloned().unwrap_or_default();
        assert!(serde_json::to_string(&evicted).unwrap().len() <= 2048 + 2);
        named += evicted.len();
    }
    assert_eq!(
        named,
        40 + 8,
        "all 48 evicted over the ten events, none lost"
    );
    assert_eq!(redis.cli(&["HLEN", "{ws:history}:state:note"]).trim(), "2");
}
