//! The SMTP client dialogue as a state machine that does no I/O.
//!
//! The driver (the component's socket and TLS code, or a test) runs a loop:
//!
//! ```text
//! loop {
//!     match client.poll() {
//!         Step::Transmit(bytes) => write them to the connection,
//!         Step::Receive(wait)   => read server bytes (at most wait.timeout) into client.receive(..),
//!         Step::StartTls        => do the TLS handshake, then client.tls_established(),
//!         Step::Ready           => start a transaction with client.send(..) or client.quit(),
//!         Step::Delivered(d) | Step::Failed(e) => a transaction or the session ended,
//!         Step::Closed          => close the connection,
//!     }
//! }
//! ```
//!
//! What the machine guarantees, whatever the server sends: no credential before TLS when
//! TLS is required; nothing learned before STARTTLS is used after it; bytes that arrive
//! after the 220 to STARTTLS abort the session; message content only after a 354; a
//! transaction is reported delivered only on a 2xx to the final dot.

use std::collections::VecDeque;
use std::mem;

use crate::auth::{self, Credentials, Mechanism};
use crate::command::{self, MAX_COMMAND_LINE};
use crate::data;
use crate::error::{Error, ErrorKind, Phase};
use crate::reply::{Reply, ReplyParser};

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
    pub ehlo_name: String,
    pub tls: TlsMode,
    pub credentials: Option<Credentials>,
    /// Keep a transcript (AUTH data redacted) for [`Client::take_transcript`].
    pub transcript: bool,
}

/// Who the message is from and to (RFC 5321 envelope).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// Reverse-path; empty for the null sender `<>`.
    pub sender: String,
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
    pub address: String,
    pub reply: Reply,
}

/// The outcome of a transaction the server accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub accepted: Vec<String>,
    pub refused: Vec<RefusedRecipient>,
    /// The reply to the end of data; it usually names the queue id.
    pub reply: Reply,
}

/// Which timer the driver should apply while it waits for a reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timer {
    /// Any command reply, the greeting included.
    Command,
    /// The reply to the final dot, which may take a server long (RFC 5321 4.5.3.2.6).
    DataEnd,
}

/// What the driver should wait for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wait {
    pub phase: Phase,
    pub timer: Timer,
}

/// What the driver must do next.
#[derive(Debug)]
pub enum Step {
    Transmit(Vec<u8>),
    Receive(Wait),
    StartTls,
    Ready,
    Delivered(Delivery),
    Failed(Error),
    Closed,
}

/// Extensions the server announced in its EHLO reply.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Upper-cased keyword and its parameters.
    entries: Vec<(String, String)>,
}

impl Capabilities {
    fn from_ehlo(reply: &Reply) -> Self {
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

    pub fn has(&self, keyword: &str) -> bool {
        self.entries.iter().any(|(k, _)| k == keyword)
    }

    fn params(&self, keyword: &str) -> impl Iterator<Item = &str> {
        self.entries
            .iter()
            .filter(move |(k, _)| k == keyword)
            .flat_map(|(_, p)| p.split_ascii_whitespace())
    }

    pub fn auth_mechanisms(&self) -> Vec<String> {
        self.params("AUTH").map(str::to_owned).collect()
    }

    /// The SIZE limit in octets, if the server declared a non-zero one.
    pub fn size_limit(&self) -> Option<u64> {
        self.params("SIZE").next()?.parse().ok().filter(|&n| n > 0)
    }
}

#[derive(Debug)]
enum State {
    Greeting,
    Ehlo,
    Helo,
    StartTls,
    Handshake,
    Auth {
        mechanism: Mechanism,
        step: AuthStep,
    },
    Ready,
    Mail,
    Rcpt {
        index: usize,
    },
    Data,
    DataEnd,
    Rset {
        then: Error,
    },
    Quit,
    Closed,
}

/// Where an AUTH exchange stands: which 334 prompt comes next, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AuthStep {
    /// LOGIN: the server will ask for the user name.
    LoginUser,
    /// LOGIN: the server will ask for the password.
    LoginPassword,
    /// Everything was sent; only 235 or a failure may follow.
    Outcome,
}

#[derive(Debug)]
struct Transaction {
    envelope: Envelope,
    wire: Vec<u8>,
    accepted: Vec<String>,
    refused: Vec<RefusedRecipient>,
    /// MAIL, every RCPT and DATA went out in one flight (RFC 2920).
    pipelined: bool,
    /// With pipelining, a failure found while replies to commands already sent are
    /// still to come: they are read, then the transaction ends with this error.
    doomed: Option<Error>,
}

/// The client side of one SMTP connection.
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    state: State,
    parser: ReplyParser,
    out: Vec<u8>,
    outcomes: VecDeque<Result<Delivery, Error>>,
    tls_active: bool,
    capabilities: Capabilities,
    transaction: Option<Transaction>,
    transcript: Vec<String>,
}

/// The error when no recipient was accepted; transient only if every refusal was. The
/// error's reply is the last refusal; the message names every refused address.
fn every_recipient_refused(refused: &[RefusedRecipient]) -> Error {
    let last = refused
        .last()
        .expect("at least one recipient")
        .reply
        .clone();
    let message = match refused {
        [only] => format!("the recipient <{}> was refused", only.address),
        _ => {
            let each: Vec<String> = refused
                .iter()
                .map(|r| format!("<{}>: {}", r.address, r.reply))
                .collect();
            format!("every recipient was refused ({})", each.join("; "))
        }
    };
    let mut error = Error::from_reply(Phase::Rcpt, ErrorKind::Rejected, message, last);
    error.transient = refused.iter().all(|r| r.reply.is_transient());
    error
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
            outcomes: VecDeque::new(),
            capabilities: Capabilities::default(),
            transaction: None,
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

    /// Transcript lines recorded since the last call.
    pub fn take_transcript(&mut self) -> Vec<String> {
        mem::take(&mut self.transcript)
    }

    /// The next thing the driver must do.
    pub fn poll(&mut self) -> Step {
        if !self.out.is_empty() {
            return Step::Transmit(mem::take(&mut self.out));
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
                    timer: match self.state {
                        State::DataEnd => Timer::DataEnd,
                        _ => Timer::Command,
                    },
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

    /// Reports that the connection ended or failed under the driver; returns the error to
    /// give the caller. The message is never reported delivered after this.
    pub fn connection_lost(&mut self, kind: ErrorKind, message: impl Into<String>) -> Error {
        let error = Error::new(self.phase(), kind, message);
        self.transaction = None;
        self.state = State::Closed;
        error
    }

    /// The driver finished the TLS handshake that [`Step::StartTls`] asked for.
    pub fn tls_established(&mut self) {
        debug_assert!(matches!(self.state, State::Handshake));
        self.tls_active = true;
        // RFC 3207 section 4.2: forget everything learned before TLS.
        self.capabilities = Capabilities::default();
        self.send_ehlo();
    }

    /// Starts a mail transaction; only valid when [`Step::Ready`] was returned.
    /// Bad input is refused here, before anything is sent.
    pub fn send(&mut self, envelope: Envelope, message: &[u8]) -> Result<(), Error> {
        if !matches!(self.state, State::Ready) {
            return Err(Error::new(
                self.phase(),
                ErrorKind::Closed,
                "the session is not ready for a message",
            ));
        }
        let needs_utf8 = envelope.check()?;
        if needs_utf8 && !self.capabilities.has("SMTPUTF8") {
            return Err(Error::invalid_input(
                Phase::Mail,
                "an address has non-ASCII characters but the server does not offer SMTPUTF8",
            ));
        }
        let data = data::encode(message)?;
        let mut mail = format!("MAIL FROM:<{}>", envelope.sender);
        if let Some(limit) = self.capabilities.size_limit() {
            let size = data.wire.len() as u64;
            if size > limit {
                return Err(Error::invalid_input(
                    Phase::Mail,
                    format!("the message is {size} bytes but the server accepts at most {limit}"),
                ));
            }
            mail.push_str(&format!(" SIZE={size}"));
        }
        if data.eight_bit && self.capabilities.has("8BITMIME") {
            mail.push_str(" BODY=8BITMIME");
        }
        if needs_utf8 {
            mail.push_str(" SMTPUTF8");
        }
        if mail.len() + 2 > MAX_COMMAND_LINE {
            return Err(Error::invalid_input(
                Phase::Mail,
                "the MAIL command would be too long",
            ));
        }
        self.transaction = Some(Transaction {
            envelope,
            wire: data.wire,
            accepted: Vec::new(),
            refused: Vec::new(),
            pipelined: self.capabilities.has("PIPELINING"),
            doomed: None,
        });
        self.command(&mail);
        self.state = State::Mail;
        if self.in_transaction().pipelined {
            // RFC 2920: the whole envelope and DATA in one flight; content waits for 354.
            for index in 0..self.in_transaction().envelope.recipients.len() {
                self.rcpt_command(index);
            }
            self.command("DATA");
        }
        Ok(())
    }

    /// Ends the session politely. Does nothing if it is already closed.
    pub fn quit(&mut self) {
        match self.state {
            State::Closed | State::Quit => {}
            State::Ready => {
                self.command("QUIT");
                self.state = State::Quit;
            }
            _ => self.state = State::Closed,
        }
    }

    fn phase(&self) -> Phase {
        match &self.state {
            State::Greeting => Phase::Greeting,
            State::Ehlo | State::Helo => Phase::Ehlo,
            State::StartTls | State::Handshake => Phase::Tls,
            State::Auth { .. } => Phase::Auth,
            State::Ready | State::Mail | State::Rset { .. } => Phase::Mail,
            State::Rcpt { .. } => Phase::Rcpt,
            State::Data | State::DataEnd => Phase::Data,
            State::Quit | State::Closed => Phase::Quit,
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
            State::Auth { mechanism, step } => self.on_auth(reply, mechanism, step),
            State::Mail => self.on_mail(reply),
            State::Rcpt { index } => self.on_rcpt(reply, index),
            State::Data => self.on_data(reply),
            State::DataEnd => self.on_data_end(reply),
            State::Rset { then } => self.on_rset(reply, then),
            State::Quit => self.state = State::Closed,
            State::Handshake | State::Ready | State::Closed => {
                unreachable!("no reply is read in these states")
            }
        }
    }

    fn on_greeting(&mut self, reply: Reply) {
        if reply.code == 220 {
            self.send_ehlo();
        } else {
            self.fail_with_reply(Phase::Greeting, "the server did not greet with 220", reply);
        }
    }

    fn on_ehlo(&mut self, reply: Reply) {
        if reply.is_positive() {
            self.capabilities = Capabilities::from_ehlo(&reply);
            return self.after_hello();
        }
        let needs_extensions = self.config.credentials.is_some()
            || !self.tls_active && self.config.tls == TlsMode::StartTls;
        if reply.code / 100 == 5 && !needs_extensions {
            // RFC 5321 section 3.2: an old server; HELO is enough for a plain transaction.
            self.command(&format!("HELO {}", self.config.ehlo_name));
            self.state = State::Helo;
        } else if self.config.tls == TlsMode::StartTls && !self.tls_active {
            let error = Error::from_reply(
                Phase::Tls,
                ErrorKind::Tls,
                "EHLO was refused, so STARTTLS is impossible; not falling back to plaintext",
                reply,
            );
            self.fail(error);
        } else {
            self.fail_with_reply(Phase::Ehlo, "EHLO was refused", reply);
        }
    }

    fn on_helo(&mut self, reply: Reply) {
        if reply.is_positive() {
            self.capabilities = Capabilities::default();
            self.after_hello();
        } else {
            self.fail_with_reply(Phase::Ehlo, "HELO was refused", reply);
        }
    }

    /// After a successful EHLO or HELO: STARTTLS, AUTH, or ready.
    fn after_hello(&mut self) {
        if self.config.tls == TlsMode::StartTls && !self.tls_active {
            if self.capabilities.has("STARTTLS") {
                self.command("STARTTLS");
                self.state = State::StartTls;
            } else {
                self.fail(Error::new(
                    Phase::Tls,
                    ErrorKind::Tls,
                    "the server does not offer STARTTLS; refusing to continue without TLS",
                ));
            }
            return;
        }
        let Some(credentials) = self.config.credentials.clone() else {
            self.state = State::Ready;
            return;
        };
        let offered = self.capabilities.auth_mechanisms();
        let Some(mechanism) = Mechanism::choose(&offered) else {
            let message = if offered.is_empty() {
                "the server offers no AUTH".to_owned()
            } else {
                format!(
                    "the server offers AUTH {} but sendbox supports PLAIN and LOGIN",
                    offered.join(" ")
                )
            };
            self.fail(Error::new(Phase::Auth, ErrorKind::Auth, message));
            return;
        };
        let step = match mechanism {
            Mechanism::Plain => {
                let line = format!("AUTH PLAIN {}", auth::plain_response(&credentials));
                self.secret_command(&line, "AUTH PLAIN <credentials redacted>");
                AuthStep::Outcome
            }
            Mechanism::Login => {
                self.command("AUTH LOGIN");
                AuthStep::LoginUser
            }
        };
        self.state = State::Auth { mechanism, step };
    }

    fn on_starttls(&mut self, reply: Reply) {
        if reply.code != 220 {
            let error = Error::from_reply(
                Phase::Tls,
                ErrorKind::Tls,
                "STARTTLS was refused; refusing to continue without TLS",
                reply,
            );
            return self.fail(error);
        }
        let injected = self.parser.buffered();
        if injected > 0 {
            // RFC 3207 section 6 / CVE-2011-0411: such bytes came before TLS, so they
            // were not protected; treating them as replies over TLS would let an attacker answer for the server.
            let message = format!(
                "the server sent {injected} bytes after its STARTTLS reply, before TLS; aborting"
            );
            return self.fail(Error::new(Phase::Tls, ErrorKind::Protocol, message));
        }
        self.state = State::Handshake;
    }

    fn on_auth(&mut self, reply: Reply, mechanism: Mechanism, step: AuthStep) {
        if reply.is_positive() {
            self.state = State::Ready;
            return;
        }
        if reply.code == 334 && step != AuthStep::Outcome {
            let credentials = self
                .config
                .credentials
                .as_ref()
                .expect("AUTH runs only with credentials");
            let (field, next) = match step {
                AuthStep::LoginUser => (&credentials.username, AuthStep::LoginPassword),
                _ => (&credentials.password, AuthStep::Outcome),
            };
            let line = auth::login_response(field);
            self.secret_command(&line, "<credentials redacted>");
            self.state = State::Auth {
                mechanism,
                step: next,
            };
            return;
        }
        if reply.is_intermediate() {
            return self.fail(Error::from_reply(
                Phase::Auth,
                ErrorKind::Protocol,
                "unexpected AUTH challenge",
                reply,
            ));
        }
        let message = match reply.code {
            535 => "the server rejected the user name or password".to_owned(),
            _ => format!("AUTH {} failed", mechanism.name()),
        };
        self.fail(Error::from_reply(
            Phase::Auth,
            ErrorKind::Auth,
            message,
            reply,
        ));
    }

    fn on_mail(&mut self, reply: Reply) {
        if reply.is_positive() {
            return self.next_rcpt(0);
        }
        if reply.is_intermediate() {
            return self.fail(Error::from_reply(
                Phase::Mail,
                ErrorKind::Protocol,
                "unexpected reply to MAIL",
                reply,
            ));
        }
        let error = Error::from_reply(
            Phase::Mail,
            ErrorKind::Rejected,
            "the sender was refused",
            reply,
        );
        if self.in_transaction().pipelined {
            // The replies to RCPT and DATA are on their way; read them first.
            self.in_transaction().doomed = Some(error);
            self.state = State::Rcpt { index: 0 };
        } else {
            self.reset_then_fail(error);
        }
    }

    fn on_rcpt(&mut self, reply: Reply, index: usize) {
        if reply.is_intermediate() {
            return self.fail(Error::from_reply(
                Phase::Rcpt,
                ErrorKind::Protocol,
                "unexpected reply to RCPT",
                reply,
            ));
        }
        let transaction = self.in_transaction();
        if transaction.doomed.is_none() {
            let address = transaction.envelope.recipients[index].clone();
            if reply.is_positive() {
                transaction.accepted.push(address);
            } else {
                transaction
                    .refused
                    .push(RefusedRecipient { address, reply });
            }
        }
        if index + 1 < transaction.envelope.recipients.len() {
            return self.next_rcpt(index + 1);
        }
        if transaction.doomed.is_none() && transaction.accepted.is_empty() {
            let error = every_recipient_refused(&transaction.refused);
            transaction.doomed = Some(error);
        }
        match (transaction.pipelined, transaction.doomed.take()) {
            (false, Some(error)) => self.reset_then_fail(error),
            (false, None) => {
                self.command("DATA");
                self.state = State::Data;
            }
            (true, doomed) => {
                // DATA was sent with the envelope; its reply comes next.
                self.in_transaction().doomed = doomed;
                self.state = State::Data;
            }
        }
    }

    fn on_data(&mut self, reply: Reply) {
        if let Some(error) = self.in_transaction().doomed.take() {
            if reply.code == 354 {
                // RFC 2920 section 3.1: the server accepted a DATA we sent ahead; end it
                // with an empty message, which it refuses for want of recipients.
                self.record("C: <empty message: the transaction already failed>".to_owned());
                self.out.extend_from_slice(b".\r\n");
                self.in_transaction().doomed = Some(error);
                self.state = State::DataEnd;
            } else {
                self.reset_then_fail(error);
            }
            return;
        }
        if reply.code == 354 {
            let wire = mem::take(&mut self.in_transaction().wire);
            self.record(format!("C: <message: {} bytes>", wire.len()));
            self.out.extend_from_slice(&wire);
            self.state = State::DataEnd;
        } else if reply.code / 100 >= 4 {
            self.reject_transaction(Phase::Data, "DATA was refused", reply);
        } else {
            let error = Error::from_reply(
                Phase::Data,
                ErrorKind::Protocol,
                "the server answered DATA without 354; no content was sent",
                reply,
            );
            self.fail(error);
        }
    }

    fn on_data_end(&mut self, reply: Reply) {
        let transaction = self.transaction.take().expect("data ends a transaction");
        self.state = State::Ready;
        if let Some(error) = transaction.doomed {
            // The reply is to the empty message that closed a failed pipelined transaction.
            if reply.is_intermediate() {
                return self.fail(error);
            }
            self.outcomes.push_back(Err(error));
        } else if reply.is_positive() {
            self.outcomes.push_back(Ok(Delivery {
                accepted: transaction.accepted,
                refused: transaction.refused,
                reply,
            }));
        } else if reply.code / 100 >= 4 {
            let error = Error::from_reply(
                Phase::Data,
                ErrorKind::Rejected,
                "the message was refused after its content was sent",
                reply,
            );
            self.outcomes.push_back(Err(error));
        } else {
            self.fail(Error::from_reply(
                Phase::Data,
                ErrorKind::Protocol,
                "unexpected reply to the end of data",
                reply,
            ));
        }
    }

    fn on_rset(&mut self, reply: Reply, then: Error) {
        if reply.is_positive() {
            self.state = State::Ready;
            self.outcomes.push_back(Err(then));
        } else {
            // The transaction failed and the server will not reset: the session is unusable.
            self.fail(then);
        }
    }

    fn send_ehlo(&mut self) {
        self.command(&format!("EHLO {}", self.config.ehlo_name));
        self.state = State::Ehlo;
    }

    /// Moves on to the reply for recipient `index`, sending its RCPT unless pipelining
    /// already did.
    fn next_rcpt(&mut self, index: usize) {
        if !self.in_transaction().pipelined {
            self.rcpt_command(index);
        }
        self.state = State::Rcpt { index };
    }

    fn rcpt_command(&mut self, index: usize) {
        let line = format!(
            "RCPT TO:<{}>",
            self.in_transaction().envelope.recipients[index]
        );
        self.command(&line);
    }

    fn in_transaction(&mut self) -> &mut Transaction {
        self.transaction
            .as_mut()
            .expect("only called during a transaction")
    }

    /// A transaction-level refusal: reset the transaction, keep the session.
    fn reject_transaction(&mut self, phase: Phase, message: &str, reply: Reply) {
        if reply.is_intermediate() {
            return self.fail(Error::from_reply(
                phase,
                ErrorKind::Protocol,
                "unexpected intermediate reply",
                reply,
            ));
        }
        self.reset_then_fail(Error::from_reply(
            phase,
            ErrorKind::Rejected,
            message,
            reply,
        ));
    }

    fn reset_then_fail(&mut self, error: Error) {
        self.transaction = None;
        self.command("RSET");
        self.state = State::Rset { then: error };
    }

    fn fail_with_reply(&mut self, phase: Phase, message: &str, reply: Reply) {
        let kind = if reply.code / 100 >= 4 {
            ErrorKind::Rejected
        } else {
            ErrorKind::Protocol
        };
        self.fail(Error::from_reply(phase, kind, message, reply));
    }

    /// A session-level failure: the connection is finished.
    fn fail(&mut self, error: Error) {
        self.transaction = None;
        self.out.clear();
        self.state = State::Closed;
        self.outcomes.push_back(Err(error));
    }

    fn command(&mut self, line: &str) {
        self.record(format!("C: {line}"));
        self.write_line(line);
    }

    /// A command carrying credentials: the transcript gets `shown` instead.
    fn secret_command(&mut self, line: &str, shown: &str) {
        self.record(format!("C: {shown}"));
        self.write_line(line);
    }

    fn write_line(&mut self, line: &str) {
        self.out.extend_from_slice(line.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    /// A server that echoes the password back (it learns it from AUTH) must not get it
    /// into our transcript, errors or results: every form we send is masked.
    fn redact(&self, mut reply: Reply) -> Reply {
        let Some(credentials) = &self.config.credentials else {
            return reply;
        };
        // Shorter passwords would mask ordinary words; they are also no secret worth the name.
        if credentials.password.len() < auth::MIN_REDACTED_LEN {
            return reply;
        }
        let secrets = [
            credentials.password.clone(),
            auth::login_response(&credentials.password),
            auth::plain_response(credentials),
        ];
        for line in &mut reply.lines {
            for secret in &secrets {
                if line.contains(secret.as_str()) {
                    *line = line.replace(secret.as_str(), "<redacted>");
                }
            }
        }
        reply
    }

    fn record(&mut self, line: String) {
        if self.config.transcript {
            self.transcript.push(line);
        }
    }

    fn record_reply(&mut self, reply: &Reply) {
        if !self.config.transcript {
            return;
        }
        let status = reply.enhanced.map(|s| format!("{s} ")).unwrap_or_default();
        let last = reply.lines.len() - 1;
        for (i, line) in reply.lines.iter().enumerate() {
            let separator = if i == last { ' ' } else { '-' };
            self.transcript
                .push(format!("S: {}{separator}{status}{line}", reply.code));
        }
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
