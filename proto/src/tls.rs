//! The TLS client settings of the component (feature `tls`): rustls with the ring
//! provider, its safe default protocol versions, and the caller's trust anchors or else the
//! web PKI roots. Settings only; the handshake runs in the driver. Kept here so that the
//! benchmark's native peer uses exactly the component's settings.

use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};

/// Builds the TLS settings: the caller's trust anchors if given, else the web PKI roots.
pub fn client_config(ca_pem: Option<&str>) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            let mut count = 0;
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                let cert = cert.map_err(|e| format!("cannot read the CA PEM: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("cannot use a CA certificate: {e}"))?;
                count += 1;
            }
            if count == 0 {
                return Err("the CA PEM holds no certificate".to_owned());
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
