//! Every exit code README.md lists, each provoked through the `sendbox` command by the
//! real condition: scripted servers on loopback sockets answering what a real server may
//! answer, names that do not resolve, files that are missing, a stdin that cannot be read.
//!
//! A module of the `cli` test binary (tests/cli.rs), which declares the test targets'
//! shared `support` module.

use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::scripted::{
    EHLO_PLAIN, EHLO_STARTTLS, GREETING, ScriptedServer, Step, up_to_starttls,
};
use crate::support::timed::TimedServer;
use crate::support::*;
use rustls::ServerConfig;
use sendbox_loopback::{AuthMechanism, ServerTls, TestPki};

const EHLO_AUTH: &str = "250-exit.test\r\n250 AUTH PLAIN\r\n";

/// A directory for one test's files, with the test CA in `ca.pem`.
struct Files {
    dir: tempfile::TempDir,
    pki: TestPki,
}

impl Files {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pki = TestPki::generate().unwrap();
        std::fs::write(dir.path().join("ca.pem"), &pki.ca_pem).unwrap();
        Files { dir, pki }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn ca(&self) -> String {
        self.path("ca.pem").to_str().unwrap().to_owned()
    }

    fn tls(&self) -> Option<Arc<ServerConfig>> {
        Some(self.pki.server_config())
    }
}

/// Runs `sendbox` with `args` (see [`sendbox_command`]) and `stdin` as its input.
fn sendbox(files: &Files, args: &[&str], stdin: Stdio) -> Output {
    sendbox_command(sendbox_bin(), files.dir.path(), PASSWORD)
        .args(args)
        .stdin(stdin)
        .output()
        .expect("sendbox runs")
}

/// `sendbox send` of a small composed message to the server on `port`, with `extra`.
fn send_to(files: &Files, port: u16, tls: &str, extra: &[&str]) -> Output {
    let server = format!("127.0.0.1:{port}");
    let mut args = vec![
        "send",
        "--server",
        &server,
        "--tls",
        tls,
        "--from",
        "alice@example.org",
        "--subject",
        "exit codes",
        "--body",
        "x",
    ];
    args.extend_from_slice(extra);
    sendbox(files, &args, Stdio::null())
}

/// The same with TLS checked against the test CA and the test login.
fn send_with_login(files: &Files, port: u16, extra: &[&str]) -> Output {
    let ca = files.ca();
    let mut args = vec![
        "--ca",
        &ca,
        "--user",
        USER,
        "--password-env",
        "SENDBOX_TEST_PASSWORD",
        "--to",
        "bob@example.org",
    ];
    args.extend_from_slice(extra);
    send_to(files, port, "starttls", &args)
}

/// A script up to a login over STARTTLS, then the server's answer to AUTH.
fn auth_answered(answer: &'static str) -> Vec<Step> {
    vec![
        Step::Send(GREETING),
        Step::Expect("EHLO"),
        Step::Send(EHLO_STARTTLS),
        Step::Expect("STARTTLS"),
        Step::Send("220 2.0.0 go ahead\r\n"),
        Step::Tls,
        Step::Expect("EHLO"),
        Step::Send(EHLO_AUTH),
        Step::Expect("AUTH PLAIN"),
        Step::Send(answer),
        Step::Silent,
    ]
}

/// A plaintext transaction whose recipients get `answers`, one each; the message is
/// accepted when `delivered`.
fn recipients_answered(answers: &[&'static str], delivered: bool) -> Vec<Step> {
    let mut script = vec![
        Step::Send(GREETING),
        Step::Expect("EHLO"),
        Step::Send(EHLO_PLAIN),
        Step::Expect("MAIL FROM:<alice@example.org>"),
        Step::Send("250 2.1.0 ok\r\n"),
    ];
    for answer in answers {
        script.extend([Step::Expect("RCPT TO:"), Step::Send(answer)]);
    }
    if delivered {
        script.extend([
            Step::Expect("DATA"),
            Step::Send("354 go ahead\r\n"),
            Step::ExpectData,
            Step::Send("250 2.0.0 Ok: queued as EXIT1\r\n"),
        ]);
    } else {
        // Nobody took it: the client resets the transaction.
        script.extend([Step::Expect("RSET"), Step::Send("250 2.0.0 ok\r\n")]);
    }
    script.push(Step::Silent);
    script
}

#[track_caller]
fn assert_code(output: &Output, code: i32, needle: &str) {
    assert_exit(output, code, needle);
    // Whatever the failure, the password never shows.
    assert!(!text(output).contains(PASSWORD), "{}", text(output));
}

#[test]
fn exit_64_for_a_wrong_command_line() {
    let files = Files::new();
    for args in [
        &["send", "--server", "127.0.0.1:1", "--tls", "ssl"][..],
        &["send", "--server", "127.0.0.1:1", "--timeout", "3601"],
        &["sendmail", "-bs"],
        &["frobnicate"],
        &["grant", "--server", "127.0.0.1", "-o", "x.wasm"],
        &["grant", "--server", "bad host:25", "-o", "x.wasm"],
        &["send", "--server", "bad host:25", "--to", "b@example.org"],
        &["serve", "--password-env", "RELAY_PASSWORD"],
        &[
            "serve",
            "--require-auth",
            "",
            "--password-env",
            "RELAY_PASSWORD",
        ],
        &[
            "batch",
            "--server",
            "127.0.0.1:1",
            "--to",
            "b@x",
            "--raw",
            "m",
            "--count",
            "0",
        ],
    ] {
        let output = sendbox(&files, args, Stdio::null());
        assert_eq!(
            output.status.code(),
            Some(64),
            "{args:?}: {}",
            text(&output)
        );
        assert!(!output.stderr.is_empty(), "{args:?}: {}", text(&output));
    }
}

#[test]
fn exit_65_for_an_invalid_address_before_connecting() {
    let files = Files::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Not RFC 5321 mailboxes: a space, two @, an empty label, a dot ending the local
    // part, a control. (A comma separates addresses in --to.)
    for bad in [
        "bob@exa mple.org",
        "bob@@example.net",
        "bob@example..net",
        "bob.@example.net",
        "bob\u{1b}@example.net",
    ] {
        let output = send_to(&files, port, "none", &["--to", bad]);
        assert_code(&output, 65, &format!("{bad:?}"));
        // Nothing was sent: no SMTP step is said to have failed.
        assert_code(&output, 65, "invalid input, nothing sent: ");
    }
    let output = send_to(
        &files,
        port,
        "none",
        &["--to", "bob@example.org", "--header", "From: x"],
    );
    assert_code(&output, 65, "invalid input, nothing sent: ");
    // The input was refused before any connection.
    listener.set_nonblocking(true).unwrap();
    assert!(listener.accept().is_err(), "it connected anyway");
}

#[test]
fn an_empty_password_file_is_refused_before_connecting() {
    let files = Files::new();
    let empty = files.path("empty-password");
    std::fs::write(&empty, "\nsecond line\n").unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let args = [
        "--to",
        "bob@example.org",
        "--user",
        USER,
        "--password-file",
        empty.to_str().unwrap(),
    ];
    let output = send_to(&files, port, "starttls", &args);
    assert_code(&output, 64, "its first line, the password, is empty");
    listener.set_nonblocking(true).unwrap();
    assert!(listener.accept().is_err(), "it connected anyway");
}

#[test]
fn exit_66_for_each_file_that_cannot_be_read() {
    let files = Files::new();
    let missing = files.path("missing");
    let missing = missing.to_str().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    for option in [
        "--raw",
        "--body-file",
        "--attach",
        "--html",
        "--ca",
        "--password-file",
    ] {
        let mut args = vec!["--to", "bob@example.org", option, missing];
        if option == "--password-file" {
            args.extend(["--user", USER]);
        }
        if option == "--raw" || option == "--body-file" {
            // --raw goes without the composed message's options, --body-file without --body.
            let server = format!("127.0.0.1:{port}");
            let mut all = vec![
                "send",
                "--server",
                &server,
                "--tls",
                "none",
                "--to",
                "b@example.org",
                option,
                missing,
            ];
            if option == "--body-file" {
                all.extend(["--from", "a@example.org", "--subject", "s"]);
            }
            let output = sendbox(&files, &all, Stdio::null());
            assert_code(&output, 66, "cannot read");
            continue;
        }
        let output = send_to(&files, port, "starttls", &args);
        assert_eq!(
            output.status.code(),
            Some(66),
            "{option}: {}",
            text(&output)
        );
        assert!(
            text(&output).contains(missing),
            "{option}: {}",
            text(&output)
        );
    }
    // Nothing was read, so nothing connected.
    listener.set_nonblocking(true).unwrap();
    assert!(listener.accept().is_err(), "it connected anyway");
}

#[test]
fn exit_67_when_refusals_were_all_permanent() {
    let files = Files::new();
    // One accepted, one refused for good: delivered to the one, 67 for the other.
    let server = ScriptedServer::start(
        recipients_answered(&["250 2.1.5 ok\r\n", "550 5.1.1 no such user\r\n"], true),
        None,
    );
    let args = ["--to", "bob@example.org", "--to", "nobody@example.org"];
    let output = send_to(&files, server.port(), "none", &args);
    assert_code(
        &output,
        67,
        "recipient nobody@example.org refused: 550 5.1.1",
    );
    assert!(text(&output).contains("sent to bob@example.org"));
    assert_eq!(server.seen().stopped, None);

    // The only recipient refused for good.
    let server = ScriptedServer::start(
        recipients_answered(&["550 5.1.1 no such user\r\n"], false),
        None,
    );
    let output = send_to(
        &files,
        server.port(),
        "none",
        &["--to", "nobody@example.org"],
    );
    assert_code(&output, 67, "550 5.1.1");
}

#[test]
fn exit_68_when_the_name_does_not_resolve() {
    let files = Files::new();
    let args = [
        "send",
        "--server",
        "nonexistent.invalid",
        "--tls",
        "none",
        "--from",
        "a@example.org",
        "--to",
        "b@example.org",
        "--body",
        "x",
    ];
    let output = sendbox(&files, &args, Stdio::null());
    assert_code(&output, 68, "cannot resolve nonexistent.invalid");
}

#[test]
fn exit_69_for_tls_failures_and_permanent_refusals() {
    let files = Files::new();
    // STARTTLS not offered: no plaintext fallback.
    let server = ScriptedServer::start(
        vec![
            Step::Send(GREETING),
            Step::Expect("EHLO"),
            Step::Send(EHLO_PLAIN),
            Step::Silent,
        ],
        files.tls(),
    );
    let output = send_with_login(&files, server.port(), &[]);
    assert_code(&output, 69, "does not offer STARTTLS");

    // STARTTLS refused for good.
    let server = ScriptedServer::start(up_to_starttls("554 5.7.3 no TLS for you\r\n"), files.tls());
    let output = send_with_login(&files, server.port(), &[]);
    assert_code(&output, 69, "554 5.7.3");

    // The sender refused for good.
    let server = ScriptedServer::start(
        vec![
            Step::Send(GREETING),
            Step::Expect("EHLO"),
            Step::Send(EHLO_PLAIN),
            Step::Expect("MAIL FROM:"),
            Step::Send("554 5.7.1 sender rejected\r\n"),
            Step::Expect("RSET"),
            Step::Send("250 2.0.0 ok\r\n"),
            Step::Silent,
        ],
        None,
    );
    let output = send_to(&files, server.port(), "none", &["--to", "b@example.org"]);
    assert_code(&output, 69, "554 5.7.1");
}

/// The component fails when a message does not fit in its memory cap (64 MiB): the only
/// way to make it fail from the command line without a bug to find.
#[test]
fn exit_70_when_the_component_fails() {
    let files = Files::new();
    let server = ScriptedServer::start(vec![Step::Send(GREETING), Step::Silent], None);
    let big = files.path("big.eml");
    let mut message = b"Subject: too big for the sandbox\r\n\r\n".to_vec();
    message.resize(80 << 20, b'x');
    std::fs::write(&big, &message).unwrap();
    let target = format!("127.0.0.1:{}", server.port());
    let args = [
        "send",
        "--server",
        &target,
        "--tls",
        "none",
        "--from",
        "a@example.org",
        "--to",
        "b@example.org",
        "--raw",
        big.to_str().unwrap(),
    ];
    let output = sendbox(&files, &args, Stdio::null());
    assert_code(&output, 70, "the sandboxed component failed");
}

#[test]
fn exit_73_when_the_granted_component_cannot_be_written() {
    let files = Files::new();
    let output = files.path("no-such-directory/granted.wasm");
    let args = [
        "grant",
        "--server",
        "127.0.0.1:25",
        "-o",
        output.to_str().unwrap(),
    ];
    assert_code(&sendbox(&files, &args, Stdio::null()), 73, "cannot write");
}

#[test]
fn exit_74_when_sendmail_cannot_read_stdin() {
    let files = Files::new();
    let server = loopback(ServerTls::StartTls);
    let config = files.path("config.toml");
    std::fs::write(
        &config,
        format!(
            "[accounts.loop]\nserver = \"127.0.0.1:{}\"\nfrom = \"a@example.org\"\n",
            server.port()
        ),
    )
    .unwrap();
    // A directory as stdin: open, but every read fails (EISDIR).
    let dir = std::fs::File::open(files.dir.path()).unwrap();
    let args = [
        "sendmail",
        "-C",
        config.to_str().unwrap(),
        "bob@example.org",
    ];
    let output = sendbox(&files, &args, Stdio::from(dir));
    assert_code(&output, 74, "cannot read the message");
    assert_eq!(server.connections(), 0);
}

#[test]
fn exit_75_for_every_temporary_failure() {
    let files = Files::new();

    // 4xx to AUTH: a temporary failure, not a refused login.
    let server = ScriptedServer::start(
        auth_answered("454 4.7.0 Temporary authentication failure\r\n"),
        files.tls(),
    );
    let output = send_with_login(&files, server.port(), &[]);
    assert_code(&output, 75, "454 4.7.0");

    // 4xx to STARTTLS.
    let server = ScriptedServer::start(
        up_to_starttls("454 4.7.0 TLS not available due to temporary reason\r\n"),
        files.tls(),
    );
    let output = send_with_login(&files, server.port(), &[]);
    assert_code(&output, 75, "454 4.7.0");

    // 421 instead of a greeting.
    let server = ScriptedServer::start(
        vec![
            Step::Send("421 4.3.2 busy, come back later\r\n"),
            Step::Silent,
        ],
        None,
    );
    let output = send_to(&files, server.port(), "none", &["--to", "b@example.org"]);
    assert_code(&output, 75, "421 4.3.2");

    // One recipient accepted, one deferred: those deferred must be tried again.
    let server = ScriptedServer::start(
        recipients_answered(&["250 2.1.5 ok\r\n", "450 4.2.1 mailbox busy\r\n"], true),
        None,
    );
    let args = ["--to", "bob@example.org", "--to", "busy@example.org"];
    let output = send_to(&files, server.port(), "none", &args);
    assert_code(&output, 75, "recipient busy@example.org refused: 450 4.2.1");
    assert!(text(&output).contains("sent to bob@example.org"));

    // Accepted, deferred and refused for good: still worth a retry for the deferred one.
    let server = ScriptedServer::start(
        recipients_answered(
            &[
                "250 2.1.5 ok\r\n",
                "450 4.2.1 mailbox busy\r\n",
                "550 5.1.1 no such user\r\n",
            ],
            true,
        ),
        None,
    );
    let args = [
        "--to",
        "bob@example.org",
        "--to",
        "busy@example.org",
        "--to",
        "nobody@example.org",
    ];
    let output = send_to(&files, server.port(), "none", &args);
    assert_code(&output, 75, "450 4.2.1");

    // Every recipient deferred.
    let server = ScriptedServer::start(
        recipients_answered(&["450 4.2.1 mailbox busy\r\n"], false),
        None,
    );
    let output = send_to(&files, server.port(), "none", &["--to", "busy@example.org"]);
    assert_code(&output, 75, "450 4.2.1");

    // Nobody listening: the connection is refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let output = send_to(&files, port, "none", &["--to", "b@example.org"]);
    assert_code(&output, 75, "connect failed");

    // A server that stops answering: --timeout.
    let server = TimedServer::start(vec![Step::Send(GREETING), Step::Silent], 1);
    let output = send_to(
        &files,
        server.port(),
        "none",
        &["--to", "b@example.org", "--timeout", "1"],
    );
    assert_code(&output, 75, "timeout");
}

#[test]
fn exit_76_when_the_server_breaks_the_protocol() {
    let files = Files::new();
    let server = ScriptedServer::start(
        vec![Step::Send("HTTP/1.1 400 Bad Request\r\n"), Step::Silent],
        None,
    );
    let output = send_to(&files, server.port(), "none", &["--to", "b@example.org"]);
    assert_code(&output, 76, "protocol");
}

#[test]
fn exit_77_when_the_login_is_refused() {
    let files = Files::new();
    let server = ScriptedServer::start(
        auth_answered("535 5.7.8 Error: authentication failed\r\n"),
        files.tls(),
    );
    let output = send_with_login(&files, server.port(), &[]);
    assert_code(&output, 77, "535 5.7.8");

    // No mechanism both sides allow (the account insists on LOGIN; only PLAIN offered).
    let server = loopback_with(ServerTls::StartTls, vec![AuthMechanism::Plain], Vec::new());
    std::fs::write(files.path("ca.pem"), server.ca_pem()).unwrap();
    let output = send_with_login(&files, server.port(), &["--auth", "login"]);
    assert_code(&output, 77, "AUTH failed");
    assert!(server.received().is_empty());
}

#[test]
fn exit_78_for_a_bad_config_file() {
    let files = Files::new();
    let config = files.path("config.toml");
    std::fs::write(
        &config,
        "[accounts.work]\nserver = \"127.0.0.1:1\"\npasword_command = \"pass\"\n",
    )
    .unwrap();
    for args in [
        &[
            "send",
            "--config",
            config.to_str().unwrap(),
            "--to",
            "b@example.org",
            "--body",
            "x",
        ][..],
        &["sendmail", "-C", config.to_str().unwrap(), "b@example.org"],
        &[
            "batch",
            "--config",
            config.to_str().unwrap(),
            "--to",
            "b@example.org",
            "--raw",
            config.to_str().unwrap(),
        ],
    ] {
        let output = sendbox(&files, args, Stdio::null());
        assert_code(&output, 78, "unknown field `pasword_command`");
    }
}

// --- --timeout bounds the whole send --------------------------------------------------------

/// Five recipients, each answered 0.8 s after it is asked: every stage is quick, the whole
/// takes 4 s.
fn slow_recipients() -> Vec<Step> {
    let mut script = vec![
        Step::Send(GREETING),
        Step::Expect("EHLO"),
        Step::Send(EHLO_PLAIN),
        Step::Expect("MAIL FROM:"),
        Step::Send("250 2.1.0 ok\r\n"),
    ];
    for _ in 0..5 {
        script.extend([
            Step::Expect("RCPT TO:"),
            Step::Pause(Duration::from_millis(800)),
            Step::Send("250 2.1.5 ok\r\n"),
        ]);
    }
    script.extend([
        Step::Expect("DATA"),
        Step::Send("354 go ahead\r\n"),
        Step::ExpectData,
        Step::Send("250 2.0.0 Ok: queued\r\n"),
        Step::Silent,
    ]);
    script
}

const FIVE: [&str; 10] = [
    "--to",
    "r1@example.org",
    "--to",
    "r2@example.org",
    "--to",
    "r3@example.org",
    "--to",
    "r4@example.org",
    "--to",
    "r5@example.org",
];

#[test]
fn timeout_bounds_the_whole_send_not_only_each_stage() {
    let files = Files::new();
    let server = TimedServer::start(slow_recipients(), 1);
    let mut args = FIVE.to_vec();
    args.extend(["--timeout", "2"]);
    let started = Instant::now();
    let output = send_to(&files, server.port(), "none", &args);
    let took = started.elapsed();
    assert_code(&output, 75, "overall time limit");
    let connections = server.connections();
    assert_eq!(connections.len(), 1);
    // The client left at the 2 s deadline, long before the 4 s the server needed.
    assert!(
        connections[0].lasted < Duration::from_millis(3300),
        "{connections:?}"
    );
    assert!(connections[0].stopped.is_some(), "{connections:?}");
    eprintln!(
        "sendbox took {took:?}, connected for {:?}",
        connections[0].lasted
    );
}

#[test]
fn timeout_bounds_each_message_of_a_batch() {
    let files = Files::new();
    let server = TimedServer::start(slow_recipients(), 1);
    let message = files.path("message.eml");
    std::fs::write(&message, "Subject: slow\r\n\r\nbody\r\n").unwrap();
    let target = format!("127.0.0.1:{}", server.port());
    let mut args = vec![
        "batch",
        "--server",
        &target,
        "--tls",
        "none",
        "--from",
        "alice@example.org",
        "--raw",
        message.to_str().unwrap(),
        "--concurrency",
        "1",
        "--quiet",
        "--timeout",
        "2",
    ];
    args.extend(FIVE);
    let output = sendbox(&files, &args, Stdio::null());
    assert_code(&output, 75, "sent 0, refused 0, failed 1");
    let connections = server.connections();
    assert!(
        connections[0].lasted < Duration::from_millis(3300),
        "{connections:?}"
    );
}

#[test]
fn batch_exit_codes_follow_the_failures() {
    let files = Files::new();
    let message = files.path("message.eml");
    std::fs::write(&message, "Subject: batch\r\n\r\nbody\r\n").unwrap();
    let batch = |port: u16, extra: &[&str]| {
        let target = format!("127.0.0.1:{port}");
        let ca = files.ca();
        let mut args = vec![
            "batch",
            "--server",
            &target,
            "--ca",
            &ca,
            "--user",
            USER,
            "--password-env",
            "SENDBOX_TEST_PASSWORD",
            "--from",
            "alice@example.org",
            "--to",
            "bob@example.org",
            "--raw",
            message.to_str().unwrap(),
            "--concurrency",
            "1",
            "--quiet",
        ];
        args.extend_from_slice(extra);
        sendbox(&files, &args, Stdio::null())
    };
    // A refused login is 77, as for send; a deferred one 75.
    let server = ScriptedServer::start(
        auth_answered("535 5.7.8 Error: authentication failed\r\n"),
        files.tls(),
    );
    assert_code(&batch(server.port(), &[]), 77, "failed 1");
    let server = ScriptedServer::start(
        auth_answered("454 4.7.0 Temporary authentication failure\r\n"),
        files.tls(),
    );
    assert_code(&batch(server.port(), &[]), 75, "failed 1");
}
