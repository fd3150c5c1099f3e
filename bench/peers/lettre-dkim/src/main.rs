//! The DKIM workload's peer: lettre 0.11 signing with its `dkim` feature, what a Rust
//! program would use instead of sendbox. It builds the message of `--raw` (From, To,
//! Subject, Content-Type and body; lettre adds Date, Message-ID, MIME-Version and
//! Content-Transfer-Encoding, as sendbox adds Date and Message-ID), signs it relaxed/relaxed
//! with the key of `--key` (a key file `sendbox dkim keygen` wrote), sends it, and does so
//! `--count` times over one plain SMTP session, each message built and signed anew. It
//! prints the same summary line as `sendbox batch` and exits 0 only if every message was
//! accepted.
//!
//! Outside the workspace, with its own lock file: see Cargo.toml.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use lettre::message::dkim::{
    DkimCanonicalization, DkimCanonicalizationType, DkimConfig, DkimSigningAlgorithm,
    DkimSigningKey,
};
use lettre::message::header::{ContentType, HeaderName};
use lettre::transport::smtp::PoolConfig;
use lettre::{Message, SmtpTransport, Transport};

const USAGE: &str = "usage: lettre-dkim-peer --server ADDR --from A --to B --raw FILE \
                     --key FILE --selector S --domain D --count N";

struct Args {
    server: SocketAddr,
    from: String,
    to: String,
    raw: PathBuf,
    key: PathBuf,
    selector: String,
    domain: String,
    count: u32,
}

fn main() -> ExitCode {
    match args().and_then(send) {
        Ok(()) => ExitCode::SUCCESS,
        Err(reason) => {
            eprintln!("lettre-dkim-peer: {reason}");
            ExitCode::FAILURE
        }
    }
}

/// `--name value` pairs, each required once.
fn args() -> Result<Args, String> {
    let mut pairs = std::collections::HashMap::new();
    let mut given = std::env::args().skip(1);
    while let Some(name) = given.next() {
        let value = given
            .next()
            .ok_or_else(|| format!("{name} without a value; {USAGE}"))?;
        pairs.insert(name, value);
    }
    let mut take = |name: &str| {
        pairs
            .remove(name)
            .ok_or_else(|| format!("{name} missing; {USAGE}"))
    };
    let args = Args {
        server: take("--server")?
            .parse()
            .map_err(|e| format!("--server: {e}"))?,
        from: take("--from")?,
        to: take("--to")?,
        raw: take("--raw")?.into(),
        key: take("--key")?.into(),
        selector: take("--selector")?,
        domain: take("--domain")?,
        count: take("--count")?
            .parse()
            .map_err(|e| format!("--count: {e}"))?,
    };
    match pairs.keys().next() {
        Some(extra) => Err(format!("{extra}: unknown option; {USAGE}")),
        None => Ok(args),
    }
}

fn send(args: Args) -> Result<(), String> {
    if !args.server.ip().is_loopback() {
        return Err(format!(
            "{}: a benchmark peer sends to loopback only",
            args.server
        ));
    }
    let raw =
        std::fs::read_to_string(&args.raw).map_err(|e| format!("{}: {e}", args.raw.display()))?;
    let (subject, content_type, body) = parts(&raw)
        .ok_or_else(|| format!("{}: no Subject, Content-Type and body", args.raw.display()))?;
    let content_type =
        ContentType::parse(content_type).map_err(|e| format!("Content-Type: {e}"))?;
    let key = signing_key(&args.key)?;
    // The fields sendbox signs in this message, relaxed/relaxed as sendbox signs them.
    let headers = [
        "From",
        "To",
        "Subject",
        "Date",
        "Message-ID",
        "MIME-Version",
        "Content-Type",
        "Content-Transfer-Encoding",
    ]
    .into_iter()
    .map(HeaderName::new_from_ascii_str)
    .collect();
    let relaxed = DkimCanonicalization {
        header: DkimCanonicalizationType::Relaxed,
        body: DkimCanonicalizationType::Relaxed,
    };
    let config = DkimConfig::new(args.selector, args.domain, key, headers, relaxed);
    let from: lettre::message::Mailbox = args.from.parse().map_err(|e| format!("--from: {e}"))?;
    let to: lettre::message::Mailbox = args.to.parse().map_err(|e| format!("--to: {e}"))?;
    // One connection, kept open from one message to the next.
    let transport = SmtpTransport::builder_dangerous(args.server.ip().to_string())
        .port(args.server.port())
        .pool_config(PoolConfig::new().max_size(1))
        .build();

    let start = Instant::now();
    let (mut sent, mut first_error) = (0u32, None);
    for _ in 0..args.count {
        let mut message = Message::builder()
            .from(from.clone())
            .to(to.clone())
            .subject(subject)
            .header(content_type.clone())
            .body(body.to_owned())
            .map_err(|e| format!("the message: {e}"))?;
        message.sign(&config);
        match transport.send(&message) {
            Ok(_) => sent += 1,
            Err(e) => {
                first_error.get_or_insert(e.to_string());
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let failed = args.count - sent;
    println!(
        "sent {sent}, failed {failed} in {elapsed:.3} s ({:.1} messages/s)",
        f64::from(sent) / elapsed
    );
    match first_error {
        Some(error) => Err(format!(
            "{failed} of {} failed, the first: {error}",
            args.count
        )),
        None => Ok(()),
    }
}

/// The Subject, the Content-Type and the body of a message with unfolded fields.
fn parts(raw: &str) -> Option<(&str, &str, &str)> {
    let (header, body) = raw
        .split_once("\r\n\r\n")
        .or_else(|| raw.split_once("\n\n"))?;
    let field = |name: &str| {
        header.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    };
    Some((field("Subject")?, field("Content-Type")?, body))
}

/// A PKCS#8 key file as `sendbox dkim keygen` writes it, in the form lettre takes.
fn signing_key(path: &std::path::Path) -> Result<DkimSigningKey, String> {
    use rsa::pkcs1::EncodeRsaPrivateKey as _;
    use rsa::pkcs8::DecodePrivateKey as _;
    let pem = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if let Ok(key) = rsa::RsaPrivateKey::from_pkcs8_pem(&pem) {
        let pkcs1 = key
            .to_pkcs1_pem(rsa::pkcs1::LineEnding::LF)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        return DkimSigningKey::new(&pkcs1, DkimSigningAlgorithm::Rsa)
            .map_err(|e| format!("{}: {e}", path.display()));
    }
    // Ed25519 in PKCS#8 version 1: 16 bytes of fields, then the 32-byte seed.
    let base64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = BASE64
        .decode(base64)
        .map_err(|e| format!("{}: not PEM ({e})", path.display()))?;
    let seed = match der.len() {
        48 => &der[16..],
        _ => {
            return Err(format!(
                "{}: neither RSA nor Ed25519 PKCS#8 v1",
                path.display()
            ));
        }
    };
    DkimSigningKey::new(&BASE64.encode(seed), DkimSigningAlgorithm::Ed25519)
        .map_err(|e| format!("{}: {e}", path.display()))
}
