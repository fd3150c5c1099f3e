//! Sends to a real Postfix on loopback and finds the message in the delivered mailbox.
//!
//! These tests are ignored by a plain `cargo test` (they show as "ignored"): Postfix must
//! be installed and started first with `just postfix` (tests/postfix/setup.sh, as root).
//! `.ci/run` always does that and runs them with `--include-ignored`; if Postfix is then
//! missing they fail, never pass silently.

mod support;

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sendbox::mailer::{ErrorKind, HeaderField, Phase, Reply};
use sendbox::{
    Attachment, AuthMechanism, ComposedMessage, Credentials, Dsn, DsnNotify, DsnReturn, Envelope,
    Mailbox, Mailer, SendOptions, Server, TlsMode, Transcript, TranscriptBuffer,
};
use support::postfix::{delivered, delivered_where, state, token};
use support::*;

/// What tests/postfix/setup.sh left for us.
struct Postfix {
    ca_pem: String,
    user: String,
    password: String,
}

fn postfix() -> Postfix {
    Postfix {
        ca_pem: state("ca.pem"),
        user: state("user").trim().to_owned(),
        password: state("password").trim_end_matches('\n').to_owned(),
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

// --- On the wire: what the transcript and the mailboxes show ------------------------------

/// The TLS mode each Postfix port expects.
fn tls_for(port: u16) -> TlsMode {
    match port {
        587 => TlsMode::Starttls,
        465 => TlsMode::Implicit,
        _ => TlsMode::InsecurePlaintext,
    }
}

impl Postfix {
    /// A mailer for `port` that logs in with the test account (587 and 465) or not (25
    /// and 2525), and keeps its transcript for the test to read.
    async fn traced(&self, port: u16) -> (Mailer, TranscriptBuffer) {
        let credentials = (tls_for(port) != TlsMode::InsecurePlaintext).then(|| self.credentials());
        self.traced_with(port, credentials).await
    }

    /// [`Postfix::traced`] with these credentials.
    async fn traced_with(
        &self,
        port: u16,
        credentials: Option<Credentials>,
    ) -> (Mailer, TranscriptBuffer) {
        let transcript = TranscriptBuffer::new(1 << 20);
        let mailer = Mailer::new(sandbox(), self.server(port, tls_for(port)), credentials)
            .await
            .expect("localhost resolves")
            .with_transcript(Transcript::Capture(transcript.clone()));
        (mailer, transcript)
    }

    /// Asserts that the transcript shows neither the password nor its base64 forms
    /// (alone, or as PLAIN's initial response).
    #[track_caller]
    fn assert_no_password(&self, transcript: &str) {
        let plain = BASE64.encode(format!("\0{}\0{}", self.user, self.password));
        for secret in [self.password.clone(), BASE64.encode(&self.password), plain] {
            assert!(!transcript.contains(&secret), "a secret in:\n{transcript}");
        }
    }
}

/// Asserts that `transcript` has a line starting with `start`, and returns the first.
#[track_caller]
fn line<'a>(transcript: &'a str, start: &str) -> &'a str {
    transcript
        .lines()
        .find(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no line starting {start:?} in:\n{transcript}"))
}

/// How many lines of `transcript` start with `start`.
fn count(transcript: &str, start: &str) -> usize {
    transcript.lines().filter(|l| l.starts_with(start)).count()
}

#[track_caller]
fn assert_no_line(transcript: &str, start: &str) {
    assert_eq!(count(transcript, start), 0, "{start:?} in:\n{transcript}");
}

#[track_caller]
fn assert_status(reply: &Reply, status: (u8, u16, u16)) {
    let got = reply
        .enhanced_status
        .unwrap_or_else(|| panic!("no enhanced status in {reply:?}"));
    assert_eq!((got.class, got.subject, got.detail), status, "{reply:?}");
}

/// The header of a stored message (up to the first empty line).
fn header_of(message: &str) -> &str {
    message.split("\n\n").next().unwrap_or(message)
}

/// The unfolded values of the header fields called `name` (any case).
fn fields(header: &str, name: &str) -> Vec<String> {
    let mut values: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    for line in header.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some(value) = current.as_mut() {
                value.push_str(line);
            }
            continue;
        }
        values.extend(current.take());
        current = line
            .split_once(':')
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned());
    }
    values.extend(current);
    values
}

/// The decoded body of the first MIME part of type `media_type` in a stored message.
fn part(message: &str, media_type: &str) -> Vec<u8> {
    let start = message
        .to_ascii_lowercase()
        .find(&format!("content-type: {media_type}"))
        .unwrap_or_else(|| panic!("no {media_type} part in:\n{message}"));
    let (header, rest) = message[start..]
        .split_once("\n\n")
        .expect("a part header ends");
    let body = rest.split("\n--").next().unwrap_or(rest);
    let encoding = fields(&format!("{header}\n"), "Content-Transfer-Encoding")
        .pop()
        .unwrap_or_default()
        .to_ascii_lowercase();
    match encoding.as_str() {
        "base64" => BASE64
            .decode(body.split_whitespace().collect::<String>())
            .expect("valid base64"),
        "quoted-printable" => quoted_printable(body),
        _ => body.as_bytes().to_vec(),
    }
}

/// Decodes quoted-printable (RFC 2045 section 6.7); line breaks come out as LF.
fn quoted_printable(body: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for line in body.lines() {
        let line = line.trim_end_matches([' ', '\t', '\r']);
        let (line, soft) = match line.strip_suffix('=') {
            Some(line) => (line, true),
            None => (line, false),
        };
        let bytes = line.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'=' && i + 2 < bytes.len() {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("ASCII");
                out.push(u8::from_str_radix(hex, 16).expect("a QP escape"));
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        if !soft {
            out.push(b'\n');
        }
    }
    out
}

/// Whether a stored message is a delivery status notification from Postfix.
fn is_dsn(message: &str) -> bool {
    let header = header_of(message);
    fields(header, "From")
        .iter()
        .any(|f| f.contains("MAILER-DAEMON"))
        && fields(header, "Content-Type")
            .iter()
            .any(|f| f.contains("report-type=delivery-status"))
}

#[tokio::test]
#[ignore = "needs Postfix on loopback: run `just postfix`, then `cargo test -- --ignored`"]
async fn the_strongest_mechanism_is_scram_sha_256() {
    let postfix = postfix();
    for port in [587, 465] {
        let token = token(&format!("scram-{port}"));
        let (mailer, transcript) = postfix.traced(port).await;
        mailer
            .send(
                &envelope("alice@sendbox.test", &["bob@sendbox.test"]),
                &message(&token),
            )
            .await
            .unwrap_or_else(|e| panic!("port {port}: {e}\n{}", transcript.contents()));
        let transcript = transcript.contents();
        line(&transcript, "C: AUTH SCRAM-SHA-256 <credentials redacted>");
        assert_no_line(&transcript, "C: AUTH PLAIN");
        assert_no_line(&transcript, "C: AUTH LOGIN");
        line(&transcript, "S: 235 ");
        postfix.assert_no_password(&transcript);
        delivered("bob", &token);
    }
}

#[tokio::test]
#[ignore = "needs Postfix on loopback: run `just postfix`, then `cargo test -- --ignored`"]
async fn every_mechanism_by_name_on_465() {
    let postfix = postfix();
    for (mechanism, name) in [
        (AuthMechanism::ScramSha256, "SCRAM-SHA-256"),
        (AuthMechanism::Plain, "PLAIN"),
        (AuthMechanism::Login, "LOGIN"),
        (AuthMechanism::CramMd5, "CRAM-MD5"),
    ] {
        let token = token(&format!("mech-{name}"));
        let credentials = postfix.credentials().with_mechanism(mechanism);
        let (mailer, transcript) = postfix.traced_with(465, Some(credentials)).await;
        mailer
            .send(
                &envelope("alice@sendbox.test", &["carol@sendbox.test"]),
                &message(&token),
            )
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}\n{}", transcript.contents()));
        let transcript = transcript.contents();
        let auth = line(&transcript, "C: AUTH ");
        assert!(
            auth == format!("C: AUTH {name}") || auth.starts_with(&format!("C: AUTH {name} ")),
            "{name}: {transcript}"
        );
        assert_eq!(count(&transcript, "C: AUTH "), 1, "{transcript}");
        line(&transcript, "S: 235 ");
        postfix.assert_no_password(&transcript);
        delivered("carol", &token);
    }
}

#[tokio::test]
#[ignore = "needs Postfix on loopback: run `just postfix`, then `cargo test -- --ignored`"]
async fn composed_message_with_dsn_pipelining_and_chunking_on_587() {
    let postfix = postfix();
    let token = token("composed");
    let envid = token.replace("composed", "envid");
    let binary: Vec<u8> = (0..48u8).map(|i| i.wrapping_mul(37) ^ 0x80).collect();
    let text = format!("Grüße aus der Sandbox, {token} — ½ € ✓\nZweite Zeile.\n");
    let html = format!("<p>Grüße aus der <b>Sandbox</b>, {token}</p>\n");

    let mut composed = ComposedMessage::new(Mailbox {
        name: Some("Älice Ängström".into()),
        address: "alice@sendbox.test".into(),
    });
    composed.to.push(Mailbox {
        name: Some("Bøb".into()),
        address: "bob@sendbox.test".into(),
    });
    composed.cc.push(Mailbox::new("carol@sendbox.test"));
    composed.bcc.push(Mailbox::new("alice@sendbox.test"));
    composed.subject = format!("Grüße {token} ✓");
    composed.text = Some(text.clone());
    composed.html = Some(html.clone());
    composed.attachments.push(Attachment {
        filename: "daten.bin".into(),
        media_type: "application/octet-stream".into(),
        content: binary.clone(),
    });
    composed.headers.push(HeaderField {
        name: "X-Sendbox-Test".into(),
        value: token.clone(),
    });
    let options = SendOptions {
        dsn: Some(Dsn {
            notify: Some(DsnNotify::SUCCESS | DsnNotify::FAILURE),
            ret: Some(DsnReturn::Headers),
            envid: Some(envid.clone()),
            original_recipients: false,
        }),
        require_tls: false,
        keep_raw_header: false,
        dkim: None,
    };

    let (mailer, transcript) = postfix.traced(587).await;
    let delivery = mailer
        .send_with(&Envelope::from_headers(), composed, &options)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", transcript.contents()));
    let transcript = transcript.contents();

    // The envelope: sender from From, recipients from To, Cc and Bcc.
    assert_eq!(
        delivery.accepted,
        [
            "bob@sendbox.test",
            "carol@sendbox.test",
            "alice@sendbox.test"
        ],
        "{transcript}"
    );
    assert!(delivery.refused.is_empty(), "{delivery:?}");
    assert!(delivery.earlier_replies.is_empty(), "{delivery:?}");
    assert_eq!(delivery.final_reply.code, 250, "{delivery:?}");
    assert_status(&delivery.final_reply, (2, 0, 0));

    // MAIL FROM with SIZE and the DSN parameters; NOTIFY on every RCPT.
    let mail = line(&transcript, "C: MAIL FROM:<alice@sendbox.test>");
    assert!(mail.contains(" SIZE="), "{mail}");
    assert!(mail.contains(&format!(" RET=HDRS ENVID={envid}")), "{mail}");
    assert_eq!(count(&transcript, "C: MAIL FROM:"), 1, "{transcript}");
    let rcpts: Vec<&str> = transcript
        .lines()
        .filter(|l| l.starts_with("C: RCPT TO:"))
        .collect();
    assert_eq!(rcpts.len(), 3, "{transcript}");
    for rcpt in &rcpts {
        assert!(rcpt.ends_with(" NOTIFY=SUCCESS,FAILURE"), "{rcpt}");
    }

    // PIPELINING: MAIL and every RCPT were written before the first reply after MAIL.
    let lines: Vec<&str> = transcript.lines().collect();
    let at_mail = lines
        .iter()
        .position(|l| l.starts_with("C: MAIL FROM:"))
        .unwrap();
    let first_reply = at_mail
        + lines[at_mail..]
            .iter()
            .position(|l| l.starts_with("S: "))
            .expect("a reply to MAIL");
    let sent_before_reply = lines[at_mail..first_reply]
        .iter()
        .filter(|l| l.starts_with("C: RCPT TO:"))
        .count();
    assert_eq!(sent_before_reply, 3, "not pipelined:\n{transcript}");
    line(&transcript, "S: 250-PIPELINING");

    // CHUNKING: one BDAT LAST, no DATA.
    let bdat = line(&transcript, "C: BDAT ");
    assert!(bdat.ends_with(" LAST"), "{transcript}");
    assert_no_line(&transcript, "C: DATA");

    // Every copy: the text, the HTML and the attachment intact; no Bcc, alice not in To/Cc.
    for user in ["bob", "carol", "alice"] {
        let stored = delivered_where(user, &token, |m| !is_dsn(m));
        let header = header_of(&stored);
        assert!(stored.is_ascii(), "{user}'s copy is not 7-bit:\n{stored}");
        assert!(fields(header, "Bcc").is_empty(), "{user}: {header}");
        for name in ["To", "Cc"] {
            let values = fields(header, name);
            assert_eq!(values.len(), 1, "{user}: {name} in {header}");
            assert!(!values[0].contains("alice@"), "{user}: {name} in {header}");
        }
        assert!(
            fields(header, "To")[0].contains("<bob@sendbox.test>"),
            "{header}"
        );
        assert!(
            fields(header, "Cc")[0].contains("carol@sendbox.test"),
            "{header}"
        );
        let subject = fields(header, "Subject").pop().expect("a Subject");
        assert!(subject.starts_with("=?"), "not RFC 2047: {subject}");
        assert_eq!(fields(header, "Date").len(), 1, "{header}");
        assert_eq!(fields(header, "Message-ID").len(), 1, "{header}");
        let crlf = |bytes: Vec<u8>| String::from_utf8(bytes).expect("UTF-8");
        assert_eq!(
            crlf(part(&stored, "text/plain")).trim_end(),
            text.trim_end()
        );
        assert_eq!(crlf(part(&stored, "text/html")).trim_end(), html.trim_end());
        assert_eq!(part(&stored, "application/octet-stream"), binary, "{user}");
        assert!(stored.contains("daten.bin"), "{user}");
    }

    // alice, the envelope sender, gets Postfix's success notification quoting the ENVID.
    let dsn = delivered_where("alice", &envid, is_dsn);
    assert!(
        dsn.contains(&format!("Original-Envelope-Id: {envid}")),
        "{dsn}"
    );
    for user in ["alice", "bob", "carol"] {
        let report = format!("Final-Recipient: rfc822; {user}@sendbox.test\n");
        let (_, after) = dsn
            .split_once(&report)
            .unwrap_or_else(|| panic!("{user} not in the notification:\n{dsn}"));
        let entry = after.split("\n\n").next().unwrap_or(after);
        assert!(entry.contains("Action: delivered\n"), "{dsn}");
        assert!(entry.contains("Status: 2.0.0\n"), "{dsn}");
    }
}

#[tokio::test]
#[ignore = "needs Postfix on loopback: run `just postfix`, then `cargo test -- --ignored`"]
async fn smtputf8_sender_on_25() {
    let postfix = postfix();
    let token = token("smtputf8");
    let (mailer, transcript) = postfix.traced(25).await;
    let raw = format!(
        "From: Ålice <ålice@sendbox.test>\nTo: bob@sendbox.test\nSubject: {token}\n\nHej från ålice.\n"
    );
    mailer
        .send(
            &envelope("ålice@sendbox.test", &["bob@sendbox.test"]),
            raw.as_bytes(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", transcript.contents()));
    let transcript = transcript.contents();
    line(&transcript, "S: 250-SMTPUTF8");
    let mail = line(&transcript, "C: MAIL FROM:<ålice@sendbox.test>");
    assert!(mail.split(' ').any(|p| p == "SMTPUTF8"), "{mail}");
    let stored = delivered("bob", &token);
    assert!(
        stored.contains("Return-Path: <ålice@sendbox.test>"),
        "{stored}"
    );
    assert!(stored.contains("Hej från ålice."), "{stored}");
}

#[tokio::test]
#[ignore = "needs Postfix on loopback: run `just postfix`, then `cargo test -- --ignored`"]
async fn eight_bit_body_on_25() {
    let postfix = postfix();
    let token = token("8bitmime");
    let (mailer, transcript) = postfix.traced(25).await;
    let body = "Größe: ½ m² — naïve café ✓\nΚαλημέρα κόσμε\n";
    let raw = format!(
        "From: alice@sendbox.test\nTo: bob@sendbox.test\nSubject: {token}\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n{body}"
    );
    mailer
        .send(
            &envelope("alice@sendbox.test", &["bob@sendbox.test"]),
            raw.as_bytes(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", transcript.contents()));
    let transcript = transcript.contents();
    line(&transcript, "S: 250-8BITMIME");
    let mail = line(&transcript, "C: MAIL FROM:<alice@sendbox.test>");
    assert!(mail.contains(" BODY=8BITMIME"), "{mail}");
    assert!(
        !mail.contains("SMTPUTF8"),
        "ASCII addresses need no SMTPUTF8: {mail}"
    );
    let stored = delivered("bob", &token);
    let (_, stored_body) = stored.split_once("\n\n").expect("a body");
    assert!(stored_body.starts_with(body), "{stored}");
}

#[tokio::test]
#[ignore = "needs Postfix on loopback: run `just postfix`, then `cargo test -- --ignored`"]
async fn a_message_over_the_size_limit_is_refused_before_mail() {
    let postfix = postfix();
    let (mailer, transcript) = postfix.traced(25).await;
    let mut composed = ComposedMessage::new(Mailbox::new("alice@sendbox.test"));
    composed.to.push(Mailbox::new("bob@sendbox.test"));
    composed.subject = token("too-big");
    composed.attachments.push(Attachment {
        filename: "big.bin".into(),
        media_type: "application/octet-stream".into(),
        content: vec![0xA5; 11 << 20],
    });
    let error = smtp_error(
        mailer
            .send(&Envelope::from_headers(), composed)
            .await
            .expect_err("larger than Postfix's SIZE"),
    );
    let transcript = transcript.contents();
    assert_eq!(
        (error.phase, error.kind, error.transient),
        (Phase::Mail, ErrorKind::InvalidInput, false),
        "{error:?}\n{transcript}"
    );
    line(&transcript, "C: EHLO ");
    line(&transcript, "S: 250-SIZE 10240000");
    assert_no_line(&transcript, "C: MAIL FROM");
    assert_no_line(&transcript, "C: BDAT");
}

#[tokio::test]
#[ignore = "needs Postfix on loopback: run `just postfix`, then `cargo test -- --ignored`"]
async fn requiretls_is_refused_when_postfix_lacks_it() {
    let postfix = postfix();
    let token = token("requiretls");
    let (mailer, transcript) = postfix.traced(587).await;
    let options = SendOptions {
        dsn: None,
        require_tls: true,
        keep_raw_header: false,
        dkim: None,
    };
    let error = smtp_error(
        mailer
            .send_with(
                &envelope("alice@sendbox.test", &["bob@sendbox.test"]),
                &message(&token),
                &options,
            )
            .await
            .expect_err("Postfix does not offer REQUIRETLS"),
    );
    let transcript = transcript.contents();
    assert_eq!(error.kind, ErrorKind::Tls, "{error:?}\n{transcript}");
    assert!(!error.transient, "{error:?}");
    // The session was over TLS and authenticated, but the message never started.
    line(&transcript, "-- TLS established");
    line(&transcript, "S: 235 ");
    assert_no_line(&transcript, "S: 250-REQUIRETLS");
    assert_no_line(&transcript, "C: MAIL FROM");
}

#[tokio::test]
#[ignore = "needs Postfix on loopback: run `just postfix`, then `cargo test -- --ignored`"]
async fn a_452_recipient_limit_splits_the_transaction() {
    let postfix = postfix();
    let token = token("limit");
    let (mailer, transcript) = postfix.traced(2525).await;
    let all = [
        "alice@sendbox.test",
        "bob@sendbox.test",
        "carol@sendbox.test",
    ];
    let delivery = mailer
        .send(&envelope("alice@sendbox.test", &all), &message(&token))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", transcript.contents()));
    let transcript = transcript.contents();
    let mut accepted = delivery.accepted.clone();
    accepted.sort();
    assert_eq!(accepted, all, "{delivery:?}");
    assert!(delivery.refused.is_empty(), "{delivery:?}");
    assert_eq!(delivery.earlier_replies.len(), 1, "{delivery:?}");
    assert_eq!(delivery.earlier_replies[0].code, 250, "{delivery:?}");
    assert_eq!(delivery.final_reply.code, 250, "{delivery:?}");
    assert_ne!(
        delivery.earlier_replies[0].text, delivery.final_reply.text,
        "two transactions have two queue ids"
    );
    line(&transcript, "S: 452 4.5.3 ");
    assert_eq!(count(&transcript, "C: MAIL FROM:"), 2, "{transcript}");
    assert_eq!(count(&transcript, "C: RCPT TO:"), 4, "{transcript}");
    for user in ["alice", "bob", "carol"] {
        delivered(user, &token);
    }
}

#[tokio::test]
#[ignore = "needs Postfix on loopback: run `just postfix`, then `cargo test -- --ignored`"]
async fn a_dropped_idle_session_reconnects() {
    let postfix = postfix();
    let (first, second) = (token("idle-1"), token("idle-2"));
    let (mailer, transcript) = postfix.traced(2525).await;
    let mut session = mailer.open().await.expect("session opens");
    let to_bob = envelope("alice@sendbox.test", &["bob@sendbox.test"]);
    session
        .send(&to_bob, &message(&first))
        .await
        .expect("first");
    // Postfix on 2525 drops a client idle for 3 s.
    tokio::time::sleep(Duration::from_secs(6)).await;
    session
        .send(&to_bob, &message(&second))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", transcript.contents()));
    session.close().await.expect("QUIT");
    let transcript = transcript.contents();
    let reconnect = "-- the idle connection is gone; connecting again";
    assert_eq!(count(&transcript, reconnect), 1, "{transcript}");
    assert_eq!(count(&transcript, "C: EHLO "), 2, "{transcript}");
    assert_eq!(count(&transcript, "C: MAIL FROM:"), 2, "{transcript}");
    // The second MAIL FROM went over the new connection.
    let at_reconnect = transcript.find(reconnect).unwrap();
    assert_eq!(
        count(&transcript[at_reconnect..], "C: MAIL FROM:"),
        1,
        "{transcript}"
    );
    delivered("bob", &first);
    delivered("bob", &second);
}

#[tokio::test]
#[ignore = "needs Postfix on loopback: run `just postfix`, then `cargo test -- --ignored`"]
async fn a_briefly_idle_session_is_not_checked() {
    let postfix = postfix();
    let (first, second) = (token("busy-1"), token("busy-2"));
    let (mailer, transcript) = postfix.traced(2525).await;
    let mut session = mailer.open().await.expect("session opens");
    let to_carol = envelope("alice@sendbox.test", &["carol@sendbox.test"]);
    session
        .send(&to_carol, &message(&first))
        .await
        .expect("first");
    tokio::time::sleep(Duration::from_secs(1)).await;
    session
        .send(&to_carol, &message(&second))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", transcript.contents()));
    session.close().await.expect("QUIT");
    let transcript = transcript.contents();
    assert_no_line(&transcript, "C: NOOP");
    assert_no_line(&transcript, "-- ");
    assert_eq!(count(&transcript, "C: EHLO "), 1, "{transcript}");
    assert_eq!(count(&transcript, "C: MAIL FROM:"), 2, "{transcript}");
    delivered("carol", &first);
    delivered("carol", &second);
}

#[tokio::test]
#[ignore = "needs Postfix on loopback: run `just postfix`, then `cargo test -- --ignored`"]
async fn a_live_idle_session_is_checked_with_noop() {
    let postfix = postfix();
    let (first, second) = (token("noop-1"), token("noop-2"));
    let (mailer, transcript) = postfix.traced(25).await;
    let mut session = mailer.open().await.expect("session opens");
    let to_alice = envelope("alice@sendbox.test", &["alice@sendbox.test"]);
    session
        .send(&to_alice, &message(&first))
        .await
        .expect("first");
    // Port 25 keeps an idle client for minutes.
    tokio::time::sleep(Duration::from_secs(6)).await;
    session
        .send(&to_alice, &message(&second))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", transcript.contents()));
    session.close().await.expect("QUIT");
    let transcript = transcript.contents();
    let lines: Vec<&str> = transcript.lines().collect();
    let noop = lines
        .iter()
        .position(|l| *l == "C: NOOP")
        .unwrap_or_else(|| panic!("no NOOP in:\n{transcript}"));
    assert!(lines[noop + 1].starts_with("S: 250 "), "{transcript}");
    assert_eq!(count(&transcript, "C: NOOP"), 1, "{transcript}");
    // Between the two messages: the NOOP checks the same connection, no reconnect.
    let mails: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].starts_with("C: MAIL FROM:"))
        .collect();
    assert_eq!(mails.len(), 2, "{transcript}");
    assert!(mails[0] < noop && noop < mails[1], "{transcript}");
    assert_no_line(&transcript, "-- the idle connection is gone");
    assert_eq!(count(&transcript, "C: EHLO "), 1, "{transcript}");
    delivered("alice", &first);
    delivered("alice", &second);
}

#[tokio::test]
#[ignore = "needs Postfix on loopback: run `just postfix`, then `cargo test -- --ignored`"]
async fn an_unknown_recipient_error_carries_the_enhanced_status() {
    let postfix = postfix();
    let (mailer, transcript) = postfix.traced(25).await;
    let error = mailer
        .send(
            &envelope("alice@sendbox.test", &["nobody@sendbox.test"]),
            &message(&token("nobody")),
        )
        .await
        .expect_err("nobody has no mailbox");
    let transcript = transcript.contents();
    let sendbox::Error::Smtp(error) = error else {
        panic!("expected an SMTP error, got {error:?}");
    };
    assert_eq!(
        (error.phase, error.kind, error.transient),
        (Phase::Rcpt, ErrorKind::Rejected, false),
        "{error:?}"
    );
    let reply = error.reply.expect("Postfix's reply");
    assert_eq!(reply.code, 550, "{reply:?}");
    assert_status(&reply, (5, 1, 1));
    line(&transcript, "S: 250-ENHANCEDSTATUSCODES");
    line(&transcript, "S: 550 5.1.1 ");
    assert_no_line(&transcript, "C: BDAT");
    assert_no_line(&transcript, "C: DATA");
    // The one-shot send still ends the session politely (RFC 5321 section 4.1.1.10).
    line(&transcript, "C: RSET");
    line(&transcript, "C: QUIT");
    line(&transcript, "S: 221 ");
}

// Several addresses (RFC 8305): Postfix listens on 127.0.0.1 and [::1]; a black hole
// stands in for an address that drops packets.

/// Postfix on 2525, reached through a list of addresses whose first is black-holed.
async fn send_through(
    addresses: &[&str],
    connect_ms: u32,
    token: &str,
) -> Result<sendbox::Delivery, sendbox::Error> {
    let postfix = postfix();
    let mut server = postfix.server(2525, TlsMode::InsecurePlaintext);
    server.addresses = addresses.iter().map(|a| a.parse().unwrap()).collect();
    server.timeouts = Some(sendbox::mailer::Timeouts {
        connect_ms,
        ..sendbox::mailer::Timeouts::every_stage(30_000)
    });
    let mailer = Mailer::new(sandbox(), server, None).await.unwrap();
    mailer
        .send(
            &envelope("alice@sendbox.test", &["alice@sendbox.test"]),
            &message(token),
        )
        .await
}

#[tokio::test]
#[ignore = "needs Postfix on loopback: run `just postfix`, then `cargo test -- --ignored`"]
async fn a_black_holed_first_address_leaves_time_for_the_next() {
    // [::1]:2525 is free (Postfix's 2525 is IPv4 only): the black hole takes it.
    let hole = support::black_hole::BlackHole::at("[::1]:2525".parse().unwrap());
    assert_eq!(hole.address.port(), 2525);
    let token = token("black-hole");
    let started = Instant::now();
    // As a resolver would give them for a name: the black-holed IPv6 address first.
    let delivery = send_through(&["::1", "127.0.0.1"], 4_000, &token)
        .await
        .expect("the second address delivers");
    let elapsed = started.elapsed();
    assert!(
        delivery.final_reply.text.contains("queued as"),
        "{delivery:?}"
    );
    delivered("alice", &token);
    // The first attempt had its half of the 4 s, no more and not much less.
    assert!(
        elapsed >= Duration::from_millis(1_800) && elapsed < Duration::from_millis(4_000),
        "took {elapsed:?}"
    );
}

#[tokio::test]
async fn every_address_black_holed_is_a_connect_timeout() {
    let first = support::black_hole::BlackHole::at("127.0.0.1:0".parse().unwrap());
    let port = first.address.port();
    let second = support::black_hole::BlackHole::at(format!("[::1]:{port}").parse().unwrap());
    let mut server = Server::new("black-hole.test", port, TlsMode::InsecurePlaintext);
    server.addresses = vec![first.address.ip(), second.address.ip()];
    server.timeouts = Some(sendbox::mailer::Timeouts {
        connect_ms: 1_500,
        ..sendbox::mailer::Timeouts::every_stage(30_000)
    });
    let mailer = Mailer::new(sandbox(), server, None).await.unwrap();
    let started = Instant::now();
    let error = smtp_error(
        mailer
            .send(
                &envelope("a@example.org", &["b@example.org"]),
                b"Subject: x\r\n\r\nx\r\n",
            )
            .await
            .expect_err("nothing answers"),
    );
    let elapsed = started.elapsed();
    assert_eq!(
        (error.phase, error.kind, error.transient),
        (Phase::Connect, ErrorKind::Timeout, true)
    );
    assert!(
        elapsed >= Duration::from_millis(1_400) && elapsed < Duration::from_millis(3_000),
        "both attempts share the 1.5 s: took {elapsed:?}"
    );
}

#[tokio::test]
#[ignore = "needs Postfix on loopback: run `just postfix`, then `cargo test -- --ignored`"]
async fn postfix_over_ipv6_and_an_ipv6_literal_on_the_command_line() {
    let postfix = postfix();
    let first = token("ipv6");
    let mut server = postfix.server(25, TlsMode::InsecurePlaintext);
    server.host = "::1".to_owned();
    let mailer = Mailer::new(sandbox(), server, None).await.unwrap();
    mailer
        .send(
            &envelope("alice@sendbox.test", &["alice@sendbox.test"]),
            &message(&first),
        )
        .await
        .expect("Postfix accepts on [::1]:25");
    let received = delivered("alice", &first);
    assert!(received.contains("[IPv6:::1]"), "{received}");

    let token = token("ipv6-cli");
    let output = run_sendbox(
        &[
            "send",
            "--server",
            "[::1]:25",
            "--tls",
            "none",
            "--from",
            "alice@sendbox.test",
            "--to",
            "alice@sendbox.test",
            "--subject",
            &token,
            "--body",
            "over IPv6",
        ],
        &postfix.password,
        None,
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let received = delivered("alice", &token);
    assert!(received.contains("[IPv6:::1]"), "{received}");
}

/// A message as cron writes it: no Date, Message-ID or From.
fn cron_message(token: &str) -> Vec<u8> {
    format!("To: alice@sendbox.test\nSubject: {token}\n\nthe nightly job ran\n").into_bytes()
}

#[tokio::test]
#[ignore = "needs Postfix on loopback: run `just postfix`, then `cargo test -- --ignored`"]
async fn a_raw_message_gets_the_date_message_id_and_from_it_lacks() {
    let postfix = postfix();
    let mailer = Mailer::new(
        sandbox(),
        postfix.server(25, TlsMode::InsecurePlaintext),
        None,
    )
    .await
    .unwrap();
    let header_of = |message: &str| message.split("\n\n").next().unwrap().to_owned();
    let field = |header: &str, name: &str| {
        header
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with(&format!("{name}:")))
            .map(str::to_owned)
    };
    let envelope = envelope("cron@sendbox.test", &["alice@sendbox.test"]);

    let completed = token("cron");
    mailer
        .send(&envelope, &cron_message(&completed))
        .await
        .expect("delivered");
    let header = header_of(&delivered("alice", &completed));
    assert_eq!(
        field(&header, "from").as_deref(),
        Some("From: <cron@sendbox.test>"),
        "{header}"
    );
    let id = field(&header, "message-id").unwrap_or_default();
    assert!(
        id.starts_with("Message-ID: <") && id.ends_with("@sendbox.test>"),
        "{header}"
    );
    assert!(field(&header, "date").is_some(), "{header}");

    // Kept as it is: Postfix (local_header_rewrite_clients empty) adds nothing either.
    let token = token("cron-as-is");
    let as_is = SendOptions {
        keep_raw_header: true,
        ..SendOptions::default()
    };
    mailer
        .send_with(
            &envelope,
            sendbox::Message::Raw(cron_message(&token)),
            &as_is,
        )
        .await
        .expect("delivered");
    let header = header_of(&delivered("alice", &token));
    for name in ["from", "message-id", "date"] {
        assert_eq!(field(&header, name), None, "{header}");
    }
}
