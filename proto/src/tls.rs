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
    let provider = Arc::new(chacha_first(rustls::crypto::ring::default_provider()));
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The provider with ChaCha20-Poly1305 offered before AES-GCM, each version's suites
/// otherwise in ring's order. In the component, ring's AES has no AES-NI: ChaCha20 costs
/// a quarter to a third less CPU per message over TLS (BENCHMARKS.md), and servers that
/// honour the client's order (Postfix's default) pick it. Both are AEADs that rustls
/// deems safe; SECURITY.md says why the order is ours.
fn chacha_first(mut provider: rustls::crypto::CryptoProvider) -> rustls::crypto::CryptoProvider {
    use rustls::CipherSuite;
    provider.cipher_suites.sort_by_key(|suite| {
        !matches!(
            suite.suite(),
            CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
                | CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
                | CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        )
    });
    provider
}

/// What went wrong in a handshake with `server` (as `--server` named it), and what to do.
pub fn explain(error: &rustls::Error) -> String {
    use rustls::pki_types::ServerName;
    use rustls::{CertificateError as Certificate, Error, InvalidMessage};
    match error {
        Error::InvalidCertificate(Certificate::UnknownIssuer) => {
            "the server's certificate is signed by a CA that is not trusted here: for a \
             private CA, give its certificate with --ca FILE (or `ca` in the account)"
                .to_owned()
        }
        Error::InvalidCertificate(Certificate::NotValidForNameContext {
            expected,
            presented,
        }) => {
            let (asked, ip) = match expected {
                ServerName::IpAddress(ip) => (std::net::IpAddr::from(*ip).to_string(), true),
                name => (name.to_str().into_owned(), false),
            };
            let names = match presented.as_slice() {
                [] => "no name".to_owned(),
                names => names
                    .iter()
                    .map(|name| bare(name))
                    .collect::<Vec<_>>()
                    .join(", "),
            };
            let hint = match ip {
                true => "; the server was named by its IP address: name it as its certificate does",
                false => "; name the server as its certificate does",
            };
            format!("the server's certificate is for {names}, not for {asked}{hint}")
        }
        Error::InvalidCertificate(Certificate::NotValidForName) => {
            "the server's certificate is not for the name the server was given; name it as \
             its certificate does"
                .to_owned()
        }
        Error::InvalidCertificate(Certificate::Expired | Certificate::ExpiredContext { .. }) => {
            "the server's certificate has expired (or this machine's clock is ahead)".to_owned()
        }
        Error::InvalidCertificate(
            Certificate::NotValidYet | Certificate::NotValidYetContext { .. },
        ) => "the server's certificate is not valid yet (or this machine's clock is behind)"
            .to_owned(),
        Error::InvalidMessage(
            InvalidMessage::InvalidContentType | InvalidMessage::UnknownProtocolVersion,
        ) => "the server did not answer in TLS: a submission port with STARTTLS (587 or 25) \
             greets in plain text; use --tls starttls there, and --tls implicit for port 465"
            .to_owned(),
        error => error.to_string(),
    }
}

/// A name as rustls presents it (`DnsName("mail.example.org")`), as a person writes it.
fn bare(presented: &str) -> &str {
    let inner = presented
        .split_once('(')
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .unwrap_or(presented);
    inner.trim_matches('"')
}

#[cfg(test)]
mod tests {
    use rustls::pki_types::ServerName;
    use rustls::{CertificateError, Error, InvalidMessage};

    use super::*;

    #[test]
    fn chacha20_is_offered_first_and_nothing_is_dropped() {
        use rustls::{CipherSuite, ProtocolVersion};
        let ring = rustls::crypto::ring::default_provider();
        let ours = chacha_first(ring.clone());
        let names = |p: &rustls::crypto::CryptoProvider| -> Vec<CipherSuite> {
            p.cipher_suites.iter().map(|s| s.suite()).collect()
        };
        let (mut sorted_ours, mut sorted_ring) = (names(&ours), names(&ring));
        sorted_ours.sort_by_key(|s| u16::from(*s));
        sorted_ring.sort_by_key(|s| u16::from(*s));
        assert_eq!(sorted_ours, sorted_ring, "the same suites, only reordered");
        let first = |version: ProtocolVersion| {
            ours.cipher_suites
                .iter()
                .find(|s| s.version().version == version)
                .map(|s| s.suite())
        };
        assert_eq!(
            first(ProtocolVersion::TLSv1_3),
            Some(CipherSuite::TLS13_CHACHA20_POLY1305_SHA256)
        );
        assert!(
            matches!(
                first(ProtocolVersion::TLSv1_2),
                Some(
                    CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
                        | CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
                )
            ),
            "{:?}",
            first(ProtocolVersion::TLSv1_2)
        );
    }

    #[test]
    fn handshake_failures_say_what_to_do() {
        let unknown = explain(&Error::InvalidCertificate(CertificateError::UnknownIssuer));
        assert!(unknown.contains("--ca FILE"), "{unknown}");
        let wrong = explain(&Error::InvalidCertificate(
            CertificateError::NotValidForNameContext {
                expected: ServerName::try_from("127.0.0.1").unwrap(),
                presented: vec![
                    "DnsName(\"mail.example.org\")".to_owned(),
                    "IpAddress(192.0.2.1)".to_owned(),
                ],
            },
        ));
        assert_eq!(
            wrong,
            "the server's certificate is for mail.example.org, 192.0.2.1, not for 127.0.0.1; \
             the server was named by its IP address: name it as its certificate does"
        );
        let plain = explain(&Error::InvalidMessage(InvalidMessage::InvalidContentType));
        assert!(plain.contains("--tls starttls"), "{plain}");
    }
}
