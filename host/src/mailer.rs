//! The API a Rust program embeds: build a [`Mailer`] for one server, then [`Mailer::send`]
//! or [`Mailer::open`] a [`Session`] for several messages.
//!
//! The host resolves the server's name, grants the component exactly the resulting
//! addresses on the one port, and runs each call in a fresh, confined instance.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use wasmtime::Store;
use wasmtime::component::ResourceAny;

use crate::component::{Sandbox, Sender, wit};
use crate::policy::{Confined, Limits, NetworkGrant, Transcript};

pub use sendbox_proto::{Credentials, Mechanism as AuthMechanism, Secret};

pub use crate::component::wit::{
    Attachment, ComposedMessage, Delivery, DkimAlgorithm, DkimCanonicalization, Dsn, DsnNotify,
    DsnReturn, EnhancedStatus, ErrorKind, HeaderField, Mailbox, Message, Phase, PreparedMessage,
    RefusedRecipient, Reply, SendError, Timeouts, TlsMode,
};

/// Options for one message: the WIT's `send-options`, with the DKIM key kept out of
/// `Debug`.
#[derive(Clone, Debug, Default)]
pub struct SendOptions {
    /// Delivery status notifications (RFC 3461) to ask for.
    pub dsn: Option<Dsn>,
    /// REQUIRETLS (RFC 8689).
    pub require_tls: bool,
    /// Send a raw message's header exactly as given, without adding a missing Date,
    /// Message-ID or From.
    pub keep_raw_header: bool,
    /// Sign the message with DKIM in the component.
    pub dkim: Option<DkimSigning>,
}

/// A DKIM signature to add: the WIT's `dkim-signing` (see `wit/mail.wit`).
#[derive(Clone, Debug)]
pub struct DkimSigning {
    /// `d=`: the signing domain.
    pub domain: String,
    /// `s=`: the selector.
    pub selector: String,
    /// The private key, PEM or DER (PKCS#8 RSA or Ed25519, or PKCS#1 RSA).
    pub key: DkimKey,
    /// The algorithm the key must be for; `None`: the key's own.
    pub algorithm: Option<DkimAlgorithm>,
    /// The header fields to sign; `None`: the component's default list.
    pub headers: Option<Vec<String>>,
    /// The header's canonicalisation.
    pub header_canonicalization: DkimCanonicalization,
    /// The body's canonicalisation.
    pub body_canonicalization: DkimCanonicalization,
    /// Seconds the signature stays valid (`x=`).
    pub expire_after: Option<u64>,
    /// `i=`: the identity.
    pub identity: Option<String>,
}

impl DkimSigning {
    /// A signature by `key` for `domain` and `selector`, relaxed/relaxed, over the default
    /// fields, without expiry or identity.
    pub fn new(domain: impl Into<String>, selector: impl Into<String>, key: DkimKey) -> Self {
        DkimSigning {
            domain: domain.into(),
            selector: selector.into(),
            key,
            algorithm: None,
            headers: None,
            header_canonicalization: DkimCanonicalization::Relaxed,
            body_canonicalization: DkimCanonicalization::Relaxed,
            expire_after: None,
            identity: None,
        }
    }
}

/// A DKIM private key's bytes: a secret, never shown by `Debug`.
#[derive(Clone)]
pub struct DkimKey(Vec<u8>);

impl DkimKey {
    /// The key as read from its file, PEM or DER.
    pub fn new(bytes: Vec<u8>) -> Self {
        DkimKey(bytes)
    }
}

impl fmt::Debug for DkimKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DkimKey(<redacted>)")
    }
}

impl SendOptions {
    fn to_wit(&self) -> wit::SendOptions {
        wit::SendOptions {
            dsn: self.dsn.clone(),
            require_tls: self.require_tls,
            keep_raw_header: self.keep_raw_header,
            dkim: self.dkim.as_ref().map(|d| wit::DkimSigning {
                domain: d.domain.clone(),
                selector: d.selector.clone(),
                key: d.key.0.clone(),
                algorithm: d.algorithm,
                headers: d.headers.clone(),
                header_canonicalization: d.header_canonicalization,
                body_canonicalization: d.body_canonicalization,
                expire_after: d.expire_after,
                identity: d.identity.clone(),
            }),
        }
    }
}

/// The one server a [`Mailer`] talks to.
#[derive(Clone, Debug)]
pub struct Server {
    /// Host name or IP address; TLS checks the certificate against it.
    pub host: String,
    /// The TCP port.
    pub port: u16,
    /// How the connection is secured.
    pub tls: TlsMode,
    /// Trust anchors (PEM) to use instead of the web PKI roots.
    pub ca_pem: Option<String>,
    /// The name to give in EHLO (default `localhost`).
    pub ehlo_name: Option<String>,
    /// Time limits; the component's defaults when `None`.
    pub timeouts: Option<Timeouts>,
    /// The addresses to reach the server at, in order of preference, for an embedder that
    /// resolves names itself. When empty, [`Mailer::new`] resolves `host`.
    pub addresses: Vec<IpAddr>,
}

impl Server {
    /// A server with default trust anchors, EHLO name and timeouts.
    pub fn new(host: impl Into<String>, port: u16, tls: TlsMode) -> Self {
        Server {
            host: host.into(),
            port,
            tls,
            ca_pem: None,
            ehlo_name: None,
            timeouts: None,
            addresses: Vec::new(),
        }
    }

    /// The usual port for a TLS mode: 465, 587 or 25.
    pub fn default_port(tls: TlsMode) -> u16 {
        match tls {
            TlsMode::Implicit => 465,
            TlsMode::Starttls => 587,
            TlsMode::InsecurePlaintext => 25,
        }
    }
}

/// Sender and recipients of one message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Envelope {
    /// MAIL FROM address (empty for the null sender); `None` takes the message's Sender
    /// or From address.
    pub sender: Option<String>,
    /// RCPT TO addresses.
    pub recipients: Vec<String>,
    /// Also send to the message's To, Cc and Bcc addresses (`sendmail -t`); a raw
    /// message's Bcc header is removed.
    pub recipients_from_headers: bool,
    /// The domain for addresses without one (`root` becomes `root@domain`), as an
    /// MTA's "myorigin"; without it such addresses are refused.
    pub qualify_domain: Option<String>,
}

impl Envelope {
    /// An envelope given in full.
    pub fn new(sender: impl Into<String>, recipients: Vec<String>) -> Self {
        Envelope {
            sender: Some(sender.into()),
            recipients,
            recipients_from_headers: false,
            qualify_domain: None,
        }
    }

    /// Everything from the message: sender from Sender or From, recipients from To,
    /// Cc and Bcc.
    pub fn from_headers() -> Self {
        Envelope {
            sender: None,
            recipients: Vec::new(),
            recipients_from_headers: true,
            qualify_domain: None,
        }
    }
}

impl From<Vec<u8>> for Message {
    fn from(raw: Vec<u8>) -> Self {
        Message::Raw(raw)
    }
}

impl From<&[u8]> for Message {
    fn from(raw: &[u8]) -> Self {
        Message::Raw(raw.to_vec())
    }
}

impl<const N: usize> From<&[u8; N]> for Message {
    fn from(raw: &[u8; N]) -> Self {
        Message::Raw(raw.to_vec())
    }
}

impl From<&str> for Message {
    fn from(raw: &str) -> Self {
        Message::Raw(raw.as_bytes().to_vec())
    }
}

impl From<&Vec<u8>> for Message {
    fn from(raw: &Vec<u8>) -> Self {
        Message::Raw(raw.clone())
    }
}

impl From<ComposedMessage> for Message {
    fn from(composed: ComposedMessage) -> Self {
        Message::Composed(composed)
    }
}

impl Mailbox {
    /// An address without a display name.
    pub fn new(address: impl Into<String>) -> Self {
        Mailbox {
            name: None,
            address: address.into(),
        }
    }
}

impl ComposedMessage {
    /// A message from `from`, otherwise empty: fill in the fields to send.
    pub fn new(from: Mailbox) -> Self {
        ComposedMessage {
            from,
            to: Vec::new(),
            cc: Vec::new(),
            bcc: Vec::new(),
            reply_to: Vec::new(),
            subject: String::new(),
            text: None,
            html: None,
            attachments: Vec::new(),
            headers: Vec::new(),
        }
    }
}

impl Timeouts {
    /// The same limit for connecting and for every stage; the overall deadline stays
    /// the default unless set too.
    pub fn every_stage(ms: u32) -> Self {
        Timeouts {
            connect_ms: ms,
            greeting_ms: ms,
            command_ms: ms,
            mail_ms: ms,
            rcpt_ms: ms,
            data_start_ms: ms,
            data_block_ms: ms,
            data_end_ms: ms,
            total_ms: 0,
        }
    }
}

/// Why a send failed.
#[derive(Debug)]
pub enum Error {
    /// The server's name could not be resolved to an address.
    Resolve {
        /// The name that did not resolve.
        host: String,
        /// What the resolver said.
        reason: String,
    },
    /// The SMTP exchange failed; the component says where and why.
    Smtp(SendError),
    /// The call ran longer than [`Limits::run_time`] and was stopped.
    RunTime(Duration),
    /// The component could not run or trapped (for example at its memory limit).
    Component(String),
}

impl Error {
    /// Whether the same send may succeed later.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Resolve { .. } | Error::RunTime(_) => true,
            Error::Smtp(error) => error.transient,
            Error::Component(_) => false,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Resolve { host, reason } => write!(f, "cannot resolve {host}: {reason}"),
            Error::Smtp(error) => write_send_error(f, error),
            Error::RunTime(limit) => write!(f, "stopped after the run-time limit of {limit:?}"),
            Error::Component(why) => write!(f, "the sandboxed component failed: {why}"),
        }
    }
}

impl std::error::Error for Error {}

/// One line saying what failed, where, the server's words, and whether to retry. It is
/// [`Error`]'s text rather than [`SendError`]'s: bindgen gives the WIT's error record a
/// `Display` of its own (its `Debug`).
fn write_send_error(f: &mut fmt::Formatter<'_>, error: &SendError) -> fmt::Result {
    match error.kind {
        // Found in what the caller gave, before anything was sent: no SMTP step failed.
        ErrorKind::InvalidInput => write!(f, "invalid input, nothing sent: {}", error.message)?,
        kind => write!(f, "{} failed ({kind}): {}", error.phase, error.message)?,
    }
    if let Some(reply) = &error.reply {
        write!(f, "; server replied {reply}")?;
    }
    f.write_str(if error.transient {
        " [temporary: retrying later may work]"
    } else {
        " [permanent]"
    })
}

impl Reply {
    /// A 4xx reply: the server may accept later.
    pub fn is_transient(&self) -> bool {
        self.code / 100 == 4
    }

    /// A 5xx reply: the server refuses for good.
    pub fn is_permanent(&self) -> bool {
        self.code / 100 == 5
    }
}

impl fmt::Display for Reply {
    /// The reply as `550 5.1.1 text`, its lines joined by ` / `.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some(status) = self.enhanced_status {
            write!(f, " {status}")?;
        }
        if !self.text.is_empty() {
            write!(f, " {}", self.text.replace('\n', " / "))?;
        }
        Ok(())
    }
}

impl fmt::Display for EnhancedStatus {
    /// The status as `5.1.1`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

impl fmt::Display for Phase {
    /// The phase as users know it (`AUTH`, `RCPT`, ...).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Connect => "connect",
            Phase::Greeting => "greeting",
            Phase::Tls => "TLS",
            Phase::Ehlo => "EHLO",
            Phase::Auth => "AUTH",
            Phase::Mail => "MAIL",
            Phase::Rcpt => "RCPT",
            Phase::Data => "DATA",
            Phase::Quit => "QUIT",
            Phase::Sign => "DKIM signing",
        })
    }
}

impl fmt::Display for ErrorKind {
    /// The kind of failure, in words (`rejected`, `session closed`, ...).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::InvalidInput => "invalid input",
            ErrorKind::Network => "network",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Tls => "TLS",
            ErrorKind::Auth => "authentication",
            ErrorKind::Rejected => "rejected",
            ErrorKind::Protocol => "protocol error",
            ErrorKind::Closed => "session closed",
        })
    }
}

/// Sends mail to one server through the confined component.
pub struct Mailer {
    sandbox: Sandbox,
    server: Server,
    credentials: Option<Credentials>,
    grant: NetworkGrant,
    limits: Limits,
    transcript: Transcript,
}

impl Mailer {
    /// Resolves the server's name here, in the host (unless `server.addresses` are given),
    /// and grants the component exactly those addresses on the server's port.
    pub async fn new(
        sandbox: Sandbox,
        server: Server,
        credentials: Option<Credentials>,
    ) -> Result<Self, Error> {
        let addresses = if server.addresses.is_empty() {
            resolve(&server.host, server.port).await?
        } else {
            let port = server.port;
            server
                .addresses
                .iter()
                .map(|&ip| SocketAddr::new(ip, port))
                .collect()
        };
        let grant = NetworkGrant::new(addresses);
        Ok(Mailer {
            sandbox,
            server,
            credentials,
            grant,
            limits: Limits::default(),
            transcript: Transcript::Off,
        })
    }

    /// Changes the memory and run-time bounds.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Asks the component for the SMTP transcript (credentials redacted).
    pub fn with_transcript(mut self, transcript: Transcript) -> Self {
        self.transcript = transcript;
        self
    }

    /// What the component is allowed to connect to.
    pub fn grant(&self) -> &NetworkGrant {
        &self.grant
    }

    /// Connects, sends one message, quits.
    pub async fn send(
        &self,
        envelope: &Envelope,
        message: impl Into<Message>,
    ) -> Result<Delivery, Error> {
        self.send_with(envelope, message, &SendOptions::default())
            .await
    }

    /// [`Mailer::send`] with DSN or REQUIRETLS options.
    pub async fn send_with(
        &self,
        envelope: &Envelope,
        message: impl Into<Message>,
        options: &SendOptions,
    ) -> Result<Delivery, Error> {
        let (server, credentials) = (self.wit_server(), self.wit_credentials());
        let (envelope, message) = (wit_envelope(envelope), message.into());
        let options = options.to_wit();
        let mut instance = self.instantiate().await?;
        instance
            .call(async |api, store| {
                let credentials = credentials.as_ref();
                api.call_send(store, &server, credentials, &envelope, &message, &options)
                    .await
            })
            .await
    }

    /// Opens a session: connected, greeted, TLS set up, authenticated.
    pub async fn open(&self) -> Result<Session, Error> {
        let (server, credentials) = (self.wit_server(), self.wit_credentials());
        let mut instance = self.instantiate().await?;
        let handle = instance
            .call(async |api, store| {
                let credentials = credentials.as_ref();
                api.session().call_open(store, &server, credentials).await
            })
            .await?;
        Ok(Session { instance, handle })
    }

    /// The sandbox its instances come from, for [`prepare`] with the same component.
    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    async fn instantiate(&self) -> Result<Instance, Error> {
        Instance::new(
            &self.sandbox,
            self.grant.clone(),
            self.limits,
            &self.transcript,
        )
        .await
    }

    fn wit_server(&self) -> wit::Server {
        let addresses = self
            .grant
            .addresses()
            .iter()
            .map(|a| a.ip().to_string())
            .collect();
        wit::Server {
            host: self.server.host.clone(),
            port: self.server.port,
            addresses,
            tls: self.server.tls,
            ca_pem: self.server.ca_pem.clone(),
            ehlo_name: self.server.ehlo_name.clone(),
            timeouts: self.server.timeouts,
            transcript: !matches!(self.transcript, Transcript::Off),
        }
    }

    fn wit_credentials(&self) -> Option<wit::Credentials> {
        self.credentials.as_ref().map(|c| wit::Credentials {
            username: c.username.clone(),
            secret: match &c.secret {
                Secret::Password(password) => wit::Secret::Password(password.clone()),
                Secret::BearerToken(token) => wit::Secret::BearerToken(token.clone()),
            },
            mechanism: c.mechanism.map(|mechanism| match mechanism {
                AuthMechanism::ScramSha256 => wit::AuthMechanism::ScramSha256,
                AuthMechanism::Plain => wit::AuthMechanism::Plain,
                AuthMechanism::Login => wit::AuthMechanism::Login,
                AuthMechanism::CramMd5 => wit::AuthMechanism::CramMd5,
                AuthMechanism::OAuthBearer => wit::AuthMechanism::Oauthbearer,
                AuthMechanism::XOAuth2 => wit::AuthMechanism::Xoauth2,
            }),
        })
    }
}

/// Builds a message and completes its envelope as [`Mailer::send_with`] would, in an
/// instance granted no network at all: for an outbox that keeps messages to send later
/// (as [`Message::Raw`] with the envelope returned and `keep_raw_header`), or to show a
/// message before it goes. Bad input fails as it would in a send.
pub async fn prepare(
    sandbox: &Sandbox,
    envelope: &Envelope,
    message: impl Into<Message>,
    options: &SendOptions,
) -> Result<PreparedMessage, Error> {
    let (envelope, message) = (wit_envelope(envelope), message.into());
    let options = options.to_wit();
    let no_network = NetworkGrant::new(Vec::new());
    let mut instance =
        Instance::new(sandbox, no_network, Limits::default(), &Transcript::Off).await?;
    instance
        .call(async |api, store| api.call_prepare(store, &envelope, &message, &options).await)
        .await
}

/// One connection that can carry several messages.
pub struct Session {
    instance: Instance,
    handle: ResourceAny,
}

impl Session {
    /// Sends one message. After a failure that concerns only this message (bad input, a
    /// refused sender, every recipient refused, the content refused) the session stays
    /// open; [`Session::is_open`] says whether it did.
    pub async fn send(
        &mut self,
        envelope: &Envelope,
        message: impl Into<Message>,
    ) -> Result<Delivery, Error> {
        self.send_with(envelope, message, &SendOptions::default())
            .await
    }

    /// [`Session::send`] with DSN or REQUIRETLS options.
    pub async fn send_with(
        &mut self,
        envelope: &Envelope,
        message: impl Into<Message>,
        options: &SendOptions,
    ) -> Result<Delivery, Error> {
        let (envelope, message) = (wit_envelope(envelope), message.into());
        let options = options.to_wit();
        let handle = self.handle;
        self.instance
            .call(async |api, store| {
                let session = api.session();
                session
                    .call_send(store, handle, &envelope, &message, &options)
                    .await
            })
            .await
    }

    /// Whether the session can carry another message, whatever the last call returned
    /// (an error, or a delivery that a later failure cut short): false once the connection
    /// was lost, timed out, broke the protocol or was closed, as the component sees it, and
    /// after a call that trapped or ran out of time, without entering the instance again.
    /// A session for which it is true takes the next [`Session::send`].
    pub async fn is_open(&mut self) -> bool {
        if self.instance.interrupted {
            return false;
        }
        let handle = self.handle;
        let open = self
            .instance
            .call(async |api, store| api.session().call_is_open(store, handle).await.map(Ok))
            .await;
        matches!(open, Ok(true))
    }

    /// Sends QUIT and closes the connection.
    pub async fn close(mut self) -> Result<(), Error> {
        let handle = self.handle;
        self.instance
            .call(async |api, store| api.session().call_close(store, handle).await)
            .await?;
        let store = &mut self.instance.store;
        let dropped = handle.resource_drop_async(&mut *store).await;
        dropped.map_err(|trap| Error::Component(trap_report(&trap, store)))
    }
}

/// A fresh, confined instance of the component, and the bound on each call into it.
struct Instance {
    store: Store<Confined>,
    sender: Sender,
    run_time: Duration,
    /// A call trapped or was stopped at the run-time limit: the instance's state is
    /// unknown, so [`Session::is_open`] does not ask it.
    interrupted: bool,
}

impl Instance {
    async fn new(
        sandbox: &Sandbox,
        grant: NetworkGrant,
        limits: Limits,
        transcript: &Transcript,
    ) -> Result<Self, Error> {
        let (store, sender) = sandbox
            .instantiate(grant, limits, transcript)
            .await
            .map_err(|e| Error::Component(format!("{e:#}")))?;
        Ok(Instance {
            store,
            sender,
            run_time: limits.run_time,
            interrupted: false,
        })
    }

    /// Makes one call of the component's interface, stopping it when it exceeds the
    /// run-time limit; a trap is reported by [`trap_report`].
    async fn call<T>(
        &mut self,
        call: impl AsyncFnOnce(
            &wit::Guest,
            &mut Store<Confined>,
        ) -> wasmtime::Result<Result<T, SendError>>,
    ) -> Result<T, Error> {
        let api = self.sender.sendbox_mail_mail_sender();
        let outcome = tokio::time::timeout(self.run_time, call(api, &mut self.store)).await;
        let error = match outcome {
            Ok(Ok(result)) => return result.map_err(Error::Smtp),
            Ok(Err(trap)) => Error::Component(trap_report(&trap, &self.store)),
            Err(_) => Error::RunTime(self.run_time),
        };
        self.interrupted = true;
        Err(error)
    }
}

fn wit_envelope(envelope: &Envelope) -> wit::Envelope {
    wit::Envelope {
        sender: envelope.sender.clone(),
        recipients: envelope.recipients.clone(),
        recipients_from_headers: envelope.recipients_from_headers,
        qualify_domain: envelope.qualify_domain.clone(),
    }
}

/// What a trapped call reports: the trap without the wasm backtrace, and where the guest
/// panicked or that it ran out of memory, when its stderr says so. Never the rest of its
/// stderr: a panic message can quote whatever the guest held, credentials included.
fn trap_report(error: &wasmtime::Error, store: &Store<Confined>) -> String {
    // The error's outer layers are the wasm backtrace and the like; the root is the cause.
    let cause = match error.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => format!("wasm trap: {trap}"),
        None => error.root_cause().to_string(),
    };
    let stderr = store.data().stderr();
    if let Some(location) = panic_location(&stderr) {
        format!(
            "it panicked at {location} ({cause}); the panic message is not shown, as it may \
             quote credentials"
        )
    } else if let Some(failed) = allocation_failure(&stderr) {
        format!("{failed} ({cause})")
    } else {
        cause
    }
}

/// `file:line:column` from the line the Rust runtime writes when the guest panics
/// (`thread '…' panicked at file:line:column:`, with the thread's id after its name in
/// newer Rust), if there is one of exactly that form. The first such line: the panic
/// message comes after it, and may imitate it.
fn panic_location(stderr: &str) -> Option<String> {
    let line = stderr.lines().find(|l| l.starts_with("thread '"))?;
    let (_, rest) = line.split_once(" panicked at ")?;
    let location = rest.strip_suffix(':')?;
    let mut parts = location.rsplitn(3, ':');
    let (column, line, file) = (parts.next()?, parts.next()?, parts.next()?);
    let plain_path = !file.is_empty()
        && file
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-'));
    (is_number(column) && is_number(line) && plain_path).then(|| location.to_owned())
}

/// The Rust runtime's `memory allocation of N bytes failed`, if the guest wrote it.
fn allocation_failure(stderr: &str) -> Option<&str> {
    stderr.lines().rev().find(|line| {
        line.strip_prefix("memory allocation of ")
            .and_then(|rest| rest.strip_suffix(" bytes failed"))
            .is_some_and(is_number)
    })
}

fn is_number(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

/// Resolves `host` on the host side; an IP literal is used as it is.
pub async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, Error> {
    let literal = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = literal.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let failed = |reason: String| Error::Resolve {
        host: host.to_owned(),
        reason,
    };
    let mut addresses: Vec<SocketAddr> = Vec::new();
    for address in tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| failed(e.to_string()))?
    {
        if !addresses.contains(&address) {
            addresses.push(address);
        }
    }
    if addresses.is_empty() {
        return Err(failed("no addresses".to_owned()));
    }
    Ok(addresses)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_password() {
        for credentials in [
            Credentials::password("alice", "hunter2-secret"),
            Credentials::bearer_token("alice", "hunter2-secret"),
        ] {
            let shown = format!("{credentials:?} {credentials:#?}");
            assert!(shown.contains("alice"));
            assert!(!shown.contains("hunter2-secret"), "{shown}");
        }
    }

    #[test]
    fn debug_never_shows_the_dkim_key() {
        let options = SendOptions {
            dkim: Some(DkimSigning::new(
                "example.org",
                "s1",
                DkimKey::new(b"-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleQ==".to_vec()),
            )),
            ..SendOptions::default()
        };
        let shown = format!("{options:?} {options:#?}");
        assert!(shown.contains("example.org") && shown.contains("DkimKey(<redacted>)"));
        assert!(
            !shown.contains("c2VjcmV0") && !shown.contains("45, 45"),
            "{shown}"
        );
    }

    #[test]
    fn a_trap_report_shows_where_the_guest_panicked_but_not_its_message() {
        let stderr = "S: 220 ready\n\
                      thread '<unnamed>' (1) panicked at guest/src/session.rs:12:5:\n\
                      bad state with password hunter2-secret\n\
                      thread 'x' panicked at hunter2-secret:1:2:\n\
                      note: run with `RUST_BACKTRACE=1` to display a backtrace\n";
        assert_eq!(
            panic_location(stderr).as_deref(),
            Some("guest/src/session.rs:12:5")
        );
        let older = "thread 'main' panicked at src/lib.rs:3:9:\nboom\n";
        assert_eq!(panic_location(older).as_deref(), Some("src/lib.rs:3:9"));
        for not_a_location in [
            "",
            "S: 250 thread 'x' panicked at a.rs:1:2:\n",
            "thread 'x' panicked at 'hunter2-secret', src/lib.rs:1:2\n",
            "thread 'x' panicked at src/my lib.rs:1:2:\n",
            "thread 'x' panicked at src/lib.rs:1:x:\n",
        ] {
            assert_eq!(panic_location(not_a_location), None, "{not_a_location:?}");
        }
        assert_eq!(
            allocation_failure("memory allocation of 1048576 bytes failed\n"),
            Some("memory allocation of 1048576 bytes failed")
        );
        assert_eq!(
            allocation_failure("memory allocation of hunter2 bytes failed"),
            None
        );
    }

    #[test]
    fn errors_say_phase_reply_and_whether_to_retry() {
        let error = SendError {
            phase: Phase::Rcpt,
            kind: ErrorKind::Rejected,
            reply: Some(Reply {
                code: 450,
                enhanced_status: Some(EnhancedStatus {
                    class: 4,
                    subject: 2,
                    detail: 0,
                }),
                text: "mailbox busy\ntry later".into(),
            }),
            message: "every recipient was refused".into(),
            transient: true,
        };
        assert_eq!(
            Error::Smtp(error).to_string(),
            "RCPT failed (rejected): every recipient was refused; server replied 450 4.2.0 mailbox busy / try later [temporary: retrying later may work]"
        );
    }

    #[test]
    fn a_reply_is_transient_or_permanent_by_its_first_digit() {
        let reply = |code| Reply {
            code,
            enhanced_status: None,
            text: String::new(),
        };
        assert!(reply(450).is_transient() && !reply(450).is_permanent());
        assert!(reply(554).is_permanent() && !reply(554).is_transient());
        assert!(!reply(250).is_transient() && !reply(250).is_permanent());
        assert_eq!(reply(250).to_string(), "250");
    }

    #[test]
    fn input_errors_name_no_smtp_step() {
        let error = SendError {
            phase: Phase::Data,
            kind: ErrorKind::InvalidInput,
            reply: None,
            message: "address \"bob@@example.net\" has a local part that is not valid".into(),
            transient: false,
        };
        assert_eq!(
            Error::Smtp(error).to_string(),
            "invalid input, nothing sent: address \"bob@@example.net\" has a local part that is not valid [permanent]"
        );
    }
}
