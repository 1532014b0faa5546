//! TLS: the process-wide crypto provider, certificates chosen by SNI, and
//! their hot reload.
//!
//! Pingora builds its rustls `ServerConfig` from the process-wide default
//! provider and offers no setter for protocol versions, so the minimum TLS
//! version is enforced by the cipher suites that provider carries: with
//! only TLS 1.3 suites, TLS 1.2 cannot be negotiated. That is also why the
//! minimum version cannot change without a restart.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use gatehouse_policy::{Tls, TlsVersion};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read certificate chain {path}: {reason}")]
    UnreadableChain { path: PathBuf, reason: String },
    #[error("cannot read private key {path}: {reason}")]
    UnreadableKey { path: PathBuf, reason: String },
    #[error("certificate {cert} does not match private key {key}: {reason}")]
    KeyMismatch {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("the TLS crypto provider was already installed with other settings")]
    ProviderAlreadyInstalled,
}

/// Installs the process-wide rustls provider (ring) for `min_version`.
///
/// Mozilla "intermediate" is exactly ring's default suite list: the three
/// TLS 1.3 suites plus ECDHE with AES-GCM or ChaCha20-Poly1305 for TLS 1.2,
/// with X25519, P-256 and P-384 key exchange. "Modern" keeps the TLS 1.3
/// suites only.
pub fn install_crypto_provider(min_version: TlsVersion) -> Result<(), TlsError> {
    let mut provider = rustls::crypto::ring::default_provider();
    if min_version == TlsVersion::Tls13 {
        provider
            .cipher_suites
            .retain(|suite| suite.version() == &rustls::version::TLS13);
    }
    let wanted: Vec<_> = provider.cipher_suites.iter().map(|s| s.suite()).collect();
    if provider.install_default().is_ok() {
        return Ok(());
    }
    // Already installed: fine only if it is the same configuration (tests
    // and the `check` command may get here twice).
    let installed = CryptoProvider::get_default().ok_or(TlsError::ProviderAlreadyInstalled)?;
    let have: Vec<_> = installed.cipher_suites.iter().map(|s| s.suite()).collect();
    if have == wanted {
        Ok(())
    } else {
        Err(TlsError::ProviderAlreadyInstalled)
    }
}

/// The loaded certificates of one policy, indexed by SNI name.
#[derive(Debug)]
pub struct CertStore {
    by_name: HashMap<String, Arc<CertifiedKey>>,
    /// Served when the client sends no SNI (an IP literal) or an unknown name.
    fallback: Arc<CertifiedKey>,
    /// Per certificate file: its leaf's notAfter, in Unix seconds.
    pub not_after: Vec<(PathBuf, i64)>,
    /// Every file read, so the reloader knows what to watch.
    pub files: Vec<PathBuf>,
}

impl CertStore {
    pub fn load(tls: &Tls) -> Result<Self, TlsError> {
        let provider = rustls::crypto::ring::default_provider();
        let mut by_name = HashMap::new();
        let mut fallback = None;
        let mut not_after = Vec::new();
        let mut files = Vec::new();
        for pair in &tls.certs {
            let (key, leaf_not_after) = load_pair(&pair.cert, &pair.key, &provider)?;
            let key = Arc::new(key);
            fallback.get_or_insert_with(|| key.clone());
            for host in &pair.hosts {
                by_name.insert(host.clone(), key.clone());
            }
            not_after.push((pair.cert.clone(), leaf_not_after));
            files.push(pair.cert.clone());
            files.push(pair.key.clone());
        }
        let fallback = fallback.ok_or_else(|| TlsError::UnreadableChain {
            path: PathBuf::new(),
            reason: "the policy names no certificate".into(),
        })?;
        Ok(CertStore {
            by_name,
            fallback,
            not_after,
            files,
        })
    }

    fn choose(&self, server_name: Option<&str>) -> Arc<CertifiedKey> {
        server_name
            .and_then(|name| self.by_name.get(&name.to_ascii_lowercase()))
            .unwrap_or(&self.fallback)
            .clone()
    }
}

fn load_pair(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<(CertifiedKey, i64), TlsError> {
    let chain_error = |reason: String| TlsError::UnreadableChain {
        path: cert_path.to_path_buf(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(cert_path)
        .map_err(|e| chain_error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| chain_error(e.to_string()))?;
    let leaf = chain
        .first()
        .ok_or_else(|| chain_error("no PEM certificate in the file".into()))?;
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| chain_error(format!("leaf certificate does not parse: {e}")))?;
    let not_after = parsed.validity().not_after.timestamp();

    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| TlsError::UnreadableKey {
        path: key_path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let certified =
        CertifiedKey::from_der(chain, key, provider).map_err(|e| TlsError::KeyMismatch {
            cert: cert_path.to_path_buf(),
            key: key_path.to_path_buf(),
            reason: e.to_string(),
        })?;
    Ok((certified, not_after))
}

/// Chooses a certificate by SNI from whatever store is current, so a reload
/// swaps certificates for new handshakes while established connections keep
/// theirs.
#[derive(Debug)]
pub struct SniResolver {
    store: Arc<ArcSwap<CertStore>>,
}

impl SniResolver {
    pub fn new(store: Arc<ArcSwap<CertStore>>) -> Self {
        SniResolver { store }
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.store.load().choose(client_hello.server_name()))
    }
}

/// Keeps the name the client asked for in the TLS handshake (SNI) with
/// the connection, where the request path compares it with `Host`.
/// (Pingora's rustls listener also only takes a resolver through settings
/// built with callbacks.)
pub struct SniCallbacks;

/// The SNI name of a connection, when the client sent one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerNameIndication(pub String);

#[async_trait::async_trait]
impl pingora::listeners::TlsAccept for SniCallbacks {
    async fn handshake_complete_callback(
        &self,
        tls: &pingora::protocols::tls::TlsRef,
    ) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        let name = tls.server_name()?;
        Some(Arc::new(ServerNameIndication(name.to_ascii_lowercase())))
    }
}

/// The SNI name the session's connection was opened for.
pub fn server_name(session: &pingora::proxy::Session) -> Option<&str> {
    session
        .digest()?
        .ssl_digest
        .as_ref()?
        .extension
        .get::<ServerNameIndication>()
        .map(|sni| sni.0.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_policy::CertPair;

    fn write_pair(dir: &Path, name: &str) -> CertPair {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let cert_path = dir.join(format!("{name}.pem"));
        let key_path = dir.join(format!("{name}-key.pem"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        CertPair {
            hosts: vec![name.to_owned()],
            cert: cert_path,
            key: key_path,
        }
    }

    #[test]
    fn certificate_is_chosen_by_sni_with_the_first_as_fallback() {
        let dir = tempfile::tempdir().unwrap();
        let a = write_pair(dir.path(), "a.test");
        let b = write_pair(dir.path(), "b.test");
        let store = CertStore::load(&Tls {
            min_version: TlsVersion::Tls12,
            certs: vec![a, b],
        })
        .unwrap();
        let for_b = store.choose(Some("B.TEST"));
        let fallback = store.choose(None);
        let unknown = store.choose(Some("c.test"));
        assert!(Arc::ptr_eq(&for_b, &store.by_name["b.test"]));
        assert!(Arc::ptr_eq(&fallback, &store.by_name["a.test"]));
        assert!(Arc::ptr_eq(&unknown, &fallback));
    }

    #[test]
    fn mismatched_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = write_pair(dir.path(), "a.test");
        let b = write_pair(dir.path(), "b.test");
        let crossed = CertPair {
            hosts: a.hosts.clone(),
            cert: a.cert.clone(),
            key: b.key.clone(),
        };
        let err = CertStore::load(&Tls {
            min_version: TlsVersion::Tls12,
            certs: vec![crossed],
        })
        .unwrap_err();
        assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");
    }

    #[test]
    fn missing_chain_names_the_file() {
        let err = CertStore::load(&Tls {
            min_version: TlsVersion::Tls12,
            certs: vec![CertPair {
                hosts: vec!["a.test".into()],
                cert: "/nonexistent/cert.pem".into(),
                key: "/nonexistent/key.pem".into(),
            }],
        })
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/cert.pem"), "{err}");
    }
}
