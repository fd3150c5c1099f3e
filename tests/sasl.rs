//! SASL exchanges checked byte for byte: OAUTHBEARER (RFC 7628) and XOAUTH2 with a bearer
//! token, which no server in reach implements, and CRAM-MD5 with RFC 2195's example. A
//! scripted server over real loopback TLS plays the server; the test reads what the
//! component sent. (SCRAM-SHA-256, PLAIN, LOGIN and CRAM-MD5 also run against Postfix.)

mod support;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sendbox::mailer::{AuthMechanism, ErrorKind, Phase};
use sendbox::{Credentials, Delivery, Mailer, Server, TlsMode};
use sendbox_loopback::{ServerCert, TestPki};
use support::scripted::{ScriptedServer, Seen, Step};
use support::*;

const TOKEN: &str = "ya29.the-bearer-token-under-test";
const GREETING: &str = "220 oauth.test ESMTP\r\n";

/// A whole transaction after a successful AUTH.
fn transaction_after_auth() -> Vec<Step> {
    vec![
        Step::Send("235 2.7.0 accepted\r\n"),
        Step::Expect("MAIL FROM:<a@example.org>"),
        Step::Send("250 2.1.0 ok\r\n"),
        Step::Expect("RCPT TO:<b@example.org>"),
        Step::Send("250 2.1.5 ok\r\n"),
        Step::Expect("DATA"),
        Step::Send("354 go\r\n"),
        Step::ExpectData,
        Step::Send("250 2.0.0 queued\r\n"),
        Step::Expect("QUIT"),
        Step::Send("221 bye\r\n"),
    ]
}

/// Implicit TLS, greeting, EHLO offering `auth`, then `rest`.
fn script(ehlo: &'static str, rest: Vec<Step>) -> Vec<Step> {
    let mut script = vec![
        Step::Tls,
        Step::Send(GREETING),
        Step::Expect("EHLO"),
        Step::Send(ehlo),
    ];
    script.extend(rest);
    script
}

async fn run(
    script: Vec<Step>,
    credentials: Credentials,
) -> (Result<Delivery, sendbox::Error>, Seen, u16) {
    let pki = TestPki::generate_with(ServerCert::Valid).unwrap();
    let server = ScriptedServer::start(script, Some(pki.server_config()));
    let port = server.port();
    let mut config = Server::new("127.0.0.1", port, TlsMode::Implicit);
    config.ca_pem = Some(pki.ca_pem.clone());
    let mailer = Mailer::new(sandbox(), config, Some(credentials))
        .await
        .unwrap();
    let result = mailer
        .send(
            &envelope("a@example.org", &["b@example.org"]),
            b"Subject: t\r\n\r\nhi\r\n",
        )
        .await;
    (result, server.seen(), port)
}

/// The decoded initial response of the `AUTH <mechanism>` line the client sent.
fn initial_response(seen: &Seen, mechanism: &str) -> String {
    let sent = String::from_utf8_lossy(&seen.encrypted).into_owned();
    let prefix = format!("AUTH {mechanism} ");
    let line = sent
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line in {sent:?}"));
    String::from_utf8(BASE64.decode(line).unwrap()).unwrap()
}

#[tokio::test]
async fn oauthbearer_is_preferred_for_a_token_and_carries_host_and_port() {
    let mut steps = vec![Step::Expect("AUTH OAUTHBEARER ")];
    steps.extend(transaction_after_auth());
    let (result, seen, port) = run(
        script(
            "250-oauth.test\r\n250 AUTH PLAIN XOAUTH2 OAUTHBEARER\r\n",
            steps,
        ),
        Credentials::bearer_token(USER, TOKEN),
    )
    .await;
    let delivery = result.expect("delivered");
    assert_eq!(delivery.final_reply.code, 250);
    assert_eq!(
        initial_response(&seen, "OAUTHBEARER"),
        format!("n,a={USER},\x01host=127.0.0.1\x01port={port}\x01auth=Bearer {TOKEN}\x01\x01")
    );
    assert!(
        seen.plaintext.is_empty(),
        "bytes before TLS: {:?}",
        seen.plaintext
    );
}

#[tokio::test]
async fn xoauth2_when_it_is_the_only_token_mechanism() {
    let mut steps = vec![Step::Expect("AUTH XOAUTH2 ")];
    steps.extend(transaction_after_auth());
    let (result, seen, _) = run(
        script("250-oauth.test\r\n250 AUTH LOGIN XOAUTH2\r\n", steps),
        Credentials::bearer_token(USER, TOKEN),
    )
    .await;
    result.expect("delivered");
    assert_eq!(
        initial_response(&seen, "XOAUTH2"),
        format!("user={USER}\x01auth=Bearer {TOKEN}\x01\x01")
    );
}

#[tokio::test]
async fn a_refused_token_reports_the_servers_reason_not_the_token() {
    // RFC 7628 section 3.2.2: the error comes as a 334 challenge; the client answers
    // with a single 0x01 ("AQ==") and the server then fails the exchange.
    let steps = vec![
        Step::Expect("AUTH OAUTHBEARER "),
        Step::Send("334 eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIiwic2NvcGUiOiJtYWlsIn0=\r\n"),
        Step::Expect("AQ=="),
        Step::Send("535 5.7.8 authentication failed\r\n"),
        Step::Silent,
    ];
    let (result, seen, _) = run(
        script("250-oauth.test\r\n250 AUTH OAUTHBEARER\r\n", steps),
        Credentials::bearer_token(USER, TOKEN),
    )
    .await;
    let error = smtp_error(result.expect_err("refused"));
    assert_eq!((error.phase, error.kind), (Phase::Auth, ErrorKind::Auth));
    assert!(error.message.contains("token"), "{}", error.message);
    assert!(error.message.contains("invalid_token"), "{}", error.message);
    assert!(!format!("{error:?}").contains(TOKEN), "{error:?}");
    // The script waits silently at its end, until the client leaves; any other stop is a
    // line that did not match.
    let stopped = seen.stopped.clone().unwrap_or_default();
    assert!(!stopped.starts_with("expected"), "{stopped}");
    assert!(!String::from_utf8_lossy(&seen.encrypted).contains("MAIL FROM"));
}

#[tokio::test]
async fn no_shared_mechanism_sends_no_credential() {
    // A password cannot be used with token mechanisms, and CRAM-MD5 is never chosen
    // unless named.
    let steps = vec![Step::Silent];
    let (result, seen, _) = run(
        script("250-oauth.test\r\n250 AUTH OAUTHBEARER CRAM-MD5\r\n", steps),
        Credentials::password(USER, PASSWORD),
    )
    .await;
    let error = smtp_error(result.expect_err("no mechanism"));
    assert_eq!((error.phase, error.kind), (Phase::Auth, ErrorKind::Auth));
    assert!(error.message.contains("OAUTHBEARER"), "{}", error.message);
    let sent = String::from_utf8_lossy(&seen.encrypted).into_owned();
    assert!(!sent.contains("AUTH"), "{sent}");
}

#[tokio::test]
async fn cram_md5_by_name_answers_the_challenge() {
    // RFC 2195's example challenge; the response is user, space, hex HMAC-MD5.
    let mut steps = vec![
        Step::Expect("AUTH CRAM-MD5"),
        Step::Send("334 PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+\r\n"),
        Step::Expect("dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw"),
    ];
    steps.extend(transaction_after_auth());
    let credentials =
        Credentials::password("tim", "tanstaaftanstaaf").with_mechanism(AuthMechanism::CramMd5);
    let (result, seen, _) = run(
        script("250-oauth.test\r\n250 AUTH PLAIN CRAM-MD5\r\n", steps),
        credentials,
    )
    .await;
    result.expect("delivered");
    assert!(seen.stopped.is_none(), "{:?}", seen.stopped);
}
