//! A fast SMTP sink for the TLS bulk workload, in this process: STARTTLS with rustls
//! (ring), AUTH PLAIN or LOGIN for one fixed account, PIPELINING, and every message
//! counted and discarded (nothing touches the disk). One thread per connection.
//!
//! Replies are collected while more input is already waiting and written together when
//! none is, so a pipelined group of commands costs one write, as in a real server. It runs
//! in the benchmark's process so that its CPU time is not counted to the clients, which
//! are measured as whole processes.

use std::io::{self, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection};

/// The one account AUTH accepts.
pub const USER: &str = "bench";
pub const PASSWORD: &str = "sink-password";

/// The SIZE the sink advertises (10 MiB); it does not enforce it.
const MAX_SIZE: u32 = 10 << 20;

/// What the sink has seen since it started.
#[derive(Default)]
struct Counts {
    messages: AtomicU64,
    sessions: AtomicU64,
}

/// A running sink; dropping it stops accepting connections.
pub struct TlsSink {
    pub address: SocketAddr,
    /// The CA that signed the sink's certificate (PEM), for the clients.
    pub ca_pem: String,
    counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl TlsSink {
    pub fn start() -> Result<Self, String> {
        let (config, ca_pem) = tls_config().map_err(|e| format!("TLS sink certificate: {e}"))?;
        let listener = TcpListener::bind("127.0.0.1:0")
            .map_err(|e| format!("TLS sink: no free loopback port: {e}"))?;
        let address = listener
            .local_addr()
            .map_err(|e| format!("TLS sink: {e}"))?;
        let counts = Arc::new(Counts::default());
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let (counts, stop) = (Arc::clone(&counts), Arc::clone(&stop));
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (config, counts) = (Arc::clone(&config), Arc::clone(&counts));
                    // A connection that breaks only fails its client, which reports it.
                    thread::spawn(move || {
                        let _ = serve(stream, &config, &counts);
                    });
                }
            })
        };
        Ok(TlsSink {
            address,
            ca_pem,
            counts,
            stop,
            acceptor: Some(acceptor),
        })
    }

    /// Messages accepted (their final dot read and answered with 250) since the start.
    pub fn messages(&self) -> u64 {
        self.counts.messages.load(Ordering::Relaxed)
    }

    /// TLS sessions established since the start.
    pub fn sessions(&self) -> u64 {
        self.counts.sessions.load(Ordering::Relaxed)
    }
}

impl Drop for TlsSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the acceptor, which then sees `stop`.
        let _ = TcpStream::connect(self.address);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// A CA made for this run, and rustls settings for a server certificate it signed for
/// `localhost` and 127.0.0.1; also the CA's PEM.
fn tls_config() -> Result<(Arc<ServerConfig>, String), Box<dyn std::error::Error>> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "sendbox-bench CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf_key = KeyPair::generate()?;
    let mut leaf_params = CertificateParams::new(["localhost".to_owned(), "127.0.0.1".to_owned()])?;
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let leaf = leaf_params.signed_by(&leaf_key, &issuer)?;

    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone(), ca_cert.der().clone()], key)?;
    Ok((Arc::new(config), ca_cert.pem()))
}

/// One connection, from the greeting to QUIT or the client's close.
fn serve(stream: TcpStream, config: &Arc<ServerConfig>, counts: &Counts) -> io::Result<()> {
    // Replies are already gathered into one write each; Nagle would only delay them.
    stream.set_nodelay(true)?;
    let mut conn = Conn {
        socket: stream,
        tls: None,
        input: Vec::with_capacity(64 << 10),
        start: 0,
    };
    let mut session = Session::default();
    let mut out = b"220 localhost ESMTP sendbox-bench sink\r\n".to_vec();
    loop {
        while let Some(line) = conn.next_line() {
            match session.handle(line, &mut out) {
                Step::Continue => {}
                Step::Accepted => {
                    counts.messages.fetch_add(1, Ordering::Relaxed);
                }
                Step::StartTls => {
                    conn.write(&out)?;
                    out.clear();
                    conn.start_tls(config)?;
                    counts.sessions.fetch_add(1, Ordering::Relaxed);
                    session = Session {
                        tls: true,
                        ..Session::default()
                    };
                }
                Step::Quit => {
                    conn.write(&out)?;
                    return conn.close();
                }
            }
        }
        if !out.is_empty() && (out.len() >= 64 << 10 || !conn.input_waiting()?) {
            conn.write(&out)?;
            out.clear();
        }
        if conn.fill()? == 0 {
            return Ok(());
        }
    }
}

/// The socket, TLS once STARTTLS is done, and the plaintext read but not yet handled.
struct Conn {
    socket: TcpStream,
    tls: Option<ServerConnection>,
    input: Vec<u8>,
    /// Where the first line not yet handled starts in `input`.
    start: usize,
}

impl Conn {
    /// The next complete line, without its line end (CRLF, or a bare LF).
    fn next_line(&mut self) -> Option<&[u8]> {
        let rest = &self.input[self.start..];
        let end = rest.iter().position(|&b| b == b'\n')?;
        let line = &self.input[self.start..self.start + end];
        self.start += end + 1;
        Some(line.strip_suffix(b"\r").unwrap_or(line))
    }

    /// Whether more bytes have arrived on the socket. rustls holds no plaintext here:
    /// `fill` takes all it has decrypted.
    fn input_waiting(&self) -> io::Result<bool> {
        let mut waiting: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int, to a local that outlives the call.
        let result = unsafe { libc::ioctl(self.socket.as_raw_fd(), libc::FIONREAD, &mut waiting) };
        if result < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(waiting > 0)
    }

    /// Reads more plaintext, waiting for it if none is there. 0 means the client closed.
    fn fill(&mut self) -> io::Result<usize> {
        self.input.drain(..self.start);
        self.start = 0;
        let Some(tls) = &mut self.tls else {
            let len = self.input.len();
            self.input.resize(len + (16 << 10), 0);
            let read = self.socket.read(&mut self.input[len..]);
            self.input.truncate(len + *read.as_ref().unwrap_or(&0));
            return read;
        };
        loop {
            let state = tls.process_new_packets().map_err(io::Error::other)?;
            let available = state.plaintext_bytes_to_read();
            if available > 0 {
                let len = self.input.len();
                self.input.resize(len + available, 0);
                tls.reader().read_exact(&mut self.input[len..])?;
                return Ok(available);
            }
            if state.peer_has_closed() {
                return Ok(0);
            }
            // Session tickets or an alert, before waiting for the client.
            while tls.wants_write() {
                tls.write_tls(&mut self.socket)?;
            }
            if tls.read_tls(&mut self.socket)? == 0 {
                return Ok(0);
            }
        }
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.tls {
            None => self.socket.write_all(bytes),
            Some(tls) => {
                tls.writer().write_all(bytes)?;
                while tls.wants_write() {
                    tls.write_tls(&mut self.socket)?;
                }
                Ok(())
            }
        }
    }

    /// The TLS handshake after `220 Ready`. Anything the client sent after STARTTLS in
    /// plaintext is dropped, as RFC 3207 requires (it could be an injected command).
    fn start_tls(&mut self, config: &Arc<ServerConfig>) -> io::Result<()> {
        self.input.clear();
        self.start = 0;
        let mut tls = ServerConnection::new(Arc::clone(config)).map_err(io::Error::other)?;
        while tls.is_handshaking() {
            tls.complete_io(&mut self.socket)?;
        }
        self.tls = Some(tls);
        Ok(())
    }

    fn close(mut self) -> io::Result<()> {
        if let Some(tls) = &mut self.tls {
            tls.send_close_notify();
            while tls.wants_write() {
                tls.write_tls(&mut self.socket)?;
            }
        }
        Ok(())
    }
}

/// What the connection does after a line.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    Continue,
    /// A message's final dot: one more message accepted.
    Accepted,
    /// Write the replies so far, then do the TLS handshake.
    StartTls,
    /// Write the replies so far, then close.
    Quit,
}

/// What the next line is.
#[derive(Default)]
enum Phase {
    #[default]
    Command,
    /// Message content, up to a line with a single dot.
    Data,
    /// AUTH PLAIN without an initial response: the next line is the response.
    AuthPlain,
    /// AUTH LOGIN: the next line is the user name, then the password.
    AuthLoginUser,
    AuthLoginPassword(Vec<u8>),
}

/// The SMTP state of one connection, apart from its I/O.
#[derive(Default)]
struct Session {
    phase: Phase,
    tls: bool,
    authenticated: bool,
    mail: bool,
    recipients: bool,
}

impl Session {
    /// Handles one line (without its line end) and appends the reply, if any, to `out`.
    fn handle(&mut self, line: &[u8], out: &mut Vec<u8>) -> Step {
        match std::mem::take(&mut self.phase) {
            Phase::Data if line == b"." => {
                self.mail = false;
                self.recipients = false;
                out.extend_from_slice(b"250 2.0.0 Ok: discarded\r\n");
                Step::Accepted
            }
            Phase::Data => {
                self.phase = Phase::Data;
                Step::Continue
            }
            Phase::AuthPlain => self.finish_auth(plain_matches(line), out),
            Phase::AuthLoginUser => {
                self.phase = Phase::AuthLoginPassword(line.to_vec());
                out.extend_from_slice(b"334 UGFzc3dvcmQ6\r\n");
                Step::Continue
            }
            Phase::AuthLoginPassword(user) => {
                let matches = decoded(&user).as_deref() == Some(USER.as_bytes())
                    && decoded(line).as_deref() == Some(PASSWORD.as_bytes());
                self.finish_auth(matches, out)
            }
            Phase::Command => self.command(line, out),
        }
    }

    fn command(&mut self, line: &[u8], out: &mut Vec<u8>) -> Step {
        let line = String::from_utf8_lossy(line);
        let line: &str = &line;
        let (verb, argument) = line.split_once(' ').unwrap_or((line, ""));
        let reply: &[u8] = match verb.to_ascii_uppercase().as_str() {
            "EHLO" => {
                let last = if self.tls {
                    "AUTH PLAIN LOGIN"
                } else {
                    "STARTTLS"
                };
                out.extend_from_slice(
                    format!(
                        "250-localhost\r\n250-PIPELINING\r\n250-8BITMIME\r\n\
                         250-SIZE {MAX_SIZE}\r\n250 {last}\r\n"
                    )
                    .as_bytes(),
                );
                return Step::Continue;
            }
            "HELO" => b"250 localhost\r\n",
            "STARTTLS" if self.tls => b"503 5.5.1 TLS already active\r\n",
            "STARTTLS" => {
                out.extend_from_slice(b"220 2.0.0 Ready to start TLS\r\n");
                return Step::StartTls;
            }
            "AUTH" if !self.tls => b"530 5.7.0 Must issue a STARTTLS command first\r\n",
            "AUTH" if self.authenticated => b"503 5.5.1 Already authenticated\r\n",
            "AUTH" => {
                let (mechanism, initial) = argument.split_once(' ').unwrap_or((argument, ""));
                match (mechanism.to_ascii_uppercase().as_str(), initial) {
                    ("PLAIN", "") => {
                        self.phase = Phase::AuthPlain;
                        b"334 \r\n"
                    }
                    ("PLAIN", response) => {
                        return self.finish_auth(plain_matches(response.as_bytes()), out);
                    }
                    ("LOGIN", "") => {
                        self.phase = Phase::AuthLoginUser;
                        b"334 VXNlcm5hbWU6\r\n"
                    }
                    ("LOGIN", user) => {
                        self.phase = Phase::AuthLoginPassword(user.as_bytes().to_vec());
                        b"334 UGFzc3dvcmQ6\r\n"
                    }
                    _ => b"504 5.5.4 Unrecognized authentication type\r\n",
                }
            }
            "MAIL" if !self.authenticated => b"530 5.7.0 Authentication required\r\n",
            "MAIL" if self.mail => b"503 5.5.1 Nested MAIL command\r\n",
            "MAIL" => {
                self.mail = true;
                b"250 2.1.0 Ok\r\n"
            }
            "RCPT" if !self.mail => b"503 5.5.1 Need MAIL first\r\n",
            "RCPT" => {
                self.recipients = true;
                b"250 2.1.5 Ok\r\n"
            }
            "DATA" if !self.recipients => b"503 5.5.1 Need RCPT first\r\n",
            "DATA" => {
                self.phase = Phase::Data;
                b"354 End data with <CR><LF>.<CR><LF>\r\n"
            }
            "RSET" => {
                self.mail = false;
                self.recipients = false;
                b"250 2.0.0 Ok\r\n"
            }
            "NOOP" => b"250 2.0.0 Ok\r\n",
            "QUIT" => {
                out.extend_from_slice(b"221 2.0.0 Bye\r\n");
                return Step::Quit;
            }
            _ => b"502 5.5.2 Command not recognized\r\n",
        };
        out.extend_from_slice(reply);
        Step::Continue
    }

    fn finish_auth(&mut self, matches: bool, out: &mut Vec<u8>) -> Step {
        self.authenticated = matches;
        out.extend_from_slice(if matches {
            b"235 2.7.0 Authentication successful\r\n"
        } else {
            b"535 5.7.8 Authentication credentials invalid\r\n"
        });
        Step::Continue
    }
}

/// Whether an AUTH PLAIN response (RFC 4616: authzid NUL authcid NUL password, base64)
/// names the account, with no authorization identity or the account's own.
fn plain_matches(response: &[u8]) -> bool {
    let Some(decoded) = decoded(response) else {
        return false;
    };
    let mut parts = decoded.split(|&b| b == 0);
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(authzid), Some(user), Some(password), None) => {
            (authzid.is_empty() || authzid == user)
                && user == USER.as_bytes()
                && password == PASSWORD.as_bytes()
        }
        _ => false,
    }
}

fn decoded(base64: &[u8]) -> Option<Vec<u8>> {
    BASE64.decode(base64).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds lines to a session as one pipelined group; returns the replies and the steps.
    fn feed(session: &mut Session, lines: &[&str]) -> (String, Vec<Step>) {
        let mut out = Vec::new();
        let steps = lines
            .iter()
            .map(|line| session.handle(line.as_bytes(), &mut out))
            .collect();
        (String::from_utf8(out).unwrap(), steps)
    }

    fn codes(replies: &str) -> Vec<&str> {
        replies
            .lines()
            .filter(|line| line.as_bytes().get(3) == Some(&b' '))
            .map(|line| &line[..3])
            .collect()
    }

    fn plain(authzid: &str, user: &str, password: &str) -> String {
        BASE64.encode(format!("{authzid}\0{user}\0{password}"))
    }

    #[test]
    fn starttls_is_offered_before_tls_and_auth_after() {
        let mut session = Session::default();
        let (replies, steps) = feed(&mut session, &["EHLO client", "AUTH PLAIN", "STARTTLS"]);
        assert!(replies.contains("250-PIPELINING\r\n250-8BITMIME\r\n250-SIZE 10485760\r\n"));
        assert!(replies.contains("250 STARTTLS\r\n"));
        assert!(!replies.contains("AUTH PLAIN LOGIN"));
        assert_eq!(codes(&replies), ["250", "530", "220"]);
        assert_eq!(steps.last(), Some(&Step::StartTls));

        let mut session = Session {
            tls: true,
            ..Session::default()
        };
        let (replies, _) = feed(&mut session, &["ehlo client", "STARTTLS"]);
        assert!(replies.contains("250 AUTH PLAIN LOGIN\r\n"));
        assert!(!replies.contains("STARTTLS"));
        assert_eq!(codes(&replies), ["250", "503"]);
    }

    #[test]
    fn pipelined_messages_are_answered_in_order_and_counted() {
        let mut session = Session {
            tls: true,
            ..Session::default()
        };
        let auth = format!("AUTH PLAIN {}", plain("", USER, PASSWORD));
        let (replies, steps) = feed(
            &mut session,
            &[
                "MAIL FROM:<a@b>",
                &auth,
                "MAIL FROM:<a@b> BODY=8BITMIME SIZE=1024",
                "RCPT TO:<c@d>",
                "DATA",
                "Subject: x",
                "",
                "..a stuffed dot, not the end",
                ".",
                "MAIL FROM:<a@b>",
                "RCPT TO:<c@d>",
                "DATA",
                &"a long line ".repeat(1000),
                ".",
                "RSET",
                "NOOP",
                "QUIT",
            ],
        );
        assert_eq!(
            codes(&replies),
            [
                "530", "235", "250", "250", "354", "250", "250", "250", "354", "250", "250", "250",
                "221"
            ]
        );
        let accepted = steps.iter().filter(|s| **s == Step::Accepted).count();
        assert_eq!(accepted, 2);
        assert_eq!(steps.last(), Some(&Step::Quit));
    }

    #[test]
    fn auth_checks_the_account() {
        let tls = || Session {
            tls: true,
            ..Session::default()
        };
        let wrong = plain("", USER, "wrong");
        let (replies, _) = feed(
            &mut tls(),
            &[&format!("AUTH PLAIN {wrong}"), "MAIL FROM:<a@b>"],
        );
        assert_eq!(codes(&replies), ["535", "530"]);

        let other = plain("admin", USER, PASSWORD);
        let (replies, _) = feed(&mut tls(), &[&format!("AUTH PLAIN {other}")]);
        assert_eq!(codes(&replies), ["535"]);

        let right = plain(USER, USER, PASSWORD);
        let (replies, _) = feed(&mut tls(), &["AUTH PLAIN", &right, "AUTH PLAIN"]);
        assert_eq!(codes(&replies), ["334", "235", "503"]);

        let (user, password) = (BASE64.encode(USER), BASE64.encode(PASSWORD));
        let (replies, _) = feed(&mut tls(), &["AUTH LOGIN", &user, &password]);
        assert_eq!(codes(&replies), ["334", "334", "235"]);
        let (replies, _) = feed(&mut tls(), &[&format!("AUTH LOGIN {user}"), "bm8="]);
        assert_eq!(codes(&replies), ["334", "535"]);
    }

    /// The whole sink over a socket: STARTTLS checked against its CA, then two messages,
    /// AUTH and QUIT in one pipelined write, each reply in order.
    #[test]
    fn serves_a_pipelined_session_over_starttls() {
        use std::io::{BufRead as _, BufReader};

        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject as _;

        let sink = TlsSink::start().unwrap();
        let mut socket = TcpStream::connect(sink.address).unwrap();
        socket.write_all(b"EHLO client\r\nSTARTTLS\r\n").unwrap();
        let mut greeting = BufReader::new(socket.try_clone().unwrap());
        let mut line = String::new();
        while !line.starts_with("220 2.0.0") {
            line.clear();
            greeting.read_line(&mut line).unwrap();
        }

        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(sink.ca_pem.as_bytes()).unwrap())
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = "localhost".try_into().unwrap();
        let client = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let mut tls = rustls::StreamOwned::new(client, socket);
        let message = format!(
            "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nSubject: x\r\n\r\n..dot\r\n{}\r\n.\r\n",
            "long ".repeat(5000)
        );
        let auth = format!("AUTH PLAIN {}\r\n", plain("", USER, PASSWORD));
        let session = format!("EHLO client\r\n{auth}{message}{message}QUIT\r\n");
        tls.write_all(session.as_bytes()).unwrap();
        let mut replies = String::new();
        tls.read_to_string(&mut replies).unwrap();

        assert!(replies.contains("250 AUTH PLAIN LOGIN\r\n"));
        assert_eq!(
            codes(&replies),
            [
                "250", "235", "250", "250", "354", "250", "250", "250", "354", "250", "221"
            ]
        );
        assert_eq!((sink.messages(), sink.sessions()), (2, 1));
    }

    #[test]
    fn commands_out_of_order_are_refused() {
        let mut session = Session {
            tls: true,
            authenticated: true,
            ..Session::default()
        };
        let (replies, steps) = feed(
            &mut session,
            &[
                "RCPT TO:<c@d>",
                "DATA",
                "MAIL FROM:<a@b>",
                "MAIL FROM:<a@b>",
                "DATA",
                "VRFY x",
            ],
        );
        assert_eq!(codes(&replies), ["503", "503", "250", "503", "503", "502"]);
        assert!(steps.iter().all(|s| *s == Step::Continue));
    }
}
