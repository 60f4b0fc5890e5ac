//! Self-hosted high availability: a master, a replica and three Sentinels.
//! Nodes and publishers find the master through the Sentinels and follow a
//! failover by themselves; no event that a publish acknowledged is lost.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use publisher::{Publisher, RedisConfig, WireConfig};
use serde_json::json;
use system_tests::redis_sentinel::MASTER_NAME;
use system_tests::{GatewayProcess, RedisSentinel};

/// Every acknowledged publish: `n` → id.
type Acked = Arc<Mutex<BTreeMap<u64, String>>>;

/// Publishes alert `n` = 0, 1, ... every 20 ms until `until`, retrying an
/// `n` whose publish failed (as a job does), through a publisher that finds
/// the master through the Sentinels.
async fn publish_until(publisher: Publisher, acked: Acked, until: u64) {
    let mut n = 0;
    while n < until {
        match publisher.alert(&json!({ "n": n })).await {
            Ok(id) => {
                acked.lock().unwrap().insert(n, id.to_string());
                n += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn nodes_and_publishers_follow_a_sentinel_failover_and_lose_no_event() {
    let mut ha = RedisSentinel::start();
    let sentinels = ha.sentinels();
    let env = [
        ("REDIS_SENTINELS", sentinels.as_str()),
        ("REDIS_SENTINEL_MASTER", MASTER_NAME),
    ];
    let node = GatewayProcess::start(&env).await;
    node.wait_ready(200).await;
    let mut live = node.client("?types=alert").await.unwrap();
    live.next_of("analytics_update").await;

    let config = RedisConfig {
        redis_sentinels: sentinels.split(',').map(str::to_owned).collect(),
        redis_sentinel_master: Some(MASTER_NAME.to_owned()),
        ..RedisConfig::default()
    };
    let publisher = Publisher::connect_config(
        &config,
        WireConfig::default().wire_format(publisher::Topology::Single),
    )
    .await
    .expect("the Sentinels name a master");
    let acked: Acked = Arc::default();
    let total = 80;
    let publishing = tokio::spawn(publish_until(publisher, acked.clone(), total));

    // Mid-stream: the master dies; the node says it is not ready until the
    // Sentinels have promoted the replica and it has caught up.
    while acked.lock().unwrap().len() < 20 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    ha.kill_master();
    node.wait_ready(503).await;
    ha.wait_failover();
    assert_eq!(ha.master_port(), Some(ha.replica.port));
    node.wait_ready(200).await;
    tokio::time::timeout(Duration::from_secs(20), publishing)
        .await
        .expect("the publisher follows the failover")
        .unwrap();
    let acked = acked.lock().unwrap().clone();

    // The client that stayed connected got every acknowledged event, once.
    let mut seen_ids = HashSet::new();
    let mut seen_n = HashSet::new();
    while seen_n.len() < acked.len() {
        let alert = live.next_of("alert").await;
        assert!(
            seen_ids.insert(alert["id"].as_str().unwrap().to_owned()),
            "duplicate {alert}"
        );
        seen_n.insert(alert["data"]["n"].as_u64().unwrap());
    }
    for n in acked.keys() {
        assert!(
            seen_n.contains(n),
            "event {n} was acknowledged but never delivered"
        );
    }

    // A client resuming from before the failover gets everything after it.
    let since = &acked[&10];
    let mut resumed = node
        .client(&format!("?types=alert&since={since}"))
        .await
        .unwrap();
    resumed.next_of("analytics_update").await;
    let mut replayed = Vec::new();
    let recovery = loop {
        let message = resumed.next_json().await;
        if message["type"] == "recovery" {
            break message;
        }
        replayed.push(message["data"]["n"].as_u64().unwrap());
    };
    assert_eq!(recovery["data"]["recovered"], true, "{recovery}");
    for n in acked.keys().filter(|n| **n > 10) {
        assert!(replayed.contains(n), "event {n} missing from the replay");
    }
}

/// Everything TLS: the Sentinels, the master and the replica take TLS only
/// (a private CA), and the data nodes an ACL user the Sentinels lack, so the
/// master's credentials come from `REDIS_SENTINEL_MASTER`.
#[tokio::test]
async fn a_tls_and_acl_master_is_found_and_followed_through_the_sentinels() {
    use system_tests::publisher_cli;
    use system_tests::redis_sentinel::Secured;
    use system_tests::tls::TestCa;

    let ca = TestCa::new();
    let password = "sentinel-Pa55-frotz";
    let mut ha = RedisSentinel::start_secured(Secured {
        tls: Some(&ca),
        acl: Some(("app", password)),
    });
    let sentinels = ha.sentinels();
    let master = format!("rediss://app:{password}@{MASTER_NAME}");
    let ca_file = ca.ca_file.to_string_lossy().into_owned();
    let env = [
        ("REDIS_SENTINELS", sentinels.as_str()),
        ("REDIS_SENTINEL_MASTER", master.as_str()),
        ("REDIS_TLS_CA_FILE", ca_file.as_str()),
    ];
    let node = GatewayProcess::logged(&env).await;
    node.wait_ready(200).await;
    let mut client = node.client("?types=alert").await.unwrap();
    client.next_of("analytics_update").await;
    let send = |n: u64| {
        let data = json!({ "n": n }).to_string();
        publisher_cli(&["send", "--type", "alert", "--data", &data], &env)
    };
    let output = send(1);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(client.next_of("alert").await["data"]["n"], 1);

    ha.kill_master();
    ha.wait_failover();
    node.wait_ready(200).await;
    let output = send(2);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(client.next_of("alert").await["data"]["n"], 2);
    assert!(!node.logs().contains(password));
}
