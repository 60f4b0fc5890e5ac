//! What a client's connect request is answered with: each parameter's
//! accepted forms, and a clear refusal of every other.

use super::*;

fn headers(origin: Option<&str>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Some(origin) = origin {
        headers.insert(header::ORIGIN, origin.parse().unwrap());
    }
    headers
}

#[test]
fn origins_are_checked_only_when_configured() {
    let allowed = vec!["https://ops.example.com".to_owned()];
    assert!(origin_allowed(
        &[],
        &headers(Some("https://evil.example")),
        false
    ));
    assert!(origin_allowed(
        &allowed,
        &headers(Some("https://OPS.example.com")),
        false
    ));
    assert!(!origin_allowed(
        &allowed,
        &headers(Some("https://evil.example")),
        false
    ));
    assert!(!origin_allowed(&allowed, &headers(Some("null")), false));
    assert!(origin_allowed(&allowed, &headers(None), false));
}

fn own(origin: &str, host: &str) -> HeaderMap {
    let mut headers = headers(Some(origin));
    headers.insert(header::HOST, host.parse().unwrap());
    headers
}

#[test]
fn the_nodes_own_page_is_allowed_by_address_or_localhost() {
    let allowed = vec!["https://ops.example.com".to_owned()];
    for (origin, host) in [
        ("http://10.0.0.5:8000", "10.0.0.5:8000"),
        ("http://127.0.0.1", "127.0.0.1"),
        ("http://localhost:8000", "LocalHost:8000"),
        ("http://[::1]:8000", "[::1]:8000"),
        ("http://[2001:db8::7]", "[2001:db8::7]"),
    ] {
        assert!(
            origin_allowed(&allowed, &own(origin, host), false),
            "{host}"
        );
        assert!(
            !origin_allowed(&allowed, &own(origin, host), true),
            "{host}: scheme must match"
        );
    }
    let tls = own("https://10.0.0.5", "10.0.0.5");
    assert!(origin_allowed(&allowed, &tls, true));
    assert!(!origin_allowed(&allowed, &tls, false));
}

#[test]
fn a_name_in_host_is_not_the_nodes_own_origin() {
    let allowed = vec!["https://ops.example.com".to_owned()];
    for (origin, host) in [
        // DNS rebinding: the attacker's name, pointed at the node.
        ("http://evil.example:8000", "evil.example:8000"),
        ("http://gw-1.internal:8000", "gw-1.internal:8000"),
        ("http://127.0.0.1.nip.io:8000", "127.0.0.1.nip.io:8000"),
        ("http://localhost.evil.example", "localhost.evil.example"),
        ("http://[fe80::1%25eth0]", "[fe80::1%25eth0]"),
        ("http://127.0.0.1:80:80", "127.0.0.1:80:80"),
        ("http://:8000", ":8000"),
    ] {
        assert!(
            !origin_allowed(&allowed, &own(origin, host), false),
            "{host}"
        );
    }
    // Reached by name: the name is listed.
    let listed = vec!["https://dash.example.com".to_owned()];
    let named = own("https://dash.example.com", "dash.example.com");
    assert!(origin_allowed(&listed, &named, true));
    assert!(!origin_allowed(&allowed, &named, true));
}

#[test]
fn the_types_claim_bounds_what_a_client_may_ask_for() {
    let claim = vec!["alert".to_owned(), "metrics_update".to_owned()];
    let everything = TypeFilter::parse("").unwrap();
    let exactly = within_claim(everything.clone(), Some(&claim)).unwrap();
    assert!(exactly.allows("alert") && !exactly.allows("intervention"));
    let some = within_claim(TypeFilter::parse("alert").unwrap(), Some(&claim)).unwrap();
    assert!(some.allows("alert") && !some.allows("metrics_update"));
    assert_eq!(
        within_claim(
            TypeFilter::parse("alert,intervention").unwrap(),
            Some(&claim)
        )
        .err(),
        Some(Refusal::ForbiddenType("intervention".into()))
    );
    assert!(
        !within_claim(everything.clone(), Some(&[]))
            .unwrap()
            .allows("alert")
    );
    assert_eq!(within_claim(everything.clone(), None).unwrap(), everything);
}
