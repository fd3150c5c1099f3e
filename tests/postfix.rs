//! Sends to a real Postfix on loopback and finds the message in the delivered mailbox.
//!
//! These tests are ignored by a plain `cargo test` (they show as "ignored"): Postfix must
//! be installed and started first with `just postfix` (tests/postfix/setup.sh, as root).
//! `.ci/run` always does that and runs them with `--include-ignored`; if Postfix is then
//! missing they fail, never pass silently.

mod support;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sendbox::mailer::{ErrorKind, Phase};
use sendbox::{Credentials, Mailer, Server, TlsMode};
use support::*;

const STATE: &str = "/var/lib/sendbox-postfix";
const MAILBOXES: &str = "/var/mail/vhosts/sendbox.test";

/// What tests/postfix/setup.sh left for us.
struct Postfix {
    ca_pem: String,
    user: String,
    password: String,
}

fn postfix() -> Postfix {
    let read = |name: &str| {
        std::fs::read_to_string(Path::new(STATE).join(name)).unwrap_or_else(|e| {
            panic!("Postfix is not set up ({STATE}/{name}: {e}); run `just postfix` (tests/postfix/setup.sh) as root")
        })
    };
    Postfix {
        ca_pem: read("ca.pem"),
        user: read("user").trim().to_owned(),
        password: read("password").trim_end_matches('\n').to_owned(),
    }
}

impl Postfix {
    fn server(&self, port: u16, tls: TlsMode) -> Server {
        let mut server = Server::new("localhost", port, tls);
        server.ca_pem = Some(self.ca_pem.clone());
        server.ehlo_name = Some("client.sendbox.test".to_owned());
        server
    }

    fn credentials(&self) -> Credentials {
        Credentials::password(self.user.clone(), self.password.clone())
    }

    async fn mailer(&self, port: u16, tls: TlsMode) -> Mailer {
        Mailer::new(sandbox(), self.server(port, tls), Some(self.credentials()))
            .await
            .expect("localhost resolves")
    }

    /// The CA as a file, for the CLI.
    fn ca_file(&self) -> String {
        let path =
            std::env::temp_dir().join(format!("sendbox-postfix-ca-{}.pem", std::process::id()));
        std::fs::write(&path, &self.ca_pem).unwrap();
        path.to_string_lossy().into_owned()
    }
}

/// A string no other message has, to find ours in the mailbox.
fn token(label: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{label}-{}-{nanos}", std::process::id())
}

/// Waits until a message containing `token` is in `user`'s mailbox and returns it.
fn delivered(user: &str, token: &str) -> String {
    let path = Path::new(MAILBOXES).join(user);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // Lossy: a message with 8-bit content must not hide the others.
        let mbox = String::from_utf8_lossy(&std::fs::read(&path).unwrap_or_default()).into_owned();
        if let Some(message) = mbox.split("\nFrom ").find(|m| m.contains(token)) {
            return message.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no message with {token} in {} after 30 s",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn message(token: &str) -> Vec<u8> {
    format!("From: alice@sendbox.test\nTo: bob@sendbox.test\nSubject: {token}\n\nHello from sendbox.\n.A dotted line.\n").into_bytes()
}

#[tokio::test]
#[ignore = "needs Postfix on loopback: run `just postfix`, then `cargo test -- --ignored`"]
async fn starttls_and_auth_on_587() {
    let postfix = postfix();
    let token = token("starttls");
    let mailer = postfix.mailer(587, TlsMode::Starttls).await;
    let delivery = mailer
        .send(
            &envelope("alice@sendbox.test", &["bob@sendbox.test"]),
            &message(&token),
        )
        .await
        .expect("Postfix accepts it");
    assert_eq!(delivery.final_reply.code, 250);
    assert!(
        delivery.final_reply.text.contains("queued as"),
        "{:?}",
        delivery.final_reply
    );
    let stored = delivered("bob", &token);
    assert!(stored.contains("\n.A dotted line.\n"), "{stored}");
    assert!(stored.contains("Hello from sendbox."), "{stored}");
}

#[tokio::test]
#[ignore = "needs Postfix on loopback: run `just postfix`, then `cargo test -- --ignored`"]
async fn implicit_tls_and_auth_on_465() {
    let postfix = postfix();
    let token = token("implicit");
    let mailer = postfix.mailer(465, TlsMode::Implicit).await;
    mailer
        .send(
            &envelope("alice@sendbox.test", &["carol@sendbox.test"]),
            &message(&token),
        )
        .await
        .expect("Postfix accepts it");
    delivered("carol", &token);
}

#[tokio::test]
#[ignore = "needs Postfix on loopback: run `just postfix`, then `cargo test -- --ignored`"]
async fn one_session_several_messages_and_recipients() {
    let postfix = postfix();
    let mailer = postfix.mailer(587, TlsMode::Starttls).await;
    let mut session = mailer.open().await.expect("session opens");
    let first = token("session-1");
    let second = token("session-2");
    session
        .send(
            &envelope(
                "alice@sendbox.test",
                &["bob@sendbox.test", "carol@sendbox.test"],
            ),
            &message(&first),
        )
        .await
        .expect("first message");
    session
        .send(
            &envelope("alice@sendbox.test", &["alice@sendbox.test"]),
            &message(&second),
        )
        .await
        .expect("second message");
    session.close().await.expect("QUIT");
    delivered("bob", &first);
    delivered("carol", &first);
    delivered("alice", &second);
}

#[tokio::test]
#[ignore = "needs Postfix on loopback: run `just postfix`, then `cargo test -- --ignored`"]
async fn unknown_recipient_is_refused_and_the_others_receive_it() {
    let postfix = postfix();
    let token = token("partial");
    let mailer = postfix.mailer(587, TlsMode::Starttls).await;
    let delivery = mailer
        .send(
            &envelope(
                "alice@sendbox.test",
                &["nobody@sendbox.test", "bob@sendbox.test"],
            ),
            &message(&token),
        )
        .await
        .expect("delivered to bob");
    assert_eq!(delivery.accepted, ["bob@sendbox.test"]);
    let refused = &delivery.refused[0];
    assert_eq!(
        (refused.address.as_str(), refused.reply.code),
        ("nobody@sendbox.test", 550)
    );
    let status = refused
        .reply
        .enhanced_status
        .expect("Postfix sends enhanced status codes");
    assert_eq!((status.class, status.subject, status.detail), (5, 1, 1));
    delivered("bob", &token);
}

#[tokio::test]
#[ignore = "needs Postfix on loopback: run `just postfix`, then `cargo test -- --ignored`"]
async fn wrong_password_is_an_auth_error() {
    let postfix = postfix();
    let credentials = Credentials::password(postfix.user.clone(), "definitely-wrong");
    let mailer = Mailer::new(
        sandbox(),
        postfix.server(587, TlsMode::Starttls),
        Some(credentials),
    )
    .await
    .unwrap();
    let error = smtp_error(
        mailer
            .send(&envelope("alice@sendbox.test", &["bob@sendbox.test"]), b"x")
            .await
            .expect_err("wrong password"),
    );
    assert_eq!(
        (error.phase, error.kind, error.transient),
        (Phase::Auth, ErrorKind::Auth, false)
    );
    assert_eq!(error.reply.expect("Postfix's reply").code, 535);
}

#[tokio::test]
#[ignore = "needs Postfix on loopback: run `just postfix`, then `cargo test -- --ignored`"]
async fn plaintext_on_25_without_auth() {
    let postfix = postfix();
    let token = token("plain");
    let mailer = Mailer::new(
        sandbox(),
        postfix.server(25, TlsMode::InsecurePlaintext),
        None,
    )
    .await
    .unwrap();
    mailer
        .send(
            &envelope("alice@sendbox.test", &["alice@sendbox.test"]),
            &message(&token),
        )
        .await
        .expect("Postfix accepts local mail on 25");
    delivered("alice", &token);
}

/// `sendbox send` arguments for Postfix with AUTH.
fn cli_args<'a>(postfix: &'a Postfix, ca: &'a str, server: &'a str, tls: &'a str) -> Vec<&'a str> {
    vec![
        "send",
        "--server",
        server,
        "--tls",
        tls,
        "--ca",
        ca,
        "--user",
        &postfix.user,
        "--password-env",
        "SENDBOX_TEST_PASSWORD",
        "--from",
        "alice@sendbox.test",
    ]
}

#[test]
#[ignore = "needs Postfix on loopback: run `just postfix`, then `cargo test -- --ignored`"]
fn cli_delivers_over_starttls_and_implicit_tls() {
    let postfix = postfix();
    let ca = postfix.ca_file();
    for (server, tls) in [("localhost", "starttls"), ("localhost:465", "implicit")] {
        let token = token(tls);
        let mut args = cli_args(&postfix, &ca, server, tls);
        args.extend([
            "--to",
            "bob@sendbox.test",
            "--subject",
            &token,
            "--body",
            "sent by the CLI",
        ]);
        let output = run_sendbox(&args, &postfix.password, None);
        assert_eq!(output.status.code(), Some(0), "{}", text(&output));
        assert!(
            String::from_utf8_lossy(&output.stdout).contains("queued as"),
            "{}",
            text(&output)
        );
        let stored = delivered("bob", &token);
        assert!(stored.contains("sent by the CLI"), "{stored}");
    }
}

#[test]
#[ignore = "needs Postfix on loopback: run `just postfix`, then `cargo test -- --ignored`"]
fn cli_errors_have_the_right_exit_codes() {
    let postfix = postfix();
    let ca = postfix.ca_file();

    let mut args = cli_args(&postfix, &ca, "localhost:587", "starttls");
    args.extend(["--to", "bob@sendbox.test", "--body", "x"]);
    let output = run_sendbox(&args, "wrong-password", None);
    assert_eq!(
        output.status.code(),
        Some(77),
        "wrong password: {}",
        text(&output)
    );
    assert!(!text(&output).contains("wrong-password"));

    let mut args = cli_args(&postfix, &ca, "localhost:587", "starttls");
    args.extend(["--to", "nobody@sendbox.test", "--body", "x"]);
    let output = run_sendbox(&args, &postfix.password, None);
    assert_exit(&output, 67, "5.1.1");

    // Without --ca the public roots are used, and they do not know the test CA.
    let args = [
        "send",
        "--server",
        "localhost:587",
        "--tls",
        "starttls",
        "--user",
        &postfix.user,
        "--password-env",
        "SENDBOX_TEST_PASSWORD",
        "--from",
        "alice@sendbox.test",
        "--to",
        "bob@sendbox.test",
        "--body",
        "x",
    ];
    let output = run_sendbox(&args, &postfix.password, None);
    assert_exit(&output, 69, "TLS");
}
