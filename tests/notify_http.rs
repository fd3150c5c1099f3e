//! sendbox inside another component: the `examples/notify-http` handler, composed with a
//! granted sender by `sendbox grant --into`, served by `wasmtime serve` with all of the
//! network granted, and called with curl. `.ci/run` builds the example (`just notify-http`)
//! and installs wasmtime-cli 48.

mod support;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::scripted::{ScriptedServer, Step};
use support::*;

/// Where `just notify-http` leaves the example component.
fn app() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/notify-http.wasm");
    assert!(
        path.exists(),
        "{} is missing: build the example with `just notify-http`, as .ci/run does",
        path.display()
    );
    path
}

/// `sendbox grant --server 127.0.0.1:PORT --into APP -o OUTPUT`, with `--component
/// SENDER` when given.
fn grant_into(app: &Path, port: u16, output: &Path, sender: Option<&Path>) -> std::process::Output {
    let server = format!("127.0.0.1:{port}");
    let mut args = vec![
        "grant",
        "--server",
        &server,
        "--into",
        app.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
    ];
    if let Some(sender) = sender {
        args.extend(["--component", sender.to_str().unwrap()]);
    }
    run_sendbox(&args, "", None)
}

/// The example composed with a sender granted 127.0.0.1:`granted_port`, under
/// `wasmtime serve` with every network permission and the handler configured by `env`.
struct Served {
    process: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Served {
    fn start(granted_port: u16, env: &[(&str, &str)]) -> Served {
        Served::start_with(None, granted_port, env)
    }

    /// With `sender` granted instead of the sender the command carries.
    fn start_with(sender: Option<&Path>, granted_port: u16, env: &[(&str, &str)]) -> Served {
        let dir = tempfile::tempdir().unwrap();
        let composed = dir.path().join("notify.wasm");
        assert_exit(
            &grant_into(&app(), granted_port, &composed, sender),
            0,
            match sender {
                None => "with the sender, granted TCP to",
                Some(_) => "with the component, granted TCP to",
            },
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut command = Command::new("wasmtime");
        command
            .args(["serve", "-S", "cli", "-S", "inherit-network", "-S", "tcp"])
            .args(["--addr", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (name, value) in env {
            command.args(["--env", &format!("{name}={value}")]);
        }
        let process = command.arg(&composed).spawn().unwrap_or_else(|e| {
            panic!("cannot run `wasmtime` ({e}): `cargo install wasmtime-cli --version 48.0.8 --locked`, as .ci/run does")
        });
        let mut served = Served {
            process,
            port,
            _dir: dir,
        };
        // It compiles the component before it listens.
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = served.process.try_wait().unwrap() {
                panic!("wasmtime serve exited: {status}");
            }
            assert!(Instant::now() < deadline, "wasmtime serve is not listening");
            std::thread::sleep(Duration::from_millis(100));
        }
        served
    }

    /// curl with `args`; the status, the headers and the JSON body.
    fn curl(&self, args: &[&str]) -> Answer {
        let output = Command::new("curl")
            .args(["-sS", "-i", "--max-time", "60"])
            .args(args)
            .arg(format!("http://127.0.0.1:{}/", self.port))
            .output()
            .expect("curl runs");
        assert!(output.status.success(), "curl failed: {}", text(&output));
        let response = String::from_utf8(output.stdout).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").expect("a response");
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        let body = serde_json::from_str(body)
            .unwrap_or_else(|e| panic!("the body is not JSON ({e}): {response}"));
        Answer {
            status,
            head: head.to_ascii_lowercase(),
            body,
        }
    }

    /// POSTs `json` as application/json.
    fn post(&self, json: &str) -> Answer {
        self.curl(&[
            "-H",
            "content-type: application/json",
            "--data-binary",
            json,
        ])
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: Value,
}

/// The handler's settings for Postfix's port 25, with STARTTLS and the test CA.
fn postfix_env(ca: &str) -> Vec<(&'static str, &str)> {
    vec![
        ("NOTIFY_SERVER", "127.0.0.1:25"),
        ("NOTIFY_FROM", "alice@sendbox.test"),
        ("NOTIFY_TLS", "starttls"),
        ("NOTIFY_CA_PEM", ca),
    ]
}

#[test]
#[ignore = "needs Postfix, wasmtime-cli 48 and `just notify-http`: run .ci/run"]
fn a_post_to_the_served_app_ends_in_a_postfix_mailbox() {
    posted_to_postfix(None);
}

/// The sender as a platform gets it: pulled from the OCI registry by tests/oci/check.sh
/// (`wkg oci pull`), not the copy the command carries.
#[test]
#[ignore = "needs Postfix, wasmtime-cli 48, `just notify-http` and the sender pulled by tests/oci/check.sh: run .ci/run"]
fn a_sender_pulled_from_the_registry_is_granted_composed_and_delivers() {
    let pulled =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/oci/pulled/sendbox-sender.wasm");
    assert!(
        pulled.exists(),
        "{} is missing: tests/oci/check.sh pulls it from the test registry",
        pulled.display()
    );
    posted_to_postfix(Some(&pulled));
}

fn posted_to_postfix(sender: Option<&Path>) {
    let ca = support::postfix::state("ca.pem");
    let served = Served::start_with(sender, 25, &postfix_env(&ca));
    let subject = support::postfix::token("notify-http");
    let answer = served.post(&format!(
        r#"{{"to": "bob@sendbox.test", "subject": "{subject}", "text": "Disk 93% full"}}"#
    ));
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        answer.body["accepted"],
        serde_json::json!(["bob@sendbox.test"])
    );
    assert_eq!(answer.body["reply"]["code"], 250, "{answer:?}");
    let stored = support::postfix::delivered("bob", &subject);
    assert!(stored.contains("Disk 93% full"), "{stored}");
    assert!(stored.contains("From: <alice@sendbox.test>"), "{stored}");
    assert!(stored.contains("(using TLS"), "not over TLS: {stored}");
}

#[test]
#[ignore = "needs Postfix, wasmtime-cli 48 and `just notify-http`: run .ci/run"]
fn bad_requests_get_a_4xx_and_a_json_error() {
    let ca = support::postfix::state("ca.pem");
    let served = Served::start(25, &postfix_env(&ca));
    let error = |answer: &Answer| answer.body["error"].as_str().unwrap_or_default().to_owned();

    let get = served.curl(&[]);
    assert_eq!(get.status, 405, "{get:?}");
    let form = served.curl(&["--data-binary", "to=bob@sendbox.test"]);
    assert_eq!(form.status, 415, "{form:?}");
    for (json, needle) in [
        ("{", "EOF"),
        (r#"{"to": "bob@sendbox.test"}"#, "missing field `subject`"),
        (r#"{"to": [], "subject": "s", "text": "t"}"#, "no recipient"),
        (
            r#"{"to": "bob@sendbox.test", "subject": "s", "text": "t", "cc": "x"}"#,
            "unknown field `cc`",
        ),
    ] {
        let answer = served.post(json);
        assert_eq!(answer.status, 400, "{json}: {answer:?}");
        assert!(error(&answer).contains(needle), "{json}: {answer:?}");
    }
    let huge = format!(
        r#"{{"to": "bob@sendbox.test", "subject": "s", "text": "{}"}}"#,
        "x".repeat(100_000)
    );
    let too_big = served.post(&huge);
    assert_eq!(too_big.status, 413, "{too_big:?}");

    // Refused by the sender before anything is sent: a header or command injection.
    let injected = served.post(
        r#"{"to": "bob@sendbox.test\r\nRCPT TO:<carol@sendbox.test>", "subject": "s", "text": "t"}"#,
    );
    assert_eq!(injected.status, 422, "{injected:?}");
    assert_eq!(injected.body["kind"], "invalid-input", "{injected:?}");

    // Refused by the server: the SMTP reply is kept.
    let unknown = served.post(r#"{"to": "nobody@sendbox.test", "subject": "s", "text": "t"}"#);
    assert_eq!(unknown.status, 422, "{unknown:?}");
    assert_eq!(
        (
            &unknown.body["phase"],
            &unknown.body["kind"],
            &unknown.body["transient"]
        ),
        (&"rcpt".into(), &"rejected".into(), &false.into()),
        "{unknown:?}"
    );
    assert_eq!(unknown.body["reply"]["code"], 550, "{unknown:?}");
    assert_eq!(
        unknown.body["reply"]["enhanced-status"], "5.1.1",
        "{unknown:?}"
    );
}

#[test]
#[ignore = "needs wasmtime-cli 48 and `just notify-http`: run .ci/run"]
fn an_app_granted_another_port_sends_nothing_and_says_why() {
    // The handler is configured for this listener's port; the grant is for port 25.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let tried = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
    let served = Served::start(
        25,
        &[
            ("NOTIFY_SERVER", &tried),
            ("NOTIFY_FROM", "alice@sendbox.test"),
            ("NOTIFY_TLS", "insecure-plaintext"),
        ],
    );
    let answer = served.post(r#"{"to": "bob@sendbox.test", "subject": "s", "text": "t"}"#);
    assert_eq!(answer.status, 502, "{answer:?}");
    assert_eq!(answer.body["phase"], "connect", "{answer:?}");
    assert_eq!(answer.body["transient"], false, "{answer:?}");
    assert!(
        answer.body["error"].as_str().unwrap().contains("denied"),
        "{answer:?}"
    );
    assert!(
        listener.accept().is_err(),
        "the port the handler tried saw a connection"
    );
}

#[test]
#[ignore = "needs wasmtime-cli 48 and `just notify-http`: run .ci/run"]
fn a_server_that_says_try_later_gets_a_503_with_retry_after() {
    let server = ScriptedServer::start(
        vec![Step::Send("421 4.3.2 busy, try later\r\n"), Step::Close],
        None,
    );
    let address = format!("127.0.0.1:{}", server.port());
    let served = Served::start(
        server.port(),
        &[
            ("NOTIFY_SERVER", &address),
            ("NOTIFY_FROM", "alice@sendbox.test"),
            ("NOTIFY_TLS", "insecure-plaintext"),
        ],
    );
    let answer = served.post(r#"{"to": "bob@sendbox.test", "subject": "s", "text": "t"}"#);
    assert_eq!(answer.status, 503, "{answer:?}");
    assert!(answer.head.contains("\r\nretry-after: 60"), "{answer:?}");
    assert_eq!(answer.body["transient"], true, "{answer:?}");
    assert_eq!(answer.body["reply"]["code"], 421, "{answer:?}");
    assert_eq!(
        answer.body["reply"]["text"], "busy, try later",
        "{answer:?}"
    );
}

#[test]
#[ignore = "needs `just notify-http`: run .ci/run"]
fn the_composed_app_serves_http_and_reaches_the_network_only_through_the_grant() {
    let dir = tempfile::tempdir().unwrap();
    let composed = dir.path().join("notify.wasm");
    assert_exit(
        &grant_into(&app(), 25, &composed, None),
        0,
        "127.0.0.1:25 only",
    );
    let engine = wasmtime::Engine::default();
    let component = wasmtime::component::Component::from_file(&engine, &composed).unwrap();
    let ty = component.component_type();
    let exports: Vec<String> = ty.exports(&engine).map(|(n, _)| n.to_string()).collect();
    assert_eq!(exports, ["wasi:http/incoming-handler@0.2.12"]);
    let imports: Vec<String> = ty.imports(&engine).map(|(n, _)| n.to_string()).collect();
    for import in &imports {
        assert!(
            !import.starts_with("sendbox:")
                && !import.starts_with("wasi:http/outgoing-handler")
                && !import.contains("udp")
                && !import.contains("ip-name-lookup"),
            "imports {import}: {imports:#?}"
        );
    }
}

/// An application component of imports only, written as text.
fn app_importing(dir: &Path, imports: &[&str]) -> PathBuf {
    let wat: String = imports
        .iter()
        .map(|import| format!(r#"(import "{import}" (instance))"#))
        .collect();
    let path = dir.join("app.wasm");
    std::fs::write(&path, wat::parse_str(format!("(component {wat})")).unwrap()).unwrap();
    path
}

#[test]
fn an_app_that_reaches_the_network_itself_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.wasm");
    for (imports, needle) in [
        (
            &[
                "sendbox:mail/mail-sender@0.2.0",
                "wasi:http/outgoing-handler@0.2.12",
            ][..],
            "imports wasi:http/outgoing-handler@0.2.12, which would reach the network",
        ),
        (
            &["sendbox:mail/mail-sender@0.2.0", "wasi:sockets/tcp@0.2.12"][..],
            "imports wasi:sockets/tcp@0.2.12",
        ),
        (
            &["wasi:cli/environment@0.2.12"][..],
            "does not import sendbox:mail/mail-sender",
        ),
    ] {
        let app = app_importing(dir.path(), imports);
        assert_exit(&grant_into(&app, 25, &output, None), 65, needle);
        assert!(!output.exists(), "{imports:?}: something was written");
    }
}
