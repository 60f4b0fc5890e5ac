//! `wss://` at the node (`TLS_CERT_FILE`, `TLS_KEY_FILE`): the rustls
//! server configuration the accept loop hands each connection to, and a
//! certificate resolver that follows the files on disk.
//!
//! Certificates are renewed in place (cert-manager, certbot, a mounted
//! Secret): the resolver looks at the files' modification times at most once
//! a second, during a handshake, and loads them again when they changed. A
//! renewal that does not parse (a half-written file, a key that does not
//! match the certificate yet) is logged and the old certificate kept, so a
//! node never stops serving over a bad renewal; it tries again once the
//! files change again. Established connections are untouched: only new
//! handshakes see the new certificate.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

/// How often, at most, the files' modification times are looked at.
const RELOAD_CHECK: Duration = Duration::from_secs(1);

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads and checks a certificate chain and its key; the message names the
/// variable and the file at fault.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, String> {
    let read = |var: &str, path: &Path| {
        std::fs::read(path).map_err(|err| format!("{var} {path:?} cannot be read ({err})"))
    };
    let cert_pem = read("TLS_CERT_FILE", cert)?;
    let key_pem = read("TLS_KEY_FILE", key)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| format!("TLS_CERT_FILE {cert:?} is not valid PEM ({err})"))?;
    if chain.is_empty() {
        return Err(format!(
            "TLS_CERT_FILE {cert:?} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
        ));
    }
    let private_key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|err| format!("TLS_KEY_FILE {key:?} holds no PEM private key ({err})"))?;
    CertifiedKey::from_der(chain, private_key, &provider())
        .map_err(|err| format!("TLS_KEY_FILE {key:?} does not fit TLS_CERT_FILE {cert:?} ({err})"))
}

/// The TLS acceptor for the node's listener, serving the certificate in
/// `cert` (renewals included).
pub fn acceptor(cert: PathBuf, key: PathBuf) -> Result<TlsAcceptor, String> {
    let resolver = Arc::new(Reloading::new(cert, key)?);
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|err| err.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    // HTTP/1.1 only: the WebSocket upgrade is an HTTP/1.1 affair.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A [`ResolvesServerCert`] that reloads the files when they change.
#[derive(Debug)]
struct Reloading {
    cert: PathBuf,
    key: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    current: Arc<CertifiedKey>,
    /// What the files looked like at the last load attempt, good or bad.
    stamp: Option<Stamp>,
    checked: Instant,
}

/// Modification time and length of both files.
type Stamp = [(SystemTime, u64); 2];

fn stamp(cert: &Path, key: &Path) -> Option<Stamp> {
    let one = |path: &Path| {
        let meta = std::fs::metadata(path).ok()?;
        Some((meta.modified().ok()?, meta.len()))
    };
    Some([one(cert)?, one(key)?])
}

impl Reloading {
    fn new(cert: PathBuf, key: PathBuf) -> Result<Self, String> {
        let stamp = stamp(&cert, &key);
        let current = Arc::new(load_certified_key(&cert, &key)?);
        Ok(Self {
            cert,
            key,
            state: Mutex::new(State {
                current,
                stamp,
                checked: Instant::now(),
            }),
        })
    }

    /// The certificate to present, reloaded first when the files changed
    /// (looked at no more than once per [`RELOAD_CHECK`]).
    fn current(&self) -> Arc<CertifiedKey> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.checked.elapsed() >= RELOAD_CHECK {
            state.checked = Instant::now();
            let now = stamp(&self.cert, &self.key);
            if now.is_some() && now != state.stamp {
                state.stamp = now;
                match load_certified_key(&self.cert, &self.key) {
                    Ok(key) => {
                        state.current = Arc::new(key);
                        tracing::info!(cert = ?self.cert, "TLS certificate reloaded");
                    }
                    Err(err) => tracing::warn!(
                        "TLS certificate not reloaded, still serving the previous one: {err}"
                    ),
                }
            }
        }
        state.current.clone()
    }
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}
