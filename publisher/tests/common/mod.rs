//! What the publisher's tests read back from a real Redis.

#![allow(dead_code)]

use system_tests::RedisServer;

/// The history's envelopes, oldest first, with their stream ids.
pub fn history(redis: &RedisServer) -> Vec<(String, String)> {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_connection().unwrap();
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg("ws:history")
        .arg("-")
        .arg("+")
        .query(&mut conn)
        .unwrap();
    entries
        .into_iter()
        .map(|(id, mut fields)| (id, fields.remove(0).1))
        .collect()
}

/// Successful calls of the publish script (INFO commandstats): its round trips.
pub fn script_runs(redis: &RedisServer) -> u64 {
    let stats = redis.cli(&["INFO", "commandstats"]);
    let field = |line: &str, name: &str| -> u64 {
        line.split([',', ':'])
            .find_map(|part| part.strip_prefix(&format!("{name}=")))
            .map_or(0, |v| v.parse().unwrap())
    };
    stats
        .lines()
        .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
        .map(|l| field(l, "calls") - field(l, "failed_calls"))
        .sum()
}
