//! Drives the I/O-free dialogue ([`sendbox_proto::Client`]) over a [`Transport`]: writes
//! what it asks to write, reads with the deadline it asks for, runs the TLS handshake
//! when it asks for one, and writes the transcript to stderr. It also brings what the
//! dialogue cannot have without I/O: the time and random tokens for a composed message,
//! the SCRAM nonce, and a NOOP (and one reconnection) before reusing an idle connection.

use std::io::Write as _;
use std::net::IpAddr;
use std::sync::Arc;

use rustls::ClientConfig as TlsConfig;
use rustls::pki_types::ServerName;
use sendbox_proto::sasl;
use sendbox_proto::{
    Client, ClientConfig, Credentials, Delivery, Envelope, EnvelopeRequest, Error, ErrorKind,
    Message, Phase, SendOptions, Stamp, Step, Timer, TlsMode,
};
use wasip2::clocks::wall_clock;
use wasip2::random::random;

use crate::net::{self, Deadline, NetError};
use crate::transport::{self, Transport, TransportError};

const MS: u64 = 1_000_000;

/// A connection idle this long is checked with NOOP before it carries another message:
/// servers commonly drop idle clients after some seconds to minutes.
const IDLE_CHECK_NS: u64 = 5_000 * MS;

/// Time limits in milliseconds, per stage (RFC 5321 section 4.5.3.2).
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    pub connect_ms: u32,
    pub greeting_ms: u32,
    pub command_ms: u32,
    pub mail_ms: u32,
    pub rcpt_ms: u32,
    pub data_start_ms: u32,
    pub data_block_ms: u32,
    pub data_end_ms: u32,
    pub total_ms: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect_ms: 30_000,
            greeting_ms: 300_000,
            command_ms: 300_000,
            mail_ms: 300_000,
            rcpt_ms: 300_000,
            data_start_ms: 120_000,
            data_block_ms: 180_000,
            data_end_ms: 600_000,
            total_ms: 900_000,
        }
    }
}

impl Timeouts {
    /// The overall deadline of a call that starts now: one call, one `total-ms`, whether
    /// it connects, sends, or both.
    pub fn deadline_from_now(&self) -> Deadline {
        net::now() + u64::from(self.total_ms) * MS
    }

    fn for_timer(&self, timer: Timer) -> u32 {
        match timer {
            Timer::Greeting => self.greeting_ms,
            Timer::Command => self.command_ms,
            Timer::Mail => self.mail_ms,
            Timer::Rcpt => self.rcpt_ms,
            Timer::DataStart => self.data_start_ms,
            Timer::DataBlock => self.data_block_ms,
            Timer::DataEnd => self.data_end_ms,
        }
    }
}

/// Everything needed to reach and talk to the server.
#[derive(Clone)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    pub addresses: Vec<String>,
    pub tls: TlsMode,
    pub ca_pem: Option<String>,
    pub ehlo_name: String,
    pub timeouts: Timeouts,
    pub transcript: bool,
}

/// What the dialogue stopped at when it needed the caller.
enum Pause {
    Ready,
    Delivered(Delivery),
    Closed,
}

/// One open SMTP connection.
pub struct Session {
    client: Client,
    transport: Transport,
    tls: Arc<TlsConfig>,
    name: ServerName<'static>,
    /// Kept to reconnect when an idle connection turns out to be gone.
    server: ServerSettings,
    credentials: Option<Credentials>,
    /// When the connection last carried a command (monotonic clock).
    last_used: Deadline,
}

impl Session {
    /// Connects and runs the dialogue up to the point where a message can be sent, before
    /// `deadline` (see [`Timeouts::deadline_from_now`]). Input is checked before any
    /// connection is made.
    pub fn open(
        server: ServerSettings,
        credentials: Option<Credentials>,
        deadline: Deadline,
    ) -> Result<Session, Error> {
        let client = Client::new(ClientConfig {
            ehlo_name: server.ehlo_name.clone(),
            tls: server.tls,
            credentials: credentials.clone(),
            server_host: server.host.clone(),
            server_port: server.port,
            sasl_nonce: sasl::nonce_from_random(&random::get_random_bytes(18)),
            transcript: server.transcript,
        })?;
        let invalid = |message: String| Error::invalid_input(Phase::Connect, message);
        let name = transport::server_name(&server.host).map_err(invalid)?;
        let tls = transport::tls_config(server.ca_pem.as_deref()).map_err(invalid)?;
        let addresses = parse_addresses(&server.host, &server.addresses)?;

        let connect_deadline =
            deadline.min(net::now() + u64::from(server.timeouts.connect_ms) * MS);
        let tcp = net::connect(&addresses, server.port, connect_deadline).map_err(|error| {
            let target = format!("{}:{}", server.host, server.port);
            match error {
                NetError::Timeout => Error::new(
                    Phase::Connect,
                    ErrorKind::Timeout,
                    format!("connecting to {target} timed out"),
                ),
                NetError::Closed => Error::new(
                    Phase::Connect,
                    ErrorKind::Network,
                    format!("{target} closed the connection"),
                ),
                NetError::Failed(why) => Error::new(
                    Phase::Connect,
                    ErrorKind::Network,
                    format!("cannot connect: {why}"),
                ),
                NetError::Denied(why) => Error {
                    transient: false,
                    ..Error::new(
                        Phase::Connect,
                        ErrorKind::Network,
                        format!("cannot connect: {why}"),
                    )
                },
            }
        })?;
        let mut session = Session {
            client,
            transport: Transport::new(tcp),
            tls,
            name,
            last_used: net::now(),
            server,
            credentials,
        };
        if session.server.tls == TlsMode::Implicit {
            session.handshake(deadline)?;
        }
        match session.run(deadline)? {
            Pause::Ready => Ok(session),
            Pause::Delivered(_) | Pause::Closed => Err(Error::new(
                Phase::Greeting,
                ErrorKind::Protocol,
                "the session ended early",
            )),
        }
    }

    /// The time limits this session was opened with.
    pub fn timeouts(&self) -> Timeouts {
        self.server.timeouts
    }

    /// Sends one message made by [`prepare`], before `deadline`.
    pub fn send(
        &mut self,
        prepared: Prepared,
        options: SendOptions,
        deadline: Deadline,
    ) -> Result<Delivery, Error> {
        if net::now().saturating_sub(self.last_used) > IDLE_CHECK_NS && !self.client.is_closed() {
            self.check_or_reconnect(deadline)?;
        }
        self.client
            .send(prepared.envelope, &prepared.bytes, options)?;
        let pause = self.run(deadline);
        self.last_used = net::now();
        match pause? {
            Pause::Delivered(delivery) => Ok(delivery),
            Pause::Ready | Pause::Closed => Err(Error::new(
                Phase::Data,
                ErrorKind::Protocol,
                "the transaction ended without a result",
            )),
        }
    }

    /// Checks an idle connection with NOOP; if the server has dropped it, connects again.
    fn check_or_reconnect(&mut self, deadline: Deadline) -> Result<(), Error> {
        let alive = self.client.noop().is_ok() && matches!(self.run(deadline), Ok(Pause::Ready));
        if !alive {
            if self.server.transcript {
                log("-- the idle connection is gone; connecting again");
            }
            *self = Session::open(self.server.clone(), self.credentials.clone(), deadline)?;
        }
        Ok(())
    }

    /// Whether the dialogue can take another message (see the WIT's `is-open`).
    pub fn is_open(&self) -> bool {
        !self.client.is_closed()
    }

    /// Sends QUIT and waits briefly for the reply.
    pub fn close(&mut self) -> Result<(), Error> {
        let deadline = net::now() + u64::from(self.server.timeouts.command_ms.min(10_000)) * MS;
        self.client.quit();
        self.run(deadline).map(|_| ())
    }

    fn run(&mut self, deadline: Deadline) -> Result<Pause, Error> {
        let result = self.step_until_pause(deadline);
        self.write_transcript();
        result
    }

    fn step_until_pause(&mut self, deadline: Deadline) -> Result<Pause, Error> {
        loop {
            if self.server.transcript {
                self.write_transcript();
            }
            match self.client.poll() {
                Step::Transmit(bytes, timer) => {
                    let until =
                        self.stage_deadline(self.server.timeouts.for_timer(timer), deadline);
                    if let Err(error) = self.transport.send(&bytes, until) {
                        return self.lost(error, deadline).map(Pause::Delivered);
                    }
                }
                Step::Receive(wait) => {
                    let until =
                        self.stage_deadline(self.server.timeouts.for_timer(wait.timer), deadline);
                    match self.transport.receive(until) {
                        Ok(bytes) => self.client.receive(&bytes),
                        Err(error) => return self.lost(error, deadline).map(Pause::Delivered),
                    }
                }
                Step::StartTls => {
                    self.handshake(deadline)?;
                    self.client.tls_established();
                }
                Step::Ready => return Ok(Pause::Ready),
                Step::Delivered(delivery) => return Ok(Pause::Delivered(delivery)),
                Step::Failed(error) => return Err(error),
                Step::Closed => return Ok(Pause::Closed),
            }
        }
    }

    fn handshake(&mut self, deadline: Deadline) -> Result<(), Error> {
        self.write_transcript();
        let until = self.stage_deadline(self.server.timeouts.command_ms, deadline);
        match self
            .transport
            .start_tls(self.tls.clone(), self.name.clone(), until)
        {
            Ok(summary) => {
                if self.server.transcript {
                    log(&format!("-- TLS established: {summary}"));
                }
                Ok(())
            }
            Err(error) => {
                // No transaction runs during a handshake: nothing can have been delivered.
                let mut error = match self.lost(error, deadline) {
                    Err(error) => error,
                    Ok(_) => Error::new(Phase::Tls, ErrorKind::Protocol, "TLS failed"),
                };
                error.phase = Phase::Tls;
                Err(error)
            }
        }
    }

    fn stage_deadline(&self, limit_ms: u32, deadline: Deadline) -> Deadline {
        deadline.min(net::now() + u64::from(limit_ms) * MS)
    }

    /// Turns a transport failure into what the caller gets (see
    /// [`Client::connection_lost`]) and closes the dialogue.
    fn lost(&mut self, error: TransportError, deadline: Deadline) -> Result<Delivery, Error> {
        let (kind, message) = match error {
            TransportError::Net(NetError::Timeout) if net::now() >= deadline => (
                ErrorKind::Timeout,
                format!(
                    "the overall time limit of {} ms ran out",
                    self.server.timeouts.total_ms
                ),
            ),
            TransportError::Net(NetError::Timeout) => (
                ErrorKind::Timeout,
                "the server did not answer in time".to_owned(),
            ),
            TransportError::Net(NetError::Closed) => (
                ErrorKind::Network,
                "the server closed the connection".to_owned(),
            ),
            TransportError::Net(NetError::Failed(why) | NetError::Denied(why)) => {
                (ErrorKind::Network, format!("connection failed: {why}"))
            }
            TransportError::Tls(why) => (
                ErrorKind::Tls,
                format!("the handshake with {:?} failed: {why}", self.name.to_str()),
            ),
        };
        self.client.connection_lost(kind, message)
    }

    fn write_transcript(&mut self) {
        for line in self.client.take_transcript() {
            log(&line);
        }
    }
}

/// A message built and its envelope completed and checked, before any connection.
pub struct Prepared {
    envelope: Envelope,
    bytes: Vec<u8>,
}

/// Builds the message, completes the envelope from it, and checks both and the options,
/// so that bad input is refused before anything is sent.
pub fn prepare(
    request: EnvelopeRequest,
    message: Message,
    options: &SendOptions,
) -> Result<Prepared, Error> {
    options.check()?;
    let (envelope, bytes) = message.build(request, options.raw_header, stamp)?;
    envelope.check()?;
    Ok(Prepared { envelope, bytes })
}

/// The time and a unique token for a composed message's Date and Message-ID.
fn stamp() -> Stamp {
    let now = wall_clock::now();
    Stamp {
        unix_time: i64::try_from(now.seconds).unwrap_or(i64::MAX),
        unique: format!(
            "{:016x}{:016x}",
            random::get_random_u64(),
            random::get_random_u64()
        ),
    }
}

/// Writes a transcript line to stderr. A full or closed stderr must never stop a send,
/// so write errors are ignored (unlike `eprintln!`, which panics on them).
fn log(line: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{line}");
}

/// The addresses to connect to: the embedder's list, or the host itself if it is an IP.
fn parse_addresses(host: &str, addresses: &[String]) -> Result<Vec<IpAddr>, Error> {
    let invalid = |message: String| Error::invalid_input(Phase::Connect, message);
    if addresses.is_empty() {
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        return literal.parse().map(|ip| vec![ip]).map_err(|_| {
            invalid(format!(
                "no address given for {host:?}, and the component does not resolve names"
            ))
        });
    }
    addresses
        .iter()
        .map(|a| {
            a.parse()
                .map_err(|_| invalid(format!("{a:?} is not an IP address")))
        })
        .collect()
}
