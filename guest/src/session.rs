//! Drives the I/O-free dialogue ([`sendbox_proto::Client`]) over a [`Transport`]: writes
//! what it asks to write and reads, each before the deadline it gives, runs the TLS
//! handshake when it asks for one, reconnects when it finds an idle connection gone, and
//! writes the transcript to stderr. It also brings what the dialogue cannot have without
//! I/O: the clocks, and random tokens for a composed message and the SCRAM nonce.

use std::io::Write as _;
use std::net::IpAddr;
use std::sync::Arc;

use rustls::ClientConfig as TlsConfig;
use rustls::pki_types::ServerName;
use sendbox_proto::sasl;
use sendbox_proto::{
    Client, ClientConfig, Credentials, Delivery, Envelope, EnvelopeRequest, Error, ErrorKind,
    Instant, Message, Phase, SendOptions, Stamp, Step, Timeouts, TlsMode,
};
use wasip2::clocks::wall_clock;
use wasip2::random::random;

use crate::dkim::Signer;
use crate::net::{self, NetError};
use crate::transport::{self, Transport, TransportError};

/// The monotonic clock, as the dialogue reads time.
pub fn now() -> Instant {
    Instant::from_nanos(net::now())
}

/// Everything needed to reach and talk to the server.
#[derive(Clone)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    pub addresses: Vec<String>,
    pub tls: TlsMode,
    pub ca_pem: Option<String>,
    pub ehlo_name: Option<String>,
    pub timeouts: Timeouts,
    pub transcript: bool,
}

/// What the dialogue stopped at when it needed the caller.
enum Pause {
    Ready,
    Delivered(Delivery),
    Failed(Error),
    Reconnect,
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
}

impl Session {
    /// Connects and runs the dialogue up to the point where a message can be sent, in a
    /// call that began at `call_start`. Input is checked before any connection is made.
    pub fn open(
        server: ServerSettings,
        credentials: Option<Credentials>,
        call_start: Instant,
    ) -> Result<Session, Error> {
        let client = Client::new(
            ClientConfig {
                ehlo_name: server.ehlo_name.clone(),
                tls: server.tls,
                credentials: credentials.clone(),
                server_host: server.host.clone(),
                server_port: server.port,
                sasl_nonce: sasl::nonce_from_random(&random::get_random_bytes(18)),
                transcript: server.transcript,
                timeouts: server.timeouts,
            },
            call_start,
        )?;
        let invalid = |message: String| Error::invalid_input(Phase::Connect, message);
        let name = transport::server_name(&server.host).map_err(invalid)?;
        let tls = sendbox_proto::tls::client_config(server.ca_pem.as_deref()).map_err(invalid)?;
        let addresses = parse_addresses(&server.host, &server.addresses)?;

        let connect_deadline = client.connect_deadline(now());
        let tcp = net::connect(&addresses, server.port, connect_deadline.as_nanos())
            .map_err(|error| connect_error(&server, error))?;
        let mut session = Session {
            client,
            transport: Transport::new(tcp),
            tls,
            name,
            server,
            credentials,
        };
        match session.run() {
            Pause::Ready => Ok(session),
            Pause::Failed(error) => Err(error),
            Pause::Delivered(_) | Pause::Reconnect | Pause::Closed => Err(Error::new(
                Phase::Greeting,
                ErrorKind::Protocol,
                "the session ended early",
            )),
        }
    }

    /// Sends one message made by [`prepare`], in a call that began at `call_start`. If the
    /// connection was idle and turns out to be gone, connects again once and sends there.
    pub fn send(
        &mut self,
        call_start: Instant,
        prepared: &Prepared,
        options: SendOptions,
    ) -> Result<Delivery, Error> {
        match self.send_once(call_start, prepared, options.clone())? {
            Pause::Reconnect => {
                if self.server.transcript {
                    log("-- the idle connection is gone; connecting again");
                }
                *self = Session::open(self.server.clone(), self.credentials.clone(), call_start)?;
                // A fresh connection is never idle: no second reconnection.
                self.send_once(call_start, prepared, options)
                    .and_then(Pause::into_delivery)
            }
            pause => pause.into_delivery(),
        }
    }

    fn send_once(
        &mut self,
        call_start: Instant,
        prepared: &Prepared,
        options: SendOptions,
    ) -> Result<Pause, Error> {
        let Step::Ready(ready) = self.client.poll(now()) else {
            return Err(Error::new(
                Phase::Mail,
                ErrorKind::Closed,
                "the session is not ready for a message",
            ));
        };
        ready.send(
            call_start,
            prepared.envelope.clone(),
            prepared.bytes.clone(),
            options,
        )?;
        Ok(self.run())
    }

    /// Whether the dialogue can take another message (see the WIT's `is-open`).
    pub fn is_open(&self) -> bool {
        !self.client.is_closed()
    }

    /// Sends QUIT and waits briefly for the reply.
    pub fn close(&mut self) -> Result<(), Error> {
        let now = now();
        if let Step::Ready(ready) = self.client.poll(now) {
            ready.quit(now);
        }
        match self.run() {
            Pause::Failed(error) => Err(error),
            _ => Ok(()),
        }
    }

    /// Moves bytes and runs the handshake as the dialogue asks, until it needs the caller.
    fn run(&mut self) -> Pause {
        let pause = loop {
            if self.server.transcript {
                self.write_transcript();
            }
            match self.client.poll(now()) {
                Step::Transmit(bytes, until) => {
                    if let Err(error) = self.transport.send(&bytes, until.as_nanos()) {
                        self.lost(error);
                    }
                }
                Step::Receive(wait) => match self.transport.receive(wait.until.as_nanos()) {
                    Ok(bytes) => self.client.receive(&bytes),
                    Err(error) => self.lost(error),
                },
                Step::StartTls(handshake) => {
                    let until = handshake.until().as_nanos();
                    match self
                        .transport
                        .start_tls(self.tls.clone(), self.name.clone(), until)
                    {
                        Ok(summary) => {
                            handshake.established();
                            if self.server.transcript {
                                // After the 220 that let it start.
                                self.write_transcript();
                                log(&format!("-- TLS established: {summary}"));
                            }
                        }
                        Err(error) => self.lost(error),
                    }
                }
                Step::Ready(_) => break Pause::Ready,
                Step::Delivered(delivery) => break Pause::Delivered(delivery),
                Step::Failed(error) => break Pause::Failed(error),
                Step::Reconnect => break Pause::Reconnect,
                Step::Closed => break Pause::Closed,
            }
        };
        self.write_transcript();
        pause
    }

    /// Tells the dialogue that the connection failed under it.
    fn lost(&mut self, error: TransportError) {
        let message = match error {
            TransportError::Net(NetError::Timeout) => return self.client.timed_out(now()),
            TransportError::Net(NetError::Closed) => "the server closed the connection".to_owned(),
            TransportError::Net(NetError::Failed(why) | NetError::Denied(why)) => {
                format!("connection failed: {why}")
            }
            TransportError::Tls(why) => {
                let failed = format!("the handshake with {:?} failed: {why}", self.name.to_str());
                return self.client.connection_lost(ErrorKind::Tls, failed);
            }
        };
        self.client.connection_lost(ErrorKind::Network, message);
    }

    fn write_transcript(&mut self) {
        for line in self.client.take_transcript() {
            log(&line);
        }
    }
}

impl Pause {
    /// What a message's send ended with.
    fn into_delivery(self) -> Result<Delivery, Error> {
        match self {
            Pause::Delivered(delivery) => Ok(delivery),
            Pause::Failed(error) => Err(error),
            Pause::Ready | Pause::Reconnect | Pause::Closed => Err(Error::new(
                Phase::Data,
                ErrorKind::Protocol,
                "the transaction ended without a result",
            )),
        }
    }
}

/// Why the connection could not be made, for the caller.
fn connect_error(server: &ServerSettings, error: NetError) -> Error {
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
        // The sandbox refused: trying again cannot help.
        NetError::Denied(why) => Error {
            transient: false,
            ..Error::new(
                Phase::Connect,
                ErrorKind::Network,
                format!("cannot connect: {why}"),
            )
        },
    }
}

/// A message built and its envelope completed and checked, before any connection.
pub struct Prepared {
    envelope: Envelope,
    /// Shared with the dialogue, which encodes it a piece at a time as it sends: a large
    /// message is held once, even when a reconnection sends it again.
    bytes: Arc<Vec<u8>>,
}

impl Prepared {
    /// The envelope and the message's bytes, for a caller that keeps them to send later.
    pub fn into_parts(self) -> (Envelope, Vec<u8>) {
        let bytes = Arc::try_unwrap(self.bytes).unwrap_or_else(|shared| shared.to_vec());
        (self.envelope, bytes)
    }
}

/// Builds the message, completes the envelope from it, and checks both and the options,
/// so that bad input is refused before anything is sent. With a `signer`, the message is
/// signed as it is now (the fields added, the Bcc gone), and the signature put on top.
pub fn prepare(
    request: EnvelopeRequest,
    message: Message,
    options: &SendOptions,
    signer: Option<&Signer>,
) -> Result<Prepared, Error> {
    options.check()?;
    let (envelope, mut bytes) = message.build(request, options.raw_header, stamp)?;
    envelope.check()?;
    if let Some(signer) = signer {
        let mut signed = signer.sign(&bytes, wall_clock::now().seconds)?;
        signed.append(&mut bytes);
        bytes = signed;
    }
    Ok(Prepared {
        envelope,
        bytes: Arc::new(bytes),
    })
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
