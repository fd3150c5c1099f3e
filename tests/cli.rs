//! The `sendbox` command against the in-process server: what it prints and its exit codes.

mod support;

use std::process::{Command, Output};

use sendbox::loopback::{AuthMechanism, LoopbackServer, ServerTls};
use support::*;

/// Where each test writes its CA file.
fn ca_file(server: &LoopbackServer, name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sendbox-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.pem"));
    std::fs::write(&path, server.ca_pem()).unwrap();
    path
}

/// Runs `sendbox send` against `server`, with the password in SENDBOX_TEST_PASSWORD.
fn send(
    server: &LoopbackServer,
    tls: &str,
    password: &str,
    extra: &[&str],
    stdin: Option<&[u8]>,
) -> Output {
    let target = format!("127.0.0.1:{}", server.port());
    let mut args = vec!["send", "--server", &target, "--tls", tls];
    args.extend_from_slice(extra);
    run_sendbox(&args, password, stdin)
}

fn auth_args(ca: &str) -> Vec<&str> {
    vec![
        "--ca",
        ca,
        "--user",
        USER,
        "--password-env",
        "SENDBOX_TEST_PASSWORD",
    ]
}

#[test]
fn sends_a_composed_message_over_starttls_with_auth() {
    let server = loopback(ServerTls::StartTls);
    let ca = ca_file(&server, "starttls");
    let mut args = auth_args(ca.to_str().unwrap());
    args.extend([
        "--from",
        "alice@example.org",
        "--to",
        "bob@example.org",
        "--to",
        "carol@example.org",
        "--subject",
        "Grüße aus der Sandbox",
        "--body",
        "Hallo Bob,\n.wie geht's?\n",
        "-v",
    ]);
    let output = send(&server, "starttls", PASSWORD, &args, None);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout)
            .starts_with("sent to bob@example.org, carol@example.org: 250")
    );

    // -v shows the dialogue, with the credentials redacted.
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("C: AUTH PLAIN <credentials redacted>"),
        "{stderr}"
    );
    assert!(!stderr.contains(PASSWORD));

    let received = server.received();
    assert_eq!(received.len(), 1);
    assert_eq!(
        received[0].recipients,
        ["bob@example.org", "carol@example.org"]
    );
    let data = String::from_utf8_lossy(&received[0].data);
    assert!(data.contains("From: <alice@example.org>\r\n"), "{data}");
    assert!(data.contains("Message-ID: <"), "{data}");
    assert!(data.contains("Date: "), "{data}");
    // The non-ASCII subject is encoded (RFC 2047), never sent raw.
    assert!(data.contains("Subject: =?utf-8?"), "{data}");
    assert!(data.is_ascii());
}

#[test]
fn sends_a_raw_message_from_stdin_over_implicit_tls() {
    let server = loopback_with(ServerTls::Implicit, vec![AuthMechanism::Login], Vec::new());
    let ca = ca_file(&server, "implicit");
    let mut args = auth_args(ca.to_str().unwrap());
    args.extend([
        "--from",
        "alice@example.org",
        "--to",
        "bob@example.org",
        "--raw",
        "-",
    ]);
    let message = b"Subject: raw\n\nline one\n.line two\n";
    let output = send(&server, "implicit", PASSWORD, &args, Some(message));
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(
        server.received()[0].data,
        b"Subject: raw\r\n\r\nline one\r\n.line two\r\n"
    );
}

#[test]
fn wrong_password_exits_77_and_never_prints_it() {
    let server = loopback(ServerTls::StartTls);
    let ca = ca_file(&server, "password");
    let mut args = auth_args(ca.to_str().unwrap());
    args.extend([
        "--from",
        "alice@example.org",
        "--to",
        "bob@example.org",
        "--body",
        "x",
        "-v",
    ]);
    let wrong = "wrong-password-0815";
    let output = send(&server, "starttls", wrong, &args, None);
    assert_eq!(output.status.code(), Some(77), "{}", text(&output));
    let all = text(&output);
    assert!(all.contains("AUTH failed"), "{all}");
    assert!(all.contains("535"), "{all}");
    assert!(!all.contains(wrong), "{all}");
    assert!(server.received().is_empty());
}

#[test]
fn untrusted_certificate_exits_69() {
    let server = loopback(ServerTls::StartTls);
    // No --ca: the public roots do not know the test CA.
    let args = [
        "--user",
        USER,
        "--password-env",
        "SENDBOX_TEST_PASSWORD",
        "--from",
        "alice@example.org",
        "--to",
        "bob@example.org",
        "--body",
        "x",
    ];
    let output = send(&server, "starttls", PASSWORD, &args, None);
    assert_exit(&output, 69, "TLS failed");
    assert!(server.received().is_empty());
}

#[test]
fn refused_recipients_exit_67() {
    let server = loopback_with(
        ServerTls::StartTls,
        vec![AuthMechanism::Plain],
        vec!["nobody@example.org"],
    );
    let ca = ca_file(&server, "refused");
    let mut args = auth_args(ca.to_str().unwrap());
    args.extend([
        "--from",
        "alice@example.org",
        "--to",
        "nobody@example.org",
        "--body",
        "x",
    ]);
    let output = send(&server, "starttls", PASSWORD, &args, None);
    assert_exit(&output, 67, "550 5.1.1");
    assert!(server.received().is_empty());

    // One refused, one accepted: delivered, but the exit code still says someone was refused.
    args.extend(["--to", "bob@example.org"]);
    let output = send(&server, "starttls", PASSWORD, &args, None);
    assert_exit(&output, 67, "sent to bob@example.org");
    assert_eq!(server.received().len(), 1);
}

#[test]
fn usage_errors_exit_64() {
    let server = loopback(ServerTls::StartTls);
    for args in [
        &["--from", "a@example.org"][..], // no --to
        &[
            "--from",
            "a@example.org",
            "--to",
            "b@example.org",
            "--tls",
            "ssl",
        ], // bad mode
        &[
            "--from",
            "a@example.org",
            "--to",
            "b@example.org",
            "--password-env",
            "X",
        ], // no --user
    ] {
        let output = send(&server, "starttls", PASSWORD, args, None);
        assert_eq!(
            output.status.code(),
            Some(64),
            "{args:?}: {}",
            text(&output)
        );
    }
    let output = Command::new(env!("CARGO_BIN_EXE_sendbox"))
        .args([
            "send",
            "--server",
            "host:notaport",
            "--from",
            "a@b.c",
            "--to",
            "d@e.f",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64), "{}", text(&output));
    assert_eq!(server.connections(), 0);
}

#[test]
fn invalid_address_exits_65_before_sending() {
    let server = loopback(ServerTls::StartTls);
    let ca = ca_file(&server, "address");
    let mut args = auth_args(ca.to_str().unwrap());
    args.extend([
        "--from",
        "alice@example.org",
        "--to",
        "bob@exa mple.org",
        "--raw",
        "-",
    ]);
    let output = send(
        &server,
        "starttls",
        PASSWORD,
        &args,
        Some(b"Subject: x\n\nx\n"),
    );
    assert_eq!(output.status.code(), Some(65), "{}", text(&output));
    assert_eq!(server.connections(), 0, "it connected anyway");
}

#[test]
fn demo_runs_and_shows_what_the_server_received() {
    let output = Command::new(env!("CARGO_BIN_EXE_sendbox"))
        .arg("demo")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    for expected in [
        "C: STARTTLS",
        "-- TLS established",
        "C: AUTH PLAIN <credentials redacted>",
        "S: 250 2.0.0 Ok: queued",
        "-- What the server received --",
        "AUTH user: demo",
        "Subject: Hello from the sandbox",
        "\n.A line that starts with a dot",
    ] {
        assert!(
            stdout.contains(expected),
            "{expected:?} missing from:\n{stdout}"
        );
    }
}

#[test]
fn batch_sends_copies_over_several_sessions() {
    let server = loopback(ServerTls::StartTls);
    let ca = ca_file(&server, "batch");
    let message = std::env::temp_dir().join(format!("sendbox-batch-{}.eml", std::process::id()));
    std::fs::write(&message, "Subject: copy\r\n\r\nthe same message\r\n").unwrap();
    let mut args = auth_args(ca.to_str().unwrap());
    args.extend(["--from", "alice@example.org", "--to", "bob@example.org"]);
    args.extend([
        "--raw",
        message.to_str().unwrap(),
        "--count",
        "12",
        "--concurrency",
        "3",
        "--quiet",
    ]);
    let target = format!("127.0.0.1:{}", server.port());
    let mut all = vec!["batch", "--server", &target, "--tls", "starttls"];
    all.extend(args);
    let output = run_sendbox(&all, PASSWORD, None);
    assert_exit(&output, 0, "sent 12, refused 0, failed 0 in ");
    assert_eq!(server.received().len(), 12);
    assert_eq!(server.connections(), 3);
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
        "{} was not built: run the whole `cargo test`, which builds the examples",
        example.display()
    );
    let server = loopback(ServerTls::StartTls);
    let ca = ca_file(&server, "example");
    let port = server.port().to_string();
    let output = Command::new(&example)
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
    let subjects = first_lines(&server);
    assert_eq!(subjects, ["Subject: one", "Subject: two", "Subject: three"]);
    assert_eq!(server.connections(), 2);
}

#[test]
fn batch_sends_every_message_of_an_mbox() {
    let server = loopback(ServerTls::StartTls);
    let ca = ca_file(&server, "mbox");
    let mbox = std::env::temp_dir().join(format!("sendbox-batch-{}.mbox", std::process::id()));
    let messages: String = (1..=3)
        .map(|i| {
            format!(
                "From alice@example.org Sat Jan  3 01:05:34 1996\nSubject: mbox {i}\n\nbody {i}\n\n"
            )
        })
        .collect();
    std::fs::write(&mbox, messages).unwrap();
    let target = format!("127.0.0.1:{}", server.port());
    let mut args = vec!["batch", "--server", &target, "--tls", "starttls"];
    args.extend(auth_args(ca.to_str().unwrap()));
    args.extend(["--from", "alice@example.org", "--to", "bob@example.org"]);
    args.extend([
        "--mbox",
        mbox.to_str().unwrap(),
        "--concurrency",
        "1",
        "--quiet",
    ]);
    let output = run_sendbox(&args, PASSWORD, None);
    assert_exit(&output, 0, "sent 3, refused 0, failed 0 in ");
    assert_eq!(
        first_lines(&server),
        ["Subject: mbox 1", "Subject: mbox 2", "Subject: mbox 3"]
    );
}
