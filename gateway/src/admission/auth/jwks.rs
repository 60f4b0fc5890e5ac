//! An identity provider's published keys (`AUTH_JWKS_URL`), cached.
//!
//! A background task ([`Jwks::run`]) fetches the set at start, again when
//! its `Cache-Control: max-age` runs out (clamped to
//! [`MIN_MAX_AGE`]..[`MAX_MAX_AGE`]; [`DEFAULT_MAX_AGE`] without one), and
//! when a handshake meets a token whose `kid` the set does not hold: the
//! provider has rotated its keys. That last refetch happens at most once per
//! [`JWKS_REFETCH_INTERVAL`], so a stream of tokens with made-up `kid`s
//! cannot make the node hammer the provider; the handshake waits for it at
//! most [`KID_WAIT`]. A failed fetch keeps the keys already cached; it is
//! logged and counted in `gateway_jwks_refresh_total{result="error"}`.
//!
//! The fetch is one HTTP/1.1 GET over hyper's client (already in the tree),
//! over rustls for `https://` with the OS's trust roots (`SSL_CERT_FILE`
//! and `SSL_CERT_DIR` honoured), read once at start: a node that finds none
//! refuses to start rather than fail at the first token.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::Uri;
use hyper::header::{ACCEPT, CACHE_CONTROL, HOST, USER_AGENT};
use jsonwebtoken::jwk::Jwk;
use metrics::counter;
use tokio::sync::{Notify, watch};
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;

use super::keys::Key;
use crate::config::ConfigError;
use crate::telemetry::JWKS_REFRESH;

/// Least time between two refetches caused by unknown `kid`s.
pub const JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// Longest a handshake waits for a refetch it asked for.
pub const KID_WAIT: Duration = Duration::from_secs(2);
/// Refresh period without a `Cache-Control: max-age`.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(3600);
/// A `max-age` is held to these bounds: no refetch storm from `max-age=0`,
/// no key kept for days after the provider dropped it.
pub const MIN_MAX_AGE: Duration = Duration::from_secs(60);
pub const MAX_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// Longest one fetch may take, connect to last byte.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// A key set is a few KiB; more is not one.
const MAX_JWKS_BYTES: usize = 1024 * 1024;

pub struct Jwks {
    url: Uri,
    /// `Some` for an `https://` URL.
    tls: Option<tokio_rustls::TlsConnector>,
    keys: RwLock<Arc<Vec<Key>>>,
    fetching: Mutex<Fetching>,
    wake: Notify,
    /// Bumped after every fetch attempt, good or bad.
    attempts: watch::Sender<u64>,
}

struct Fetching {
    /// A fetch is running or about to (the first one, from the start).
    in_flight: bool,
    /// When a token's unknown `kid` last caused a fetch. Only those count
    /// against [`JWKS_REFETCH_INTERVAL`]: the fetch at start and the timed
    /// ones are not caused by tokens, and a rotation right after a start
    /// must still be followed.
    last_for_kid: Option<Instant>,
}

impl Jwks {
    /// Checks the URL (for `Config::validate`, without side effects).
    pub fn check_url(url: &str) -> Result<Uri, ConfigError> {
        let bad = |why: &str| ConfigError::JwksUrl(url.to_owned(), why.to_owned());
        let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) {
            return Err(bad("must start with https:// (or http://)"));
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(bad("has no host"));
        }
        Ok(uri)
    }

    /// For an `https://` URL, reads the trust roots.
    pub fn new(url: &str) -> Result<Self, ConfigError> {
        let uri = Self::check_url(url)?;
        let tls = match uri.scheme_str() {
            Some("https") => {
                Some(tls_connector().map_err(|why| ConfigError::JwksUrl(url.to_owned(), why))?)
            }
            _ => None,
        };
        Ok(Self {
            url: uri,
            tls,
            keys: RwLock::default(),
            fetching: Mutex::new(Fetching {
                in_flight: true,
                last_for_kid: None,
            }),
            wake: Notify::new(),
            attempts: watch::Sender::new(0),
        })
    }

    /// The keys held now (empty until the first fetch succeeds).
    pub fn keys(&self) -> Arc<Vec<Key>> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn fetching(&self) -> std::sync::MutexGuard<'_, Fetching> {
        self.fetching.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A token named a `kid` we do not hold: asks for a refetch unless an
    /// unknown `kid` caused one in the last [`JWKS_REFETCH_INTERVAL`], and
    /// waits for it (or one already running) at most [`KID_WAIT`]. Whether
    /// a fetch completed.
    pub async fn refetch_for_unknown_kid(&self) -> bool {
        let mut attempts = self.attempts.subscribe();
        {
            let mut fetching = self.fetching();
            if !fetching.in_flight {
                let recent = fetching
                    .last_for_kid
                    .is_some_and(|t| t.elapsed() < JWKS_REFETCH_INTERVAL);
                if recent {
                    return false;
                }
                fetching.in_flight = true;
                fetching.last_for_kid = Some(Instant::now());
                self.wake.notify_one();
            }
        }
        matches!(timeout(KID_WAIT, attempts.changed()).await, Ok(Ok(())))
    }

    /// Fetches now, then whenever the cache runs out or a handshake asks.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            let next = match tokio::select! {
                fetched = fetch(&self.url, self.tls.as_ref()) => fetched,
                () = shutdown.cancelled() => return,
            } {
                Ok((keys, max_age)) => {
                    counter!(JWKS_REFRESH, "result" => "ok").increment(1);
                    tracing::info!(url = %self.url, keys = keys.len(), "JWKS fetched");
                    *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keys);
                    max_age
                        .unwrap_or(DEFAULT_MAX_AGE)
                        .clamp(MIN_MAX_AGE, MAX_MAX_AGE)
                }
                Err(err) => {
                    counter!(JWKS_REFRESH, "result" => "error").increment(1);
                    let held = self.keys().len();
                    tracing::warn!(url = %self.url, held, "JWKS fetch failed, keeping the keys held: {err}");
                    JWKS_REFETCH_INTERVAL
                }
            };
            self.fetching().in_flight = false;
            self.attempts.send_modify(|n| *n += 1);
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(next) => self.fetching().in_flight = true,
                () = shutdown.cancelled() => return,
            }
        }
    }
}

/// A TLS client with the OS's trust roots, on the ring provider.
fn tls_connector() -> Result<tokio_rustls::TlsConnector, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(
            "no trusted root certificates found (install ca-certificates, or set SSL_CERT_FILE)"
                .into(),
        );
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// One GET of the key set: its usable keys and `Cache-Control: max-age`.
async fn fetch(
    url: &Uri,
    tls: Option<&tokio_rustls::TlsConnector>,
) -> Result<(Vec<Key>, Option<Duration>), String> {
    let get = async {
        let host = url.host().unwrap_or_default().trim_matches(['[', ']']);
        let port = url
            .port_u16()
            .unwrap_or(if tls.is_some() { 443 } else { 80 });
        let tcp = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        match tls {
            None => get(url, hyper_util::rt::TokioIo::new(tcp)).await,
            Some(connector) => {
                let name = rustls::pki_types::ServerName::try_from(host.to_owned())
                    .map_err(|e| format!("host: {e}"))?;
                let stream = connector
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS: {e}"))?;
                get(url, hyper_util::rt::TokioIo::new(stream)).await
            }
        }
    };
    let (body, max_age) = timeout(FETCH_TIMEOUT, get)
        .await
        .map_err(|_| format!("no answer within {FETCH_TIMEOUT:?}"))??;
    let keys = parse(&body)?;
    Ok((keys, max_age))
}

/// The GET itself, over a connected (and, for https, TLS) stream.
async fn get<I>(url: &Uri, io: I) -> Result<(Bytes, Option<Duration>), String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let authority = url.authority().map_or("", |a| a.as_str()).to_owned();
    let request = hyper::Request::get(url.path_and_query().map_or("/", |p| p.as_str()))
        .header(HOST, authority)
        .header(ACCEPT, "application/json")
        .header(
            USER_AGENT,
            concat!("dashboard-gateway/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let exchange = async move {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("request: {e}"))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("status {status}"));
        }
        let max_age = response
            .headers()
            .get(CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(max_age);
        let body = Limited::new(response.into_body(), MAX_JWKS_BYTES)
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        Ok((body, max_age))
    };
    // The connection is driven alongside the exchange and ends with it.
    let (result, _) = tokio::join!(exchange, connection);
    result
}

/// The usable keys of a JWKS document. A key of a kind we cannot use is
/// skipped, not the whole set; a set with no usable key is an error (the
/// keys held are kept).
fn parse(body: &[u8]) -> Result<Vec<Key>, String> {
    #[derive(serde::Deserialize)]
    struct Set {
        keys: Vec<serde_json::Value>,
    }
    let set: Set = serde_json::from_slice(body).map_err(|e| format!("not a JWKS: {e}"))?;
    let keys: Vec<Key> = set
        .keys
        .into_iter()
        .filter_map(|k| serde_json::from_value::<Jwk>(k).ok())
        .filter_map(|jwk| Key::from_jwk(&jwk))
        .collect();
    if keys.is_empty() {
        return Err("the JWKS holds no signing key this node can use".into());
    }
    Ok(keys)
}

/// `max-age=N` of a `Cache-Control` value (`None` with `no-store`/`no-cache`:
/// then the default period applies).
fn max_age(value: &str) -> Option<Duration> {
    value.split(',').map(str::trim).find_map(|directive| {
        let (name, secs) = directive.split_once('=')?;
        name.eq_ignore_ascii_case("max-age")
            .then(|| secs.trim_matches('"').parse().ok())
            .flatten()
            .map(Duration::from_secs)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_read_from_cache_control() {
        assert_eq!(
            max_age("public, max-age=18000, must-revalidate"),
            Some(Duration::from_secs(18000))
        );
        assert_eq!(max_age("no-store"), None);
        assert_eq!(max_age("max-age=oops"), None);
    }

    #[test]
    fn keys_of_unknown_kinds_are_skipped_not_the_set() {
        let body = br#"{"keys": [
            {"kty": "oct", "k": "c2VjcmV0", "kid": "sym"},
            {"kty": "weird", "kid": "x"},
            {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
        ]}"#;
        let keys = parse(body).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("ed"));
        assert!(parse(br#"{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}"#).is_err());
    }
}
