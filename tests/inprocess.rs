//! Sends through the sandboxed component to a real SMTP server (the mailin library,
//! in-process, over real loopback sockets) and checks what the server received.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use sendbox::batch::{self, Job};
use sendbox::mailer::{ErrorKind, Phase};
use sendbox::{
    ComposedMessage, Envelope, Mailbox, Mailer, SendOptions, TlsMode, Transcript, TranscriptBuffer,
};
use sendbox_loopback::{AuthMechanism, ServerTls};
use support::*;

/// A raw message with every line-ending form and dots where SMTP treats them specially.
const AWKWARD: &[u8] = b"From: a@example.org\nTo: b@example.org\r\nSubject: dots\r\n\r\n.leading dot\n..two dots\n.\nbare CR\rend\n";
/// What the server must end up with: CRLF everywhere, dots as the caller wrote them.
const AWKWARD_RECEIVED: &[u8] = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: dots\r\n\r\n.leading dot\r\n..two dots\r\n.\r\nbare CR\r\nend\r\n";

#[tokio::test]
async fn starttls_auth_plain_delivers_the_message_byte_for_byte() {
    let server = loopback(ServerTls::StartTls);
    let mailer = mailer(&server, TlsMode::Starttls, Some(PASSWORD)).await;
    let delivery = mailer
        .send(&envelope("a@example.org", &["b@example.org"]), AWKWARD)
        .await
        .expect("delivered");
    assert_eq!(delivery.accepted, ["b@example.org"]);
    assert!(delivery.refused.is_empty());
    assert_eq!(delivery.final_reply.code, 250);

    let received = server.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].sender, "a@example.org");
    assert_eq!(received[0].recipients, ["b@example.org"]);
    assert_eq!(received[0].user.as_deref(), Some(USER));
    // Byte for byte after the Date and Message-ID sendbox put first, as it lacked them.
    assert!(received[0].data.starts_with(b"Date: "));
    assert_eq!(
        String::from_utf8_lossy(as_written(&received[0].data)),
        String::from_utf8_lossy(AWKWARD_RECEIVED)
    );
}

#[tokio::test]
async fn implicit_tls_with_auth_login() {
    let server = loopback_with(ServerTls::Implicit, vec![AuthMechanism::Login], Vec::new());
    let mailer = mailer(&server, TlsMode::Implicit, Some(PASSWORD)).await;
    let message = b"Subject: implicit\r\n\r\nover TLS from the first byte\r\n";
    mailer
        .send(&envelope("a@example.org", &["b@example.org"]), message)
        .await
        .expect("delivered");
    let received = server.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].user.as_deref(), Some(USER));
    // With the Date, Message-ID and From it lacked.
    assert_eq!(
        as_written(&received[0].data),
        [&b"From: <a@example.org>\r\n"[..], message].concat()
    );
}

#[tokio::test]
async fn several_recipients_in_one_transaction() {
    let server = loopback(ServerTls::StartTls);
    let mailer = mailer(&server, TlsMode::Starttls, Some(PASSWORD)).await;
    let recipients = ["one@example.org", "two@example.org", "three@example.org"];
    let delivery = mailer
        .send(
            &envelope("a@example.org", &recipients),
            b"Subject: many\r\n\r\nhi\r\n",
        )
        .await
        .expect("delivered");
    assert_eq!(delivery.accepted, recipients);
    let received = server.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].recipients, recipients);
}

#[tokio::test]
async fn one_session_carries_several_messages() {
    let server = loopback(ServerTls::StartTls);
    let mailer = mailer(&server, TlsMode::Starttls, Some(PASSWORD)).await;
    let mut session = mailer.open().await.expect("session opens");
    for i in 0..3 {
        let message = format!("Subject: number {i}\r\n\r\nmessage {i}\r\n");
        session
            .send(
                &envelope("a@example.org", &["b@example.org"]),
                message.as_bytes(),
            )
            .await
            .expect("delivered");
    }
    session.close().await.expect("QUIT");
    let subjects = subjects(&server);
    assert_eq!(
        subjects,
        [
            "Subject: number 0",
            "Subject: number 1",
            "Subject: number 2"
        ]
    );
    assert_eq!(
        server.connections(),
        1,
        "the session used more than one connection"
    );
}

#[tokio::test]
async fn a_refused_recipient_is_reported_and_the_others_get_the_message() {
    let server = loopback_with(
        ServerTls::StartTls,
        vec![AuthMechanism::Plain],
        vec!["nobody@example.org"],
    );
    let mailer = mailer(&server, TlsMode::Starttls, Some(PASSWORD)).await;
    let delivery = mailer
        .send(
            &envelope("a@example.org", &["nobody@example.org", "b@example.org"]),
            b"Subject: partly\r\n\r\nhi\r\n",
        )
        .await
        .expect("delivered to one");
    assert_eq!(delivery.accepted, ["b@example.org"]);
    assert_eq!(delivery.refused.len(), 1);
    let refused = &delivery.refused[0];
    assert_eq!(refused.address, "nobody@example.org");
    assert_eq!(refused.reply.code, 550);
    let status = refused
        .reply
        .enhanced_status
        .expect("enhanced status parsed");
    assert_eq!((status.class, status.subject, status.detail), (5, 1, 1));
    assert_eq!(server.received()[0].recipients, ["b@example.org"]);
}

#[tokio::test]
async fn a_prepared_message_goes_out_later_exactly_as_it_was_built() {
    let mut composed = ComposedMessage::new(Mailbox::new("a@example.org"));
    composed.to.push(Mailbox::new("b@example.org"));
    composed.bcc.push(Mailbox::new("c@example.org"));
    composed.subject = "prepared".into();
    composed.text = Some("built once".into());
    let prepared = sendbox::prepare(
        &sandbox(),
        &Envelope::from_headers(),
        composed,
        &SendOptions::default(),
    )
    .await
    .expect("a valid message is prepared");
    assert_eq!(prepared.sender, "a@example.org");
    assert_eq!(prepared.recipients, ["b@example.org", "c@example.org"]);
    let content = String::from_utf8(prepared.content.clone()).unwrap();
    assert!(content.contains("Message-ID: <"), "{content}");
    // As a whole address: a random Message-ID may end in "...c@example.org".
    assert!(
        !content.contains("<c@example.org>") && !content.to_ascii_lowercase().contains("\nbcc:"),
        "the Bcc shows: {content}"
    );

    let server = loopback(ServerTls::StartTls);
    let mailer = mailer(&server, TlsMode::Starttls, Some(PASSWORD)).await;
    let recipients: Vec<&str> = prepared.recipients.iter().map(String::as_str).collect();
    let options = SendOptions {
        keep_raw_header: true,
        ..SendOptions::default()
    };
    mailer
        .send_with(
            &envelope(&prepared.sender, &recipients),
            prepared.content.as_slice(),
            &options,
        )
        .await
        .expect("delivered");
    let received = server.received();
    assert_eq!(received[0].recipients, ["b@example.org", "c@example.org"]);
    // As built, but for the line break that ends the content on the wire.
    assert_eq!(
        received[0].data,
        [prepared.content.as_slice(), b"\r\n"].concat()
    );

    // Bad input fails as it would in a send, before any connection.
    let error = smtp_error(
        sendbox::prepare(
            &sandbox(),
            &envelope(
                "a@example.org",
                &["b@example.org\r\nRCPT TO:<x@example.org>"],
            ),
            b"Subject: x\r\n\r\nx\r\n".as_slice(),
            &SendOptions::default(),
        )
        .await
        .expect_err("an address with a line break is refused"),
    );
    assert_eq!(error.kind, ErrorKind::InvalidInput);
}

#[tokio::test]
async fn every_recipient_refused_sends_nothing_and_the_session_survives() {
    // Without AUTH: mailin wrongly asks for AUTH again after RSET.
    let server = loopback_with(ServerTls::StartTls, Vec::new(), vec!["nobody@example.org"]);
    let mailer = mailer(&server, TlsMode::Starttls, None).await;
    let mut session = mailer.open().await.expect("session opens");
    let error = smtp_error(
        session
            .send(
                &envelope("a@example.org", &["nobody@example.org"]),
                b"Subject: x\r\n\r\nx\r\n",
            )
            .await
            .expect_err("nobody accepted it"),
    );
    assert_eq!(
        (error.phase, error.kind, error.transient),
        (Phase::Rcpt, ErrorKind::Rejected, false)
    );
    assert_eq!(error.reply.expect("the server's reply").code, 550);
    assert!(server.received().is_empty(), "a message was delivered");

    session
        .send(
            &envelope("a@example.org", &["b@example.org"]),
            b"Subject: y\r\n\r\ny\r\n",
        )
        .await
        .expect("the session is still usable");
    session.close().await.expect("QUIT");
    assert_eq!(server.received().len(), 1);
}

#[tokio::test]
async fn wrong_password_is_an_auth_error_without_the_password_in_it() {
    let server = loopback(ServerTls::StartTls);
    let wrong = "not-the-password-4711";
    let transcript = TranscriptBuffer::new(64 * 1024);
    let mailer = mailer(&server, TlsMode::Starttls, Some(wrong))
        .await
        .with_transcript(Transcript::Capture(transcript.clone()));
    let error = mailer
        .send(
            &envelope("a@example.org", &["b@example.org"]),
            b"Subject: x\r\n\r\nx\r\n",
        )
        .await
        .expect_err("the password is wrong");
    let shown = format!("{error} {error:?} {}", transcript.contents());
    let error = smtp_error(error);
    assert_eq!(
        (error.phase, error.kind, error.transient),
        (Phase::Auth, ErrorKind::Auth, false)
    );
    assert_eq!(error.reply.expect("the server's reply").code, 535);
    assert!(!shown.contains(wrong), "the password leaked: {shown}");
    assert!(server.received().is_empty());
}

#[tokio::test]
async fn transcript_redacts_credentials() {
    let server = loopback(ServerTls::StartTls);
    let transcript = TranscriptBuffer::new(64 * 1024);
    let mailer = mailer(&server, TlsMode::Starttls, Some(PASSWORD))
        .await
        .with_transcript(Transcript::Capture(transcript.clone()));
    mailer
        .send(
            &envelope("a@example.org", &["b@example.org"]),
            b"Subject: x\r\n\r\nx\r\n",
        )
        .await
        .expect("delivered");
    let text = transcript.contents();
    assert!(text.contains("C: STARTTLS"), "{text}");
    assert!(
        text.contains("C: AUTH PLAIN <credentials redacted>"),
        "{text}"
    );
    assert!(text.contains("S: 235"), "{text}");
    // Neither the password nor its base64 forms may appear.
    use std::io::Write as _;
    let mut plain = Vec::new();
    write!(plain, "\0{USER}\0{PASSWORD}").unwrap();
    for secret in [
        PASSWORD.to_owned(),
        base64(&plain),
        base64(PASSWORD.as_bytes()),
    ] {
        assert!(!text.contains(&secret), "{secret:?} in transcript:\n{text}");
    }
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused_before_anything_is_sent() {
    let server = loopback(ServerTls::StartTls);
    let other_ca = loopback(ServerTls::StartTls);
    let mut config = server_config(&server, TlsMode::Starttls);
    config.ca_pem = Some(other_ca.ca_pem().to_owned());
    let mailer = Mailer::new(sandbox(), config, Some(credentials(PASSWORD)))
        .await
        .unwrap();
    let error = smtp_error(
        mailer
            .send(&envelope("a@example.org", &["b@example.org"]), b"x")
            .await
            .expect_err("the certificate is not trusted"),
    );
    assert_eq!((error.phase, error.kind), (Phase::Tls, ErrorKind::Tls));
    assert!(error.message.contains("certificate"), "{}", error.message);
    assert!(server.received().is_empty());
}

#[tokio::test]
async fn the_public_roots_do_not_trust_a_private_ca() {
    let server = loopback(ServerTls::Implicit);
    let mut config = server_config(&server, TlsMode::Implicit);
    config.ca_pem = None;
    let mailer = Mailer::new(sandbox(), config, None).await.unwrap();
    let error = smtp_error(
        mailer
            .send(&envelope("a@example.org", &["b@example.org"]), b"x")
            .await
            .expect_err("webpki-roots do not include the test CA"),
    );
    assert_eq!((error.phase, error.kind), (Phase::Tls, ErrorKind::Tls));
}

#[tokio::test]
async fn starttls_required_but_not_offered_stops_before_auth() {
    let server = loopback(ServerTls::None);
    let mailer = mailer(&server, TlsMode::Starttls, Some(PASSWORD)).await;
    let error = smtp_error(
        mailer
            .send(&envelope("a@example.org", &["b@example.org"]), b"x")
            .await
            .expect_err("no STARTTLS"),
    );
    assert_eq!((error.phase, error.kind), (Phase::Tls, ErrorKind::Tls));
    assert!(server.received().is_empty());
}

#[tokio::test]
async fn insecure_plaintext_sends_without_tls_and_refuses_credentials() {
    let server = loopback(ServerTls::None);
    let plain = mailer(&server, TlsMode::InsecurePlaintext, None).await;
    plain
        .send(
            &envelope("a@example.org", &["b@example.org"]),
            b"Subject: p\r\n\r\nplain\r\n",
        )
        .await
        .expect("delivered in plaintext");
    assert_eq!(server.received().len(), 1);

    let with_password = mailer(&server, TlsMode::InsecurePlaintext, Some(PASSWORD)).await;
    let before = server.connections();
    let error = smtp_error(
        with_password
            .send(&envelope("a@example.org", &["b@example.org"]), b"x")
            .await
            .expect_err("credentials without TLS"),
    );
    assert_eq!(error.kind, ErrorKind::InvalidInput);
    assert_eq!(server.connections(), before, "it connected anyway");
}

#[tokio::test]
async fn bad_addresses_are_refused_before_connecting() {
    let server = loopback(ServerTls::StartTls);
    let mailer = mailer(&server, TlsMode::Starttls, Some(PASSWORD)).await;
    let mut session = mailer.open().await.expect("session opens");
    let error = smtp_error(
        session
            .send(
                &envelope(
                    "a@example.org",
                    &["b@example.org>\r\nRCPT TO:<c@example.org"],
                ),
                b"x",
            )
            .await
            .expect_err("CRLF in an address"),
    );
    assert_eq!(error.kind, ErrorKind::InvalidInput);
    session.close().await.expect("the session is still fine");
    assert!(server.received().is_empty());
}

fn jobs(recipients: &[&str], count: usize) -> Vec<Job> {
    (0..count)
        .map(|i| Job {
            envelope: envelope("a@example.org", &[recipients[i % recipients.len()]]),
            message: format!("Subject: job {i}\r\n\r\nx\r\n").into_bytes().into(),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_spreads_messages_over_concurrent_sessions() {
    let server = loopback(ServerTls::StartTls);
    let mailer = Arc::new(mailer(&server, TlsMode::Starttls, Some(PASSWORD)).await);
    let reported = Arc::new(AtomicUsize::new(0));
    let counter = reported.clone();
    let options = Default::default();
    let summary = batch::send_all(
        mailer,
        jobs(&["b@example.org"], 20),
        3,
        options,
        move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
        },
    )
    .await;
    assert_eq!(
        (summary.sent, summary.partly_refused, summary.failed),
        (20, 0, 0),
        "{:?}",
        summary.failures
    );
    assert_eq!(reported.load(Ordering::SeqCst), 20);
    let mut subjects = subjects(&server);
    subjects.sort();
    subjects.dedup();
    assert_eq!(subjects.len(), 20, "every message exactly once");
    assert_eq!(server.connections(), 3, "one connection per session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_takes_its_jobs_as_sessions_are_ready_not_all_at_once() {
    // A batch of a million messages must not hold a million jobs: `sendbox batch` makes
    // them lazily, and `send_all` takes each only when a session is ready for it.
    let server = loopback(ServerTls::StartTls);
    let mailer = Arc::new(mailer(&server, TlsMode::Starttls, Some(PASSWORD)).await);
    let (taken, done, most_ahead) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let counter = taken.clone();
    let lazy = jobs(&["b@example.org"], 30).into_iter().inspect(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    let (seen_taken, seen_done, ahead) = (taken.clone(), done.clone(), most_ahead.clone());
    let summary = batch::send_all(mailer, lazy, 3, Default::default(), move |_| {
        let done = seen_done.fetch_add(1, Ordering::SeqCst) + 1;
        let taken = seen_taken.load(Ordering::SeqCst);
        ahead.fetch_max(taken.saturating_sub(done), Ordering::SeqCst);
    })
    .await;
    assert_eq!(summary.sent, 30, "{:?}", summary.failures);
    assert_eq!(taken.load(Ordering::SeqCst), 30);
    let ahead = most_ahead.load(Ordering::SeqCst);
    assert!(
        ahead < 3,
        "{ahead} jobs were taken beyond those done, with 3 sessions"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_message_does_not_cost_its_session() {
    // Without AUTH: mailin wrongly asks for AUTH again after RSET.
    let server = loopback_with(ServerTls::StartTls, Vec::new(), vec!["nobody@example.org"]);
    let mailer = Arc::new(mailer(&server, TlsMode::Starttls, None).await);
    let summary = batch::send_all(
        mailer,
        jobs(&["b@example.org", "nobody@example.org"], 10),
        2,
        Default::default(),
        |_| {},
    )
    .await;
    assert_eq!(
        (summary.sent, summary.failed),
        (5, 5),
        "{:?}",
        summary.failures
    );
    assert_eq!(server.received().len(), 5);
    assert_eq!(
        server.connections(),
        2,
        "a refused recipient reopened a session"
    );
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn the_embedding_example_sends_through_the_sandbox() {
    // `cargo test` builds the examples next to the test binaries' folder.
    let example = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("examples").join("send"))
        .unwrap();
    assert!(
        example.exists(),
        "{} was not built: `cargo test` of this package builds the examples",
        example.display()
    );
    let server = loopback(ServerTls::StartTls);
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, server.ca_pem()).unwrap();
    let port = server.port().to_string();
    let output = std::process::Command::new(&example)
        .args([
            "starttls",
            "127.0.0.1",
            &port,
            "alice@example.org",
            "bob@example.org",
        ])
        .arg(&ca)
        .env("SMTP_USER", USER)
        .env("SMTP_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert_exit(&output, 0, "the component may connect to: [127.0.0.1:");
    let subjects = subjects(&server);
    assert_eq!(subjects, ["Subject: one", "Subject: two", "Subject: three"]);
    assert_eq!(server.connections(), 2);
}
