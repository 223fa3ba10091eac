//! TLS for both ends: server certificates (files or a generated short-lived self-signed one) and
//! client verification (system roots, a CA file, pinned SHA-256 hashes, or none when asked).

use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::error::{wtd_result, Error, Result};

/// ALPN for HTTP/3.
pub const ALPN_H3: &[u8] = b"h3";

fn tls_err(msg: impl Into<std::borrow::Cow<'static, str>>) -> Error {
    Error::new(wtd_result::WTD_ERR_TLS, msg)
}

/// rustls' ring provider, always selected explicitly (never the process default).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// SHA-256 of a DER certificate.
pub fn sha256(der: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, der);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A server's certificate chain and key.
pub struct ServerIdentity {
    /// Chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// Private key.
    pub key: PrivateKeyDer<'static>,
}

impl ServerIdentity {
    /// SHA-256 of the leaf certificate (what a browser's `serverCertificateHashes` takes).
    pub fn leaf_hash(&self) -> [u8; 32] {
        sha256(&self.chain[0])
    }

    /// Loads PEM files.
    pub fn from_pem_files(cert_file: &str, key_file: &str) -> Result<Self> {
        let chain = CertificateDer::pem_file_iter(cert_file)
            .map_err(|e| tls_err(format!("cannot read certificate file {cert_file}: {e}")))?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| tls_err(format!("bad PEM in {cert_file}: {e}")))?;
        if chain.is_empty() {
            return Err(tls_err(format!("no certificate in {cert_file}")));
        }
        let key = PrivateKeyDer::from_pem_file(key_file)
            .map_err(|e| tls_err(format!("cannot read private key from {key_file}: {e}")))?;
        Ok(ServerIdentity { chain, key })
    }

    /// Generates an ECDSA P-256 self-signed certificate for `names` (DNS names or IP
    /// addresses), valid from one hour ago for `validity` (keep it under 14 days for browsers).
    pub fn self_signed(names: &[String], validity: Duration) -> Result<Self> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| tls_err(format!("key generation failed: {e}")))?;
        let mut params = rcgen::CertificateParams::new(names.to_vec())
            .map_err(|e| tls_err(format!("bad certificate name: {e}")))?;
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now - time::Duration::hours(1)
            + time::Duration::try_from(validity).map_err(|e| tls_err(e.to_string()))?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "wtd self-signed");
        let cert = params
            .self_signed(&key)
            .map_err(|e| tls_err(format!("self-signing failed: {e}")))?;
        Ok(ServerIdentity {
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::try_from(key.serialize_der())
                .map_err(|e| tls_err(e.to_string()))?,
        })
    }

    /// The rustls server configuration (TLS 1.3, ALPN h3).
    pub fn server_config(&self) -> Result<rustls::ServerConfig> {
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| tls_err(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| tls_err(format!("certificate and key do not match: {e}")))?;
        cfg.alpn_protocols = vec![ALPN_H3.to_vec()];
        Ok(cfg)
    }
}

/// How a client checks the server's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// The operating system's trusted roots.
    SystemRoots,
    /// Only certificates chaining to the CAs in this PEM file.
    CaFile(String),
    /// The leaf certificate's SHA-256 must be one of these (like `serverCertificateHashes`).
    PinnedSha256(Vec<[u8; 32]>),
    /// No verification at all. Only for tests; never the default.
    DangerousNone,
}

/// The rustls client configuration for a verification mode (TLS 1.3, ALPN h3).
pub fn client_config(verification: &Verification) -> Result<rustls::ClientConfig> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls_err(e.to_string()))?;
    let mut cfg = match verification {
        Verification::SystemRoots => {
            let mut roots = rustls::RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err(tls_err("no system root certificates found"));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Verification::CaFile(path) => {
            let mut roots = rustls::RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| tls_err(format!("cannot read CA file {path}: {e}")))?;
            for cert in certs {
                let cert = cert.map_err(|e| tls_err(format!("bad PEM in {path}: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| tls_err(format!("bad CA certificate in {path}: {e}")))?;
            }
            if roots.is_empty() {
                return Err(tls_err(format!("no certificate in CA file {path}")));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Verification::PinnedSha256(hashes) => {
            if hashes.is_empty() {
                return Err(Error::invalid(
                    "pinned verification needs at least one SHA-256 hash",
                ));
            }
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Pinned {
                    hashes: Some(hashes.clone()),
                    provider: provider(),
                }))
                .with_no_client_auth()
        }
        Verification::DangerousNone => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned {
                hashes: None,
                provider: provider(),
            }))
            .with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![ALPN_H3.to_vec()];
    Ok(cfg)
}

/// Verifier for pinned hashes (`Some`) or no verification (`None`); handshake signatures are
/// always checked, so the peer must hold the certificate's key.
#[derive(Debug)]
struct Pinned {
    hashes: Option<Vec<[u8; 32]>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        match &self.hashes {
            None => Ok(ServerCertVerified::assertion()),
            Some(hashes) if hashes.contains(&sha256(end_entity)) => {
                Ok(ServerCertVerified::assertion())
            }
            Some(_) => Err(rustls::Error::General(format!(
                "certificate hash {} is not pinned",
                hex(&sha256(end_entity))
            ))),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Parses a 64-character hex SHA-256.
pub fn parse_sha256_hex(s: &str) -> Result<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 || !s.is_ascii() {
        return Err(Error::invalid(format!(
            "certificate hash must be 64 hex characters, got {:?}",
            s
        )));
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16)
            .map_err(|_| Error::invalid(format!("certificate hash is not hex: {s:?}")))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_is_short_lived_p256() {
        let id = ServerIdentity::self_signed(
            &["localhost".into(), "127.0.0.1".into()],
            Duration::from_secs(13 * 86400),
        )
        .unwrap();
        assert_eq!(id.chain.len(), 1);
        assert!(id.server_config().is_ok());
        let h = id.leaf_hash();
        assert_eq!(parse_sha256_hex(&hex(&h)).unwrap(), h);
    }

    #[test]
    fn bad_inputs() {
        assert_eq!(
            parse_sha256_hex("abc").unwrap_err().code,
            wtd_result::WTD_ERR_INVALID_ARGUMENT
        );
        assert_eq!(
            parse_sha256_hex(&"zz".repeat(32)).unwrap_err().code,
            wtd_result::WTD_ERR_INVALID_ARGUMENT
        );
        assert_eq!(
            ServerIdentity::from_pem_files("/nonexistent.pem", "/nonexistent.key")
                .err()
                .unwrap()
                .code,
            wtd_result::WTD_ERR_TLS
        );
        assert_eq!(
            client_config(&Verification::PinnedSha256(vec![]))
                .err()
                .unwrap()
                .code,
            wtd_result::WTD_ERR_INVALID_ARGUMENT
        );
        assert_eq!(
            client_config(&Verification::CaFile("/nonexistent".into()))
                .err()
                .unwrap()
                .code,
            wtd_result::WTD_ERR_TLS
        );
    }
}
