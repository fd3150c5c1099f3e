//! The `sendbox` command against the in-process server: what it prints and its exit codes.

mod support;

#[path = "exit_codes.rs"]
mod exit_codes;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mail_parser::MimeHeaders as _;
use sendbox_loopback::{AuthMechanism, LoopbackServer, Received, ServerTls};
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
    // Its missing Date, Message-ID and From were added (From: the envelope sender).
    let data = &server.received()[0].data;
    assert!(
        data.starts_with(b"Date: "),
        "{}",
        String::from_utf8_lossy(data)
    );
    assert_eq!(
        as_written(data),
        b"From: <alice@example.org>\r\nSubject: raw\r\n\r\nline one\r\n.line two\r\n"
    );
    // --keep-header sends it exactly as it is.
    args.push("--keep-header");
    let output = send(&server, "implicit", PASSWORD, &args, Some(message));
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(
        server.received()[1].data,
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
        subjects(&server),
        ["Subject: mbox 1", "Subject: mbox 2", "Subject: mbox 3"]
    );
}

// --- Composed messages, -t, config files, sendmail mode -------------------------------------

/// Runs `program` (see [`sendbox_command`]) with `args`, `env` and `stdin`, its
/// configuration directory `isolated`.
fn run_at(
    program: &Path,
    isolated: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: &[u8],
) -> Output {
    let mut command = sendbox_command(program, isolated, PASSWORD);
    command.args(args).envs(env.iter().copied());
    run_piped(command, stdin)
}

/// Writes `text` to `dir/name` with `mode`, and returns the path.
fn write_file(dir: &Path, name: &str, text: &[u8], mode: u32) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

/// A temporary directory holding the server's CA (`ca.pem`) and a config file
/// (`config.toml`, mode 0600) whose account `loop` is the loopback server: STARTTLS, the CA
/// by a path relative to the file, the test user with its password from the environment,
/// and alice@example.org as the sender. `more` is appended to the file.
fn config_dir(server: &LoopbackServer, more: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "ca.pem", server.ca_pem().as_bytes(), 0o644);
    let text = format!(
        "[accounts.loop]\n\
         server = \"127.0.0.1:{}\"\n\
         tls = \"starttls\"\n\
         ca = \"ca.pem\"\n\
         from = \"alice@example.org\"\n\
         user = \"{USER}\"\n\
         password_env = \"SENDBOX_TEST_PASSWORD\"\n\
         {more}",
        server.port()
    );
    let config = write_file(dir.path(), "config.toml", text.as_bytes(), 0o600);
    (dir, config)
}

/// The data the server received, as text.
/// What the server received, without the Date and Message-ID sendbox adds to a raw
/// message (see [`as_written`]).
fn data_text(received: &Received) -> String {
    String::from_utf8(as_written(&received.data).to_vec()).expect("the server received UTF-8")
}

/// The message the server received, parsed by mail-parser (MIME, RFC 2047, transfer
/// encodings), so that the tests check meaning, not how the builder folds or encodes.
fn parsed(received: &Received) -> mail_parser::Message<'_> {
    mail_parser::MessageParser::default()
        .parse(&received.data)
        .expect("a message mail-parser can read")
}

/// The raw (unfolded, undecoded) values of every `name` field, trimmed.
fn raw_fields(message: &mail_parser::Message<'_>, name: &str) -> Vec<String> {
    message
        .headers()
        .iter()
        .filter(|h| h.name().eq_ignore_ascii_case(name))
        .map(|h| {
            let raw = &message.raw_message()[h.offset_start() as usize..h.offset_end() as usize];
            String::from_utf8_lossy(raw)
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

fn sorted(list: &[String]) -> Vec<String> {
    let mut list = list.to_vec();
    list.sort();
    list
}

#[test]
fn composes_cc_bcc_html_attachments_and_extra_headers() {
    let server = loopback(ServerTls::StartTls);
    let dir = tempfile::tempdir().unwrap();
    let ca = write_file(dir.path(), "ca.pem", server.ca_pem().as_bytes(), 0o644);
    // Not UTF-8, with NULs and CR/LF bytes: it must arrive byte for byte.
    let pdf_bytes: Vec<u8> = b"%PDF-1.4\r\n\x00\xff\xfe\x80\n.\r\n"
        .iter()
        .copied()
        .chain((0..=255u8).rev())
        .collect();
    let pdf = write_file(dir.path(), "report.pdf", &pdf_bytes, 0o644);
    let notes = write_file(dir.path(), "notes.txt", b"plain notes\n", 0o644);
    let html = write_file(
        dir.path(),
        "page.html",
        "<p>Hallo <b>HTML</b> – grün</p>\n".as_bytes(),
        0o644,
    );
    let subject = "Grüße aus der Sandbox – Prüfung ✓";
    let mut args = auth_args(ca.to_str().unwrap());
    args.extend([
        "--from",
        "Alice <alice@example.org>",
        "--to",
        "bob@example.org",
        "--cc",
        "carol@example.org",
        "--bcc",
        "hidden@example.org",
        "--subject",
        subject,
        "--body",
        "The text part.\n",
        "--html",
        html.to_str().unwrap(),
        "--attach",
        pdf.to_str().unwrap(),
        "--attach",
        notes.to_str().unwrap(),
        "--header",
        "X-Tag: v",
    ]);
    let output = send(&server, "starttls", PASSWORD, &args, None);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));

    let received = server.received();
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0].sender, "alice@example.org");
    assert_eq!(
        sorted(&received[0].recipients),
        ["bob@example.org", "carol@example.org", "hidden@example.org"]
    );
    let data = data_text(&received[0]);
    assert!(data.is_ascii(), "not 7-bit:\n{data}");

    // The Bcc recipient is in the envelope only.
    assert!(!data.contains("hidden@example.org"), "{data}");
    let message = parsed(&received[0]);
    assert!(raw_fields(&message, "bcc").is_empty(), "{data}");

    assert_eq!(raw_fields(&message, "x-tag"), ["v"], "{data}");
    assert!(message.date().is_some(), "{data}");
    assert!(
        message.message_id().is_some_and(|id| id.contains('@')),
        "{data}"
    );
    let first = |list: Option<&mail_parser::Address<'_>>| {
        list.and_then(|l| l.first())
            .and_then(|a| a.address())
            .map(str::to_owned)
    };
    assert_eq!(first(message.to()).as_deref(), Some("bob@example.org"));
    assert_eq!(first(message.cc()).as_deref(), Some("carol@example.org"));
    let encoded = raw_fields(&message, "subject").concat();
    assert!(encoded.starts_with("=?"), "not RFC 2047: {encoded}");
    assert_eq!(message.subject(), Some(subject));

    // The text and the HTML as alternatives, then both attachments.
    let lower = data.to_ascii_lowercase();
    assert!(lower.contains("multipart/alternative"), "{data}");
    assert!(lower.contains("multipart/mixed"), "{data}");
    assert_eq!(message.body_text(0).as_deref(), Some("The text part.\r\n"));
    assert!(
        message
            .body_html(0)
            .is_some_and(|html| html.contains("<b>HTML</b> – grün")),
        "{data}"
    );

    let attachment = |filename: &str| {
        message
            .attachments()
            .find(|part| part.attachment_name() == Some(filename))
            .unwrap_or_else(|| panic!("no attachment {filename}:\n{data}"))
    };
    for (filename, media_type, contents) in [
        ("report.pdf", "application/pdf", pdf_bytes.as_slice()),
        ("notes.txt", "text/plain", b"plain notes\n".as_slice()),
    ] {
        let part = attachment(filename);
        assert!(
            part.content_disposition()
                .is_some_and(|d| d.is_attachment()),
            "{filename}: {data}"
        );
        let content_type = part.content_type().expect("a Content-Type");
        let found = format!(
            "{}/{}",
            content_type.ctype(),
            content_type.subtype().unwrap_or_default()
        );
        assert_eq!(found, media_type, "{filename}");
        assert_eq!(part.contents(), contents, "{filename}");
    }
}

#[test]
fn raw_with_t_sends_to_to_cc_and_bcc_and_removes_bcc() {
    let server = loopback(ServerTls::StartTls);
    let ca = ca_file(&server, "raw-t");
    let mut args = auth_args(ca.to_str().unwrap());
    args.extend(["--from", "alice@example.org", "--raw", "-", "-t"]);
    let message = b"From: Alice <alice@example.org>\n\
        To: Bob <bob@example.org>\n\
        Cc: carol@example.org, Dave <dave@example.org>\n\
        Bcc: hidden@example.org,\n hidden2@example.org\n\
        Subject: raw -t\n\
        \n\
        The body mentions Bcc: nothing.\n";
    let output = send(&server, "starttls", PASSWORD, &args, Some(message));
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));

    let received = server.received();
    assert_eq!(received.len(), 1);
    assert_eq!(
        sorted(&received[0].recipients),
        [
            "bob@example.org",
            "carol@example.org",
            "dave@example.org",
            "hidden2@example.org",
            "hidden@example.org",
        ]
    );
    assert_eq!(
        data_text(&received[0]),
        "From: Alice <alice@example.org>\r\n\
         To: Bob <bob@example.org>\r\n\
         Cc: carol@example.org, Dave <dave@example.org>\r\n\
         Subject: raw -t\r\n\
         \r\n\
         The body mentions Bcc: nothing.\r\n"
    );

    // Without -t the message goes as it is, Bcc and all, to --to only.
    args.retain(|a| *a != "-t");
    args.extend(["--to", "bob@example.org"]);
    let output = send(&server, "starttls", PASSWORD, &args, Some(message));
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let received = server.received();
    assert_eq!(received[1].recipients, ["bob@example.org"]);
    assert!(data_text(&received[1]).contains("Bcc: hidden@example.org"));
}

#[test]
fn send_takes_server_sender_and_login_from_the_account() {
    let server = loopback(ServerTls::StartTls);
    // A second account that cannot work, and no default: --account must choose.
    let (dir, config) = config_dir(
        &server,
        "[accounts.decoy]\nserver = \"127.0.0.1:1\"\ntls = \"none\"\n",
    );
    let args = [
        "send",
        "--config",
        config.to_str().unwrap(),
        "--account",
        "loop",
        "--to",
        "bob@example.org",
        "--subject",
        "from the account",
        "--body",
        "configured",
    ];
    let output = run_at(sendbox_bin(), dir.path(), &args, &[], b"");
    assert_exit(&output, 0, "sent to bob@example.org: 250");
    let received = server.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].sender, "alice@example.org");
    assert_eq!(received[0].recipients, ["bob@example.org"]);
    assert_eq!(received[0].user.as_deref(), Some(USER));
    let data = data_text(&received[0]);
    assert!(data.contains("alice@example.org"), "no From: {data}");
    assert!(data.contains("configured"), "{data}");

    // The same through $SENDBOX_CONFIG.
    let config_env = [("SENDBOX_CONFIG", config.to_str().unwrap())];
    let args = [
        "send",
        "-a",
        "loop",
        "--to",
        "bob@example.org",
        "--body",
        "env",
    ];
    let output = run_at(sendbox_bin(), dir.path(), &args, &config_env, b"");
    assert_exit(&output, 0, "sent to bob@example.org");
    assert_eq!(server.received().len(), 2);

    // With two accounts and no default, nothing says which server.
    let args = [
        "send",
        "--from",
        "alice@example.org",
        "--to",
        "bob@example.org",
        "--body",
        "x",
    ];
    let output = run_at(sendbox_bin(), dir.path(), &args, &config_env, b"");
    assert_exit(&output, 64, "give --server, or an account");
    assert_eq!(server.received().len(), 2);
}

#[test]
fn unknown_account_exits_78() {
    let server = loopback(ServerTls::StartTls);
    let (dir, config) = config_dir(&server, "");
    for config_args in [&["--config", config.to_str().unwrap()][..], &[]] {
        let mut args = vec!["send"];
        args.extend_from_slice(config_args);
        args.extend([
            "--account",
            "nosuch",
            "--to",
            "bob@example.org",
            "--body",
            "x",
        ]);
        // Without --config: the default file, which does not exist.
        let output = run_at(sendbox_bin(), dir.path(), &args, &[], b"");
        assert_exit(&output, 78, "\"nosuch\"");
    }
    assert_eq!(server.connections(), 0);
}

#[test]
fn cleartext_password_in_a_shared_file_exits_78() {
    let server = loopback(ServerTls::StartTls);
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "ca.pem", server.ca_pem().as_bytes(), 0o644);
    let file = format!(
        "default = \"loop\"\n\
         [accounts.loop]\n\
         server = \"127.0.0.1:{}\"\n\
         ca = \"ca.pem\"\n\
         from = \"alice@example.org\"\n\
         user = \"{USER}\"\n\
         password = \"{PASSWORD}\"\n\
         allow_cleartext_password = true\n",
        server.port()
    );
    let config = write_file(dir.path(), "config.toml", file.as_bytes(), 0o644);
    let args = [
        "send",
        "--config",
        config.to_str().unwrap(),
        "--to",
        "bob@example.org",
        "--body",
        "x",
    ];
    let output = run_at(sendbox_bin(), dir.path(), &args, &[], b"");
    assert_exit(&output, 78, "chmod");
    assert!(text(&output).contains("0644"), "{}", text(&output));
    assert!(!text(&output).contains(PASSWORD), "{}", text(&output));
    assert_eq!(server.connections(), 0);

    // The same file, private: it works, with the password from the file.
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let output = run_at(
        sendbox_bin(),
        dir.path(),
        &args,
        &[("SENDBOX_TEST_PASSWORD", "not-the-password")],
        b"",
    );
    assert_exit(&output, 0, "sent to bob@example.org");
    assert_eq!(server.received()[0].user.as_deref(), Some(USER));
}

const SENDMAIL_MESSAGE: &[u8] = b"From: Alice <alice@example.org>\n\
    To: bob@example.org\n\
    Subject: via sendmail\n\
    \n\
    before the dot\n\
    .\n\
    after the dot\n\
    ..two dots\n";

#[test]
fn sendmail_sends_stdin_quietly() {
    let server = loopback(ServerTls::StartTls);
    let (dir, config) = config_dir(&server, "");
    let config = config.to_str().unwrap();

    // -C FILE, -i: the whole input, the "." line too.
    let args = [
        "sendmail",
        "-C",
        config,
        "-i",
        "-f",
        "alice@example.org",
        "bob@example.org",
    ];
    let output = run_at(sendbox_bin(), dir.path(), &args, &[], SENDMAIL_MESSAGE);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(output.stdout.is_empty(), "{}", text(&output));
    assert!(output.stderr.is_empty(), "{}", text(&output));
    let received = server.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].sender, "alice@example.org");
    assert_eq!(received[0].recipients, ["bob@example.org"]);
    assert_eq!(received[0].user.as_deref(), Some(USER));
    assert_eq!(
        data_text(&received[0]),
        "From: Alice <alice@example.org>\r\n\
         To: bob@example.org\r\n\
         Subject: via sendmail\r\n\
         \r\n\
         before the dot\r\n\
         .\r\n\
         after the dot\r\n\
         ..two dots\r\n"
    );

    // $SENDBOX_CONFIG; without -i a "." line ends the message; without -f the sender is
    // the account's.
    let env = [("SENDBOX_CONFIG", config)];
    let args = ["sendmail", "carol@example.org"];
    let output = run_at(sendbox_bin(), dir.path(), &args, &env, SENDMAIL_MESSAGE);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(
        output.stdout.is_empty() && output.stderr.is_empty(),
        "{}",
        text(&output)
    );
    let received = server.received();
    assert_eq!(received.len(), 2);
    assert_eq!(received[1].sender, "alice@example.org");
    assert_eq!(received[1].recipients, ["carol@example.org"]);
    assert_eq!(
        data_text(&received[1]),
        "From: Alice <alice@example.org>\r\n\
         To: bob@example.org\r\n\
         Subject: via sendmail\r\n\
         \r\n\
         before the dot\r\n"
    );
}

#[test]
fn sendmail_t_takes_recipients_from_the_header() {
    let server = loopback(ServerTls::StartTls);
    let (dir, config) = config_dir(&server, "");
    let message = b"From: Zed <zed@example.org>\n\
        To: bob@example.org\n\
        Cc: Carol <carol@example.org>\n\
        Bcc: hidden@example.org\n\
        Subject: -t\n\
        \n\
        body\n";
    let args = [
        "sendmail",
        "--config",
        config.to_str().unwrap(),
        "-t",
        "-oi",
        "extra@example.org",
    ];
    let output = run_at(sendbox_bin(), dir.path(), &args, &[], message);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(output.stdout.is_empty(), "{}", text(&output));
    let received = server.received();
    assert_eq!(received.len(), 1);
    // -f not given: the account's sender, not the header's.
    assert_eq!(received[0].sender, "alice@example.org");
    assert_eq!(
        sorted(&received[0].recipients),
        [
            "bob@example.org",
            "carol@example.org",
            "extra@example.org",
            "hidden@example.org",
        ]
    );
    let data = data_text(&received[0]);
    assert!(!data.contains("hidden@example.org"), "{data}");
    assert!(!data.to_ascii_lowercase().contains("bcc:"), "{data}");
    assert!(data.starts_with("From: Zed <zed@example.org>\r\nTo: bob@example.org\r\n"));
    assert!(data.ends_with("Subject: -t\r\n\r\nbody\r\n"), "{data}");
}

#[test]
fn sendmail_refused_recipient_exits_67() {
    let server = loopback_with(
        ServerTls::StartTls,
        vec![AuthMechanism::Plain],
        vec!["nobody@example.org"],
    );
    let (dir, config) = config_dir(&server, "");
    let config = config.to_str().unwrap();

    let args = ["sendmail", "-C", config, "-i", "nobody@example.org"];
    let output = run_at(sendbox_bin(), dir.path(), &args, &[], SENDMAIL_MESSAGE);
    assert_exit(&output, 67, "550");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("sendbox: ") && l.contains("5.1.1")),
        "{stderr}"
    );
    assert!(output.stdout.is_empty(), "{}", text(&output));
    assert!(server.received().is_empty());

    // One refused, one accepted: the other gets it, and the refusal is still reported.
    let args = [
        "sendmail",
        "-C",
        config,
        "-i",
        "nobody@example.org",
        "bob@example.org",
    ];
    let output = run_at(sendbox_bin(), dir.path(), &args, &[], SENDMAIL_MESSAGE);
    assert_exit(&output, 67, "recipient nobody@example.org refused");
    assert!(output.stdout.is_empty(), "{}", text(&output));
    let received = server.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].recipients, ["bob@example.org"]);
}

#[test]
fn sendmail_without_an_account_exits_78_and_other_modes_64() {
    let server = loopback(ServerTls::StartTls);
    let (dir, config) = config_dir(&server, "");
    // No config file at all.
    let args = ["sendmail", "-i", "bob@example.org"];
    let output = run_at(sendbox_bin(), dir.path(), &args, &[], SENDMAIL_MESSAGE);
    assert_exit(&output, 78, "account");
    // It says where it looked.
    let looked = format!(
        "there is no config file: neither {} nor /etc/sendbox/config.toml exists",
        dir.path().join("sendbox/config.toml").display()
    );
    assert!(text(&output).contains(&looked), "{}", text(&output));
    // A file with two accounts and no default.
    let two = format!(
        "{}[accounts.other]\nserver = \"127.0.0.1:1\"\ntls = \"none\"\n",
        std::fs::read_to_string(&config).unwrap()
    );
    let two = write_file(dir.path(), "two.toml", two.as_bytes(), 0o600);
    let args = ["sendmail", "-C", two.to_str().unwrap(), "bob@example.org"];
    let output = run_at(sendbox_bin(), dir.path(), &args, &[], SENDMAIL_MESSAGE);
    assert_exit(
        &output,
        78,
        "names no default (`default = \"NAME\"`; it has ",
    );
    // An account that does not exist.
    let args = [
        "sendmail",
        "-C",
        two.to_str().unwrap(),
        "-a",
        "nosuch",
        "bob@example.org",
    ];
    let output = run_at(sendbox_bin(), dir.path(), &args, &[], SENDMAIL_MESSAGE);
    assert_exit(&output, 78, "\"nosuch\"");

    // Other modes of an MTA, and a bad command line.
    for args in [
        &["sendmail", "-C", config.to_str().unwrap(), "-bd"][..],
        &["sendmail", "-C", config.to_str().unwrap(), "-bs"],
        &["sendmail", "-C", config.to_str().unwrap(), "-q30m"],
        &[
            "sendmail",
            "-C",
            config.to_str().unwrap(),
            "-d",
            "bob@example.org",
        ],
        &["sendmail", "-C", config.to_str().unwrap(), "-i"],
    ] {
        let output = run_at(sendbox_bin(), dir.path(), args, &[], SENDMAIL_MESSAGE);
        assert_eq!(
            output.status.code(),
            Some(64),
            "{args:?}: {}",
            text(&output)
        );
        assert!(!output.stderr.is_empty(), "{args:?}: {}", text(&output));
    }
    let output = run_at(
        sendbox_bin(),
        dir.path(),
        &["sendmail", "-C", config.to_str().unwrap(), "-bs"],
        &[],
        b"",
    );
    assert_exit(&output, 64, "-bs is not supported");
    assert_eq!(server.connections(), 0);
}

#[test]
fn a_link_named_sendmail_is_sendbox_sendmail() {
    let server = loopback(ServerTls::StartTls);
    let (dir, config) = config_dir(&server, "");
    let link = dir.path().join("bin").join("sendmail");
    std::fs::create_dir(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(sendbox_bin(), &link).unwrap();

    let args = [
        "-C",
        config.to_str().unwrap(),
        "-i",
        "-f",
        "alice@example.org",
        "--",
        "bob@example.org",
    ];
    let output = run_at(&link, dir.path(), &args, &[], SENDMAIL_MESSAGE);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(
        output.stdout.is_empty() && output.stderr.is_empty(),
        "{}",
        text(&output)
    );
    let received = server.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].recipients, ["bob@example.org"]);
    assert!(data_text(&received[0]).contains("\r\n.\r\nafter the dot\r\n"));

    // Through the link, sendmail's -t with $SENDBOX_CONFIG; and its refusals.
    let env = [("SENDBOX_CONFIG", config.to_str().unwrap())];
    let output = run_at(&link, dir.path(), &["-t"], &env, SENDMAIL_MESSAGE);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let received = server.received();
    assert_eq!(received.len(), 2);
    assert_eq!(received[1].recipients, ["bob@example.org"]);
    let output = run_at(&link, dir.path(), &["-bs"], &env, b"");
    assert_exit(&output, 64, "-bs is not supported");
}

/// An account's `from` may be `"Name <ADDR>"`: `send` takes the address from it, and
/// sendmail mode must too. Fails today: sendmail mode gives the whole text as MAIL FROM,
/// and exits 65 with `address "Alice Example <alice@example.org>" contains the character ' '`.
#[test]
fn sendmail_takes_the_address_from_an_account_from_with_a_name() {
    let server = loopback(ServerTls::StartTls);
    let (dir, config) = config_dir(&server, "");
    let with_name = std::fs::read_to_string(&config).unwrap().replace(
        "from = \"alice@example.org\"",
        "from = \"Alice Example <alice@example.org>\"",
    );
    assert!(with_name.contains("Alice Example"), "{with_name}");
    std::fs::write(&config, with_name).unwrap();
    let config = config.to_str().unwrap();

    let args = [
        "send",
        "--config",
        config,
        "--to",
        "bob@example.org",
        "--body",
        "x",
    ];
    let output = run_at(sendbox_bin(), dir.path(), &args, &[], b"");
    assert_exit(&output, 0, "sent to bob@example.org");
    let received = server.received();
    assert_eq!(received[0].sender, "alice@example.org");
    let data = data_text(&received[0]);
    assert!(
        data.contains("Alice Example") && data.contains("<alice@example.org>"),
        "{data}"
    );

    let args = ["sendmail", "-C", config, "-i", "bob@example.org"];
    let output = run_at(sendbox_bin(), dir.path(), &args, &[], SENDMAIL_MESSAGE);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let received = server.received();
    assert_eq!(received.len(), 2);
    assert_eq!(received[1].sender, "alice@example.org");
}

#[test]
fn timeout_limits_every_stage() {
    // A server that accepts the connection and never greets.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let server = format!("127.0.0.1:{}", silent.local_addr().unwrap().port());
    let isolated = tempfile::tempdir().unwrap();
    let args = [
        "send",
        "--server",
        &server,
        "--tls",
        "none",
        "--timeout",
        "1",
        "--from",
        "a@example.org",
        "--to",
        "b@example.org",
        "--body",
        "x",
    ];
    let output = run_at(sendbox_bin(), isolated.path(), &args, &[], b"");
    assert_eq!(output.status.code(), Some(75), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("greeting failed (timeout)"), "{stderr}");
}

#[test]
fn an_accounts_login_never_goes_to_a_server_named_on_the_command_line() {
    // The only account (so the default) logs in to the STARTTLS server; --server names
    // another one, which must get no credentials from the account.
    let home = loopback(ServerTls::StartTls);
    let (dir, config) = config_dir(&home, "");
    let other = loopback(ServerTls::None);
    let server = format!("127.0.0.1:{}", other.port());
    let args = [
        "send",
        "--config",
        config.to_str().unwrap(),
        "--server",
        &server,
        "--tls",
        "none",
        "--from",
        "a@example.org",
        "--to",
        "b@example.org",
        "--body",
        "x",
    ];
    let output = run_at(sendbox_bin(), dir.path(), &args, &[], b"");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let received = other.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].user, None);
    assert_eq!(home.connections(), 0);
}

// --- The sender with --raw, options over the account field by field, sendmail --help --------

/// `config_dir`, with the account's `from` line replaced by `from` (or removed).
fn config_with_from(server: &LoopbackServer, from: Option<&str>) -> (tempfile::TempDir, PathBuf) {
    let (dir, config) = config_dir(server, "");
    let replacement = from.map(|f| format!("from = \"{f}\"")).unwrap_or_default();
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("from = \"alice@example.org\"", &replacement);
    std::fs::write(&config, text).unwrap();
    (dir, config)
}

const RAW_FROM_YOLANDA: &[u8] = b"From: Yolanda <yolanda@example.org>\n\
    To: bob@example.org\n\
    Subject: whose envelope\n\
    \n\
    body\n";

#[test]
fn raw_sender_is_from_option_then_account_then_header() {
    let server = loopback(ServerTls::StartTls);
    let (dir, config) = config_with_from(&server, Some("Alice <alice@example.org>"));
    let config = config.to_str().unwrap();
    let raw = ["--to", "bob@example.org", "--raw", "-"];

    // The account's from, not the message's From.
    let mut args = vec!["send", "--config", config];
    args.extend(raw);
    let output = run_at(sendbox_bin(), dir.path(), &args, &[], RAW_FROM_YOLANDA);
    assert_exit(&output, 0, "sent to bob@example.org");
    assert_eq!(server.received()[0].sender, "alice@example.org");

    // --from wins over both.
    args.extend(["--from", "Zed <zed@example.org>"]);
    let output = run_at(sendbox_bin(), dir.path(), &args, &[], RAW_FROM_YOLANDA);
    assert_exit(&output, 0, "sent to bob@example.org");
    assert_eq!(server.received()[1].sender, "zed@example.org");
    // The message itself is sent as it is.
    assert!(data_text(&server.received()[1]).starts_with("From: Yolanda <yolanda@example.org>"));

    // No --from and no from in the account: the message's From.
    let (dir, config) = config_with_from(&server, None);
    let mut args = vec!["send", "--config", config.to_str().unwrap()];
    args.extend(raw);
    let output = run_at(sendbox_bin(), dir.path(), &args, &[], RAW_FROM_YOLANDA);
    assert_exit(&output, 0, "sent to bob@example.org");
    assert_eq!(server.received()[2].sender, "yolanda@example.org");

    // A Sender field goes before From.
    let with_sender = [b"Sender: list@example.org\n".as_slice(), RAW_FROM_YOLANDA].concat();
    let output = run_at(sendbox_bin(), dir.path(), &args, &[], &with_sender);
    assert_exit(&output, 0, "sent to bob@example.org");
    assert_eq!(server.received()[3].sender, "list@example.org");
}

#[test]
fn sendmail_sender_is_f_then_account_then_header() {
    let server = loopback(ServerTls::StartTls);
    let (dir, config) = config_with_from(&server, Some("alice@example.org"));
    let config_text = config.to_str().unwrap();
    let args = ["sendmail", "-C", config_text, "-i", "bob@example.org"];
    let output = run_at(sendbox_bin(), dir.path(), &args, &[], RAW_FROM_YOLANDA);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(server.received()[0].sender, "alice@example.org");

    let args = [
        "sendmail",
        "-C",
        config_text,
        "-f",
        "zed@example.org",
        "bob@example.org",
    ];
    let output = run_at(sendbox_bin(), dir.path(), &args, &[], RAW_FROM_YOLANDA);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(server.received()[1].sender, "zed@example.org");

    let (dir, config) = config_with_from(&server, None);
    let args = [
        "sendmail",
        "-C",
        config.to_str().unwrap(),
        "bob@example.org",
    ];
    let output = run_at(sendbox_bin(), dir.path(), &args, &[], RAW_FROM_YOLANDA);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(server.received()[2].sender, "yolanda@example.org");
}

/// `--user` on the command line keeps the account's password source and mechanism.
#[test]
fn user_option_keeps_the_accounts_password_command_and_auth() {
    let server = loopback(ServerTls::StartTls);
    let (dir, config) = config_dir(&server, "auth = \"login\"\n");
    let text_before = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text_before.replace(
            "password_env = \"SENDBOX_TEST_PASSWORD\"",
            "password_command = \"printf '%s\\\\n' \\\"$SENDBOX_TEST_PASSWORD\\\"\"",
        ),
    )
    .unwrap();
    let written = std::fs::read_to_string(&config).unwrap();
    assert!(written.contains("password_command"), "{written}");
    let args = [
        "send",
        "--config",
        config.to_str().unwrap(),
        "--user",
        USER,
        "--to",
        "bob@example.org",
        "--body",
        "x",
        "-v",
    ];
    let output = run_at(sendbox_bin(), dir.path(), &args, &[], b"");
    assert_exit(&output, 0, "sent to bob@example.org");
    // The account's auth = "login", although PLAIN is offered and would come first.
    assert_exit(&output, 0, "C: AUTH LOGIN");
    assert!(!text(&output).contains(PASSWORD), "{}", text(&output));
    assert_eq!(server.received()[0].user.as_deref(), Some(USER));
}

/// `--password-env` needs no `--user` when the account names the user, and wins over the
/// account's password source.
#[test]
fn password_option_takes_the_accounts_user() {
    let server = loopback(ServerTls::StartTls);
    let (dir, config) = config_dir(&server, "");
    let args = [
        "send",
        "--config",
        config.to_str().unwrap(),
        "--password-env",
        "OTHER_PASSWORD",
        "--to",
        "bob@example.org",
        "--body",
        "x",
    ];
    // The account's own variable holds a wrong password: only the option's is right.
    let env = [
        ("SENDBOX_TEST_PASSWORD", "not-the-password"),
        ("OTHER_PASSWORD", PASSWORD),
    ];
    let output = run_at(sendbox_bin(), dir.path(), &args, &env, b"");
    assert_exit(&output, 0, "sent to bob@example.org");
    assert_eq!(server.received()[0].user.as_deref(), Some(USER));

    // A token for an account that insists on a password mechanism: a clear usage error.
    let (dir, config) = config_dir(&server, "auth = \"plain\"\n");
    let args = [
        "send",
        "--config",
        config.to_str().unwrap(),
        "--token-env",
        "OTHER_PASSWORD",
        "--to",
        "bob@example.org",
        "--body",
        "x",
    ];
    let output = run_at(sendbox_bin(), dir.path(), &args, &env, b"");
    assert_exit(&output, 64, "--token-env gives an OAuth token");
    assert_eq!(server.received().len(), 1);
}

#[test]
fn batch_takes_the_sender_from_the_account() {
    let server = loopback(ServerTls::StartTls);
    let (dir, config) = config_dir(&server, "");
    let message = write_file(dir.path(), "m.eml", b"Subject: batch\r\n\r\nx\r\n", 0o644);
    let args = [
        "batch",
        "--config",
        config.to_str().unwrap(),
        "--to",
        "bob@example.org",
        "--raw",
        message.to_str().unwrap(),
        "--count",
        "2",
        "--quiet",
    ];
    let output = run_at(sendbox_bin(), dir.path(), &args, &[], b"");
    assert_exit(&output, 0, "sent 2, refused 0, failed 0");
    let received = server.received();
    assert_eq!(received.len(), 2);
    assert!(received.iter().all(|r| r.sender == "alice@example.org"));
    assert!(received.iter().all(|r| r.user.as_deref() == Some(USER)));
}

#[test]
fn reply_to_option_and_header_fill_the_reply_to_field() {
    let server = loopback(ServerTls::StartTls);
    let (dir, config) = config_dir(&server, "");
    let args = [
        "send",
        "--config",
        config.to_str().unwrap(),
        "--to",
        "bob@example.org",
        "--reply-to",
        "Help Desk <help@example.org>",
        "--header",
        "Reply-To: \"Doe, Jane\" <jane@example.org>, list@example.org",
        "--header",
        "X-Kept: yes",
        "--body",
        "x",
    ];
    let output = run_at(sendbox_bin(), dir.path(), &args, &[], b"");
    assert_exit(&output, 0, "sent to bob@example.org");
    let received = server.received();
    // Reply-To addresses are not recipients.
    assert_eq!(received[0].recipients, ["bob@example.org"]);
    let data = data_text(&received[0]);
    let message = parsed(&received[0]);
    // One Reply-To field, with every address.
    assert_eq!(raw_fields(&message, "reply-to").len(), 1, "{data}");
    let reply_to: Vec<(Option<&str>, Option<&str>)> = message
        .reply_to()
        .and_then(|list| list.as_list())
        .expect("a Reply-To list")
        .iter()
        .map(|a| (a.name(), a.address()))
        .collect();
    for address in ["help@example.org", "jane@example.org", "list@example.org"] {
        assert!(reply_to.iter().any(|(_, a)| *a == Some(address)), "{data}");
    }
    assert!(
        reply_to.contains(&(Some("Doe, Jane"), Some("jane@example.org"))),
        "{data}"
    );
    assert_eq!(raw_fields(&message, "x-kept"), ["yes"], "{data}");
}

#[test]
fn sendmail_help_and_version_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("sendmail");
    std::os::unix::fs::symlink(sendbox_bin(), &link).unwrap();
    let version = format!("sendbox {}", env!("CARGO_PKG_VERSION"));
    let mut helps = Vec::new();
    for (program, args) in [
        (sendbox_bin(), &["sendmail", "--help"][..]),
        (link.as_path(), &["--help"]),
        (sendbox_bin(), &["help", "sendmail"]),
    ] {
        let output = run_at(program, dir.path(), args, &[], b"");
        assert_exit(&output, 0, "Usage: sendbox sendmail");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.contains("-f ADDR"), "{stdout}");
        // The whole rule for the config file, as every other command says it.
        assert!(stdout.contains("/etc/sendbox/config.toml"), "{stdout}");
        assert!(output.stderr.is_empty(), "{}", text(&output));
        helps.push(stdout.trim_end().to_owned());
    }
    // One text, whichever way it is asked for.
    assert!(helps.iter().all(|help| help == &helps[0]), "{helps:#?}");
    // -h is sendmail's hop count: said so, with where help is.
    let output = run_at(sendbox_bin(), dir.path(), &["sendmail", "-h"], &[], b"");
    assert_exit(&output, 64, "for help, give --help");
    for (program, args) in [
        (sendbox_bin(), &["sendmail", "--version"][..]),
        (link.as_path(), &["--version"]),
    ] {
        let output = run_at(program, dir.path(), args, &[], b"");
        assert_eq!(output.status.code(), Some(0), "{}", text(&output));
        assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), version);
    }
}

#[test]
fn an_empty_password_variable_is_refused_from_the_options_as_from_an_account() {
    let server = loopback(ServerTls::StartTls);
    let ca = ca_file(&server, "empty-env");
    let mut args = auth_args(ca.to_str().unwrap());
    args.extend([
        "--from",
        "a@example.org",
        "--to",
        "b@example.org",
        "--body",
        "x",
    ]);
    // The test password variable is set, but empty.
    let output = send(&server, "starttls", "", &args, None);
    assert_exit(&output, 64, "SENDBOX_TEST_PASSWORD is empty");
    assert!(server.received().is_empty());

    let (dir, config) = config_dir(&server, "");
    let config = config.to_str().unwrap();
    let args = [
        "send",
        "--config",
        config,
        "--to",
        "b@example.org",
        "--body",
        "x",
    ];
    let output = run_at(
        sendbox_bin(),
        dir.path(),
        &args,
        &[("SENDBOX_TEST_PASSWORD", "")],
        b"",
    );
    assert_exit(&output, 78, "SENDBOX_TEST_PASSWORD is empty");
}

/// `-N`, `-R` and `-V` reach the wire as the DSN parameters of MAIL and RCPT.
#[test]
fn sendmail_dsn_options_become_mail_and_rcpt_parameters() {
    use support::scripted::{ScriptedServer, Step};
    let server = ScriptedServer::start(
        vec![
            Step::Send("220 dsn.test ESMTP\r\n"),
            Step::Expect("EHLO"),
            Step::Send("250-dsn.test\r\n250 DSN\r\n"),
            Step::Expect("MAIL FROM:<alice@example.org>"),
            Step::Send("250 ok\r\n"),
            Step::Expect("RCPT TO:<bob@example.org>"),
            Step::Send("250 ok\r\n"),
            Step::Expect("DATA"),
            Step::Send("354 go\r\n"),
            Step::ExpectData,
            Step::Send("250 queued\r\n"),
            Step::Expect("QUIT"),
            Step::Send("221 bye\r\n"),
        ],
        None,
    );
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "default = \"s\"\n[accounts.s]\nserver = \"127.0.0.1:{}\"\ntls = \"none\"\n\
         from = \"alice@example.org\"\n",
        server.port()
    );
    let config = write_file(dir.path(), "config.toml", config.as_bytes(), 0o600);
    let args = [
        "sendmail",
        "-C",
        config.to_str().unwrap(),
        "-N",
        "success,delay",
        "-R",
        "hdrs",
        "-V",
        "env-1",
        "bob@example.org",
    ];
    let message = b"From: alice@example.org\nSubject: dsn\n\nbody\n";
    let output = run_at(sendbox_bin(), dir.path(), &args, &[], message);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let seen = server.seen();
    assert!(seen.stopped.is_none(), "{:?}", seen.stopped);
    let lines = seen.plaintext_text();
    assert!(
        lines.contains("MAIL FROM:<alice@example.org> RET=HDRS ENVID=env-1\r\n"),
        "{lines}"
    );
    assert!(
        lines.contains("RCPT TO:<bob@example.org> NOTIFY=SUCCESS,DELAY\r\n"),
        "{lines}"
    );
}

#[test]
fn help_names_every_command_the_config_rule_and_what_each_argument_is() {
    let help = run_sendbox(&["--help"], "", None);
    for command in [
        "grant", "queue", "serve", "sendmail", "batch", "demo", "generate",
    ] {
        assert!(
            String::from_utf8_lossy(&help.stdout)
                .lines()
                .next()
                .is_some_and(|summary| summary.contains(command)),
            "{command} not in the summary: {}",
            text(&help)
        );
    }
    for subcommand in [&["send"][..], &["batch"], &["serve"], &["queue", "list"]] {
        let help = run_sendbox(&[subcommand, &["--help"]].concat(), "", None);
        assert!(
            text(&help).contains("else /etc/sendbox/config.toml"),
            "{subcommand:?}: {}",
            text(&help)
        );
    }
    for action in ["show", "remove"] {
        let help = run_sendbox(&["queue", action, "--help"], "", None);
        assert!(
            text(&help).contains("ID>  The message's id, as `sendbox queue list` shows it")
                || text(&help).contains("ID]  The message's id, as `sendbox queue list` shows it"),
            "{}",
            text(&help)
        );
    }
    // batch: any of its three sources.
    let output = run_sendbox(&["batch", "--to", "bob@example.org"], "", None);
    assert_exit(&output, 64, "<--raw <FILE>|--dir <DIR>|--mbox <FILE>>");
    // -t and --keep-header belong to --raw, even beside options that compose.
    for flag in ["-t", "--keep-header"] {
        let output = run_sendbox(
            &["send", "--to", "bob@example.org", "--subject", "s", flag],
            "",
            None,
        );
        assert_exit(&output, 64, "cannot be used with");
    }
}

#[test]
fn a_missing_sender_says_where_one_could_come_from() {
    let server = loopback(ServerTls::StartTls);
    let (dir, config) = config_dir(&server, "");
    let config = config.to_str().unwrap();
    // --server without --account uses no account: its `from` is not used either.
    let args = [
        "send",
        "--config",
        config,
        "--server",
        "127.0.0.1:1",
        "--to",
        "bob@example.org",
        "--body",
        "b",
    ];
    let output = run_at(sendbox_bin(), dir.path(), &args, &[], b"");
    assert_exit(
        &output,
        64,
        "with --server and no --account no account is used",
    );
    // An account without `from`, named.
    let bare = write_file(
        dir.path(),
        "bare.toml",
        b"[accounts.bare]\nserver = \"127.0.0.1:1\"\ntls = \"none\"\n",
        0o600,
    );
    let args = [
        "send",
        "--config",
        bare.to_str().unwrap(),
        "--to",
        "bob@example.org",
        "--body",
        "b",
    ];
    let output = run_at(sendbox_bin(), dir.path(), &args, &[], b"");
    assert_exit(&output, 64, "give --from, or a `from` in account bare");
    assert_eq!(server.connections(), 0);
}

#[test]
fn the_transcript_keeps_its_order_and_a_ca_that_is_no_certificate_is_named() {
    let server = loopback(ServerTls::StartTls);
    let dir = tempfile::tempdir().unwrap();
    let ca = write_file(dir.path(), "ca.pem", server.ca_pem().as_bytes(), 0o644);
    let mut message = auth_args(ca.to_str().unwrap());
    message.extend([
        "--from",
        "alice@example.org",
        "--to",
        "bob@example.org",
        "--subject",
        "s",
        "--body",
        "b",
        "-v",
    ]);
    let output = send(&server, "starttls", PASSWORD, &message, None);
    assert_exit(&output, 0, "-- TLS established");
    let said = text(&output);
    let ready = said.find("S: 220 Ready to start TLS");
    let established = said.find("-- TLS established");
    assert!(ready.is_some() && ready < established, "{said}");

    // Not a certificate: named as the option that gave it, before anything connects.
    let key = write_file(
        dir.path(),
        "key.pem",
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        0o600,
    );
    let mut args = message.clone();
    args[1] = key.to_str().unwrap();
    let output = send(&server, "starttls", PASSWORD, &args, None);
    assert_exit(
        &output,
        78,
        &format!("--ca {}: not a CA certificate in PEM", key.display()),
    );
    assert_eq!(server.connections(), 1);
}

#[test]
fn generate_writes_the_man_pages_and_prints_completions() {
    let dir = tempfile::tempdir().unwrap();
    let man = dir.path().join("man");
    let written = run_sendbox(&["generate", "man", man.to_str().unwrap()], "", None);
    assert_exit(&written, 0, " pages written to ");
    for page in [
        "sendbox.1",
        "sendbox-send.1",
        "sendbox-dkim-keygen.1",
        "sendbox-sendmail.8",
        "sendbox.toml.5",
    ] {
        let text = std::fs::read_to_string(man.join(page)).unwrap();
        assert!(
            text.starts_with(".") && text.contains(".SH"),
            "{page}: {text}"
        );
    }
    // No temporary file left behind.
    let files = std::fs::read_dir(&man).unwrap().count();
    assert_eq!(
        String::from_utf8_lossy(&written.stdout).split(' ').next(),
        Some(files.to_string().as_str()),
        "the count printed is not the pages written"
    );
    // sendbox(1), one per subcommand and sub-subcommand, and the two written by hand.
    assert!(files >= 20, "{files} pages");

    for (shell, needle) in [
        ("bash", "complete -F _sendbox"),
        ("zsh", "#compdef sendbox"),
        ("fish", "complete -c sendbox"),
    ] {
        let printed = run_sendbox(&["generate", "completions", shell], "", None);
        assert_exit(&printed, 0, "");
        let script = String::from_utf8_lossy(&printed.stdout);
        assert!(script.contains(needle), "{shell}: {script}");
        assert!(script.contains("queue"), "{shell}: no subcommands");
    }
    assert_exit(
        &run_sendbox(&["generate", "completions", "tcsh"], "", None),
        64,
        "invalid value 'tcsh'",
    );
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    assert_exit(
        &run_sendbox(
            &["generate", "man", file.join("man").to_str().unwrap()],
            "",
            None,
        ),
        73,
        "name a folder you can write to",
    );
}
