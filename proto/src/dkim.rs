//! DKIM signatures (RFC 6376) with `rsa-sha256` and `ed25519-sha256` (RFC 8463), free of
//! I/O and of private keys.
//!
//! Signing takes two steps, so that the key never comes here. [`prepare`] reads the
//! message, hashes its body, picks and canonicalises the header fields, and writes the
//! DKIM-Signature field with an empty `b=`. The caller signs
//! [`Prepared::signing_input`] with its key (ring, in the component), and
//! [`Prepared::finish`] writes the field with the signature, to go on top of the message.
//!
//! Line ends are read as [`crate::data::Encoder`] writes them: CRLF, a bare CR and a bare
//! LF each end a line, and a last line without one is ended. So the message may be given
//! as it is before encoding (but not dot-stuffed), and what is signed is what the server
//! receives.
//!
//! Never written: `l=` (a body length lets anyone append to the message) and `q=` (its
//! only value is the default).

use std::collections::{HashMap, HashSet};
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::{Digest, Sha256};

use crate::error::Phase;

/// The signing algorithm, which the key must match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (RFC 6376 section 3.3.1).
    RsaSha256,
    /// Ed25519 over the SHA-256 digest of the data (RFC 8463 section 3).
    Ed25519Sha256,
}

impl Algorithm {
    /// Its name in `a=`.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::RsaSha256 => "rsa-sha256",
            Algorithm::Ed25519Sha256 => "ed25519-sha256",
        }
    }
}

/// How the header or the body is canonicalised (RFC 6376 section 3.4).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Canonicalization {
    /// Bytes as they are; only trailing empty lines of the body are dropped.
    Simple,
    /// Whitespace runs and letter case of field names do not count: survives most
    /// relays that refold or re-space.
    #[default]
    Relaxed,
}

impl Canonicalization {
    fn name(self) -> &'static str {
        match self {
            Canonicalization::Simple => "simple",
            Canonicalization::Relaxed => "relaxed",
        }
    }
}

/// The header fields signed by default, each once for every instance the message has:
/// those a reader sees or acts on (RFC 6376 section 5.4.1), and the mailing list ones.
pub const DEFAULT_HEADERS: [&str; 20] = [
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "Reply-To",
    "In-Reply-To",
    "References",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "List-Post",
    "List-Help",
    "List-Subscribe",
    "List-Owner",
    "List-Archive",
];

/// The signer's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// `d=`: the signing domain, whose DNS publishes the key. A-labels only.
    pub domain: String,
    /// `s=`: the selector; the key is at `<selector>._domainkey.<domain>`.
    pub selector: String,
    /// `a=`: must match the caller's key.
    pub algorithm: Algorithm,
    /// The header's canonicalisation (relaxed by default).
    pub header_canonicalization: Canonicalization,
    /// The body's canonicalisation (relaxed by default).
    pub body_canonicalization: Canonicalization,
    /// Field names to sign, each once for every instance present; must include From.
    /// Case does not matter; a name given twice counts once.
    pub headers: Vec<String>,
    /// Field names listed once more than they occur, so that an instance added later
    /// breaks the signature (RFC 6376 section 8.15). Must include From.
    pub oversign: Vec<String>,
    /// Seconds the signature stays valid: `x=` is `t=` plus this.
    pub expiry: Option<u64>,
    /// `i=`: the identity, `[local-part]@domain` with the domain d= or under it.
    pub identity: Option<String>,
}

impl Request {
    /// A request with the defaults: relaxed/relaxed, [`DEFAULT_HEADERS`], From over-signed,
    /// no expiry and no identity.
    pub fn new(
        domain: impl Into<String>,
        selector: impl Into<String>,
        algorithm: Algorithm,
    ) -> Self {
        Request {
            domain: domain.into(),
            selector: selector.into(),
            algorithm,
            header_canonicalization: Canonicalization::Relaxed,
            body_canonicalization: Canonicalization::Relaxed,
            headers: DEFAULT_HEADERS.iter().map(|&n| n.to_owned()).collect(),
            oversign: vec!["From".to_owned()],
            expiry: None,
            identity: None,
        }
    }

    /// Signs the fields `names` instead of [`DEFAULT_HEADERS`], and From whatever the list
    /// says: a signature without it verifies nowhere (RFC 6376 section 5.4), so From is
    /// put first when the list lacks it.
    pub fn set_headers(&mut self, names: Vec<String>) {
        self.headers = names;
        if !self.headers.iter().any(|h| h.eq_ignore_ascii_case("from")) {
            self.headers.insert(0, "From".to_owned());
        }
    }

    /// Refuses settings that would make a signature nobody can verify, or a field that
    /// breaks the header: each error names the value.
    pub fn check(&self) -> Result<(), Error> {
        check_dns_name(&self.selector, 1).map_err(|reason| Error::Selector {
            value: shown(&self.selector),
            reason,
        })?;
        check_dns_name(&self.domain, 2).map_err(|reason| Error::Domain {
            value: shown(&self.domain),
            reason,
        })?;
        for name in self.headers.iter().chain(&self.oversign) {
            check_field_name(name).map_err(|reason| Error::HeaderName {
                value: shown(name),
                reason,
            })?;
        }
        let has_from = |names: &[String]| names.iter().any(|n| n.eq_ignore_ascii_case("from"));
        if !has_from(&self.headers) {
            return Err(Error::FromNotSigned);
        }
        if !has_from(&self.oversign) {
            return Err(Error::FromNotOversigned);
        }
        if self.expiry == Some(0) {
            return Err(Error::ZeroExpiry);
        }
        if let Some(identity) = &self.identity {
            check_identity(identity, &self.domain).map_err(|reason| Error::Identity {
                value: shown(identity),
                reason,
            })?;
        }
        Ok(())
    }
}

/// Why a request or a message cannot be signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// The selector is not a DNS name.
    Selector {
        /// The selector, quoted and cut short.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The domain is not a DNS name of two labels or more.
    Domain {
        /// The domain, quoted and cut short.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The identity is malformed or outside the domain.
    Identity {
        /// The identity, quoted and cut short.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A name in the request's header lists cannot be a field name in `h=`.
    HeaderName {
        /// The name, quoted and cut short.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The header list lacks From, which DKIM must sign.
    FromNotSigned,
    /// The over-signed list lacks From.
    FromNotOversigned,
    /// An expiry of zero seconds.
    ZeroExpiry,
    /// `t=` or `x=` would have more than the 12 digits RFC 6376 allows.
    TimeOutOfRange,
    /// A header line that is neither a field nor the continuation of one.
    NotAField {
        /// Its number, from 1.
        line: usize,
    },
    /// A field whose name is empty or has bytes other than printable ASCII.
    FieldName {
        /// Its first line's number, from 1.
        line: usize,
    },
    /// The message has no From field, which DKIM must sign.
    NoFrom,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Selector { value, reason } => {
                write!(f, "the DKIM selector {value} cannot be used: {reason}")
            }
            Error::Domain { value, reason } => {
                write!(f, "the DKIM domain (d=) {value} cannot be used: {reason}")
            }
            Error::Identity { value, reason } => {
                write!(f, "the DKIM identity (i=) {value} cannot be used: {reason}")
            }
            Error::HeaderName { value, reason } => {
                write!(f, "{value} cannot be a signed header field name: {reason}")
            }
            Error::FromNotSigned => f.write_str(
                "the header fields to sign must include From: DKIM requires it (RFC 6376 section 5.4)",
            ),
            Error::FromNotOversigned => f.write_str(
                "the over-signed header fields must include From, so that a From added later breaks the signature",
            ),
            Error::ZeroExpiry => {
                f.write_str("a DKIM expiry of 0 seconds: the signature would expire as it is made")
            }
            Error::TimeOutOfRange => {
                f.write_str("the signing time or the expiry time is past year 33658 (t= and x= have at most 12 digits)")
            }
            Error::NotAField { line } => write!(
                f,
                "header line {line} is neither a field (\"Name: value\") nor the continuation of one, so the message cannot be signed"
            ),
            Error::FieldName { line } => write!(
                f,
                "header line {line}: the field name is empty or has a byte that is not printable ASCII, so the message cannot be signed"
            ),
            Error::NoFrom => f.write_str(
                "the message has no From field, which DKIM must sign (RFC 6376 section 5.4)",
            ),
        }
    }
}

impl std::error::Error for Error {}

/// Every DKIM error is the caller's input, refused before anything is sent.
impl From<Error> for crate::error::Error {
    fn from(error: Error) -> Self {
        crate::error::Error::invalid_input(Phase::Data, error.to_string())
    }
}

/// A value for an error message: quoted with its control characters escaped, and cut
/// short, so that a hostile value can neither break a log line nor flood it.
fn shown(value: &str) -> String {
    const MAX: usize = 80;
    match value.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{:?}...", &value[..cut]),
        None => format!("{value:?}"),
    }
}

/// RFC 6376 section 3.5: `sub-domain *("." sub-domain)`, letters, digits and hyphens,
/// no hyphen at either end of a label; DNS limits of 63 per label and 253 in all.
fn check_dns_name(name: &str, min_labels: usize) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("it is empty");
    }
    if !name.is_ascii() {
        return Err("it is not ASCII: give an internationalised name as its A-label (xn--...)");
    }
    if name.len() > 253 {
        return Err("it is longer than the 253 characters DNS allows");
    }
    let mut labels = 0;
    for label in name.split('.') {
        labels += 1;
        if label.is_empty() {
            return Err("it has an empty label (two dots, or a dot at either end)");
        }
        if label.len() > 63 {
            return Err("a label is longer than the 63 characters DNS allows");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err("only letters, digits, hyphens and dots may appear");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a label starts or ends with a hyphen");
        }
    }
    if labels < min_labels {
        return Err("a signing domain has two labels or more, such as example.org");
    }
    Ok(())
}

/// RFC 5322 `field-name` (printable ASCII but the colon), and no `;`, which would end
/// the `h=` tag; short enough for a folded line of `h=` to hold.
fn check_field_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("it is empty");
    }
    if name.len() > MAX_FIELD_NAME {
        return Err("it is longer than the 74 characters a folded line of h= can hold");
    }
    if !name
        .bytes()
        .all(|b| (33..=126).contains(&b) && b != b':' && b != b';')
    {
        return Err("only printable ASCII other than ':' and ';' may appear, and no space");
    }
    Ok(())
}

/// `[local-part]@domain` (RFC 6376 section 3.5, `i=`), with the domain d= or a
/// subdomain of it. The local part is kept to dot-atom characters without `=`, which
/// would start a quoted-printable escape.
fn check_identity(identity: &str, domain: &str) -> Result<(), &'static str> {
    let Some((local, identity_domain)) = identity.rsplit_once('@') else {
        return Err("it has no @: write it as user@domain, or @domain");
    };
    let atext = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-/?^_`{|}~.".contains(&b);
    if local.len() > 64 {
        return Err("its local part is longer than the 64 characters RFC 5321 allows");
    }
    if !local.bytes().all(atext) {
        return Err(
            "its local part may only have letters, digits and !#$%&'*+-/?^_`{|}~. (no spaces, quotes, '=' or ';')",
        );
    }
    check_dns_name(identity_domain, 1)?;
    let inside = identity_domain.eq_ignore_ascii_case(domain)
        || identity_domain.len() > domain.len()
            && identity_domain.as_bytes()[identity_domain.len() - domain.len() - 1] == b'.'
            && identity_domain[identity_domain.len() - domain.len()..].eq_ignore_ascii_case(domain);
    if !inside {
        return Err("its domain is neither d= nor a subdomain of it (RFC 6376 section 3.5)");
    }
    Ok(())
}

/// The signature, ready for the caller's key.
#[derive(Clone, Debug)]
pub struct Prepared {
    algorithm: Algorithm,
    /// `DKIM-Signature: ... b=`, folded, without a final CRLF.
    field: String,
    /// The columns taken on the field's last line.
    last_line: usize,
    /// What the algorithm signs (RFC 6376 section 3.7).
    signed: Vec<u8>,
    /// For Ed25519, the digest of `signed`, which is what PureEdDSA signs.
    digest: Option<[u8; 32]>,
}

impl Prepared {
    /// The algorithm, which the caller's key must match.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The DKIM-Signature field as signed: folded, ending in an empty `b=`, no CRLF.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// The bytes the algorithm signs: the selected fields canonicalised, then the
    /// DKIM-Signature field canonicalised without its final CRLF (RFC 6376 section 3.7).
    pub fn signed_data(&self) -> &[u8] {
        &self.signed
    }

    /// Exactly what to pass to the sign function: for `rsa-sha256`, [`Self::signed_data`]
    /// to RSASSA-PKCS1-v1_5 with SHA-256 (which hashes it); for `ed25519-sha256`, the
    /// 32-byte SHA-256 digest of it to PureEdDSA (RFC 8463 section 3).
    pub fn signing_input(&self) -> &[u8] {
        match &self.digest {
            Some(digest) => digest,
            None => &self.signed,
        }
    }

    /// The complete `DKIM-Signature: ...\r\n` field with `signature` in `b=`, for the top
    /// of the message. The base64 is folded at 78 columns; verifiers delete `b=`'s value
    /// and the whitespace in it, so the fold changes nothing signed.
    pub fn finish(&self, signature: &[u8]) -> Vec<u8> {
        let encoded = BASE64.encode(signature);
        let mut out = Vec::with_capacity(self.field.len() + encoded.len() * 80 / 77 + 4);
        out.extend_from_slice(self.field.as_bytes());
        let mut rest = encoded.as_bytes();
        let mut room = WIDTH.saturating_sub(self.last_line);
        while !rest.is_empty() {
            if room == 0 {
                out.extend_from_slice(b"\r\n ");
                room = WIDTH - 1;
            }
            let piece = rest.len().min(room);
            out.extend_from_slice(&rest[..piece]);
            rest = &rest[piece..];
            room -= piece;
        }
        out.extend_from_slice(b"\r\n");
        out
    }
}

/// RFC 5322 section 2.1.1: lines SHOULD have at most 78 characters.
const WIDTH: usize = 78;
/// A continuation line holds " h=", the name and a colon in [`WIDTH`].
const MAX_FIELD_NAME: usize = WIDTH - 4;
/// RFC 6376 section 3.5: `t=` and `x=` have at most 12 digits.
const MAX_TIME: u64 = 999_999_999_999;

/// Prepares the signature of `message`: the whole message as it will be sent, before
/// dot-stuffing (header, empty line, body), signed at `now_unix_secs`. The field that
/// [`Prepared::finish`] writes goes on top of exactly this message.
///
/// Lines of the field have at most 78 columns, but for a `d=`, `s=` or `i=` longer than
/// a line can hold, which stays whole on a line of its own (under 330 columns).
pub fn prepare(request: &Request, message: &[u8], now_unix_secs: u64) -> Result<Prepared, Error> {
    request.check()?;
    if now_unix_secs > MAX_TIME {
        return Err(Error::TimeOutOfRange);
    }
    let expires = match request.expiry {
        Some(expiry) => Some(
            now_unix_secs
                .checked_add(expiry)
                .filter(|&x| x <= MAX_TIME)
                .ok_or(Error::TimeOutOfRange)?,
        ),
        None => None,
    };
    let mut header = Header::parse(message)?;
    let h = header.names_to_sign(&request.headers, &request.oversign);
    if header.count("from") == 0 {
        return Err(Error::NoFrom);
    }

    let mut hasher = Sha256::new();
    canonical_body(
        &message[header.body_start..],
        request.body_canonicalization,
        &mut |bytes| hasher.update(bytes),
    );
    let body_hash = BASE64.encode(hasher.finalize());

    let mut folder = Folder::new("DKIM-Signature:");
    folder.tag(&["v=1;"]);
    folder.tag(&[&format!("a={};", request.algorithm.name())]);
    folder.tag(&[&format!(
        "c={}/{};",
        request.header_canonicalization.name(),
        request.body_canonicalization.name()
    )]);
    folder.tag(&[&format!("d={};", request.domain)]);
    folder.tag(&[&format!("s={};", request.selector)]);
    folder.tag(&[&format!("t={now_unix_secs};")]);
    if let Some(expires) = expires {
        folder.tag(&[&format!("x={expires};")]);
    }
    if let Some(identity) = &request.identity {
        folder.tag(&[&format!("i={identity};")]);
    }
    // h= folds after each colon, where RFC 6376 allows FWS.
    let mut atoms: Vec<String> = h.iter().map(|name| format!("{name}:")).collect();
    if let Some(first) = atoms.first_mut() {
        first.insert_str(0, "h=");
    }
    if let Some(last) = atoms.last_mut() {
        last.pop();
        last.push(';');
    }
    let atoms: Vec<&str> = atoms.iter().map(String::as_str).collect();
    folder.tag(&atoms);
    folder.tag(&[&format!("bh={body_hash};")]);
    // b= starts a line of its own, so that the signature's first piece has room.
    folder.new_line();
    folder.push("b=");
    let Folder { out: field, line } = folder;
    Ok(seal(&header, &h, request, field, line))
}

/// The signed data and the signing input for the DKIM-Signature `field` (folded, ending
/// in an empty `b=` on a line of `last_line` columns) over the fields `h` names.
fn seal(
    header: &Header,
    h: &[String],
    request: &Request,
    field: String,
    last_line: usize,
) -> Prepared {
    let mut signed = header.signed_fields(h, request.header_canonicalization);
    let name_len = "DKIM-Signature".len();
    canonical_field(
        field.as_bytes(),
        name_len,
        name_len,
        request.header_canonicalization,
        &mut signed,
    );
    // RFC 6376 section 3.7: the signature's own field goes in without the CRLF that
    // canonical_field ends it with.
    signed.truncate(signed.len() - 2);
    let digest = match request.algorithm {
        Algorithm::RsaSha256 => None,
        Algorithm::Ed25519Sha256 => Some(Sha256::digest(&signed).into()),
    };
    Prepared {
        algorithm: request.algorithm,
        field,
        last_line,
        signed,
        digest,
    }
}

/// Writes a header field folded at [`WIDTH`] columns, between tags or between the
/// atoms of one tag.
struct Folder {
    out: String,
    /// Columns taken on the current line.
    line: usize,
}

impl Folder {
    fn new(name: &str) -> Self {
        Folder {
            out: name.to_owned(),
            line: name.len(),
        }
    }

    fn new_line(&mut self) {
        self.out.push_str("\r\n ");
        self.line = 1;
    }

    fn push(&mut self, text: &str) {
        self.out.push_str(text);
        self.line += text.len();
    }

    /// A tag made of `atoms`, after a space or a fold; later atoms follow directly or
    /// after a fold. A single atom wider than a line stays whole: d= and s= cannot fold.
    fn tag(&mut self, atoms: &[&str]) {
        for (index, atom) in atoms.iter().enumerate() {
            let gap = usize::from(index == 0);
            if self.line + gap + atom.len() > WIDTH && self.line > 1 {
                self.new_line();
            } else if gap == 1 {
                self.push(" ");
            }
            self.push(atom);
        }
    }
}

/// A header field: byte offsets into the message.
#[derive(Clone, Copy, Debug)]
struct Field {
    start: usize,
    /// The end of the name, before any whitespace ahead of the colon.
    name_end: usize,
    colon: usize,
    /// The end of its last line, before the line end.
    end: usize,
}

/// The header of a message, read once.
struct Header<'m> {
    message: &'m [u8],
    fields: Vec<Field>,
    /// Where the body starts (the message's length when there is none).
    body_start: usize,
    /// Instances of each name asked for, lowercased, top to bottom.
    instances: HashMap<Vec<u8>, Vec<usize>>,
}

const SP: u8 = b' ';
const HTAB: u8 = b'\t';

fn is_wsp(byte: u8) -> bool {
    byte == SP || byte == HTAB
}

/// The line starting at `at`: where its text ends and where the next line starts. CRLF,
/// a bare CR and a bare LF each end a line, as in [`crate::data`].
fn line_at(bytes: &[u8], at: usize) -> (usize, usize) {
    match memchr::memchr2(b'\r', b'\n', &bytes[at..]) {
        None => (bytes.len(), bytes.len()),
        Some(offset) => {
            let end = at + offset;
            let next = if bytes[end] == b'\r' && bytes.get(end + 1) == Some(&b'\n') {
                end + 2
            } else {
                end + 1
            };
            (end, next)
        }
    }
}

impl<'m> Header<'m> {
    /// Reads the fields up to the first empty line (or the end): one pass, no copy.
    fn parse(message: &'m [u8]) -> Result<Self, Error> {
        let mut fields: Vec<Field> = Vec::new();
        let mut at = 0;
        let mut line = 0;
        let body_start = loop {
            if at >= message.len() {
                break message.len();
            }
            line += 1;
            let (end, next) = line_at(message, at);
            let text = &message[at..end];
            match text.first() {
                None => break next,
                Some(&first) if is_wsp(first) => match fields.last_mut() {
                    Some(field) => field.end = end,
                    None => return Err(Error::NotAField { line }),
                },
                Some(_) => {
                    let colon = memchr::memchr(b':', text).ok_or(Error::NotAField { line })?;
                    let name = &text[..colon];
                    let name_len =
                        name.len() - name.iter().rev().take_while(|&&b| is_wsp(b)).count();
                    if name_len == 0 || !name[..name_len].iter().all(|b| (33..=126).contains(b)) {
                        return Err(Error::FieldName { line });
                    }
                    fields.push(Field {
                        start: at,
                        name_end: at + name_len,
                        colon: at + colon,
                        end,
                    });
                }
            }
            at = next;
        };
        Ok(Header {
            message,
            fields,
            body_start,
            instances: HashMap::new(),
        })
    }

    /// Indexes the instances of `names` (lowercased), in one pass over the fields.
    fn index(&mut self, names: &[String]) {
        for name in names {
            self.instances
                .entry(name.as_bytes().to_ascii_lowercase())
                .or_default();
        }
        let mut lower = Vec::new();
        for (index, field) in self.fields.iter().enumerate() {
            lower.clear();
            lower.extend(
                self.message[field.start..field.name_end]
                    .iter()
                    .map(u8::to_ascii_lowercase),
            );
            if let Some(found) = self.instances.get_mut(&lower) {
                found.push(index);
            }
        }
    }

    /// How many instances of `lower` (an indexed name, lowercased) the header has.
    fn count(&self, lower: &str) -> usize {
        self.instances.get(lower.as_bytes()).map_or(0, Vec::len)
    }

    /// The `h=` list, lowercased: each name of `headers` once for every instance, then
    /// each name of `oversign` once more than it occurs.
    fn names_to_sign(&mut self, headers: &[String], oversign: &[String]) -> Vec<String> {
        let lower = |names: &[String]| -> Vec<String> {
            let mut seen = HashSet::new();
            names
                .iter()
                .map(|n| n.to_ascii_lowercase())
                .filter(|n| seen.insert(n.clone()))
                .collect()
        };
        let (headers, oversign) = (lower(headers), lower(oversign));
        let mut all = headers.clone();
        all.extend(oversign.iter().cloned());
        self.index(&all);
        let mut h = Vec::new();
        for name in &headers {
            h.extend(std::iter::repeat_n(name.clone(), self.count(name)));
        }
        let signed: HashSet<&String> = headers.iter().collect();
        for name in &oversign {
            let listed = if signed.contains(name) {
                0
            } else {
                self.count(name)
            };
            h.extend(std::iter::repeat_n(name.clone(), listed + 1));
        }
        h
    }

    /// The fields `h` names, canonicalised in its order: each name takes the next
    /// instance from the bottom up, and a name with none left adds nothing (RFC 6376
    /// section 5.4.2). Every name of `h` must have been indexed.
    fn signed_fields(&self, h: &[String], canonicalization: Canonicalization) -> Vec<u8> {
        let mut taken: HashMap<&str, usize> = HashMap::new();
        let mut out = Vec::new();
        for name in h {
            let Some(found) = self.instances.get(name.as_bytes()) else {
                continue;
            };
            let used = taken.entry(name.as_str()).or_default();
            if *used < found.len() {
                let field = self.fields[found[found.len() - 1 - *used]];
                *used += 1;
                canonical_field(
                    &self.message[field.start..field.end],
                    field.name_end - field.start,
                    field.colon - field.start,
                    canonicalization,
                    &mut out,
                );
            }
        }
        out
    }
}

/// Appends a field canonicalised, with a final CRLF: its name is `field[..name_len]`,
/// only whitespace comes between it and the colon at `colon`, and the value may hold
/// the line ends of its folds.
fn canonical_field(
    field: &[u8],
    name_len: usize,
    colon: usize,
    canonicalization: Canonicalization,
    out: &mut Vec<u8>,
) {
    match canonicalization {
        Canonicalization::Simple => {
            // As it is, but every line end is the CRLF it will be on the wire.
            let mut at = 0;
            while at < field.len() {
                let (end, next) = line_at(field, at);
                out.extend_from_slice(&field[at..end]);
                if next > end {
                    out.extend_from_slice(b"\r\n");
                }
                at = next;
            }
            out.extend_from_slice(b"\r\n");
        }
        Canonicalization::Relaxed => {
            // RFC 6376 section 3.4.2: lowercase name, no whitespace around the colon,
            // unfolded, whitespace runs as one SP, none at the end.
            out.extend(field[..name_len].iter().map(u8::to_ascii_lowercase));
            out.push(b':');
            let mut space = false;
            let mut started = false;
            for &byte in field.get(colon + 1..).unwrap_or_default() {
                match byte {
                    b'\r' | b'\n' => {}
                    SP | HTAB => space = started,
                    _ => {
                        if space {
                            out.push(SP);
                            space = false;
                        }
                        started = true;
                        out.push(byte);
                    }
                }
            }
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// Feeds `sink` the canonical body (RFC 6376 sections 3.4.3 and 3.4.4, with errata
/// 1384 on the empty body): lines end in CRLF; empty lines at the end are dropped; an
/// empty body is CRLF in simple and nothing in relaxed. Relaxed lines also lose their
/// trailing whitespace and have each whitespace run made one SP. One pass, one line
/// held at a time.
fn canonical_body(body: &[u8], canonicalization: Canonicalization, sink: &mut impl FnMut(&[u8])) {
    /// Empty lines are held back as a count, and written in batches once text follows.
    const CRLFS: [u8; 128] = {
        let mut crlfs = [b'\n'; 128];
        let mut at = 0;
        while at < crlfs.len() {
            crlfs[at] = b'\r';
            at += 2;
        }
        crlfs
    };
    let mut held = 0usize;
    let mut wrote = false;
    let mut relaxed = Vec::new();
    let mut at = 0;
    while at < body.len() {
        let (end, next) = line_at(body, at);
        let text = match canonicalization {
            Canonicalization::Simple => &body[at..end],
            Canonicalization::Relaxed => {
                relaxed.clear();
                let mut space = false;
                for &byte in &body[at..end] {
                    if is_wsp(byte) {
                        space = true;
                    } else {
                        if space {
                            relaxed.push(SP);
                            space = false;
                        }
                        relaxed.push(byte);
                    }
                }
                &relaxed[..]
            }
        };
        if text.is_empty() {
            held += 1;
        } else {
            while held > 0 {
                let batch = held.min(CRLFS.len() / 2);
                sink(&CRLFS[..batch * 2]);
                held -= batch;
            }
            sink(text);
            sink(b"\r\n");
            wrote = true;
        }
        at = next;
    }
    if !wrote && canonicalization == Canonicalization::Simple {
        sink(b"\r\n");
    }
}

#[cfg(test)]
#[path = "dkim_tests.rs"]
mod tests;
