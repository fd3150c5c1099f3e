use super::*;

const AT_START: Instant = Instant::from_nanos(0);

fn config() -> ServerConfig {
    ServerConfig {
        hostname: "relay.test".to_owned(),
        max_message: 1000,
        max_recipients: 3,
        starttls: false,
        login: None,
        line_ms: 10_000,
        login_ms: 30_000,
    }
}

fn with_login() -> ServerConfig {
    ServerConfig {
        login: Some(Login {
            user: "app".to_owned(),
            password: "s3cret".to_owned(),
        }),
        ..config()
    }
}

/// A client's view: what it sends, and the replies and messages that come of it.
struct Talk {
    server: Server,
    now: Instant,
    replies: Vec<String>,
    messages: Vec<Incoming>,
    tls_started: usize,
    login_failures: usize,
    closed: bool,
}

impl Talk {
    fn new(config: ServerConfig) -> Talk {
        let mut talk = Talk {
            server: Server::new(config, AT_START),
            now: AT_START,
            replies: Vec::new(),
            messages: Vec::new(),
            tls_started: 0,
            login_failures: 0,
            closed: false,
        };
        talk.run();
        assert!(talk.replies.remove(0).starts_with("220 relay.test ESMTP"));
        talk
    }

    /// Sends `bytes` and returns the replies they brought.
    fn send(&mut self, bytes: &[u8]) -> Vec<String> {
        self.server.receive(bytes);
        self.run();
        std::mem::take(&mut self.replies)
    }

    fn line(&mut self, line: &str) -> String {
        let replies = self.send(format!("{line}\r\n").as_bytes());
        assert_eq!(replies.len(), 1, "{line}: {replies:?}");
        replies.into_iter().next().unwrap_or_default()
    }

    fn after_ms(&mut self, ms: u32) -> Vec<String> {
        self.now = self.now.plus_ms(ms);
        self.run();
        std::mem::take(&mut self.replies)
    }

    fn run(&mut self) {
        while let Some(event) = self.server.poll(self.now) {
            match event {
                Event::Send(bytes) => self.replies.push(String::from_utf8(bytes).unwrap()),
                Event::StartTls => self.tls_started += 1,
                Event::Message(incoming) => {
                    self.messages.push(incoming);
                    let id = format!("id{}", self.messages.len());
                    self.server.answer(Answer::Kept(id), self.now);
                }
                Event::LoginFailed => self.login_failures += 1,
                Event::Close => self.closed = true,
            }
        }
    }

    fn login(&mut self) {
        assert!(self.line("AUTH PLAIN AGFwcABzM2NyZXQ=").starts_with("235 "));
    }
}

fn code(reply: &str) -> &str {
    &reply[..3]
}

#[test]
fn a_message_is_kept_once_and_its_dots_unstuffed() {
    let mut talk = Talk::new(config());
    assert!(
        talk.line("EHLO client.test")
            .contains("250 ENHANCEDSTATUSCODES")
    );
    assert_eq!(code(&talk.line("MAIL FROM:<app@example.org>")), "250");
    assert_eq!(code(&talk.line("RCPT TO:<bob@example.net>")), "250");
    assert_eq!(code(&talk.line("DATA")), "354");
    let replies = talk.send(b"Subject: hi\r\n\r\n..leading dot\r\n.\r\n");
    assert_eq!(replies, ["250 2.0.0 queued as id1\r\n"]);
    assert_eq!(talk.messages.len(), 1);
    let message = &talk.messages[0];
    assert_eq!(message.sender, "app@example.org");
    assert_eq!(message.recipients, ["bob@example.net"]);
    assert_eq!(message.content, b"Subject: hi\r\n\r\n.leading dot\r\n");
    assert_eq!(code(&talk.line("QUIT")), "221");
    assert!(talk.closed);
}

#[test]
fn a_pipelined_transaction_is_answered_in_order() {
    let mut talk = Talk::new(config());
    let replies = talk.send(
        b"EHLO c\r\nMAIL FROM:<a@x.org>\r\nRCPT TO:<b@y.org>\r\nRCPT TO:<c@y.org>\r\nDATA\r\n",
    );
    let codes: Vec<&str> = replies.iter().map(|r| code(r)).collect();
    assert_eq!(codes, ["250", "250", "250", "250", "354"]);
}

/// Every end-of-data look-alike of the SMTP smuggling research (SEC Consult, 2023), each
/// followed by a second transaction that must never be taken.
#[test]
fn no_end_of_data_look_alike_ends_a_message_or_starts_another() {
    let smuggled = "MAIL FROM:<evil@x.org>\r\nRCPT TO:<victim@y.org>\r\nDATA\r\nsmuggled\r\n.\r\n";
    for look_alike in [
        "\n.\r\n",
        "\n.\n",
        "\r\n.\n",
        "\r.\r\n",
        "\r\n.\r",
        "\r.\r",
        "\n.\r",
        "\r\n\0.\r\n",
        "\r\n.\0\r\n",
        "\r\n.\r\r\n",
        "\r.\n",
        "\r\r\n.\r\r\n",
    ] {
        let mut talk = Talk::new(config());
        for line in [
            "EHLO c",
            "MAIL FROM:<app@x.org>",
            "RCPT TO:<bob@y.org>",
            "DATA",
        ] {
            talk.line(line);
        }
        let wire = format!("first part{look_alike}{smuggled}");
        let replies = talk.send(wire.as_bytes());
        assert_eq!(replies.len(), 1, "{look_alike:?}: {replies:?}");
        assert!(
            replies[0].starts_with("521 5.5.2 "),
            "{look_alike:?}: {replies:?}"
        );
        assert!(talk.messages.is_empty(), "{look_alike:?} kept a message");
        assert!(talk.closed, "{look_alike:?} left the connection open");
        assert!(talk.send(b"RSET\r\n").is_empty(), "read after closing");
    }
}

#[test]
fn a_bare_lf_or_cr_or_nul_in_a_command_closes_the_connection() {
    for wire in [
        &b"EHLO c\n"[..],
        b"EHLO c\rMAIL FROM:<a@x.org>\r\n",
        b"EHLO c\0\r\n",
        b"NOOP\rx",
    ] {
        let mut talk = Talk::new(config());
        let replies = talk.send(wire);
        assert_eq!(replies.len(), 1, "{wire:?}: {replies:?}");
        assert!(
            replies[0].starts_with("521 5.5.2 "),
            "{wire:?}: {replies:?}"
        );
        assert!(talk.closed, "{wire:?}");
    }
}

#[test]
fn a_line_too_long_closes_the_connection() {
    let mut talk = Talk::new(config());
    let replies = talk.send(&vec![b'a'; MAX_LINE + 1]);
    assert!(
        replies[0].starts_with("500 5.5.2 line too long"),
        "{replies:?}"
    );
    assert!(talk.closed);
}

#[test]
fn a_login_lasts_through_rset_and_a_second_ehlo() {
    let mut talk = Talk::new(with_login());
    assert!(talk.line("EHLO c").contains("AUTH PLAIN LOGIN"));
    talk.login();
    for reset in ["RSET", "EHLO c"] {
        assert_eq!(code(&talk.line(reset)), "250");
        assert_eq!(
            code(&talk.line("MAIL FROM:<app@x.org>")),
            "250",
            "after {reset}"
        );
        assert_eq!(code(&talk.line("RSET")), "250");
    }
}

#[test]
fn mail_waits_for_the_login_and_bad_logins_are_slow_and_few() {
    let mut talk = Talk::new(with_login());
    talk.line("EHLO c");
    assert!(talk.line("MAIL FROM:<a@x.org>").starts_with("530 5.7.0"));
    for attempt in 1..=MAX_LOGIN_FAILURES {
        assert!(talk.send(b"AUTH PLAIN AGFwcAB3cm9uZw==\r\n").is_empty());
        assert!(talk.after_ms(LOGIN_FAILURE_DELAY_MS - 1).is_empty());
        let replies = talk.after_ms(1);
        let expected = if attempt < MAX_LOGIN_FAILURES {
            "535 5.7.8"
        } else {
            "421 4.7.0"
        };
        assert!(replies[0].starts_with(expected), "{attempt}: {replies:?}");
    }
    assert!(talk.closed);
}

#[test]
fn auth_login_and_a_cancelled_auth() {
    let mut talk = Talk::new(with_login());
    talk.line("EHLO c");
    assert_eq!(talk.line("AUTH LOGIN"), "334 VXNlcm5hbWU6\r\n");
    assert_eq!(talk.line("*"), "501 5.7.0 authentication cancelled\r\n");
    assert_eq!(talk.line("AUTH LOGIN YXBw"), "334 UGFzc3dvcmQ6\r\n");
    assert!(talk.line("czNjcmV0").starts_with("235 "));
    assert!(talk.line("AUTH PLAIN AGFwcABzM2NyZXQ=").starts_with("503 "));
}

#[test]
fn idle_clients_that_never_log_in_are_bounded_in_commands_and_time() {
    let mut talk = Talk::new(with_login());
    for _ in 0..MAX_COMMANDS_BEFORE_LOGIN {
        assert_eq!(code(&talk.line("NOOP")), "250");
    }
    assert!(
        talk.line("NOOP")
            .starts_with("421 4.7.0 too many commands before login")
    );
    assert!(talk.closed);

    let mut talk = Talk::new(with_login());
    for _ in 0..5 {
        talk.after_ms(5_000);
        assert_eq!(code(&talk.line("NOOP")), "250");
    }
    let replies = talk.after_ms(5_000);
    assert!(
        replies[0].starts_with("421 4.7.0 no login in time"),
        "{replies:?}"
    );
    assert!(talk.closed);
}

#[test]
fn a_client_that_waits_too_long_for_a_line_is_cut_off() {
    let mut talk = Talk::new(config());
    talk.send(b"EHLO c\r\nNO");
    assert_eq!(talk.server.deadline(), Some(AT_START.plus_ms(10_000)));
    assert!(talk.after_ms(9_999).is_empty());
    assert!(talk.after_ms(1)[0].starts_with("421 4.4.2 too slow"));
    assert!(talk.closed);
}

#[test]
fn junk_and_errors_are_bounded_after_the_login_too() {
    let mut talk = Talk::new(config());
    // EHLO counts too.
    talk.line("EHLO c");
    for _ in 1..MAX_JUNK_COMMANDS {
        talk.line("NOOP");
    }
    assert!(
        talk.line("NOOP")
            .starts_with("421 4.7.0 too many commands without mail")
    );

    let mut talk = Talk::new(config());
    for _ in 0..MAX_ERRORS {
        assert_eq!(code(&talk.line("BOGUS")), "500");
    }
    assert!(talk.line("BOGUS").starts_with("421 4.7.0 too many errors"));
    assert!(talk.closed);
}

#[test]
fn the_null_sender_is_taken() {
    let mut talk = Talk::new(config());
    talk.line("EHLO c");
    assert_eq!(code(&talk.line("MAIL FROM:<>")), "250");
    talk.line("RCPT TO:<bob@y.org>");
    talk.line("DATA");
    talk.send(b"bounce\r\n.\r\n");
    assert_eq!(talk.messages[0].sender, "");
}

#[test]
fn addresses_are_checked_as_the_sender_checks_them() {
    let mut talk = Talk::new(config());
    talk.line("EHLO c");
    for bad in ["bob@@x.org", "a\u{1b}[31m@x.org", "a,b@x.org", "nodomain"] {
        let reply = talk.line(&format!("MAIL FROM:<{bad}>"));
        assert!(reply.starts_with("553 5.1.7"), "{bad}: {reply}");
        assert!(!reply.contains('\u{1b}'), "{reply:?}");
    }
    talk.line("MAIL FROM: <a@x.org> BODY=8BITMIME SIZE=10");
    for bad in ["bob@@x.org", "a\u{1b}@x.org", "a,b@x.org", "<bob@y.org>"] {
        let reply = talk.line(&format!("RCPT TO:<{bad}>"));
        assert!(
            reply.starts_with("553 5.1.3") || reply.starts_with("501"),
            "{bad}: {reply}"
        );
        assert!(!reply.contains('\u{1b}'), "{reply:?}");
    }
    assert!(talk.line("RCPT TO:bob@y.org").starts_with("501 5.5.4"));
    assert!(
        talk.line("RCPT TO:<bob@y.org> NOTIFY=NEVER")
            .starts_with("555")
    );
    assert!(
        talk.line("DATA")
            .starts_with("554 5.5.1 no valid recipients")
    );
}

#[test]
fn too_many_recipients_and_too_big_a_message() {
    let mut talk = Talk::new(config());
    talk.line("EHLO c");
    assert!(
        talk.line("MAIL FROM:<a@x.org> SIZE=1001")
            .starts_with("552 5.3.4")
    );
    talk.line("MAIL FROM:<a@x.org>");
    for n in 0..3 {
        assert_eq!(code(&talk.line(&format!("RCPT TO:<b{n}@y.org>"))), "250");
    }
    assert!(talk.line("RCPT TO:<b4@y.org>").starts_with("452 4.5.3"));
    talk.line("DATA");
    let big = "x".repeat(600) + "\r\n";
    let replies = talk.send(format!("{big}{big}.\r\n").as_bytes());
    assert!(replies[0].starts_with("552 5.3.4"), "{replies:?}");
    assert!(talk.messages.is_empty());
    // The session goes on.
    assert_eq!(code(&talk.line("MAIL FROM:<a@x.org>")), "250");
}

#[test]
fn content_pipelined_after_a_refused_data_never_runs_as_commands() {
    let mut talk = Talk::new(config());
    talk.line("EHLO c");
    let replies = talk
        .send(b"MAIL FROM:<a@x.org>\r\nRCPT TO:<bad@@y.org>\r\nDATA\r\nMAIL FROM:<evil@x.org>\r\n");
    let codes: Vec<&str> = replies.iter().map(|r| code(r)).collect();
    assert_eq!(codes, ["250", "553", "554", "554"], "{replies:?}");
    assert!(talk.closed);
}

#[test]
fn starttls_forgets_the_clear_and_the_login_waits_for_it() {
    let config = ServerConfig {
        starttls: true,
        ..with_login()
    };
    let mut talk = Talk::new(config);
    let ehlo = talk.line("EHLO c");
    assert!(
        ehlo.contains("STARTTLS") && !ehlo.contains("AUTH"),
        "{ehlo}"
    );
    assert!(
        talk.line("AUTH PLAIN AGFwcABzM2NyZXQ=")
            .starts_with("530 5.7.0")
    );
    assert!(talk.line("MAIL FROM:<a@x.org>").starts_with("530 5.7.0"));
    // Injected after STARTTLS in the clear: dropped, never answered.
    let replies = talk.send(b"STARTTLS\r\nMAIL FROM:<evil@x.org>\r\n");
    assert_eq!(replies, ["220 2.0.0 Ready to start TLS\r\n"]);
    assert_eq!(talk.tls_started, 1);
    assert!(
        talk.line("MAIL FROM:<a@x.org>")
            .starts_with("503 5.5.1 EHLO first")
    );
    let ehlo = talk.line("EHLO c");
    assert!(
        !ehlo.contains("STARTTLS") && ehlo.contains("AUTH PLAIN LOGIN"),
        "{ehlo}"
    );
    assert!(talk.line("STARTTLS").starts_with("502"));
    talk.login();
    assert_eq!(code(&talk.line("MAIL FROM:<a@x.org>")), "250");
}

#[test]
fn a_message_not_kept_is_answered_451_and_the_session_goes_on() {
    let mut server = Server::new(config(), AT_START);
    server.receive(
        b"EHLO c\r\nMAIL FROM:<a@x.org>\r\nRCPT TO:<b@y.org>\r\nDATA\r\nhi\r\n.\r\nNOOP\r\n",
    );
    let mut events = Vec::new();
    while let Some(event) = server.poll(AT_START) {
        events.push(event);
    }
    assert!(matches!(events.last(), Some(Event::Message(_))));
    // Nothing more is read until the answer.
    assert_eq!(server.deadline(), None);
    server.answer(Answer::NotNow("cannot queue now".to_owned()), AT_START);
    let replies: Vec<Event> = std::iter::from_fn(|| server.poll(AT_START)).collect();
    assert_eq!(
        replies,
        [
            Event::Send(b"451 4.3.0 cannot queue now\r\n".to_vec()),
            Event::Send(b"250 2.0.0 OK\r\n".to_vec()),
        ]
    );
}

#[test]
fn the_password_never_shows_in_debug() {
    let shown = format!("{:?}", Server::new(with_login(), AT_START));
    assert!(!shown.contains("s3cret"), "{shown}");
}

#[test]
fn a_client_is_proven_by_its_login_or_without_one_by_its_first_mail() {
    let mut talk = Talk::new(with_login());
    talk.line("EHLO c");
    assert!(!talk.server.keeps_its_place());
    talk.login();
    assert!(talk.server.keeps_its_place());

    let mut talk = Talk::new(config());
    talk.line("EHLO c");
    talk.line("NOOP");
    assert!(!talk.server.keeps_its_place());
    talk.line("MAIL FROM:<a@x.org>");
    assert!(talk.server.keeps_its_place());
}

#[test]
fn after_failures_elsewhere_a_success_waits_as_long_as_a_failure() {
    let mut talk = Talk::new(with_login());
    talk.server.set_login_delay(4_000);
    talk.line("EHLO c");
    // The failure is reported at once, before its reply, which waits 4 s.
    assert!(talk.send(b"AUTH PLAIN AGFwcAB3cm9uZw==\r\n").is_empty());
    assert_eq!(talk.login_failures, 1);
    assert!(talk.after_ms(3_999).is_empty());
    assert!(talk.after_ms(1)[0].starts_with("535 "));
    // So does the right password: hanging up early tells a guesser nothing.
    assert!(talk.send(b"AUTH PLAIN AGFwcABzM2NyZXQ=\r\n").is_empty());
    assert!(talk.after_ms(3_999).is_empty());
    assert!(talk.after_ms(1)[0].starts_with("235 "));
    assert_eq!(talk.login_failures, 1);
    // Without a delay, a success is answered at once.
    let mut talk = Talk::new(with_login());
    talk.line("EHLO c");
    talk.login();
}

#[test]
fn utf8_addresses_need_smtputf8_and_source_routes_are_dropped() {
    let mut talk = Talk::new(config());
    talk.line("EHLO c");
    assert!(
        talk.line("MAIL FROM:<élève@x.org>")
            .starts_with("553 5.6.7")
    );
    assert_eq!(code(&talk.line("MAIL FROM:<a@x.org>")), "250");
    assert!(talk.line("RCPT TO:<élève@y.org>").starts_with("553 5.6.7"));
    assert_eq!(code(&talk.line("RSET")), "250");
    assert_eq!(code(&talk.line("MAIL FROM:<élève@x.org> SMTPUTF8")), "250");
    assert_eq!(
        code(&talk.line("RCPT TO:<@relay.example,@other.example:b@y.org>")),
        "250"
    );
    assert_eq!(code(&talk.line("RCPT TO:<zoë@y.org>")), "250");
    talk.line("DATA");
    talk.send(b"hi\r\n.\r\n");
    assert_eq!(talk.messages[0].recipients, ["b@y.org", "zoë@y.org"]);
}

#[test]
fn ehlo_and_rcpts_past_the_limit_are_bounded_too() {
    let mut talk = Talk::new(config());
    for _ in 0..MAX_JUNK_COMMANDS {
        assert_eq!(code(&talk.line("EHLO c")), "250");
    }
    assert!(talk.line("EHLO c").starts_with("421 4.7.0"));

    let mut talk = Talk::new(config());
    talk.line("EHLO c");
    talk.line("MAIL FROM:<a@x.org>");
    for n in 0..3 {
        talk.line(&format!("RCPT TO:<b{n}@y.org>"));
    }
    for _ in 0..MAX_RECIPIENT_OVERSHOOT {
        assert!(talk.line("RCPT TO:<c@y.org>").starts_with("452 "));
    }
    assert!(talk.line("RCPT TO:<c@y.org>").starts_with("421 4.7.0"));
    assert!(talk.closed);
}

#[test]
fn a_huge_size_is_too_big_and_auth_without_a_mechanism_is_a_syntax_error() {
    let mut talk = Talk::new(with_login());
    talk.line("EHLO c");
    assert!(talk.line("AUTH").starts_with("501 5.5.4"));
    talk.login();
    let reply = talk.line("MAIL FROM:<a@x.org> SIZE=99999999999999999999999999");
    assert!(reply.starts_with("552 5.3.4"), "{reply}");
    assert!(
        talk.line("MAIL FROM:<a@x.org> SIZE=12x")
            .starts_with("555 ")
    );
}

#[test]
fn content_after_a_refused_data_or_a_bdat_never_runs_as_commands() {
    // DATA refused before STARTTLS, with content behind it.
    let mut talk = Talk::new(ServerConfig {
        starttls: true,
        ..config()
    });
    talk.line("EHLO c");
    let replies = talk.send(b"DATA\r\nNOOP\r\nQUIT\r\n");
    let codes: Vec<&str> = replies.iter().map(|r| code(r)).collect();
    assert_eq!(codes, ["530", "554"], "{replies:?}");
    assert!(talk.closed);
    // BDAT is not offered: its chunk would read as commands.
    let mut talk = Talk::new(config());
    talk.line("EHLO c");
    talk.line("MAIL FROM:<a@x.org>");
    talk.line("RCPT TO:<b@y.org>");
    let replies = talk.send(b"BDAT 30 LAST\r\nRCPT TO:<carol@y.org>\r\nDATA\r\n");
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert!(replies[0].starts_with("502 5.5.1 BDAT"), "{replies:?}");
    assert!(talk.closed);
}

#[test]
fn a_held_verdict_keeps_the_connections_place_right_or_wrong() {
    for password in ["AGFwcAB3cm9uZw==", "AGFwcABzM2NyZXQ="] {
        let mut talk = Talk::new(with_login());
        talk.server.set_login_delay(15_000);
        talk.line("EHLO c");
        assert!(!talk.server.keeps_its_place());
        assert!(
            talk.send(format!("AUTH PLAIN {password}\r\n").as_bytes())
                .is_empty()
        );
        assert!(talk.server.keeps_its_place(), "{password}");
    }
}

#[test]
fn bdat_closes_even_before_starttls_and_data_tab_is_data() {
    let mut talk = Talk::new(ServerConfig {
        starttls: true,
        ..config()
    });
    talk.line("EHLO c");
    let replies = talk.send(b"BDAT 40 LAST\r\nNOOP\r\nNOOP\r\n");
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert!(talk.closed);
    let mut talk = Talk::new(config());
    talk.line("EHLO c");
    talk.line("MAIL FROM:<a@x.org>");
    talk.line("RCPT TO:<b@y.org>");
    assert_eq!(code(&talk.line("DATA\t")), "354");
}
