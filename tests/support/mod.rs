//! Shared by the integration tests: the compiled component, loopback servers, mailers.
#![allow(dead_code)] // each test binary uses a different part

pub mod black_hole;
pub mod postfix;
pub mod scripted;
pub mod timed;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use sendbox::{Credentials, Envelope, Mailer, Sandbox, Server, TlsMode};
use sendbox_loopback::{AuthMechanism, LoopbackOptions, LoopbackServer, ServerTls};

pub const USER: &str = "tester";
pub const PASSWORD: &str = "correct-horse-battery-staple";

/// The component, compiled once per test binary.
pub fn sandbox() -> Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    SANDBOX
        .get_or_init(|| Sandbox::new().expect("the embedded component compiles"))
        .clone()
}

/// A loopback server with the test account and both AUTH mechanisms.
pub fn loopback(tls: ServerTls) -> LoopbackServer {
    loopback_with(
        tls,
        vec![AuthMechanism::Plain, AuthMechanism::Login],
        Vec::new(),
    )
}

pub fn loopback_with(
    tls: ServerTls,
    mechanisms: Vec<AuthMechanism>,
    refuse: Vec<&str>,
) -> LoopbackServer {
    let account = (tls != ServerTls::None).then(|| (USER.to_owned(), PASSWORD.to_owned()));
    LoopbackServer::start(LoopbackOptions {
        tls,
        account,
        mechanisms,
        refuse: refuse.into_iter().map(str::to_owned).collect(),
    })
    .expect("the loopback server starts")
}

/// A raw message as its sender wrote it: `data` without the `Date` and `Message-ID` that
/// sendbox puts first when the message lacks them. Their values differ on every run; the
/// proto message tests and tests/postfix.rs check them.
pub fn as_written(data: &[u8]) -> &[u8] {
    let mut rest = data;
    for added in [&b"Date: "[..], b"Message-ID: <"] {
        if rest.starts_with(added) {
            let end = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .map_or(rest.len(), |i| i + 2);
            rest = &rest[end..];
        }
    }
    rest
}

/// The Subject field of every message the server received, in order of arrival.
pub fn subjects(server: &LoopbackServer) -> Vec<String> {
    server
        .received()
        .iter()
        .map(|r| {
            String::from_utf8_lossy(&r.data)
                .lines()
                .take_while(|l| !l.is_empty())
                .find(|l| l.starts_with("Subject:"))
                .unwrap_or("")
                .to_owned()
        })
        .collect()
}

/// Server settings for `server`, trusting its CA.
pub fn server_config(server: &LoopbackServer, tls: TlsMode) -> Server {
    let mut config = Server::new("127.0.0.1", server.port(), tls);
    config.ca_pem = Some(server.ca_pem().to_owned());
    config
}

pub fn credentials(password: &str) -> Credentials {
    Credentials::password(USER, password)
}

/// A mailer for `server`, logging in with `password` if given.
pub async fn mailer(server: &LoopbackServer, tls: TlsMode, password: Option<&str>) -> Mailer {
    Mailer::new(
        sandbox(),
        server_config(server, tls),
        password.map(credentials),
    )
    .await
    .expect("an IP literal always resolves")
}

pub fn envelope(sender: &str, recipients: &[&str]) -> Envelope {
    Envelope::new(sender, recipients.iter().map(|r| r.to_string()).collect())
}

/// The SMTP error inside a sendbox error, or a panic saying what came instead.
#[track_caller]
pub fn smtp_error(error: sendbox::Error) -> sendbox::SendError {
    match error {
        sendbox::Error::Smtp(smtp) => smtp,
        other => panic!("expected an SMTP error, got {other:?}"),
    }
}

/// The `sendbox` binary under test: only the `sendbox-cli` package's tests have it.
// This module is shared with the library's tests, which have no binary: `env!` would not
// compile there, and a call from one of them is a mistake worth a clear panic.
#[allow(clippy::option_env_unwrap)]
pub fn sendbox_bin() -> &'static Path {
    Path::new(
        option_env!("CARGO_BIN_EXE_sendbox")
            .expect("a test of the sendbox-cli package (cli/Cargo.toml) runs the command"),
    )
}

/// `program` (the sendbox binary, or a link to it) as every test runs it: no config file
/// unless the test names one (SENDBOX_CONFIG unset, the configuration directory
/// `config_home`), and `password` in SENDBOX_TEST_PASSWORD.
pub fn sendbox_command(program: &Path, config_home: &Path, password: &str) -> Command {
    let mut command = Command::new(program);
    command
        .env_remove("SENDBOX_CONFIG")
        .env("XDG_CONFIG_HOME", config_home)
        // The outbox of `sendbox sendmail` goes there too, never into the user's own.
        .env("XDG_DATA_HOME", config_home)
        .env("SENDBOX_TEST_PASSWORD", password);
    command
}

/// Runs the `sendbox` binary with `args` (see [`sendbox_command`]; no configuration
/// directory) and `stdin` as its input.
pub fn run_sendbox(args: &[&str], password: &str, stdin: Option<&[u8]>) -> Output {
    let mut command = sendbox_command(sendbox_bin(), Path::new("/nonexistent"), password);
    command.args(args);
    run_piped(command, stdin.unwrap_or_default())
}

/// Runs `command` with `stdin` as its input, and collects its output.
pub fn run_piped(mut command: Command, stdin: &[u8]) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the command runs");
    let mut input = child.stdin.take().expect("piped stdin");
    // It may stop before it reads (on bad input, say): a closed pipe is not the test's
    // failure; its exit code tells.
    let _ = input.write_all(stdin);
    drop(input);
    child.wait_with_output().expect("the command finishes")
}

/// Exit status and output, for assertion messages.
pub fn text(output: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Asserts the exit code, and that the output (stdout or stderr) mentions `needle`.
#[track_caller]
pub fn assert_exit(output: &Output, code: i32, needle: &str) {
    let all = text(output);
    assert_eq!(output.status.code(), Some(code), "{all}");
    assert!(all.contains(needle), "{needle:?} not in {all}");
}

/// Calls the component's `send` directly: plaintext to `target` (given as its own
/// address), one recipient, a small raw message, default options.
pub async fn send_directly<T: Send>(
    store: &mut wasmtime::Store<T>,
    sender: &sendbox::component::Sender,
    target: std::net::SocketAddr,
) -> Result<sendbox::component::wit::Delivery, sendbox::component::wit::SendError> {
    let (server, envelope, message) = direct_send_args(target);
    sender
        .sendbox_mail_mail_sender()
        .call_send(
            store,
            &server,
            None,
            &envelope,
            &message,
            &sendbox::component::wit::SendOptions {
                dsn: None,
                require_tls: false,
                keep_raw_header: false,
                dkim: None,
            },
        )
        .await
        .expect("the call returns without a trap")
}

fn direct_send_args(
    target: std::net::SocketAddr,
) -> (
    sendbox::component::wit::Server,
    sendbox::component::wit::Envelope,
    sendbox::component::wit::Message,
) {
    use sendbox::component::wit;
    let server = wit::Server {
        host: target.ip().to_string(),
        port: target.port(),
        addresses: vec![target.ip().to_string()],
        tls: wit::TlsMode::InsecurePlaintext,
        ca_pem: None,
        ehlo_name: None,
        timeouts: None,
        transcript: false,
    };
    let envelope = wit::Envelope {
        sender: Some("alice@example.org".into()),
        recipients: vec!["bob@example.org".into()],
        recipients_from_headers: false,
        qualify_domain: None,
    };
    let message = wit::Message::Raw(b"Subject: direct\r\n\r\nhello\r\n".to_vec());
    (server, envelope, message)
}

/// Runs `command` to its end, or fails the test if it is still running after 30 s (with
/// what it printed): for what must stop, or must not hang.
pub fn finished_within_30_s(command: &mut Command) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!("still running after 30 s: {command:?}: {}", text(&output));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}
