//! The hub's behaviour as a client sees it: one frame shared by every
//! subscriber, duplicates and untrusted ids dropped, the state and the ring
//! joined at one place.

use super::intake::{Dropped, preview};
use super::*;

const EPOCH: Epoch = Epoch(0xabcdef01);

/// A reader of the ring from where a client would join now.
struct Rx<'a>(&'a Hub, u64);

impl Rx<'_> {
    fn try_recv(&mut self) -> Result<Arc<Event>, ()> {
        let frame = self.0.frames_since(self.1).into_iter().next().ok_or(())?;
        self.1 = frame.seq + 1;
        Ok(frame)
    }
}

fn rx(hub: &Hub) -> Rx<'_> {
    Rx(hub, hub.subscribe().next_seq)
}

fn hub(arrival: Arrival) -> Hub {
    let hub = Hub::new(1 << 20, arrival, 1024);
    hub.init(Position::new(EPOCH, EventId::ZERO));
    hub
}

fn payload(id: Option<&str>, kind: &str, data: &str) -> String {
    let id = id
        .map(|id| format!("\"id\":\"{EPOCH}:{id}\","))
        .unwrap_or_default();
    format!(r#"{{{id}"type":"{kind}","data":{data},"timestamp":"2026-11-25T10:00:00.000Z"}}"#)
}

fn keyed(id: &str, kind: &str, key: &str) -> String {
    format!(
        r#"{{"id":"{EPOCH}:{id}","type":"{kind}","key":"{key}","data":{{}},"timestamp":"2026-11-25T10:00:00.000Z"}}"#
    )
}

#[test]
fn a_state_client_joins_at_one_place_in_state_and_ring_on_either_arrival() {
    for arrival in [Arrival::InOrder, Arrival::Unordered] {
        let hub = hub(arrival);
        hub.begin_state_load();
        hub.load_state(EPOCH, EventId::new(10, 0), &[keyed("10-0", "alert", "a")]);
        hub.dispatch(keyed("12-0", "alert", "b").as_bytes())
            .unwrap();
        hub.dispatch(payload(Some("13-0"), "alert", "1").as_bytes())
            .unwrap();
        let joined = hub.subscribe_with_state();
        let view = joined.state.as_ref().unwrap();
        let mut keys: Vec<u64> = view
            .events(&TypeFilter::default(), std::time::Duration::ZERO)
            .map(|e| e.id().unwrap().ms)
            .collect();
        keys.sort_unstable();
        assert_eq!(keys, [10, 12], "{arrival:?}: loaded, then applied");
        assert_eq!(joined.state_position.unwrap().id, EventId::new(13, 0));
        // What the ring brings next is taken after this: on a cluster
        // an event can arrive later than one with a greater id.
        let expected = match arrival {
            Arrival::InOrder => EventId::new(13, 0),
            Arrival::Unordered => EventId::new(10, 0),
        };
        assert_eq!(joined.state_seam, expected, "{arrival:?}");
        assert!(
            hub.subscribe().state.is_none(),
            "a view only when asked for"
        );
        // A new history: the state is gone.
        hub.adopt(shared::Epoch(7));
        let joined = hub.subscribe_with_state();
        assert_eq!(
            joined
                .state
                .unwrap()
                .events(&TypeFilter::default(), std::time::Duration::ZERO)
                .count(),
            0
        );
    }
}

#[test]
fn every_subscriber_gets_the_same_shared_frame() {
    let hub = hub(Arrival::InOrder);
    let mut a = rx(&hub);
    let mut b = rx(&hub);
    hub.dispatch(payload(None, "alert", "{}").as_bytes())
        .unwrap();
    let (fa, fb) = (a.try_recv().unwrap(), b.try_recv().unwrap());
    assert!(Arc::ptr_eq(&fa, &fb), "one frame per event, not per client");
    assert_eq!(fa.kind, "alert");
}

#[test]
fn each_encoding_of_an_event_is_made_once_and_shared() {
    let hub = hub(Arrival::InOrder);
    let mut rx = rx(&hub);
    let data = format!("{{\"note\":\"{}\"}}", "row ".repeat(100));
    hub.dispatch(payload(Some("5-0"), "metrics_update", &data).as_bytes())
        .unwrap();
    let event = rx.try_recv().unwrap();
    let deflate = Encoding::Deflate { min: 256 };
    for encoding in [Encoding::WebSocket, deflate, Encoding::Sse] {
        let (first, again) = (event.wire(encoding), event.wire(encoding));
        assert_eq!(first.as_ptr(), again.as_ptr(), "{encoding:?}: built once");
    }
    assert_eq!(event.wire(deflate)[0], 0xC1, "compressed: FIN, RSV1, text");
    let small = Encoding::Deflate { min: 100_000 };
    assert_eq!(
        event.wire(small).as_ptr(),
        event.wire(Encoding::WebSocket).as_ptr(),
        "under the minimum: the plain frame itself"
    );
    assert!(event.wire(deflate).len() < event.wire(Encoding::WebSocket).len() / 2);
    let sse = std::str::from_utf8(event.wire(Encoding::Sse)).unwrap();
    assert!(
        sse.starts_with(&format!("id: {EPOCH}:5-0\ndata: {{")),
        "{sse}"
    );
    assert_eq!(
        &sse[sse.find("data: ").unwrap() + 6..sse.len() - 2],
        event.text()
    );
}

#[test]
fn ids_at_or_before_the_head_are_dropped_as_duplicates() {
    let hub = hub(Arrival::InOrder);
    let mut rx = rx(&hub);
    let first = payload(Some("10-0"), "alert", "1");
    assert!(matches!(
        hub.dispatch(first.as_bytes()),
        Ok(Dispatched::Sent(Some(_)))
    ));
    assert_eq!(hub.dispatch(first.as_bytes()), Ok(Dispatched::Duplicate));
    assert_eq!(
        hub.dispatch(payload(Some("9-5"), "alert", "2").as_bytes()),
        Ok(Dispatched::Duplicate)
    );
    hub.dispatch(payload(None, "raw", "3").as_bytes()).unwrap();
    assert_eq!(rx.try_recv().unwrap().id(), Some(EventId::new(10, 0)));
    assert_eq!(rx.try_recv().unwrap().kind, "raw");
    assert!(rx.try_recv().is_err());
}

#[test]
fn an_id_the_history_did_not_assign_moves_nothing_and_never_reaches_a_client() {
    let hub = hub(Arrival::InOrder);
    let mut rx = rx(&hub);
    let forged = [
        r#"{"id":"99999999999999-0","type":"alert","data":{}}"#.to_owned(),
        r#"{"id":"01234567:99999999999999-0","type":"alert","data":{}}"#.to_owned(),
        payload(Some("99999999999999-0"), "alert", "{}"),
        r#"{"id":{"x":1},"type":"alert","data":{}}"#.to_owned(),
    ];
    for text in &forged {
        assert_eq!(
            hub.dispatch(text.as_bytes()),
            Ok(Dispatched::Sent(None)),
            "{text}"
        );
        let frame = rx.try_recv().unwrap();
        assert_eq!(frame.id(), None);
        let value: serde_json::Value = serde_json::from_str(frame.text()).unwrap();
        assert!(
            value.get("id").is_none(),
            "sent live-only: {}",
            frame.text()
        );
    }
    assert_eq!(hub.position(), Some(Position::new(EPOCH, EventId::ZERO)));
    assert!(hub.take_foreign_epoch_seen(), "another epoch was named");
    let real = payload(Some("10-0"), "alert", "{}");
    assert_eq!(
        hub.dispatch(real.as_bytes()),
        Ok(Dispatched::Sent(Some(EventId::new(10, 0)))),
        "later events still go out"
    );
}

#[test]
fn an_oversized_payload_is_dropped() {
    let hub = hub(Arrival::InOrder);
    let big = payload(None, "alert", &format!("\"{}\"", "x".repeat(2000)));
    assert!(matches!(
        hub.dispatch(big.as_bytes()),
        Err(Dropped::TooLarge(_))
    ));
    hub.set_snapshot(&payload(
        None,
        "analytics_update",
        &format!("\"{}\"", "x".repeat(2000)),
    ));
    assert!(
        hub.subscribe().analytics.is_none(),
        "never a greeting over the limit"
    );
}

#[test]
fn a_new_subscriber_sees_the_latest_analytics_and_position() {
    let hub = hub(Arrival::InOrder);
    let greeting: serde_json::Value = serde_json::from_str(&Snapshot::frame(None, None)).unwrap();
    assert_eq!(greeting["data"], serde_json::json!({}));
    hub.dispatch(payload(Some("5-0"), "analytics_update", r#"{"total_tutors":7}"#).as_bytes())
        .unwrap();
    hub.dispatch(payload(Some("6-0"), "alert", "{}").as_bytes())
        .unwrap();
    let sub = hub.subscribe();
    assert_eq!(sub.position.unwrap().to_string(), "abcdef01:6-0");
    let greeting: serde_json::Value =
        serde_json::from_str(&Snapshot::frame(sub.analytics.as_deref(), sub.position)).unwrap();
    assert_eq!(greeting["data"]["total_tutors"], 7);
    assert_eq!(greeting["id"], "abcdef01:6-0");
}

#[test]
fn out_of_order_arrival_keeps_late_events_and_drops_repeats() {
    let hub = hub(Arrival::Unordered);
    let mut rx = rx(&hub);
    for id in ["10-0", "9-0", "10-0", "11-0", "9-0"] {
        let _ = hub.dispatch(payload(Some(id), "alert", "1").as_bytes());
    }
    let got: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok())
        .map(|f| f.id().unwrap().to_string())
        .collect();
    assert_eq!(
        got,
        ["10-0", "9-0", "11-0"],
        "a late event still goes out, a repeat never"
    );
    hub.dispatch(payload(Some("12-0"), "analytics_update", r#"{"v":"new"}"#).as_bytes())
        .unwrap();
    hub.dispatch(payload(Some("8-0"), "analytics_update", r#"{"v":"old"}"#).as_bytes())
        .unwrap();
    let greeting: serde_json::Value =
        serde_json::from_str(&Snapshot::frame(hub.subscribe().analytics.as_deref(), None)).unwrap();
    assert_eq!(
        greeting["data"]["v"], "new",
        "the newest analytics by id stays the snapshot"
    );
}

#[test]
fn on_a_cluster_a_late_event_behind_a_later_one_of_its_key_is_not_sent_and_changes_nothing() {
    let removal = |id: &str, key: &str| {
        format!(
            r#"{{"id":"{EPOCH}:{id}","type":"alert","key":"{key}","removed":true,"data":{{}},"timestamp":"2026-11-25T10:00:00.000Z"}}"#
        )
    };
    let hub = hub(Arrival::Unordered);
    let mut rx = rx(&hub);
    for payload in [
        keyed("5-0", "alert", "a"),
        removal("7-0", "a"),
        keyed("10-0", "alert", "b"),
    ] {
        hub.dispatch(payload.as_bytes()).unwrap();
    }
    // The history re-read brings events whose live copies were lost.
    assert_eq!(
        hub.dispatch(keyed("6-0", "alert", "a").as_bytes()),
        Ok(Dispatched::Superseded),
        "a removed key does not come back"
    );
    assert_eq!(
        hub.dispatch(keyed("9-0", "alert", "b").as_bytes()),
        Ok(Dispatched::Superseded),
        "a key does not go back to an older event"
    );
    assert_eq!(
        hub.dispatch(keyed("8-0", "alert", "c").as_bytes()),
        Ok(Dispatched::Sent(Some(EventId::new(8, 0)))),
        "a late event that is its key's latest goes out"
    );
    let got: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok())
        .map(|f| f.id().unwrap().to_string())
        .collect();
    assert_eq!(got, ["5-0", "7-0", "10-0", "8-0"]);
    let joined = hub.subscribe_with_state();
    let mut state: Vec<u64> = joined
        .state
        .unwrap()
        .events(&TypeFilter::default(), std::time::Duration::ZERO)
        .map(|e| e.id().unwrap().ms)
        .collect();
    state.sort_unstable();
    assert_eq!(state, [8, 10]);
}

#[test]
fn on_a_cluster_a_removal_the_load_already_reflects_still_reaches_open_dashboards() {
    let hub = hub(Arrival::Unordered);
    hub.dispatch(keyed("100-0", "alert", "a").as_bytes())
        .unwrap();
    let mut rx = rx(&hub);
    // The node reloads its state after the removal at 105 was written and
    // before its live copy came: the load no longer holds `a`.
    hub.begin_state_load();
    hub.load_state(EPOCH, EventId::new(105, 0), &[]);
    let removal = format!(
        r#"{{"id":"{EPOCH}:105-0","type":"alert","key":"a","removed":true,"data":{{}},"timestamp":"2026-11-25T10:00:00.000Z"}}"#
    );
    assert_eq!(
        hub.dispatch(removal.as_bytes()),
        Ok(Dispatched::Sent(Some(EventId::new(105, 0)))),
        "dashboards opened before the load still show `a`: they must hear of its removal"
    );
    assert_eq!(rx.try_recv().unwrap().id(), Some(EventId::new(105, 0)));
    assert_eq!(
        hub.dispatch(keyed("104-0", "alert", "a").as_bytes()),
        Ok(Dispatched::Superseded),
        "an update the load covers, of a key it does not hold, was taken out since"
    );
}

#[test]
fn malformed_payloads_never_reach_a_subscriber() {
    let hub = hub(Arrival::InOrder);
    let mut rx = rx(&hub);
    assert!(hub.dispatch(b"{not json").is_err());
    assert!(hub.dispatch(b"{\"data\":1}").is_err());
    assert!(rx.try_recv().is_err());
}

#[test]
fn a_log_preview_of_hostile_bytes_cannot_forge_a_line() {
    let line = format!("{:?}", preview(b"ok\n2026-11-25 INFO forged\x1b[31m\xff"));
    assert!(!line.contains('\n') && !line.contains('\x1b'), "{line}");
}
