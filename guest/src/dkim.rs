//! DKIM signing with the caller's key, which is parsed and used here, with ring, and never
//! leaves the component. `sendbox_proto::dkim` does the rest: which fields, the
//! canonicalisation, the DKIM-Signature field.

use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject as _;
use sendbox_proto as proto;
use sendbox_proto::dkim::{Algorithm, Canonicalization, Request};
use sendbox_proto::{ErrorKind, Phase};

use crate::wit;

/// A request and the key that signs it, both checked.
pub struct Signer {
    request: Request,
    key: Key,
}

enum Key {
    Rsa(RsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

impl Signer {
    /// Parses the key and checks that it fits the algorithm asked for, and the request.
    /// Errors say what is wrong with the key without showing any of it.
    pub fn new(signing: wit::DkimSigning) -> Result<Signer, proto::Error> {
        let key = parse_key(&signing.key)?;
        let algorithm = match &key {
            Key::Rsa(_) => Algorithm::RsaSha256,
            Key::Ed25519(_) => Algorithm::Ed25519Sha256,
        };
        if let Some(asked) = signing.algorithm {
            let asked = match asked {
                wit::DkimAlgorithm::RsaSha256 => Algorithm::RsaSha256,
                wit::DkimAlgorithm::Ed25519Sha256 => Algorithm::Ed25519Sha256,
            };
            if asked != algorithm {
                return Err(invalid(format!(
                    "the DKIM key is for {}, not {}",
                    algorithm.name(),
                    asked.name()
                )));
            }
        }
        let mut request = Request::new(signing.domain, signing.selector, algorithm);
        if let Some(headers) = signing.headers {
            request.headers = headers;
            // From is signed whatever the list says: a signature without it verifies
            // nowhere (RFC 6376 section 5.4).
            if !request
                .headers
                .iter()
                .any(|h| h.eq_ignore_ascii_case("from"))
            {
                request.headers.insert(0, "From".to_owned());
            }
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
        let signature = match &self.key {
            Key::Rsa(key) => {
                let mut signature = vec![0; key.public().modulus_len()];
                key.sign(
                    &RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    prepared.signing_input(),
                    &mut signature,
                )
                .map_err(|_| invalid("the DKIM key could not sign".to_owned()))?;
                signature
            }
            Key::Ed25519(key) => key.sign(prepared.signing_input()).as_ref().to_vec(),
        };
        Ok(prepared.finish(&signature))
    }
}

fn canonicalization(c: wit::DkimCanonicalization) -> Canonicalization {
    match c {
        wit::DkimCanonicalization::Relaxed => Canonicalization::Relaxed,
        wit::DkimCanonicalization::Simple => Canonicalization::Simple,
    }
}

/// A key or setting that cannot sign: the caller's configuration, not the message.
fn invalid(message: String) -> proto::Error {
    proto::Error::new(Phase::Sign, ErrorKind::InvalidInput, message)
}

/// The key from PEM or DER: PKCS#8 (RSA or Ed25519) or PKCS#1 (RSA).
fn parse_key(bytes: &[u8]) -> Result<Key, proto::Error> {
    // PEM wherever its block is (after a byte-order mark or other text, as openssl reads).
    let pem = contains(bytes, b"-----BEGIN");
    let encrypted = contains(bytes, b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
        || contains(bytes, b"Proc-Type: 4,ENCRYPTED");
    if pem && encrypted {
        return Err(invalid(
            "the DKIM key is encrypted; give it decrypted (openssl pkey -in KEY -out PLAIN)"
                .to_owned(),
        ));
    }
    let der = match pem {
        true => PrivateKeyDer::from_pem_slice(bytes).map_err(|_| {
            invalid(
                "the DKIM key file holds no private key in PEM (PRIVATE KEY or RSA PRIVATE \
                 KEY); a certificate or a public key cannot sign"
                    .to_owned(),
            )
        })?,
        // DER: PKCS#8, else PKCS#1 (what `openssl pkey -outform DER` writes for RSA).
        false if RsaKeyPair::from_der(bytes).is_ok() => PrivateKeyDer::Pkcs1(bytes.to_vec().into()),
        false => PrivateKeyDer::Pkcs8(bytes.to_vec().into()),
    };
    match der {
        PrivateKeyDer::Pkcs1(der) => rsa(RsaKeyPair::from_der(der.secret_pkcs1_der())),
        PrivateKeyDer::Pkcs8(der) => {
            let der = der.secret_pkcs8_der();
            if let Ok(key) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
                return Ok(Key::Ed25519(key));
            }
            match RsaKeyPair::from_pkcs8(der) {
                Ok(key) => Ok(Key::Rsa(key)),
                // Not RSA either: say which keys are taken, or why an RSA one is not.
                Err(e) if contains(der, RSA_ENCRYPTION) => rsa(Err(e)),
                Err(_) if contains(der, EC_PUBLIC_KEY) => Err(ec_key()),
                Err(_) => Err(invalid(
                    "the DKIM key is neither an RSA nor an Ed25519 private key (PKCS#8 or \
                     PKCS#1, PEM or DER)"
                        .to_owned(),
                )),
            }
        }
        _ => Err(ec_key()),
    }
}

fn ec_key() -> proto::Error {
    invalid("the DKIM key is an EC key; DKIM signs with RSA or Ed25519".to_owned())
}

fn rsa(key: Result<RsaKeyPair, ring::error::KeyRejected>) -> Result<Key, proto::Error> {
    key.map(Key::Rsa).map_err(|e| {
        let why = match e.to_string().as_str() {
            "TooSmall" => "an RSA key must have 2048 bits or more and a public exponent of \
                           65537 or more (1024-bit keys are no longer safe; ring refuses them)"
                .to_owned(),
            "TooLarge" => {
                "an RSA key may have at most 4096 bits (ring's limit for signing)".to_owned()
            }
            other => format!("the RSA key is not usable ({other})"),
        };
        invalid(format!("the DKIM key cannot sign: {why}"))
    })
}

/// The algorithm OIDs a PKCS#8 key may name, to say why one is refused: rsaEncryption
/// (1.2.840.113549.1.1.1) and id-ecPublicKey (1.2.840.10045.2.1).
const RSA_ENCRYPTION: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
];
const EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
