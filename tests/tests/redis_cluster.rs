//! Gateways on a real Redis Cluster (3 masters, 3 replicas) with sharded
//! pub/sub: every type reaches every client, `/ws/status` sums, resume works
//! across nodes, a master's failover does not stop the broadcast, and the keyed
//! state holds when events arrive out of order.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use system_tests::{Client, GatewayProcess, RedisCluster, eventually, get, publisher_cli};

async fn gateways(cluster: &RedisCluster, count: usize) -> Vec<GatewayProcess> {
    let seeds = cluster.seeds();
    let mut nodes = Vec::new();
    for i in 0..count {
        let id = format!("cluster-node-{i}");
        let node =
            GatewayProcess::start(&[("REDIS_CLUSTER_NODES", &seeds), ("NODE_ID", &id)]).await;
        node.wait_ready(200).await;
        nodes.push(node);
    }
    nodes
}

fn send(cluster: &RedisCluster, kind: &str, data: &Value) -> String {
    let output = publisher_cli(
        &["send", "--type", kind, "--data", &data.to_string()],
        &[("REDIS_CLUSTER_NODES", &cluster.seeds())],
    );
    assert!(
        output.status.success(),
        "publisher send: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

async fn client(node: &GatewayProcess, query: &str) -> Client {
    let mut client = Client::connect(&node.ws_url(query)).await.unwrap();
    assert_eq!(client.next_json().await["type"], "analytics_update");
    client
}

/// The types of the next `n` messages (their arrival order across types is
/// not fixed on a cluster: each type has its own shard).
async fn next_types(client: &mut Client, n: usize) -> BTreeSet<String> {
    let mut kinds = BTreeSet::new();
    for _ in 0..n {
        kinds.insert(
            client.next_json().await["type"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    kinds
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_reaches_every_client_through_sharded_channels_and_status_sums() {
    let cluster = RedisCluster::start(3);
    let nodes = gateways(&cluster, 2).await;
    let mut clients = vec![
        client(&nodes[0], "").await,
        client(&nodes[1], "").await,
        client(&nodes[1], "").await,
    ];

    let kinds = [
        "metrics_update",
        "alert",
        "intervention",
        "analytics_update",
    ];
    let masters: BTreeSet<u16> = kinds
        .iter()
        .map(|k| cluster.master_of(&format!("ws:events:{k}")))
        .collect();
    assert!(
        masters.len() > 1,
        "the type channels are spread over shards"
    );
    for kind in kinds {
        send(&cluster, kind, &json!({"kind": kind}));
    }
    // A custom type registers itself; nodes subscribe to it (or the history
    // brings it) within seconds.
    send(&cluster, "test_message", &json!({"custom": true}));
    let expected: BTreeSet<String> = kinds
        .iter()
        .map(|k| (*k).to_owned())
        .chain(["test_message".to_owned()])
        .collect();
    for client in &mut clients {
        assert_eq!(next_types(client, 5).await, expected);
        assert_eq!(
            client.try_next_json(Duration::from_millis(1500)).await,
            None,
            "each event once"
        );
    }

    let first = nodes[0].addr;
    let status = eventually("status to sum both nodes", || async move {
        let status = get(first, "/ws/status").await.json();
        (status["active_connections"] == 3).then_some(status)
    })
    .await;
    assert_eq!(status["nodes"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resumes_on_another_node_of_the_cluster() {
    let cluster = RedisCluster::start(3);
    let nodes = gateways(&cluster, 2).await;
    let mut first = client(&nodes[0], "").await;
    send(&cluster, "alert", &json!({"n": 0}));
    let last_seen = first.next_json().await["id"].as_str().unwrap().to_owned();
    first.close().await;
    let missed: Vec<String> = (1..=3)
        .map(|n| send(&cluster, "alert", &json!({"n": n})))
        .collect();
    let mut back = Client::connect(&nodes[1].ws_url(&format!("?since={last_seen}")))
        .await
        .unwrap();
    back.next_json().await;
    for id in &missed {
        assert_eq!(back.next_json().await["id"], id.as_str());
    }
    assert_eq!(
        back.next_json().await["data"],
        json!({"recovered": true, "replayed": 3})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasts_still_arrive_after_a_master_fails_over() {
    let mut cluster = RedisCluster::start(3);
    let nodes = gateways(&cluster, 2).await;
    let mut clients = vec![client(&nodes[0], "").await, client(&nodes[1], "").await];
    send(&cluster, "alert", &json!({"before": true}));
    for client in &mut clients {
        assert_eq!(client.next_json().await["data"]["before"], true);
    }

    let victim = cluster.master_of("ws:events:alert");
    cluster.kill(victim);
    let promoted = cluster.wait_failover("ws:events:alert", victim);
    assert_ne!(promoted, victim, "a replica took over the slot");

    // Publishing may fail while the cluster settles; a backend job retries.
    let mut id = None;
    for _ in 0..50 {
        let output = publisher_cli(
            &["send", "--type", "alert", "--data", r#"{"after":true}"#],
            &[("REDIS_CLUSTER_NODES", &cluster.seeds())],
        );
        if output.status.success() {
            id = Some(String::from_utf8(output.stdout).unwrap().trim().to_owned());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let id = id.expect("publishing works again after the failover");
    for client in &mut clients {
        let alert = client.next_of("alert").await;
        assert_eq!(alert["data"]["after"], true);
        assert_eq!(alert["id"], id.as_str());
    }
}

/// A managed cluster's way: TLS only (clients, replication, the cluster
/// bus), a private CA, and a client certificate demanded
/// (`tls-auth-clients` is on by default).
#[tokio::test]
async fn a_tls_cluster_with_client_certificates_carries_every_event() {
    use system_tests::tls::{TestCa, Usage};
    let ca = TestCa::new();
    let cluster = RedisCluster::start_tls(3, &ca);
    let client_cert = ca.issue("gateway", Usage::Client);
    let seeds = cluster.seeds();
    assert!(seeds.starts_with("rediss://"));
    let (ca_file, cert, key) = (
        ca.ca_file.to_string_lossy().into_owned(),
        client_cert.cert.to_string_lossy().into_owned(),
        client_cert.key.to_string_lossy().into_owned(),
    );
    let env = [
        ("REDIS_CLUSTER_NODES", seeds.as_str()),
        ("REDIS_TLS_CA_FILE", ca_file.as_str()),
        ("REDIS_TLS_CERT_FILE", cert.as_str()),
        ("REDIS_TLS_KEY_FILE", key.as_str()),
    ];
    let node = GatewayProcess::start(&env).await;
    node.wait_ready(200).await;
    let mut dashboard = client(&node, "").await;
    for (n, kind) in ["alert", "intervention", "metrics_update"]
        .iter()
        .enumerate()
    {
        let data = json!({ "n": n }).to_string();
        let output = publisher_cli(&["send", "--type", kind, "--data", &data], &env);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(dashboard.next_of(kind).await["data"]["n"], n);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_on_a_cluster_reaches_every_client_each_type_in_order() {
    let cluster = RedisCluster::start(3);
    let nodes = gateways(&cluster, 1).await;
    let mut client = client(&nodes[0], "").await;
    // Known types and one of the job's own (registered so nodes subscribe).
    let kinds = [
        "metrics_update",
        "alert",
        "nightly.recompute",
        "analytics_update",
    ];
    let input: String = (0..40)
        .map(|n| format!("{{\"type\":\"{}\",\"data\":{{\"n\":{n}}}}}\n", kinds[n % 4]))
        .collect();
    let output = {
        use std::io::Write;
        let mut child = std::process::Command::new(system_tests::bin_dir().join("publisher"))
            .env_clear()
            .env("REDIS_CLUSTER_NODES", cluster.seeds())
            .args(["send", "--stdin", "--batch-size", "16"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let ids: Vec<String> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(ids.len(), 40);

    // Each type's events in publish order (types on different shards may
    // interleave), each with the id the CLI printed.
    let mut seen: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    for _ in 0..40 {
        let event = client.next_json().await;
        let n = event["data"]["n"].as_u64().unwrap();
        assert_eq!(event["id"], ids[n as usize].as_str());
        seen.entry(event["type"].as_str().unwrap().to_owned())
            .or_default()
            .push(n);
    }
    for (offset, kind) in kinds.iter().enumerate() {
        let expected: Vec<u64> = (0..40).filter(|n| n % 4 == offset as u64).collect();
        let mut got = seen[*kind].clone();
        if *kind == "nightly.recompute" {
            // A type new to the nodes may first come through their history
            // re-read, behind its later live events: all of it, not in order.
            got.sort_unstable();
        }
        assert_eq!(got, expected, "{kind}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_state_on_a_cluster_opens_full_and_evictions_reach_live_clients() {
    let cluster = RedisCluster::start(3);
    let nodes = gateways(&cluster, 2).await;
    let bound = [
        ("REDIS_CLUSTER_NODES", cluster.seeds()),
        ("STATE_MAX_KEYS", "2".to_owned()),
    ];
    let bound: Vec<(&str, &str)> = bound.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let send_bounded = |data: Value| {
        let output = publisher_cli(
            &["send", "--type", "alert", "--data", &data.to_string()],
            &bound,
        );
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    send_bounded(json!({"id": "a-1"}));
    send_bounded(json!({"id": "a-2"}));
    let mut live = Client::connect(&nodes[1].ws_url("?state=1")).await.unwrap();
    let read = system_tests::state::read_state(&mut live).await;
    let keys: BTreeSet<&str> = read
        .events
        .iter()
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, BTreeSet::from(["a-1", "a-2"]));

    // A third key evicts the least recently updated; the live event, published by the
    // caller on the type's shard, names it as the history does.
    send_bounded(json!({"id": "a-3"}));
    let event = live.next_json().await;
    assert_eq!(event["key"], "a-3");
    assert_eq!(event["evicted"], json!(["a-1"]));
    let mut fresh = Client::connect(&nodes[0].ws_url("?state=1")).await.unwrap();
    let read = system_tests::state::read_state(&mut fresh).await;
    let keys: BTreeSet<&str> = read
        .events
        .iter()
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["a-2", "a-3"]),
        "every node drops the same key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_an_event_whose_live_copy_was_lost_never_brings_back_an_older_state() {
    let cluster = RedisCluster::start(3);
    let nodes = gateways(&cluster, 1).await;
    let mut live = Client::connect(&nodes[0].ws_url("?state=1&types=alert"))
        .await
        .unwrap();
    assert!(
        system_tests::state::read_state(&mut live)
            .await
            .events
            .is_empty()
    );
    send(
        &cluster,
        "alert",
        &json!({"id": "a-1", "status": "open", "title": "first"}),
    );
    send(
        &cluster,
        "alert",
        &json!({"id": "a-2", "status": "open", "title": "v1"}),
    );
    for _ in 0..2 {
        assert_eq!(live.next_json().await["type"], "alert");
    }

    // Two events whose live copies were lost (in the history, never on the
    // type's channel: as when a publisher dies between its two steps), then
    // later events of their keys: a-1 resolved (a tombstone), a-2 updated.
    let history = "ws:history";
    let master = cluster.master_of(history);
    for (key, title) in [("a-1", "lost"), ("a-2", "v0 lost")] {
        let envelope = format!(
            r#"{{"type":"alert","key":"{key}","data":{{"id":"{key}","status":"open","title":"{title}"}},"timestamp":"2026-12-01T10:00:00.000Z"}}"#
        );
        let id = cluster.cli(master, &["XADD", history, "*", "e", &envelope]);
        assert!(id.contains('-'), "XADD: {id}");
    }
    send(
        &cluster,
        "alert",
        &json!({"id": "a-1", "status": "resolved", "title": "first"}),
    );
    send(
        &cluster,
        "alert",
        &json!({"id": "a-2", "status": "open", "title": "v2"}),
    );

    // The node re-reads its history every second: past two of them, a
    // marker event, and what the live dashboard got before it.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    send(&cluster, "alert", &json!({"id": "marker"}));
    let mut last: std::collections::BTreeMap<String, Value> = Default::default();
    loop {
        let event = live.next_json().await;
        let key = event["key"].as_str().unwrap().to_owned();
        if key == "marker" {
            break;
        }
        last.insert(key, event);
    }
    assert_eq!(last["a-1"]["removed"], true, "a-1 stays resolved: {last:?}");
    assert_eq!(
        last["a-2"]["data"]["title"], "v2",
        "a-2 stays at v2: {last:?}"
    );

    // A dashboard opened now agrees. (How many events the node found superseded depends on
    // when its re-read ran: 2 when after the later events, as it mostly is; printed.)
    let mut fresh = Client::connect(&nodes[0].ws_url("?state=1&types=alert"))
        .await
        .unwrap();
    let read = system_tests::state::read_state(&mut fresh).await;
    let titles: BTreeSet<String> = read
        .events
        .iter()
        .map(|e| format!("{} {}", e["key"].as_str().unwrap(), e["data"]["title"]))
        .collect();
    assert_eq!(
        titles,
        BTreeSet::from(["a-2 \"v2\"".to_owned(), "marker null".to_owned()])
    );
    let metrics = get(nodes[0].addr, "/metrics").await.body;
    let superseded = system_tests::metric(&metrics, "gateway_state_superseded_total");
    println!("superseded (the re-read came after the later events): {superseded}");
}
