//! Lose nothing, for real: what careless or hostile publishers, large
//! events and Redis faults must not do to delivery and resume. Real gateway
//! processes on a real redis-server.

use std::time::Duration;

use serde_json::json;
use system_tests::{
    Client, GatewayProcess, RedisServer, eventually, get, metric, publish, publisher_cli, send,
};

/// The nodes' `PUBLISH_API_KEY` (at least 16 characters, or a node refuses it).
const KEY: &str = "integrity-publish-key";

async fn node(redis: &RedisServer, env: &[(&str, &str)]) -> GatewayProcess {
    GatewayProcess::on_redis(redis, env).await
}

async fn metrics(node: &GatewayProcess) -> String {
    get(node.addr, "/metrics").await.body
}

#[tokio::test]
async fn a_forged_id_on_the_bus_never_stops_delivery_or_becomes_a_position() {
    let redis = RedisServer::start();
    let node = node(&redis, &[]).await;
    let mut client = Client::connect(&node.ws_url("")).await.unwrap();
    client.next_json().await;
    let epoch = redis.cli(&["GET", "{ws:history}:epoch"]).trim().to_owned();
    let forged = [
        r#"{"id":"99999999999999-0","type":"alert","data":{"n":"bare"}}"#.to_owned(),
        r#"{"id":"0badbeef:99999999999999-0","type":"alert","data":{"n":"other epoch"}}"#
            .to_owned(),
        format!(r#"{{"id":"{epoch}:99999999999999-0","type":"alert","data":{{"n":"future"}}}}"#),
    ];
    for payload in &forged {
        redis.cli(&["PUBLISH", "ws:events:alert", payload]);
        let event = client.next_json().await;
        assert!(event.get("id").is_none(), "delivered live-only: {event}");
    }
    let id = send(&redis, "alert", &json!({"n": "real"}), &[]);
    let event = client.next_json().await;
    assert_eq!(event["id"], id.as_str(), "later events still arrive");

    let mut newcomer = Client::connect(&node.ws_url("")).await.unwrap();
    assert_eq!(
        newcomer.next_json().await["id"],
        id.as_str(),
        "greeted with the history's own position"
    );
    let text = metrics(&node).await;
    for reason in ["malformed", "foreign_epoch", "future"] {
        assert_eq!(
            metric(
                &text,
                &format!("gateway_bus_rejected_ids_total{{reason=\"{reason}\"}}")
            ),
            1.0,
            "{reason}"
        );
    }
}

#[tokio::test]
async fn an_event_over_max_event_bytes_is_refused_everywhere_and_one_within_it_disconnects_nobody()
{
    let redis = RedisServer::start();
    let node = node(
        &redis,
        &[("MAX_EVENT_BYTES", "4096"), ("PUBLISH_API_KEY", KEY)],
    )
    .await;
    let mut client = Client::connect(&node.ws_url("")).await.unwrap();
    client.next_json().await;

    let too_big = json!({"pad": "x".repeat(5000)});
    let url = redis.url();
    let env = [("REDIS_URL", url.as_str()), ("MAX_EVENT_BYTES", "4096")];
    let output = publisher_cli(
        &["send", "--type", "alert", "--data", &too_big.to_string()],
        &env,
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("over MAX_EVENT_BYTES (4096)"), "{stderr}");
    let refused = publish(node.addr, KEY, "alert", &too_big).await;
    assert_eq!(refused.status, 413);
    assert_eq!(refused.json()["error"]["code"], "too_large");
    let raw = format!(r#"{{"type":"alert","data":{too_big}}}"#);
    redis.cli(&["PUBLISH", "ws:events:alert", &raw]);
    redis.cli(&[
        "SET",
        "ws:analytics:latest",
        &raw.replace("alert", "analytics_update"),
    ]);

    // Just within the limit, many in a row: every client keeps up.
    let within = json!({"pad": "y".repeat(3900)});
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(send(&redis, "analytics_update", &within, &env));
    }
    for id in &ids {
        let event = client.next_json().await;
        assert_eq!(event["id"], id.as_str(), "nothing oversized came through");
    }
    let mut resumed = Client::connect(&node.ws_url("?since=x")).await.unwrap();
    assert_eq!(
        resumed.next_json().await["data"]["pad"]
            .as_str()
            .map(str::len),
        Some(3900)
    );
    let text = metrics(&node).await;
    assert_eq!(
        metric(
            &text,
            "gateway_bus_invalid_payloads_total{reason=\"too_large\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            "gateway_connections_closed_total{reason=\"client_gone\"}"
        ),
        0.0
    );
}

#[tokio::test]
async fn a_position_from_before_redis_restarted_empty_is_not_recovered() {
    let mut redis = RedisServer::start();
    let node = node(&redis, &[]).await;
    let mut client = Client::connect(&node.ws_url("")).await.unwrap();
    let before = client.next_json().await["id"]
        .as_str()
        .expect("a position before any event")
        .to_owned();
    client.close().await;
    redis.restart();
    node.wait_ready(200).await;
    send(&redis, "alert", &json!({"n": 1}), &[]);
    let mut back = Client::connect(&node.ws_url(&format!("?since={before}")))
        .await
        .unwrap();
    back.next_json().await;
    assert_eq!(
        back.next_of("recovery").await["data"],
        json!({"recovered": false, "replayed": 0}),
        "the events of the old history are gone: say so"
    );
}

#[tokio::test]
async fn a_resume_replays_the_whole_retained_history_however_long() {
    let redis = RedisServer::start();
    // The node keeps a short history, the publisher a long one: the stream
    // is what counts.
    let node = node(&redis, &[("HISTORY_SIZE", "50")]).await;
    let first = send(&redis, "alert", &json!({"n": 0}), &[]);
    let url = redis.url();
    let output = publisher_cli(
        &[
            "simulate", "--rate", "5000", "--count", "1500", "--seed", "3",
        ],
        &[("REDIS_URL", &url), ("HISTORY_SIZE", "5000")],
    );
    assert!(output.status.success());
    let mut back = Client::connect(&node.ws_url(&format!("?since={first}")))
        .await
        .unwrap();
    back.next_json().await;
    let recovery = back.next_of("recovery").await;
    assert_eq!(
        recovery["data"],
        json!({"recovered": true, "replayed": 1500})
    );
}

#[tokio::test]
async fn catch_up_after_an_outage_drops_no_client_that_keeps_reading() {
    let redis = RedisServer::start();
    // The smallest ring the node allows: the catch-up must pace itself
    // by the fan-out, or the fan-out must recover what it fell behind for.
    let node = node(&redis, &[("RING_BYTES", "65536")]).await;
    let mut client = Client::connect(&node.ws_url("")).await.unwrap();
    client.next_json().await;
    // Lock the node out (its Redis user off, its connections killed) while
    // 2,000 events are published as another user, then let it back in: the
    // catch-up is several times the node's ring.
    let url = redis.lock_out_default_user();
    let output = publisher_cli(
        &[
            "simulate", "--rate", "20000", "--count", "2000", "--seed", "5",
        ],
        &[("REDIS_URL", &url)],
    );
    assert!(output.status.success());
    redis.let_default_user_back();
    let mut got = 0;
    while got < 2000 {
        let event = client.next_json().await;
        if event["id"].is_string() {
            got += 1;
        }
    }
    let text = eventually("the node to count its reconnect", || async {
        let text = metrics(&node).await;
        (metric(&text, "gateway_bus_reconnects_total") >= 1.0).then_some(text)
    })
    .await;
    assert_eq!(
        metric(&text, "gateway_slow_client_disconnects_total"),
        0.0,
        "nobody dropped for lagging behind the catch-up"
    );
    assert!(
        client
            .try_next_json(Duration::from_millis(300))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn a_quiet_period_longer_than_the_history_ttl_is_no_gap() {
    let redis = RedisServer::start();
    let env = [("HISTORY_TTL_SECS", "1")];
    let node = node(&redis, &env).await;
    let mut client = Client::connect(&node.ws_url("")).await.unwrap();
    client.next_json().await;
    let first = send(&redis, "alert", &json!({"n": 1}), &env);
    assert_eq!(client.next_json().await["id"], first.as_str());

    // Quiet for longer than the TTL; the node is away when the next event
    // trims the first by age.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let url = redis.lock_out_default_user();
    let output = publisher_cli(
        &["send", "--type", "alert", "--data", r#"{"n":2}"#],
        &[("REDIS_URL", &url), ("HISTORY_TTL_SECS", "1")],
    );
    assert!(output.status.success());
    let second = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    assert_eq!(
        redis.admin_cli(&["XLEN", "ws:history"]),
        "1",
        "the first event was trimmed by age"
    );
    redis.let_default_user_back();

    // The node catches up from the trimmed event: nothing after it was lost.
    assert_eq!(client.next_json().await["id"], second.as_str());
    let mut resumed = Client::connect(&node.ws_url(&format!("?since={first}")))
        .await
        .unwrap();
    resumed.next_json().await;
    assert_eq!(resumed.next_json().await["id"], second.as_str());
    assert_eq!(
        resumed.next_json().await["data"],
        json!({"recovered": true, "replayed": 1})
    );
    let text = metrics(&node).await;
    assert_eq!(
        metric(&text, "gateway_bus_catchup_gaps_total"),
        0.0,
        "no false gap"
    );
}

/// A publisher whose history keeps at most `max_len` events, for `ttl`.
async fn keeping(url: &str, max_len: usize, ttl: Duration) -> publisher::Publisher {
    let wire = publisher::WireFormat::new("ws", publisher::HistoryPolicy { max_len, ttl });
    publisher::Publisher::connect_with(url, wire).await.unwrap()
}

/// Peak resident memory of a process, bytes (`VmHWM`).
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_resumes_cost_a_page_each_not_the_history() {
    let redis = RedisServer::start();
    let node = node(&redis, &[]).await;
    let url = redis.url();
    let publisher = publisher::Publisher::connect(&url, "ws").await.unwrap();
    let pad = "x".repeat(2000);
    let first = publisher.alert(&json!({"n": 0, "pad": pad})).await.unwrap();
    for n in 1..3000 {
        publisher.alert(&json!({"n": n, "pad": pad})).await.unwrap();
    }
    let before = peak_rss(node.pid());
    // 24 resumes of the whole 6 MB history at once.
    let resumes: Vec<_> = (0..24)
        .map(|_| {
            let url = node.ws_url(&format!("?since={first}"));
            tokio::spawn(async move {
                // A resume past the node's concurrent replays is closed with
                // 1013 and comes back, as a real client does.
                for _ in 0..20 {
                    let mut client = Client::connect(&url).await.unwrap();
                    while let Some(frame) = client.try_next_json(Duration::from_secs(30)).await {
                        if frame["type"] == "recovery" {
                            return frame["data"]["replayed"].as_u64();
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                None
            })
        })
        .collect();
    for resume in resumes {
        assert_eq!(resume.await.unwrap(), Some(2999), "every resume completes");
    }
    let grown = peak_rss(node.pid()).saturating_sub(before);
    eprintln!("peak RSS grew by {} KiB", grown / 1024);
    assert!(
        grown < 80 * 1024 * 1024,
        "24 resumes of a 6 MB history grew the node by {} MiB",
        grown / 1024 / 1024
    );
}

#[tokio::test]
async fn a_trim_that_overtakes_a_running_replay_is_answered_recovered_false() {
    let redis = RedisServer::start();
    let node = node(&redis, &[]).await;
    let url = redis.url();
    let publisher = publisher::Publisher::connect(&url, "ws").await.unwrap();
    let pad = "x".repeat(2000);
    let first = publisher.alert(&json!({"n": 0, "pad": pad})).await.unwrap();
    let mut published = vec![first.to_string()];
    for n in 1..1000 {
        published.push(
            publisher
                .alert(&json!({"n": n, "pad": pad}))
                .await
                .unwrap()
                .to_string(),
        );
    }
    let mut client = Client::connect(&node.ws_url(&format!("?since={first}")))
        .await
        .unwrap();
    client.next_json().await;
    // The client stops reading: the replay stalls on a full socket while a
    // publisher with a short history trims everything it has not sent yet.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let trimmer = keeping(&url, 10, Duration::ZERO).await;
    trimmer.alert(&json!({"trim": true})).await.unwrap();
    let mut got = Vec::new();
    let recovery = loop {
        let frame = client.next_json().await;
        if frame["type"] == "recovery" {
            break frame;
        }
        if let Some(id) = frame["id"].as_str() {
            got.push(id.to_owned());
        }
    };
    assert_eq!(
        recovery["data"]["recovered"], false,
        "events were trimmed before they were sent: say so"
    );
    assert!(got.len() < 999, "the replay stopped short: {}", got.len());
    assert_eq!(
        got[..],
        published[1..=got.len()],
        "what was sent is in order"
    );
}

/// A history trimmed by count, with nothing yet old enough for its TTL (the
/// steady state of a busy stream): each publish trims exactly, and never
/// scans the history for aged entries. An `XREVRANGE` from a cutoff older
/// than the whole stream walks every entry (Redis 7.0), which made each
/// publish cost ~0.4 ms per 2,000 entries kept.
#[tokio::test]
async fn a_publish_trims_by_count_exactly_without_walking_the_history() {
    let redis = RedisServer::start();
    let publisher = keeping(&redis.url(), 50, Duration::from_secs(300)).await;
    let mut ids = Vec::new();
    for n in 0..120 {
        ids.push(publisher.alert(&json!({ "n": n })).await.unwrap());
    }
    assert_eq!(redis.cli(&["XLEN", "ws:history"]), "50");
    let info = redis.cli(&["XINFO", "STREAM", "ws:history"]);
    let newest_trimmed = ids[69].id.to_string();
    assert!(
        info.contains(&newest_trimmed),
        "max-deleted-entry-id is the 70th event's {newest_trimmed}: {info}"
    );
    let stats = redis.cli(&["INFO", "commandstats"]);
    assert!(
        !stats.contains("cmdstat_xrevrange"),
        "nothing had aged out, yet the history was walked backwards: {stats}"
    );

    // Once something has aged out, it is trimmed and recorded as before.
    let aging = keeping(&redis.url(), 50, Duration::from_secs(1)).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let last = aging.alert(&json!({ "n": "last" })).await.unwrap();
    assert_eq!(redis.cli(&["XLEN", "ws:history"]), "1");
    let info = redis.cli(&["XINFO", "STREAM", "ws:history"]);
    let newest_aged = ids[119].id.to_string();
    assert!(info.contains(&newest_aged), "{newest_aged}: {info}");
    assert!(info.contains(&last.id.to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_on_sockets_that_never_read_cannot_starve_other_resumes() {
    let redis = RedisServer::start();
    let node = node(&redis, &[]).await;
    let publisher = publisher::Publisher::connect(&redis.url(), "ws")
        .await
        .unwrap();
    let pad = "x".repeat(4000);
    let first = publisher.alert(&json!({"n": 0, "pad": pad})).await.unwrap();
    for n in 1..1000 {
        publisher.alert(&json!({"n": n, "pad": pad})).await.unwrap();
    }
    // Twice the node's replay permits, each resuming the whole 4 MB history
    // on a socket with a tiny receive buffer that is never read.
    let mut stalled = Vec::new();
    for _ in 0..32 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let stream = socket.connect(node.addr).await.unwrap();
        let (ws, _) =
            tokio_tungstenite::client_async(node.ws_url(&format!("?since={first}")), stream)
                .await
                .unwrap();
        stalled.push(ws);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = std::time::Instant::now();
    let mut resume = Client::connect(&node.ws_url(&format!("?since={first}")))
        .await
        .unwrap();
    let recovery = resume.next_of("recovery").await;
    assert_eq!(
        recovery["data"],
        json!({"recovered": true, "replayed": 999}),
        "served, not told to come back"
    );
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(4),
        "a well-behaved resume waited {waited:?} behind sockets that never read"
    );

    // A resume with nothing to replay never waits for a turn at all.
    let mut fresh = Client::connect(&node.ws_url("")).await.unwrap();
    let position = fresh.next_json().await["id"].as_str().unwrap().to_owned();
    let mut current = Client::connect(&node.ws_url(&format!("?since={position}")))
        .await
        .unwrap();
    current.next_json().await;
    assert_eq!(
        current.next_json().await["data"],
        json!({"recovered": true, "replayed": 0})
    );
    let text = metrics(&node).await;
    assert_eq!(metric(&text, "gateway_replays_deferred_total"), 0.0);
    drop(stalled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_slower_than_the_ring_keeps_events_still_loses_nothing_of_the_live_stream() {
    let redis = RedisServer::start();
    let node = node(&redis, &[]).await;
    let publisher = publisher::Publisher::connect(&redis.url(), "ws")
        .await
        .unwrap();
    // 2 KB events: the replay (3 MB) is far more than the kernel's socket
    // buffers hold, so it goes as fast as the client reads.
    let pad = "x".repeat(2000);
    let first = publisher.alert(&json!({"n": 0, "pad": pad})).await.unwrap();
    for n in 1..1500 {
        publisher.alert(&json!({"n": n, "pad": pad})).await.unwrap();
    }
    // A client that reads its replay slowly (about 3 s for 1,500 events:
    // longer than the node's ring keeps what arrives meanwhile) while live
    // events keep coming.
    let mut client = Client::connect(&node.ws_url(&format!("?since={first}")))
        .await
        .unwrap();
    client.next_json().await;
    let live = tokio::spawn(async move {
        for n in 1500..1600 {
            publisher.alert(&json!({"n": n})).await.unwrap();
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    });
    let mut seen = Vec::new();
    let mut recovery = None;
    while seen.len() < 1599 {
        let event = client.next_json().await;
        if event["type"] == "recovery" {
            recovery = Some(event["data"].clone());
            continue;
        }
        seen.push(event["data"]["n"].as_u64().unwrap());
        if recovery.is_none() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    live.await.unwrap();
    assert_eq!(recovery.unwrap()["recovered"], true);
    assert_eq!(
        seen,
        (1..1600).collect::<Vec<_>>(),
        "every event once, in order"
    );
    let text = metrics(&node).await;
    assert_eq!(metric(&text, "gateway_slow_client_disconnects_total"), 0.0);
}
