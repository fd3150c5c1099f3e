//! What the server offers: the extensions of its EHLO reply, by a typed name.

use crate::reply::Reply;

/// An SMTP service extension the dialogue uses, by its EHLO keyword. A typed name, so that a
/// misspelt keyword cannot silently read as "not offered".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extension {
    /// RFC 3207.
    StartTls,
    /// RFC 4954; its parameters are the SASL mechanisms.
    Auth,
    /// RFC 1870; its parameter is the largest message accepted.
    Size,
    /// RFC 2920.
    Pipelining,
    /// RFC 6152.
    EightBitMime,
    /// RFC 6531.
    SmtpUtf8,
    /// RFC 3030 (BDAT).
    Chunking,
    /// RFC 3461.
    Dsn,
    /// RFC 8689.
    RequireTls,
}

impl Extension {
    /// The keyword in the EHLO reply.
    pub fn keyword(self) -> &'static str {
        match self {
            Extension::StartTls => "STARTTLS",
            Extension::Auth => "AUTH",
            Extension::Size => "SIZE",
            Extension::Pipelining => "PIPELINING",
            Extension::EightBitMime => "8BITMIME",
            Extension::SmtpUtf8 => "SMTPUTF8",
            Extension::Chunking => "CHUNKING",
            Extension::Dsn => "DSN",
            Extension::RequireTls => "REQUIRETLS",
        }
    }
}

/// Extensions the server announced in its EHLO reply.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Upper-cased keyword and its parameters.
    entries: Vec<(String, String)>,
}

impl Capabilities {
    pub(super) fn from_ehlo(reply: &Reply) -> Self {
        let entries = reply
            .lines
            .iter()
            .skip(1)
            .filter_map(|line| {
                let (keyword, params) = line.split_once([' ', '=']).unwrap_or((line, ""));
                (!keyword.is_empty())
                    .then(|| (keyword.to_ascii_uppercase(), params.trim().to_owned()))
            })
            .collect();
        Capabilities { entries }
    }

    /// Whether the server offers `extension`.
    pub fn has(&self, extension: Extension) -> bool {
        self.entries.iter().any(|(k, _)| k == extension.keyword())
    }

    pub(super) fn params(&self, extension: Extension) -> impl Iterator<Item = &str> {
        self.entries
            .iter()
            .filter(move |(k, _)| k == extension.keyword())
            .flat_map(|(_, p)| p.split_ascii_whitespace())
    }

    /// The SASL mechanisms the server offers with AUTH.
    pub fn auth_mechanisms(&self) -> Vec<String> {
        self.params(Extension::Auth).map(str::to_owned).collect()
    }

    /// The SIZE limit in octets, if the server declared a non-zero one.
    pub fn size_limit(&self) -> Option<u64> {
        self.params(Extension::Size)
            .next()?
            .parse()
            .ok()
            .filter(|&n| n > 0)
    }
}
