//! The SMTP client dialogue as a state machine that does no I/O.
//!
//! The driver (the component's socket and TLS code, or a test) runs a loop:
//!
//! ```text
//! loop {
//!     match client.poll() {
//!         Step::Transmit(bytes, timer) => write them to the connection within the timer,
//!         Step::Receive(wait)   => read server bytes (within wait.timer) into client.receive(..),
//!         Step::StartTls        => do the TLS handshake, then client.tls_established(),
//!         Step::Ready           => client.send(..), client.noop() or client.quit(),
//!         Step::Delivered(d) | Step::Failed(e) => a transaction or the session ended,
//!         Step::Closed          => close the connection,
//!     }
//! }
//! ```
//!
//! What the machine guarantees, whatever the server sends: no credential before TLS when
//! TLS is required; nothing learned before STARTTLS is used after it; bytes that arrive
//! after the 220 to STARTTLS abort the session; message content only after a 354 (or in
//! BDAT, after the envelope's replies); a message is reported delivered only on a 2xx to
//! the end of its content.
//!
//! The machine's core and [`Client::poll`] are here; its stages each have a file:
//! `capabilities.rs` (the EHLO extensions), `hello.rs` (greeting, EHLO, STARTTLS, AUTH,
//! NOOP and QUIT), `transaction.rs` (MAIL, RCPT, DATA or BDAT, and further transactions
//! after a 452) and `transcript.rs` (writing commands, and redacting credentials).

use std::collections::VecDeque;
use std::mem;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::command::{self, MAX_COMMAND_LINE};
use crate::data::{self, Framing};
use crate::error::{Error, ErrorKind, Phase};
use crate::params::{self, MailDeclarations, SendOptions};
use crate::reply::{EnhancedStatus, Reply, ReplyParser};
use crate::sasl::{self, Credentials, Exchange, Mechanism, Response, Secret};

mod capabilities;
mod hello;
mod transaction;
mod transcript;

pub use capabilities::{Capabilities, Extension};
use hello::AuthState;
use transaction::Transaction;

/// How the connection is secured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// TLS from the first byte; the driver handshakes before the greeting.
    Implicit,
    /// Plaintext greeting, then STARTTLS, which is required.
    StartTls,
    /// No TLS. AUTH is refused in this mode.
    InsecurePlaintext,
}

/// Settings for one connection.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The name sent with EHLO (or HELO).
    pub ehlo_name: String,
    /// How the connection is protected.
    pub tls: TlsMode,
    /// The login, if the server must be authenticated to.
    pub credentials: Option<Credentials>,
    /// The server's name and port, which OAUTHBEARER sends.
    pub server_host: String,
    /// The server's port, which OAUTHBEARER sends with `server_host`.
    pub server_port: u16,
    /// A fresh random nonce for SCRAM ([`sasl::nonce_from_random`]).
    pub sasl_nonce: String,
    /// Keep a transcript (AUTH data redacted) for [`Client::take_transcript`].
    pub transcript: bool,
}

/// Who the message is from and to (RFC 5321 envelope).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// Reverse-path; empty for the null sender `<>`.
    pub sender: String,
    /// RCPT TO addresses, in order.
    pub recipients: Vec<String>,
}

impl Envelope {
    /// Checks every address, without connecting to anything. Returns whether an address
    /// needs SMTPUTF8.
    pub fn check(&self) -> Result<bool, Error> {
        if self.recipients.is_empty() {
            return Err(Error::invalid_input(Phase::Rcpt, "no recipients"));
        }
        let mut needs_utf8 =
            !self.sender.is_empty() && command::check_mailbox(Phase::Mail, &self.sender)?;
        for recipient in &self.recipients {
            needs_utf8 |= command::check_mailbox(Phase::Rcpt, recipient)?;
        }
        Ok(needs_utf8)
    }
}

/// A recipient the server refused, with its reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefusedRecipient {
    /// The recipient as given.
    pub address: String,
    /// The server's refusal.
    pub reply: Reply,
}

/// The outcome of a message the server accepted for at least one recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Recipients the server accepted.
    pub accepted: Vec<String>,
    /// Recipients the server refused, each with its reply.
    pub refused: Vec<RefusedRecipient>,
    /// The reply to the end of the content; it usually names the queue id.
    pub reply: Reply,
    /// When a 452 split the recipients over several transactions, the end-of-content
    /// replies of the earlier ones.
    pub earlier_replies: Vec<Reply>,
}

/// Which time limit applies to a wait or a write (RFC 5321 section 4.5.3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timer {
    /// The 220 greeting.
    Greeting,
    /// EHLO, STARTTLS, AUTH, RSET, NOOP and QUIT.
    Command,
    /// The reply to MAIL FROM.
    Mail,
    /// The reply to RCPT TO.
    Rcpt,
    /// The 354 reply to DATA.
    DataStart,
    /// A write of message content, or the reply to a BDAT chunk but the last.
    DataBlock,
    /// The reply after the whole content, which may take a server long.
    DataEnd,
}

/// What the driver should wait for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wait {
    /// The stage the reply belongs to, for errors.
    pub phase: Phase,
    /// Which time limit applies.
    pub timer: Timer,
}

/// What the driver must do next.
#[derive(Debug)]
pub enum Step {
    /// Write these bytes (under this time limit), then poll again.
    Transmit(Vec<u8>, Timer),
    /// Read from the server and pass the bytes to [`Client::receive`].
    Receive(Wait),
    /// Run the TLS handshake, then call [`Client::tls_established`].
    StartTls,
    /// The session can take a message ([`Client::send`]), a NOOP or QUIT.
    Ready,
    /// A message was delivered (to some or all of its recipients).
    Delivered(Delivery),
    /// A message or the session failed.
    Failed(Error),
    /// The session is over: close the connection.
    Closed,
}

#[derive(Debug)]
enum State {
    Greeting,
    Ehlo,
    Helo,
    StartTls,
    Handshake,
    Auth(Box<AuthState>),
    Ready,
    Noop,
    Mail,
    Rcpt {
        index: usize,
    },
    Data,
    DataEnd,
    /// Waiting for the reply to a BDAT chunk.
    Bdat {
        last: bool,
    },
    Rset {
        then: Result<Delivery, Error>,
    },
    Quit,
    Closed,
}

/// The client side of one SMTP connection.
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    state: State,
    parser: ReplyParser,
    out: Vec<u8>,
    /// `out` carries message content, so it is written under the data-block timer.
    out_is_content: bool,
    outcomes: VecDeque<Result<Delivery, Error>>,
    tls_active: bool,
    capabilities: Capabilities,
    transaction: Option<Transaction>,
    /// Every AUTH line sent, to mask if the server echoes one.
    sent_secrets: Vec<String>,
    transcript: Vec<String>,
}

impl Client {
    /// A client for a connection just opened. With implicit TLS the driver must finish the
    /// handshake before feeding it any bytes.
    pub fn new(config: ClientConfig) -> Result<Self, Error> {
        command::check_ehlo_name(&config.ehlo_name)?;
        if let Some(credentials) = &config.credentials {
            credentials.check()?;
            if config.tls == TlsMode::InsecurePlaintext {
                return Err(Error::invalid_input(
                    Phase::Auth,
                    "refusing to send credentials without TLS (insecure plaintext mode)",
                ));
            }
        }
        Ok(Client {
            tls_active: config.tls == TlsMode::Implicit,
            config,
            state: State::Greeting,
            parser: ReplyParser::new(),
            out: Vec::new(),
            out_is_content: false,
            outcomes: VecDeque::new(),
            capabilities: Capabilities::default(),
            transaction: None,
            sent_secrets: Vec::new(),
            transcript: Vec::new(),
        })
    }

    /// The extensions from the latest EHLO (after TLS, only those learned over TLS).
    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    /// Whether the connection is finished, by error or QUIT.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// The next thing the driver must do.
    pub fn poll(&mut self) -> Step {
        if !self.out.is_empty() {
            let timer = if mem::take(&mut self.out_is_content) {
                Timer::DataBlock
            } else {
                Timer::Command
            };
            return Step::Transmit(mem::take(&mut self.out), timer);
        }
        if let Some(outcome) = self.outcomes.pop_front() {
            return match outcome {
                Ok(delivery) => Step::Delivered(delivery),
                Err(error) => Step::Failed(error),
            };
        }
        match self.state {
            State::Handshake => Step::StartTls,
            State::Ready => Step::Ready,
            State::Closed => Step::Closed,
            _ => match self.parser.next_reply() {
                Ok(Some(reply)) => {
                    let reply = self.redact(reply);
                    self.record_reply(&reply);
                    self.on_reply(reply);
                    self.poll()
                }
                Ok(None) => Step::Receive(Wait {
                    phase: self.phase(),
                    timer: self.timer(),
                }),
                Err(error) => {
                    let error = Error::new(self.phase(), ErrorKind::Protocol, error.to_string());
                    self.fail(error);
                    self.poll()
                }
            },
        }
    }

    /// Feeds bytes read from the server.
    pub fn receive(&mut self, bytes: &[u8]) {
        self.parser.push(bytes);
    }

    /// Reports that the connection ended or failed under the driver, and closes the
    /// dialogue; returns what to give the caller. That is the error, unless an earlier
    /// transaction of the same message (after a 452) delivered it: then it is that
    /// delivery, with the recipients of the interrupted transaction refused. A message the
    /// server had not yet accepted is never reported delivered.
    pub fn connection_lost(
        &mut self,
        kind: ErrorKind,
        message: impl Into<String>,
    ) -> Result<Delivery, Error> {
        let error = Error::new(self.phase(), kind, message);
        let outcome = match self.transaction.take() {
            Some(transaction) => transaction.outcome_of_failure(error),
            None => Err(error),
        };
        self.fail_silently();
        outcome
    }

    fn check_ready(&self) -> Result<(), Error> {
        if matches!(self.state, State::Ready) {
            Ok(())
        } else {
            Err(Error::new(
                self.phase(),
                ErrorKind::Closed,
                "the session is not ready for a message",
            ))
        }
    }

    fn phase(&self) -> Phase {
        match &self.state {
            State::Greeting => Phase::Greeting,
            State::Ehlo | State::Helo => Phase::Ehlo,
            State::StartTls | State::Handshake => Phase::Tls,
            State::Auth(_) => Phase::Auth,
            State::Ready | State::Noop | State::Mail | State::Rset { .. } => Phase::Mail,
            State::Rcpt { .. } => Phase::Rcpt,
            State::Data | State::DataEnd | State::Bdat { .. } => Phase::Data,
            State::Quit | State::Closed => Phase::Quit,
        }
    }

    fn timer(&self) -> Timer {
        match self.state {
            State::Greeting => Timer::Greeting,
            State::Mail => Timer::Mail,
            State::Rcpt { .. } => Timer::Rcpt,
            State::Data => Timer::DataStart,
            State::Bdat { last: false } => Timer::DataBlock,
            State::DataEnd | State::Bdat { last: true } => Timer::DataEnd,
            _ => Timer::Command,
        }
    }

    fn on_reply(&mut self, reply: Reply) {
        let phase = self.phase();
        if reply.code == 421 && !matches!(self.state, State::Quit) {
            // RFC 5321 section 3.8: the server is shutting the connection.
            self.fail(Error::from_reply(
                phase,
                ErrorKind::Rejected,
                "the server is closing the connection",
                reply,
            ));
            return;
        }
        match mem::replace(&mut self.state, State::Closed) {
            State::Greeting => self.on_greeting(reply),
            State::Ehlo => self.on_ehlo(reply),
            State::Helo => self.on_helo(reply),
            State::StartTls => self.on_starttls(reply),
            State::Auth(auth) => self.on_auth(reply, auth),
            State::Noop => self.on_noop(reply),
            State::Mail => self.on_mail(reply),
            State::Rcpt { index } => self.on_rcpt(reply, index),
            State::Data => self.on_data(reply),
            State::DataEnd => self.on_content_end(reply),
            State::Bdat { last: true } => self.on_content_end(reply),
            State::Bdat { last: false } => self.on_bdat_chunk(reply),
            State::Rset { then } => self.on_rset(reply, then),
            State::Quit => self.state = State::Closed,
            State::Handshake | State::Ready | State::Closed => {
                unreachable!("no reply is read in these states")
            }
        }
    }

    fn fail_with_reply(&mut self, phase: Phase, message: &str, reply: Reply) {
        let kind = if reply.code / 100 >= 4 {
            ErrorKind::Rejected
        } else {
            ErrorKind::Protocol
        };
        self.fail(Error::from_reply(phase, kind, message, reply));
    }

    /// A session-level failure: the connection is finished. A message that an earlier
    /// transaction delivered is still reported delivered.
    fn fail(&mut self, error: Error) {
        let outcome = match self.transaction.take() {
            Some(transaction) => transaction.outcome_of_failure(error),
            None => Err(error),
        };
        self.fail_silently();
        self.outcomes.push_back(outcome);
    }

    /// Closes the session without reporting anything more.
    fn fail_silently(&mut self) {
        self.transaction = None;
        self.out.clear();
        self.state = State::Closed;
    }
}

#[cfg(test)]
mod tests;
