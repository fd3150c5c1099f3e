//! DKIM private keys (feature `dkim-key`): the one place that reads a key, signs with it
//! and writes its public record, for the component (which signs) and the command line
//! (`sendbox dkim record`), so that both take and refuse the same keys with the same words.
//!
//! Keys are read with ring, in PEM (wherever the block is in the file) or DER, as PKCS#8
//! (RSA or Ed25519, version 1 or 2) or PKCS#1 (RSA). Nothing here shows key material: not
//! [`SigningKey`]'s `Debug`, not a [`KeyError`].

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair as _, RSA_PKCS1_SHA256, RsaKeyPair};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject as _;

use crate::dkim::Algorithm;
use crate::error::Phase;

/// A private key that can sign DKIM signatures: RSA (2048 to 4096 bits) or Ed25519.
pub struct SigningKey(Key);

enum Key {
    Rsa(RsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// Why a key cannot sign. The words say what is wrong and what to do, never the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyError {
    /// A PEM key encrypted with a passphrase (PKCS#8 or the old PKCS#1 form).
    Encrypted,
    /// PEM without a private key block: a certificate, a public key, a cut-off file.
    NoPrivateKey,
    /// An elliptic-curve key (SEC1 or PKCS#8), which DKIM does not sign with.
    EcKey,
    /// DER that is neither an RSA nor an Ed25519 private key.
    Unknown,
    /// An RSA key under 2048 bits, or with a public exponent under 65537.
    RsaTooSmall,
    /// An RSA key over 4096 bits, ring's limit for signing.
    RsaTooLarge,
    /// An RSA key ring refuses for another reason (its word for it).
    RsaUnusable(String),
    /// The key is for another algorithm than the one asked for.
    WrongAlgorithm {
        /// The key's algorithm.
        key: Algorithm,
        /// The one asked for.
        asked: Algorithm,
    },
    /// Signing failed (ring could not get random bytes for RSA blinding).
    CannotSign,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Encrypted => f.write_str(
                "the DKIM key is encrypted; give it decrypted (openssl pkey -in KEY -out PLAIN)",
            ),
            KeyError::NoPrivateKey => f.write_str(
                "the DKIM key file holds no private key in PEM (PRIVATE KEY or RSA PRIVATE \
                 KEY); a certificate or a public key cannot sign",
            ),
            KeyError::EcKey => {
                f.write_str("the DKIM key is an EC key; DKIM signs with RSA or Ed25519")
            }
            KeyError::Unknown => f.write_str(
                "the DKIM key is neither an RSA nor an Ed25519 private key (PKCS#8 or \
                 PKCS#1, PEM or DER)",
            ),
            KeyError::RsaTooSmall => f.write_str(
                "the DKIM key cannot sign: an RSA key must have 2048 bits or more and a \
                 public exponent of 65537 or more (1024-bit keys are no longer safe; ring \
                 refuses them)",
            ),
            KeyError::RsaTooLarge => f.write_str(
                "the DKIM key cannot sign: an RSA key may have at most 4096 bits (ring's \
                 limit for signing)",
            ),
            KeyError::RsaUnusable(why) => {
                write!(
                    f,
                    "the DKIM key cannot sign: the RSA key is not usable ({why})"
                )
            }
            KeyError::WrongAlgorithm { key, asked } => write!(
                f,
                "the DKIM key is for {}, not {}",
                key.name(),
                asked.name()
            ),
            KeyError::CannotSign => f.write_str("the DKIM key could not sign"),
        }
    }
}

impl std::error::Error for KeyError {}

/// A key that cannot sign is the caller's configuration, refused before anything is sent.
impl From<KeyError> for crate::error::Error {
    fn from(error: KeyError) -> Self {
        crate::error::Error::invalid_input(Phase::Sign, error.to_string())
    }
}

impl SigningKey {
    /// The key from PEM or DER: PKCS#8 (RSA or Ed25519) or PKCS#1 (RSA).
    pub fn parse(bytes: &[u8]) -> Result<SigningKey, KeyError> {
        // PEM wherever its block is (after a byte-order mark or other text, as openssl reads).
        let pem = contains(bytes, b"-----BEGIN");
        let encrypted = contains(bytes, b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
            || contains(bytes, b"Proc-Type: 4,ENCRYPTED");
        if pem && encrypted {
            return Err(KeyError::Encrypted);
        }
        let der = match pem {
            true => PrivateKeyDer::from_pem_slice(bytes).map_err(|_| KeyError::NoPrivateKey)?,
            // DER: PKCS#8, else PKCS#1 (what `openssl pkey -outform DER` writes for RSA).
            false if RsaKeyPair::from_der(bytes).is_ok() => {
                PrivateKeyDer::Pkcs1(bytes.to_vec().into())
            }
            false => PrivateKeyDer::Pkcs8(bytes.to_vec().into()),
        };
        let key = match der {
            PrivateKeyDer::Pkcs1(der) => rsa(RsaKeyPair::from_der(der.secret_pkcs1_der()))?,
            PrivateKeyDer::Pkcs8(der) => {
                let der = der.secret_pkcs8_der();
                // Version 1 (seed only, as OpenSSL writes) or 2 (with the public key).
                if let Ok(key) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
                    return Ok(SigningKey(Key::Ed25519(key)));
                }
                match RsaKeyPair::from_pkcs8(der) {
                    Ok(key) => Key::Rsa(key),
                    // Not RSA either: say which keys are taken, or why an RSA one is not.
                    Err(e) if contains(der, RSA_ENCRYPTION) => rsa(Err(e))?,
                    // PKCS#8 names id-ecPublicKey; SEC1 in DER (`openssl pkey -outform
                    // DER` of an EC key) names only its curve.
                    Err(_)
                        if [EC_PUBLIC_KEY, X9_62_CURVE, SECG_CURVE]
                            .iter()
                            .any(|oid| contains(der, oid)) =>
                    {
                        return Err(KeyError::EcKey);
                    }
                    Err(_) => return Err(KeyError::Unknown),
                }
            }
            _ => return Err(KeyError::EcKey),
        };
        Ok(SigningKey(key))
    }

    /// The algorithm the key signs with.
    pub fn algorithm(&self) -> Algorithm {
        match &self.0 {
            Key::Rsa(_) => Algorithm::RsaSha256,
            Key::Ed25519(_) => Algorithm::Ed25519Sha256,
        }
    }

    /// Checks that the key is for `asked`.
    pub fn check_algorithm(&self, asked: Algorithm) -> Result<(), KeyError> {
        match self.algorithm() {
            key if key != asked => Err(KeyError::WrongAlgorithm { key, asked }),
            _ => Ok(()),
        }
    }

    /// The signature of `signing_input` ([`crate::dkim::Prepared::signing_input`]).
    pub fn sign(&self, signing_input: &[u8]) -> Result<Vec<u8>, KeyError> {
        match &self.0 {
            Key::Rsa(key) => {
                let mut signature = vec![0; key.public().modulus_len()];
                key.sign(
                    &RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    signing_input,
                    &mut signature,
                )
                .map_err(|_| KeyError::CannotSign)?;
                Ok(signature)
            }
            Key::Ed25519(key) => Ok(key.sign(signing_input).as_ref().to_vec()),
        }
    }

    /// The value of the DNS TXT record that publishes the public half: `v=DKIM1; k=rsa;
    /// p=<SubjectPublicKeyInfo>` or `v=DKIM1; k=ed25519; p=<the 32 bytes>` (RFC 8463).
    pub fn public_record(&self) -> String {
        match &self.0 {
            Key::Rsa(key) => format!(
                "v=DKIM1; k=rsa; p={}",
                BASE64.encode(rsa_spki(key.public().as_ref()))
            ),
            Key::Ed25519(key) => format!(
                "v=DKIM1; k=ed25519; p={}",
                BASE64.encode(key.public_key().as_ref())
            ),
        }
    }
}

/// The algorithm and size only: never the key, private or public.
impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_struct("SigningKey");
        out.field("algorithm", &self.algorithm().name());
        if let Key::Rsa(key) = &self.0 {
            out.field("bits", &(key.public().modulus_len() * 8));
        }
        out.finish_non_exhaustive()
    }
}

fn rsa(key: Result<RsaKeyPair, ring::error::KeyRejected>) -> Result<Key, KeyError> {
    key.map(Key::Rsa).map_err(|e| match e.to_string().as_str() {
        "TooSmall" => KeyError::RsaTooSmall,
        "TooLarge" => KeyError::RsaTooLarge,
        other => KeyError::RsaUnusable(other.to_owned()),
    })
}

/// An RSAPublicKey (PKCS#1) as the SubjectPublicKeyInfo that DKIM records carry (what
/// `openssl rsa -pubout` writes).
fn rsa_spki(pkcs1: &[u8]) -> Vec<u8> {
    fn der(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = content.len();
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let bytes: Vec<u8> = len
                .to_be_bytes()
                .into_iter()
                .skip_while(|&b| b == 0)
                .collect();
            out.push(0x80 | bytes.len() as u8);
            out.extend(bytes);
        }
        out.extend_from_slice(content);
        out
    }
    // SEQUENCE { OID rsaEncryption, NULL }
    const ALGORITHM: &[u8] = &[
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut bits = vec![0];
    bits.extend_from_slice(pkcs1);
    let mut content = ALGORITHM.to_vec();
    content.extend(der(0x03, &bits));
    der(0x30, &content)
}

/// The algorithm OIDs a PKCS#8 key may name, to say why one is refused: rsaEncryption
/// (1.2.840.113549.1.1.1) and id-ecPublicKey (1.2.840.10045.2.1); and the start of the
/// curve OIDs a SEC1 key names instead: X9.62's prime curves (1.2.840.10045.3.1.*, P-256)
/// and SECG's (1.3.132.0.*, P-384 and P-521).
const RSA_ENCRYPTION: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
];
const EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const X9_62_CURVE: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01];
const SECG_CURVE: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00];

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
#[path = "dkim_key_tests.rs"]
mod tests;
