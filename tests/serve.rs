//! `sendbox serve`, the local relay: an app's message goes through it into the outbox and
//! on to Postfix; hostile clients (endless lines, trickled bytes, a stalled TLS handshake,
//! too many connections, too big a message, SMTP smuggling, idle floods, password
//! guessing, bad addresses) are cut off or refused without affecting the others; it can
//! require a login, which lasts through RSET; with a certificate it takes a login or a
//! message only after STARTTLS; it refuses to listen beyond loopback without both, and
//! refuses a certificate it cannot use before it listens. Many clients at once each get
//! their 250 only for a message that is whole in the queue.

mod support;

use std::io::{BufRead as _, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use support::*;

/// A relay on a free loopback port, its account on `server` (plaintext), its outbox in
/// its own directory.
struct Relay {
    process: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Relay {
    fn start(server: &str, extra: &[&str]) -> Relay {
        Relay::start_in(tempfile::tempdir().unwrap(), server, extra)
    }

    /// A relay offering STARTTLS with a certificate for localhost and 127.0.0.1 from a CA
    /// made now (see [`Relay::ca`]).
    fn start_tls(server: &str, extra: &[&str]) -> Relay {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::write(dir.path());
        let args = [&pki.args()[..], extra].concat();
        Relay::start_in(dir, server, &args)
    }

    fn start_in(dir: tempfile::TempDir, server: &str, extra: &[&str]) -> Relay {
        let config = write_config(dir.path(), server);
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut command = sendbox_command(sendbox_bin(), dir.path(), "");
        command
            .args([
                "serve",
                "--config",
                config.to_str().unwrap(),
                "--listen",
                &listen,
            ])
            .args(extra)
            .env("RELAY_PASSWORD", "relay-secret")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut process = command.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(&listen).is_err() {
            if let Some(status) = process.try_wait().unwrap() {
                panic!("sendbox serve exited: {status}");
            }
            assert!(Instant::now() < deadline, "sendbox serve is not listening");
            std::thread::sleep(Duration::from_millis(50));
        }
        Relay { process, port, dir }
    }

    /// The CA of a relay from [`Relay::start_tls`], for its clients.
    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn connect(&self) -> Client {
        let (client, greeting) = self.try_connect();
        assert!(greeting.starts_with("220"), "{greeting}");
        client
    }

    /// A connection and the relay's first reply, whatever it is.
    fn try_connect(&self) -> (Client, String) {
        let stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut client = Client {
            reader: BufReader::new(stream),
        };
        let greeting = client.reply();
        (client, greeting)
    }

    /// A connection from the loopback address `source`, greeted.
    fn connect_from(&self, source: [u8; 4]) -> Client {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        let source = std::net::SocketAddr::from((source, 0));
        socket.bind(&source.into()).unwrap();
        let relay = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
        socket.connect(&relay.into()).unwrap();
        let stream = TcpStream::from(socket);
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut client = Client {
            reader: BufReader::new(stream),
        };
        let greeting = client.reply();
        assert!(greeting.starts_with("220"), "{greeting}");
        client
    }

    /// A connection once the relay has a free slot again (it frees one when the thread
    /// serving a closed connection ends, a moment after the client sees it closed).
    fn connect_when_free(&self) -> Client {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (client, greeting) = self.try_connect();
            if greeting.starts_with("220") {
                return client;
            }
            assert!(
                greeting.starts_with("421") && Instant::now() < deadline,
                "{greeting}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn queued(&self) -> usize {
        std::fs::read_dir(self.dir.path().join("outbox/queue"))
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|name| !name.ends_with(".state"))
                    .count()
            })
            .unwrap_or(0)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn closed_port() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// A config file in `dir` with one account, on `server` in plaintext, and the outbox in
/// `dir`.
fn write_config(dir: &Path, server: &str) -> PathBuf {
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "default = \"main\"\n[accounts.main]\nserver = \"{server}\"\ntls = \"none\"\n\
             from = \"alice@sendbox.test\"\n[queue]\ndir = \"{}\"\n",
            dir.join("outbox").display()
        ),
    )
    .unwrap();
    config
}

/// PEM files made with rcgen: a CA (`ca.pem`), and the chain (`cert.pem`) and key
/// (`key.pem`) of a certificate it signed for localhost and 127.0.0.1.
struct Pki {
    cert: PathBuf,
    key: PathBuf,
}

impl Pki {
    fn write(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "sendbox serve test CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let pki = Pki {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        };
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(&pki.cert, leaf.pem() + &ca.pem()).unwrap();
        std::fs::write(&pki.key, key.serialize_pem()).unwrap();
        pki
    }

    fn args(&self) -> [&str; 4] {
        [
            "--tls-cert",
            self.cert.to_str().unwrap(),
            "--tls-key",
            self.key.to_str().unwrap(),
        ]
    }
}

/// Runs `sendbox serve` with `args` where it must stop before it listens: its output, or a
/// panic if it is still running after 30 s.
fn serve_refused(config_home: &Path, args: &[&str]) -> Output {
    let output = finished_within_30_s(
        sendbox_command(sendbox_bin(), config_home, "")
            .arg("serve")
            .args(args)
            .env("RELAY_PASSWORD", "relay-secret"),
    );
    assert!(
        !String::from_utf8_lossy(&output.stdout).contains("listening"),
        "{}",
        text(&output)
    );
    output
}

/// An SMTP client, one command at a time: in the clear, or over TLS after
/// [`Client::starttls`].
struct Client<S: Read + Write = TcpStream> {
    reader: BufReader<S>,
}

impl<S: Read + Write> Client<S> {
    fn stream(&mut self) -> &mut S {
        self.reader.get_mut()
    }

    /// A whole reply (every line of a multi-line one), or what was read before the end.
    fn reply(&mut self) -> String {
        let mut reply = String::new();
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) | Err(_) => return reply,
                Ok(_) => reply.push_str(&line),
            }
            if line.as_bytes().get(3) == Some(&b' ') {
                return reply;
            }
        }
    }

    fn command(&mut self, line: &str) -> String {
        self.stream()
            .write_all(format!("{line}\r\n").as_bytes())
            .unwrap();
        self.reply()
    }

    /// A whole transaction after EHLO; the reply to the end of the content.
    fn send(&mut self, subject: &str, body: &str) -> String {
        for (command, code) in [
            ("MAIL FROM:<alice@sendbox.test>", "250"),
            ("RCPT TO:<bob@sendbox.test>", "250"),
            ("DATA", "354"),
        ] {
            let reply = self.command(command);
            assert!(reply.starts_with(code), "{command}: {reply}");
        }
        self.command(&format!(
            "From: alice@sendbox.test\r\nTo: bob@sendbox.test\r\nSubject: {subject}\r\n\r\n{body}\r\n."
        ))
    }

    /// True once the relay has closed the connection.
    fn closed(&mut self) -> bool {
        let mut byte = [0];
        matches!(self.reader.read(&mut byte), Ok(0) | Err(_))
    }
}

type TlsClient = Client<StreamOwned<ClientConnection, TcpStream>>;

impl Client {
    /// STARTTLS (after EHLO), and the handshake, trusting the CA in `ca`.
    fn starttls(mut self, ca: &Path) -> TlsClient {
        let reply = self.command("STARTTLS");
        assert!(reply.starts_with("220"), "{reply}");
        self.handshake(ca)
    }

    /// The TLS handshake, once the relay has said yes to STARTTLS.
    fn handshake(self, ca: &Path) -> TlsClient {
        let mut roots = RootCertStore::empty();
        for certificate in CertificateDer::pem_file_iter(ca).unwrap() {
            roots.add(certificate.unwrap()).unwrap();
        }
        let config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        let name = ServerName::try_from("localhost").unwrap();
        let connection = ClientConnection::new(Arc::new(config), name).unwrap();
        let mut stream = StreamOwned::new(connection, self.reader.into_inner());
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock).unwrap();
        }
        Client {
            reader: BufReader::new(stream),
        }
    }
}

#[test]
#[ignore = "needs Postfix on loopback and swaks (tests/postfix/setup.sh installs both): run .ci/run"]
fn an_apps_message_goes_through_the_relay_to_postfix() {
    let relay = Relay::start("127.0.0.1:25", &[]);
    let subject = support::postfix::token("serve");
    let swaks = Command::new("swaks")
        .args(["--server", &format!("127.0.0.1:{}", relay.port)])
        .args(["--from", "alice@sendbox.test", "--to", "bob@sendbox.test"])
        .args([
            "--header",
            &format!("Subject: {subject}"),
            "--body",
            "from an app",
        ])
        .output()
        .expect("swaks runs (apt-get install swaks)");
    assert!(swaks.status.success(), "{}", text(&swaks));
    assert!(
        String::from_utf8_lossy(&swaks.stdout).contains("250 2.0.0 queued as"),
        "{}",
        text(&swaks)
    );
    let stored = support::postfix::delivered("bob", &subject);
    assert!(stored.contains("from an app"), "{stored}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while relay.queued() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(relay.queued(), 0, "delivered but still queued");
}

#[test]
fn endless_lines_and_trickled_bytes_are_cut_off_and_others_go_on() {
    // The account's server is down: accepted messages stay queued, which is all we check.
    let relay = Relay::start(&closed_port(), &["--idle-timeout", "2"]);
    let mut endless = relay.connect();
    let mut trickle = relay.connect();
    let mut good = relay.connect();

    // One line that never ends: cut off once it is over the line limit.
    // 10 KiB: over the 8 KiB limit, and all read by the relay before it closes, so that
    // the reply is not lost to a reset.
    let _ = endless.stream().write_all(&[b'a'; 10 * 1024]);
    let reply = endless.reply();
    assert!(reply.starts_with("500 5.5.2"), "{reply:?}");
    assert!(endless.closed());

    // A byte now and then, while another client sends a message: the slow one is cut off
    // when one line has taken longer than 2 s; the other is served meanwhile.
    let trickling = std::thread::spawn(move || {
        let started = Instant::now();
        for byte in b"EHLO slow.test" {
            if trickle.stream().write_all(&[*byte]).is_err()
                || started.elapsed() > Duration::from_secs(3)
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        let reply = trickle.reply();
        (reply, trickle.closed())
    });
    assert!(good.command("EHLO app.test").starts_with("250"));
    let reply = good.send("beside the bad ones", "fine");
    assert!(reply.starts_with("250 2.0.0 queued as"), "{reply}");
    assert_eq!(relay.queued(), 1);
    let (reply, closed) = trickling.join().unwrap();
    assert!(reply.starts_with("421 4.4.2"), "{reply:?}");
    assert!(closed);
}

#[test]
fn a_client_that_does_not_read_its_replies_is_cut_off() {
    let relay = Relay::start(&closed_port(), &["--idle-timeout", "1"]);
    // A small receive buffer, so that the replies pile up in the relay's send buffer.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let address: std::net::SocketAddr = format!("127.0.0.1:{}", relay.port).parse().unwrap();
    socket.connect(&address.into()).unwrap();
    let mut stream = TcpStream::from(socket);
    stream
        .set_write_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // NOOPs, never reading a reply, until the relay hangs up.
    let noops = b"NOOP\r\n".repeat(10_000);
    let started = Instant::now();
    let error = loop {
        if let Err(e) = stream.write_all(&noops) {
            break e;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the relay still reads"
        );
    };
    assert!(
        !matches!(
            error.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "the relay no longer reads, but holds the connection after {:?}",
        started.elapsed()
    );
    let mut good = relay.connect_when_free();
    assert!(good.command("EHLO app.test").starts_with("250"));
}

#[test]
fn too_many_connections_or_too_big_a_message_are_refused() {
    let relay = Relay::start(
        &closed_port(),
        &["--max-connections", "2", "--max-size", "1000"],
    );
    // Two clients in a transaction hold both slots: a third is told to come back later.
    // (The start-up probe of `Relay::start` may hold a slot for a moment.)
    let mut first = relay.connect_when_free();
    let mut second = relay.connect_when_free();
    for client in [&mut first, &mut second] {
        assert!(client.command("EHLO app.test").starts_with("250"));
        assert!(
            client
                .command("MAIL FROM:<alice@sendbox.test>")
                .starts_with("250")
        );
    }
    let third = TcpStream::connect(("127.0.0.1", relay.port)).unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut refused = String::new();
    BufReader::new(third).read_line(&mut refused).unwrap();
    assert!(refused.starts_with("421 4.7.0"), "{refused:?}");

    // Too big: refused, nothing kept, and the session goes on (RFC 5321 section 4.2.5).
    assert!(second.command("RSET").starts_with("250"));
    let reply = second.send("big", &"x".repeat(2000));
    assert!(reply.starts_with("552 5.3.4"), "{reply}");
    assert_eq!(relay.queued(), 0);
    let reply = second.send("small", "fits");
    assert!(reply.starts_with("250"), "{reply}");
    assert_eq!(relay.queued(), 1);
}

#[test]
fn a_relay_that_requires_a_login_takes_mail_only_after_it() {
    let relay = Relay::start(
        &closed_port(),
        &["--require-auth", "app", "--password-env", "RELAY_PASSWORD"],
    );
    let mut client = relay.connect();
    let ehlo = client.command("EHLO app.test");
    assert!(ehlo.contains("AUTH"), "{ehlo}");
    // The first line names the relay and greets the client, as RFC 5321 4.1.1.1 has it.
    assert!(
        ehlo.starts_with("250-sendbox-serve greets app.test\r\n"),
        "{ehlo}"
    );
    let reply = client.command("MAIL FROM:<alice@sendbox.test>");
    assert!(reply.starts_with('5'), "mail taken before a login: {reply}");
    // AUTH PLAIN with a wrong, then the right password ("\0app\0...").
    let reply = client.command("AUTH PLAIN AGFwcAB3cm9uZw==");
    assert!(reply.starts_with("535"), "{reply}");
    let reply = client.command("AUTH PLAIN AGFwcAByZWxheS1zZWNyZXQ=");
    assert!(reply.starts_with("235"), "{reply}");
    let reply = client.send("logged in", "ok");
    assert!(reply.starts_with("250 2.0.0 queued as"), "{reply}");
    assert_eq!(relay.queued(), 1);
    // Without a certificate, STARTTLS is refused.
    let reply = client.command("STARTTLS");
    assert!(reply.starts_with("502"), "{reply}");
}

#[test]
fn a_relay_with_a_certificate_takes_a_login_and_mail_only_after_starttls() {
    let relay = Relay::start_tls(
        &closed_port(),
        &["--require-auth", "app", "--password-env", "RELAY_PASSWORD"],
    );
    let mut client = relay.connect();
    let ehlo = client.command("EHLO app.test");
    assert!(ehlo.contains("STARTTLS"), "{ehlo}");
    assert!(!ehlo.contains("AUTH"), "AUTH offered in the clear: {ehlo}");
    // The right password ("\0app\0relay-secret"), but in the clear: refused unread.
    for command in [
        "AUTH PLAIN AGFwcAByZWxheS1zZWNyZXQ=",
        "AUTH LOGIN",
        "MAIL FROM:<alice@sendbox.test>",
        "RCPT TO:<bob@sendbox.test>",
        "DATA",
    ] {
        let reply = client.command(command);
        assert!(
            reply.starts_with("530 5.7.0 Must issue a STARTTLS command first"),
            "{command}: {reply}"
        );
    }
    assert!(client.command("NOOP").starts_with("250"));

    // A command sent in the clear right behind STARTTLS (the injection of CVE-2011-0411)
    // is dropped, not taken as if it had come over TLS: the handshake works, and MAIL
    // below is not out of sequence.
    client
        .stream()
        .write_all(b"STARTTLS\r\nMAIL FROM:<mallory@sendbox.test>\r\n")
        .unwrap();
    let reply = client.reply();
    assert!(reply.starts_with("220"), "{reply}");
    let mut client = client.handshake(&relay.ca());
    let ehlo = client.command("EHLO app.test");
    assert!(ehlo.contains("AUTH PLAIN LOGIN"), "{ehlo}");
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    let reply = client.command("MAIL FROM:<alice@sendbox.test>");
    assert!(reply.starts_with('5'), "mail taken before a login: {reply}");
    let reply = client.command("AUTH PLAIN AGFwcAByZWxheS1zZWNyZXQ=");
    assert!(reply.starts_with("235"), "{reply}");
    let reply = client.send("over TLS", "ok");
    assert!(reply.starts_with("250 2.0.0 queued as"), "{reply}");
    assert_eq!(relay.queued(), 1);
    assert!(client.command("NOOP").starts_with("250"));
    // A second STARTTLS is refused.
    let reply = client.command("STARTTLS");
    assert!(reply.starts_with("502"), "{reply}");
}

#[test]
#[ignore = "needs Postfix on loopback (tests/postfix/setup.sh): run .ci/run"]
fn sendbox_send_goes_through_a_relay_over_starttls_with_a_login_to_postfix() {
    let relay = Relay::start_tls(
        "127.0.0.1:25",
        &["--require-auth", "app", "--password-env", "RELAY_PASSWORD"],
    );
    let subject = support::postfix::token("serve-tls");
    let target = format!("127.0.0.1:{}", relay.port);
    let ca = relay.ca();
    let output = run_sendbox(
        &[
            "send",
            "--server",
            &target,
            "--tls",
            "starttls",
            "--ca",
            ca.to_str().unwrap(),
            "--user",
            "app",
            "--password-env",
            "SENDBOX_TEST_PASSWORD",
            "--from",
            "alice@sendbox.test",
            "--to",
            "bob@sendbox.test",
            "--subject",
            &subject,
            "--body",
            "through the relay over TLS",
        ],
        "relay-secret",
        None,
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("250 2.0.0 queued as"),
        "{}",
        text(&output)
    );
    let stored = support::postfix::delivered("bob", &subject);
    assert!(stored.contains("through the relay over TLS"), "{stored}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while relay.queued() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(relay.queued(), 0, "delivered but still queued");
}

#[test]
fn a_stalled_tls_handshake_is_cut_off_and_others_go_on() {
    // A certificate without --require-auth: TLS is required all the same.
    let relay = Relay::start_tls(&closed_port(), &["--idle-timeout", "2"]);
    let mut stalled = relay.connect();
    assert!(stalled.command("EHLO slow.test").starts_with("250"));
    assert!(stalled.command("STARTTLS").starts_with("220"));

    // The header of a 512-byte handshake record, then a byte now and then: every read of
    // the relay's gets something in time, and the handshake never ends.
    let trickling = std::thread::spawn(move || {
        let started = Instant::now();
        let stream = stalled.stream();
        stream
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        stream.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00]).unwrap();
        loop {
            let _ = stream.write_all(&[0x01]);
            match stream.read(&mut [0; 64]) {
                Ok(0) => return started.elapsed(),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Ok(_) | Err(_) => return started.elapsed(),
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the stalled handshake is still going"
            );
        }
    });

    let mut good = relay.connect();
    assert!(good.command("EHLO app.test").starts_with("250"));
    let reply = good.command("MAIL FROM:<alice@sendbox.test>");
    assert!(reply.starts_with("530 5.7.0"), "{reply}");
    let mut good = good.starttls(&relay.ca());
    assert!(good.command("EHLO app.test").starts_with("250"));
    let reply = good.send("beside a stalled handshake", "fine");
    assert!(reply.starts_with("250 2.0.0 queued as"), "{reply}");
    assert_eq!(relay.queued(), 1);

    let lasted = trickling.join().unwrap();
    assert!(
        lasted > Duration::from_secs(1) && lasted < Duration::from_secs(6),
        "cut off after {lasted:?}, with --idle-timeout 2"
    );
}

#[test]
fn over_tls_endless_lines_and_trickled_bytes_are_cut_off_too() {
    let relay = Relay::start_tls(&closed_port(), &["--idle-timeout", "2"]);
    let tls_client = || {
        let mut client = relay.connect();
        assert!(client.command("EHLO app.test").starts_with("250"));
        client.starttls(&relay.ca())
    };
    let mut endless = tls_client();
    endless.stream().write_all(&[b'a'; 10 * 1024]).unwrap();
    let reply = endless.reply();
    assert!(reply.starts_with("500 5.5.2"), "{reply:?}");
    assert!(endless.closed());

    // A byte now and then, each in a TLS record of its own, until the relay answers: many
    // reads for one line, and one time limit for them all. (The client stops writing once
    // answered: a record it could not send would fail its reads too.)
    let mut trickle = tls_client();
    let started = Instant::now();
    let socket = |client: &mut TlsClient| client.stream().sock.try_clone().unwrap();
    socket(&mut trickle)
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    loop {
        trickle.stream().write_all(b"x").unwrap();
        match trickle.reader.fill_buf() {
            Ok(answer) => {
                assert!(!answer.is_empty(), "closed without a reply");
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("no reply: {e}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "a trickled line is still being read after 10 s"
        );
    }
    let lasted = started.elapsed();
    socket(&mut trickle)
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let reply = trickle.reply();
    assert!(reply.starts_with("421 4.4.2"), "{reply:?}");
    assert!(trickle.closed());
    assert!(
        lasted > Duration::from_secs(1) && lasted < Duration::from_secs(6),
        "cut off after {lasted:?}, with --idle-timeout 2"
    );
}

#[test]
fn the_relay_listens_beyond_loopback_only_with_tls_and_a_login() {
    // 192.0.2.1 (TEST-NET-1) is never bound: each of these stops before it binds.
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::write(&dir.path().join("pki"));
    let tls = pki.args();
    let auth = ["--require-auth", "app", "--password-env", "RELAY_PASSWORD"];
    let listen = ["--listen", "192.0.2.1:2525"];
    let serve = |extra: &[&[&str]]| {
        serve_refused(
            dir.path(),
            &[&listen[..], extra.concat().as_slice()].concat(),
        )
    };
    // Refused with 64, the message naming what is missing and why, and nothing else.
    let refused = |extra: &[&[&str]], named: &[&str], not_named: &[&str]| {
        let output = serve(extra);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(64), "{}", text(&output));
        for needle in named {
            assert!(stderr.contains(needle), "{needle:?} not in {stderr}");
        }
        for needle in not_named {
            assert!(!stderr.contains(needle), "{needle:?} in {stderr}");
        }
    };
    let no_tls = ["--tls-cert and --tls-key", "in the clear"];
    let no_login = [
        "--require-auth",
        "anyone on the network could relay mail through the account",
    ];
    refused(&[], &[&no_tls[..], &no_login].concat(), &[]);
    refused(&[&auth], &no_tls, &no_login);
    refused(&[&tls], &no_login, &no_tls);

    // Both: the address is allowed; this stops at the config file, which has no account.
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "[queue]\nenabled = true\n").unwrap();
    let output = serve(&[&tls, &auth, &["--config", config.to_str().unwrap()]]);
    assert_exit(&output, 78, "serve needs an account");
}

#[test]
fn a_certificate_serve_cannot_use_stops_it_before_it_listens() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &closed_port());
    let one = Pki::write(&dir.path().join("one"));
    let other = Pki::write(&dir.path().join("other"));
    let listen = format!("127.0.0.1:{}", free_port());
    let serve = |cert: &Path, key: &Path| {
        serve_refused(
            dir.path(),
            &[
                "--config",
                config.to_str().unwrap(),
                "--listen",
                &listen,
                "--tls-cert",
                cert.to_str().unwrap(),
                "--tls-key",
                key.to_str().unwrap(),
            ],
        )
    };

    let output = serve(&one.cert, &other.key);
    assert_exit(
        &output,
        78,
        "is not the key of the certificate in --tls-cert",
    );
    let missing = dir.path().join("missing.pem");
    let output = serve(&missing, &one.key);
    assert_exit(&output, 66, "--tls-cert");
    assert!(
        text(&output).contains("cannot read it"),
        "{}",
        text(&output)
    );
    let output = serve(&one.cert, &missing);
    assert_exit(&output, 66, "--tls-key");
    // Each file holding the other's kind.
    let output = serve(&one.key, &one.key);
    assert_exit(&output, 78, "no certificate");
    let output = serve(&one.cert, &one.cert);
    assert_exit(&output, 78, "no private key");
    assert!(
        TcpStream::connect(&listen).is_err(),
        "something listens on {listen}"
    );

    // One without the other is a usage error.
    let output = serve_refused(dir.path(), &["--tls-cert", one.cert.to_str().unwrap()]);
    assert_exit(&output, 64, "--tls-key");
}

/// The end-of-data look-alikes that SEC Consult's SMTP smuggling scanner (the research
/// behind CVE-2023-51764, its `outbound_eod_sequences`) sends, and the rest of their kind.
const LOOK_ALIKES: [&str; 12] = [
    "\n.\n",
    "\n.\r",
    "\r.\n",
    "\r.\r",
    "\n.\r\n",
    "\r.\r\n",
    "\r\n.\r\r\n",
    "\r\r\n.\r\r\n",
    "\r\n\x00.\r\n",
    "\r\n.\n",
    "\r\n.\r",
    "\r\n.\x00\r\n",
];

#[test]
fn no_end_of_data_look_alike_smuggles_a_second_message_through_the_relay() {
    let upstream = support::loopback(sendbox_loopback::ServerTls::None);
    let relay = Relay::start(&upstream.address().to_string(), &[]);
    for look_alike in LOOK_ALIKES {
        let mut client = relay.connect_when_free();
        assert!(client.command("EHLO app.test").starts_with("250"));
        for (command, code) in [
            ("MAIL FROM:<alice@sendbox.test>", "250"),
            ("RCPT TO:<bob@sendbox.test>", "250"),
            ("DATA", "354"),
        ] {
            assert!(client.command(command).starts_with(code), "{command}");
        }
        let body = format!(
            "Subject: smuggling {look_alike:?}\r\n\r\nfirst part{look_alike}\
             MAIL FROM:<evil@sendbox.test>\r\nRCPT TO:<victim@sendbox.test>\r\nDATA\r\n\
             Subject: smuggled\r\n\r\nsmuggled\r\n.\r\n"
        );
        client.stream().write_all(body.as_bytes()).unwrap();
        let reply = client.reply();
        assert!(reply.starts_with("521 5.5.2 "), "{look_alike:?}: {reply:?}");
        assert!(client.closed(), "{look_alike:?}: still open");
        assert_eq!(relay.queued(), 0, "{look_alike:?}: a message was queued");
    }
    // A control: a clean message goes through to the same server.
    let mut client = relay.connect_when_free();
    assert!(client.command("EHLO app.test").starts_with("250"));
    let reply = client.send("clean", "line one\r\n.leading dot");
    assert!(reply.starts_with("250 2.0.0 queued as"), "{reply}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while upstream.received().is_empty() {
        assert!(Instant::now() < deadline, "the clean message never arrived");
        std::thread::sleep(Duration::from_millis(50));
    }
    let received = upstream.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].sender, "alice@sendbox.test");
    let data = String::from_utf8_lossy(&received[0].data);
    assert!(data.contains("Subject: clean"), "{data}");
    assert!(!data.contains("smuggl"), "{data}");
}

#[test]
fn a_bare_lf_in_a_command_is_refused_and_the_connection_closed() {
    let relay = Relay::start(&closed_port(), &[]);
    let mut client = relay.connect();
    let reply = client.command("EHLO app.test\nMAIL FROM:<evil@sendbox.test>");
    assert!(reply.starts_with("521 5.5.2 bare <LF>"), "{reply:?}");
    assert!(client.closed());
}

#[test]
fn a_login_lasts_through_rset_and_a_second_ehlo() {
    let relay = Relay::start(
        &closed_port(),
        &["--require-auth", "app", "--password-env", "RELAY_PASSWORD"],
    );
    let mut client = relay.connect();
    assert!(client.command("EHLO app.test").starts_with("250"));
    let reply = client.command("AUTH PLAIN AGFwcAByZWxheS1zZWNyZXQ=");
    assert!(reply.starts_with("235"), "{reply}");
    for reset in ["RSET", "EHLO app.test"] {
        assert!(client.command(reset).starts_with("250"), "{reset}");
        let reply = client.send(reset, "after a reset");
        assert!(
            reply.starts_with("250 2.0.0 queued as"),
            "after {reset}: {reply}"
        );
    }
    // The client's own path: a refused recipient, RSET, and the next message.
    assert!(
        client
            .command("MAIL FROM:<alice@sendbox.test>")
            .starts_with("250")
    );
    assert!(
        client
            .command("RCPT TO:<bob@@sendbox.test>")
            .starts_with("553")
    );
    assert!(client.command("RSET").starts_with("250"));
    let reply = client.send("after a refusal", "still logged in");
    assert!(reply.starts_with("250 2.0.0 queued as"), "{reply}");
    assert_eq!(relay.queued(), 3);
}

#[test]
fn sendbox_batch_through_a_relay_with_a_login_sends_every_message() {
    // The client logs in only over TLS.
    let relay = Relay::start_tls(
        &closed_port(),
        &["--require-auth", "app", "--password-env", "RELAY_PASSWORD"],
    );
    let ca = relay.ca();
    let raw = relay.dir.path().join("message.eml");
    std::fs::write(&raw, "Subject: batch\r\n\r\nthrough the relay\r\n").unwrap();
    let output = run_sendbox(
        &[
            "batch",
            "--server",
            &format!("127.0.0.1:{}", relay.port),
            "--ca",
            ca.to_str().unwrap(),
            "--user",
            "app",
            "--password-env",
            "SENDBOX_TEST_PASSWORD",
            "--from",
            "alice@sendbox.test",
            "--to",
            "bob@sendbox.test",
            "--raw",
            raw.to_str().unwrap(),
            "--count",
            "20",
            "--concurrency",
            "2",
            "--quiet",
        ],
        "relay-secret",
        None,
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(relay.queued(), 20);
}

#[test]
fn idle_clients_that_never_log_in_cannot_lock_out_one_that_does() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let relay = Arc::new(Relay::start(
        &closed_port(),
        &[
            "--require-auth",
            "app",
            "--password-env",
            "RELAY_PASSWORD",
            "--max-connections",
            "16",
        ],
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let (opened, evicted) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    // 16 clients that only say NOOP, each reconnecting as soon as it is closed, for as
    // long as the test runs (at most 60 s).
    let flood: Vec<_> = (0..16)
        .map(|_| {
            let (relay, stop) = (relay.clone(), stop.clone());
            let (opened, evicted) = (opened.clone(), evicted.clone());
            std::thread::spawn(move || {
                let started = Instant::now();
                while !stop.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(60) {
                    let (mut client, greeting) = relay.try_connect();
                    if !greeting.starts_with("220") {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    }
                    opened.fetch_add(1, Ordering::SeqCst);
                    while !stop.load(Ordering::SeqCst) {
                        if !client.command("NOOP").starts_with("250") {
                            evicted.fetch_add(1, Ordering::SeqCst);
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while opened.load(Ordering::SeqCst) < 16 {
        assert!(
            Instant::now() < deadline,
            "the flood never filled the relay"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // A guesser's failures make every login verdict wait (2 s after two): waiting for it,
    // an honest client must keep its place against the flood all the same.
    for last in 2..4 {
        let mut guesser = relay.connect_from([127, 0, 0, last]);
        guesser
            .stream()
            .write_all(b"EHLO guesser.test\r\nAUTH PLAIN AGFwcAB3cm9uZw==\r\n")
            .unwrap();
        assert!(guesser.reply().starts_with("250"));
    }
    // With every slot held by the flood, clients with the password still get in, each at
    // its first try, and send.
    for n in 0..5 {
        let (mut client, greeting) = relay.try_connect();
        assert!(greeting.starts_with("220"), "try {n}: {greeting:?}");
        assert!(client.command("EHLO app.test").starts_with("250"));
        let reply = client.command("AUTH PLAIN AGFwcAByZWxheS1zZWNyZXQ=");
        assert!(reply.starts_with("235"), "try {n}: {reply}");
        let reply = client.send("past the flood", "ok");
        assert!(reply.starts_with("250 2.0.0 queued as"), "try {n}: {reply}");
    }
    // Each of them took the place of an idle client, which finds itself closed.
    let deadline = Instant::now() + Duration::from_secs(10);
    while evicted.load(Ordering::SeqCst) < 5 {
        assert!(Instant::now() < deadline, "no idle client made room");
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::SeqCst);
    for thread in flood {
        thread.join().unwrap();
    }
    assert_eq!(relay.queued(), 5);
}

#[test]
fn failed_logins_are_few_and_end_the_connection() {
    let relay = Relay::start(
        &closed_port(),
        &["--require-auth", "app", "--password-env", "RELAY_PASSWORD"],
    );
    let mut client = relay.connect();
    assert!(client.command("EHLO app.test").starts_with("250"));
    for expected in ["535 5.7.8", "535 5.7.8", "421 4.7.0"] {
        let reply = client.command("AUTH PLAIN AGFwcAB3cm9uZw==");
        assert!(reply.starts_with(expected), "{reply}");
    }
    assert!(client.closed());
}

#[test]
fn bad_addresses_are_refused_at_mail_and_rcpt_and_the_null_sender_is_taken() {
    let relay = Relay::start(&closed_port(), &[]);
    let mut client = relay.connect();
    assert!(client.command("EHLO app.test").starts_with("250"));
    for bad in [
        "a\x1b[2Jb@sendbox.test",
        "bob@@sendbox.test",
        "a,b@sendbox.test",
    ] {
        let reply = client.command(&format!("MAIL FROM:<{bad}>"));
        assert!(reply.starts_with("553 5.1.7"), "{bad:?}: {reply:?}");
        assert!(!reply.contains('\x1b'), "{reply:?}");
    }
    assert!(client.command("MAIL FROM:<>").starts_with("250"));
    for bad in [
        "a\x1b[2Jb@sendbox.test",
        "bob@@sendbox.test",
        "a,b@sendbox.test",
    ] {
        let reply = client.command(&format!("RCPT TO:<{bad}>"));
        assert!(reply.starts_with("553 5.1.3"), "{bad:?}: {reply:?}");
    }
    assert!(client.command("DATA").starts_with("554"));
    assert!(client.command("RSET").starts_with("250"));
    assert_eq!(relay.queued(), 0);
    // A NUL in an address is a NUL in the stream: refused, and the connection closed.
    let reply = client.command("MAIL FROM:<a\0b@sendbox.test>");
    assert!(reply.starts_with("521 5.5.2"), "{reply:?}");
    assert!(client.closed());
}

#[test]
#[ignore = "needs Postfix on loopback (tests/postfix/setup.sh): run .ci/run"]
fn the_null_sender_is_relayed_as_the_null_sender() {
    let relay = Relay::start("127.0.0.1:25", &[]);
    let subject = support::postfix::token("serve-null");
    let mut client = relay.connect();
    assert!(client.command("EHLO app.test").starts_with("250"));
    for (command, code) in [
        ("MAIL FROM:<>", "250"),
        ("RCPT TO:<bob@sendbox.test>", "250"),
        ("DATA", "354"),
    ] {
        let reply = client.command(command);
        assert!(reply.starts_with(code), "{command}: {reply}");
    }
    let reply = client.command(&format!(
        "From: MAILER-DAEMON@sendbox.test\r\nTo: bob@sendbox.test\r\nSubject: {subject}\r\n\r\na bounce\r\n."
    ));
    assert!(reply.starts_with("250 2.0.0 queued as"), "{reply}");
    let stored = support::postfix::delivered("bob", &subject);
    assert!(stored.contains("Return-Path: <>"), "{stored}");
}

#[test]
fn a_guesser_that_hangs_up_early_learns_nothing_sooner() {
    let relay = Relay::start(
        &closed_port(),
        &["--require-auth", "app", "--password-env", "RELAY_PASSWORD"],
    );
    // Wrong guesses, each on a new connection from another loopback address (any local
    // user can bind 127.x.y.z), which hangs up without waiting for the 535.
    for last in 2..5 {
        let mut client = relay.connect_from([127, 0, 0, last]);
        client
            .stream()
            .write_all(b"EHLO guesser.test\r\nAUTH PLAIN AGFwcAB3cm9uZw==\r\n")
            .unwrap();
        assert!(client.reply().starts_with("250"));
    }
    // From then on the right password waits as a wrong one would (4 s after three
    // failures), from any loopback address: a 235 that came at once would tell the
    // guesser it had found it.
    let mut client = relay.connect_from([127, 0, 0, 5]);
    assert!(client.command("EHLO app.test").starts_with("250"));
    client
        .stream()
        .set_read_timeout(Some(Duration::from_millis(900)))
        .unwrap();
    let early = client.command("AUTH PLAIN AGFwcAByZWxheS1zZWNyZXQ=");
    assert_eq!(early, "", "answered at once");
    client
        .stream()
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let reply = client.reply();
    assert!(reply.starts_with("235"), "{reply:?}");
}

#[test]
fn many_clients_at_once_each_get_250_only_for_messages_whole_in_the_queue() {
    // Room for every client, so that none takes another's place before its MAIL.
    let relay = Arc::new(Relay::start(&closed_port(), &["--max-connections", "32"]));
    // 16 clients at once, 10 messages each: their fsyncs of queue/ are shared.
    let clients: Vec<_> = (0..16)
        .map(|c| {
            let relay = relay.clone();
            std::thread::spawn(move || {
                let mut client = relay.connect();
                assert!(client.command("EHLO app.test").starts_with("250"));
                (0..10)
                    .map(|m| {
                        let subject = format!("client {c} message {m}");
                        let reply = client.send(&subject, &format!("body of {subject}"));
                        let id = reply
                            .strip_prefix("250 2.0.0 queued as ")
                            .unwrap_or_else(|| panic!("{subject}: {reply}"))
                            .trim_end()
                            .to_owned();
                        (id, subject)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let accepted: Vec<(String, String)> = clients
        .into_iter()
        .flat_map(|client| client.join().unwrap())
        .collect();
    // Killed at once after the last 250: whatever was answered 250 is whole in queue/.
    let mut relay = Arc::into_inner(relay).unwrap();
    relay.process.kill().unwrap();
    relay.process.wait().unwrap();
    assert_eq!(accepted.len(), 160);
    for (id, subject) in &accepted {
        let stored = std::fs::read(relay.dir.path().join("outbox/queue").join(id))
            .unwrap_or_else(|e| panic!("{subject} answered 250 as {id}, but: {e}"));
        let message = format!(
            "From: alice@sendbox.test\r\nTo: bob@sendbox.test\r\nSubject: {subject}\r\n\r\n\
             body of {subject}\r\n"
        );
        let line = stored.len() - message.len();
        assert!(stored.ends_with(message.as_bytes()), "{id}: {stored:?}");
        let envelope = String::from_utf8_lossy(&stored[..line]);
        assert!(
            envelope.ends_with('\n')
                && envelope.contains(&format!("\"message_length\":{}", message.len())),
            "{id}: {envelope}"
        );
    }
    assert_eq!(relay.queued(), 160);
}
