//! The dialogue, driven by scripted server bytes.

use super::*;

const PASSWORD: &str = "s3cret-pa55";

fn config(tls: TlsMode, with_credentials: bool) -> ClientConfig {
    ClientConfig {
        ehlo_name: "client.example".into(),
        tls,
        credentials: with_credentials.then(|| Credentials {
            username: "alice".into(),
            password: PASSWORD.into(),
        }),
        transcript: true,
    }
}

/// Asserts the client writes exactly `expected` next.
#[track_caller]
fn expect_write(client: &mut Client, expected: &str) {
    match client.poll() {
        Step::Transmit(bytes) => assert_eq!(String::from_utf8_lossy(&bytes), expected),
        other => panic!("expected to write {expected:?}, got {other:?}"),
    }
}

/// Asserts the client waits for a reply, then gives it `reply`.
#[track_caller]
fn server_says(client: &mut Client, reply: &str) {
    match client.poll() {
        Step::Receive(_) => client.receive(reply.as_bytes()),
        other => panic!("expected to wait for {reply:?}, got {other:?}"),
    }
}

#[track_caller]
fn expect_failure(client: &mut Client) -> Error {
    match client.poll() {
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
    assert!(matches!(client.poll(), Step::StartTls));
    client.tls_established();
    expect_write(client, "EHLO client.example\r\n");
    server_says(
        client,
        "250-mx.example.org\r\n250-SIZE 1000000\r\n250-8BITMIME\r\n250 AUTH PLAIN LOGIN\r\n",
    );
    expect_write(
        client,
        &format!(
            "AUTH PLAIN {}\r\n",
            auth::plain_response(&config(TlsMode::StartTls, true).credentials.unwrap())
        ),
    );
    server_says(client, "235 2.7.0 Authentication successful\r\n");
    assert!(matches!(client.poll(), Step::Ready));
}

#[test]
fn starttls_auth_send_and_quit() {
    let mut client = Client::new(config(TlsMode::StartTls, true)).unwrap();
    open_starttls(&mut client);

    client
        .send(envelope(&["bob@example.net"]), b"Subject: hi\n\n.dot\nbody")
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
    let Step::Delivered(delivery) = client.poll() else {
        panic!("not delivered")
    };
    assert_eq!(delivery.accepted, ["bob@example.net"]);
    assert!(delivery.refused.is_empty());
    assert_eq!(delivery.reply.text(), "Ok: queued as ABC123");

    assert!(matches!(client.poll(), Step::Ready));
    client.quit();
    expect_write(&mut client, "QUIT\r\n");
    server_says(&mut client, "221 2.0.0 Bye\r\n");
    assert!(matches!(client.poll(), Step::Closed));

    let transcript = client.take_transcript().join("\n");
    assert!(!transcript.contains(PASSWORD), "{transcript}");
    assert!(!transcript.contains(&auth::plain_response(
        &config(TlsMode::StartTls, true).credentials.unwrap()
    )));
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
    let mut client = Client::new(config(TlsMode::StartTls, true)).unwrap();
    server_says(&mut client, "220 mx\r\n");
    expect_write(&mut client, "EHLO client.example\r\n");
    server_says(&mut client, "250-mx\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n");
    expect_write(&mut client, "STARTTLS\r\n");
    server_says(&mut client, "220 go\r\n");
    assert!(matches!(client.poll(), Step::StartTls));
    client.tls_established();
    expect_write(&mut client, "EHLO client.example\r\n");
    // Only what the server says over TLS counts: LOGIN, not the PLAIN offered before.
    server_says(&mut client, "250-mx\r\n250 AUTH LOGIN\r\n");
    expect_write(&mut client, "AUTH LOGIN\r\n");
    server_says(&mut client, "334 VXNlcm5hbWU6\r\n");
    expect_write(&mut client, "YWxpY2U=\r\n");
    server_says(&mut client, "334 UGFzc3dvcmQ6\r\n");
    expect_write(
        &mut client,
        &format!("{}\r\n", auth::login_response(PASSWORD)),
    );
    server_says(&mut client, "235 ok\r\n");
    assert!(matches!(client.poll(), Step::Ready));
    assert!(
        !client
            .take_transcript()
            .join("\n")
            .contains(&auth::login_response(PASSWORD))
    );
}

#[test]
fn missing_starttls_stops_before_credentials() {
    let mut client = Client::new(config(TlsMode::StartTls, true)).unwrap();
    server_says(&mut client, "220 mx\r\n");
    expect_write(&mut client, "EHLO client.example\r\n");
    server_says(&mut client, "250-mx\r\n250 AUTH PLAIN LOGIN\r\n");
    let error = expect_failure(&mut client);
    assert_eq!((error.phase, error.kind), (Phase::Tls, ErrorKind::Tls));
    assert!(client.is_closed());
    assert!(matches!(client.poll(), Step::Closed));
}

#[test]
fn refused_starttls_is_a_tls_error() {
    for reply in [
        "454 4.7.0 TLS not available\r\n",
        "502 no\r\n",
        "250 sure\r\n",
    ] {
        let mut client = Client::new(config(TlsMode::StartTls, true)).unwrap();
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
        assert!(matches!(client.poll(), Step::Closed));
    }
}

#[test]
fn bytes_after_starttls_reply_abort() {
    let mut client = Client::new(config(TlsMode::StartTls, true)).unwrap();
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
    assert!(matches!(client.poll(), Step::Closed));
}

#[test]
fn ehlo_refused_falls_back_to_helo_only_when_nothing_needs_extensions() {
    let mut client = Client::new(config(TlsMode::InsecurePlaintext, false)).unwrap();
    server_says(&mut client, "220 old\r\n");
    expect_write(&mut client, "EHLO client.example\r\n");
    server_says(&mut client, "502 what\r\n");
    expect_write(&mut client, "HELO client.example\r\n");
    server_says(&mut client, "250 old\r\n");
    assert!(matches!(client.poll(), Step::Ready));

    let mut client = Client::new(config(TlsMode::StartTls, false)).unwrap();
    server_says(&mut client, "220 old\r\n");
    expect_write(&mut client, "EHLO client.example\r\n");
    server_says(&mut client, "502 what\r\n");
    let error = expect_failure(&mut client);
    assert_eq!(error.kind, ErrorKind::Tls);
}

#[test]
fn wrong_password_is_an_auth_error() {
    let mut client = Client::new(config(TlsMode::Implicit, true)).unwrap();
    server_says(&mut client, "220 mx\r\n");
    expect_write(&mut client, "EHLO client.example\r\n");
    server_says(&mut client, "250-mx\r\n250 AUTH PLAIN\r\n");
    let Step::Transmit(_) = client.poll() else {
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
    let mut client = Client::new(config(TlsMode::Implicit, true)).unwrap();
    server_says(&mut client, "220 mx\r\n");
    expect_write(&mut client, "EHLO client.example\r\n");
    server_says(&mut client, "250-mx\r\n250 AUTH GSSAPI\r\n");
    let error = expect_failure(&mut client);
    assert_eq!((error.phase, error.kind), (Phase::Auth, ErrorKind::Auth));
    assert!(error.message.contains("GSSAPI"));
}

#[test]
fn credentials_are_refused_in_plaintext_mode() {
    let error = Client::new(config(TlsMode::InsecurePlaintext, true)).unwrap_err();
    assert_eq!(error.kind, ErrorKind::InvalidInput);
}

/// A ready implicit-TLS session without AUTH.
fn ready_client(extensions: &str) -> Client {
    let mut client = Client::new(config(TlsMode::Implicit, false)).unwrap();
    server_says(&mut client, "220 mx\r\n");
    expect_write(&mut client, "EHLO client.example\r\n");
    server_says(&mut client, &format!("250-mx\r\n250 {extensions}\r\n"));
    assert!(matches!(client.poll(), Step::Ready));
    client
}

#[test]
fn some_recipients_refused_the_rest_get_the_message() {
    let mut client = ready_client("8BITMIME");
    client
        .send(
            envelope(&["a@x.org", "b@x.org"]),
            "Subject: é\n\nhi".as_bytes(),
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
    let Step::Transmit(_) = client.poll() else {
        panic!()
    };
    server_says(&mut client, "250 queued\r\n");
    let Step::Delivered(delivery) = client.poll() else {
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
        .send(envelope(&["a@x.org", "b@x.org"]), b"hi")
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
    assert!(matches!(client.poll(), Step::Ready));
}

#[test]
fn data_answered_without_354_sends_no_content() {
    let mut client = ready_client("8BITMIME");
    client.send(envelope(&["a@x.org"]), b"secret body").unwrap();
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
    assert!(matches!(client.poll(), Step::Closed));
}

#[test]
fn refusal_after_the_dot_is_not_a_delivery() {
    let mut client = ready_client("8BITMIME");
    client.send(envelope(&["a@x.org"]), b"body").unwrap();
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
    assert!(matches!(client.poll(), Step::Ready));
}

#[test]
fn service_closing_is_transient_at_any_stage() {
    let mut client = ready_client("8BITMIME");
    client.send(envelope(&["a@x.org"]), b"body").unwrap();
    expect_write(&mut client, "MAIL FROM:<alice@example.org>\r\n");
    server_says(&mut client, "421 4.3.2 shutting down\r\n");
    let error = expect_failure(&mut client);
    assert_eq!((error.phase, error.transient), (Phase::Mail, true));
    assert!(matches!(client.poll(), Step::Closed));
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
        let error = client.send(envelope, b"hi").unwrap_err();
        assert_eq!(error.kind, ErrorKind::InvalidInput, "{recipient:?}");
        assert!(
            matches!(client.poll(), Step::Ready),
            "something was sent for {recipient:?}"
        );
    }
    assert!(client.send(envelope(&[]), b"hi").is_err());
    let long_local = format!("{}@x.org", "a".repeat(65));
    assert!(client.send(envelope(&[&long_local]), b"hi").is_err());
    assert!(
        Client::new(ClientConfig {
            ehlo_name: "host\r\nMAIL FROM:<x@y>".into(),
            ..config(TlsMode::Implicit, false)
        })
        .is_err()
    );
}

#[test]
fn message_over_the_size_limit_is_refused_up_front() {
    let mut client = ready_client("SIZE 10");
    let error = client
        .send(envelope(&["a@x.org"]), b"a body longer than ten bytes")
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::InvalidInput);
    assert!(matches!(client.poll(), Step::Ready));
}

#[test]
fn malformed_or_non_220_greeting_fails() {
    for (greeting, kind) in [
        ("554 go away\r\n", ErrorKind::Rejected),
        ("220-ok\r\n221 mixed\r\n", ErrorKind::Protocol),
        ("HTTP/1.1 400\r\n", ErrorKind::Protocol),
    ] {
        let mut client = Client::new(config(TlsMode::Implicit, false)).unwrap();
        server_says(&mut client, greeting);
        assert_eq!(expect_failure(&mut client).kind, kind, "{greeting:?}");
    }
}

#[test]
fn lost_connection_mid_data_is_never_a_delivery() {
    let mut client = ready_client("8BITMIME");
    client.send(envelope(&["a@x.org"]), b"body").unwrap();
    expect_write(&mut client, "MAIL FROM:<alice@example.org>\r\n");
    server_says(&mut client, "250 ok\r\n");
    expect_write(&mut client, "RCPT TO:<a@x.org>\r\n");
    server_says(&mut client, "250 ok\r\n");
    expect_write(&mut client, "DATA\r\n");
    server_says(&mut client, "354 go\r\n");
    expect_write(&mut client, "body\r\n.\r\n");
    let Step::Receive(wait) = client.poll() else {
        panic!()
    };
    assert_eq!(
        wait,
        Wait {
            phase: Phase::Data,
            timer: Timer::DataEnd
        }
    );
    let error = client.connection_lost(ErrorKind::Network, "closed");
    assert_eq!(error.phase, Phase::Data);
    assert!(matches!(client.poll(), Step::Closed));
    assert!(client.send(envelope(&["a@x.org"]), b"again").is_err());
}

#[test]
fn a_password_echoed_by_the_server_is_masked() {
    let mut client = Client::new(config(TlsMode::Implicit, true)).unwrap();
    server_says(&mut client, "220 mx\r\n");
    expect_write(&mut client, "EHLO client.example\r\n");
    server_says(&mut client, "250-mx\r\n250 AUTH PLAIN\r\n");
    let Step::Transmit(_) = client.poll() else {
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
        .send(envelope(&["a@x.org", "b@x.org"]), b"body")
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
    let Step::Delivered(delivery) = client.poll() else {
        panic!("not delivered")
    };
    assert_eq!(delivery.accepted, ["a@x.org"]);
    assert_eq!(delivery.refused[0].address, "b@x.org");
    assert!(matches!(client.poll(), Step::Ready));
}

#[test]
fn pipelining_with_the_sender_refused_reads_every_reply_then_resets() {
    let mut client = ready_client("PIPELINING");
    client
        .send(envelope(&["a@x.org", "b@x.org"]), CONTENT)
        .unwrap();
    let Step::Transmit(_) = client.poll() else {
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
    assert!(matches!(client.poll(), Step::Ready));
}

#[test]
fn pipelining_with_every_recipient_refused_never_sends_the_content() {
    let mut client = ready_client("PIPELINING");
    client.send(envelope(&["a@x.org"]), CONTENT).unwrap();
    let Step::Transmit(_) = client.poll() else {
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
    assert!(matches!(client.poll(), Step::Ready));
}

const CONTENT: &[u8] = b"never-to-be-sent";
