//! DKIM: the settings of an account (`dkim_*` keys) or of `--dkim-*` options, and the key
//! file, read for each send and handed to the component, which signs. The key is never
//! kept anywhere else: not in the outbox, the log or any message.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use sendbox::{DkimAlgorithm, DkimCanonicalization, DkimKey, DkimSigning};
use sendbox_proto::dkim_key::SigningKey;

use crate::args::{DkimAction, DkimArgs, DkimCommand, DkimName};
use crate::config::{self, Account};
use crate::error::Error;
use crate::exit;

/// The largest key file read; an RSA-8192 key in PEM is about 6.5 KB.
const MAX_KEY_FILE: u64 = 64 * 1024;

/// The longest a signature may be valid, in days (x=): a hundred years.
pub const MAX_EXPIRE_DAYS: u32 = 36_500;

/// How a message is signed: everything but the key itself, which is read when it is used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dkim {
    /// `d=`.
    pub domain: String,
    /// `s=`.
    pub selector: String,
    /// The private key's file.
    pub key_file: PathBuf,
    /// The algorithm the key must be for; `None`: the key's own.
    pub algorithm: Option<DkimAlgorithm>,
    /// The fields to sign; `None`: the component's default list.
    pub headers: Option<Vec<String>>,
    /// Header and body canonicalisation.
    pub canonicalization: (DkimCanonicalization, DkimCanonicalization),
    /// Days the signature stays valid.
    pub expire_days: Option<u32>,
    /// `i=`.
    pub identity: Option<String>,
}

impl Dkim {
    /// The `--dkim-*` options when they give a key, else the account's settings.
    pub fn resolve(args: &DkimArgs, account: Option<&Account>) -> Option<Dkim> {
        let Some(key_file) = &args.dkim_key else {
            return account.and_then(|account| account.dkim.clone());
        };
        Some(Dkim {
            // clap requires both with --dkim-key.
            domain: args.dkim_domain.clone().unwrap_or_default(),
            selector: args.dkim_selector.clone().unwrap_or_default(),
            key_file: key_file.clone(),
            algorithm: args.dkim_algorithm,
            headers: (!args.dkim_headers.is_empty()).then(|| args.dkim_headers.clone()),
            canonicalization: args
                .dkim_canonicalization
                .unwrap_or((DkimCanonicalization::Relaxed, DkimCanonicalization::Relaxed)),
            expire_days: args.dkim_expire_days,
            identity: args.dkim_identity.clone(),
        })
    }

    /// The component's settings with the key read from its file, which must be a regular
    /// file that only its owner can read or write, as a password file must.
    pub fn signing(&self) -> Result<DkimSigning, config::Error> {
        let key = read_key(&self.key_file).map_err(|why| {
            config::Error::from(format!("the DKIM key {}: {why}", self.key_file.display()))
        })?;
        Ok(DkimSigning {
            domain: self.domain.clone(),
            selector: self.selector.clone(),
            key: DkimKey::new(key),
            algorithm: self.algorithm,
            headers: self.headers.clone(),
            header_canonicalization: self.canonicalization.0,
            body_canonicalization: self.canonicalization.1,
            expire_after: self.expire_days.map(|days| u64::from(days) * 24 * 60 * 60),
            identity: self.identity.clone(),
        })
    }
}

fn read_key(path: &Path) -> Result<Vec<u8>, String> {
    use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .map_err(|e| format!("cannot be read: {e}"))?;
    let metadata = file.metadata().map_err(|e| e.to_string())?;
    if !metadata.is_file() {
        return Err("is not a regular file".to_owned());
    }
    let me = rustix::process::geteuid().as_raw();
    if metadata.uid() != me && metadata.uid() != 0 {
        return Err(format!(
            "belongs to user {}, who could replace it; it must be yours (uid {me}) or root's",
            metadata.uid()
        ));
    }
    if metadata.mode() & 0o077 != 0 {
        return Err(format!(
            "others can access it (mode {:04o}); run chmod 600 on it",
            metadata.mode() & 0o7777
        ));
    }
    if metadata.len() > MAX_KEY_FILE {
        return Err("is too large to be a private key".to_owned());
    }
    let mut key = Vec::new();
    file.take(MAX_KEY_FILE)
        .read_to_end(&mut key)
        .map_err(|e| format!("cannot be read: {e}"))?;
    Ok(key)
}

/// `c=` as written: `relaxed`, `simple`, or `HEADER/BODY` such as `relaxed/simple`.
pub fn canonicalization(
    text: &str,
) -> Result<(DkimCanonicalization, DkimCanonicalization), String> {
    let one = |name: &str| match name {
        "relaxed" => Ok(DkimCanonicalization::Relaxed),
        "simple" => Ok(DkimCanonicalization::Simple),
        other => Err(format!(
            "{other:?} is not a canonicalization: relaxed, simple, or HEADER/BODY such as \
             relaxed/simple"
        )),
    };
    match text.split_once('/') {
        Some((header, body)) => Ok((one(header)?, one(body)?)),
        // As in c=: one name is the header's, and the body's is simple.
        None => Ok((one(text)?, DkimCanonicalization::Simple)),
    }
}

/// `a=` as written.
pub fn algorithm(text: &str) -> Result<DkimAlgorithm, String> {
    match text {
        "rsa-sha256" => Ok(DkimAlgorithm::RsaSha256),
        "ed25519-sha256" => Ok(DkimAlgorithm::Ed25519Sha256),
        other => Err(format!(
            "{other:?} is not a DKIM algorithm: rsa-sha256 or ed25519-sha256"
        )),
    }
}

/// `sendbox dkim keygen` and `sendbox dkim record`.
pub fn command(args: DkimCommand) -> Result<u8, Error> {
    let (name, key) = match args.action {
        DkimAction::Keygen {
            name,
            algorithm,
            bits,
            output,
        } => {
            check_name(&name)?;
            let pem = match algorithm.as_str() {
                "ed25519" => ed25519_pem()?,
                _ => rsa_pem(bits)?,
            };
            let key = SigningKey::parse(&pem).map_err(|why| {
                Error::Internal(format!("the key just made cannot be read back: {why}"))
            })?;
            write_new_key(&output, &pem)?;
            println!("wrote {} (mode 600)", output.display());
            (name, key)
        }
        DkimAction::Record { name, key } => {
            check_name(&name)?;
            let bytes = read_key(&key)
                .map_err(|why| Error::Unusable(format!("the DKIM key {}: {why}", key.display())))?;
            // Read as the component reads it to sign, with the same words for a bad key.
            let parsed = SigningKey::parse(&bytes)
                .map_err(|why| Error::Unusable(format!("{}: {why}", key.display())))?;
            (name, parsed)
        }
    };
    let record = key.public_record();
    println!(
        "\nPublish this TXT record in the DNS of {domain}:\n\n{selector}._domainkey.{domain}. 3600 IN TXT ( {quoted} )\n\n\
         The value alone, for a DNS provider's form:\n\n{record}\n\n\
         Then sign with --dkim-key, --dkim-selector {selector} and --dkim-domain {domain}, or \
         dkim_key_file, dkim_selector and dkim_domain in an account.",
        domain = name.domain,
        selector = name.selector,
        quoted = quoted_strings(&record),
    );
    Ok(exit::OK)
}

/// The selector and domain, checked as the signer will check them.
fn check_name(name: &DkimName) -> Result<(), Error> {
    let request = sendbox_proto::dkim::Request::new(
        name.domain.clone(),
        name.selector.clone(),
        sendbox_proto::dkim::Algorithm::RsaSha256,
    );
    request
        .check()
        .map_err(|e| Error::Usage(format!("--selector/--domain: {e}")))
}

/// A new Ed25519 key, PKCS#8 in PEM, in the version-1 form of RFC 8410 that OpenSSL and
/// dkimpy read (ring writes version 2, with the public key, which they refuse).
fn ed25519_pem() -> Result<Vec<u8>, Error> {
    // SEQUENCE { INTEGER 0, SEQUENCE { OID 1.3.101.112 }, OCTET STRING { OCTET STRING seed } }
    const V1_PREFIX: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    let document =
        ring::signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
            .map_err(|_| Error::Internal("cannot make an Ed25519 key".to_owned()))?;
    // Version 2 starts with the same fields: the seed is at bytes 16 to 48.
    let seed = document
        .as_ref()
        .get(16..48)
        .ok_or_else(|| Error::Internal("ring's Ed25519 document is not as expected".to_owned()))?;
    let mut v1 = V1_PREFIX.to_vec();
    v1.extend_from_slice(seed);
    Ok(pem("PRIVATE KEY", &v1).into_bytes())
}

/// A new RSA key from `openssl genpkey`, PKCS#8 in PEM: ring makes no RSA keys, and an
/// RSA crate with known timing flaws is not one to hold a key.
fn rsa_pem(bits: u16) -> Result<Vec<u8>, Error> {
    let output = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "RSA", "-pkeyopt"])
        .arg(format!("rsa_keygen_bits:{bits}"))
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| {
            Error::Unavailable(format!(
                "cannot run openssl to make an RSA key ({e}): install openssl, or give \
                 --algorithm ed25519"
            ))
        })?;
    if !output.status.success() || !output.stdout.starts_with(b"-----BEGIN PRIVATE KEY-----") {
        return Err(Error::Internal(format!(
            "openssl genpkey failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(output.stdout)
}

/// Writes a new file of mode 0600 (never over an existing one), made durable.
fn write_new_key(path: &Path, pem: &[u8]) -> Result<(), Error> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            Error::CannotCreate(match e.kind() {
                std::io::ErrorKind::AlreadyExists => format!(
                    "{} exists: a key is never overwritten; give another --output, or remove it",
                    path.display()
                ),
                _ => format!("cannot write {}: {e}", path.display()),
            })
        })?;
    file.write_all(pem)
        .and_then(|()| file.sync_all())
        .map_err(|e| {
            let _ = std::fs::remove_file(path);
            Error::CannotCreate(format!("cannot write {}: {e}", path.display()))
        })
}

/// PEM with 64-column lines.
fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = text
        .as_bytes()
        .chunks(64)
        .map(|chunk| std::str::from_utf8(chunk).expect("base64 is ASCII"))
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// A TXT value as the strings of at most 255 characters a zone file needs.
fn quoted_strings(value: &str) -> String {
    value
        .as_bytes()
        .chunks(255)
        .map(|chunk| format!("\"{}\"", String::from_utf8_lossy(chunk)))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn settings(key_file: PathBuf) -> Dkim {
        Dkim {
            domain: "example.org".into(),
            selector: "s1".into(),
            key_file,
            algorithm: None,
            headers: None,
            canonicalization: canonicalization("relaxed/relaxed").unwrap(),
            expire_days: Some(7),
            identity: None,
        }
    }

    #[test]
    fn canonicalizations_are_read_as_c_is() {
        use DkimCanonicalization::{Relaxed, Simple};
        assert_eq!(
            canonicalization("relaxed/simple").unwrap(),
            (Relaxed, Simple)
        );
        assert_eq!(
            canonicalization("simple/relaxed").unwrap(),
            (Simple, Relaxed)
        );
        assert_eq!(canonicalization("relaxed").unwrap(), (Relaxed, Simple));
        assert!(canonicalization("loose").unwrap_err().contains("\"loose\""));
        assert!(canonicalization("relaxed/").is_err());
        assert!(
            algorithm("rsa-sha1")
                .unwrap_err()
                .contains("rsa-sha256 or ed25519")
        );
    }

    #[test]
    fn the_key_file_must_be_its_owners_alone_and_is_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key.pem");
        std::fs::write(
            &file,
            "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
        let error = settings(file.clone()).signing().unwrap_err().to_string();
        assert!(
            error.contains("mode 0640") && error.contains("chmod 600"),
            "{error}"
        );
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let signing = settings(file).signing().unwrap();
        assert_eq!(signing.expire_after, Some(7 * 86400));
        let shown = format!("{signing:?}");
        assert!(
            !shown.contains("c2VjcmV0") && !shown.contains("PRIVATE"),
            "{shown}"
        );
        let error = settings(dir.path().to_owned())
            .signing()
            .unwrap_err()
            .to_string();
        assert!(error.contains("is not a regular file"), "{error}");
        let error = settings(dir.path().join("missing"))
            .signing()
            .unwrap_err()
            .to_string();
        assert!(error.contains("cannot be read"), "{error}");
    }
}
