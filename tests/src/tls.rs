//! A throwaway certificate authority for the TLS tests: a CA, server and
//! client certificates for loopback, written as PEM files to a temporary
//! directory (removed on drop), and rustls client settings that trust it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{HttpResponse, PATIENCE, free_port};

/// What a leaf certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// A server on loopback (`127.0.0.1`, `localhost`).
    Server,
    /// A client (mutual TLS).
    Client,
}

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The certificate, DER: what a client sees.
    pub der: Vec<u8>,
}

/// A test CA with a directory for its files.
pub struct TestCa {
    pub dir: PathBuf,
    /// The CA certificate, PEM (`REDIS_TLS_CA_FILE`, `--tls-ca-cert-file`).
    pub ca_file: PathBuf,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "gateway-tls-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "gateway test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key"))
            .expect("CA certificate");
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, issuer.pem()).expect("write CA");
        Self {
            dir,
            ca_file,
            issuer,
        }
    }

    /// Issues a new certificate (a fresh key each time) named `name`,
    /// written to `<dir>/<name>.pem` and `<dir>/<name>-key.pem`.
    pub fn issue(&self, name: &str, usage: Usage) -> CertFiles {
        let files = CertFiles {
            cert: self.dir.join(format!("{name}.pem")),
            key: self.dir.join(format!("{name}-key.pem")),
            der: Vec::new(),
        };
        self.issue_to(&files.cert, &files.key, name, usage)
    }

    /// `redis-server` options for a TLS-only server (no plain port) on
    /// `port`, presenting `server` and trusting this CA for clients.
    pub fn redis_server_args(&self, port: u16, server: &CertFiles) -> Vec<String> {
        let path = |p: &Path| p.to_string_lossy().into_owned();
        vec![
            "--port".into(),
            "0".into(),
            "--tls-port".into(),
            port.to_string(),
            "--tls-cert-file".into(),
            path(&server.cert),
            "--tls-key-file".into(),
            path(&server.key),
            "--tls-ca-cert-file".into(),
            path(&self.ca_file),
        ]
    }

    /// Issues a new certificate into `cert` and `key` (overwriting them, as
    /// a certificate renewal does).
    pub fn issue_to(&self, cert: &Path, key: &Path, name: &str, usage: Usage) -> CertFiles {
        let names = match usage {
            Usage::Server => vec!["127.0.0.1".to_owned(), "localhost".to_owned()],
            Usage::Client => Vec::new(),
        };
        let mut params = CertificateParams::new(names).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = match usage {
            // Redis also presents its server certificate as a client (to
            // replicas and the cluster bus).
            Usage::Server => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
        };
        let key_pair = KeyPair::generate().expect("leaf key");
        let certificate = params
            .signed_by(&key_pair, &self.issuer)
            .expect("leaf certificate");
        // Key first: a reader that sees the new certificate finds its key.
        std::fs::write(key, key_pair.serialize_pem()).expect("write key");
        std::fs::write(cert, certificate.pem()).expect("write certificate");
        CertFiles {
            cert: cert.to_owned(),
            key: key.to_owned(),
            der: certificate.der().to_vec(),
        }
    }

    /// rustls client settings that trust this CA (and nothing else).
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(self.issuer.der().to_vec()))
            .expect("CA is a trust anchor");
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        // No session resumption: a resumed session reports the certificate
        // of the session it resumes, and the tests look at what each new
        // handshake presents.
        let mut config = config;
        config.resumption = rustls::client::Resumption::disabled();
        Arc::new(config)
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Opens a TLS connection to `addr` trusting `config`; returns the stream
/// and the certificate the server presented (DER).
pub async fn tls_connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> Result<(tokio_rustls::client::TlsStream<TcpStream>, Vec<u8>)> {
    let tcp = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect {addr}"))?;
    tls_over(tcp, config).await
}

/// A TLS handshake over `tcp`, already connected (say, with a small receive
/// buffer), trusting `config`; the stream and the server's certificate.
pub async fn tls_over(
    tcp: TcpStream,
    config: Arc<rustls::ClientConfig>,
) -> Result<(tokio_rustls::client::TlsStream<TcpStream>, Vec<u8>)> {
    let addr = tcp.peer_addr()?;
    let connector = tokio_rustls::TlsConnector::from(config);
    let name = ServerName::IpAddress(addr.ip().into());
    let stream = tokio::time::timeout(PATIENCE, connector.connect(name, tcp))
        .await
        .context("TLS handshake timed out")??;
    let der = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|cert| cert.to_vec())
        .context("no server certificate")?;
    Ok((stream, der))
}

/// One HTTPS/1.1 GET, `Connection: close`, response read to the end.
pub async fn https_get(
    addr: SocketAddr,
    path: &str,
    config: Arc<rustls::ClientConfig>,
) -> Result<HttpResponse> {
    https(addr, "GET", path, &[], "", config).await
}

/// One HTTPS/1.1 request, `Connection: close`, response read to the end.
pub async fn https(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
    config: Arc<rustls::ClientConfig>,
) -> Result<HttpResponse> {
    let (mut stream, _) = tls_connect(addr, config).await?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    // A server may end TLS without close_notify after `Connection: close`.
    let _ = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut raw)).await;
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").context("no end of headers")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no status")?;
    Ok(HttpResponse {
        status,
        headers: head.to_owned(),
        body: body.to_owned(),
    })
}
