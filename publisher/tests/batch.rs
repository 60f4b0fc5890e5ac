//! `Publisher::publish_many` against a real `redis-server` on a free port:
//! a batch lands in order, atomically, in one round trip, each event with
//! its id; a bad event refuses the whole batch before anything is sent.

mod common;

use common::{history, script_runs};
use futures_util::StreamExt;
use publisher::batch::MAX_BATCH_EVENTS;
use publisher::{HistoryPolicy, PublishError, Publisher, WireFormat};
use serde_json::json;
use system_tests::{PATIENCE, RedisServer};

#[tokio::test]
async fn a_batch_is_published_in_order_in_one_round_trip_each_event_with_its_id() {
    let redis = RedisServer::start();
    let client = redis::Client::open(redis.url()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.psubscribe("ws:events:*").await.unwrap();
    let mut live = pubsub.on_message();

    let publisher = Publisher::connect(&redis.url(), "ws").await.unwrap();
    let runs_before = script_runs(&redis);
    let events = [
        (
            "metrics_update",
            json!({"tutor_id": "t-1", "window": "7day"}),
        ),
        ("analytics_update", json!({"total_tutors": 1})),
        ("alert", json!({"id": "a-1"})),
        ("analytics_update", json!({"total_tutors": 2})),
        ("nightly.recompute", json!(null)),
    ];
    let ids = publisher
        .publish_many(events.iter().map(|(kind, data)| (*kind, data)))
        .await
        .unwrap();
    assert_eq!(script_runs(&redis) - runs_before, 1, "one round trip");
    assert_eq!(ids.len(), events.len());
    assert!(
        ids.windows(2).all(|w| w[1].is_after(&w[0])),
        "ids increase in publish order: {ids:?}"
    );

    let stored = history(&redis);
    let epoch = redis.cli(&["GET", "{ws:history}:epoch"]);
    for (((sid, envelope), id), (kind, data)) in stored.iter().zip(&ids).zip(&events) {
        assert_eq!(format!("{epoch}:{sid}"), id.to_string());
        // TutorMax's types carry the key STATE_KEYS derives for them.
        let key = match *kind {
            "metrics_update" => r#""key":"t-1|7day","#,
            "alert" => r#""key":"a-1","#,
            _ => "",
        };
        let head = format!(r#"{{"type":"{kind}",{key}"data":{data},"timestamp":""#);
        assert!(envelope.starts_with(&head), "{envelope}");
    }
    assert_eq!(stored.len(), events.len());

    for (id, (kind, _)) in ids.iter().zip(&events) {
        let message = tokio::time::timeout(PATIENCE, live.next())
            .await
            .expect("each event goes out live")
            .unwrap();
        assert_eq!(message.get_channel_name(), format!("ws:events:{kind}"));
        let payload: serde_json::Value =
            serde_json::from_slice(message.get_payload_bytes()).unwrap();
        assert_eq!(payload["id"], id.to_string(), "live in the same order");
    }
    let snapshot: serde_json::Value =
        serde_json::from_str(&redis.cli(&["GET", "ws:analytics:latest"])).unwrap();
    assert_eq!(
        snapshot["data"]["total_tutors"], 2,
        "the batch's last analytics"
    );
    assert_eq!(snapshot["id"], ids[3].to_string());
}

#[tokio::test]
async fn a_bad_event_refuses_the_whole_batch_before_anything_is_sent() {
    let redis = RedisServer::start();
    let wire = WireFormat::new("ws", HistoryPolicy::default()).with_max_event_bytes(256);
    let publisher = Publisher::connect_with(&redis.url(), wire).await.unwrap();
    let ok = json!({"n": 1});
    let big = json!("x".repeat(300));

    let err = publisher
        .publish_many([("alert", &ok), ("not valid", &ok), ("alert", &ok)])
        .await
        .unwrap_err();
    assert!(
        matches!(err, PublishError::InBatch { index: 1, .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("events[1]: invalid message type"),
        "{err}"
    );
    let err = publisher
        .publish_many([("alert", &ok), ("alert", &big)])
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("events[1]: event is 365 bytes encoded, over MAX_EVENT_BYTES (256)"),
        "{err}"
    );
    let err = publisher
        .publish_many(std::iter::repeat_n(("alert", &ok), MAX_BATCH_EVENTS + 1))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("at most 1000 events"), "{err}");
    assert_eq!(
        redis.cli(&["EXISTS", "ws:history"]),
        "0",
        "nothing was sent"
    );
    assert_eq!(script_runs(&redis), 0);

    assert!(
        publisher
            .publish_many::<&str, serde_json::Value, _>([])
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_batch_longer_than_the_history_keeps_its_newest_events_and_records_the_trim() {
    let redis = RedisServer::start();
    let policy = HistoryPolicy {
        max_len: 3,
        ..HistoryPolicy::default()
    };
    let publisher = Publisher::connect_with(&redis.url(), WireFormat::new("ws", policy))
        .await
        .unwrap();
    let data: Vec<serde_json::Value> = (0..5).map(|n| json!({"n": n})).collect();
    let ids = publisher
        .publish_many(data.iter().map(|d| ("alert", d)))
        .await
        .unwrap();
    let kept: Vec<String> = history(&redis).into_iter().map(|(sid, _)| sid).collect();
    let newest: Vec<String> = ids[2..].iter().map(|id| id.id.to_string()).collect();
    assert_eq!(kept, newest, "the newest HISTORY_SIZE events");
    // What a resume from ids[1] needs to know: nothing after it was lost.
    let info = redis.cli(&["XINFO", "STREAM", "ws:history"]);
    assert!(
        info.contains(&ids[1].id.to_string()),
        "max-deleted-entry-id is the last event trimmed: {info}"
    );
}
