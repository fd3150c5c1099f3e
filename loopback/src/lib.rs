//! An SMTP server on loopback, built on the `mailin` server library with rustls, and a
//! private CA made at start-up with rcgen. `sendbox demo` sends to it and the tests check
//! what it received. It needs no account, no network and no configuration.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

pub use mailin::AuthMechanism;
use mailin::{Action, Handler, Response, SessionBuilder};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

/// How the loopback server offers TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerTls {
    /// No TLS (and no AUTH, which needs TLS).
    None,
    /// STARTTLS after a plaintext greeting.
    StartTls,
    /// TLS from the first byte.
    Implicit,
}

/// What the server accepts.
#[derive(Clone, Debug)]
pub struct LoopbackOptions {
    /// How TLS is offered.
    pub tls: ServerTls,
    /// The one user name and password AUTH accepts; `None` offers no AUTH.
    pub account: Option<(String, String)>,
    /// The AUTH mechanisms offered (after TLS) when there is an account.
    pub mechanisms: Vec<AuthMechanism>,
    /// Recipients refused with 550 5.1.1.
    pub refuse: Vec<String>,
}

/// A message as the server received it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Received {
    /// The MAIL FROM address.
    pub sender: String,
    /// The RCPT TO addresses the server accepted.
    pub recipients: Vec<String>,
    /// The content after the server undid dot-stuffing, CRLF line endings included.
    pub data: Vec<u8>,
    /// The user who authenticated, if anyone did.
    pub user: Option<String>,
}

/// What kind of server certificate [`TestPki`] makes: a valid one, or one of the broken
/// kinds that a client must refuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerCert {
    /// For `localhost` and `127.0.0.1`, signed by the CA, valid now.
    Valid,
    /// Signed by the CA but for another name (`mail.example.net`).
    WrongName,
    /// Signed by the CA, for the right names, but expired in 2021.
    Expired,
    /// For the right names, but signed by itself rather than by the CA.
    SelfSigned,
}

/// A certificate authority made for one run, and a server certificate of the chosen kind.
pub struct TestPki {
    /// The CA certificate, to give clients as their trust anchor.
    pub ca_pem: String,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl TestPki {
    /// A CA and a valid server certificate for `localhost` and `127.0.0.1`.
    pub fn generate() -> Result<Self, rcgen::Error> {
        Self::generate_with(ServerCert::Valid)
    }

    /// A CA and a server certificate of the given kind.
    pub fn generate_with(kind: ServerCert) -> Result<Self, rcgen::Error> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "sendbox loopback CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let names = match kind {
            ServerCert::WrongName => vec!["mail.example.net".to_owned()],
            _ => vec!["localhost".to_owned(), "127.0.0.1".to_owned()],
        };
        let leaf_key = KeyPair::generate()?;
        let mut leaf_params = CertificateParams::new(names)?;
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        if kind == ServerCert::Expired {
            leaf_params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            leaf_params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let leaf = match kind {
            ServerCert::SelfSigned => leaf_params.self_signed(&leaf_key)?,
            _ => leaf_params.signed_by(&leaf_key, &issuer)?,
        };
        Ok(TestPki {
            ca_pem: ca_cert.pem(),
            chain: vec![leaf.der().clone(), ca_cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        })
    }

    /// rustls settings for a server presenting this certificate.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .expect("the generated certificate and key match");
        Arc::new(config)
    }
}

/// A running loopback SMTP server; it stops when dropped.
pub struct LoopbackServer {
    address: SocketAddr,
    pki: TestPki,
    received: Arc<Mutex<Vec<Received>>>,
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl LoopbackServer {
    /// Starts a server on 127.0.0.1 on a free port.
    pub fn start(options: LoopbackOptions) -> io::Result<Self> {
        let pki = TestPki::generate().map_err(io::Error::other)?;
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let address = listener.local_addr()?;
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));

        let mut builder = SessionBuilder::new("localhost");
        if options.tls == ServerTls::StartTls {
            builder.enable_start_tls();
        }
        if options.account.is_some() {
            for mechanism in &options.mechanisms {
                builder.enable_auth(mechanism.clone());
            }
        }
        let acceptor = Acceptor {
            tls: options.tls,
            tls_config: pki.server_config(),
            builder,
            handler: Recorder {
                options: Arc::new(options),
                received: received.clone(),
                current: Received::default(),
            },
        };
        let stopping = stop.clone();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        thread::Builder::new()
            .name("loopback-smtp".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    counter.fetch_add(1, Ordering::SeqCst);
                    let acceptor = acceptor.clone();
                    thread::spawn(move || {
                        let _ = acceptor.serve(stream);
                    });
                }
            })?;
        Ok(LoopbackServer {
            address,
            pki,
            received,
            connections,
            stop,
        })
    }

    /// How many connections the server has accepted.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Where the server listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// The CA certificate (PEM) that the server's certificate chains to.
    pub fn ca_pem(&self) -> &str {
        &self.pki.ca_pem
    }

    /// Messages received so far, in order.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("received lock").clone()
    }
}

impl Drop for LoopbackServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.address, Duration::from_secs(1));
    }
}

/// The mailin handler: checks AUTH and recipients, records each accepted message.
#[derive(Clone)]
struct Recorder {
    options: Arc<LoopbackOptions>,
    received: Arc<Mutex<Vec<Received>>>,
    current: Received,
}

impl Recorder {
    fn login(&mut self, user: &str, password: &str) -> Response {
        match &self.options.account {
            Some((u, p)) if u == user && p == password => {
                self.current.user = Some(user.to_owned());
                mailin::response::AUTH_OK
            }
            _ => mailin::response::INVALID_CREDENTIALS,
        }
    }
}

impl Handler for Recorder {
    fn mail(&mut self, _ip: IpAddr, _domain: &str, from: &str) -> Response {
        let user = self.current.user.take();
        self.current = Received {
            user,
            ..Received::default()
        };
        self.current.sender = from.to_owned();
        mailin::response::OK
    }

    fn rcpt(&mut self, to: &str) -> Response {
        if self.options.refuse.iter().any(|r| r == to) {
            return Response::custom(550, "5.1.1 No such user here".to_owned());
        }
        self.current.recipients.push(to.to_owned());
        mailin::response::OK
    }

    fn data(&mut self, buf: &[u8]) -> io::Result<()> {
        self.current.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        let message = self.current.clone();
        self.current.data.clear();
        self.received.lock().expect("received lock").push(message);
        Response::custom(250, "2.0.0 Ok: queued".to_owned())
    }

    fn auth_plain(
        &mut self,
        _authorization_id: &str,
        authentication_id: &str,
        password: &str,
    ) -> Response {
        self.login(authentication_id, password)
    }

    fn auth_login(&mut self, username: &str, password: &str) -> Response {
        self.login(username, password)
    }
}

/// Serves one connection: TLS as configured, then the mailin session.
#[derive(Clone)]
struct Acceptor {
    tls: ServerTls,
    tls_config: Arc<ServerConfig>,
    builder: SessionBuilder,
    handler: Recorder,
}

enum Ended {
    Closed,
    StartTls,
}

impl Acceptor {
    fn serve(self, stream: TcpStream) -> io::Result<()> {
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let peer = stream.peer_addr()?.ip();
        let mut session = self.builder.build(peer, self.handler.clone());
        if self.tls == ServerTls::Implicit {
            let mut tls = StreamOwned::new(
                ServerConnection::new(self.tls_config.clone()).map_err(io::Error::other)?,
                stream,
            );
            session.tls_active();
            write_response(&mut tls, &session.greeting())?;
            run(&mut session, tls)?;
            return Ok(());
        }
        let mut plain = stream;
        write_response(&mut plain, &session.greeting())?;
        if let Ended::StartTls = run(&mut session, plain.try_clone()?)? {
            let tls = StreamOwned::new(
                ServerConnection::new(self.tls_config.clone()).map_err(io::Error::other)?,
                plain,
            );
            session.tls_active();
            run(&mut session, tls)?;
        }
        Ok(())
    }
}

/// Reads command lines and answers them until the client quits or asks for TLS.
fn run<H: Handler, S: Read + Write>(
    session: &mut mailin::Session<H>,
    stream: S,
) -> io::Result<Ended> {
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(Ended::Closed);
        }
        let response = session.process(&line);
        match response.action {
            Action::NoReply => {}
            Action::Reply => write_response(reader.get_mut(), &response)?,
            Action::Close => {
                write_response(reader.get_mut(), &response)?;
                return Ok(Ended::Closed);
            }
            Action::UpgradeTls => {
                write_response(reader.get_mut(), &response)?;
                return Ok(Ended::StartTls);
            }
        }
    }
}

fn write_response(out: &mut dyn Write, response: &Response) -> io::Result<()> {
    response.write_to(out)?;
    out.flush()
}
