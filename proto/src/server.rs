//! The relay's side of SMTP (`sendbox serve`), free of I/O: bytes and the time in, replies
//! and finished messages out.
//!
//! What a client may make of it is bounded here, as rules of the dialogue:
//!
//! - **Framing.** Every line ends in CRLF. A bare LF, a bare CR or a NUL anywhere, in a
//!   command or in the content, is refused with 521 and the connection closed, as Postfix
//!   3.9 does by default (`smtpd_forbid_bare_newline`). Only CRLF `.` CRLF ends a message,
//!   so no end-of-data look-alike (the SMTP smuggling of CVE-2023-51764) can start a second
//!   transaction.
//! - **Pipelining.** A client that sends content after a DATA that was refused breaks RFC
//!   2920 (DATA ends a group): the content would run as commands, so the connection closes.
//! - **Before the login** (when one is required): a few commands and a few seconds, and a
//!   failed AUTH answered only after a delay, the connection closed after a few of them.
//! - **Always:** the line length, the time for each line, the message size, the recipients
//!   per message (and RCPTs past them), and the number of errors and of commands that move
//!   no mail (EHLO, HELO, NOOP, RSET, VRFY, HELP).
//!
//! A successful AUTH lasts for the session: RSET and a second EHLO keep it (RFC 4954
//! section 4); STARTTLS forgets everything (RFC 3207 section 4.2).

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::command::check_mailbox;
use crate::error::Phase;
use crate::time::Instant;

/// The longest command or content line, CRLF included. RFC 5321 sets 512 and 1000; some
/// programs write longer content lines, which the sender re-encodes anyway.
pub const MAX_LINE: usize = 8192;
/// Commands a client may give before it logs in, when a login is required (a real client
/// needs four: EHLO, STARTTLS, EHLO and AUTH).
pub const MAX_COMMANDS_BEFORE_LOGIN: u32 = 20;
/// Failed logins before the connection is closed.
pub const MAX_LOGIN_FAILURES: u32 = 3;
/// How long the answer to a failed login is held back, so that guessing is slow.
pub const LOGIN_FAILURE_DELAY_MS: u32 = 1_000;
/// Commands that move no mail (EHLO, HELO, NOOP, RSET, VRFY, HELP) between two messages,
/// as Postfix's `smtpd_junk_command_limit`.
pub const MAX_JUNK_COMMANDS: u32 = 100;
/// Refused commands before the connection is closed, as Postfix's `smtpd_hard_error_limit`.
pub const MAX_ERRORS: u32 = 20;
/// RCPT commands past the recipient limit before the connection is closed, as Postfix's
/// `smtpd_recipient_overshoot_limit`.
pub const MAX_RECIPIENT_OVERSHOOT: u32 = 1000;

/// The user and password a client must log in with.
#[derive(Clone, PartialEq, Eq)]
pub struct Login {
    /// The user name.
    pub user: String,
    /// The password.
    pub password: String,
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Login")
            .field("user", &self.user)
            .field("password", &"<hidden>")
            .finish()
    }
}

/// What the relay offers and how far it bounds a client.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The name in the greeting and the EHLO reply.
    pub hostname: String,
    /// The largest message taken, in octets of content after dot-unstuffing.
    pub max_message: usize,
    /// Recipients per message (RFC 5321 section 4.5.3.1.8 asks for at least 100).
    pub max_recipients: usize,
    /// STARTTLS is offered, and required before AUTH, MAIL and the rest.
    pub starttls: bool,
    /// A login is offered (AUTH PLAIN and LOGIN) and required before MAIL.
    pub login: Option<Login>,
    /// The time each line may take, from the moment the relay waits for it.
    pub line_ms: u32,
    /// With a login required, the time from connecting to logging in.
    pub login_ms: u32,
}

/// What the driver must do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// Send these bytes to the client.
    Send(Vec<u8>),
    /// Start TLS on the connection now, before reading anything else: the 220 has been
    /// sent, and whatever the client sent after STARTTLS in the clear has been dropped.
    StartTls,
    /// A whole message to keep. Nothing more is read until [`Server::answer`] is called.
    Message(Incoming),
    /// A login failed. The driver counts it against the client's address and sets the
    /// [`login delay`](Server::set_login_delay) of that address's connections, since a
    /// guesser can spread its tries over many connections and hang up on each.
    LoginFailed,
    /// Close the connection: the last reply has been sent.
    Close,
}

/// A message the client has finished sending.
#[derive(Debug, PartialEq, Eq)]
pub struct Incoming {
    /// The envelope sender; empty for the null sender `<>`.
    pub sender: String,
    /// The envelope recipients, each checked as the sender checks them.
    pub recipients: Vec<String>,
    /// The content, CRLF line ends, dot-stuffing removed.
    pub content: Vec<u8>,
}

/// The driver's answer to a message.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// Kept for good (on disk, synced), under this id.
    Kept(String),
    /// Not kept; the client may try again later. The text is for the client.
    NotNow(String),
}

/// Where the dialogue is.
#[derive(Debug)]
enum Stage {
    /// Before EHLO or HELO.
    Greeted,
    /// Between transactions.
    Ready,
    /// After MAIL: RCPT and DATA.
    Transaction(Transaction),
    /// Reading content, until CRLF.CRLF.
    Content(Transaction, Content),
    /// A message handed to the driver, not answered yet.
    Keeping,
    /// AUTH PLAIN, waiting for the response to the empty challenge.
    PlainResponse,
    /// AUTH LOGIN, waiting for the user name, then the password.
    LoginUser,
    LoginPassword(String),
    /// Closing: nothing more is read.
    Closed,
}

#[derive(Debug, Default)]
struct Transaction {
    sender: String,
    recipients: Vec<String>,
    /// MAIL said SMTPUTF8: addresses may be UTF-8 (RFC 6531).
    smtputf8: bool,
}

#[derive(Debug, Default)]
struct Content {
    bytes: Vec<u8>,
    too_big: bool,
}

/// One client's dialogue with the relay.
pub struct Server {
    config: ServerConfig,
    stage: Stage,
    input: Vec<u8>,
    events: VecDeque<Event>,
    /// A reply held back until then (a failed login's), and whether it closes.
    held: Option<(Instant, Vec<u8>, bool)>,
    tls: bool,
    logged_in: bool,
    /// A MAIL command has been taken in this session.
    mailed: bool,
    connected_at: Instant,
    /// When the relay began waiting for the current line.
    waiting_since: Instant,
    commands: u32,
    /// RCPT commands past the recipient limit, this session.
    overshoot: u32,
    /// How long every login verdict waits, success or failure: the driver's penalty for
    /// this client's earlier failures.
    login_delay_ms: u32,
    junk: u32,
    errors: u32,
    login_failures: u32,
    close_emitted: bool,
}

impl fmt::Debug for Server {
    /// The stage and the flags: never the input, which may hold a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("stage", &self.stage)
            .field("tls", &self.tls)
            .field("logged_in", &self.logged_in)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A new connection at `now`: its greeting is the first event.
    pub fn new(config: ServerConfig, now: Instant) -> Server {
        let mut server = Server {
            stage: Stage::Greeted,
            input: Vec::new(),
            events: VecDeque::new(),
            held: None,
            tls: false,
            logged_in: false,
            mailed: false,
            connected_at: now,
            waiting_since: now,
            commands: 0,
            overshoot: 0,
            login_delay_ms: 0,
            junk: 0,
            errors: 0,
            login_failures: 0,
            close_emitted: false,
            config,
        };
        let greeting = format!("{} ESMTP sendbox", server.config.hostname);
        server.reply(220, None, &greeting);
        server
    }

    /// Bytes the client sent.
    pub fn receive(&mut self, bytes: &[u8]) {
        if !matches!(self.stage, Stage::Closed) {
            self.input.extend_from_slice(bytes);
        }
    }

    /// The client closed its side: whatever is left unfinished is dropped.
    pub fn client_closed(&mut self) {
        self.input.clear();
        self.stage = Stage::Closed;
    }

    /// The next thing to do at `now`, or `None` until more bytes arrive or the
    /// [`deadline`](Self::deadline) passes.
    #[must_use = "an event ignored is lost: it is taken off the queue"]
    pub fn poll(&mut self, now: Instant) -> Option<Event> {
        loop {
            if let Some(event) = self.events.pop_front() {
                return Some(event);
            }
            if let Some((until, _, _)) = &self.held {
                if now < *until {
                    return None;
                }
                let (_, reply, closes) = self.held.take()?;
                self.events.push_back(Event::Send(reply));
                if closes {
                    self.close();
                }
                continue;
            }
            match self.stage {
                Stage::Closed => {
                    if self.close_emitted {
                        return None;
                    }
                    self.close_emitted = true;
                    return Some(Event::Close);
                }
                Stage::Keeping => return None,
                _ => {}
            }
            if self.deadline().is_some_and(|deadline| now >= deadline) {
                self.timed_out(now);
                continue;
            }
            let line = match self.next_line() {
                Ok(Some(line)) => line,
                Ok(None) => return None,
                Err(refusal) => {
                    self.reply(refusal.code, Some(refusal.status), &refusal.text);
                    self.close();
                    continue;
                }
            };
            self.take(line, now);
            self.waiting_since = now;
        }
    }

    /// When [`poll`](Self::poll) must be called again even if nothing arrives: the end of
    /// the time for the current line or for logging in, or a held reply's release.
    pub fn deadline(&self) -> Option<Instant> {
        if let Some((until, _, _)) = &self.held {
            return Some(*until);
        }
        if matches!(self.stage, Stage::Closed | Stage::Keeping) {
            return None;
        }
        let line = self.waiting_since.plus_ms(self.config.line_ms);
        Some(match self.login_pending() {
            true => line.min(self.connected_at.plus_ms(self.config.login_ms)),
            false => line,
        })
    }

    /// The driver's answer to the [`Event::Message`] it was given; ignored at any other
    /// time.
    pub fn answer(&mut self, answer: Answer, now: Instant) {
        if !matches!(self.stage, Stage::Keeping) {
            return;
        }
        self.stage = Stage::Ready;
        self.waiting_since = now;
        match answer {
            Answer::Kept(id) => {
                self.junk = 0;
                self.reply(250, Some("2.0.0"), &format!("queued as {id}"));
            }
            Answer::NotNow(text) => self.reply(451, Some("4.3.0"), &text),
        }
    }

    /// Sets how long each login verdict of this connection waits from then on, success
    /// or failure alike (a failure waits at least [`LOGIN_FAILURE_DELAY_MS`]): the
    /// penalty the driver keeps for the client's address after failed logins.
    pub fn set_login_delay(&mut self, ms: u32) {
        self.login_delay_ms = ms;
    }

    /// Whether the connection keeps its place when the relay is full: the client has
    /// shown it is there to send mail (it logged in, or, where no login is asked for, it
    /// began a transaction), or a login verdict is being held back for it. The held
    /// verdict counts whatever it is, so that an honest client waiting out a penalty is
    /// not closed, and a guesser cannot tell a right guess by which connections survive.
    pub fn keeps_its_place(&self) -> bool {
        let proven = match &self.config.login {
            Some(_) => self.logged_in,
            None => self.mailed,
        };
        proven || self.held.is_some()
    }

    /// Whether the connection is over: [`Event::Close`] has been given.
    pub fn is_closed(&self) -> bool {
        self.close_emitted
    }

    fn login_pending(&self) -> bool {
        self.config.login.is_some() && !self.logged_in
    }

    fn timed_out(&mut self, now: Instant) {
        let login_over = self.login_pending()
            && now >= self.connected_at.plus_ms(self.config.login_ms)
            && !matches!(self.stage, Stage::Content(..));
        if login_over {
            self.reply(421, Some("4.7.0"), "no login in time, closing");
        } else {
            self.reply(421, Some("4.4.2"), "too slow, closing");
        }
        self.close();
    }

    /// The next whole line, CRLF included, or why the stream is refused.
    fn next_line(&mut self) -> Result<Option<Vec<u8>>, Refusal> {
        let end = memchr::memchr(b'\n', &self.input);
        let line_end = match end {
            Some(end) => end + 1,
            None if self.input.len() > MAX_LINE => return Err(Refusal::TOO_LONG),
            None => {
                // A CR that is not the last byte and not followed by LF is bare already.
                check_framing(&self.input[..self.input.len().saturating_sub(1)])?;
                return Ok(None);
            }
        };
        if line_end > MAX_LINE {
            return Err(Refusal::TOO_LONG);
        }
        let line: Vec<u8> = self.input.drain(..line_end).collect();
        if line.len() < 2 || line[line.len() - 2] != b'\r' {
            return Err(Refusal::BARE_LF);
        }
        check_framing(&line[..line.len() - 2])?;
        Ok(Some(line))
    }

    fn take(&mut self, line: Vec<u8>, now: Instant) {
        match std::mem::replace(&mut self.stage, Stage::Closed) {
            Stage::Content(transaction, content) => self.content(transaction, content, &line),
            Stage::PlainResponse => {
                self.stage = Stage::Ready;
                self.plain_response(trim_crlf(&line), now);
            }
            Stage::LoginUser => match decode_base64(trim_crlf(&line)) {
                Ok(user) => {
                    self.stage = Stage::LoginPassword(user);
                    self.reply(334, None, "UGFzc3dvcmQ6");
                }
                Err(refusal) => {
                    self.stage = Stage::Ready;
                    self.refuse(refusal);
                }
            },
            Stage::LoginPassword(user) => {
                self.stage = Stage::Ready;
                match decode_base64(trim_crlf(&line)) {
                    Ok(password) => self.check_login(&user, &password, now),
                    Err(refusal) => self.refuse(refusal),
                }
            }
            stage => {
                self.stage = stage;
                self.command(trim_crlf(&line), now);
            }
        }
    }

    fn command(&mut self, line: &[u8], now: Instant) {
        let Ok(line) = std::str::from_utf8(line) else {
            return self.refuse(Refusal::new(500, "5.5.2", "command is not UTF-8"));
        };
        // RFC 5321 says SP; a tab is taken too, so that `DATA<TAB>` is DATA, not an
        // unknown command followed by content read as commands.
        let (verb, argument) = match line.split_once([' ', '\t']) {
            Some((verb, argument)) => (verb, argument),
            None => (line, ""),
        };
        let verb = verb.to_ascii_uppercase();
        if verb == "BDAT" {
            // Not offered (no CHUNKING): its chunk follows at once, and could not be told
            // from commands, whatever else is refused.
            self.reply(
                502,
                Some("5.5.1"),
                "BDAT is not offered (no CHUNKING), closing",
            );
            return self.close();
        }
        if self.login_pending() {
            self.commands += 1;
            if self.commands > MAX_COMMANDS_BEFORE_LOGIN {
                self.reply(
                    421,
                    Some("4.7.0"),
                    "too many commands before login, closing",
                );
                return self.close();
            }
        }
        let before_tls = self.config.starttls && !self.tls;
        if before_tls
            && !matches!(
                verb.as_str(),
                "EHLO" | "HELO" | "STARTTLS" | "NOOP" | "QUIT"
            )
        {
            let refusal = Refusal::new(530, "5.7.0", "Must issue a STARTTLS command first");
            return match verb.as_str() {
                "DATA" => self.refuse_data(refusal),
                _ => self.refuse(refusal),
            };
        }
        match verb.as_str() {
            "EHLO" | "HELO" => {
                if self.junk_command() {
                    self.hello(verb == "EHLO", argument);
                }
            }
            "STARTTLS" => self.starttls(argument),
            "AUTH" => self.auth(argument, now),
            "MAIL" => self.mail(argument),
            "RCPT" => self.rcpt(argument),
            "DATA" => self.data(argument),
            "RSET" => {
                if self.junk_command() {
                    self.end_transaction();
                    self.reply(250, Some("2.0.0"), "OK");
                }
            }
            "NOOP" => {
                if self.junk_command() {
                    self.reply(250, Some("2.0.0"), "OK");
                }
            }
            "VRFY" => {
                if self.junk_command() {
                    self.reply(
                        252,
                        Some("2.5.0"),
                        "cannot verify, but will relay the message",
                    );
                }
            }
            "HELP" => {
                if self.junk_command() {
                    self.reply(214, Some("2.0.0"), "see RFC 5321");
                }
            }
            "QUIT" => {
                self.reply(221, Some("2.0.0"), "bye");
                self.close();
            }
            "EXPN" | "ETRN" | "TURN" => {
                self.refuse(Refusal::new(502, "5.5.1", "command not implemented"))
            }
            _ => self.refuse(Refusal::new(500, "5.5.1", "command not recognized")),
        }
    }

    fn hello(&mut self, extended: bool, name: &str) {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_graphic()) {
            let syntax = if extended { "EHLO" } else { "HELO" };
            return self.refuse(Refusal::new(
                501,
                "5.5.4",
                &format!("Syntax: {syntax} your.host.name"),
            ));
        }
        self.end_transaction();
        self.stage = Stage::Ready;
        let host = &self.config.hostname;
        if !extended {
            return self.reply(250, None, &host.clone());
        }
        let mut lines = vec![
            format!("{host} greets {name}"),
            "PIPELINING".to_owned(),
            format!("SIZE {}", self.config.max_message),
            "8BITMIME".to_owned(),
            "SMTPUTF8".to_owned(),
            "ENHANCEDSTATUSCODES".to_owned(),
        ];
        if self.config.starttls && !self.tls {
            lines.push("STARTTLS".to_owned());
        }
        if self.auth_offered() {
            lines.push("AUTH PLAIN LOGIN".to_owned());
        }
        self.reply_lines(250, &lines);
    }

    fn auth_offered(&self) -> bool {
        self.config.login.is_some() && (self.tls || !self.config.starttls)
    }

    fn starttls(&mut self, argument: &str) {
        if !self.config.starttls || self.tls {
            return self.refuse(Refusal::new(502, "5.5.1", "STARTTLS is not available here"));
        }
        if !argument.is_empty() {
            return self.refuse(Refusal::new(501, "5.5.4", "Syntax: STARTTLS"));
        }
        self.reply(220, Some("2.0.0"), "Ready to start TLS");
        // RFC 3207 section 4.2: forget everything said in the clear, and what the client
        // sent after STARTTLS before the handshake must not pass for what came over TLS.
        self.input.clear();
        self.end_transaction();
        self.stage = Stage::Greeted;
        self.tls = true;
        self.events.push_back(Event::StartTls);
    }

    fn auth(&mut self, argument: &str, now: Instant) {
        if !self.auth_offered() {
            return self.refuse(Refusal::new(502, "5.5.1", "AUTH is not available here"));
        }
        if self.logged_in {
            return self.refuse(Refusal::new(503, "5.5.1", "already logged in"));
        }
        if self.refused_unless_between_transactions("not during a transaction") {
            return;
        }
        if argument.is_empty() {
            return self.refuse(Refusal::new(501, "5.5.4", "Syntax: AUTH mechanism"));
        }
        let (mechanism, initial) = match argument.split_once(' ') {
            Some((mechanism, initial)) => (mechanism, Some(initial)),
            None => (argument, None),
        };
        match (mechanism.to_ascii_uppercase().as_str(), initial) {
            ("PLAIN", None) => {
                self.stage = Stage::PlainResponse;
                self.reply(334, None, "");
            }
            ("PLAIN", Some(initial)) => self.plain_response(initial.as_bytes(), now),
            ("LOGIN", None) => {
                self.stage = Stage::LoginUser;
                self.reply(334, None, "VXNlcm5hbWU6");
            }
            ("LOGIN", Some(initial)) => match decode_base64(initial.as_bytes()) {
                Ok(user) => {
                    self.stage = Stage::LoginPassword(user);
                    self.reply(334, None, "UGFzc3dvcmQ6");
                }
                Err(refusal) => self.refuse(refusal),
            },
            _ => self.refuse(Refusal::new(
                504,
                "5.5.4",
                "unrecognized authentication mechanism",
            )),
        }
    }

    /// RFC 4616: `authzid NUL authcid NUL passwd`; the authzid empty or the user itself.
    fn plain_response(&mut self, response: &[u8], now: Instant) {
        let decoded = match decode_base64(response) {
            Ok(decoded) => decoded,
            Err(refusal) => return self.refuse(refusal),
        };
        let mut parts = decoded.split('\0');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(authzid), Some(user), Some(password), None)
                if authzid.is_empty() || authzid == user =>
            {
                self.check_login(user, password, now)
            }
            _ => self.failed_login(now),
        }
    }

    fn check_login(&mut self, user: &str, password: &str, now: Instant) {
        let matches = self.config.login.as_ref().is_some_and(|login| {
            constant_time_eq(login.user.as_bytes(), user.as_bytes())
                & constant_time_eq(login.password.as_bytes(), password.as_bytes())
        });
        if !matches {
            return self.failed_login(now);
        }
        self.logged_in = true;
        let reply = format_reply(235, Some("2.7.0"), &["Authentication successful"]);
        match self.login_delay_ms {
            0 => self.events.push_back(Event::Send(reply)),
            // After failures from this client, a success waits as long as a failure
            // would: a guesser that hangs up early learns nothing sooner.
            delay => self.held = Some((now.plus_ms(delay), reply, false)),
        }
    }

    fn failed_login(&mut self, now: Instant) {
        self.login_failures += 1;
        let closes = self.login_failures >= MAX_LOGIN_FAILURES;
        let reply = if closes {
            format_reply(421, Some("4.7.0"), &["too many failed logins, closing"])
        } else {
            format_reply(535, Some("5.7.8"), &["Authentication credentials invalid"])
        };
        let delay = LOGIN_FAILURE_DELAY_MS.max(self.login_delay_ms);
        self.held = Some((now.plus_ms(delay), reply, closes));
        // Now, not when the reply goes out: the client may hang up before then.
        self.events.push_back(Event::LoginFailed);
    }

    /// Refuses (503) a command that needs EHLO done and no transaction open, saying
    /// `in_transaction` for the latter; true when it did.
    fn refused_unless_between_transactions(&mut self, in_transaction: &str) -> bool {
        let why = match self.stage {
            Stage::Greeted => "EHLO first",
            Stage::Transaction(_) => in_transaction,
            _ => return false,
        };
        self.refuse(Refusal::new(503, "5.5.1", why));
        true
    }

    fn mail(&mut self, argument: &str) {
        if self.refused_unless_between_transactions("nested MAIL command") {
            return;
        }
        if self.login_pending() {
            return self.refuse(Refusal::new(530, "5.7.0", "Authentication required"));
        }
        let (sender, parameters) = match path(argument, "FROM:") {
            Ok(found) => found,
            Err(refusal) => return self.refuse(refusal),
        };
        if let Err(error) = match sender {
            "" => Ok(false),
            sender => check_mailbox(Phase::Mail, sender),
        } {
            return self.refuse(Refusal::new(553, "5.1.7", &error.message));
        }
        let mut smtputf8 = false;
        for parameter in parameters.split(' ').filter(|p| !p.is_empty()) {
            let (keyword, value) = match parameter.split_once('=') {
                Some((keyword, value)) => (keyword, Some(value)),
                None => (parameter, None),
            };
            match (keyword.to_ascii_uppercase().as_str(), value) {
                ("SIZE", Some(size))
                    if !size.is_empty() && size.bytes().all(|b| b.is_ascii_digit()) =>
                {
                    // Digits too many for a u64 are too big all the same.
                    if size
                        .parse::<u64>()
                        .map_or(true, |size| size > self.config.max_message as u64)
                    {
                        return self.refuse(Refusal::new(
                            552,
                            "5.3.4",
                            &format!("message over {} bytes", self.config.max_message),
                        ));
                    }
                }
                ("BODY", Some(body))
                    if body.eq_ignore_ascii_case("7BIT")
                        || body.eq_ignore_ascii_case("8BITMIME") => {}
                ("SMTPUTF8", None) => smtputf8 = true,
                // RFC 4954 section 5: the submitter's identity; not needed to relay.
                ("AUTH", Some(_)) => {}
                _ => {
                    return self.refuse(Refusal::new(
                        555,
                        "5.5.4",
                        &format!("MAIL parameter {} is not taken", printable(parameter)),
                    ));
                }
            }
        }
        if !sender.is_ascii() && !smtputf8 {
            return self.refuse(NOT_SMTPUTF8);
        }
        self.stage = Stage::Transaction(Transaction {
            sender: sender.to_owned(),
            recipients: Vec::new(),
            smtputf8,
        });
        self.mailed = true;
        self.reply(250, Some("2.1.0"), "OK");
    }

    fn rcpt(&mut self, argument: &str) {
        let Stage::Transaction(transaction) = &self.stage else {
            return self.refuse(Refusal::new(503, "5.5.1", "MAIL first"));
        };
        let (full, smtputf8) = (
            transaction.recipients.len() >= self.config.max_recipients,
            transaction.smtputf8,
        );
        if full {
            // RFC 5321 section 4.5.3.1.10: the client sends the rest later. One that goes
            // on and on is closed, as Postfix's `smtpd_recipient_overshoot_limit`.
            self.overshoot += 1;
            if self.overshoot > MAX_RECIPIENT_OVERSHOOT {
                self.reply(421, Some("4.7.0"), "too many recipients, closing");
                return self.close();
            }
            return self.reply(452, Some("4.5.3"), "too many recipients");
        }
        let (recipient, parameters) = match path(argument, "TO:") {
            Ok(found) => found,
            Err(refusal) => return self.refuse(refusal),
        };
        if !parameters.trim().is_empty() {
            let message = format!("RCPT parameters are not taken: {}", printable(parameters));
            return self.refuse(Refusal::new(555, "5.5.4", &message));
        }
        if let Err(error) = check_mailbox(Phase::Rcpt, recipient) {
            return self.refuse(Refusal::new(553, "5.1.3", &error.message));
        }
        if !recipient.is_ascii() && !smtputf8 {
            return self.refuse(NOT_SMTPUTF8);
        }
        let recipient = recipient.to_owned();
        if let Stage::Transaction(transaction) = &mut self.stage {
            transaction.recipients.push(recipient);
        }
        self.reply(250, Some("2.1.5"), "OK");
    }

    fn data(&mut self, argument: &str) {
        let refusal = match &self.stage {
            _ if !argument.is_empty() => Refusal::new(501, "5.5.4", "Syntax: DATA"),
            Stage::Transaction(transaction) if !transaction.recipients.is_empty() => {
                let Stage::Transaction(transaction) =
                    std::mem::replace(&mut self.stage, Stage::Closed)
                else {
                    unreachable!("matched just above");
                };
                self.stage = Stage::Content(transaction, Content::default());
                return self.reply(354, None, "End data with <CR><LF>.<CR><LF>");
            }
            Stage::Transaction(_) => Refusal::new(554, "5.5.1", "no valid recipients"),
            _ => Refusal::new(503, "5.5.1", "MAIL first"),
        };
        self.refuse_data(refusal);
    }

    /// Refuses DATA. RFC 2920 section 3.1: DATA ends a group, so what follows it already
    /// is content sent without waiting for 354, which must not run as commands.
    fn refuse_data(&mut self, refusal: Refusal) {
        self.refuse(refusal);
        if !self.input.is_empty() {
            self.reply(
                554,
                Some("5.5.0"),
                "content sent before the reply to DATA, closing",
            );
            self.close();
        }
    }

    fn content(&mut self, transaction: Transaction, mut content: Content, line: &[u8]) {
        if line == b".\r\n" {
            if content.too_big {
                self.stage = Stage::Ready;
                let text = format!("message over {} bytes", self.config.max_message);
                return self.reply(552, Some("5.3.4"), &text);
            }
            self.stage = Stage::Keeping;
            self.events.push_back(Event::Message(Incoming {
                sender: transaction.sender,
                recipients: transaction.recipients,
                content: content.bytes,
            }));
            return;
        }
        let line = line.strip_prefix(b".").unwrap_or(line);
        if content.bytes.len() + line.len() > self.config.max_message {
            content.too_big = true;
            content.bytes = Vec::new();
        } else if !content.too_big {
            content.bytes.extend_from_slice(line);
        }
        self.stage = Stage::Content(transaction, content);
    }

    /// Counts a command that moves no mail; false (and the connection closing) past the
    /// limit.
    fn junk_command(&mut self) -> bool {
        self.junk += 1;
        if self.junk > MAX_JUNK_COMMANDS {
            self.reply(
                421,
                Some("4.7.0"),
                "too many commands without mail, closing",
            );
            self.close();
            return false;
        }
        true
    }

    fn end_transaction(&mut self) {
        if matches!(self.stage, Stage::Transaction(_)) {
            self.stage = Stage::Ready;
        }
    }

    fn refuse(&mut self, refusal: Refusal) {
        self.errors += 1;
        if self.errors > MAX_ERRORS {
            self.reply(421, Some("4.7.0"), "too many errors, closing");
            return self.close();
        }
        self.reply(refusal.code, Some(refusal.status), &refusal.text);
    }

    fn close(&mut self) {
        self.input.clear();
        self.stage = Stage::Closed;
    }

    fn reply(&mut self, code: u16, status: Option<&str>, text: &str) {
        self.events
            .push_back(Event::Send(format_reply(code, status, &[text])));
    }

    fn reply_lines(&mut self, code: u16, lines: &[String]) {
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        self.events
            .push_back(Event::Send(format_reply(code, None, &lines)));
    }
}

/// A refusal: its code, enhanced status and text.
#[derive(Debug)]
struct Refusal {
    code: u16,
    status: &'static str,
    text: Cow<'static, str>,
}

impl Refusal {
    const TOO_LONG: Refusal = Refusal::fixed(500, "5.5.2", "line too long, closing");
    const BARE_LF: Refusal = Refusal::fixed(
        521,
        "5.5.2",
        "bare <LF> received; lines end in <CR><LF>, closing",
    );
    const BARE_CR: Refusal = Refusal::fixed(
        521,
        "5.5.2",
        "bare <CR> received; lines end in <CR><LF>, closing",
    );
    const NUL: Refusal = Refusal::fixed(521, "5.5.2", "<NUL> received, closing");

    const fn fixed(code: u16, status: &'static str, text: &'static str) -> Refusal {
        Refusal {
            code,
            status,
            text: Cow::Borrowed(text),
        }
    }

    fn new(code: u16, status: &'static str, text: &str) -> Refusal {
        Refusal {
            code,
            status,
            text: Cow::Owned(text.to_owned()),
        }
    }
}

/// RFC 6531 section 3.5: a UTF-8 address in a transaction that did not say SMTPUTF8.
const NOT_SMTPUTF8: Refusal =
    Refusal::fixed(553, "5.6.7", "a non-ASCII address needs SMTPUTF8 on MAIL");

/// Refuses a CR or NUL inside a line (its CRLF already taken off).
fn check_framing(bytes: &[u8]) -> Result<(), Refusal> {
    match memchr::memchr3(b'\r', b'\n', b'\0', bytes).map(|at| bytes[at]) {
        Some(b'\r') => Err(Refusal::BARE_CR),
        Some(b'\n') => Err(Refusal::BARE_LF),
        Some(_) => Err(Refusal::NUL),
        None => Ok(()),
    }
}

/// `FROM:<path> params` or `TO:<path> params`: the address inside the brackets and the
/// parameters after them.
fn path<'a>(argument: &'a str, keyword: &str) -> Result<(&'a str, &'a str), Refusal> {
    let syntax = || Refusal::new(501, "5.5.4", &format!("Syntax: {keyword}<address>"));
    let prefix = argument.get(..keyword.len()).ok_or_else(syntax)?;
    if !prefix.eq_ignore_ascii_case(keyword) {
        return Err(syntax());
    }
    // Many clients write a space after the colon; Postfix takes it too.
    let rest = argument[keyword.len()..].trim_start_matches(' ');
    let inner = rest.strip_prefix('<').ok_or_else(syntax)?;
    let (address, parameters) = inner.split_once('>').ok_or_else(syntax)?;
    if !parameters.is_empty() && !parameters.starts_with(' ') {
        return Err(syntax());
    }
    // RFC 5321 section 4.1.1.3: a source route (`@relay1,@relay2:`) is taken and ignored.
    let address = match address.strip_prefix('@') {
        Some(route) => route.split_once(':').ok_or_else(syntax)?.1,
        None => address,
    };
    Ok((address, parameters))
}

fn decode_base64(text: &[u8]) -> Result<String, Refusal> {
    if text == b"*" {
        return Err(Refusal::new(501, "5.7.0", "authentication cancelled"));
    }
    let bytes = BASE64
        .decode(text)
        .map_err(|_| Refusal::new(501, "5.5.2", "not valid base64"))?;
    String::from_utf8(bytes).map_err(|_| Refusal::new(501, "5.5.2", "not UTF-8"))
}

fn trim_crlf(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r\n").unwrap_or(line)
}

/// A client's text, fit to be quoted in a reply: controls escaped.
fn printable(text: &str) -> String {
    text.escape_debug().to_string()
}

/// Compares without stopping at the first difference, so that timing says nothing.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A reply of one or more lines, each `code-text` but the last, `code text`; a client's
/// text quoted in it is shown escaped, since a person may read it on a terminal.
fn format_reply(code: u16, status: Option<&str>, lines: &[&str]) -> Vec<u8> {
    let mut out = String::new();
    for (i, text) in lines.iter().enumerate() {
        let separator = if i + 1 == lines.len() { ' ' } else { '-' };
        out.push_str(&code.to_string());
        out.push(separator);
        if let Some(status) = status {
            out.push_str(status);
            out.push(' ');
        }
        out.push_str(&crate::command::shown(text));
        out.push_str("\r\n");
    }
    out.into_bytes()
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
