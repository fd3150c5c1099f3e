//! Hostile and broken servers, scripted over real loopback sockets, against the real
//! component. Each test states a promise and fails if the promise breaks.

mod support;

use std::time::Duration;

use sendbox::mailer::{Dsn, DsnNotify, DsnReturn, ErrorKind, Phase, Timeouts};
use sendbox::{Delivery, Mailer, SendOptions, Server, TlsMode};
use sendbox_loopback::{ServerCert, TestPki};
use support::scripted::{EHLO_PLAIN, GREETING, ScriptedServer, Seen, Step, up_to_starttls};
use support::*;

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
async fn bad_certificates_are_refused_saying_what_to_do() {
    for (cert, expected) in [
        (
            ServerCert::WrongName,
            "certificate is for mail.example.net, not for ",
        ),
        (ServerCert::Expired, "certificate has expired"),
        (
            ServerCert::SelfSigned,
            "give its certificate with --ca FILE",
        ),
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
async fn implicit_tls_against_a_plain_greeting_says_to_use_starttls() {
    let script = vec![Step::Send(GREETING), Step::Silent];
    let (error, _) = run(script, TlsMode::Implicit, ServerCert::Valid, true)
        .await
        .error();
    assert_eq!((error.phase, error.kind), (Phase::Tls, ErrorKind::Tls));
    assert!(
        error.message.contains("did not answer in TLS") && error.message.contains("--tls starttls"),
        "{}",
        error.message
    );
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

/// Plays `script` and sends one message from a@example.org to `recipients` in plaintext,
/// with `timeouts` and the host's run-time cap `run_time`.
async fn send_plain(
    script: Vec<Step>,
    recipients: &[&str],
    timeouts: Timeouts,
    run_time: Duration,
) -> Run {
    let server = ScriptedServer::start(script, None);
    let mut config = Server::new("127.0.0.1", server.port(), TlsMode::InsecurePlaintext);
    config.timeouts = Some(timeouts);
    let limits = sendbox::Limits {
        run_time,
        ..sendbox::Limits::default()
    };
    let mailer = Mailer::new(sandbox(), config, None)
        .await
        .unwrap()
        .with_limits(limits);
    let message = format!("Subject: test\r\n\r\n{CONTENT}\r\n");
    let result = mailer
        .send(&envelope("a@example.org", recipients), message.as_bytes())
        .await;
    Run {
        result,
        seen: server.seen(),
    }
}

/// The usual limits of these tests: 5 s a stage, 20 s in all, a minute for the host.
fn usual_timeouts() -> Timeouts {
    Timeouts {
        total_ms: 20_000,
        ..Timeouts::every_stage(5_000)
    }
}

/// one@ is accepted, two@ is answered `refusal`; the server then takes the message for
/// one@, and two@ in a further transaction.
fn second_recipient_refused_with(refusal: &'static str) -> Vec<Step> {
    after_ehlo(vec![
        Step::Expect("MAIL FROM:<a@example.org>"),
        Step::Send("250 ok\r\n"),
        Step::Expect("RCPT TO:<one@example.org>"),
        Step::Send("250 ok\r\n"),
        Step::Expect("RCPT TO:<two@example.org>"),
        Step::Send(refusal),
        Step::Expect("DATA"),
        Step::Send("354 go\r\n"),
        Step::ExpectData,
        Step::Send("250 2.0.0 queued as FIRST\r\n"),
        Step::Expect("MAIL FROM:<a@example.org>"),
        Step::Send("250 ok\r\n"),
        Step::Expect("RCPT TO:<two@example.org>"),
        Step::Send("250 ok\r\n"),
        Step::Expect("DATA"),
        Step::Send("354 go\r\n"),
        Step::ExpectData,
        Step::Send("250 2.0.0 queued as SECOND\r\n"),
        Step::Expect("QUIT"),
        Step::Send("221 bye\r\n"),
    ])
}

/// A "too many recipients" refusal: the refused recipient gets the message in a further
/// transaction, and nobody is reported refused.
#[track_caller]
fn assert_delivered_in_two_transactions(run: Run) {
    let delivery = run.result.expect("delivered to both");
    assert_eq!(delivery.accepted, ["one@example.org", "two@example.org"]);
    assert!(delivery.refused.is_empty(), "{:?}", delivery.refused);
    assert_eq!(delivery.final_reply.text, "queued as SECOND");
    let earlier: Vec<&str> = delivery
        .earlier_replies
        .iter()
        .map(|r| r.text.as_str())
        .collect();
    assert_eq!(earlier, ["queued as FIRST"]);
    assert!(run.seen.stopped.is_none(), "{:?}", run.seen.stopped);
}

#[tokio::test]
async fn a_452_to_rcpt_sends_the_rest_in_a_further_transaction() {
    let script = second_recipient_refused_with("452 4.5.3 too many recipients\r\n");
    let run = send_plain(
        script,
        &["one@example.org", "two@example.org"],
        usual_timeouts(),
        Duration::from_secs(60),
    )
    .await;
    assert_delivered_in_two_transactions(run);
}

/// RFC 5321 section 4.5.3.1.10: RFC 821 gave "too many recipients" as 552, so a client
/// should treat a 552 to RCPT as the temporary failure 452 is.
#[tokio::test]
async fn a_552_to_rcpt_sends_the_rest_in_a_further_transaction() {
    let script = second_recipient_refused_with("552 5.5.3 too many recipients\r\n");
    let run = send_plain(
        script,
        &["one@example.org", "two@example.org"],
        usual_timeouts(),
        Duration::from_secs(60),
    )
    .await;
    assert_delivered_in_two_transactions(run);
}

#[tokio::test]
async fn a_552_to_every_rcpt_is_a_temporary_failure() {
    let script = after_ehlo(vec![
        Step::Expect("MAIL FROM"),
        Step::Send("250 ok\r\n"),
        Step::Expect("RCPT TO:<one@example.org>"),
        Step::Send("552 5.5.3 too many recipients\r\n"),
        Step::Expect("RSET"),
        Step::Send("250 ok\r\n"),
        Step::Expect("QUIT"),
        Step::Send("221 bye\r\n"),
    ]);
    let run = send_plain(
        script,
        &["one@example.org"],
        usual_timeouts(),
        Duration::from_secs(60),
    )
    .await;
    let (error, seen) = run.error();
    assert_eq!(
        (error.phase, error.kind, error.transient),
        (Phase::Rcpt, ErrorKind::Rejected, true)
    );
    assert_eq!(error.reply.expect("the server's reply").code, 552);
    assert!(!seen.all_text().contains("DATA"), "{}", seen.all_text());
    assert!(seen.stopped.is_none(), "{:?}", seen.stopped);
}

/// A server that greets after `greeting_delay`, then answers each of `count` RCPTs after
/// 400 ms: each reply well within a stage limit of seconds, all of them not.
fn slow_rcpts(greeting_delay: Duration, count: usize) -> (Vec<Step>, Vec<String>) {
    let mut script = vec![
        Step::Pause(greeting_delay),
        Step::Send(GREETING),
        Step::Expect("EHLO"),
        Step::Send(EHLO_PLAIN),
        Step::Expect("MAIL FROM"),
        Step::Send("250 ok\r\n"),
    ];
    for _ in 0..count {
        script.extend([
            Step::Expect("RCPT TO"),
            Step::Pause(Duration::from_millis(400)),
            Step::Send("250 ok\r\n"),
        ]);
    }
    script.push(Step::Silent);
    let recipients = (0..count).map(|i| format!("r{i}@example.org")).collect();
    (script, recipients)
}

#[tokio::test]
async fn the_overall_deadline_stops_a_server_slow_at_every_step() {
    let (script, recipients) = slow_rcpts(Duration::ZERO, 10);
    let recipients: Vec<&str> = recipients.iter().map(String::as_str).collect();
    sandbox(); // compiled before the clock starts
    let started = std::time::Instant::now();
    // Ten RCPTs take four seconds, each 400 ms of a 30 s stage limit; the call has 1.5 s,
    // and the host would wait a minute.
    let run = send_plain(
        script,
        &recipients,
        Timeouts {
            total_ms: 1_500,
            ..Timeouts::every_stage(30_000)
        },
        Duration::from_secs(60),
    )
    .await;
    let elapsed = started.elapsed();
    let (error, seen) = run.error();
    assert_eq!(
        (error.phase, error.kind, error.transient),
        (Phase::Rcpt, ErrorKind::Timeout, true)
    );
    assert!(
        error.message.contains("overall time limit of 1500 ms"),
        "{}",
        error.message
    );
    assert!(
        elapsed >= Duration::from_millis(1_400) && elapsed < Duration::from_secs(15),
        "stopped after {elapsed:?}, with 1.5 s for the call and 60 s for the host"
    );
    let rcpts = seen.all_text().matches("RCPT TO").count();
    assert!((1..10).contains(&rcpts), "{rcpts} RCPTs went out");
    assert!(!seen.all_text().contains("DATA"), "{}", seen.all_text());
}

/// `total-ms` bounds the whole `send` (wit/mail.wit), connecting and greeting included,
/// not the connection and then the transaction each.
#[tokio::test]
async fn the_overall_deadline_covers_the_greeting_and_the_transaction_together() {
    // The greeting comes after 2.5 s of the 3 s, then RCPTs take 400 ms each: the call
    // must end at 3 s, not at 2.5 + 3 s.
    let (script, recipients) = slow_rcpts(Duration::from_millis(2_500), 10);
    let recipients: Vec<&str> = recipients.iter().map(String::as_str).collect();
    sandbox();
    let started = std::time::Instant::now();
    let run = send_plain(
        script,
        &recipients,
        Timeouts {
            total_ms: 3_000,
            ..Timeouts::every_stage(30_000)
        },
        Duration::from_secs(60),
    )
    .await;
    let elapsed = started.elapsed();
    let (error, _) = run.error();
    assert_eq!((error.kind, error.transient), (ErrorKind::Timeout, true));
    assert!(
        elapsed < Duration::from_millis(4_500),
        "stopped after {elapsed:?} with a 3 s limit for the call"
    );
}

/// After a 452 split the message, the first transaction delivered it to one@; the
/// connection then breaks in the further one. Reporting the whole send as failed would
/// make a retry send one@ the message twice.
#[tokio::test]
async fn a_connection_lost_in_a_further_transaction_still_reports_the_first_delivery() {
    let script = after_ehlo(vec![
        Step::Expect("MAIL FROM:<a@example.org>"),
        Step::Send("250 ok\r\n"),
        Step::Expect("RCPT TO:<one@example.org>"),
        Step::Send("250 ok\r\n"),
        Step::Expect("RCPT TO:<two@example.org>"),
        Step::Send("452 4.5.3 too many recipients\r\n"),
        Step::Expect("DATA"),
        Step::Send("354 go\r\n"),
        Step::ExpectData,
        Step::Send("250 2.0.0 queued as FIRST\r\n"),
        Step::Expect("MAIL FROM:<a@example.org>"),
        Step::Close,
    ]);
    let run = send_plain(
        script,
        &["one@example.org", "two@example.org"],
        usual_timeouts(),
        Duration::from_secs(60),
    )
    .await;
    let delivery = run
        .result
        .expect("one@ got the message: that is a delivery");
    assert_eq!(delivery.accepted, ["one@example.org"]);
    let refused: Vec<&str> = delivery
        .refused
        .iter()
        .map(|r| r.address.as_str())
        .collect();
    assert_eq!(refused, ["two@example.org"]);
    assert_eq!(delivery.final_reply.text, "queued as FIRST");
}

// The length limits of RFC 5321 section 4.5.3.1 (local part 64 octets, domain 255, path
// 256 with its angle brackets, command line 512), through the library against a scripted
// server: an address over a limit is refused as `invalid-input` before anything is sent
// for its message, and an address exactly at the limits goes out whole.

/// EHLO for the length-limit tests: DSN, so that MAIL and RCPT can carry its parameters.
const EHLO_DSN: &str = "250-limits.test\r\n250-DSN\r\n250-SIZE 10000000\r\n250 8BITMIME\r\n";
/// The message of the length-limit tests.
/// Its header is complete, so that it goes out exactly as it is.
const MESSAGE: &[u8] = b"From: a@example.org\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n\
Message-ID: <limits@example.org>\r\nSubject: limits\r\n\r\nbody\r\n";

/// A domain of `len` octets: labels of `letter`, 63 octets at most, joined by dots.
fn domain(len: usize, letter: char) -> String {
    let mut domain: String = (0..len)
        .map(|i| if i % 64 == 63 { '.' } else { letter })
        .collect();
    if domain.ends_with('.') {
        domain.pop();
        domain.push(letter);
    }
    assert_eq!(domain.len(), len);
    domain
}

/// `local@domain` with a local part of `local` octets and `total` octets in all.
fn address(local: usize, total: usize, letter: char) -> String {
    let address = format!(
        "{}@{}",
        "l".repeat(local),
        domain(total - local - 1, letter)
    );
    assert_eq!(address.len(), total);
    address
}

/// The scripted server's steps take `&'static str`; these tests make their lines at run time.
fn leak(text: String) -> &'static str {
    text.leak()
}

/// The lines the client sent.
fn lines(seen: &Seen) -> Vec<String> {
    seen.all_text().lines().map(str::to_owned).collect()
}

/// A mailer for `server` in plaintext, with limits that end a broken test quickly.
async fn mailer_for(server: &ScriptedServer) -> Mailer {
    let mut config = Server::new("127.0.0.1", server.port(), TlsMode::InsecurePlaintext);
    config.timeouts = Some(Timeouts {
        total_ms: 20_000,
        ..Timeouts::every_stage(5_000)
    });
    Mailer::new(sandbox(), config, None).await.unwrap()
}

/// Greeting and EHLO, then `then`, then QUIT.
fn session_script(then: Vec<Step>) -> Vec<Step> {
    let mut script = vec![
        Step::Send(GREETING),
        Step::Expect("EHLO"),
        Step::Send(EHLO_DSN),
    ];
    script.extend(then);
    script.extend([Step::Expect("QUIT"), Step::Send("221 bye\r\n")]);
    script
}

/// One accepted transaction from `sender` to `recipients`.
fn transaction(sender: &str, recipients: &[&str]) -> Vec<Step> {
    let mut steps = vec![
        Step::Expect(leak(format!("MAIL FROM:<{sender}>"))),
        Step::Send("250 ok\r\n"),
    ];
    for recipient in recipients {
        steps.extend([
            Step::Expect(leak(format!("RCPT TO:<{recipient}>"))),
            Step::Send("250 ok\r\n"),
        ]);
    }
    steps.extend([
        Step::Expect("DATA"),
        Step::Send("354 go\r\n"),
        Step::ExpectData,
        Step::Send("250 2.0.0 queued\r\n"),
    ]);
    steps
}

#[tokio::test]
async fn addresses_over_the_limits_are_refused_before_anything_is_sent() {
    let long_local = address(65, 77, 'x'); // 65-octet local part
    let long_domain = format!("a@{}", domain(256, 'y')); // 256-octet domain
    let long_path = address(64, 255, 'z'); // 257 octets with its angle brackets
    let ok = "ok@example.org";
    let cases: Vec<(String, Vec<String>, Phase, &str)> = vec![
        (
            long_local.clone(),
            vec![ok.into()],
            Phase::Mail,
            "local part longer than 64",
        ),
        (
            "a@example.org".into(),
            vec![long_local.clone()],
            Phase::Rcpt,
            "local part longer than 64",
        ),
        (
            long_domain.clone(),
            vec![ok.into()],
            Phase::Mail,
            "domain longer than 255",
        ),
        (
            "a@example.org".into(),
            vec![long_domain.clone()],
            Phase::Rcpt,
            "domain longer than 255",
        ),
        (
            long_path.clone(),
            vec![ok.into()],
            Phase::Mail,
            "longer than 256 octets",
        ),
        (
            "a@example.org".into(),
            vec![long_path.clone()],
            Phase::Rcpt,
            "longer than 256 octets",
        ),
        // One bad recipient among good ones: the whole message is refused, MAIL included.
        (
            "a@example.org".into(),
            vec![ok.into(), long_path.clone()],
            Phase::Rcpt,
            "longer than 256 octets",
        ),
    ];
    // Right after EHLO the server expects the one good message: anything sent for the
    // refused ones would break the script.
    let server =
        ScriptedServer::start(session_script(transaction("good@example.org", &[ok])), None);
    let mailer = mailer_for(&server).await;
    // `send` checks before it connects; the one connection must be the session's.
    for (sender, recipients, phase, why) in &cases {
        let error = smtp_error(
            mailer
                .send(&sendbox::Envelope::new(sender, recipients.clone()), MESSAGE)
                .await
                .expect_err("over a limit"),
        );
        assert_eq!((error.phase, error.kind), (*phase, ErrorKind::InvalidInput));
        assert!(
            error.message.contains(why),
            "{why:?} not in {}",
            error.message
        );
    }
    let mut session = mailer.open().await.expect("the session opens");
    for (sender, recipients, phase, why) in &cases {
        let error = smtp_error(
            session
                .send(&sendbox::Envelope::new(sender, recipients.clone()), MESSAGE)
                .await
                .expect_err("over a limit"),
        );
        assert_eq!((error.phase, error.kind), (*phase, ErrorKind::InvalidInput));
        assert!(
            error.message.contains(why),
            "{why:?} not in {}",
            error.message
        );
    }
    session
        .send(&envelope("good@example.org", &[ok]), MESSAGE)
        .await
        .expect("the session still sends");
    session.close().await.expect("QUIT");
    let seen = server.seen();
    assert!(seen.stopped.is_none(), "{:?}", seen.stopped);
    for bad in [&long_local, &long_domain, &long_path] {
        assert!(!seen.all_text().contains(bad.as_str()), "{bad} was sent");
    }
    assert_eq!(seen.all_text().matches("MAIL FROM").count(), 1);
}

#[tokio::test]
async fn addresses_exactly_at_the_limits_go_out_whole() {
    let sender = address(64, 254, 's'); // 64-octet local part, 256-octet path
    let first = address(64, 254, 'f');
    let second = format!("a@{}", domain(252, 'g')); // the longest domain a path allows
    let envid = "e".repeat(100); // the longest ENVID (RFC 3461 section 4.4)
    let dsn = SendOptions {
        dsn: Some(Dsn {
            notify: Some(DsnNotify::SUCCESS | DsnNotify::FAILURE | DsnNotify::DELAY),
            ret: Some(DsnReturn::Headers),
            envid: Some(envid.clone()),
            original_recipients: true,
        }),
        require_tls: false,
        keep_raw_header: false,
        dkim: None,
    };
    let mut steps = transaction(&sender, &[&first, &second]);
    steps.extend(transaction(&sender, &[&first]));
    let server = ScriptedServer::start(session_script(steps), None);
    let mailer = mailer_for(&server).await;
    let mut session = mailer.open().await.expect("the session opens");
    let delivery = session
        .send(&envelope(&sender, &[&first, &second]), MESSAGE)
        .await
        .expect("delivered");
    assert_eq!(delivery.accepted, [first.clone(), second.clone()]);
    // With DSN the MAIL and RCPT lines carry their longest parameters too.
    session
        .send_with(&envelope(&sender, &[&first]), MESSAGE, &dsn)
        .await
        .expect("delivered with DSN");
    session.close().await.expect("QUIT");
    let seen = server.seen();
    assert!(seen.stopped.is_none(), "{:?}", seen.stopped);

    let size = MESSAGE.len() + ".\r\n".len(); // SIZE counts the final dot line
    let mail = format!("MAIL FROM:<{sender}> SIZE={size}");
    let mail_dsn = format!("{mail} RET=HDRS ENVID={envid}");
    let rcpt_dsn = format!("RCPT TO:<{first}> NOTIFY=SUCCESS,FAILURE,DELAY ORCPT=rfc822;{first}");
    let sent = lines(&seen);
    let envelope_lines: Vec<&str> = sent
        .iter()
        .map(String::as_str)
        .filter(|l| l.starts_with("MAIL ") || l.starts_with("RCPT "))
        .collect();
    assert_eq!(
        envelope_lines,
        [
            mail.as_str(),
            &format!("RCPT TO:<{first}>"),
            &format!("RCPT TO:<{second}>"),
            mail_dsn.as_str(),
            rcpt_dsn.as_str(),
        ]
    );
    // RFC 5321 section 4.5.3.1.4 allows 512 octets with CRLF, and RFC 3461 section 4
    // 500 more for NOTIFY and ORCPT: the longest path with both goes past 512.
    assert!(mail_dsn.len() + 2 <= 512, "{}", mail_dsn.len());
    assert_eq!(rcpt_dsn.len() + 2, 563);
}

/// With a local part of `+` and a domain of `=` (no domain syntax check stops it), each
/// octet of ORCPT's address becomes three in xtext: the RCPT line reaches 1 069 octets,
/// over even the 512 + 500 that DSN allows (RFC 5321 section 4.5.3.1.4, RFC 3461 section 4).
#[tokio::test]
async fn an_rcpt_line_over_the_limit_is_refused_before_anything_is_sent() {
    let recipient = format!("{}@{}", "+".repeat(64), "=".repeat(189));
    assert_eq!(recipient.len(), 254);
    let dsn = SendOptions {
        dsn: Some(Dsn {
            notify: Some(DsnNotify::SUCCESS | DsnNotify::FAILURE | DsnNotify::DELAY),
            ret: None,
            envid: None,
            original_recipients: true,
        }),
        require_tls: false,
        keep_raw_header: false,
        dkim: None,
    };
    let server = ScriptedServer::start(
        session_script(transaction("good@example.org", &["ok@example.org"])),
        None,
    );
    let mailer = mailer_for(&server).await;
    let mut session = mailer.open().await.expect("the session opens");
    let error = smtp_error(
        session
            .send_with(&envelope("bad@example.org", &[&recipient]), MESSAGE, &dsn)
            .await
            .expect_err("the RCPT line is too long"),
    );
    assert_eq!(
        (error.phase, error.kind),
        (Phase::Rcpt, ErrorKind::InvalidInput)
    );
    session
        .send(&envelope("good@example.org", &["ok@example.org"]), MESSAGE)
        .await
        .expect("the session still sends");
    session.close().await.expect("QUIT");
    let seen = server.seen();
    assert!(seen.stopped.is_none(), "{:?}", seen.stopped);
    assert!(!seen.all_text().contains("bad@example.org"));
}

/// After the server refuses a message's content (a 554 after the final dot, which ends the
/// transaction), the dialogue is still ready, and the component says so (`is-open`): a batch sends the
/// next message over the same connection instead of opening another, which this
/// one-connection server would never answer.
#[tokio::test]
async fn a_batch_keeps_its_session_after_the_content_is_refused() {
    let mut steps = vec![
        Step::Expect("MAIL FROM:<a@example.org>"),
        Step::Send("250 ok\r\n"),
        Step::Expect("RCPT TO:<b@example.org>"),
        Step::Send("250 ok\r\n"),
        Step::Expect("DATA"),
        Step::Send("354 go\r\n"),
        Step::ExpectData,
        Step::Send("554 5.7.1 content refused\r\n"),
    ];
    steps.extend(transaction("a@example.org", &["b@example.org"]));
    let server = ScriptedServer::start(session_script(steps), None);
    let mailer = std::sync::Arc::new(mailer_for(&server).await);
    let jobs = (0..2)
        .map(|_| sendbox::batch::Job {
            envelope: envelope("a@example.org", &["b@example.org"]),
            message: std::sync::Arc::from(MESSAGE),
        })
        .collect::<Vec<_>>();
    let summary = sendbox::batch::send_all(mailer, jobs, 1, Default::default(), |_| {}).await;
    let seen = server.seen();
    assert!(seen.stopped.is_none(), "{:?}", seen.stopped);
    assert_eq!(
        (summary.sent, summary.failed),
        (1, 1),
        "{:?}",
        summary.failures
    );
    assert!(
        summary.failures[0].1.contains("554 5.7.1"),
        "{:?}",
        summary.failures
    );
}

/// A call the host stopped at its run-time limit leaves the instance mid-call: the session
/// says at once that it cannot carry another message, without entering the instance again.
#[tokio::test]
async fn a_session_stopped_at_its_run_time_limit_is_no_longer_open() {
    let server = ScriptedServer::start(
        session_script(vec![
            Step::Expect("MAIL FROM:<a@example.org>"),
            Step::Silent,
        ]),
        None,
    );
    let limits = sendbox::Limits {
        run_time: Duration::from_secs(1),
        ..sendbox::Limits::default()
    };
    let mailer = mailer_for(&server).await.with_limits(limits);
    let mut session = mailer.open().await.expect("greeted");
    let error = session
        .send(&envelope("a@example.org", &["b@example.org"]), MESSAGE)
        .await
        .expect_err("stopped");
    assert!(matches!(error, sendbox::Error::RunTime(_)), "{error:?}");
    let asked = std::time::Instant::now();
    assert!(!session.is_open().await);
    assert!(
        asked.elapsed() < Duration::from_millis(500),
        "is_open took {:?}",
        asked.elapsed()
    );
}
