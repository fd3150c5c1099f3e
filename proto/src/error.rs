//! What went wrong, where, and whether trying again later can help.

use std::fmt;

use crate::reply::Reply;

/// The stage of the SMTP dialogue an error happened in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Connecting to the server.
    Connect,
    /// Waiting for its 220 greeting.
    Greeting,
    /// STARTTLS and the TLS handshake.
    Tls,
    /// EHLO (or HELO).
    Ehlo,
    /// AUTH.
    Auth,
    /// MAIL FROM.
    Mail,
    /// RCPT TO.
    Rcpt,
    /// DATA or BDAT, and the content.
    Data,
    /// QUIT.
    Quit,
    /// DKIM signing with the caller's key and settings, before anything is sent.
    Sign,
}

/// The kind of failure, which decides what a caller should do about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The caller's input was refused before anything was sent.
    InvalidInput,
    /// Connecting failed or the connection broke.
    Network,
    /// The server did not answer in time.
    Timeout,
    /// TLS could not be set up: handshake or certificate failure, or STARTTLS
    /// unavailable while TLS is required.
    Tls,
    /// Authentication failed or was impossible.
    Auth,
    /// The server refused a command with a 4xx or 5xx reply.
    Rejected,
    /// The server broke the protocol.
    Protocol,
    /// The session was already closed by an earlier error or by `quit`.
    Closed,
}

/// An SMTP client error with everything a user needs to act on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    /// The stage of the dialogue it happened in.
    pub phase: Phase,
    /// What went wrong.
    pub kind: ErrorKind,
    /// The server's reply, when the error is the server's answer.
    pub reply: Option<Reply>,
    /// A human explanation, never containing credentials.
    pub message: String,
    /// Whether the same send may succeed if retried later (4xx, timeouts, lost connections).
    pub transient: bool,
}

impl Error {
    /// An error without a server reply; transient for network failures and timeouts.
    pub fn new(phase: Phase, kind: ErrorKind, message: impl Into<String>) -> Self {
        let transient = matches!(kind, ErrorKind::Network | ErrorKind::Timeout);
        Error {
            phase,
            kind,
            reply: None,
            message: message.into(),
            transient,
        }
    }

    /// An error that is the server's reply; transient exactly when the reply is 4xx.
    pub fn from_reply(
        phase: Phase,
        kind: ErrorKind,
        message: impl Into<String>,
        reply: Reply,
    ) -> Self {
        Error {
            phase,
            kind,
            transient: reply.is_transient(),
            reply: Some(reply),
            message: message.into(),
        }
    }

    /// Input refused before anything was sent: never transient.
    pub fn invalid_input(phase: Phase, message: impl Into<String>) -> Self {
        Error::new(phase, ErrorKind::InvalidInput, message)
    }
}

/// The wording users see is the host's (`sendbox::mailer::describe`), for the WIT error
/// this one becomes; this is the short form for logs and tests of the dialogue alone.
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} {:?}: {}", self.phase, self.kind, self.message)?;
        if let Some(reply) = &self.reply {
            write!(f, " ({reply})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}
