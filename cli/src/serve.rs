//! `sendbox serve`: a small SMTP listener for programs that can only hand mail to a host
//! and port (monitoring, forges, CI). Each message goes into the outbox, and is answered
//! 250 only once it is on disk; a worker then delivers what is due through the account,
//! inside the sandbox, as `sendbox queue run` does.
//!
//! The SMTP commands are parsed by the `mailin` server library; this file bounds what an
//! untrusted client can make it do: the line length, the message size, the number of
//! connections, the recipients per message, and the time each line and the TLS handshake
//! may take (so that a client that trickles bytes is cut off).
//!
//! On loopback TLS is optional. With `--tls-cert` and `--tls-key` it offers STARTTLS (with
//! rustls) and takes a login or a message only after it. Beyond loopback it listens only
//! with TLS and `--require-auth`: nothing then crosses the network in the clear, and no one
//! else on it can relay through the account.

use std::io::{self, BufRead as _, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mailin::{Action, AuthMechanism, Handler, Response, Session, SessionBuilder};
use rustls::pki_types::pem::{self, PemObject as _};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};
use tokio::sync::Notify;

use crate::args::ServeArgs;
use crate::config::Account;
use crate::outbox::{self, Outbox};
use crate::{Stop, exit, queue};

/// The longest command or content line read (RFC 5321 allows 1000 octets; some
/// programs write longer content lines, which the component re-encodes anyway).
const MAX_LINE: usize = 8192;
/// Recipients per message (RFC 5321 4.5.3.1.8: a server must take at least 100).
const MAX_RECIPIENTS: usize = 100;
/// How often the worker looks for retries that have come due.
const RETRY_POLL: Duration = Duration::from_secs(60);

/// What bounds a client.
#[derive(Clone, Copy, Debug)]
struct Limits {
    max_size: usize,
    line_time: Duration,
}

pub async fn run(args: ServeArgs) -> Result<u8, Stop> {
    beyond_loopback(&args)?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tls_config(cert, key)?),
        // clap takes the two together or neither.
        _ => None,
    };
    let config = crate::load_config(args.config.as_deref())?;
    let account = crate::account(&config, args.account.as_deref())?
        .ok_or_else(|| {
            Stop(
                exit::CONFIG,
                "serve needs an account to relay through: write one in the config file, or \
                 name it with --account"
                    .to_owned(),
            )
        })?
        .clone();
    let login = match &args.require_auth {
        Some(user) => {
            let var = args.password_env.as_deref().ok_or_else(|| {
                Stop(
                    exit::USAGE,
                    "--require-auth needs --password-env VAR".to_owned(),
                )
            })?;
            let password = crate::config::secret_from_env(var).map_err(|m| Stop(exit::USAGE, m))?;
            Some((user.clone(), password))
        }
        None => None,
    };
    let outbox = queue::open(&config.queue)?;
    let listener = TcpListener::bind(args.listen).map_err(|e| {
        Stop(
            exit::UNAVAILABLE,
            format!("cannot listen on {}: {e}", args.listen),
        )
    })?;
    let limits = Limits {
        max_size: args.max_size,
        line_time: Duration::from_secs(args.idle_timeout.into()),
    };
    let wake = Arc::new(Notify::new());
    println!(
        "sendbox serve: listening on {}{}, relaying through account {} (outbox {})",
        args.listen,
        if tls.is_some() { " with STARTTLS" } else { "" },
        account.name,
        outbox.root().display()
    );
    let listening = Listening {
        builder: session_builder(login.is_some(), tls.is_some()),
        tls,
        template: Relay {
            outbox: outbox.clone(),
            account: account.clone(),
            login: login.map(Arc::new),
            limits,
            wake: wake.clone(),
            user: None,
            current: None,
        },
        connections: Arc::new(AtomicUsize::new(0)),
        max_connections: args.max_connections,
    };
    std::thread::spawn(move || listening.accept(listener));
    // The worker: what was just accepted at once, retries when they come due.
    loop {
        queue::run(&config, false).await?;
        let _ = tokio::time::timeout(RETRY_POLL, wake.notified()).await;
    }
}

/// Refuses an address beyond loopback unless clients must use TLS and log in, saying what
/// is missing and why.
fn beyond_loopback(args: &ServeArgs) -> Result<(), Stop> {
    if args.listen.ip().is_loopback() {
        return Ok(());
    }
    let mut missing = Vec::new();
    if args.tls_cert.is_none() {
        missing.push(
            "--tls-cert and --tls-key, for STARTTLS: without TLS, a login or a message from \
             another machine would cross the network in the clear",
        );
    }
    if args.require_auth.is_none() {
        missing.push(
            "--require-auth, for a login: without one, anyone on the network could relay \
             mail through the account",
        );
    }
    if missing.is_empty() {
        return Ok(());
    }
    Err(Stop(
        exit::USAGE,
        format!(
            "--listen {}: beyond loopback, sendbox serve also needs {}",
            args.listen,
            missing.join("; and ")
        ),
    ))
}

/// The TLS settings for `--tls-cert` and `--tls-key`, checked before anything listens.
fn tls_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, Stop> {
    const CERTIFICATE: &str = "certificate (PEM, -----BEGIN CERTIFICATE-----)";
    const KEY: &str = "private key (PEM: PKCS#8, RSA or SEC1, not encrypted)";
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
        .map_err(|e| unusable("--tls-cert", cert, CERTIFICATE, e))?;
    if chain.is_empty() {
        return Err(unusable(
            "--tls-cert",
            cert,
            CERTIFICATE,
            pem::Error::NoItemsFound,
        ));
    }
    let private_key =
        PrivateKeyDer::from_pem_file(key).map_err(|e| unusable("--tls-key", key, KEY, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Stop(exit::SOFTWARE, format!("cannot set up TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, private_key)
        .map_err(|e| {
            let (cert, key) = (cert.display(), key.display());
            Stop(
                exit::CONFIG,
                match e {
                    rustls::Error::InconsistentKeys(_) => format!(
                        "--tls-key {key} is not the key of the certificate in --tls-cert {cert}"
                    ),
                    e => format!("cannot use --tls-cert {cert} with --tls-key {key}: {e}"),
                },
            )
        })?;
    Ok(Arc::new(config))
}

/// Why a PEM file cannot be used: unreadable (66), or not holding what it should (78).
fn unusable(option: &str, path: &Path, holds: &str, error: pem::Error) -> Stop {
    let path = path.display();
    match error {
        pem::Error::Io(e) => Stop(
            exit::NOINPUT,
            format!("{option} {path}: cannot read it: {e}"),
        ),
        pem::Error::NoItemsFound => Stop(exit::CONFIG, format!("{option} {path}: no {holds}")),
        e => Stop(exit::CONFIG, format!("{option} {path}: not a {holds}: {e}")),
    }
}

fn session_builder(auth: bool, tls: bool) -> SessionBuilder {
    let mut builder = SessionBuilder::new("sendbox-serve");
    if tls {
        builder.enable_start_tls();
    }
    if auth {
        builder
            .enable_auth(AuthMechanism::Plain)
            .enable_auth(AuthMechanism::Login);
        if !tls {
            // Loopback only (`beyond_loopback`): nothing crosses a network, so a login
            // without TLS is safe here. With TLS, mailin offers AUTH only after STARTTLS.
            builder.insecure_enable_plaintext_auth();
        }
    }
    builder
}

struct Listening {
    builder: SessionBuilder,
    tls: Option<Arc<ServerConfig>>,
    template: Relay,
    connections: Arc<AtomicUsize>,
    max_connections: usize,
}

impl Listening {
    fn accept(self, listener: TcpListener) {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else {
                // Out of file descriptors, say: wait instead of spinning.
                std::thread::sleep(Duration::from_millis(100));
                continue;
            };
            let open = self.connections.fetch_add(1, Ordering::SeqCst);
            let connections = self.connections.clone();
            if open >= self.max_connections {
                let _ = stream.write_all(b"421 4.7.0 too many connections, try again later\r\n");
                connections.fetch_sub(1, Ordering::SeqCst);
                continue;
            }
            let builder = self.builder.clone();
            let tls = self.tls.clone();
            let relay = self.template.clone();
            std::thread::spawn(move || {
                let _ = converse(stream, &builder, tls, relay);
                connections.fetch_sub(1, Ordering::SeqCst);
            });
        }
    }
}

/// One client: the greeting, then a line at a time through mailin, each line read within
/// the time limit and the length limit; with `tls`, STARTTLS first, then the same over TLS.
fn converse(
    stream: TcpStream,
    builder: &SessionBuilder,
    tls: Option<Arc<ServerConfig>>,
    relay: Relay,
) -> io::Result<()> {
    let line_time = relay.limits.line_time;
    let peer: SocketAddr = stream.peer_addr()?;
    stream.set_nodelay(true)?;
    // A client that does not read its replies is cut off too, rather than holding a
    // connection for ever once the buffers are full.
    stream.set_write_timeout(Some(line_time))?;
    let mut session = builder.build(peer.ip(), relay);
    let mut plain = Deadline {
        socket: stream,
        at: Instant::now(),
    };
    reply(&mut plain, &session.greeting())?;
    let Some(tls) = tls else {
        dialogue(&mut session, plain, line_time, false)?;
        return Ok(());
    };
    let Some(plain) = dialogue(&mut session, plain, line_time, true)? else {
        return Ok(());
    };
    let connection = ServerConnection::new(tls).map_err(io::Error::other)?;
    let mut stream = StreamOwned::new(connection, plain);
    // The whole handshake within one line's time, however the client spreads it out.
    stream.sock.at = Instant::now() + line_time;
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    session.tls_active();
    dialogue(&mut session, stream, line_time, false)?;
    Ok(())
}

/// Reads lines and answers them until the client or a limit ends the connection (`None`).
/// With `before_tls` (STARTTLS offered and not done yet), only EHLO, NOOP, QUIT and
/// STARTTLS are taken, and STARTTLS hands the stream back, to go on over TLS.
fn dialogue<S: Connection>(
    session: &mut Session<Relay>,
    stream: S,
    line_time: Duration,
    before_tls: bool,
) -> io::Result<Option<S>> {
    let mut reader = BufReader::new(stream);
    loop {
        let line = match read_line(&mut reader, line_time) {
            Ok(Some(line)) => line,
            Ok(None) => return Ok(None),
            Err(LineError::TooLong) => {
                send(reader.get_mut(), b"500 5.5.2 line too long, closing\r\n")?;
                return Ok(None);
            }
            Err(LineError::TooSlow) => {
                send(reader.get_mut(), b"421 4.4.2 too slow, closing\r\n")?;
                return Ok(None);
            }
            Err(LineError::Io(e)) => return Err(e),
        };
        if before_tls && !allowed_before_tls(&line) {
            // Not left to mailin: it would take MAIL from a client that need not log in,
            // and answer 503 rather than 530 to the rest.
            let refusal = Response::custom(530, "5.7.0 Must issue a STARTTLS command first".into());
            reply(reader.get_mut(), &refusal)?;
            continue;
        }
        let response = session.process(&line);
        match response.action {
            Action::NoReply => {}
            Action::Reply => reply(reader.get_mut(), &response)?,
            Action::UpgradeTls if before_tls => {
                reply(reader.get_mut(), &response)?;
                // What the client sent after STARTTLS stays in the buffer, dropped here: it
                // came in the clear, and must not pass for what came over TLS.
                return Ok(Some(reader.into_inner()));
            }
            Action::UpgradeTls => {
                // STARTTLS when there is no certificate, or a second time (mailin lets it
                // through once AUTH is enabled): refused rather than mailin's 220, and the
                // connection closed, as mailin now waits for a handshake.
                send(
                    reader.get_mut(),
                    b"502 5.5.1 STARTTLS is not available here, closing\r\n",
                )?;
                return Ok(None);
            }
            Action::Close => {
                reply(reader.get_mut(), &response)?;
                return Ok(None);
            }
        }
    }
}

/// RFC 3207 section 4: while TLS is required, the only commands a client may give.
fn allowed_before_tls(line: &[u8]) -> bool {
    let verb = line
        .split(|b| b.is_ascii_whitespace())
        .next()
        .unwrap_or_default();
    [&b"EHLO"[..], b"STARTTLS", b"NOOP", b"QUIT"]
        .iter()
        .any(|allowed| verb.eq_ignore_ascii_case(allowed))
}

/// Writes a reply in one piece: mailin writes its parts one by one, and a reply in four
/// segments waits on the client's delayed acknowledgement.
fn reply(writer: &mut impl Write, response: &Response) -> io::Result<()> {
    send(writer, &response.buffer()?)
}

/// Writes `bytes` whole (over TLS, as one record) and sends them at once.
fn send(writer: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    writer.write_all(bytes)?;
    writer.flush()
}

/// A client's socket, whose reads all end by one deadline: neither a line nor the TLS
/// handshake can be stretched by trickling bytes, however many reads it takes.
struct Deadline {
    socket: TcpStream,
    at: Instant,
}

impl Read for Deadline {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self
            .at
            .checked_duration_since(Instant::now())
            .filter(|left| !left.is_zero())
            .ok_or(io::ErrorKind::TimedOut)?;
        self.socket.set_read_timeout(Some(left))?;
        self.socket.read(buf).map_err(|e| match e.kind() {
            // What a read timeout gives on Unix; rustls would take it for a non-blocking
            // socket with nothing to read yet.
            io::ErrorKind::WouldBlock => io::ErrorKind::TimedOut.into(),
            _ => e,
        })
    }
}

impl Write for Deadline {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.socket.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.socket.flush()
    }
}

/// A client's connection, in the clear or over TLS, on a [`Deadline`] socket.
trait Connection: Read + Write {
    fn socket(&mut self) -> &mut Deadline;
}

impl Connection for Deadline {
    fn socket(&mut self) -> &mut Deadline {
        self
    }
}

impl Connection for StreamOwned<ServerConnection, Deadline> {
    fn socket(&mut self) -> &mut Deadline {
        &mut self.sock
    }
}

enum LineError {
    TooLong,
    TooSlow,
    Io(io::Error),
}

/// A line, CRLF included, read within `time`; `None` when the client closed.
fn read_line<S: Connection>(
    reader: &mut BufReader<S>,
    time: Duration,
) -> Result<Option<Vec<u8>>, LineError> {
    reader.get_mut().socket().at = Instant::now() + time;
    let mut line = Vec::new();
    loop {
        let buffer = match reader.fill_buf() {
            Ok(buffer) => buffer,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(LineError::TooSlow);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(LineError::Io(e)),
        };
        if buffer.is_empty() {
            return Ok(None);
        }
        let (taken, complete) = match buffer.iter().position(|&b| b == b'\n') {
            Some(end) => (end + 1, true),
            None => (buffer.len(), false),
        };
        line.extend_from_slice(&buffer[..taken]);
        reader.consume(taken);
        if line.len() > MAX_LINE {
            return Err(LineError::TooLong);
        }
        if complete {
            return Ok(Some(line));
        }
    }
}

/// The mailin handler: collects a message and puts it in the outbox.
#[derive(Clone)]
struct Relay {
    outbox: Outbox,
    account: Account,
    /// The user and password clients must log in with, if any.
    login: Option<Arc<(String, String)>>,
    limits: Limits,
    wake: Arc<Notify>,
    user: Option<String>,
    current: Option<Incoming>,
}

#[derive(Clone, Default)]
struct Incoming {
    sender: String,
    recipients: Vec<String>,
    data: Vec<u8>,
    too_big: bool,
}

impl Relay {
    fn login(&mut self, user: &str, password: &str) -> Response {
        match &self.login {
            Some(login)
                if login.0 == user && constant_time_eq(login.1.as_bytes(), password.as_bytes()) =>
            {
                self.user = Some(user.to_owned());
                mailin::response::AUTH_OK
            }
            _ => mailin::response::INVALID_CREDENTIALS,
        }
    }
}

/// A refusal of the message at its end, and the end of the connection: mailin keeps a
/// session in its DATA state after an error reply there, and would take the client's
/// next commands for message content.
fn refused_and_closed(code: u16, text: String) -> Response {
    let mut response = Response::custom(code, text);
    response.action = Action::Close;
    response
}

/// Compares without stopping at the first difference, so that timing says nothing.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Handler for Relay {
    fn mail(&mut self, _ip: IpAddr, _domain: &str, from: &str) -> Response {
        self.current = Some(Incoming {
            sender: from.to_owned(),
            ..Incoming::default()
        });
        mailin::response::OK
    }

    fn rcpt(&mut self, to: &str) -> Response {
        let Some(current) = &mut self.current else {
            return mailin::response::TRANSACTION_FAILED;
        };
        if current.recipients.len() >= MAX_RECIPIENTS {
            return Response::custom(452, "4.5.3 too many recipients".to_owned());
        }
        current.recipients.push(to.to_owned());
        mailin::response::OK
    }

    fn data(&mut self, buf: &[u8]) -> io::Result<()> {
        if let Some(current) = &mut self.current {
            if current.data.len() + buf.len() > self.limits.max_size {
                current.too_big = true;
                current.data = Vec::new();
            } else if !current.too_big {
                current.data.extend_from_slice(buf);
            }
        }
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        let Some(incoming) = self.current.take() else {
            return mailin::response::TRANSACTION_FAILED;
        };
        if incoming.too_big {
            return refused_and_closed(
                552,
                format!("5.3.4 message over {} bytes", self.limits.max_size),
            );
        }
        let envelope = outbox::Envelope {
            account: Some(self.account.name.clone()),
            sender: Some(incoming.sender),
            recipients: incoming.recipients,
            recipients_from_headers: false,
            qualify_domain: None,
            dsn_notify: None,
            dsn_ret: None,
            dsn_envid: None,
            keep_raw_header: self.account.keep_header,
            require_tls: false,
            accepted_at: outbox::now(),
        };
        match self.outbox.accept(&envelope, &incoming.data) {
            Ok(locked) => {
                let id = locked.id.clone();
                drop(locked); // now the worker may take it
                self.wake.notify_one();
                Response::custom(250, format!("2.0.0 queued as {id}"))
            }
            Err(e) => {
                eprintln!("sendbox serve: {}", e.message);
                refused_and_closed(451, "4.3.0 cannot queue the message now".to_owned())
            }
        }
    }

    fn auth_plain(&mut self, _authorization_id: &str, user: &str, password: &str) -> Response {
        self.login(user, password)
    }

    fn auth_login(&mut self, user: &str, password: &str) -> Response {
        self.login(user, password)
    }
}
