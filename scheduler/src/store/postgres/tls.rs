//! TLS to PostgreSQL (`sslmode=verify-full`): rustls with ring, like every
//! other TLS connection of Gatehouse. The server's certificate must chain
//! to `database_ca` (or, without it, to the system's roots) and name the
//! host the URL names.

use std::sync::Arc;

use gatehouse_policy::scheduler::PostgresTls;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::store::StoreError;

/// The connector for every connection to the database (unused when the
/// URL says `sslmode=disable`).
pub(super) fn connector(tls: &PostgresTls) -> Result<MakeRustlsConnect, StoreError> {
    let roots = match tls {
        PostgresTls::VerifyFull { ca: Some(ca) } => roots_from(ca)?,
        PostgresTls::VerifyFull { ca: None } => system_roots()?,
        PostgresTls::Disabled => RootCertStore::empty(),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Postgres(format!("TLS settings: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

fn roots_from(ca: &std::path::Path) -> Result<RootCertStore, StoreError> {
    let failed =
        |reason: String| StoreError::Postgres(format!("database_ca {}: {reason}", ca.display()));
    let certs = CertificateDer::pem_file_iter(ca)
        .map_err(|e| failed(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| failed(e.to_string()))?;
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(failed("no CA certificate in it".to_owned()));
    }
    Ok(roots)
}

fn system_roots() -> Result<RootCertStore, StoreError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        return Err(StoreError::Postgres(format!(
            "sslmode=verify-full: no system CA certificates ({:?}); name one with database_ca",
            found.errors
        )));
    }
    Ok(roots)
}
