//! The dialogue, driven by scripted server bytes.

use super::transaction::CONTENT_PIECE;
use super::*;

const PASSWORD: &str = "s3cret-pa55";

/// The clock's reading in most tests: time only matters where a test moves it.
const T0: Instant = Instant::from_nanos(0);

fn config(tls: TlsMode, with_credentials: bool) -> ClientConfig {
    ClientConfig {
        ehlo_name: Some("client.example".into()),
        tls,
        credentials: with_credentials.then(|| Credentials {
            username: "alice".into(),
            secret: Secret::Password(PASSWORD.into()),
            mechanism: None,
        }),
        server_host: "mx.example.org".into(),
        server_port: 587,
        sasl_nonce: "rOprNGfwEbeRWgbNEkqO".into(),
        transcript: true,
        timeouts: Timeouts::default(),
    }
}

/// A client over implicit TLS at `T0`, its handshake done.
fn implicit_client(with_credentials: bool) -> Client {
    let mut client = Client::new(config(TlsMode::Implicit, with_credentials), T0).unwrap();
    establish_tls(&mut client);
    client
}

/// Asserts the client asks for the TLS handshake, and reports it done.
#[track_caller]
fn establish_tls(client: &mut Client) {
    match client.poll(T0) {
        Step::StartTls(handshake) => handshake.established(),
        other => panic!("expected a handshake, got {other:?}"),
    }
}

/// What a driver does at `T0` with a ready session.
trait AtT0 {
    /// Sends a message in a call that begins at `T0`.
    fn send(
        &mut self,
        envelope: Envelope,
        message: &[u8],
        options: SendOptions,
    ) -> Result<(), Error>;
    /// Sends QUIT.
    fn quit(&mut self);
}

impl AtT0 for Client {
    #[track_caller]
    fn send(
        &mut self,
        envelope: Envelope,
        message: &[u8],
        options: SendOptions,
    ) -> Result<(), Error> {
        match self.poll(T0) {
            Step::Ready(ready) => ready.send(T0, envelope, message.to_vec(), options),
            other => panic!("expected a ready session, got {other:?}"),
        }
    }

    #[track_caller]
    fn quit(&mut self) {
        match self.poll(T0) {
            Step::Ready(ready) => ready.quit(T0),
            other => panic!("expected a ready session, got {other:?}"),
        }
    }
}

/// The PLAIN initial response for alice (RFC 4616).
fn plain_response() -> String {
    BASE64.encode(format!("\0alice\0{PASSWORD}"))
}

/// Asserts the client writes exactly `expected` next.
#[track_caller]
fn expect_write(client: &mut Client, expected: &str) {
    match client.poll(T0) {
        Step::Transmit(bytes, _) => assert_eq!(String::from_utf8_lossy(&bytes), expected),
        other => panic!("expected to write {expected:?}, got {other:?}"),
    }
}

/// Asserts the client waits for a reply, then gives it `reply`.
#[track_caller]
fn server_says(client: &mut Client, reply: &str) {
    match client.poll(T0) {
        Step::Receive(_) => client.receive(reply.as_bytes()),
        other => panic!("expected to wait for {reply:?}, got {other:?}"),
    }
}

#[track_caller]
fn expect_failure(client: &mut Client) -> Error {
    match client.poll(T0) {
        Step::Failed(error) => error,
        other => panic!("expected a failure, got {other:?}"),
    }
}

fn envelope(recipients: &[&str]) -> Envelope {
    Envelope {
        sender: "alice@example.org".into(),
        recipients: recipients.iter().map(|r| r.to_string()).collect(),
    }
}

/// Greeting, EHLO, STARTTLS, handshake, EHLO again, AUTH PLAIN: ready.
fn open_starttls(client: &mut Client) {
    server_says(client, "220 mx.example.org ESMTP\r\n");
    expect_write(client, "EHLO client.example\r\n");
    server_says(
        client,
        "250-mx.example.org\r\n250-STARTTLS\r\n250 AUTH PLAIN LOGIN\r\n",
    );
    expect_write(client, "STARTTLS\r\n");
    server_says(client, "220 2.0.0 Ready to start TLS\r\n");
    establish_tls(client);
    expect_write(client, "EHLO client.example\r\n");
    server_says(
        client,
        "250-mx.example.org\r\n250-SIZE 1000000\r\n250-8BITMIME\r\n250 AUTH PLAIN LOGIN\r\n",
    );
    expect_write(client, &format!("AUTH PLAIN {}\r\n", plain_response()));
    server_says(client, "235 2.7.0 Authentication successful\r\n");
    assert!(matches!(client.poll(T0), Step::Ready(_)));
}

#[test]
fn starttls_auth_send_and_quit() {
    let mut client = Client::new(config(TlsMode::StartTls, true), T0).unwrap();
    open_starttls(&mut client);

    client
        .send(
            envelope(&["bob@example.net"]),
            b"Subject: hi\n\n.dot\nbody",
            SendOptions::default(),
        )
        .unwrap();
    let wire_size = b"Subject: hi\r\n\r\n..dot\r\nbody\r\n.\r\n".len();
    expect_write(
        &mut client,
        &format!("MAIL FROM:<alice@example.org> SIZE={wire_size}\r\n"),
    );
    server_says(&mut client, "250 2.1.0 Ok\r\n");
    expect_write(&mut client, "RCPT TO:<bob@example.net>\r\n");
    server_says(&mut client, "250 2.1.5 Ok\r\n");
    expect_write(&mut client, "DATA\r\n");
    server_says(&mut client, "354 End data with <CR><LF>.<CR><LF>\r\n");
    expect_write(&mut client, "Subject: hi\r\n\r\n..dot\r\nbody\r\n.\r\n");
    server_says(&mut client, "250 2.0.0 Ok: queued as ABC123\r\n");
    let Step::Delivered(delivery) = client.poll(T0) else {
        panic!("not delivered")
    };
    assert_eq!(delivery.accepted, ["bob@example.net"]);
    assert!(delivery.refused.is_empty());
    assert_eq!(delivery.reply.text(), "Ok: queued as ABC123");

    assert!(matches!(client.poll(T0), Step::Ready(_)));
    client.quit();
    expect_write(&mut client, "QUIT\r\n");
    server_says(&mut client, "221 2.0.0 Bye\r\n");
    assert!(matches!(client.poll(T0), Step::Closed));

    let transcript = client.take_transcript().join("\n");
    assert!(!transcript.contains(PASSWORD), "{transcript}");
    assert!(!transcript.contains(&plain_response()));
    assert!(
        transcript.contains("C: AUTH PLAIN <credentials redacted>"),
        "{transcript}"
    );
    assert!(
        transcript.contains("S: 250 2.0.0 Ok: queued as ABC123"),
        "{transcript}"
    );
}

#[test]
fn capabilities_from_before_tls_are_forgotten() {
    let mut client = Client::new(config(TlsMode::StartTls, true), T0).unwrap();
    server_says(&mut client, "220 mx\r\n");
    expect_write(&mut client, "EHLO client.example\r\n");
    server_says(&mut client, "250-mx\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n");
    expect_write(&mut client, "STARTTLS\r\n");
    server_says(&mut client, "220 go\r\n");
    establish_tls(&mut client);
    expect_write(&mut client, "EHLO client.example\r\n");
    // Only what the server says over TLS counts: LOGIN, not the PLAIN offered before.
    server_says(&mut client, "250-mx\r\n250 AUTH LOGIN\r\n");
    expect_write(&mut client, "AUTH LOGIN\r\n");
    server_says(&mut client, "334 VXNlcm5hbWU6\r\n");
    expect_write(&mut client, "YWxpY2U=\r\n");
    server_says(&mut client, "334 UGFzc3dvcmQ6\r\n");
    expect_write(&mut client, &format!("{}\r\n", BASE64.encode(PASSWORD)));
    server_says(&mut client, "235 ok\r\n");
    assert!(matches!(client.poll(T0), Step::Ready(_)));
    assert!(
        !client
            .take_transcript()
            .join("\n")
            .contains(&BASE64.encode(PASSWORD))
    );
}

#[test]
fn missing_starttls_stops_before_credentials() {
    let mut client = Client::new(config(TlsMode::StartTls, true), T0).unwrap();
    server_says(&mut client, "220 mx\r\n");
    expect_write(&mut client, "EHLO client.example\r\n");
    server_says(&mut client, "250-mx\r\n250 AUTH PLAIN LOGIN\r\n");
    let error = expect_failure(&mut client);
    assert_eq!((error.phase, error.kind), (Phase::Tls, ErrorKind::Tls));
    assert!(client.is_closed());
    assert!(matches!(client.poll(T0), Step::Closed));
}

#[test]
fn refused_starttls_is_a_tls_error() {
    for reply in [
        "454 4.7.0 TLS not available\r\n",
        "502 no\r\n",
        "250 sure\r\n",
    ] {
        let mut client = Client::new(config(TlsMode::StartTls, true), T0).unwrap();
        server_says(&mut client, "220 mx\r\n");
        expect_write(&mut client, "EHLO client.example\r\n");
        server_says(&mut client, "250-mx\r\n250 STARTTLS\r\n");
        expect_write(&mut client, "STARTTLS\r\n");
        server_says(&mut client, reply);
        let error = expect_failure(&mut client);
        assert_eq!(
            (error.phase, error.kind),
            (Phase::Tls, ErrorKind::Tls),
            "{reply}"
        );
        assert!(matches!(client.poll(T0), Step::Closed));
    }
}

#[test]
fn bytes_after_starttls_reply_abort() {
    let mut client = Client::new(config(TlsMode::StartTls, true), T0).unwrap();
    server_says(&mut client, "220 mx\r\n");
    expect_write(&mut client, "EHLO client.example\r\n");
    server_says(&mut client, "250-mx\r\n250 STARTTLS\r\n");
    expect_write(&mut client, "STARTTLS\r\n");
    server_says(
        &mut client,
        "220 go ahead\r\n250-evil\r\n250 AUTH PLAIN\r\n",
    );
    let error = expect_failure(&mut client);
    assert_eq!((error.phase, error.kind), (Phase::Tls, ErrorKind::Protocol));
    assert!(matches!(client.poll(T0), Step::Closed));
}

#[test]
fn ehlo_refused_falls_back_to_helo_only_when_nothing_needs_extensions() {
    let mut client = Client::new(config(TlsMode::InsecurePlaintext, false), T0).unwrap();
    server_says(&mut client, "220 old\r\n");
    expect_write(&mut client, "EHLO client.example\r\n");
    server_says(&mut client, "502 what\r\n");
    expect_write(&mut client, "HELO client.example\r\n");
    server_says(&mut client, "250 old\r\n");
    assert!(matches!(client.poll(T0), Step::Ready(_)));

    let mut client = Client::new(config(TlsMode::StartTls, false), T0).unwrap();
    server_says(&mut client, "220 old\r\n");
    expect_write(&mut client, "EHLO client.example\r\n");
    server_says(&mut client, "502 what\r\n");
    let error = expect_failure(&mut client);
    assert_eq!(error.kind, ErrorKind::Tls);
}

#[test]
fn wrong_password_is_an_auth_error() {
    let mut client = implicit_client(true);
    server_says(&mut client, "220 mx\r\n");
    expect_write(&mut client, "EHLO client.example\r\n");
    server_says(&mut client, "250-mx\r\n250 AUTH PLAIN\r\n");
    let Step::Transmit(_, _) = client.poll(T0) else {
        panic!()
    };
    server_says(&mut client, "535 5.7.8 Error: authentication failed\r\n");
    let error = expect_failure(&mut client);
    assert_eq!(
        (error.phase, error.kind, error.transient),
        (Phase::Auth, ErrorKind::Auth, false)
    );
    assert_eq!(error.reply.unwrap().code, 535);
    assert!(!error.message.contains(PASSWORD));
}

#[test]
fn no_shared_mechanism_is_an_auth_error() {
    let mut client = implicit_client(true);
    server_says(&mut client, "220 mx\r\n");
    expect_write(&mut client, "EHLO client.example\r\n");
    server_says(&mut client, "250-mx\r\n250 AUTH GSSAPI\r\n");
    let error = expect_failure(&mut client);
    assert_eq!((error.phase, error.kind), (Phase::Auth, ErrorKind::Auth));
    assert!(error.message.contains("GSSAPI"));
}

#[test]
fn credentials_are_refused_in_plaintext_mode() {
    let error = Client::new(config(TlsMode::InsecurePlaintext, true), T0).unwrap_err();
    assert_eq!(error.kind, ErrorKind::InvalidInput);
}

/// A ready implicit-TLS session without AUTH.
fn ready_client(extensions: &str) -> Client {
    let mut client = implicit_client(false);
    server_says(&mut client, "220 mx\r\n");
    expect_write(&mut client, "EHLO client.example\r\n");
    server_says(&mut client, &format!("250-mx\r\n250 {extensions}\r\n"));
    assert!(matches!(client.poll(T0), Step::Ready(_)));
    client
}

#[test]
fn some_recipients_refused_the_rest_get_the_message() {
    let mut client = ready_client("8BITMIME");
    client
        .send(
            envelope(&["a@x.org", "b@x.org"]),
            "Subject: é\n\nhi".as_bytes(),
            SendOptions::default(),
        )
        .unwrap();
    expect_write(
        &mut client,
        "MAIL FROM:<alice@example.org> BODY=8BITMIME\r\n",
    );
    server_says(&mut client, "250 ok\r\n");
    expect_write(&mut client, "RCPT TO:<a@x.org>\r\n");
    server_says(&mut client, "550 5.1.1 no such user\r\n");
    expect_write(&mut client, "RCPT TO:<b@x.org>\r\n");
    server_says(&mut client, "250 ok\r\n");
    expect_write(&mut client, "DATA\r\n");
    server_says(&mut client, "354 go\r\n");
    let Step::Transmit(_, _) = client.poll(T0) else {
        panic!()
    };
    server_says(&mut client, "250 queued\r\n");
    let Step::Delivered(delivery) = client.poll(T0) else {
        panic!()
    };
    assert_eq!(delivery.accepted, ["b@x.org"]);
    assert_eq!(delivery.refused[0].address, "a@x.org");
    assert_eq!(delivery.refused[0].reply.code, 550);
}

#[test]
fn all_recipients_refused_sends_no_data_and_keeps_the_session() {
    let mut client = ready_client("8BITMIME");
    client
        .send(
            envelope(&["a@x.org", "b@x.org"]),
            b"hi",
            SendOptions::default(),
        )
        .unwrap();
    expect_write(&mut client, "MAIL FROM:<alice@example.org>\r\n");
    server_says(&mut client, "250 ok\r\n");
    expect_write(&mut client, "RCPT TO:<a@x.org>\r\n");
    server_says(&mut client, "550 5.1.1 unknown\r\n");
    expect_write(&mut client, "RCPT TO:<b@x.org>\r\n");
    server_says(&mut client, "450 4.2.0 busy\r\n");
    expect_write(&mut client, "RSET\r\n");
    server_says(&mut client, "250 ok\r\n");
    let error = expect_failure(&mut client);
    assert_eq!(
        (error.phase, error.kind, error.transient),
        (Phase::Rcpt, ErrorKind::Rejected, false)
    );
    assert!(error.message.contains("a@x.org") && error.message.contains("b@x.org"));
    assert!(matches!(client.poll(T0), Step::Ready(_)));
}

#[test]
fn data_answered_without_354_sends_no_content() {
    let mut client = ready_client("8BITMIME");
    client
        .send(
            envelope(&["a@x.org"]),
            b"secret body",
            SendOptions::default(),
        )
        .unwrap();
    expect_write(&mut client, "MAIL FROM:<alice@example.org>\r\n");
    server_says(&mut client, "250 ok\r\n");
    expect_write(&mut client, "RCPT TO:<a@x.org>\r\n");
    server_says(&mut client, "250 ok\r\n");
    expect_write(&mut client, "DATA\r\n");
    server_says(&mut client, "250 ok\r\n");
    let error = expect_failure(&mut client);
    assert_eq!(
        (error.phase, error.kind),
        (Phase::Data, ErrorKind::Protocol)
    );
    assert!(matches!(client.poll(T0), Step::Closed));
}

#[test]
fn refusal_after_the_dot_is_not_a_delivery() {
    let mut client = ready_client("8BITMIME");
    client
        .send(envelope(&["a@x.org"]), b"body", SendOptions::default())
        .unwrap();
    expect_write(&mut client, "MAIL FROM:<alice@example.org>\r\n");
    server_says(&mut client, "250 ok\r\n");
    expect_write(&mut client, "RCPT TO:<a@x.org>\r\n");
    server_says(&mut client, "250 ok\r\n");
    expect_write(&mut client, "DATA\r\n");
    server_says(&mut client, "354 go\r\n");
    expect_write(&mut client, "body\r\n.\r\n");
    server_says(&mut client, "554 5.7.1 spam\r\n");
    let error = expect_failure(&mut client);
    assert_eq!(
        (error.phase, error.kind, error.transient),
        (Phase::Data, ErrorKind::Rejected, false)
    );
    assert!(matches!(client.poll(T0), Step::Ready(_)));
}

#[test]
fn service_closing_is_transient_at_any_stage() {
    let mut client = ready_client("8BITMIME");
    client
        .send(envelope(&["a@x.org"]), b"body", SendOptions::default())
        .unwrap();
    expect_write(&mut client, "MAIL FROM:<alice@example.org>\r\n");
    server_says(&mut client, "421 4.3.2 shutting down\r\n");
    let error = expect_failure(&mut client);
    assert_eq!((error.phase, error.transient), (Phase::Mail, true));
    assert!(matches!(client.poll(T0), Step::Closed));
}

#[test]
fn bad_input_sends_nothing() {
    let mut client = ready_client("8BITMIME");
    for (sender, recipient) in [
        ("alice@example.org", "bob@x.org\r\nRCPT TO:<eve@x.org>"),
        ("alice@example.org\n", "bob@x.org"),
        ("alice@example.org", "<bob@x.org>"),
        ("alice@example.org", "no-domain"),
        ("alice@example.org", "bøb@x.org"),
    ] {
        let envelope = Envelope {
            sender: sender.into(),
            recipients: vec![recipient.into()],
        };
        let error = client
            .send(envelope, b"hi", SendOptions::default())
            .unwrap_err();
        assert_eq!(error.kind, ErrorKind::InvalidInput, "{recipient:?}");
        assert!(
            matches!(client.poll(T0), Step::Ready(_)),
            "something was sent for {recipient:?}"
        );
    }
    assert!(
        client
            .send(envelope(&[]), b"hi", SendOptions::default())
            .is_err()
    );
    let long_local = format!("{}@x.org", "a".repeat(65));
    assert!(
        client
            .send(envelope(&[&long_local]), b"hi", SendOptions::default())
            .is_err()
    );
    assert!(
        Client::new(
            ClientConfig {
                ehlo_name: Some("host\r\nMAIL FROM:<x@y>".into()),
                ..config(TlsMode::Implicit, false)
            },
            T0
        )
        .is_err()
    );
}

#[test]
fn message_over_the_size_limit_is_refused_up_front() {
    let mut client = ready_client("SIZE 10");
    let error = client
        .send(
            envelope(&["a@x.org"]),
            b"a body longer than ten bytes",
            SendOptions::default(),
        )
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::InvalidInput);
    assert!(matches!(client.poll(T0), Step::Ready(_)));
}

#[test]
fn malformed_or_non_220_greeting_fails() {
    for (greeting, kind) in [
        ("554 go away\r\n", ErrorKind::Rejected),
        ("220-ok\r\n221 mixed\r\n", ErrorKind::Protocol),
        ("HTTP/1.1 400\r\n", ErrorKind::Protocol),
    ] {
        let mut client = implicit_client(false);
        server_says(&mut client, greeting);
        assert_eq!(expect_failure(&mut client).kind, kind, "{greeting:?}");
    }
}

#[test]
fn lost_connection_mid_data_is_never_a_delivery() {
    let mut client = ready_client("8BITMIME");
    client
        .send(envelope(&["a@x.org"]), b"body", SendOptions::default())
        .unwrap();
    expect_write(&mut client, "MAIL FROM:<alice@example.org>\r\n");
    server_says(&mut client, "250 ok\r\n");
    expect_write(&mut client, "RCPT TO:<a@x.org>\r\n");
    server_says(&mut client, "250 ok\r\n");
    expect_write(&mut client, "DATA\r\n");
    server_says(&mut client, "354 go\r\n");
    expect_write(&mut client, "body\r\n.\r\n");
    let Step::Receive(wait) = client.poll(T0) else {
        panic!()
    };
    assert_eq!(
        wait,
        Wait {
            phase: Phase::Data,
            timer: Timer::DataEnd,
            until: T0.plus_ms(Timeouts::default().data_end_ms),
        }
    );
    client.connection_lost(ErrorKind::Network, "closed");
    let error = expect_failure(&mut client);
    assert_eq!(error.phase, Phase::Data);
    assert!(matches!(client.poll(T0), Step::Closed));
}

#[test]
fn a_password_echoed_by_the_server_is_masked() {
    let mut client = implicit_client(true);
    server_says(&mut client, "220 mx\r\n");
    expect_write(&mut client, "EHLO client.example\r\n");
    server_says(&mut client, "250-mx\r\n250 AUTH PLAIN\r\n");
    let Step::Transmit(_, _) = client.poll(T0) else {
        panic!()
    };
    server_says(
        &mut client,
        &format!("535 5.7.8 password {PASSWORD} is wrong\r\n"),
    );
    let error = expect_failure(&mut client);
    let reply = error.reply.unwrap();
    assert_eq!(reply.text(), "password <redacted> is wrong");
    assert!(!client.take_transcript().join("\n").contains(PASSWORD));
}

#[test]
fn pipelining_sends_the_envelope_in_one_flight() {
    let mut client = ready_client("PIPELINING");
    client
        .send(
            envelope(&["a@x.org", "b@x.org"]),
            b"body",
            SendOptions::default(),
        )
        .unwrap();
    expect_write(
        &mut client,
        "MAIL FROM:<alice@example.org>\r\nRCPT TO:<a@x.org>\r\nRCPT TO:<b@x.org>\r\nDATA\r\n",
    );
    // All replies at once, as a pipelining server sends them.
    server_says(
        &mut client,
        "250 ok\r\n250 ok\r\n550 5.1.1 unknown\r\n354 go\r\n",
    );
    expect_write(&mut client, "body\r\n.\r\n");
    server_says(&mut client, "250 queued\r\n");
    let Step::Delivered(delivery) = client.poll(T0) else {
        panic!("not delivered")
    };
    assert_eq!(delivery.accepted, ["a@x.org"]);
    assert_eq!(delivery.refused[0].address, "b@x.org");
    assert!(matches!(client.poll(T0), Step::Ready(_)));
}

#[test]
fn pipelining_with_the_sender_refused_reads_every_reply_then_resets() {
    let mut client = ready_client("PIPELINING");
    client
        .send(
            envelope(&["a@x.org", "b@x.org"]),
            CONTENT,
            SendOptions::default(),
        )
        .unwrap();
    let Step::Transmit(_, _) = client.poll(T0) else {
        panic!()
    };
    server_says(
        &mut client,
        "553 5.7.1 not yours\r\n503 5.5.1 need MAIL\r\n503 5.5.1 need MAIL\r\n503 5.5.1 need RCPT\r\n",
    );
    expect_write(&mut client, "RSET\r\n");
    server_says(&mut client, "250 ok\r\n");
    let error = expect_failure(&mut client);
    assert_eq!(
        (error.phase, error.kind, error.reply.unwrap().code),
        (Phase::Mail, ErrorKind::Rejected, 553)
    );
    assert!(matches!(client.poll(T0), Step::Ready(_)));
}

#[test]
fn pipelining_with_every_recipient_refused_never_sends_the_content() {
    let mut client = ready_client("PIPELINING");
    client
        .send(envelope(&["a@x.org"]), CONTENT, SendOptions::default())
        .unwrap();
    let Step::Transmit(_, _) = client.poll(T0) else {
        panic!()
    };
    // A server that accepts DATA although no recipient was accepted.
    server_says(&mut client, "250 ok\r\n550 5.1.1 unknown\r\n354 go\r\n");
    expect_write(&mut client, ".\r\n");
    server_says(&mut client, "554 5.5.1 no valid recipients\r\n");
    let error = expect_failure(&mut client);
    assert_eq!(
        (error.phase, error.kind),
        (Phase::Rcpt, ErrorKind::Rejected)
    );
    assert_eq!(error.reply.unwrap().code, 550);
    assert!(matches!(client.poll(T0), Step::Ready(_)));
}

const CONTENT: &[u8] = b"never-to-be-sent";

/// A ready implicit-TLS session whose EHLO reply lists `extensions`.
fn ready_with(extensions: &[&str]) -> Client {
    let mut lines = vec!["mx"];
    lines.extend(extensions);
    let last = lines.len() - 1;
    let reply: String = lines
        .iter()
        .enumerate()
        .map(|(i, line)| format!("250{}{line}\r\n", if i == last { ' ' } else { '-' }))
        .collect();
    let mut client = implicit_client(false);
    server_says(&mut client, "220 mx\r\n");
    expect_write(&mut client, "EHLO client.example\r\n");
    server_says(&mut client, &reply);
    assert!(matches!(client.poll(T0), Step::Ready(_)));
    client
}

#[track_caller]
fn expect_delivery(client: &mut Client) -> Delivery {
    match client.poll(T0) {
        Step::Delivered(delivery) => delivery,
        other => panic!("expected a delivery, got {other:?}"),
    }
}

#[track_caller]
fn expect_wait(client: &mut Client, timer: Timer) {
    match client.poll(T0) {
        Step::Receive(wait) => assert_eq!(wait.timer, timer),
        other => panic!("expected to wait, got {other:?}"),
    }
}

#[test]
fn chunking_sends_bdat_without_dot_stuffing() {
    let mut client = ready_with(&["PIPELINING", "CHUNKING"]);
    client
        .send(
            envelope(&["a@x.org"]),
            b".dot\nline",
            SendOptions::default(),
        )
        .unwrap();
    // The envelope is pipelined, but no content goes before its replies.
    expect_write(
        &mut client,
        "MAIL FROM:<alice@example.org>\r\nRCPT TO:<a@x.org>\r\n",
    );
    expect_wait(&mut client, Timer::Mail);
    client.receive(b"250 ok\r\n");
    expect_wait(&mut client, Timer::Rcpt);
    client.receive(b"250 ok\r\n");
    match client.poll(T0) {
        Step::Transmit(bytes, until) => {
            assert_eq!(bytes, b"BDAT 12 LAST\r\n.dot\r\nline\r\n");
            assert_eq!(until, at(Timeouts::default().data_block_ms));
        }
        other => panic!("expected BDAT, got {other:?}"),
    }
    expect_wait(&mut client, Timer::DataEnd);
    client.receive(b"250 2.0.0 queued\r\n");
    let delivery = expect_delivery(&mut client);
    assert_eq!(delivery.accepted, ["a@x.org"]);
    assert_eq!(delivery.reply.code, 250);
}

#[test]
fn a_large_message_goes_in_several_chunks() {
    let mut client = ready_with(&["CHUNKING"]);
    let message = vec![b'x'; CONTENT_PIECE + 10];
    client
        .send(envelope(&["a@x.org"]), &message, SendOptions::default())
        .unwrap();
    expect_write(&mut client, "MAIL FROM:<alice@example.org>\r\n");
    server_says(&mut client, "250 ok\r\n");
    expect_write(&mut client, "RCPT TO:<a@x.org>\r\n");
    server_says(&mut client, "250 ok\r\n");
    let Step::Transmit(first, _) = client.poll(T0) else {
        panic!("expected the first chunk")
    };
    assert!(first.starts_with(format!("BDAT {CONTENT_PIECE}\r\n").as_bytes()));
    expect_wait(&mut client, Timer::DataBlock);
    client.receive(b"250 ok\r\n");
    let Step::Transmit(last, _) = client.poll(T0) else {
        panic!("expected the last chunk")
    };
    assert_eq!(last, b"BDAT 12 LAST\r\nxxxxxxxxxx\r\n");
    server_says(&mut client, "250 queued\r\n");
    expect_delivery(&mut client);
}

#[test]
fn large_data_content_goes_a_piece_at_a_time_under_the_data_block_timer() {
    let mut client = ready_with(&[]);
    // Lines with leading dots and bare LFs across piece boundaries.
    let message = b".dot\nline\n".repeat(CONTENT_PIECE / 5);
    client
        .send(envelope(&["a@x.org"]), &message, SendOptions::default())
        .unwrap();
    expect_write(&mut client, "MAIL FROM:<alice@example.org>\r\n");
    server_says(&mut client, "250 ok\r\n");
    expect_write(&mut client, "RCPT TO:<a@x.org>\r\n");
    server_says(&mut client, "250 ok\r\n");
    expect_write(&mut client, "DATA\r\n");
    server_says(&mut client, "354 go\r\n");
    let mut wire = Vec::new();
    let mut pieces = 0;
    while let Step::Transmit(bytes, until) = client.poll(T0) {
        assert!(
            bytes.len() <= CONTENT_PIECE + 6,
            "a piece of {}",
            bytes.len()
        );
        assert_eq!(until, at(Timeouts::default().data_block_ms));
        wire.extend_from_slice(&bytes);
        pieces += 1;
    }
    assert!(pieces > 2, "{pieces} pieces");
    assert_eq!(
        wire,
        data::encode(&message, Framing::DotStuffed).unwrap().wire
    );
    expect_wait(&mut client, Timer::DataEnd);
    client.receive(b"250 queued\r\n");
    expect_delivery(&mut client);
}

#[test]
fn a_refused_chunk_resets_the_transaction() {
    let mut client = ready_with(&["CHUNKING"]);
    let message = vec![b'x'; CONTENT_PIECE + 10];
    client
        .send(envelope(&["a@x.org"]), &message, SendOptions::default())
        .unwrap();
    expect_write(&mut client, "MAIL FROM:<alice@example.org>\r\n");
    server_says(&mut client, "250 ok\r\n");
    expect_write(&mut client, "RCPT TO:<a@x.org>\r\n");
    server_says(&mut client, "250 ok\r\n");
    let Step::Transmit(..) = client.poll(T0) else {
        panic!()
    };
    server_says(&mut client, "552 5.3.4 too big\r\n");
    expect_write(&mut client, "RSET\r\n");
    server_says(&mut client, "250 ok\r\n");
    let error = expect_failure(&mut client);
    assert_eq!(
        (error.phase, error.kind),
        (Phase::Data, ErrorKind::Rejected)
    );
    assert!(matches!(client.poll(T0), Step::Ready(_)));
}

#[test]
fn too_many_recipients_go_in_a_further_transaction() {
    let mut client = ready_with(&["PIPELINING"]);
    client
        .send(
            envelope(&["a@x.org", "b@x.org", "c@x.org"]),
            b"hi",
            SendOptions::default(),
        )
        .unwrap();
    expect_write(
        &mut client,
        "MAIL FROM:<alice@example.org>\r\nRCPT TO:<a@x.org>\r\nRCPT TO:<b@x.org>\r\nRCPT TO:<c@x.org>\r\nDATA\r\n",
    );
    server_says(
        &mut client,
        "250 ok\r\n250 ok\r\n452 4.5.3 too many recipients\r\n452 4.5.3 too many recipients\r\n354 go\r\n",
    );
    expect_write(&mut client, "hi\r\n.\r\n");
    server_says(&mut client, "250 queued as ONE\r\n");
    // The two deferred recipients: a second transaction with the same content.
    expect_write(
        &mut client,
        "MAIL FROM:<alice@example.org>\r\nRCPT TO:<b@x.org>\r\nRCPT TO:<c@x.org>\r\nDATA\r\n",
    );
    server_says(
        &mut client,
        "250 ok\r\n250 ok\r\n550 5.1.1 no such user\r\n354 go\r\n",
    );
    expect_write(&mut client, "hi\r\n.\r\n");
    server_says(&mut client, "250 queued as TWO\r\n");
    let delivery = expect_delivery(&mut client);
    assert_eq!(delivery.accepted, ["a@x.org", "b@x.org"]);
    assert_eq!(delivery.refused.len(), 1);
    assert_eq!(delivery.refused[0].address, "c@x.org");
    assert_eq!(delivery.reply.text(), "queued as TWO");
    assert_eq!(delivery.earlier_replies.len(), 1);
    assert_eq!(delivery.earlier_replies[0].text(), "queued as ONE");
}

#[test]
fn a_failed_further_transaction_still_reports_the_first_delivery() {
    let mut client = ready_with(&[]);
    client
        .send(
            envelope(&["a@x.org", "b@x.org"]),
            b"hi",
            SendOptions::default(),
        )
        .unwrap();
    expect_write(&mut client, "MAIL FROM:<alice@example.org>\r\n");
    server_says(&mut client, "250 ok\r\n");
    expect_write(&mut client, "RCPT TO:<a@x.org>\r\n");
    server_says(&mut client, "250 ok\r\n");
    expect_write(&mut client, "RCPT TO:<b@x.org>\r\n");
    server_says(&mut client, "452 4.5.3 too many recipients\r\n");
    expect_write(&mut client, "DATA\r\n");
    server_says(&mut client, "354 go\r\n");
    expect_write(&mut client, "hi\r\n.\r\n");
    server_says(&mut client, "250 queued as ONE\r\n");
    expect_write(&mut client, "MAIL FROM:<alice@example.org>\r\n");
    server_says(&mut client, "451 4.3.0 try later\r\n");
    expect_write(&mut client, "RSET\r\n");
    server_says(&mut client, "250 ok\r\n");
    let delivery = expect_delivery(&mut client);
    assert_eq!(delivery.accepted, ["a@x.org"]);
    assert_eq!(delivery.refused.len(), 1);
    assert_eq!(delivery.refused[0].address, "b@x.org");
    assert_eq!(delivery.refused[0].reply.code, 451);
    assert_eq!(delivery.reply.text(), "queued as ONE");
    assert!(matches!(client.poll(T0), Step::Ready(_)));
}

#[test]
fn every_recipient_deferred_is_a_transient_refusal() {
    let mut client = ready_with(&[]);
    client
        .send(envelope(&["a@x.org"]), b"hi", SendOptions::default())
        .unwrap();
    expect_write(&mut client, "MAIL FROM:<alice@example.org>\r\n");
    server_says(&mut client, "250 ok\r\n");
    expect_write(&mut client, "RCPT TO:<a@x.org>\r\n");
    server_says(&mut client, "452 4.3.1 insufficient storage\r\n");
    expect_write(&mut client, "RSET\r\n");
    server_says(&mut client, "250 ok\r\n");
    let error = expect_failure(&mut client);
    assert_eq!(
        (error.phase, error.kind),
        (Phase::Rcpt, ErrorKind::Rejected)
    );
    assert!(error.transient);
}

fn dsn_options() -> SendOptions {
    SendOptions {
        dsn: Some(crate::Dsn {
            notify: Some(crate::Notify {
                success: true,
                failure: true,
                delay: false,
            }),
            ret: Some(crate::DsnReturn::Headers),
            envid: Some("id-1".into()),
            original_recipients: true,
        }),
        require_tls: false,
        raw_header: Default::default(),
    }
}

#[test]
fn dsn_parameters_go_on_mail_and_rcpt() {
    let mut client = ready_with(&["DSN"]);
    client
        .send(envelope(&["a@x.org"]), b"hi", dsn_options())
        .unwrap();
    expect_write(
        &mut client,
        "MAIL FROM:<alice@example.org> RET=HDRS ENVID=id-1\r\n",
    );
    server_says(&mut client, "250 ok\r\n");
    expect_write(
        &mut client,
        "RCPT TO:<a@x.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a@x.org\r\n",
    );
}

#[test]
fn dsn_and_requiretls_are_refused_when_the_server_lacks_them() {
    let mut client = ready_with(&["PIPELINING"]);
    let error = client
        .send(envelope(&["a@x.org"]), b"hi", dsn_options())
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::InvalidInput);
    assert!(error.message.contains("DSN"), "{error:?}");
    let require_tls = SendOptions {
        require_tls: true,
        ..SendOptions::default()
    };
    let error = client
        .send(envelope(&["a@x.org"]), b"hi", require_tls.clone())
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Tls);
    // Nothing was sent, and the session is still ready.
    assert!(matches!(client.poll(T0), Step::Ready(_)));

    let mut client = ready_with(&["REQUIRETLS"]);
    client
        .send(envelope(&["a@x.org"]), b"hi", require_tls)
        .unwrap();
    expect_write(&mut client, "MAIL FROM:<alice@example.org> REQUIRETLS\r\n");
}

#[test]
fn requiretls_is_refused_without_tls_even_if_offered() {
    let mut client = Client::new(config(TlsMode::InsecurePlaintext, false), T0).unwrap();
    server_says(&mut client, "220 mx\r\n");
    expect_write(&mut client, "EHLO client.example\r\n");
    server_says(&mut client, "250-mx\r\n250 REQUIRETLS\r\n");
    assert!(matches!(client.poll(T0), Step::Ready(_)));
    let options = SendOptions {
        require_tls: true,
        ..SendOptions::default()
    };
    let error = client
        .send(envelope(&["a@x.org"]), b"hi", options)
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Tls);
}

#[test]
fn eight_bit_content_needs_8bitmime() {
    let mut client = ready_with(&[]);
    let error = client
        .send(
            envelope(&["a@x.org"]),
            "é".as_bytes(),
            SendOptions::default(),
        )
        .unwrap_err();
    assert_eq!(
        (error.phase, error.kind),
        (Phase::Data, ErrorKind::InvalidInput)
    );
}

/// `ms` milliseconds after `T0`.
fn at(ms: u32) -> Instant {
    T0.plus_ms(ms)
}

/// Sends a one-recipient message from a ready session in a call that begins at `now`.
#[track_caller]
fn send_at(client: &mut Client, now: Instant) {
    match client.poll(now) {
        Step::Ready(ready) => ready
            .send(
                now,
                envelope(&["a@x.org"]),
                b"hi".to_vec(),
                SendOptions::default(),
            )
            .unwrap(),
        other => panic!("expected a ready session, got {other:?}"),
    }
}

#[test]
fn an_idle_connection_is_checked_with_noop_before_a_message() {
    let mut client = ready_with(&[]);
    let later = at(IDLE_CHECK_MS + 1);
    send_at(&mut client, later);
    match client.poll(later) {
        Step::Transmit(bytes, until) => {
            assert_eq!(bytes, b"NOOP\r\n");
            assert_eq!(until, later.plus_ms(Timeouts::default().command_ms));
        }
        other => panic!("expected NOOP, got {other:?}"),
    }
    client.receive(b"250 ok\r\n");
    expect_write(&mut client, "MAIL FROM:<alice@example.org>\r\n");
}

#[test]
fn a_connection_used_within_the_idle_limit_is_not_checked() {
    let mut client = ready_with(&[]);
    send_at(&mut client, at(IDLE_CHECK_MS));
    expect_write(&mut client, "MAIL FROM:<alice@example.org>\r\n");
}

#[test]
fn an_idle_connection_found_gone_asks_for_a_new_one() {
    let endings: [fn(&mut Client); 4] = [
        |client| client.receive(b"421 4.4.2 idle too long\r\n"),
        |client| client.receive(b"500 what\r\n"),
        |client| client.connection_lost(ErrorKind::Network, "closed"),
        |client| client.timed_out(at(IDLE_CHECK_MS + 1).plus_ms(300_000)),
    ];
    for (index, ending) in endings.into_iter().enumerate() {
        let mut client = ready_with(&[]);
        send_at(&mut client, at(IDLE_CHECK_MS + 1));
        expect_write(&mut client, "NOOP\r\n");
        ending(&mut client);
        let step = client.poll(at(IDLE_CHECK_MS + 2));
        assert!(matches!(step, Step::Reconnect), "ending {index}: {step:?}");
        assert!(matches!(client.poll(T0), Step::Closed), "ending {index}");
    }
}

/// A plaintext client at `T0` with these limits.
fn plaintext_client_with(timeouts: Timeouts) -> Client {
    let config = ClientConfig {
        timeouts,
        ..config(TlsMode::InsecurePlaintext, false)
    };
    Client::new(config, T0).unwrap()
}

#[test]
fn a_wait_ends_at_its_stage_limit_or_the_end_of_the_call() {
    let timeouts = Timeouts {
        connect_ms: 400,
        greeting_ms: 300,
        total_ms: 1_000,
        ..Timeouts::default()
    };
    let mut client = plaintext_client_with(timeouts);
    assert_eq!(client.connect_deadline(at(100)), at(500));
    assert_eq!(client.connect_deadline(at(900)), at(1_000));
    let Step::Receive(wait) = client.poll(at(100)) else {
        panic!("expected to wait for the greeting")
    };
    assert_eq!(wait.until, at(400));
    let Step::Receive(wait) = client.poll(at(800)) else {
        panic!("expected to wait for the greeting")
    };
    assert_eq!(wait.until, at(1_000));

    client.timed_out(at(1_000));
    let error = expect_failure(&mut client);
    assert_eq!(
        (error.phase, error.kind, error.transient),
        (Phase::Greeting, ErrorKind::Timeout, true)
    );
    assert_eq!(error.message, "the overall time limit of 1000 ms ran out");
}

#[test]
fn a_silent_greeting_suggests_implicit_tls() {
    let mut client = Client::new(config(TlsMode::StartTls, false), T0).unwrap();
    let Step::Receive(wait) = client.poll(T0) else {
        panic!("expected to wait for the greeting")
    };
    client.timed_out(wait.until);
    let error = expect_failure(&mut client);
    assert_eq!(
        (error.phase, error.kind),
        (Phase::Greeting, ErrorKind::Timeout)
    );
    assert!(
        error.message.contains("(--tls implicit)"),
        "{}",
        error.message
    );
}

#[test]
fn a_stage_that_times_out_early_says_so() {
    let mut client = ready_with(&[]);
    send_at(&mut client, T0);
    expect_write(&mut client, "MAIL FROM:<alice@example.org>\r\n");
    let Step::Receive(wait) = client.poll(at(10)) else {
        panic!("expected to wait for MAIL's reply")
    };
    client.timed_out(wait.until);
    let error = expect_failure(&mut client);
    assert_eq!((error.phase, error.kind), (Phase::Mail, ErrorKind::Timeout));
    assert_eq!(error.message, "the server did not answer in time");
}

#[test]
fn each_call_has_its_own_time_limit() {
    let timeouts = Timeouts {
        total_ms: 1_000,
        ..Timeouts::default()
    };
    let mut client = plaintext_client_with(timeouts);
    server_says(&mut client, "220 mx\r\n");
    expect_write(&mut client, "EHLO client.example\r\n");
    server_says(&mut client, "250 mx\r\n");
    // A message sent in the call that opened the session shares its limit...
    send_at(&mut client, T0);
    let Step::Transmit(_, until) = client.poll(at(500)) else {
        panic!("expected MAIL")
    };
    assert_eq!(until, at(1_000));
    // ...and a later call gets a whole one.
    let mut client = ready_with(&[]);
    send_at(&mut client, at(2_000));
    let Step::Transmit(_, until) = client.poll(at(2_000)) else {
        panic!("expected MAIL")
    };
    assert_eq!(until, at(2_000).plus_ms(Timeouts::default().command_ms));
}

#[test]
fn quit_waits_briefly_whatever_the_command_limit() {
    let mut client = ready_with(&[]);
    let late = at(3_600_000);
    let Step::Ready(ready) = client.poll(late) else {
        panic!("expected a ready session")
    };
    ready.quit(late);
    let Step::Transmit(bytes, until) = client.poll(late) else {
        panic!("expected QUIT")
    };
    assert_eq!(
        (bytes.as_slice(), until),
        (&b"QUIT\r\n"[..], late.plus_ms(QUIT_WAIT_MS))
    );
    let Step::Receive(wait) = client.poll(late) else {
        panic!("expected to wait for QUIT's reply")
    };
    assert_eq!(
        (wait.timer, wait.until),
        (Timer::Quit, late.plus_ms(QUIT_WAIT_MS))
    );
}

#[test]
fn implicit_tls_handshakes_before_the_greeting() {
    let mut client = Client::new(config(TlsMode::Implicit, false), at(5)).unwrap();
    let Step::StartTls(handshake) = client.poll(at(5)) else {
        panic!("expected the handshake first")
    };
    assert_eq!(
        handshake.until(),
        at(5).plus_ms(Timeouts::default().command_ms)
    );
    handshake.established();
    expect_wait(&mut client, Timer::Greeting);
}

#[test]
fn each_stage_has_its_own_timer() {
    let mut client = implicit_client(false);
    expect_wait(&mut client, Timer::Greeting);
    client.receive(b"220 mx\r\n");
    expect_write(&mut client, "EHLO client.example\r\n");
    expect_wait(&mut client, Timer::Command);
    client.receive(b"250 mx\r\n");
    assert!(matches!(client.poll(T0), Step::Ready(_)));
    client
        .send(envelope(&["a@x.org"]), b"hi", SendOptions::default())
        .unwrap();
    expect_write(&mut client, "MAIL FROM:<alice@example.org>\r\n");
    expect_wait(&mut client, Timer::Mail);
    client.receive(b"250 ok\r\n");
    expect_write(&mut client, "RCPT TO:<a@x.org>\r\n");
    expect_wait(&mut client, Timer::Rcpt);
    client.receive(b"250 ok\r\n");
    expect_write(&mut client, "DATA\r\n");
    expect_wait(&mut client, Timer::DataStart);
    client.receive(b"354 go\r\n");
    match client.poll(T0) {
        Step::Transmit(_, until) => assert_eq!(until, at(Timeouts::default().data_block_ms)),
        other => panic!("{other:?}"),
    }
    expect_wait(&mut client, Timer::DataEnd);
}

/// RFC 7677's example: user "user", password "pencil", our nonce from `config`.
fn scram_client() -> Client {
    let mut config = config(TlsMode::Implicit, true);
    config.credentials = Some(Credentials {
        username: "user".into(),
        secret: Secret::Password("pencil".into()),
        mechanism: None,
    });
    let mut client = Client::new(config, T0).unwrap();
    establish_tls(&mut client);
    server_says(&mut client, "220 mx\r\n");
    expect_write(&mut client, "EHLO client.example\r\n");
    server_says(
        &mut client,
        "250-mx\r\n250 AUTH LOGIN PLAIN SCRAM-SHA-256\r\n",
    );
    expect_write(
        &mut client,
        &format!(
            "AUTH SCRAM-SHA-256 {}\r\n",
            BASE64.encode("n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
        ),
    );
    let server_first =
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    server_says(
        &mut client,
        &format!("334 {}\r\n", BASE64.encode(server_first)),
    );
    let client_final = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                        p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    expect_write(&mut client, &format!("{}\r\n", BASE64.encode(client_final)));
    client
}

#[test]
fn scram_is_preferred_and_the_server_must_prove_itself() {
    let mut client = scram_client();
    let server_final = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
    server_says(
        &mut client,
        &format!("334 {}\r\n", BASE64.encode(server_final)),
    );
    expect_write(&mut client, "\r\n");
    server_says(&mut client, "235 2.7.0 ok\r\n");
    assert!(matches!(client.poll(T0), Step::Ready(_)));
    let transcript = client.take_transcript().join("\n");
    assert!(transcript.contains("C: AUTH SCRAM-SHA-256 <credentials redacted>"));
    assert!(!transcript.contains("dHzbZapWIk4j"), "{transcript}");
}

#[test]
fn scram_with_a_forged_server_signature_is_cancelled() {
    let mut client = scram_client();
    let forged = "v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
    server_says(&mut client, &format!("334 {}\r\n", BASE64.encode(forged)));
    expect_write(&mut client, "*\r\n");
    server_says(&mut client, "501 5.7.0 cancelled\r\n");
    let error = expect_failure(&mut client);
    assert_eq!((error.phase, error.kind), (Phase::Auth, ErrorKind::Auth));
    assert!(matches!(client.poll(T0), Step::Closed));
}

#[test]
fn a_235_before_the_scram_server_proof_is_not_trusted() {
    let mut client = scram_client();
    server_says(&mut client, "235 2.7.0 ok\r\n");
    let error = expect_failure(&mut client);
    assert_eq!(error.kind, ErrorKind::Auth);
}

#[test]
fn a_552_at_rcpt_is_too_many_recipients_as_452_is() {
    let mut client = ready_with(&[]);
    client
        .send(
            envelope(&["a@x.org", "b@x.org"]),
            b"hi",
            SendOptions::default(),
        )
        .unwrap();
    expect_write(&mut client, "MAIL FROM:<alice@example.org>\r\n");
    server_says(&mut client, "250 ok\r\n");
    expect_write(&mut client, "RCPT TO:<a@x.org>\r\n");
    server_says(&mut client, "250 ok\r\n");
    expect_write(&mut client, "RCPT TO:<b@x.org>\r\n");
    server_says(&mut client, "552 5.5.3 too many recipients\r\n");
    expect_write(&mut client, "DATA\r\n");
    server_says(&mut client, "354 go\r\n");
    expect_write(&mut client, "hi\r\n.\r\n");
    server_says(&mut client, "250 queued as ONE\r\n");
    // b@x.org is not refused: it goes in a further transaction.
    expect_write(&mut client, "MAIL FROM:<alice@example.org>\r\n");
    server_says(&mut client, "250 ok\r\n");
    expect_write(&mut client, "RCPT TO:<b@x.org>\r\n");
    server_says(&mut client, "552 5.5.3 too many recipients\r\n");
    expect_write(&mut client, "RSET\r\n");
    server_says(&mut client, "250 ok\r\n");
    let delivery = expect_delivery(&mut client);
    assert_eq!(delivery.accepted, ["a@x.org"]);
    assert_eq!(delivery.refused.len(), 1);
    assert_eq!(delivery.refused[0].reply.code, 552);

    // Nobody accepted and every refusal a 552: worth a retry, not a bounce.
    client
        .send(envelope(&["c@x.org"]), b"hi", SendOptions::default())
        .unwrap();
    expect_write(&mut client, "MAIL FROM:<alice@example.org>\r\n");
    server_says(&mut client, "250 ok\r\n");
    expect_write(&mut client, "RCPT TO:<c@x.org>\r\n");
    server_says(&mut client, "552 5.5.3 too many recipients\r\n");
    expect_write(&mut client, "RSET\r\n");
    server_says(&mut client, "250 ok\r\n");
    let error = expect_failure(&mut client);
    assert_eq!((error.phase, error.transient), (Phase::Rcpt, true));
}

#[test]
fn the_longest_address_with_every_dsn_parameter_fits_the_rcpt_line() {
    // Each `+` of the local part becomes three octets in ORCPT's xtext; the domain cannot
    // hold one. RFC 3461 section 4 lets NOTIFY and ORCPT lengthen the line by 500 octets,
    // and a valid address never needs more.
    let (label, last) = ("d".repeat(62), "d".repeat(63));
    let long = format!("{}@{label}.{label}.{last}", "+".repeat(64));
    assert_eq!(long.len() + 2, crate::command::MAX_PATH);
    let mut client = ready_with(&["DSN"]);
    client
        .send(envelope(&[&long]), b"hi", dsn_options())
        .unwrap();
    expect_write(
        &mut client,
        "MAIL FROM:<alice@example.org> RET=HDRS ENVID=id-1\r\n",
    );
    server_says(&mut client, "250 ok\r\n");
    let rcpt = format!(
        "RCPT TO:<{long}> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;{}\r\n",
        crate::params::xtext(&long)
    );
    assert!(rcpt.len() <= 1012, "{} octets", rcpt.len());
    expect_write(&mut client, &rcpt);
}

#[test]
fn a_connection_lost_in_a_further_transaction_keeps_the_first_delivery() {
    let mut client = ready_with(&[]);
    client
        .send(
            envelope(&["a@x.org", "b@x.org"]),
            b"hi",
            SendOptions::default(),
        )
        .unwrap();
    expect_write(&mut client, "MAIL FROM:<alice@example.org>\r\n");
    server_says(&mut client, "250 ok\r\n");
    expect_write(&mut client, "RCPT TO:<a@x.org>\r\n");
    server_says(&mut client, "250 ok\r\n");
    expect_write(&mut client, "RCPT TO:<b@x.org>\r\n");
    server_says(&mut client, "452 4.5.3 too many recipients\r\n");
    expect_write(&mut client, "DATA\r\n");
    server_says(&mut client, "354 go\r\n");
    expect_write(&mut client, "hi\r\n.\r\n");
    server_says(&mut client, "250 queued as ONE\r\n");
    expect_write(&mut client, "MAIL FROM:<alice@example.org>\r\n");
    client.connection_lost(ErrorKind::Network, "the server closed the connection");
    let delivery = expect_delivery(&mut client);
    assert_eq!(delivery.accepted, ["a@x.org"]);
    assert_eq!(delivery.refused.len(), 1);
    assert_eq!(delivery.refused[0].address, "b@x.org");
    assert_eq!(delivery.refused[0].reply.code, 421);
    assert!(
        delivery.refused[0]
            .reply
            .text()
            .contains("closed the connection")
    );
    assert_eq!(delivery.reply.text(), "queued as ONE");
    assert!(matches!(client.poll(T0), Step::Closed));
}

#[test]
fn extensions_are_read_by_keyword_whatever_their_case_and_separator() {
    let ehlo = Reply {
        code: 250,
        enhanced: None,
        lines: [
            "mx.example.org",
            "pipelining",
            "Size 1000",
            "AUTH=PLAIN LOGIN",
            "8bitmime",
        ]
        .map(String::from)
        .to_vec(),
    };
    let capabilities = Capabilities::from_ehlo(&ehlo);
    for offered in [
        Extension::Pipelining,
        Extension::Size,
        Extension::Auth,
        Extension::EightBitMime,
    ] {
        assert!(capabilities.has(offered), "{offered:?}");
    }
    for absent in [
        Extension::StartTls,
        Extension::SmtpUtf8,
        Extension::Chunking,
        Extension::Dsn,
        Extension::RequireTls,
    ] {
        assert!(!capabilities.has(absent), "{absent:?}");
    }
    assert_eq!(capabilities.size_limit(), Some(1000));
    assert_eq!(capabilities.auth_mechanisms(), ["PLAIN", "LOGIN"]);
}
