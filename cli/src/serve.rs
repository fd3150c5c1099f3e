//! `sendbox serve`: a small SMTP listener on loopback for programs that can only hand mail
//! to a host and port (monitoring, forges, CI). Each message goes into the outbox, and is
//! answered 250 only once it is on disk; a worker then delivers what is due through the
//! account, inside the sandbox, as `sendbox queue run` does.
//!
//! The SMTP commands are parsed by the `mailin` server library; this file bounds what a
//! local, untrusted client can make it do: the line length, the message size, the number
//! of connections, the recipients per message, and the time each line may take (so that a
//! client that trickles bytes is cut off). It listens on loopback only.

use std::io::{self, BufRead as _, BufReader, Write as _};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mailin::{Action, AuthMechanism, Handler, Response, SessionBuilder};
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
    if !args.listen.ip().is_loopback() {
        return Err(Stop(
            exit::USAGE,
            format!(
                "--listen {}: sendbox serve listens on loopback only (127.0.0.1 or ::1); it \
                 offers no TLS, so a login or a message from another machine would cross the \
                 network in the clear",
                args.listen
            ),
        ));
    }
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
    let listening = Listening {
        builder: session_builder(login.is_some()),
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
    println!(
        "sendbox serve: listening on {}, relaying through account {} (outbox {})",
        args.listen,
        account.name,
        outbox.root().display()
    );
    std::thread::spawn(move || listening.accept(listener));
    // The worker: what was just accepted at once, retries when they come due.
    loop {
        queue::run(&config, false).await?;
        let _ = tokio::time::timeout(RETRY_POLL, wake.notified()).await;
    }
}

fn session_builder(auth: bool) -> SessionBuilder {
    let mut builder = SessionBuilder::new("sendbox-serve");
    if auth {
        // Loopback only: nothing crosses a network, so a login without TLS is safe here.
        builder
            .enable_auth(AuthMechanism::Plain)
            .enable_auth(AuthMechanism::Login)
            .insecure_enable_plaintext_auth();
    }
    builder
}

struct Listening {
    builder: SessionBuilder,
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
            let relay = self.template.clone();
            std::thread::spawn(move || {
                let _ = converse(stream, &builder, relay);
                connections.fetch_sub(1, Ordering::SeqCst);
            });
        }
    }
}

/// One client: the greeting, then a line at a time through mailin, each line read within
/// the time limit and the length limit.
fn converse(stream: TcpStream, builder: &SessionBuilder, relay: Relay) -> io::Result<()> {
    let limits = relay.limits;
    let peer: SocketAddr = stream.peer_addr()?;
    let mut session = builder.build(peer.ip(), relay);
    let mut writer = stream.try_clone()?;
    stream.set_nodelay(true)?;
    reply(&mut writer, &session.greeting())?;
    let mut reader = BufReader::new(stream);
    loop {
        let line = match read_line(&mut reader, limits.line_time) {
            Ok(Some(line)) => line,
            Ok(None) => return Ok(()),
            Err(LineError::TooLong) => {
                writer.write_all(b"500 5.5.2 line too long, closing\r\n")?;
                return Ok(());
            }
            Err(LineError::TooSlow) => {
                writer.write_all(b"421 4.4.2 too slow, closing\r\n")?;
                return Ok(());
            }
            Err(LineError::Io(e)) => return Err(e),
        };
        let response = session.process(&line);
        match response.action {
            Action::NoReply => {}
            Action::Reply => reply(&mut writer, &response)?,
            Action::Close | Action::UpgradeTls => {
                // STARTTLS is never offered; a client that asks anyway is told no.
                reply(&mut writer, &response)?;
                return Ok(());
            }
        }
    }
}

/// Writes a reply in one piece: mailin writes its parts one by one, and a reply in four
/// segments waits on the client's delayed acknowledgement.
fn reply(writer: &mut TcpStream, response: &Response) -> io::Result<()> {
    writer.write_all(&response.buffer()?)
}

enum LineError {
    TooLong,
    TooSlow,
    Io(io::Error),
}

/// A line, CRLF included, read within `time`; `None` when the client closed.
fn read_line(
    reader: &mut BufReader<TcpStream>,
    time: Duration,
) -> Result<Option<Vec<u8>>, LineError> {
    let deadline = Instant::now() + time;
    let mut line = Vec::new();
    loop {
        let left = deadline
            .checked_duration_since(Instant::now())
            .filter(|left| !left.is_zero())
            .ok_or(LineError::TooSlow)?;
        reader
            .get_ref()
            .set_read_timeout(Some(left))
            .map_err(LineError::Io)?;
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
