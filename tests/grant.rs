//! `sendbox grant`: the sender composed behind the grant holds to one server in a host
//! that grants all of the network, as `wasmtime run -S inherit-network` does. The host
//! here is wasmtime-wasi with every socket permission on and no address check, and the
//! server is the in-process one on loopback.

mod support;

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::Path;

use sendbox::component::{Sender, wit};
use sendbox::mailer::{ErrorKind, Phase};
use sendbox_loopback::ServerTls;
use support::*;
use wasmtime::Store;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

wasmtime::component::bindgen!({
    // The probe's world also exports sendbox's own interface, from `wit/`.
    path: ["../wit", "../tests/probe/wit"],
    world: "sendbox:probe/probe",
    exports: { default: async },
});

const PROBE: &[u8] = include_bytes!("probe/probe.wasm");

/// A host that grants everything: any address, TCP, UDP and name lookups.
struct OpenHost {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for OpenHost {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

fn open_store(engine: &wasmtime::Engine) -> Store<OpenHost> {
    let mut wasi = WasiCtxBuilder::new();
    wasi.inherit_network()
        .allow_tcp(true)
        .allow_udp(true)
        .allow_ip_name_lookup(true);
    let mut store = Store::new(
        engine,
        OpenHost {
            wasi: wasi.build(),
            table: ResourceTable::new(),
        },
    );
    store.epoch_deadline_async_yield_and_update(1);
    store
}

/// `sendbox grant --server 127.0.0.1:PORT [--component FILE]`, read back.
fn granted(port: u16, component: Option<&Path>) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("granted.wasm");
    let server = format!("127.0.0.1:{port}");
    let mut args = vec!["grant", "--server", &server, "-o", output.to_str().unwrap()];
    if let Some(component) = component {
        args.extend(["--component", component.to_str().unwrap()]);
    }
    let run = run_sendbox(&args, "", None);
    assert_exit(&run, 0, &format!("granted TCP to {server} only"));
    std::fs::read(&output).unwrap()
}

fn instantiate_linker(engine: &wasmtime::Engine) -> Linker<OpenHost> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
    linker
}

/// Sends a small message through `granted` in the open host to 127.0.0.1:`port`.
async fn send_through(granted: &[u8], port: u16) -> Result<wit::Delivery, wit::SendError> {
    let engine = sendbox::component::engine().unwrap();
    let component = Component::new(&engine, granted).expect("the granted component compiles");
    let mut store = open_store(&engine);
    let sender = Sender::instantiate_async(&mut store, &component, &instantiate_linker(&engine))
        .await
        .expect("the granted component instantiates in a host that grants everything");
    send_directly(
        &mut store,
        &sender,
        SocketAddr::from(([127, 0, 0, 1], port)),
    )
    .await
}

#[test]
fn the_granted_component_imports_the_hosts_sockets_and_exports_only_the_sender() {
    let granted = granted(2525, None);
    let engine = wasmtime::Engine::default();
    let component = Component::new(&engine, &granted).unwrap();
    let ty = component.component_type();
    let exports: Vec<String> = ty.exports(&engine).map(|(n, _)| n.to_string()).collect();
    assert_eq!(exports, ["sendbox:mail/mail-sender@0.2.0"]);
    let imports: Vec<String> = ty.imports(&engine).map(|(n, _)| n.to_string()).collect();
    for forbidden in [
        "udp",
        "ip-name-lookup",
        "sendbox:grant",
        "wasi:filesystem",
        "wasi:http",
    ] {
        assert!(
            imports.iter().all(|i| !i.contains(forbidden)),
            "imports {forbidden}: {imports:#?}"
        );
    }
    assert!(
        imports.contains(&"wasi:sockets/tcp@0.2.12".to_owned()),
        "{imports:#?}"
    );
}

#[tokio::test]
async fn the_granted_sender_delivers_to_its_server_in_a_host_that_grants_everything() {
    let server = loopback(ServerTls::None);
    let delivery = send_through(&granted(server.port(), None), server.port())
        .await
        .expect("delivered");
    assert_eq!(delivery.accepted, ["bob@example.org"]);
    assert_eq!(subjects(&server), ["Subject: direct"]);
}

#[test]
fn a_component_that_reaches_the_network_around_the_grant_is_refused() {
    // Imports the grant does not serve: HTTP, and sockets of another WASI version.
    for import in [
        "wasi:http/outgoing-handler@0.2.12",
        "wasi:sockets/tcp@0.2.0",
    ] {
        let wat = format!(r#"(component (import "{import}" (instance)))"#);
        let dir = tempfile::tempdir().unwrap();
        let component = dir.path().join("component.wasm");
        std::fs::write(&component, wat::parse_str(&wat).unwrap()).unwrap();
        let output = dir.path().join("granted.wasm");
        let args = [
            "grant",
            "--server",
            "127.0.0.1:25",
            "--component",
            component.to_str().unwrap(),
            "-o",
            output.to_str().unwrap(),
        ];
        assert_exit(&run_sendbox(&args, "", None), 65, import);
        assert!(
            !output.exists(),
            "a granted component was written for {import}"
        );
    }
}

#[test]
fn what_is_not_a_component_is_named_and_said_so() {
    let dir = tempfile::tempdir().unwrap();
    let not_wasm = dir.path().join("notwasm.txt");
    std::fs::write(&not_wasm, "hello").unwrap();
    let module = dir.path().join("module.wasm");
    std::fs::write(&module, wat::parse_str("(module)").unwrap()).unwrap();
    // What a registry also holds, or a download cut short or damaged.
    let grant = Path::new(env!("CARGO_MANIFEST_DIR")).join("component/grant.wasm");
    let no_network = dir.path().join("wit-like.wasm");
    std::fs::write(&no_network, wat::parse_str("(component)").unwrap()).unwrap();
    let sender = sendbox::component::COMPONENT;
    let cut = dir.path().join("cut.wasm");
    std::fs::write(&cut, &sender[..sender.len() / 2]).unwrap();
    let damaged = dir.path().join("damaged.wasm");
    let mut bytes = sender.to_vec();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&damaged, bytes).unwrap();
    let output = dir.path().join("granted.wasm");
    for (given, said) in [
        (&not_wasm, "it is not WebAssembly"),
        (&module, "it is a core WebAssembly module, not a component"),
        (
            &grant,
            "it is a grant (it serves wasi:sockets, or imports sendbox:grant)",
        ),
        (
            &no_network,
            "it imports no wasi:sockets/tcp, so there is nothing to grant",
        ),
        (&cut, "it is not a valid component (damaged or cut short?)"),
        (
            &damaged,
            "it is not a valid component (damaged or cut short?)",
        ),
    ] {
        let args = [
            "grant",
            "--server",
            "127.0.0.1:25",
            "--component",
            given.to_str().unwrap(),
            "-o",
            output.to_str().unwrap(),
        ];
        let run = run_sendbox(&args, "", None);
        assert_exit(
            &run,
            65,
            &format!("cannot grant --component {}: {said}", given.display()),
        );
        assert!(!text(&run).contains("sendbox:inspected"), "{}", text(&run));
        assert!(!output.exists(), "{} was written", output.display());
    }
    // An application that imports no sender: the interface named whole.
    let app = dir.path().join("app.wasm");
    std::fs::write(&app, wat::parse_str("(component)").unwrap()).unwrap();
    let args = [
        "grant",
        "--server",
        "127.0.0.1:25",
        "--into",
        app.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
    ];
    assert_exit(
        &run_sendbox(&args, "", None),
        65,
        "does not import sendbox:mail/mail-sender (in any version)",
    );
}

#[tokio::test]
async fn a_granted_sender_also_runs_in_sendboxs_own_host() {
    // Confined twice: by the grant inside, and by the host's policy outside.
    let server = loopback(ServerTls::None);
    let sandbox = sendbox::Sandbox::from_component(&granted(server.port(), None)).unwrap();
    let mailer = sendbox::Mailer::new(
        sandbox,
        sendbox::Server::new(
            "127.0.0.1",
            server.port(),
            sendbox::TlsMode::InsecurePlaintext,
        ),
        None,
    )
    .await
    .unwrap();
    let envelope = envelope("alice@example.org", &["bob@example.org"]);
    for subject in ["one", "two"] {
        let message = format!("Subject: {subject}\r\n\r\nx\r\n");
        mailer.send(&envelope, message.as_bytes()).await.unwrap();
    }
    assert_eq!(subjects(&server), ["Subject: one", "Subject: two"]);
}

#[tokio::test]
async fn a_sender_granted_another_port_is_refused_and_connects_nowhere() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let tried = listener.local_addr().unwrap().port();
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    let granted = granted(other.local_addr().unwrap().port(), None);

    let error = send_through(&granted, tried).await.expect_err("refused");
    assert_eq!(
        (error.phase, error.kind),
        (Phase::Connect, ErrorKind::Network)
    );
    assert!(!error.transient, "a policy refusal is permanent: {error:?}");
    assert!(error.message.contains("denied"), "{error:?}");
    let accepted = listener.accept();
    assert!(
        matches!(&accepted, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the port it tried saw a connection: {accepted:?}"
    );
}

/// The nosy probe, granted one port, in the open host.
async fn granted_probe(port: u16) -> (Store<OpenHost>, Probe) {
    let dir = tempfile::tempdir().unwrap();
    let probe = dir.path().join("probe.wasm");
    std::fs::write(&probe, PROBE).unwrap();
    let granted = granted(port, Some(&probe));
    let engine = sendbox::component::engine().unwrap();
    let component = Component::new(&engine, &granted).unwrap();
    let mut store = open_store(&engine);
    let probe = Probe::instantiate_async(&mut store, &component, &instantiate_linker(&engine))
        .await
        .expect("the granted probe instantiates");
    (store, probe)
}

#[tokio::test]
async fn the_granted_probe_reaches_its_port_and_nothing_else() {
    let granted_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = granted_listener.local_addr().unwrap().port();
    let (mut store, probe) = granted_probe(port).await;

    let reached = probe
        .call_connect(&mut store, "127.0.0.1", port)
        .await
        .unwrap();
    assert_eq!(reached, Ok(()), "the granted port");

    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    let other_addr: SocketAddr = other.local_addr().unwrap();
    other.set_nonblocking(true).unwrap();
    for (address, port) in [
        ("127.0.0.1", other_addr.port()),
        ("127.0.0.2", port),
        ("::1", port),
        ("::ffff:127.0.0.1", port),
    ] {
        let result = probe.call_connect(&mut store, address, port).await.unwrap();
        assert!(result.is_err(), "{address}:{port} was reached");
    }
    assert!(other.accept().is_err(), "the other port saw a connection");

    for name in ["localhost", "example.org"] {
        let result = probe.call_lookup(&mut store, name).await.unwrap();
        assert!(result.is_err(), "{name} resolved to {result:?}");
    }

    let (udp, udp_port) = udp_listener();
    let sent = probe
        .call_send_udp(&mut store, "127.0.0.1", udp_port)
        .await
        .unwrap();
    assert!(sent.is_err(), "a UDP datagram went out");
    assert!(received_datagram(&udp).is_none());
}

/// The control: the same host without the grant lets the probe reach anything, so the
/// refusals above are the grant's doing.
#[tokio::test]
async fn without_the_grant_the_open_host_lets_the_probe_reach_anything() {
    let engine = sendbox::component::engine().unwrap();
    let component = Component::new(&engine, PROBE).unwrap();
    let mut store = open_store(&engine);
    let probe = Probe::instantiate_async(&mut store, &component, &instantiate_linker(&engine))
        .await
        .unwrap();
    let any = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = any.local_addr().unwrap().port();
    assert_eq!(
        probe
            .call_connect(&mut store, "127.0.0.1", port)
            .await
            .unwrap(),
        Ok(())
    );
    let (udp, udp_port) = udp_listener();
    let sent = probe
        .call_send_udp(&mut store, "127.0.0.1", udp_port)
        .await
        .unwrap();
    assert_eq!(sent, Ok(()));
    assert_eq!(received_datagram(&udp).as_deref(), Some(&b"probe"[..]));
}

fn udp_listener() -> (UdpSocket, u16) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(std::time::Duration::from_millis(500)))
        .unwrap();
    let port = socket.local_addr().unwrap().port();
    (socket, port)
}

fn received_datagram(socket: &UdpSocket) -> Option<Vec<u8>> {
    let mut buffer = [0; 64];
    socket.recv(&mut buffer).ok().map(|n| buffer[..n].to_vec())
}

// Under the wasmtime CLI, which grants all of the network with `-S inherit-network`
// (and name lookups and UDP with the flags below). `.ci/run` installs wasmtime-cli 48.

const WASMTIME_FLAGS: [&str; 8] = [
    "-S",
    "inherit-network",
    "-S",
    "allow-ip-name-lookup",
    "-S",
    "tcp",
    "-S",
    "udp",
];

/// `wasmtime run` with every network permission, calling `invocation` on `component`.
fn wasmtime_invoke(component: &[u8], invocation: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("component.wasm");
    std::fs::write(&path, component).unwrap();
    let mut command = std::process::Command::new("wasmtime");
    command
        .arg("run")
        .args(WASMTIME_FLAGS)
        .args(["--invoke", invocation])
        .arg(&path);
    command.output().unwrap_or_else(|e| {
        panic!("cannot run `wasmtime` ({e}): `cargo install wasmtime-cli --version 48.0.8 --locked`, as .ci/run does")
    })
}

/// The WAVE call of `send`: a composed message from alice to bob at sendbox.test with
/// `subject`, plaintext to 127.0.0.1:`port`.
fn send_invocation(port: u16, subject: &str) -> String {
    format!(
        r#"send({{host: "127.0.0.1", port: {port}, addresses: ["127.0.0.1"], tls: insecure-plaintext, transcript: false}}, none, {{recipients: [], recipients-from-headers: true}}, composed({{from: {{address: "alice@sendbox.test"}}, to: [{{address: "bob@sendbox.test"}}], cc: [], bcc: [], reply-to: [], subject: "{subject}", text: some("through the grant"), attachments: [], headers: []}}), {{require-tls: false, keep-raw-header: false}})"#
    )
}

#[test]
#[ignore = "needs Postfix on loopback and wasmtime-cli 48: run .ci/run, or `just postfix` and install wasmtime-cli"]
fn under_the_wasmtime_cli_the_granted_sender_delivers_to_postfix() {
    let subject = support::postfix::token("wasmtime-grant");
    let output = wasmtime_invoke(&granted(25, None), &send_invocation(25, &subject));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        stdout.starts_with(r#"ok({accepted: ["bob@sendbox.test"]"#),
        "{}",
        text(&output)
    );
    let stored = support::postfix::delivered("bob", &subject);
    assert!(stored.contains("through the grant"), "{stored}");
}

#[test]
#[ignore = "needs wasmtime-cli 48: run .ci/run, or install it"]
fn under_the_wasmtime_cli_a_sender_granted_another_port_is_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let tried = listener.local_addr().unwrap().port();
    let output = wasmtime_invoke(&granted(25, None), &send_invocation(tried, "refused"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.starts_with("err({phase: connect, kind: network")
            && stdout.contains("transient: false"),
        "{}",
        text(&output)
    );
    assert!(stdout.contains("denied"), "{}", text(&output));
    assert!(
        listener.accept().is_err(),
        "the port it tried saw a connection"
    );
}

#[test]
#[ignore = "needs wasmtime-cli 48: run .ci/run, or install it"]
fn under_the_wasmtime_cli_the_granted_probe_reaches_its_port_and_nothing_else() {
    let granted_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = granted_listener.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let probe = dir.path().join("probe.wasm");
    std::fs::write(&probe, PROBE).unwrap();
    let granted_probe = granted(port, Some(&probe));
    let stdout = |invocation: &str| {
        let output = wasmtime_invoke(&granted_probe, invocation);
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    };

    assert_eq!(stdout(&format!(r#"connect("127.0.0.1", {port})"#)), "ok");
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    other.set_nonblocking(true).unwrap();
    let other_port = other.local_addr().unwrap().port();
    for invocation in [
        format!(r#"connect("127.0.0.1", {other_port})"#),
        format!(r#"connect("127.0.0.2", {port})"#),
        format!(r#"connect("::1", {port})"#),
        r#"lookup("localhost")"#.to_owned(),
    ] {
        let result = stdout(&invocation);
        assert!(result.starts_with("err("), "{invocation}: {result}");
    }
    assert!(other.accept().is_err(), "the other port saw a connection");
    let (udp, udp_port) = udp_listener();
    let result = stdout(&format!(r#"send-udp("127.0.0.1", {udp_port})"#));
    assert!(result.starts_with("err("), "send-udp: {result}");
    assert!(received_datagram(&udp).is_none(), "a datagram arrived");
}

#[test]
fn a_file_name_with_control_bytes_is_shown_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("o\x1b[31m\nx.wasm");
    let run = run_sendbox(
        &[
            "grant",
            "--server",
            "127.0.0.1:25",
            "-o",
            output.to_str().unwrap(),
        ],
        "",
        None,
    );
    assert_exit(&run, 0, "o\\x1b[31m\\nx.wasm: the sender, granted TCP to");
    assert!(!text(&run).contains('\x1b'), "{}", text(&run));
    let missing = dir.path().join("in\nput.wasm");
    let run = run_sendbox(
        &[
            "grant",
            "--server",
            "127.0.0.1:25",
            "--component",
            missing.to_str().unwrap(),
            "-o",
            output.to_str().unwrap(),
        ],
        "",
        None,
    );
    assert_exit(&run, 66, "cannot read ");
    assert!(text(&run).contains("in\\nput.wasm"), "{}", text(&run));
}
