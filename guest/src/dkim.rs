//! DKIM signing with the caller's key, which is parsed and used here and never leaves the
//! component. `sendbox_proto::dkim_key` reads the key and signs; `sendbox_proto::dkim`
//! does the rest: which fields, the canonicalisation, the DKIM-Signature field.

use sendbox_proto as proto;
use sendbox_proto::dkim::{Algorithm, Canonicalization, Request};
use sendbox_proto::dkim_key::SigningKey;
use sendbox_proto::{ErrorKind, Phase};

use crate::wit;

/// A request and the key that signs it, both checked.
pub struct Signer {
    request: Request,
    key: SigningKey,
}

impl Signer {
    /// Parses the key and checks that it fits the algorithm asked for, and the request.
    /// Errors say what is wrong with the key without showing any of it.
    pub fn new(signing: wit::DkimSigning) -> Result<Signer, proto::Error> {
        let key = SigningKey::parse(&signing.key)?;
        if let Some(asked) = signing.algorithm {
            key.check_algorithm(match asked {
                wit::DkimAlgorithm::RsaSha256 => Algorithm::RsaSha256,
                wit::DkimAlgorithm::Ed25519Sha256 => Algorithm::Ed25519Sha256,
            })?;
        }
        let mut request = Request::new(signing.domain, signing.selector, key.algorithm());
        if let Some(headers) = signing.headers {
            request.set_headers(headers);
        }
        request.header_canonicalization = canonicalization(signing.header_canonicalization);
        request.body_canonicalization = canonicalization(signing.body_canonicalization);
        request.expiry = signing.expire_after;
        request.identity = signing.identity;
        request.check().map_err(|e| invalid(e.to_string()))?;
        Ok(Signer { request, key })
    }

    /// The DKIM-Signature field for `message` (as it is sent, before dot-stuffing), at
    /// `now` (seconds since 1970), to go on top of it.
    pub fn sign(&self, message: &[u8], now: u64) -> Result<Vec<u8>, proto::Error> {
        let prepared = proto::dkim::prepare(&self.request, message, now)?;
        let signature = self.key.sign(prepared.signing_input())?;
        Ok(prepared.finish(&signature))
    }
}

fn canonicalization(c: wit::DkimCanonicalization) -> Canonicalization {
    match c {
        wit::DkimCanonicalization::Relaxed => Canonicalization::Relaxed,
        wit::DkimCanonicalization::Simple => Canonicalization::Simple,
    }
}

/// A setting that cannot sign: the caller's configuration, not the message.
fn invalid(message: String) -> proto::Error {
    proto::Error::new(Phase::Sign, ErrorKind::InvalidInput, message)
}
