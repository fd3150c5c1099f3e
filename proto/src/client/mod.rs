//! The SMTP client dialogue as a state machine that does no I/O.
//!
//! The driver (the component's socket and TLS code, or a test) runs a loop:
//!
//! ```text
//! loop {
//!     match client.poll(now) {
//!         Step::Transmit(bytes, until) => write them to the connection before `until`,
//!         Step::Receive(wait)   => read server bytes (before wait.until) into client.receive(..),
//!         Step::StartTls(tls)   => do the TLS handshake (before tls.until()), then tls.established(),
//!         Step::Ready(ready)    => ready.send(..) or ready.quit(..), or give the session back,
//!         Step::Delivered(d) | Step::Failed(e) => a transaction or the session ended,
//!         Step::Reconnect       => the idle connection was gone: connect again, send there,
//!         Step::Closed          => close the connection,
//!     }
//! }
//! ```
//!
//! A failed write or read goes back in as [`Client::connection_lost`] or
//! [`Client::timed_out`], and the outcome comes out of the next poll. Time is an input:
//! the driver passes its monotonic clock's `now` and arms the deadlines it gets back, so
//! the limits (per stage, per call, the idle check before reusing a connection) are rules
//! of this machine, tested without sleeping. The handles [`Ready`] and [`Handshake`]
//! exist only in the state where their calls are legal.
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
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::command::{self, MAX_COMMAND_LINE};
use crate::data::{self, Encoder, Framing};
use crate::error::{Error, ErrorKind, Phase};
use crate::params::{self, MailDeclarations, SendOptions};
use crate::reply::{EnhancedStatus, Reply, ReplyParser};
use crate::sasl::{self, Credentials, Exchange, Mechanism, Response, Secret};
use crate::time::{IDLE_CHECK_MS, Instant, QUIT_WAIT_MS, Timeouts};

mod capabilities;
mod hello;
mod transaction;
mod transcript;

pub use capabilities::{Capabilities, Extension};
// Defined with the message it goes with, so that message.rs need not import the client.
pub use crate::message::Envelope;
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

/// The EHLO name when none is given: the host's own name is not known inside the sandbox,
/// and RFC 5321 section 4.1.4 lets a server check but not refuse it.
pub const DEFAULT_EHLO_NAME: &str = "localhost";

/// Settings for one connection.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The name sent with EHLO (or HELO); [`DEFAULT_EHLO_NAME`] when `None`.
    pub ehlo_name: Option<String>,
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
    /// Time limits per stage and per call.
    pub timeouts: Timeouts,
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
    /// QUIT and its reply: at most [`QUIT_WAIT_MS`].
    Quit,
}

/// What the driver should wait for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wait {
    /// The stage the reply belongs to, for errors.
    pub phase: Phase,
    /// Which time limit applies.
    pub timer: Timer,
    /// When to give up: [`Client::timed_out`].
    pub until: Instant,
}

/// What the driver must do next.
#[derive(Debug)]
#[must_use = "a step ignored loses what it carries: bytes to write, the handshake, an outcome"]
pub enum Step<'a> {
    /// Write these bytes before the deadline, then poll again.
    Transmit(Vec<u8>, Instant),
    /// Read from the server and pass the bytes to [`Client::receive`].
    Receive(Wait),
    /// Run the TLS handshake, then call [`Handshake::established`].
    StartTls(Handshake<'a>),
    /// The session can take a message or QUIT.
    Ready(Ready<'a>),
    /// A message was delivered (to some or all of its recipients).
    Delivered(Delivery),
    /// A message or the session failed.
    Failed(Error),
    /// The connection was idle, and the NOOP before the message found it gone; nothing of
    /// the message was sent. Connect again (a new [`Client`]) and send it there.
    Reconnect,
    /// The session is over: close the connection.
    Closed,
}

/// The session is ready: it can take a message or QUIT.
#[derive(Debug)]
pub struct Ready<'a> {
    client: &'a mut Client,
}

/// The driver must run the TLS handshake now.
#[derive(Debug)]
pub struct Handshake<'a> {
    client: &'a mut Client,
    until: Instant,
}

/// What a poll reports before the state's own step.
#[derive(Debug)]
enum Outcome {
    Done(Result<Delivery, Error>),
    Reconnect,
}

#[derive(Debug)]
enum State {
    Greeting,
    Ehlo,
    Helo,
    StartTls,
    /// The driver's TLS handshake: at the start with implicit TLS, or after STARTTLS.
    Handshake {
        before_greeting: bool,
    },
    Auth(Box<AuthState>),
    Ready,
    /// NOOP to an idle connection before the transaction already prepared.
    IdleCheck,
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
    outcomes: VecDeque<Outcome>,
    /// The end of the current call's time ([`Timeouts::total_ms`]).
    call_deadline: Instant,
    /// When the server last answered, for the idle check.
    last_reply: Instant,
    tls_active: bool,
    capabilities: Capabilities,
    transaction: Option<Transaction>,
    /// Every AUTH line sent, to mask if the server echoes one.
    sent_secrets: Vec<String>,
    transcript: Vec<String>,
}

impl Client {
    /// A client for a connection about to be opened, in a call that began at `call_start`:
    /// the call's time limit runs from there. Connect before [`Client::connect_deadline`];
    /// with implicit TLS, the first step is the handshake.
    pub fn new(mut config: ClientConfig, call_start: Instant) -> Result<Self, Error> {
        let ehlo_name = config
            .ehlo_name
            .get_or_insert_with(|| DEFAULT_EHLO_NAME.to_owned());
        command::check_ehlo_name(ehlo_name)?;
        if let Some(credentials) = &config.credentials {
            credentials.check()?;
            if config.tls == TlsMode::InsecurePlaintext {
                return Err(Error::invalid_input(
                    Phase::Auth,
                    "refusing to send credentials without TLS (insecure plaintext mode)",
                ));
            }
        }
        let implicit = config.tls == TlsMode::Implicit;
        Ok(Client {
            tls_active: implicit,
            call_deadline: call_start.plus_ms(config.timeouts.total_ms),
            last_reply: call_start,
            config,
            state: if implicit {
                State::Handshake {
                    before_greeting: true,
                }
            } else {
                State::Greeting
            },
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

    /// While DATA content is being sent, its next piece, once the last one is written.
    fn next_content_piece(&mut self) {
        let Some(transaction) = self.transaction.as_mut() else {
            return;
        };
        if self.out.is_empty() && transaction.streaming && !transaction.encoder.finished() {
            transaction.encoder.encode_into(
                &transaction.content,
                &mut self.out,
                transaction::CONTENT_PIECE,
            );
            self.out_is_content = true;
        }
    }

    /// The time by which the connection must be made, for a connection begun at `now`.
    pub fn connect_deadline(&self, now: Instant) -> Instant {
        self.call_deadline
            .min(now.plus_ms(self.config.timeouts.connect_ms))
    }

    /// The next thing the driver must do, at `now` on its monotonic clock.
    pub fn poll(&mut self, now: Instant) -> Step<'_> {
        self.next_content_piece();
        if !self.out.is_empty() {
            let timer = if mem::take(&mut self.out_is_content) {
                Timer::DataBlock
            } else if matches!(self.state, State::Quit) {
                Timer::Quit
            } else {
                Timer::Command
            };
            let until = self.deadline(now, timer);
            return Step::Transmit(mem::take(&mut self.out), until);
        }
        if let Some(outcome) = self.outcomes.pop_front() {
            return match outcome {
                Outcome::Done(Ok(delivery)) => Step::Delivered(delivery),
                Outcome::Done(Err(error)) => Step::Failed(error),
                Outcome::Reconnect => Step::Reconnect,
            };
        }
        match self.state {
            State::Handshake { .. } => Step::StartTls(Handshake {
                until: self.deadline(now, Timer::Command),
                client: self,
            }),
            State::Ready => Step::Ready(Ready { client: self }),
            State::Closed => Step::Closed,
            _ => match self.parser.next_reply() {
                Ok(Some(reply)) => {
                    self.last_reply = now;
                    let reply = self.redact(reply);
                    self.record_reply(&reply);
                    self.on_reply(reply);
                    self.poll(now)
                }
                Ok(None) => {
                    let timer = self.timer();
                    Step::Receive(Wait {
                        phase: self.phase(),
                        timer,
                        until: self.deadline(now, timer),
                    })
                }
                Err(error) => {
                    let error = Error::new(self.phase(), ErrorKind::Protocol, error.to_string());
                    self.fail(error);
                    self.poll(now)
                }
            },
        }
    }

    /// Feeds bytes read from the server.
    pub fn receive(&mut self, bytes: &[u8]) {
        self.parser.push(bytes);
    }

    /// Reports that the connection ended or failed under the driver, and closes the
    /// dialogue; the next poll says what it means for the caller. That is the error, unless
    /// an earlier transaction of the same message (after a 452) delivered it: then it is
    /// that delivery, with the recipients of the interrupted transaction refused. A message
    /// the server had not yet accepted is never reported delivered, and an idle connection
    /// found gone before a message asks for [`Step::Reconnect`].
    pub fn connection_lost(&mut self, kind: ErrorKind, message: impl Into<String>) {
        if matches!(self.state, State::IdleCheck) {
            return self.reconnect();
        }
        self.fail(Error::new(self.phase(), kind, message));
    }

    /// Reports that a deadline this machine gave passed at `now` (see
    /// [`Client::connection_lost`]).
    pub fn timed_out(&mut self, now: Instant) {
        let message = if now >= self.call_deadline {
            format!(
                "the overall time limit of {} ms ran out",
                self.config.timeouts.total_ms
            )
        } else if matches!(self.state, State::Greeting) && self.config.tls != TlsMode::Implicit {
            // The usual cause: a port that starts with TLS (465) waits for the client's
            // handshake and says nothing in plain text.
            "the server did not answer in time; if this port starts with TLS (such as 465), \
             use implicit TLS (--tls implicit)"
                .to_owned()
        } else {
            "the server did not answer in time".to_owned()
        };
        self.connection_lost(ErrorKind::Timeout, message);
    }

    /// The deadline for a wait or write under `timer` that starts at `now`.
    fn deadline(&self, now: Instant, timer: Timer) -> Instant {
        let limits = &self.config.timeouts;
        let limit = match timer {
            Timer::Greeting => limits.greeting_ms,
            Timer::Command => limits.command_ms,
            Timer::Mail => limits.mail_ms,
            Timer::Rcpt => limits.rcpt_ms,
            Timer::DataStart => limits.data_start_ms,
            Timer::DataBlock => limits.data_block_ms,
            Timer::DataEnd => limits.data_end_ms,
            Timer::Quit => limits.command_ms.min(QUIT_WAIT_MS),
        };
        self.call_deadline.min(now.plus_ms(limit))
    }

    fn phase(&self) -> Phase {
        match &self.state {
            State::Greeting => Phase::Greeting,
            State::Ehlo | State::Helo => Phase::Ehlo,
            State::StartTls | State::Handshake { .. } => Phase::Tls,
            State::Auth(_) => Phase::Auth,
            State::Ready | State::IdleCheck | State::Mail | State::Rset { .. } => Phase::Mail,
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
            State::Quit => Timer::Quit,
            _ => Timer::Command,
        }
    }

    fn on_reply(&mut self, reply: Reply) {
        let phase = self.phase();
        if matches!(self.state, State::IdleCheck) && !reply.is_positive() {
            return self.reconnect();
        }
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
            State::IdleCheck => self.start_transaction(),
            State::Mail => self.on_mail(reply),
            State::Rcpt { index } => self.on_rcpt(reply, index),
            State::Data => self.on_data(reply),
            State::DataEnd => self.on_content_end(reply),
            State::Bdat { last: true } => self.on_content_end(reply),
            State::Bdat { last: false } => self.on_bdat_chunk(reply),
            State::Rset { then } => self.on_rset(reply, then),
            State::Quit => self.state = State::Closed,
            State::Handshake { .. } | State::Ready | State::Closed => {
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
        self.close_now();
        self.outcomes.push_back(Outcome::Done(outcome));
    }

    /// The idle connection is gone before the prepared message began: the driver connects
    /// again and sends it there.
    fn reconnect(&mut self) {
        self.close_now();
        self.outcomes.push_back(Outcome::Reconnect);
    }

    /// Ends the session: nothing more is written or read.
    fn close_now(&mut self) {
        self.transaction = None;
        self.out.clear();
        self.state = State::Closed;
    }
}

#[cfg(test)]
mod tests;
