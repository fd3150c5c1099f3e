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

    /// Whether the server offers `extension`.
    pub fn has(&self, extension: Extension) -> bool {
        self.entries.iter().any(|(k, _)| k == extension.keyword())
    }

    fn params(&self, extension: Extension) -> impl Iterator<Item = &str> {
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

/// An AUTH exchange in progress.
#[derive(Debug)]
struct AuthState {
    exchange: Exchange,
    /// We cancelled with `*`; after the server's reply, fail with this.
    cancelled: Option<Error>,
}

/// Largest BDAT chunk: big enough to cost few round trips, small enough that each write
/// fits the data-block timer on a slow link.
const BDAT_CHUNK: usize = 1 << 20;

/// One message, which may take several SMTP transactions when the server limits the
/// recipients per transaction (RFC 5321 section 4.5.3.1.10).
#[derive(Debug)]
struct Transaction {
    mail: String,
    options: SendOptions,
    /// The recipients of the current SMTP transaction.
    recipients: Vec<String>,
    wire: Vec<u8>,
    framing: Framing,
    /// Octets of `wire` already sent in BDAT chunks.
    chunked_out: usize,
    accepted: Vec<String>,
    /// Where the current transaction's entries in `accepted` begin.
    accepted_before: usize,
    refused: Vec<RefusedRecipient>,
    /// Recipients answered 452 in the current transaction: for the next one.
    deferred: Vec<RefusedRecipient>,
    /// End-of-content replies of earlier transactions, which delivered the message.
    earlier_replies: Vec<Reply>,
    /// MAIL and every RCPT went out in one flight (RFC 2920), and DATA with them.
    pipelined: bool,
    /// With pipelining, a failure found while replies to commands already sent are
    /// still to come: they are read, then the transaction ends with this error.
    doomed: Option<Error>,
}

impl Transaction {
    /// DATA was sent in the same flight as the envelope.
    fn data_sent_ahead(&self) -> bool {
        self.pipelined && self.framing == Framing::DotStuffed
    }

    /// How the message ends when the current transaction fails with `error`: if an
    /// earlier one delivered it, a delivery whose refusals include this transaction's
    /// recipients; otherwise the error.
    fn outcome_of_failure(mut self, error: Error) -> Result<Delivery, Error> {
        let Some(last) = self.earlier_replies.pop() else {
            return Err(error);
        };
        // Without a reply (the connection was lost) the refusal says so, as a 421 would.
        let reply = error.reply.clone().unwrap_or_else(|| Reply {
            code: 421,
            enhanced: Some(EnhancedStatus {
                class: 4,
                subject: 4,
                detail: 2,
            }),
            lines: vec![format!("no reply: {}", error.message)],
        });
        let failed = self.accepted.split_off(self.accepted_before);
        let unanswered = self
            .recipients
            .iter()
            .filter(|r| !self.refused.iter().any(|f| &f.address == *r))
            .filter(|r| !self.deferred.iter().any(|d| &d.address == *r))
            .filter(|r| !failed.contains(r));
        let refused_now: Vec<RefusedRecipient> = failed
            .iter()
            .chain(unanswered)
            .map(|address| RefusedRecipient {
                address: address.clone(),
                reply: reply.clone(),
            })
            .collect();
        self.refused.extend(refused_now);
        self.refused.append(&mut self.deferred);
        Ok(Delivery {
            accepted: self.accepted,
            refused: self.refused,
            reply: last,
            earlier_replies: self.earlier_replies,
        })
    }
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

/// How much longer than [`MAX_COMMAND_LINE`] an RCPT line with DSN parameters may be.
const DSN_RCPT_EXTRA: usize = 500;

/// The error when no recipient was accepted; transient only if every refusal was (552
/// counting as temporary, RFC 5321 section 4.5.3.1.10). The error's reply is the last
/// refusal; the message names every refused address.
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
    error.transient = refused
        .iter()
        .all(|r| too_many_recipients(&r.reply) || r.reply.is_transient());
    error
}

/// 452, or 552 which RFC 5321 section 4.5.3.1.10 says to treat the same way at RCPT: the
/// server takes no more recipients in this transaction, and a later one may.
fn too_many_recipients(reply: &Reply) -> bool {
    matches!(reply.code, 452 | 552)
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

    /// Transcript lines recorded since the last call.
    pub fn take_transcript(&mut self) -> Vec<String> {
        mem::take(&mut self.transcript)
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

    /// The driver finished the TLS handshake that [`Step::StartTls`] asked for.
    pub fn tls_established(&mut self) {
        debug_assert!(matches!(self.state, State::Handshake));
        self.tls_active = true;
        // RFC 3207 section 4.2: forget everything learned before TLS.
        self.capabilities = Capabilities::default();
        self.send_ehlo();
    }

    /// Starts sending a message; only valid when [`Step::Ready`] was returned. Bad input,
    /// and what the server is known not to support, is refused here, before anything is
    /// sent.
    pub fn send(
        &mut self,
        envelope: Envelope,
        message: &[u8],
        options: SendOptions,
    ) -> Result<(), Error> {
        self.check_ready()?;
        let needs_utf8 = envelope.check()?;
        options.check()?;
        if needs_utf8 && !self.capabilities.has(Extension::SmtpUtf8) {
            return Err(Error::invalid_input(
                Phase::Mail,
                "an address has non-ASCII characters but the server does not offer SMTPUTF8",
            ));
        }
        if options.dsn.is_some() && !self.capabilities.has(Extension::Dsn) {
            return Err(Error::invalid_input(
                Phase::Mail,
                "delivery status notifications were asked for but the server does not offer DSN",
            ));
        }
        if options.require_tls && !(self.tls_active && self.capabilities.has(Extension::RequireTls))
        {
            return Err(Error::new(
                Phase::Mail,
                ErrorKind::Tls,
                "REQUIRETLS was asked for but the connection is not TLS or the server does not \
                 offer REQUIRETLS; the message was not sent",
            ));
        }
        let framing = if self.capabilities.has(Extension::Chunking) {
            Framing::Chunked
        } else {
            Framing::DotStuffed
        };
        let data = data::encode(message, framing)?;
        let eight_bit_mime = self.capabilities.has(Extension::EightBitMime);
        if data.eight_bit && !eight_bit_mime && !needs_utf8 {
            return Err(Error::invalid_input(
                Phase::Data,
                "the message has 8-bit content but the server does not offer 8BITMIME; \
                 compose the message (which encodes it to 7-bit) or encode it first",
            ));
        }
        // RFC 1870 counts CRLFs but not the stuffed dots; the wire length may only overstate it.
        let size = data.wire.len() as u64;
        if let Some(limit) = self.capabilities.size_limit()
            && size > limit
        {
            return Err(Error::invalid_input(
                Phase::Mail,
                format!("the message is {size} bytes but the server accepts at most {limit}"),
            ));
        }
        let declared = MailDeclarations {
            size: self.capabilities.has(Extension::Size).then_some(size),
            eight_bit: data.eight_bit && eight_bit_mime,
            smtputf8: needs_utf8,
        };
        let mail = params::mail_command(&envelope.sender, declared, &options);
        if mail.len() + 2 > MAX_COMMAND_LINE {
            return Err(Error::invalid_input(
                Phase::Mail,
                "the MAIL command would be too long",
            ));
        }
        // RFC 3461 section 4 lets NOTIFY and ORCPT lengthen an RCPT line by 500 octets.
        let dsn_extra = options
            .dsn
            .as_ref()
            .is_some_and(|d| d.notify.is_some() || d.original_recipients);
        let rcpt_limit = MAX_COMMAND_LINE + if dsn_extra { DSN_RCPT_EXTRA } else { 0 };
        for recipient in &envelope.recipients {
            if params::rcpt_command(recipient, &options).len() + 2 > rcpt_limit {
                return Err(Error::invalid_input(
                    Phase::Rcpt,
                    format!(
                        "the RCPT command for <{recipient}> would be longer than \
                         {rcpt_limit} octets"
                    ),
                ));
            }
        }
        self.transaction = Some(Transaction {
            mail,
            options,
            recipients: envelope.recipients,
            wire: data.wire,
            framing,
            chunked_out: 0,
            accepted: Vec::new(),
            accepted_before: 0,
            refused: Vec::new(),
            deferred: Vec::new(),
            earlier_replies: Vec::new(),
            pipelined: self.capabilities.has(Extension::Pipelining),
            doomed: None,
        });
        self.start_transaction();
        Ok(())
    }

    /// Checks that the server is still there (RFC 5321 section 4.1.1.9); only valid when
    /// [`Step::Ready`] was returned. [`Step::Ready`] follows if it is.
    pub fn noop(&mut self) -> Result<(), Error> {
        self.check_ready()?;
        self.command("NOOP");
        self.state = State::Noop;
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

    /// MAIL FROM for the transaction's current recipients; with pipelining every RCPT
    /// too, and DATA when the content goes after a 354 (RFC 2920).
    fn start_transaction(&mut self) {
        let transaction = self.in_transaction();
        transaction.accepted_before = transaction.accepted.len();
        let mail = transaction.mail.clone();
        self.command(&mail);
        self.state = State::Mail;
        let transaction = self.in_transaction();
        if transaction.pipelined {
            let data_ahead = transaction.data_sent_ahead();
            for index in 0..transaction.recipients.len() {
                self.rcpt_command(index);
            }
            if data_ahead {
                self.command("DATA");
            }
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
            if self.capabilities.has(Extension::StartTls) {
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
        let mechanism = match Mechanism::choose(&credentials, &offered) {
            Ok(mechanism) => mechanism,
            Err(message) => return self.fail(Error::new(Phase::Auth, ErrorKind::Auth, message)),
        };
        let started = Exchange::start(
            mechanism,
            &credentials,
            &self.config.server_host,
            self.config.server_port,
            &self.config.sasl_nonce,
        );
        let (exchange, initial) = match started {
            Ok(started) => started,
            Err(error) => return self.fail(error),
        };
        match initial {
            Some(initial) => {
                let line = format!("AUTH {} {initial}", mechanism.name());
                let shown = format!("AUTH {} <credentials redacted>", mechanism.name());
                self.secret_command(&line, &shown);
                self.sent_secrets.push(initial);
            }
            None => self.command(&format!("AUTH {}", mechanism.name())),
        }
        self.state = State::Auth(Box::new(AuthState {
            exchange,
            cancelled: None,
        }));
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

    fn on_auth(&mut self, reply: Reply, mut auth: Box<AuthState>) {
        if let Some(error) = auth.cancelled.take() {
            // The server's answer to our `*`; the exchange failed on our side.
            return self.fail(error);
        }
        if reply.is_positive() {
            return match auth.exchange.success() {
                Ok(()) => self.state = State::Ready,
                Err(error) => self.fail(error),
            };
        }
        if reply.code == 334 {
            match auth.exchange.challenge(&reply.text()) {
                Response::Line(line) => {
                    self.secret_command(&line, "<credentials redacted>");
                    self.sent_secrets.push(line);
                }
                Response::Cancel(error) => {
                    self.command("*");
                    auth.cancelled = Some(error);
                }
            }
            self.state = State::Auth(auth);
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
        let with_token = self
            .config
            .credentials
            .as_ref()
            .is_some_and(|c| matches!(c.secret, Secret::BearerToken(_)));
        let refused = if with_token {
            "the server rejected the user name or token"
        } else {
            "the server rejected the user name or password"
        };
        let mut message = match reply.code {
            535 => refused.to_owned(),
            _ => format!("AUTH {} failed", auth.exchange.mechanism().name()),
        };
        if let Some(said) = auth.exchange.server_error() {
            message.push_str(&format!(" (the server said: {said})"));
        }
        self.fail(Error::from_reply(
            Phase::Auth,
            ErrorKind::Auth,
            message,
            reply,
        ));
    }

    fn on_noop(&mut self, reply: Reply) {
        if reply.is_positive() {
            self.state = State::Ready;
        } else {
            self.fail_with_reply(Phase::Mail, "NOOP was refused", reply);
        }
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
            // The replies to RCPT (and DATA) are on their way; read them first.
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
            let address = transaction.recipients[index].clone();
            if reply.is_positive() {
                transaction.accepted.push(address);
            } else if too_many_recipients(&reply) {
                // Too many recipients: the rest go in a further transaction (RFC 5321
                // section 4.5.3.1.10), if this one delivers to anyone.
                transaction
                    .deferred
                    .push(RefusedRecipient { address, reply });
            } else {
                transaction
                    .refused
                    .push(RefusedRecipient { address, reply });
            }
        }
        if index + 1 < transaction.recipients.len() {
            return self.next_rcpt(index + 1);
        }
        if transaction.doomed.is_none() && transaction.accepted.len() == transaction.accepted_before
        {
            // Nobody took it in this transaction, so a further one would fare no better.
            let deferred = mem::take(&mut transaction.deferred);
            transaction.refused.extend(deferred);
            let round: Vec<RefusedRecipient> = transaction
                .refused
                .iter()
                .filter(|r| transaction.recipients.contains(&r.address))
                .cloned()
                .collect();
            transaction.doomed = Some(every_recipient_refused(&round));
        }
        match (transaction.data_sent_ahead(), transaction.doomed.take()) {
            (false, Some(error)) => self.reset_then_fail(error),
            (false, None) if transaction.framing == Framing::Chunked => self.send_chunk(),
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
            let size = self.in_transaction().wire.len();
            self.record(format!("C: <message: {size} bytes>"));
            let transaction = self.transaction.as_ref().expect("DATA is in a transaction");
            self.out.extend_from_slice(&transaction.wire);
            self.out_is_content = true;
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

    /// Sends the next BDAT chunk (RFC 3030); the last one says LAST.
    fn send_chunk(&mut self) {
        let transaction = self.transaction.as_mut().expect("BDAT is in a transaction");
        let start = transaction.chunked_out;
        let end = transaction.wire.len().min(start + BDAT_CHUNK);
        let last = end == transaction.wire.len();
        transaction.chunked_out = end;
        let size = end - start;
        let line = if last {
            format!("BDAT {size} LAST")
        } else {
            format!("BDAT {size}")
        };
        self.command(&line);
        self.record(format!("C: <message: {size} bytes>"));
        let transaction = self.transaction.as_ref().expect("BDAT is in a transaction");
        self.out.extend_from_slice(&transaction.wire[start..end]);
        self.out_is_content = true;
        self.state = State::Bdat { last };
    }

    fn on_bdat_chunk(&mut self, reply: Reply) {
        if reply.is_positive() {
            self.send_chunk();
        } else {
            self.reject_transaction(Phase::Data, "a BDAT chunk was refused", reply);
        }
    }

    /// The reply to the end of the content: the final dot, or BDAT LAST.
    fn on_content_end(&mut self, reply: Reply) {
        let mut transaction = self.transaction.take().expect("data ends a transaction");
        self.state = State::Ready;
        if let Some(error) = transaction.doomed.take() {
            // The reply is to the empty message that closed a failed pipelined transaction.
            if reply.is_intermediate() {
                return self.fail(error);
            }
            let outcome = transaction.outcome_of_failure(error);
            self.outcomes.push_back(outcome);
        } else if reply.is_positive() {
            if transaction.deferred.is_empty() {
                self.outcomes.push_back(Ok(Delivery {
                    accepted: transaction.accepted,
                    refused: transaction.refused,
                    reply,
                    earlier_replies: transaction.earlier_replies,
                }));
            } else {
                transaction.earlier_replies.push(reply);
                transaction.recipients =
                    transaction.deferred.drain(..).map(|r| r.address).collect();
                transaction.chunked_out = 0;
                self.transaction = Some(transaction);
                self.start_transaction();
            }
        } else if reply.code / 100 >= 4 {
            let error = Error::from_reply(
                Phase::Data,
                ErrorKind::Rejected,
                "the message was refused after its content was sent",
                reply,
            );
            let outcome = transaction.outcome_of_failure(error);
            self.outcomes.push_back(outcome);
        } else {
            self.fail(Error::from_reply(
                Phase::Data,
                ErrorKind::Protocol,
                "unexpected reply to the end of the message",
                reply,
            ));
        }
    }

    fn on_rset(&mut self, reply: Reply, then: Result<Delivery, Error>) {
        if reply.is_positive() {
            self.state = State::Ready;
            self.outcomes.push_back(then);
        } else {
            // The transaction failed and the server will not reset: the session is unusable.
            match then {
                Ok(delivery) => {
                    self.outcomes.push_back(Ok(delivery));
                    self.fail_silently();
                }
                Err(error) => self.fail(error),
            }
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
        let transaction = self.in_transaction();
        let line = params::rcpt_command(&transaction.recipients[index], &transaction.options);
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
        let then = match self.transaction.take() {
            Some(transaction) => transaction.outcome_of_failure(error),
            None => Err(error),
        };
        self.command("RSET");
        self.state = State::Rset { then };
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

    /// A server that echoes the secret back (it learns it from AUTH) must not get it
    /// into our transcript, errors or results: the secret and every AUTH line we sent
    /// are masked.
    fn redact(&self, mut reply: Reply) -> Reply {
        let Some(credentials) = &self.config.credentials else {
            return reply;
        };
        let secret = credentials.secret_text();
        let encoded = BASE64.encode(secret);
        let secrets = [secret, encoded.as_str()]
            .into_iter()
            .chain(self.sent_secrets.iter().map(String::as_str))
            // Shorter strings would mask ordinary words; they are also no secret worth the name.
            .filter(|s| s.len() >= sasl::MIN_REDACTED_LEN);
        for secret in secrets {
            for line in &mut reply.lines {
                if line.contains(secret) {
                    *line = line.replace(secret, "<redacted>");
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
