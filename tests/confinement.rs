//! The sandbox against a component that tries to escape it: `tests/probe/` is built to
//! look up names, read files, read the environment and arguments, connect anywhere,
//! allocate without end and spin. Each test runs it under sendbox's policy
//! (`sendbox::policy::confined_store`) and shows the attempt fails.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sendbox::policy::{self, Confined, Limits, NetworkGrant, Transcript};
use wasmtime::Store;
use wasmtime::component::{Component, Linker};

wasmtime::component::bindgen!({
    path: "../tests/probe/wit",
    world: "probe",
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
