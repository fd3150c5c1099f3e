//! Hostile and broken servers, scripted over real loopback sockets, against the real
//! component. Each test states a promise and fails if the promise breaks.

mod support;

use std::time::Duration;

use sendbox::loopback::{ServerCert, TestPki};
use sendbox::mailer::{ErrorKind, Phase, Timeouts};
use sendbox::{Delivery, Mailer, Server, TlsMode};
use support::scripted::{ScriptedServer, Seen, Step};
use support::*;

const GREETING: &str = "220 hostile.test ESMTP\r\n";
const EHLO_STARTTLS: &str = "250-hostile.test\r\n250-STARTTLS\r\n250 8BITMIME\r\n";
const EHLO_PLAIN: &str = "250-hostile.test\r\n250 8BITMIME\r\n";
/// A marker in every test message, to check whether content crossed the wire.
const CONTENT: &str = "the-secret-message-content";

struct Run {
    result: Result<Delivery, sendbox::Error>,
    seen: Seen,
}

impl Run {
    #[track_caller]
    fn error(self) -> (sendbox::SendError, Seen) {
        match self.result {
            Ok(delivery) => panic!("expected a failure, got {delivery:?}"),
            Err(error) => (smtp_error(error), self.seen),
        }
    }
}

/// Plays `script` and sends one message to it through the component.
async fn run(script: Vec<Step>, tls: TlsMode, cert: ServerCert, with_credentials: bool) -> Run {
    let pki = TestPki::generate_with(cert).unwrap();
    let server = ScriptedServer::start(script, Some(pki.server_config()));
    let mut config = Server::new("127.0.0.1", server.port(), tls);
    config.ca_pem = Some(pki.ca_pem.clone());
    config.timeouts = Some(Timeouts {
        total_ms: 20_000,
        ..Timeouts::every_stage(5_000)
    });
    let mailer = Mailer::new(
        sandbox(),
        config,
        with_credentials.then(|| credentials(PASSWORD)),
    )
    .await
    .unwrap();
    let message = format!("Subject: test\r\n\r\n{CONTENT}\r\n");
    let result = mailer
        .send(
            &envelope("a@example.org", &["b@example.org"]),
            message.as_bytes(),
        )
        .await;
    Run {
        result,
        seen: server.seen(),
    }
}

/// Greeting, EHLO, STARTTLS sent: the script continues with the server's answer to STARTTLS.
fn up_to_starttls(answer: &'static str) -> Vec<Step> {
    vec![
        Step::Send(GREETING),
        Step::Expect("EHLO"),
        Step::Send(EHLO_STARTTLS),
        Step::Expect("STARTTLS"),
        Step::Send(answer),
        Step::Silent,
    ]
}

/// No credential, command or content went over plaintext beyond EHLO and STARTTLS.
#[track_caller]
fn assert_nothing_sensitive_in_plaintext(seen: &Seen) {
    let plain = seen.plaintext_text();
    for line in plain.lines() {
        assert!(
            line.starts_with("EHLO ") || line == "STARTTLS",
            "sent in plaintext: {line:?} (all: {plain:?})"
        );
    }
    assert!(
        seen.encrypted.is_empty(),
        "TLS was never set up, yet: {:?}",
        seen.encrypted
    );
}

#[tokio::test]
async fn starttls_not_advertised_stops_before_auth() {
    let script = vec![
        Step::Send(GREETING),
        Step::Expect("EHLO"),
        Step::Send("250-hostile.test\r\n250 AUTH PLAIN LOGIN\r\n"),
        Step::Silent,
    ];
    let (error, seen) = run(script, TlsMode::Starttls, ServerCert::Valid, true)
        .await
        .error();
    assert_eq!((error.phase, error.kind), (Phase::Tls, ErrorKind::Tls));
    assert!(
        error.message.contains("does not offer STARTTLS"),
        "{}",
        error.message
    );
    assert_nothing_sensitive_in_plaintext(&seen);
}

#[tokio::test]
async fn starttls_refused_stops_before_auth() {
    for answer in [
        "454 4.7.0 TLS not available\r\n",
        "502 5.5.1 no\r\n",
        "250 sure, no TLS though\r\n",
        "530 must auth\r\n",
    ] {
        let (error, seen) = run(
            up_to_starttls(answer),
            TlsMode::Starttls,
            ServerCert::Valid,
            true,
        )
        .await
        .error();
        assert_eq!(
            (error.phase, error.kind),
            (Phase::Tls, ErrorKind::Tls),
            "{answer:?}"
        );
        assert_nothing_sensitive_in_plaintext(&seen);
    }
}

#[tokio::test]
async fn ehlo_refused_does_not_fall_back_to_helo() {
    let script = vec![
        Step::Send(GREETING),
        Step::Expect("EHLO"),
        Step::Send("502 5.5.2 what?\r\n"),
        Step::Silent,
    ];
    let (error, seen) = run(script, TlsMode::Starttls, ServerCert::Valid, true)
        .await
        .error();
    assert_eq!((error.phase, error.kind), (Phase::Tls, ErrorKind::Tls));
    assert!(
        !seen.plaintext_text().contains("HELO"),
        "{}",
        seen.plaintext_text()
    );
    assert_nothing_sensitive_in_plaintext(&seen);
}

#[tokio::test]
async fn bytes_injected_after_the_starttls_reply_abort_the_session() {
    let forged = "220 2.0.0 go ahead\r\n250-hostile.test\r\n250 AUTH PLAIN\r\n";
    let (error, seen) = run(
        up_to_starttls(forged),
        TlsMode::Starttls,
        ServerCert::Valid,
        true,
    )
    .await
    .error();
    assert_eq!((error.phase, error.kind), (Phase::Tls, ErrorKind::Protocol));
    assert!(
        error.message.contains("after its STARTTLS reply"),
        "{}",
        error.message
    );
    assert_nothing_sensitive_in_plaintext(&seen);
}

#[tokio::test]
async fn only_capabilities_read_over_tls_count() {
    // Before TLS the server offers AUTH PLAIN; over TLS it offers no AUTH at all.
    let script = vec![
        Step::Send(GREETING),
        Step::Expect("EHLO"),
        Step::Send("250-hostile.test\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n"),
        Step::Expect("STARTTLS"),
        Step::Send("220 go\r\n"),
        Step::Tls,
        Step::Expect("EHLO"),
        Step::Send(EHLO_PLAIN),
        Step::Silent,
    ];
    let (error, seen) = run(script, TlsMode::Starttls, ServerCert::Valid, true)
        .await
        .error();
    assert_eq!((error.phase, error.kind), (Phase::Auth, ErrorKind::Auth));
    assert!(!seen.all_text().contains("AUTH"), "{}", seen.all_text());
}

#[tokio::test]
async fn bad_certificates_are_refused() {
    for (cert, expected) in [
        (ServerCert::WrongName, "not valid for name"),
        (ServerCert::Expired, "certificate expired"),
        (ServerCert::SelfSigned, "UnknownIssuer"),
    ] {
        let script = vec![Step::Tls, Step::Send(GREETING), Step::Silent];
        let (error, seen) = run(script, TlsMode::Implicit, cert, true).await.error();
        assert_eq!(
            (error.phase, error.kind),
            (Phase::Tls, ErrorKind::Tls),
            "{cert:?}"
        );
        assert!(
            error.message.contains(expected),
            "{cert:?}: {}",
            error.message
        );
        assert!(
            seen.encrypted.is_empty(),
            "{cert:?}: sent {:?}",
            seen.encrypted
        );
    }
}

#[tokio::test]
async fn bad_greetings_fail_cleanly() {
    let cases: Vec<(Vec<Step>, ErrorKind, bool)> = vec![
        (
            vec![Step::Send("421 4.3.2 busy, come back later\r\n")],
            ErrorKind::Rejected,
            true,
        ),
        (
            vec![Step::Send("554 5.7.1 go away\r\n")],
            ErrorKind::Rejected,
            false,
        ),
        (
            vec![Step::Send("HTTP/1.1 400 Bad Request\r\n")],
            ErrorKind::Protocol,
            false,
        ),
        (
            vec![Step::Send("220-first\r\n250 second\r\n")],
            ErrorKind::Protocol,
            false,
        ),
        (
            vec![Step::Send("620 out of range\r\n")],
            ErrorKind::Protocol,
            false,
        ),
        (
            vec![Step::Send("220 cut in the mid"), Step::Close],
            ErrorKind::Network,
            true,
        ),
        (vec![Step::Close], ErrorKind::Network, true),
    ];
    for (script, kind, transient) in cases {
        let described = format!("{script:?}");
        let mut script = script;
        script.push(Step::Silent);
        let (error, _) = run(script, TlsMode::InsecurePlaintext, ServerCert::Valid, false)
            .await
            .error();
        assert_eq!(
            (error.phase, error.kind, error.transient),
            (Phase::Greeting, kind, transient),
            "{described}"
        );
    }
}

#[tokio::test]
async fn endless_replies_are_cut_off_with_bounded_memory() {
    for line in [
        "220-and more\r\n",
        "220 xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    ] {
        let script = vec![Step::Flood {
            line,
            total: 8 << 20,
        }];
        let (error, _) = run(script, TlsMode::InsecurePlaintext, ServerCert::Valid, false)
            .await
            .error();
        assert_eq!(
            (error.phase, error.kind),
            (Phase::Greeting, ErrorKind::Protocol),
            "{line:?}"
        );
    }
}

#[tokio::test]
async fn a_reply_trickled_byte_by_byte_still_works() {
    let script = vec![
        Step::Trickle(GREETING),
        Step::Expect("EHLO"),
        Step::Trickle("250-hostile.test\r\n250-8BITMIME\r\n250 SIZE 100000\r\n"),
        Step::Expect("MAIL FROM:<a@example.org>"),
        Step::Trickle("250 2.1.0 ok\r\n"),
        Step::Expect("RCPT TO:<b@example.org>"),
        Step::Trickle("250 2.1.5 ok\r\n"),
        Step::Expect("DATA"),
        Step::Trickle("354 go\r\n"),
        Step::ExpectData,
        Step::Trickle("250 2.0.0 queued as TRICKLE\r\n"),
        Step::Expect("QUIT"),
        Step::Send("221 bye\r\n"),
    ];
    let run = run(script, TlsMode::InsecurePlaintext, ServerCert::Valid, false).await;
    let delivery = run.result.expect("delivered");
    assert_eq!(delivery.final_reply.text, "queued as TRICKLE");
    assert!(run.seen.stopped.is_none(), "{:?}", run.seen.stopped);
}

/// Greeting and EHLO (no extensions that matter) done; the script continues with `then`.
fn after_ehlo(then: Vec<Step>) -> Vec<Step> {
    let mut script = vec![
        Step::Send(GREETING),
        Step::Expect("EHLO"),
        Step::Send(EHLO_PLAIN),
    ];
    script.extend(then);
    script
}

/// MAIL and RCPT accepted, DATA sent: the script continues with the answer to DATA.
fn up_to_data(then: Vec<Step>) -> Vec<Step> {
    let mut script = vec![
        Step::Expect("MAIL FROM"),
        Step::Send("250 ok\r\n"),
        Step::Expect("RCPT TO"),
        Step::Send("250 ok\r\n"),
        Step::Expect("DATA"),
    ];
    script.extend(then);
    after_ehlo(script)
}

#[tokio::test]
async fn data_answered_with_250_sends_no_content() {
    let script = up_to_data(vec![Step::Send("250 ok\r\n"), Step::Silent]);
    let (error, seen) = run(script, TlsMode::InsecurePlaintext, ServerCert::Valid, false)
        .await
        .error();
    assert_eq!(
        (error.phase, error.kind),
        (Phase::Data, ErrorKind::Protocol)
    );
    assert!(
        !seen.all_text().contains(CONTENT),
        "content was sent: {}",
        seen.all_text()
    );
}

#[tokio::test]
async fn a_connection_cut_around_the_final_dot_is_never_a_delivery() {
    let cuts = [
        vec![Step::Close], // before 354
        vec![
            Step::Send("354 go\r\n"),
            Step::Expect("Subject"),
            Step::Close,
        ], // during the content
        vec![Step::Send("354 go\r\n"), Step::ExpectData, Step::Close], // after the dot, no reply
        vec![
            Step::Send("354 go\r\n"),
            Step::ExpectData,
            Step::Send("25"),
            Step::Close,
        ], // half a reply
    ];
    for cut in cuts {
        let described = format!("{cut:?}");
        let (error, _) = run(
            up_to_data(cut),
            TlsMode::InsecurePlaintext,
            ServerCert::Valid,
            false,
        )
        .await
        .error();
        assert_eq!(error.phase, Phase::Data, "{described}");
        assert!(
            error.transient,
            "{described}: a lost connection is worth a retry"
        );
    }
}

#[tokio::test]
async fn a_refusal_after_the_final_dot_is_not_a_delivery() {
    let script = up_to_data(vec![
        Step::Send("354 go\r\n"),
        Step::ExpectData,
        Step::Send("554 5.7.1 message refused\r\n"),
        Step::Silent,
    ]);
    let (error, _) = run(script, TlsMode::InsecurePlaintext, ServerCert::Valid, false)
        .await
        .error();
    assert_eq!(
        (error.phase, error.kind, error.transient),
        (Phase::Data, ErrorKind::Rejected, false)
    );
    let reply = error.reply.expect("the server's reply");
    assert_eq!(reply.code, 554);
}

#[tokio::test]
async fn service_closing_at_mail_is_transient() {
    let script = after_ehlo(vec![
        Step::Expect("MAIL FROM"),
        Step::Send("421 4.3.2 shutting down\r\n"),
        Step::Silent,
    ]);
    let (error, _) = run(script, TlsMode::InsecurePlaintext, ServerCert::Valid, false)
        .await
        .error();
    assert_eq!(
        (error.phase, error.kind, error.transient),
        (Phase::Mail, ErrorKind::Rejected, true)
    );
}

#[tokio::test]
async fn every_recipient_refused_means_no_data() {
    for (refusal, transient) in [
        ("550 5.1.1 no such user\r\n", false),
        ("452 4.5.3 too many recipients\r\n", true),
    ] {
        let script = after_ehlo(vec![
            Step::Expect("MAIL FROM"),
            Step::Send("250 ok\r\n"),
            Step::Expect("RCPT TO"),
            Step::Send(refusal),
            Step::Expect("RSET"),
            Step::Send("250 ok\r\n"),
            Step::Silent,
        ]);
        let (error, seen) = run(script, TlsMode::InsecurePlaintext, ServerCert::Valid, false)
            .await
            .error();
        assert_eq!(
            (error.phase, error.kind, error.transient),
            (Phase::Rcpt, ErrorKind::Rejected, transient)
        );
        assert!(!seen.all_text().contains("DATA"), "{}", seen.all_text());
    }
}

#[tokio::test]
async fn a_silent_server_hits_the_stage_timeout() {
    let script = vec![
        Step::Send(GREETING),
        Step::Expect("EHLO"),
        Step::Pause(Duration::from_secs(8)),
    ];
    let (error, _) = run(script, TlsMode::InsecurePlaintext, ServerCert::Valid, false)
        .await
        .error();
    assert_eq!(
        (error.phase, error.kind, error.transient),
        (Phase::Ehlo, ErrorKind::Timeout, true)
    );
}
