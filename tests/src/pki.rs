//! A throwaway CA and server certificates signed by it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Result;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

pub struct TestPki {
    pub dir: tempfile::TempDir,
    pub ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// Paths of one issued certificate and its key.
pub struct IssuedCert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestPki {
    pub fn new() -> Result<Self> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "Gatehouse test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.serial_number = Some(positive_serial());
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(365);
        let cert = params.self_signed(&key)?;
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("ca.pem"), cert.pem())?;
        Ok(TestPki {
            dir,
            ca_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Issues a leaf for `hosts` (DNS names or IP literals), valid for
    /// `days`, written as `<file_stem>.pem` and `<file_stem>-key.pem`.
    pub fn issue(&self, file_stem: &str, hosts: &[&str], days: i64) -> Result<IssuedCert> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name.push(
            DnType::CommonName,
            hosts.first().copied().unwrap_or("localhost"),
        );
        params.subject_alt_names = hosts
            .iter()
            .map(|h| match h.parse::<std::net::IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => Ok(SanType::DnsName((*h).to_owned().try_into()?)),
            })
            .collect::<Result<_, rcgen::Error>>()?;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.serial_number = Some(positive_serial());
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        // Verifiers that build paths (Python's, Node's) match the leaf's
        // Authority Key Identifier to the CA's Subject Key Identifier.
        params.use_authority_key_identifier_extension = true;
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(days);
        let cert = params.signed_by(&key, &self.issuer)?;
        let issued = IssuedCert {
            cert: self.dir.path().join(format!("{file_stem}.pem")),
            key: self.dir.path().join(format!("{file_stem}-key.pem")),
        };
        write_atomically(&issued.key, key.serialize_pem().as_bytes())?;
        write_atomically(&issued.cert, cert.pem().as_bytes())?;
        Ok(issued)
    }

    /// An HTTPS client that trusts only this CA (not the system's roots),
    /// resolves `localhost` to `localhost_addr` and does not follow
    /// redirects, so tests see them. Callers set the timeout they need.
    pub fn https_client(&self, localhost_addr: SocketAddr) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(
                reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).expect("our own CA parses"),
            )
            .resolve("localhost", localhost_addr)
            .redirect(reqwest::redirect::Policy::none())
    }

    /// A rustls client config that trusts only this CA.
    pub fn client_config(&self, alpn: &[&[u8]]) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        let ca = rustls::pki_types::CertificateDer::from_pem_slice(self.ca_pem.as_bytes())
            .expect("our own CA parses");
        roots.add(ca).expect("our own CA is acceptable");
        let mut config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("ring supports the defaults")
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        config
    }
}

use rustls::pki_types::pem::PemObject;

/// RFC 5280 wants positive serials; strict verifiers (Python's
/// cryptography, used by sslyze) reject a leading 1 bit, so clear it.
fn positive_serial() -> rcgen::SerialNumber {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut bytes = (nanos ^ NEXT.fetch_add(1, Ordering::Relaxed).rotate_left(40)).to_be_bytes();
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    rcgen::SerialNumber::from_slice(&bytes)
}

/// Write to a temporary name, then rename, as deployment tools do, so a
/// reader never sees half a file.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
