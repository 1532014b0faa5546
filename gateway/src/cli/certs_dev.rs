//! `gatehouse-gateway certs dev`: a local CA and a server certificate for
//! development, so the quick start runs over real HTTPS.
//!
//! The CA is kept when it already exists, so a browser or system that trusts
//! it keeps trusting re-issued server certificates.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

/// Leaf lifetime: Mozilla's TLS guidelines (checked by sslyze) want under
/// 366 days, stricter than the 398 days browsers accept.
const LEAF_DAYS: i64 = 365;
const CA_DAYS: i64 = 3650;

pub struct DevCertPaths {
    pub ca_cert: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Whether `dir` already holds a server certificate and its key.
pub fn server_cert_exists(dir: &Path) -> bool {
    dir.join("server.pem").is_file() && dir.join("server-key.pem").is_file()
}

/// Writes `ca.pem`/`ca-key.pem` (only if absent) and a fresh
/// `server.pem`/`server-key.pem` for `hosts` into `dir`.
pub fn write_dev_certs(dir: &Path, hosts: &[String]) -> Result<DevCertPaths> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let ca_cert_path = dir.join("ca.pem");
    let ca_key_path = dir.join("ca-key.pem");

    let (ca_pem, ca_key) = if ca_cert_path.exists() && ca_key_path.exists() {
        let key_pem = fs::read_to_string(&ca_key_path)
            .with_context(|| format!("reading {}", ca_key_path.display()))?;
        let key = KeyPair::from_pem(&key_pem).context("parsing the existing CA key")?;
        let pem = fs::read_to_string(&ca_cert_path)
            .with_context(|| format!("reading {}", ca_cert_path.display()))?;
        (pem, key)
    } else {
        let key = KeyPair::generate().context("generating the CA key")?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name("Gatehouse development CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.serial_number = Some(positive_serial()?);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(CA_DAYS);
        let cert = params.self_signed(&key).context("signing the CA")?;
        write_private(&ca_key_path, &key.serialize_pem())?;
        fs::write(&ca_cert_path, cert.pem())
            .with_context(|| format!("writing {}", ca_cert_path.display()))?;
        (cert.pem(), key)
    };
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).context("loading the CA")?;

    let leaf_key = KeyPair::generate().context("generating the server key")?;
    let mut params = CertificateParams::default();
    params.distinguished_name = name(hosts.first().map(String::as_str).unwrap_or("localhost"));
    params.subject_alt_names = hosts
        .iter()
        .map(|h| match h.parse::<IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => Ok(SanType::DnsName(h.clone().try_into()?)),
        })
        .collect::<Result<_, rcgen::Error>>()
        .context("building subject alternative names")?;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.serial_number = Some(positive_serial()?);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(LEAF_DAYS);
    let leaf = params
        .signed_by(&leaf_key, &issuer)
        .context("signing the server certificate")?;

    let paths = DevCertPaths {
        ca_cert: ca_cert_path,
        cert: dir.join("server.pem"),
        key: dir.join("server-key.pem"),
    };
    write_private(&paths.key, &leaf_key.serialize_pem())?;
    fs::write(&paths.cert, leaf.pem())
        .with_context(|| format!("writing {}", paths.cert.display()))?;
    Ok(paths)
}

/// 16 random bytes with the top bit clear: RFC 5280 wants serials positive
/// and unpredictable, and strict verifiers reject a negative one.
fn positive_serial() -> Result<SerialNumber> {
    let mut bytes = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| anyhow::anyhow!("no randomness for a certificate serial"))?;
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "Gatehouse development");
    dn
}

/// Private keys are created 0600 so no other user can read them, even briefly.
fn write_private(path: &Path, contents: &str) -> Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(contents.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaf_chains_to_the_ca_with_server_usages() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let paths = write_dev_certs(dir.path(), &hosts).unwrap();

        let leaf_pem = fs::read(&paths.cert).unwrap();
        let (_, pem) = x509_parser::pem::parse_x509_pem(&leaf_pem).unwrap();
        let leaf = pem.parse_x509().unwrap();
        let eku = leaf.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth);
        let ku = leaf.key_usage().unwrap().unwrap().value;
        assert!(ku.digital_signature());
        let sans = leaf.subject_alternative_name().unwrap().unwrap();
        assert_eq!(sans.value.general_names.len(), 2);
        let days = (leaf.validity().not_after.timestamp() - leaf.validity().not_before.timestamp())
            / 86_400;
        assert!(days < 366, "{days}");

        let ca_pem = fs::read(&paths.ca_cert).unwrap();
        let (_, ca) = x509_parser::pem::parse_x509_pem(&ca_pem).unwrap();
        let ca = ca.parse_x509().unwrap();
        assert!(ca.is_ca());
        leaf.verify_signature(Some(ca.public_key())).unwrap();
    }

    #[test]
    fn existing_ca_is_kept_and_keys_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = vec!["localhost".to_owned()];
        let first = write_dev_certs(dir.path(), &hosts).unwrap();
        let ca_before = fs::read(&first.ca_cert).unwrap();
        write_dev_certs(dir.path(), &hosts).unwrap();
        assert_eq!(fs::read(&first.ca_cert).unwrap(), ca_before);
        let mode = fs::metadata(&first.key).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
    }
}
