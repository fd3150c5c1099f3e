//! `sendbox serve`, the local relay: an app's message goes through it into the outbox and
//! on to Postfix; hostile local clients (endless lines, trickled bytes, too many
//! connections, too big a message) are cut off without affecting the others; it refuses
//! to listen beyond loopback, and can require a login.

mod support;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "default = \"main\"\n[accounts.main]\nserver = \"{server}\"\ntls = \"none\"\n\
                 from = \"alice@sendbox.test\"\n[queue]\ndir = \"{}\"\n",
                dir.path().join("outbox").display()
            ),
        )
        .unwrap();
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
            reader: BufReader::new(stream.try_clone().unwrap()),
            stream,
        };
        let greeting = client.reply();
        (client, greeting)
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

/// A plain SMTP client, one command at a time.
struct Client {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Client {
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
        self.stream
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
    let _ = endless.stream.write_all(&[b'a'; 10 * 1024]);
    let reply = endless.reply();
    assert!(reply.starts_with("500 5.5.2"), "{reply:?}");
    assert!(endless.closed());

    // A byte now and then, while another client sends a message: the slow one is cut off
    // when one line has taken longer than 2 s; the other is served meanwhile.
    let trickling = std::thread::spawn(move || {
        let started = Instant::now();
        for byte in b"EHLO slow.test" {
            if trickle.stream.write_all(&[*byte]).is_err()
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
fn too_many_connections_or_too_big_a_message_are_refused() {
    let relay = Relay::start(
        &closed_port(),
        &["--max-connections", "2", "--max-size", "1000"],
    );
    // The start-up probe of `Relay::start` may hold a slot for a moment.
    let _first = relay.connect_when_free();
    let mut second = relay.connect_when_free();
    let third = TcpStream::connect(("127.0.0.1", relay.port)).unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut refused = String::new();
    BufReader::new(third).read_line(&mut refused).unwrap();
    assert!(refused.starts_with("421 4.7.0"), "{refused:?}");

    assert!(second.command("EHLO app.test").starts_with("250"));
    let reply = second.send("big", &"x".repeat(2000));
    assert!(reply.starts_with("552 5.3.4"), "{reply}");
    assert!(second.closed());
    assert_eq!(relay.queued(), 0);
    let mut again = relay.connect_when_free();
    assert!(again.command("EHLO app.test").starts_with("250"));
    let reply = again.send("small", "fits");
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
    assert!(client.command("EHLO app.test").contains("AUTH"));
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
}

#[test]
fn the_relay_refuses_to_listen_beyond_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let output = sendbox_command(sendbox_bin(), dir.path(), "")
        .args(["serve", "--listen", "0.0.0.0:2525"])
        .output()
        .unwrap();
    assert_exit(&output, 64, "loopback only");
}
