//! What a queue entry's files hold, and how they are read back: `queue/ID` is one JSON
//! line, the envelope, then the message; `queue/ID.state` is the attempts as JSON.
//!
//! Pure decoding with a typed [`Damage`] for whatever is not what the outbox writes, so
//! that a damaged entry can be named rather than skipped. It depends on std, serde and
//! serde_json only: the fuzz target `fuzz/fuzz_targets/outbox_entry.rs` includes this file.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What the outbox keeps with a message: where it goes and how, as sendmail was told.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The account of the configuration file to send through; `None` for the default one.
    pub account: Option<String>,
    /// The envelope sender; `Some("")` for the null sender.
    pub sender: Option<String>,
    pub recipients: Vec<String>,
    /// Also send to the message's To, Cc and Bcc (sendmail -t).
    pub recipients_from_headers: bool,
    /// The domain given to bare names such as `root`.
    pub qualify_domain: Option<String>,
    /// DSN requests as sendmail's -N, -R and -V give them.
    pub dsn_notify: Option<String>,
    pub dsn_ret: Option<String>,
    pub dsn_envid: Option<String>,
    pub keep_raw_header: bool,
    /// REQUIRETLS (RFC 8689), as `sendbox send --queue --require-tls` asks.
    #[serde(default)]
    pub require_tls: bool,
    /// When the outbox accepted it, in seconds since the Unix epoch.
    pub accepted_at: u64,
}

impl Envelope {
    /// The recipients, `separator`-joined, with `(header)` standing for those `-t` takes
    /// from the message's To, Cc and Bcc.
    pub fn recipient_list(&self, separator: &str) -> String {
        let mut list = self.recipients.clone();
        if self.recipients_from_headers {
            list.push("(header)".to_owned());
        }
        list.join(separator)
    }
}

/// The delivery attempts of a message so far.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct Attempts {
    pub count: u32,
    /// When the last one ended, and when the next is due (seconds since the epoch).
    pub last_at: u64,
    pub next_at: u64,
    /// What went wrong the last time, as the user sees it (never a secret).
    pub last_error: Option<String>,
}

/// A queued file read back: its envelope, and the message after the envelope line.
#[derive(Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    pub envelope: Envelope,
    pub message: &'a [u8],
}

/// What is wrong with an entry's file or its state: never what the outbox writes.
#[derive(Debug)]
pub enum Damage {
    /// Nothing in the file, not even the envelope line.
    Empty,
    /// No newline: the file was cut inside its envelope line.
    NoEnvelopeLine,
    /// The envelope line is not JSON.
    EnvelopeNotJson(serde_json::Error),
    /// The envelope line is JSON, but not an envelope (a field missing or of a wrong type).
    NotAnEnvelope(serde_json::Error),
    /// Nothing in the state file.
    EmptyState,
    /// The state file is not JSON.
    StateNotJson(serde_json::Error),
    /// The state file is JSON, but not attempts.
    NotAState(serde_json::Error),
    /// The message is not as long as the envelope line says: cut, or added to.
    MessageLength { recorded: u64, found: u64 },
    /// No newline in the first [`MAX_ENVELOPE_LINE`] bytes.
    EnvelopeLineTooLong,
    /// Not a regular file (a FIFO, a directory, a symbolic link...), which is not read.
    NotAFile(&'static str),
    /// The state is not a regular file, or cannot be read.
    StateUnusable(String),
    /// Larger than the outbox ever writes: not read.
    TooBig(u64),
}

/// The largest message the outbox takes (Postfix's default limit is 10 MB): a bound on
/// what reading one costs, whatever was put in its place.
pub const MAX_MESSAGE: usize = 256 * 1024 * 1024;

/// The longest envelope line read: room for thousands of recipients, and a bound on what
/// reading the head of a huge or endless file costs.
pub const MAX_ENVELOPE_LINE: usize = 1024 * 1024;

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Damage::Empty => write!(f, "empty file"),
            Damage::NoEnvelopeLine => {
                write!(f, "no envelope line (file ends before the first newline)")
            }
            Damage::EnvelopeNotJson(e) => write!(f, "envelope line is not valid JSON ({e})"),
            Damage::NotAnEnvelope(e) => write!(f, "envelope line is not an envelope ({e})"),
            Damage::EmptyState => write!(f, "state file is empty"),
            Damage::StateNotJson(e) => write!(f, "state file is not valid JSON ({e})"),
            Damage::NotAState(e) => write!(f, "state file is not a record of attempts ({e})"),
            Damage::EnvelopeLineTooLong => write!(
                f,
                "no envelope line (no newline in the first {} KiB)",
                MAX_ENVELOPE_LINE / 1024
            ),
            Damage::NotAFile(what) => write!(f, "not a regular file but {what}"),
            Damage::StateUnusable(why) => write!(f, "state file {why}"),
            Damage::TooBig(size) => write!(
                f,
                "{size} bytes, more than the outbox ever writes ({} MiB and its envelope)",
                MAX_MESSAGE / (1024 * 1024)
            ),
            Damage::MessageLength { recorded, found } => write!(
                f,
                "the message is {found} bytes, but {recorded} were written (cut or added to)"
            ),
        }
    }
}

impl std::error::Error for Damage {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Damage::EnvelopeNotJson(e)
            | Damage::NotAnEnvelope(e)
            | Damage::StateNotJson(e)
            | Damage::NotAState(e) => Some(e),
            Damage::Empty
            | Damage::NoEnvelopeLine
            | Damage::EmptyState
            | Damage::MessageLength { .. }
            | Damage::EnvelopeLineTooLong
            | Damage::NotAFile(_)
            | Damage::StateUnusable(_)
            | Damage::TooBig(_) => None,
        }
    }
}

/// Whether serde_json failed on the syntax (not JSON) rather than on the shape.
fn is_syntax(e: &serde_json::Error) -> bool {
    !matches!(e.classify(), serde_json::error::Category::Data)
}

/// The envelope line as written: the envelope and the length of the message after it,
/// so that a file cut inside the message is found. Entries written before the length was
/// recorded have none, and are taken whole.
#[derive(Serialize)]
struct LineOut<'a> {
    #[serde(flatten)]
    envelope: &'a Envelope,
    message_length: u64,
}

#[derive(Deserialize)]
struct LineIn {
    #[serde(flatten)]
    envelope: Envelope,
    #[serde(default)]
    message_length: Option<u64>,
}

/// A queued file: the envelope line, then the message.
pub fn encode(envelope: &Envelope, message: &[u8]) -> serde_json::Result<Vec<u8>> {
    let mut bytes = encode_line(envelope, message.len())?;
    bytes.extend_from_slice(message);
    Ok(bytes)
}

/// The envelope line of a queued file whose message is `message_length` bytes, its
/// newline included, so that the message can be written after it without a copy.
pub fn encode_line(envelope: &Envelope, message_length: usize) -> serde_json::Result<Vec<u8>> {
    let line = LineOut {
        envelope,
        message_length: message_length as u64,
    };
    // Compact JSON escapes every newline inside a string: the line ends at the first one.
    let mut bytes = serde_json::to_vec(&line)?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Reads a whole queued file back, and checks that its message is all there.
pub fn decode(bytes: &[u8]) -> Result<Entry<'_>, Damage> {
    let (line, message) = split(bytes)?;
    let envelope = checked_line(line, message.len() as u64)?;
    Ok(Entry { envelope, message })
}

/// Reads the envelope of a queued file from its first line alone, and checks the
/// message's length against `file_length` without reading the message.
pub fn decode_head(head: &[u8], file_length: u64) -> Result<Envelope, Damage> {
    let (line, _) = split(head)?;
    checked_line(line, file_length.saturating_sub(line.len() as u64 + 1))
}

/// The envelope of `line`, if the message after it is as long as the line says.
fn checked_line(line: &[u8], found: u64) -> Result<Envelope, Damage> {
    let LineIn {
        envelope,
        message_length,
    } = parse_line(line)?;
    match message_length {
        Some(recorded) if recorded != found => Err(Damage::MessageLength { recorded, found }),
        _ => Ok(envelope),
    }
}

/// The envelope line without its newline, and what follows it.
fn split(bytes: &[u8]) -> Result<(&[u8], &[u8]), Damage> {
    if bytes.is_empty() {
        return Err(Damage::Empty);
    }
    let head = &bytes[..bytes.len().min(MAX_ENVELOPE_LINE)];
    match head.iter().position(|&b| b == b'\n') {
        Some(end) => Ok((&bytes[..end], &bytes[end + 1..])),
        None if head.len() == MAX_ENVELOPE_LINE => Err(Damage::EnvelopeLineTooLong),
        None => Err(Damage::NoEnvelopeLine),
    }
}

fn parse_line(line: &[u8]) -> Result<LineIn, Damage> {
    serde_json::from_slice(line).map_err(|e| {
        if is_syntax(&e) {
            Damage::EnvelopeNotJson(e)
        } else {
            Damage::NotAnEnvelope(e)
        }
    })
}

/// A state file.
pub fn encode_state(attempts: &Attempts) -> serde_json::Result<Vec<u8>> {
    serde_json::to_vec(attempts)
}

/// Reads a state file back.
pub fn decode_state(bytes: &[u8]) -> Result<Attempts, Damage> {
    if bytes.is_empty() {
        return Err(Damage::EmptyState);
    }
    serde_json::from_slice(bytes).map_err(|e| {
        if is_syntax(&e) {
            Damage::StateNotJson(e)
        } else {
            Damage::NotAState(e)
        }
    })
}

/// The fuzz target's oracle: decoding never panics, and whatever decodes is encoded
/// again into a file that decodes to the same envelope and message (not to the same
/// bytes: JSON allows other spacing, escapes and field orders, and unknown fields).
#[cfg(any(test, fuzzing))]
pub fn check(input: &[u8]) {
    if let Ok(entry) = decode(input) {
        let line = input.len() - entry.message.len();
        assert_eq!(input[line - 1], b'\n', "the message starts after a newline");
        assert!(
            !input[..line - 1].contains(&b'\n'),
            "the message starts after the first newline"
        );
        let again = encode(&entry.envelope, entry.message).expect("an envelope is JSON");
        assert_eq!(decode(&again).expect("what was encoded decodes"), entry);
    }
    if let Ok(attempts) = decode_state(input) {
        let again = encode_state(&attempts).expect("attempts are JSON");
        assert_eq!(
            decode_state(&again).expect("what was encoded decodes"),
            attempts
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn envelope() -> Envelope {
        Envelope {
            account: Some("work".into()),
            sender: Some("alice@example.org".into()),
            recipients: vec!["bob@example.org".into(), "line\nbreak\u{1b}@x".into()],
            recipients_from_headers: true,
            qualify_domain: None,
            dsn_notify: Some("failure".into()),
            dsn_ret: None,
            dsn_envid: None,
            keep_raw_header: false,
            require_tls: true,
            accepted_at: 1_796_414_928,
        }
    }

    #[test]
    fn an_encoded_entry_decodes_whole() {
        let message = b"Subject: x\r\n\r\n{\"not\": \"an envelope\"}\n\r\n";
        let bytes = encode(&envelope(), message).unwrap();
        let entry = decode(&bytes).unwrap();
        assert_eq!(entry.envelope, envelope());
        assert_eq!(entry.message, message);
        let attempts = Attempts {
            count: 2,
            last_at: 1,
            next_at: 2,
            last_error: Some("421 \"busy\"\n".into()),
        };
        assert_eq!(
            decode_state(&encode_state(&attempts).unwrap()).unwrap(),
            attempts
        );
    }

    #[test]
    fn an_entry_written_before_lengths_were_recorded_is_taken_whole() {
        let mut bytes = serde_json::to_vec(&envelope()).unwrap();
        bytes.extend_from_slice(b"\nSubject: old\r\n\r\nbody\r\n");
        let entry = decode(&bytes).unwrap();
        assert_eq!(entry.envelope, envelope());
        assert_eq!(entry.message, b"Subject: old\r\n\r\nbody\r\n");
    }

    #[test]
    fn each_damage_says_what_is_wrong() {
        let bytes = encode(&envelope(), b"m").unwrap();
        let said = |result: Result<Entry, Damage>| result.unwrap_err().to_string();
        assert_eq!(said(decode(b"")), "empty file");
        assert_eq!(
            said(decode(&bytes[..20])),
            "no envelope line (file ends before the first newline)"
        );
        assert!(
            said(decode(b"\x00garbage\nmessage")).starts_with("envelope line is not valid JSON ("),
            "{}",
            said(decode(b"\x00garbage\n"))
        );
        assert_eq!(
            said(decode(&bytes[..bytes.len() - 1])),
            "the message is 0 bytes, but 1 were written (cut or added to)"
        );
        assert!(
            said(decode(b"{\"account\": null}\n")).contains("missing field"),
            "{}",
            said(decode(b"{\"account\": null}\n"))
        );
        assert_eq!(
            decode_state(b"").unwrap_err().to_string(),
            "state file is empty"
        );
        assert!(
            decode_state(b"{\"count\":")
                .unwrap_err()
                .to_string()
                .starts_with("state file is not valid JSON (")
        );
        assert!(
            decode_state(b"{\"count\": -1}")
                .unwrap_err()
                .to_string()
                .starts_with("state file is not a record of attempts (")
        );
    }

    #[test]
    fn saved_fuzz_inputs_still_pass() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/regressions/outbox_entry");
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let mut replayed = 0;
        for entry in entries {
            check(&std::fs::read(entry.unwrap().path()).unwrap());
            replayed += 1;
        }
        assert!(replayed > 0, "{} holds no input", dir.display());
    }

    const MESSAGE: &[u8] = b"Subject: x\r\n\r\nbody\r\n";

    /// A valid entry, then cut at `cut` (a fraction of its length) and with `flips` bytes
    /// overwritten.
    fn mutated(cut: f64, flips: &[(f64, u8)]) -> Vec<u8> {
        let mut bytes = encode(&envelope(), MESSAGE).unwrap();
        bytes.truncate((bytes.len() as f64 * cut) as usize);
        for &(at, byte) in flips {
            if !bytes.is_empty() {
                let at = ((bytes.len() - 1) as f64 * at) as usize;
                bytes[at] = byte;
            }
        }
        bytes
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_decode_or_say_what_is_wrong(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            check(&bytes);
        }

        #[test]
        fn cut_or_changed_entries_decode_or_say_what_is_wrong(
            cut in 0.0..=1.0f64,
            flips in proptest::collection::vec((0.0..=1.0f64, any::<u8>()), 0..4),
        ) {
            let bytes = mutated(cut, &flips);
            check(&bytes);
            if flips.is_empty() {
                // Cut only: damaged anywhere, the envelope line or the message, and whole
                // only when nothing was cut, whether the message is read or not.
                let whole = mutated(1.0, &[]);
                let line = encode_line(&envelope(), MESSAGE.len()).unwrap().len();
                prop_assert_eq!(decode(&bytes).is_ok(), bytes.len() == whole.len());
                let head = &bytes[..bytes.len().min(line)];
                prop_assert_eq!(decode_head(head, bytes.len() as u64).is_ok(), bytes.len() == whole.len());
            }
        }
    }
}
