//! The TLS material of a Redis configuration, read and checked at start:
//! a file that cannot be read, or PEM that does not parse, is named with
//! the variable that pointed at it.

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::ConfigError;

fn read_file(var: &'static str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|err| ConfigError::File {
        var,
        path: path.to_owned(),
        reason: format!("cannot be read ({err})"),
    })
}

/// A PEM file holding at least one certificate, every one of them valid PEM.
pub fn read_certificates(var: &'static str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    let pem = read_file(var, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>();
    match certs {
        Ok(certs) if !certs.is_empty() => Ok(pem),
        Ok(_) => Err(ConfigError::File {
            var,
            path: path.to_owned(),
            reason: "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
        }),
        Err(err) => Err(ConfigError::File {
            var,
            path: path.to_owned(),
            reason: format!("is not valid PEM ({err})"),
        }),
    }
}

/// A PEM file holding a private key (PKCS#8, PKCS#1 or SEC1).
pub fn read_private_key(var: &'static str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    let pem = read_file(var, path)?;
    match PrivateKeyDer::from_pem_slice(&pem) {
        Ok(_) => Ok(pem),
        Err(err) => Err(ConfigError::File {
            var,
            path: path.to_owned(),
            reason: format!("holds no PEM private key ({err})"),
        }),
    }
}
