//! `sendbox serve`: a small SMTP listener for programs that can only hand mail to a host
//! and port (monitoring, forges, CI). Each message goes into the outbox, and is answered
//! 250 only once it is on disk (clients sending at the same moment share the fsync of the
//! queue folder: see `outbox::commit`); a worker then delivers what is due through the
//! account, inside the sandbox, as `sendbox queue run` does.
//!
//! The dialogue, and every rule that bounds what a client can make it do (the framing
//! that closes SMTP smuggling, the line length, the time per line and before a login, the
//! message size, the recipients, failed logins), is `sendbox_proto::server`, free of I/O.
//! This file carries it over a socket: a thread per client, the TLS handshake within the
//! time of a line, and a limited number of connections, where a new client may take the
//! place of one that has not shown it is there to send mail.
//!
//! On loopback TLS is optional. With `--tls-cert` and `--tls-key` it offers STARTTLS (with
//! rustls) and takes a login or a message only after it. Beyond loopback it listens only
//! with TLS and `--require-auth`: nothing then crosses the network in the clear, and no one
//! else on it can relay through the account.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::{self, PemObject as _};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};
use sendbox_proto::server::{self, Answer, Event, Incoming, Login, Server};
use tokio::sync::Notify;

use crate::args::ServeArgs;
use crate::config::Account;
use crate::config::{self, Config};
use crate::error::Error;
use crate::outbox::{self, Outbox};
use crate::queue;

/// Recipients per message (RFC 5321 4.5.3.1.8: a server must take at least 100).
const MAX_RECIPIENTS: usize = 100;
/// How often the worker looks for retries that have come due.
const RETRY_POLL: Duration = Duration::from_secs(60);

pub async fn run(args: ServeArgs) -> Result<u8, Error> {
    beyond_loopback(&args)?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tls_config(cert, key)?),
        // clap takes the two together or neither.
        _ => None,
    };
    let config = Config::load(args.config.as_deref())?;
    let account = config
        .account(args.account.as_deref())?
        .ok_or_else(|| {
            config::Error::from(
                config.no_default_account("serve needs an account to relay through"),
            )
        })?
        .clone();
    let login = match &args.require_auth {
        Some(user) => {
            let var = args.password_env.as_deref().ok_or_else(|| {
                Error::Usage("--require-auth needs --password-env VAR".to_owned())
            })?;
            let password = config::secret_from_env(var)
                .map_err(|e| Error::Usage(format!("--password-env: {e}")))?;
            Some(Login {
                user: user.clone(),
                password,
            })
        }
        None => None,
    };
    let outbox = queue::open(&config.queue)?;
    let listener = TcpListener::bind(args.listen)
        .map_err(|e| Error::Unavailable(format!("cannot listen on {}: {e}", args.listen)))?;
    let wake = Arc::new(Notify::new());
    println!(
        "sendbox serve: listening on {}{}, relaying through account {} (outbox {})",
        args.listen,
        if tls.is_some() { " with STARTTLS" } else { "" },
        account.name,
        outbox.root().display()
    );
    let listening = Listening {
        dialogue: server::ServerConfig {
            hostname: "sendbox-serve".to_owned(),
            max_message: args.max_size,
            max_recipients: MAX_RECIPIENTS,
            starttls: tls.is_some(),
            login,
            line_ms: args.idle_timeout * 1000,
            login_ms: args.login_timeout * 1000,
        },
        tls,
        relay: Arc::new(Relay {
            outbox: outbox.clone(),
            account: account.clone(),
            wake: wake.clone(),
        }),
        slots: Arc::new(Slots::new(args.max_connections.into())),
        penalties: Arc::new(Penalties::default()),
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
fn beyond_loopback(args: &ServeArgs) -> Result<(), Error> {
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
    Err(Error::Usage(format!(
        "--listen {}: beyond loopback, sendbox serve also needs {}",
        args.listen,
        missing.join("; and ")
    )))
}

/// The TLS settings for `--tls-cert` and `--tls-key`, checked before anything listens.
fn tls_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, Error> {
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
        .map_err(|e| Error::Internal(format!("cannot set up TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, private_key)
        .map_err(|e| {
            let (cert, key) = (cert.display(), key.display());
            Error::Unusable(match e {
                rustls::Error::InconsistentKeys(_) => format!(
                    "--tls-key {key} is not the key of the certificate in --tls-cert {cert}"
                ),
                e => format!("cannot use --tls-cert {cert} with --tls-key {key}: {e}"),
            })
        })?;
    Ok(Arc::new(config))
}

/// Why a PEM file cannot be used: unreadable (66), or not holding what it should (78).
fn unusable(option: &str, path: &Path, holds: &str, error: pem::Error) -> Error {
    let path = path.display();
    match error {
        pem::Error::Io(e) => Error::NoInput(format!("{option} {path}: cannot read it: {e}")),
        pem::Error::NoItemsFound => Error::Unusable(format!("{option} {path}: no {holds}")),
        e => Error::Unusable(format!("{option} {path}: not a {holds}: {e}")),
    }
}

struct Listening {
    dialogue: server::ServerConfig,
    tls: Option<Arc<ServerConfig>>,
    relay: Arc<Relay>,
    slots: Arc<Slots>,
    penalties: Arc<Penalties>,
}

impl Listening {
    fn accept(self, listener: TcpListener) {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else {
                // Out of file descriptors, say: wait instead of spinning.
                std::thread::sleep(Duration::from_millis(100));
                continue;
            };
            let slot = match self.slots.admit(&stream) {
                Ok(slot) => slot,
                Err(refusal) => {
                    let _ = stream.write_all(refusal.as_bytes());
                    continue;
                }
            };
            let dialogue = self.dialogue.clone();
            let tls = self.tls.clone();
            let relay = self.relay.clone();
            let slots = self.slots.clone();
            let penalties = self.penalties.clone();
            std::thread::spawn(move || {
                let client = Client {
                    relay: &relay,
                    slot: &slot,
                    penalties: &penalties,
                };
                let _ = converse(stream, dialogue, tls, &client);
                slots.release(&slot);
            });
        }
    }
}

/// The connections open, and the rule for taking a new one: within the limit, at most
/// half of it for one address beyond loopback (as Postfix's anvil, which also spares
/// `mynetworks`), and when full, in place of the oldest client that has not shown it is
/// there to send mail, so that idle clients cannot lock out those with work.
struct Slots {
    max: usize,
    open: Mutex<Vec<Arc<Slot>>>,
}

/// One connection's place.
struct Slot {
    client: IpAddr,
    opened: Instant,
    /// The client has logged in, or (without a login) begun a message, or waits for a
    /// login verdict: it is not closed to make room.
    keeps: AtomicBool,
    /// To close it from the accepting thread, when another client takes its place.
    socket: TcpStream,
}

impl Slots {
    fn new(max: usize) -> Slots {
        Slots {
            max,
            open: Mutex::new(Vec::new()),
        }
    }

    fn admit(&self, stream: &TcpStream) -> Result<Arc<Slot>, &'static str> {
        let client = stream
            .peer_addr()
            .map_err(|_| "421 4.3.0 cannot serve this connection\r\n")?
            .ip();
        let socket = stream
            .try_clone()
            .map_err(|_| "421 4.3.0 cannot serve this connection now\r\n")?;
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let from_client = open.iter().filter(|slot| slot.client == client).count();
        if !client.is_loopback() && from_client >= (self.max / 2).max(1) {
            return Err("421 4.7.0 too many connections from your address, try again later\r\n");
        }
        if open.len() >= self.max {
            let idle = open
                .iter()
                .enumerate()
                .filter(|(_, slot)| !slot.keeps.load(Ordering::SeqCst))
                .min_by_key(|(_, slot)| slot.opened)
                .map(|(at, _)| at);
            let Some(idle) = idle else {
                return Err("421 4.7.0 too many connections, try again later\r\n");
            };
            let _ = open.swap_remove(idle).socket.shutdown(Shutdown::Both);
        }
        let slot = Arc::new(Slot {
            client,
            opened: Instant::now(),
            keeps: AtomicBool::new(false),
            socket,
        });
        open.push(slot.clone());
        Ok(slot)
    }

    fn release(&self, slot: &Arc<Slot>) {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        open.retain(|other| !Arc::ptr_eq(other, slot));
    }
}

/// Failed logins per client address, as Dovecot's auth penalty keeps them: each failure
/// doubles the wait for every login verdict of that address, on any of its connections,
/// from 1 s up to 15 s, and a quiet quarter of an hour forgets them. Delaying only the
/// failed connection's own reply is not enough: a guesser hangs up when a success does
/// not come at once, and tries again on a new connection.
#[derive(Default)]
struct Penalties {
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl Penalties {
    const MAX_MS: u32 = 15_000;
    const FORGET: Duration = Duration::from_secs(15 * 60);

    /// Whose failures count together: every loopback address is one client (any local
    /// user can bind 127.x.y.z), and so is an IPv6 /64 (one site's).
    fn key(client: IpAddr) -> IpAddr {
        match client {
            client if client.is_loopback() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) if v4.is_loopback() => IpAddr::V4(Ipv4Addr::LOCALHOST),
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
            },
            client => client,
        }
    }

    fn delay_ms(&self, client: IpAddr) -> u32 {
        let failures = self
            .failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match failures.get(&Self::key(client)) {
            Some(&(count, last)) if last.elapsed() < Self::FORGET => 1_000u32
                .saturating_mul(1 << (count - 1).min(4))
                .min(Self::MAX_MS),
            _ => 0,
        }
    }

    fn failed(&self, client: IpAddr) {
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Bounded by the addresses seen within the quarter hour.
        failures.retain(|_, (_, last)| last.elapsed() < Self::FORGET);
        let entry = failures
            .entry(Self::key(client))
            .or_insert((0, Instant::now()));
        *entry = (entry.0.saturating_add(1), Instant::now());
    }
}

/// What a connection's thread shares with the others.
struct Client<'a> {
    relay: &'a Relay,
    slot: &'a Slot,
    penalties: &'a Penalties,
}

/// One client: the dialogue in the clear, then, after STARTTLS, the handshake within one
/// line's time and the dialogue over TLS.
fn converse(
    stream: TcpStream,
    dialogue: server::ServerConfig,
    tls: Option<Arc<ServerConfig>>,
    client: &Client,
) -> io::Result<()> {
    let line_time = Duration::from_millis(dialogue.line_ms.into());
    stream.set_nodelay(true)?;
    // A client that does not read its replies is cut off too, rather than holding a
    // connection for ever once the buffers are full.
    stream.set_write_timeout(Some(line_time))?;
    let clock = Clock(Instant::now());
    let mut server = Server::new(dialogue, clock.now());
    let mut plain = Deadline {
        socket: stream,
        at: Instant::now(),
    };
    if talk(&mut server, &mut plain, client, &clock)? == Ended::Closed {
        return Ok(());
    }
    let Some(tls) = tls else {
        // The dialogue offers STARTTLS only with a certificate.
        return Ok(());
    };
    let connection = ServerConnection::new(tls).map_err(io::Error::other)?;
    let mut stream = StreamOwned::new(connection, plain);
    // The whole handshake within one line's time, however the client spreads it out.
    stream.sock.at = Instant::now() + line_time;
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    talk(&mut server, &mut stream, client, &clock)?;
    Ok(())
}

/// The connection's own clock, as the dialogue takes time: from when it opened.
struct Clock(Instant);

impl Clock {
    fn now(&self) -> sendbox_proto::Instant {
        let nanos = u64::try_from(self.0.elapsed().as_nanos()).unwrap_or(u64::MAX);
        sendbox_proto::Instant::from_nanos(nanos)
    }

    fn at(&self, instant: sendbox_proto::Instant) -> Instant {
        self.0 + Duration::from_nanos(instant.as_nanos())
    }
}

#[derive(PartialEq, Eq)]
enum Ended {
    Closed,
    StartTls,
}

/// Carries the dialogue over `stream` until it closes or asks for TLS: sends what it says,
/// keeps the messages it hands over, and reads until its next deadline.
fn talk<S: Connection>(
    server: &mut Server,
    stream: &mut S,
    client: &Client,
    clock: &Clock,
) -> io::Result<Ended> {
    let mut buffer = vec![0; 16 * 1024];
    let address = client.slot.client;
    loop {
        // Failures on the address's other connections count here too.
        server.set_login_delay(client.penalties.delay_ms(address));
        while let Some(event) = server.poll(clock.now()) {
            // Before the reply goes out, so that a client that has it keeps its place.
            client
                .slot
                .keeps
                .store(server.keeps_its_place(), Ordering::SeqCst);
            match event {
                Event::Send(bytes) => send(stream, &bytes)?,
                Event::StartTls => return Ok(Ended::StartTls),
                Event::Message(incoming) => server.answer(client.relay.keep(incoming), clock.now()),
                Event::LoginFailed => client.penalties.failed(address),
                Event::Close => return Ok(Ended::Closed),
            }
        }
        // A held login verdict, too, before waiting for it.
        client
            .slot
            .keeps
            .store(server.keeps_its_place(), Ordering::SeqCst);
        let Some(deadline) = server.deadline() else {
            return Ok(Ended::Closed);
        };
        stream.socket().at = clock.at(deadline);
        match stream.read(&mut buffer) {
            Ok(0) => return Ok(Ended::Closed),
            Ok(read) => server.receive(&buffer[..read]),
            // The deadline passed: the next poll says what that means.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                ) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
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

/// Where messages go: the outbox, for the account; the worker is woken for each.
struct Relay {
    outbox: Outbox,
    account: Account,
    wake: Arc<Notify>,
}

impl Relay {
    /// Keeps a message in the outbox: `Kept` only once it is synced to disk. Called from
    /// every client's thread at once: the outbox groups their syncs.
    fn keep(&self, incoming: Incoming) -> Answer {
        let envelope = sendbox::Envelope {
            sender: Some(incoming.sender),
            recipients: incoming.recipients,
            recipients_from_headers: false,
            qualify_domain: None,
        };
        let options = sendbox::SendOptions {
            keep_raw_header: self.account.keep_header,
            ..sendbox::SendOptions::default()
        };
        let envelope = outbox::Envelope::new(&self.account.name, envelope, &options, outbox::now());
        match self.outbox.accept(&envelope, &incoming.content) {
            Ok(locked) => {
                let id = locked.id.clone();
                drop(locked); // now the worker may take it
                self.wake.notify_one();
                Answer::Kept(id)
            }
            Err(e) => {
                eprintln!("sendbox serve: {e}");
                Answer::NotNow("cannot queue the message now".to_owned())
            }
        }
    }
}
