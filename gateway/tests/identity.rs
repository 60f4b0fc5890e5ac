//! Identity with real keys: tokens signed by RSA, EC and Ed25519 keys made
//! for the test (openssl), a JWKS served by a real local HTTP server whose
//! keys rotate, the claims (`exp`, `nbf`, `aud`, `iss`, `types`, `sub`), and
//! expiry closing a connection with 4001. Each through a real node.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use common::{Node, config};
use gateway::Config;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use system_tests::{Client, Closed, get, metric, refused_status};

const SECRET: &str = "jwt-test-secret";

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A key pair made by `openssl genpkey` in a fresh directory.
struct KeyPair {
    private: Vec<u8>,
    public_file: PathBuf,
    alg: Algorithm,
}

impl KeyPair {
    fn generate(dir: &Path, name: &str, alg: Algorithm) -> Self {
        let private_file = dir.join(format!("{name}.key"));
        let public_file = dir.join(format!("{name}.pub"));
        let spec: &[&str] = match alg {
            Algorithm::RS256 => &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            Algorithm::ES256 => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            Algorithm::ES384 => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
            Algorithm::EdDSA => &["-algorithm", "ED25519"],
            other => panic!("no key for {other:?}"),
        };
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .output()
                .expect("openssl");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let private = private_file.to_str().unwrap();
        run(&[&["genpkey"], spec, &["-out", private]].concat());
        run(&[
            "pkey",
            "-in",
            private,
            "-pubout",
            "-out",
            public_file.to_str().unwrap(),
        ]);
        Self {
            private: std::fs::read(&private_file).unwrap(),
            public_file,
            alg,
        }
    }

    fn encoding_key(&self) -> EncodingKey {
        match self.alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&self.private),
            Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(&self.private),
            _ => EncodingKey::from_ed_pem(&self.private),
        }
        .unwrap()
    }

    fn sign(&self, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = kid.map(str::to_owned);
        encode(&header, claims, &self.encoding_key()).unwrap()
    }

    fn jwk(&self, kid: &str) -> Jwk {
        if self.alg == Algorithm::EdDSA {
            // jsonwebtoken cannot make an Ed25519 JWK: x is the raw key, the
            // last 32 bytes of the DER public key.
            let der = Command::new("openssl")
                .args(["pkey", "-pubin", "-outform", "DER", "-in"])
                .arg(&self.public_file)
                .output()
                .unwrap()
                .stdout;
            let x = b64url(&der[der.len() - 32..]);
            let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "use": "sig"});
            return serde_json::from_value(jwk).unwrap();
        }
        let mut jwk = Jwk::from_encoding_key(&self.encoding_key(), self.alg).unwrap();
        jwk.common.key_id = Some(kid.to_owned());
        jwk
    }
}

/// Unpadded base64url (RFC 4648 §5), as JOSE writes it.
fn b64url(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n =
            chunk.iter().fold(0u32, |acc, b| acc << 8 | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(TABLE[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gw-identity-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn claims(exp_in: f64) -> Value {
    json!({"sub": "ops-user", "exp": now() + exp_in})
}

fn hs256(claims: &Value) -> String {
    encode(
        &Header::default(),
        claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// The status of a handshake with `token` (101 when it got in).
async fn status(node: &Node, query: &str) -> u16 {
    match Client::connect_with_headers(&node.url(query), &[]).await {
        Ok(client) => {
            client.close().await;
            101
        }
        result => refused_status(&result).expect("an HTTP refusal"),
    }
}

#[tokio::test]
async fn tokens_signed_by_rsa_ec_and_ed25519_public_keys_are_accepted() {
    let dir = temp_dir("pem");
    for alg in [
        Algorithm::RS256,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ] {
        let pair = KeyPair::generate(&dir, &format!("{alg:?}"), alg);
        let stranger = KeyPair::generate(&dir, &format!("{alg:?}-other"), alg);
        let node = Node::start(Config {
            auth_jwt_public_key_file: Some(pair.public_file.clone()),
            ..config()
        })
        .await;
        let good = pair.sign(None, &claims(300.0));
        assert_eq!(
            status(&node, &format!("?token={good}")).await,
            101,
            "{alg:?}"
        );
        let forged = stranger.sign(None, &claims(300.0));
        assert_eq!(
            status(&node, &format!("?token={forged}")).await,
            401,
            "{alg:?} other key"
        );
        // The public key used as an HMAC secret: the classic confusion.
        let public = std::fs::read(&pair.public_file).unwrap();
        let confused = encode(
            &Header::new(Algorithm::HS256),
            &claims(300.0),
            &EncodingKey::from_secret(&public),
        )
        .unwrap();
        assert_eq!(
            status(&node, &format!("?token={confused}")).await,
            401,
            "{alg:?} as HS256"
        );
        node.shutdown.cancel();
    }
    // `alg: none`, unsigned.
    let node = Node::start(Config {
        auth_jwt_secret: Some(SECRET.into()),
        ..config()
    })
    .await;
    let b64 = |v: &Value| b64url(&serde_json::to_vec(v).unwrap());
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&claims(300.0))
    );
    assert_eq!(
        status(&node, &format!("?token={none}")).await,
        401,
        "alg none"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A JWKS endpoint on 127.0.0.1:0 serving whatever `set` holds now,
/// counting the requests.
struct JwksServer {
    url: String,
    set: Arc<Mutex<JwkSet>>,
    hits: Arc<AtomicUsize>,
    /// While set, the endpoint answers 500.
    failing: Arc<std::sync::atomic::AtomicBool>,
}

impl JwksServer {
    async fn start(keys: Vec<Jwk>) -> Self {
        let set = Arc::new(Mutex::new(JwkSet { keys }));
        let hits = Arc::new(AtomicUsize::new(0));
        let failing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (s, h, f) = (set.clone(), hits.clone(), failing.clone());
        let app = axum::Router::new().route(
            "/.well-known/jwks.json",
            axum::routing::get(move || {
                let (s, h, f) = (s.clone(), h.clone(), f.clone());
                async move {
                    h.fetch_add(1, Ordering::SeqCst);
                    if f.load(Ordering::SeqCst) {
                        return Err(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
                    }
                    let body = serde_json::to_string(&*s.lock().unwrap()).unwrap();
                    Ok((
                        [
                            ("content-type", "application/json"),
                            ("cache-control", "public, max-age=600"),
                        ],
                        body,
                    ))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().unwrap()
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url,
            set,
            hits,
            failing,
        }
    }

    fn serve(&self, keys: Vec<Jwk>) {
        *self.set.lock().unwrap() = JwkSet { keys };
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn a_jwks_is_followed_through_key_rotation_without_hammering_the_idp() {
    let dir = temp_dir("jwks");
    let first = KeyPair::generate(&dir, "first", Algorithm::RS256);
    let second = KeyPair::generate(&dir, "second", Algorithm::ES256);
    let idp = JwksServer::start(vec![first.jwk("k1")]).await;
    let node = Node::start(Config {
        auth_jwks_url: Some(idp.url.clone()),
        auth_jwt_audience: vec!["dashboards".into()],
        auth_jwt_issuer: Some("https://idp.example.com/".into()),
        ..config()
    })
    .await;
    let idp_claims = |exp_in: f64| json!({"sub": "ana", "exp": now() + exp_in, "aud": "dashboards", "iss": "https://idp.example.com/"});
    let t1 = first.sign(Some("k1"), &idp_claims(300.0));
    assert_eq!(
        status(&node, &format!("?token={t1}")).await,
        101,
        "the first key"
    );
    assert_eq!(idp.hits(), 1, "fetched once at start");

    // The IdP rotates: k1 out, k2 in. A token naming k2 makes the node refetch.
    idp.serve(vec![second.jwk("k2")]);
    let t2 = second.sign(Some("k2"), &idp_claims(300.0));
    assert_eq!(
        status(&node, &format!("?token={t2}")).await,
        101,
        "the rotated-in key"
    );
    assert_eq!(idp.hits(), 2);
    let t1_again = first.sign(Some("k1"), &idp_claims(300.0));
    assert_eq!(
        status(&node, &format!("?token={t1_again}")).await,
        401,
        "k1 was rotated out"
    );

    // Made-up kids: refused, and the IdP is not asked again within 30 s.
    for kid in ["bogus-1", "bogus-2", "bogus-3"] {
        let bogus = second.sign(Some(kid), &idp_claims(300.0));
        assert_eq!(
            status(&node, &format!("?token={bogus}")).await,
            401,
            "{kid}"
        );
    }
    assert_eq!(idp.hits(), 2, "no refetch storm");

    let metrics = node.metrics().await;
    assert!(metric(&metrics, "gateway_jwks_refresh_total{result=\"ok\"}") >= 2.0);
    assert!(
        metric(
            &metrics,
            "gateway_handshakes_rejected_total{reason=\"auth\",cause=\"unknown_key\"}"
        ) >= 4.0,
        "{metrics}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn claims_are_checked_as_configured_with_fractional_dates() {
    let node = Node::start(Config {
        auth_jwt_secret: Some(SECRET.into()),
        auth_jwt_audience: vec!["other".into(), "dashboards".into()],
        auth_jwt_issuer: Some("login".into()),
        ..config()
    })
    .await;
    let t = now();
    let with = |extra: Value| {
        let mut c =
            json!({"sub": "ana", "exp": t + 300.5, "aud": ["api", "dashboards"], "iss": "login"});
        c.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        hs256(&c)
    };
    let cases = [
        ("good, fractional exp", with(json!({})), 101),
        ("aud as a string", with(json!({"aud": "dashboards"})), 101),
        ("another audience", with(json!({"aud": "api"})), 401),
        ("no aud", with(json!({"aud": null})), 401),
        ("another issuer", with(json!({"iss": "login2"})), 401),
        ("no iss", with(json!({"iss": null})), 401),
        ("nbf an hour ahead", with(json!({"nbf": t + 3600.0})), 401),
        ("nbf within the leeway", with(json!({"nbf": t + 5.0})), 101),
        (
            "expired past the leeway",
            with(json!({"exp": t - 11.0})),
            401,
        ),
        (
            "expired within the leeway",
            with(json!({"exp": t - 5.0})),
            101,
        ),
        ("exp as a string", with(json!({"exp": "soon"})), 401),
        ("exp past any clock", with(json!({"exp": 1e300})), 101),
    ];
    for (what, token, expected) in cases {
        assert_eq!(
            status(&node, &format!("?token={token}")).await,
            expected,
            "{what}"
        );
    }
    // An empty ?token= does not hide a good Authorization header.
    let bearer = format!("Bearer {}", with(json!({})));
    let client =
        Client::connect_with_headers(&node.url("?token="), &[("Authorization", &bearer)]).await;
    assert!(client.is_ok(), "empty ?token= falls back to the header");
    let metrics = node.metrics().await;
    for cause in [
        "audience",
        "issuer",
        "not_yet_valid",
        "expired",
        "malformed",
    ] {
        let series =
            format!("gateway_handshakes_rejected_total{{reason=\"auth\",cause=\"{cause}\"}}");
        assert!(metric(&metrics, &series) >= 1.0, "{series}");
    }
}

#[tokio::test]
async fn the_types_claim_limits_live_events_and_replays() {
    let node = Node::start(Config {
        auth_jwt_secret: Some(SECRET.into()),
        ..config()
    })
    .await;
    let token = hs256(&json!({"sub": "ana", "exp": now() + 300.0, "types": ["alert"]}));
    assert_eq!(
        status(&node, &format!("?token={token}&types=alert,metrics_update")).await,
        403
    );
    assert_eq!(
        status(&node, &format!("?token={token}&types=alert")).await,
        101
    );

    let mut live = Client::connect(&node.url(&format!("?token={token}")))
        .await
        .unwrap();
    let greeting = live.next_json().await;
    node.publish("metrics_update", json!({"n": 1})).await;
    let alert = node.publish("alert", json!({"n": 2})).await;
    let got = live.next_json().await;
    assert_eq!(
        (got["type"].as_str(), got["id"].as_str()),
        (Some("alert"), Some(alert.as_str()))
    );

    let since = greeting["id"].as_str().expect("the greeting's position");
    let mut resumed = Client::connect(&node.url(&format!("?token={token}&since={since}")))
        .await
        .unwrap();
    resumed.next_json().await; // greeting
    let replayed = resumed.next_json().await;
    assert_eq!(
        replayed["type"], "alert",
        "the metrics_update is not replayed"
    );
    let recovery = resumed.next_json().await;
    assert_eq!(recovery["type"], "recovery");
    assert_eq!(recovery["data"]["replayed"], 1);
    let metrics = node.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "gateway_handshakes_rejected_total{reason=\"forbidden_type\"}"
        ),
        1.0
    );
}

#[tokio::test]
async fn one_user_may_hold_at_most_max_connections_per_user() {
    let node = Node::start(Config {
        auth_jwt_secret: Some(SECRET.into()),
        max_connections_per_user: 2,
        ..config()
    })
    .await;
    let ana = hs256(&json!({"sub": "ana", "exp": now() + 300.0}));
    let bo = hs256(&json!({"sub": "bo", "exp": now() + 300.0}));
    let url = |token: &str| node.url(&format!("?token={token}"));
    let first = Client::connect(&url(&ana)).await.unwrap();
    let _second = Client::connect(&url(&ana)).await.unwrap();
    match Client::connect_with_headers(&url(&ana), &[]).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 429);
            assert!(response.headers().contains_key("retry-after"));
        }
        _ => panic!("a third connection for ana is refused"),
    }
    let _other = Client::connect(&url(&bo)).await.unwrap();
    first.close().await;
    system_tests::eventually("ana's place is given back", || async {
        Client::connect(&url(&ana)).await.ok()
    })
    .await;
    let metrics = get(node.addr, "/metrics").await.body;
    assert!(
        metric(
            &metrics,
            "gateway_handshakes_rejected_total{reason=\"user_limit\"}"
        ) >= 1.0
    );
}

#[tokio::test]
async fn a_connection_is_closed_with_4001_when_its_token_expires() {
    let node = Node::start(Config {
        auth_jwt_secret: Some(SECRET.into()),
        auth_jwt_leeway_secs: 0,
        ..config()
    })
    .await;
    let short = hs256(&claims(1.5));
    let long = hs256(&claims(300.0));
    let mut expiring = Client::connect(&node.url(&format!("?token={short}")))
        .await
        .unwrap();
    let mut staying = Client::connect(&node.url(&format!("?token={long}")))
        .await
        .unwrap();
    expiring.next_json().await;
    staying.next_json().await;
    assert_eq!(expiring.closed().await, Closed::Code(4001));
    staying.send_text("ping").await;
    assert_eq!(
        staying.next_json().await["data"]["pong"],
        true,
        "the other stays"
    );
    let metrics = node.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "gateway_connections_closed_total{reason=\"token_expired\"}"
        ),
        1.0
    );
}

#[tokio::test]
async fn a_failed_jwks_fetch_keeps_the_keys_already_held() {
    let dir = temp_dir("jwks-down");
    let pair = KeyPair::generate(&dir, "held", Algorithm::EdDSA);
    let idp = JwksServer::start(vec![pair.jwk("k1")]).await;
    let node = Node::start(Config {
        auth_jwks_url: Some(idp.url.clone()),
        ..config()
    })
    .await;
    let held = pair.sign(Some("k1"), &claims(300.0));
    assert_eq!(status(&node, &format!("?token={held}")).await, 101);
    idp.failing.store(true, Ordering::SeqCst);
    let unknown = pair.sign(Some("k9"), &claims(300.0));
    assert_eq!(status(&node, &format!("?token={unknown}")).await, 401);
    assert_eq!(idp.hits(), 2, "the unknown kid made the node ask");
    assert_eq!(
        status(&node, &format!("?token={held}")).await,
        101,
        "k1 still held"
    );
    let metrics = node.metrics().await;
    assert!(metric(&metrics, "gateway_jwks_refresh_total{result=\"error\"}") >= 1.0);
    let _ = std::fs::remove_dir_all(dir);
}

/// A test CA and a certificate for `localhost` it signed (openssl CLI).
fn test_ca(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let path = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"],
        &ec[..],
        &["-keyout", &path("ca.key"), "-out", &path("ca.pem")],
        &["-days", "1", "-subj", "/CN=identity test CA"],
    ]
    .concat());
    run(&[
        &["req"],
        &ec[..],
        &["-keyout", &path("srv.key"), "-out", &path("srv.csr")],
        &["-subj", "/CN=localhost"],
    ]
    .concat());
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        &path("srv.csr"),
        "-CA",
        &path("ca.pem"),
        "-CAkey",
        &path("ca.key"),
        "-CAcreateserial",
        "-out",
        &path("srv.pem"),
        "-days",
        "1",
        "-extfile",
        &path("san.ext"),
    ]);
    (dir.join("ca.pem"), dir.join("srv.pem"), dir.join("srv.key"))
}

/// Serves `body` over TLS on 127.0.0.1:0, one HTTP/1.1 response per connection.
async fn https_server(cert: &Path, key: &Path, body: String) -> u16 {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let certs = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (acceptor, body) = (acceptor.clone(), body.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(response.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    port
}

#[tokio::test]
async fn an_https_jwks_is_fetched_over_tls_trusting_the_os_roots() {
    let dir = temp_dir("https");
    let (ca, cert, key) = test_ca(&dir);
    let pair = KeyPair::generate(&dir, "idp", Algorithm::RS256);
    let set = serde_json::to_string(&JwkSet {
        keys: vec![pair.jwk("k1")],
    })
    .unwrap();
    let port = https_server(&cert, &key, set).await;
    // The real binary: SSL_CERT_FILE is how the OS trust store is widened, and a
    // test process may not set its own environment.
    let url = format!("https://localhost:{port}/.well-known/jwks.json");
    let node = system_tests::GatewayProcess::start(&[
        ("AUTH_JWKS_URL", url.as_str()),
        ("SSL_CERT_FILE", ca.to_str().unwrap()),
    ])
    .await;
    let token = pair.sign(Some("k1"), &claims(300.0));
    let mut client = system_tests::eventually("a token the https JWKS vouches for", || {
        let url = node.ws_url(&format!("?token={token}"));
        async move { Client::connect(&url).await.ok() }
    })
    .await;
    assert_eq!(client.next_json().await["type"], "analytics_update");
    let metrics = get(node.addr, "/metrics").await.body;
    assert_eq!(
        metric(&metrics, "gateway_jwks_refresh_total{result=\"ok\"}"),
        1.0
    );

    // A node that does not trust that CA gets no keys from it: the token is refused.
    let stranger_dir = dir.join("other-ca");
    std::fs::create_dir_all(&stranger_dir).unwrap();
    let (other_ca, _, _) = test_ca(&stranger_dir);
    let wary = system_tests::GatewayProcess::start(&[
        ("AUTH_JWKS_URL", url.as_str()),
        ("SSL_CERT_FILE", other_ca.to_str().unwrap()),
    ])
    .await;
    system_tests::eventually("the failed TLS fetch is counted", || async {
        let metrics = get(wary.addr, "/metrics").await.body;
        (metric(&metrics, "gateway_jwks_refresh_total{result=\"error\"}") >= 1.0).then_some(())
    })
    .await;
    let refused = Client::connect_with_headers(&wary.ws_url(&format!("?token={token}")), &[]).await;
    assert_eq!(refused_status(&refused), Some(401));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn service_tokens_and_idp_tokens_work_side_by_side() {
    let dir = temp_dir("both");
    let pair = KeyPair::generate(&dir, "idp", Algorithm::ES256);
    let idp = JwksServer::start(vec![pair.jwk("k1")]).await;
    let node = Node::start(Config {
        auth_jwt_secret: Some(SECRET.into()),
        auth_jwks_url: Some(idp.url.clone()),
        ..config()
    })
    .await;
    let from_idp = pair.sign(Some("k1"), &claims(300.0));
    assert_eq!(status(&node, &format!("?token={from_idp}")).await, 101);
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("svc".into());
    let service = encode(
        &header,
        &claims(300.0),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    assert_eq!(status(&node, &format!("?token={service}")).await, 101);
    assert_eq!(
        idp.hits(),
        1,
        "an HS256 token's kid never sends the node to the IdP"
    );
    let _ = std::fs::remove_dir_all(dir);
}
