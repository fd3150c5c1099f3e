//! The sandbox against a component that tries to escape it: `tests/probe/` is built to
//! look up names, read files, read the environment and arguments, connect anywhere,
//! allocate without end, spin and panic. Each test runs it under sendbox's policy
//! (`sendbox::policy::confined_store`) and shows the attempt fails.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sendbox::policy::{self, Confined, Limits, NetworkGrant, Transcript, TranscriptBuffer};
use sendbox::{Credentials, Envelope, Mailer, Sandbox, Server, TlsMode};
use wasmtime::Store;
use wasmtime::component::{Component, Linker};

wasmtime::component::bindgen!({
    // The probe's world also exports sendbox's own interface, from `wit/`.
    path: ["../wit", "../tests/probe/wit"],
    world: "sendbox:probe/probe",
    exports: { default: async },
});

const PROBE: &[u8] = include_bytes!("probe/probe.wasm");

struct Compiled {
    engine: wasmtime::Engine,
    pre: ProbePre<Confined>,
}

fn compiled() -> &'static Compiled {
    static COMPILED: OnceLock<Compiled> = OnceLock::new();
    COMPILED.get_or_init(|| {
        let engine = sendbox::component::engine().unwrap();
        let component = Component::new(&engine, PROBE).expect("the probe compiles");
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
        let pre = ProbePre::new(linker.instantiate_pre(&component).unwrap()).unwrap();
        Compiled { engine, pre }
    })
}

/// A probe confined exactly as the sendbox component is, granted `grant`.
async fn confined_probe(grant: Vec<SocketAddr>, limits: Limits) -> (Store<Confined>, Probe) {
    let compiled = compiled();
    let mut store = policy::confined_store(
        &compiled.engine,
        NetworkGrant::new(grant),
        limits,
        &Transcript::Off,
    );
    let probe = compiled.pre.instantiate_async(&mut store).await.unwrap();
    (store, probe)
}

#[tokio::test]
async fn it_cannot_look_up_names() {
    let (mut store, probe) = confined_probe(Vec::new(), Limits::default()).await;
    for name in ["localhost", "example.org"] {
        let result = probe.call_lookup(&mut store, name).await.unwrap();
        assert!(result.is_err(), "{name} resolved to {result:?}");
    }
}

#[tokio::test]
async fn it_sees_no_files() {
    let (mut store, probe) = confined_probe(Vec::new(), Limits::default()).await;
    for path in ["/", ".", "/etc", "/tmp"] {
        let result = probe.call_list_dir(&mut store, path).await.unwrap();
        assert!(result.is_err(), "{path} listed: {result:?}");
    }
}

#[tokio::test]
async fn it_sees_no_environment_and_no_arguments() {
    assert!(
        std::env::var_os("PATH").is_some(),
        "the host has an environment to leak"
    );
    let (mut store, probe) = confined_probe(Vec::new(), Limits::default()).await;
    assert_eq!(
        probe.call_environment(&mut store).await.unwrap(),
        Vec::<(String, String)>::new()
    );
    assert_eq!(
        probe.call_arguments(&mut store).await.unwrap(),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn it_cannot_send_udp() {
    let receiver = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    receiver
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let address = receiver.local_addr().unwrap();
    // Even with the receiver's address granted: the grant is for TCP.
    let (mut store, probe) = confined_probe(vec![address], Limits::default()).await;
    let sent = probe
        .call_send_udp(&mut store, "127.0.0.1", address.port())
        .await
        .unwrap();
    assert!(sent.is_err(), "a UDP datagram went out");
    assert!(receiver.recv(&mut [0; 64]).is_err(), "a datagram arrived");
}

#[tokio::test]
async fn it_reaches_the_granted_address_and_nothing_else() {
    let granted = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let granted_address = granted.local_addr().unwrap();
    let (mut store, probe) = confined_probe(vec![granted_address], Limits::default()).await;

    let ok = probe
        .call_connect(&mut store, "127.0.0.1", granted_address.port())
        .await
        .unwrap();
    assert_eq!(ok, Ok(()));
    for (address, port) in [
        ("127.0.0.1", other.local_addr().unwrap().port()),
        ("127.0.0.2", granted_address.port()),
        ("::1", granted_address.port()),
        ("::ffff:127.0.0.1", granted_address.port()),
    ] {
        let result = probe.call_connect(&mut store, address, port).await.unwrap();
        assert!(result.is_err(), "{address} port {port} was reached");
    }
    other.set_nonblocking(true).unwrap();
    assert!(
        other.accept().is_err(),
        "the other listener got a connection"
    );
    // The policy refused the first three; wasmtime refuses IPv4-mapped addresses itself.
    assert_eq!(
        store.data().denied().len(),
        3,
        "{:?}",
        store.data().denied()
    );
}

#[tokio::test]
async fn memory_stays_under_the_cap() {
    let limits = Limits {
        memory_bytes: 32 << 20,
        ..Limits::default()
    };
    let (mut store, probe) = confined_probe(Vec::new(), limits).await;
    // Asking for 256 MiB: memory.grow fails at the cap and the guest's allocator says so.
    let got = probe.call_allocate(&mut store, 256).await.unwrap();
    assert!(got < 32, "got {got} MiB under a 32 MiB cap");
    // A modest request still works in a fresh instance: the cap, not a broken host, refused.
    let (mut store, probe) = confined_probe(Vec::new(), limits).await;
    assert_eq!(probe.call_allocate(&mut store, 8).await.unwrap(), 8);
}

#[tokio::test]
async fn a_spinning_guest_is_stopped() {
    let (mut store, probe) = confined_probe(Vec::new(), Limits::default()).await;
    let started = Instant::now();
    // The same bound `Mailer` puts on every call: the epoch makes the guest yield, the timer fires.
    let result =
        tokio::time::timeout(Duration::from_millis(500), probe.call_spin(&mut store)).await;
    assert!(result.is_err(), "the spin returned: {result:?}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "stopped only after {:?}",
        started.elapsed()
    );
}

/// A password only the probe is given; it must never come back in an error.
const PROBE_SECRET: &str = "probe-secret-Zq7-never-in-errors";

#[tokio::test]
async fn a_panic_quoting_a_secret_traps() {
    let buffer = TranscriptBuffer::new(64 * 1024);
    let compiled = compiled();
    let mut store = policy::confined_store(
        &compiled.engine,
        NetworkGrant::new(Vec::new()),
        Limits::default(),
        &Transcript::Capture(buffer.clone()),
    );
    let probe = compiled.pre.instantiate_async(&mut store).await.unwrap();
    let trap = probe
        .call_panic_with(&mut store, PROBE_SECRET)
        .await
        .expect_err("a panic traps");
    assert_eq!(
        trap.downcast_ref::<wasmtime::Trap>(),
        Some(&wasmtime::Trap::UnreachableCodeReached),
        "{trap:?}"
    );
    // What the host has to keep out of its errors: the panic message, secret and all.
    let stderr = buffer.contents();
    assert!(stderr.contains("panicked at"), "{stderr}");
    assert!(stderr.contains(PROBE_SECRET), "{stderr}");
}

/// The probe run as the sender, through `Mailer`: its `send` and `session.open` panic
/// with the password in the panic message. The error says the component panicked and
/// where, in one line, without the panic message or a wasm backtrace.
#[tokio::test]
async fn a_panicking_sender_is_reported_without_its_panic_message() {
    let sandbox = Sandbox::from_component(PROBE).expect("the probe links as a sender");
    // Never contacted: the probe panics first.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let server = Server::new(
        "127.0.0.1",
        listener.local_addr().unwrap().port(),
        TlsMode::Starttls,
    );
    let envelope = Envelope::new("a@example.org", vec!["b@example.org".into()]);
    let captured = TranscriptBuffer::new(64 * 1024);
    for transcript in [Transcript::Off, Transcript::Capture(captured.clone())] {
        let mailer = Mailer::new(
            sandbox.clone(),
            server.clone(),
            Some(Credentials::password("alice", PROBE_SECRET)),
        )
        .await
        .unwrap()
        .with_transcript(transcript.clone());
        let sent = mailer.send(&envelope, b"Subject: x\r\n\r\nx\r\n").await;
        let opened = mailer.open().await.map(|_| ());
        for result in [sent.map(|_| ()), opened] {
            let error = result.expect_err("the probe panics");
            let shown = format!("{error}\n{error:?}");
            let sendbox::Error::Component(why) = &error else {
                panic!("expected a component error, got {error:?}");
            };
            assert!(!shown.contains(PROBE_SECRET), "{transcript:?}: {shown}");
            assert!(why.starts_with("it panicked at "), "{why}");
            assert!(why.contains("tests/probe/src/lib.rs:"), "{why}");
            assert!(why.contains("wasm trap"), "{why}");
            assert!(!why.contains("backtrace") && !why.contains('\n'), "{why}");
            assert!(!error.is_transient());
        }
    }
    // The panic message did quote the secret: it reached the captured stderr.
    assert!(captured.contents().contains(PROBE_SECRET));
}
