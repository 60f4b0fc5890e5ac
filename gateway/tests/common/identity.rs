//! Identity test kit: key pairs made by `openssl`, tokens signed with them, a
//! JWKS endpoint and an HTTPS server on 127.0.0.1:0, a test CA.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use system_tests::{Client, refused_status};

use super::Node;

pub const SECRET: &str = "jwt-test-secret";

/// Runs the `openssl` CLI, which must succeed; returns its standard output.
fn openssl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A key pair made by `openssl genpkey` in a fresh directory.
pub struct KeyPair {
    private: Vec<u8>,
    pub public_file: PathBuf,
    alg: Algorithm,
}

impl KeyPair {
    pub fn generate(dir: &Path, name: &str, alg: Algorithm) -> Self {
        let private_file = dir.join(format!("{name}.key"));
        let public_file = dir.join(format!("{name}.pub"));
        let spec: &[&str] = match alg {
            Algorithm::RS256 => &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            Algorithm::ES256 => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            Algorithm::ES384 => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
            Algorithm::EdDSA => &["-algorithm", "ED25519"],
            other => panic!("no key for {other:?}"),
        };
        let private = private_file.to_str().unwrap();
        openssl(&[&["genpkey"], spec, &["-out", private]].concat());
        openssl(&[
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

    pub fn encoding_key(&self) -> EncodingKey {
        match self.alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&self.private),
            Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(&self.private),
            _ => EncodingKey::from_ed_pem(&self.private),
        }
        .unwrap()
    }

    pub fn sign(&self, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = kid.map(str::to_owned);
        encode(&header, claims, &self.encoding_key()).unwrap()
    }

    pub fn jwk(&self, kid: &str) -> Jwk {
        if self.alg == Algorithm::EdDSA {
            // jsonwebtoken cannot make an Ed25519 JWK: x is the raw key, the
            // last 32 bytes of the DER public key.
            let public = self.public_file.to_str().unwrap();
            let der = openssl(&["pkey", "-pubin", "-outform", "DER", "-in", public]);
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
pub fn b64url(bytes: &[u8]) -> String {
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

pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gw-identity-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn claims(exp_in: f64) -> Value {
    json!({"sub": "ops-user", "exp": now() + exp_in})
}

pub fn hs256(claims: &Value) -> String {
    encode(
        &Header::default(),
        claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// The status of a handshake with `token` (101 when it got in).
pub async fn status(node: &Node, query: &str) -> u16 {
    match Client::connect_with_headers(&node.url(query), &[]).await {
        Ok(client) => {
            client.close().await;
            101
        }
        result => refused_status(&result).expect("an HTTP refusal"),
    }
}

/// A JWKS endpoint on 127.0.0.1:0 serving whatever `set` holds now,
/// counting the requests.
pub struct JwksServer {
    pub url: String,
    set: Arc<Mutex<JwkSet>>,
    hits: Arc<AtomicUsize>,
    /// While set, the endpoint answers 500.
    pub failing: Arc<AtomicBool>,
}

impl JwksServer {
    pub async fn start(keys: Vec<Jwk>) -> Self {
        let set = Arc::new(Mutex::new(JwkSet { keys }));
        let hits = Arc::new(AtomicUsize::new(0));
        let failing = Arc::new(AtomicBool::new(false));
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

    pub fn serve(&self, keys: Vec<Jwk>) {
        *self.set.lock().unwrap() = JwkSet { keys };
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// A test CA and a certificate for `localhost` it signed (openssl CLI).
pub fn test_ca(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let path = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"],
            &ec[..],
            &["-keyout", &path("ca.key"), "-out", &path("ca.pem")],
            &["-days", "1", "-subj", "/CN=identity test CA"],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"],
            &ec[..],
            &["-keyout", &path("srv.key"), "-out", &path("srv.csr")],
            &["-subj", "/CN=localhost"],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(&[
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
pub async fn https_server(cert: &Path, key: &Path, body: String) -> u16 {
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
