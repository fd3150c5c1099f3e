//! The sandbox holds: the component reaches the granted address and port, and nothing else,
//! even when it is asked to.

mod support;

use std::net::SocketAddr;

use sendbox::component::wit;
use sendbox::mailer::{ErrorKind, Phase};
use sendbox::{Limits, NetworkGrant, Transcript};
use sendbox_loopback::ServerTls;
use support::*;

/// Calls the component's `send` directly, asking it to connect to `target` while the host
/// granted only `grant`.
async fn send_to(
    grant: NetworkGrant,
    target: SocketAddr,
) -> (
    Result<wit::Delivery, wit::SendError>,
    Vec<sendbox::policy::Denied>,
) {
    let (mut store, sender) = sandbox()
        .instantiate(grant, Limits::default(), &Transcript::Off)
        .await
        .expect("instantiates");
    let result = send_directly(&mut store, &sender, target).await;
    (result, store.data().denied())
}

#[tokio::test]
async fn the_granted_server_is_reachable() {
    let server = loopback(ServerTls::None);
    let (result, denied) =
        send_to(NetworkGrant::new(vec![server.address()]), server.address()).await;
    result.expect("delivered to the granted server");
    assert!(denied.is_empty(), "{denied:?}");
    assert_eq!(server.received().len(), 1);
}

#[tokio::test]
async fn another_port_on_the_same_host_is_refused() {
    let granted = loopback(ServerTls::None);
    let other = loopback(ServerTls::None);
    let (result, denied) =
        send_to(NetworkGrant::new(vec![granted.address()]), other.address()).await;
    let error = result.expect_err("the other port is not granted");
    assert_eq!(
        (error.phase, error.kind, error.transient),
        (Phase::Connect, ErrorKind::Network, false),
        "a policy refusal is permanent"
    );
    assert!(error.message.contains("access denied"), "{}", error.message);
    assert_eq!(other.connections(), 0, "the other server was reached");
    assert!(
        denied.iter().any(|d| d.address == other.address()),
        "{denied:?}"
    );
}

#[tokio::test]
async fn another_address_is_refused() {
    let server = loopback(ServerTls::None);
    // 127.0.0.2 is loopback too: the policy, not the network, must stop it.
    let elsewhere: SocketAddr = format!("127.0.0.2:{}", server.port()).parse().unwrap();
    let (result, denied) = send_to(NetworkGrant::new(vec![server.address()]), elsewhere).await;
    let error = result.expect_err("not granted");
    assert_eq!(error.phase, Phase::Connect);
    assert!(error.message.contains("access denied"), "{}", error.message);
    assert!(denied.iter().any(|d| d.address == elsewhere), "{denied:?}");
}

#[tokio::test]
async fn an_empty_grant_reaches_nothing() {
    let server = loopback(ServerTls::None);
    let (result, _) = send_to(NetworkGrant::new(Vec::new()), server.address()).await;
    assert_eq!(result.expect_err("nothing granted").phase, Phase::Connect);
    assert_eq!(server.connections(), 0);
}

/// A server that accepts connections and never says a word.
fn silent_server() -> (std::net::TcpListener, SocketAddr) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    (listener, address)
}

#[tokio::test]
async fn the_stage_timeout_fires_on_a_silent_server() {
    let (_listener, address) = silent_server();
    let mut server = sendbox::Server::new(
        "127.0.0.1",
        address.port(),
        sendbox::TlsMode::InsecurePlaintext,
    );
    server.timeouts = Some(wit::Timeouts {
        connect_ms: 0,
        total_ms: 0,
        ..wit::Timeouts::every_stage(300)
    });
    let mailer = sendbox::Mailer::new(sandbox(), server, None).await.unwrap();
    let error = smtp_error(
        mailer
            .send(&envelope("a@example.org", &["b@example.org"]), b"x")
            .await
            .expect_err("no greeting"),
    );
    assert_eq!(
        (error.phase, error.kind, error.transient),
        (Phase::Greeting, ErrorKind::Timeout, true)
    );
}

#[tokio::test]
async fn the_host_stops_a_call_at_its_run_time_limit() {
    let (_listener, address) = silent_server();
    // The component would wait 5 minutes for the greeting and 10 for the whole call (its
    // own deadline, `total-ms`); the host allows one second.
    let mut server = sendbox::Server::new(
        "127.0.0.1",
        address.port(),
        sendbox::TlsMode::InsecurePlaintext,
    );
    server.timeouts = Some(wit::Timeouts {
        total_ms: 600_000,
        ..wit::Timeouts::every_stage(300_000)
    });
    let limits = Limits {
        run_time: std::time::Duration::from_secs(1),
        ..Limits::default()
    };
    let mailer = sendbox::Mailer::new(sandbox(), server, None)
        .await
        .unwrap()
        .with_limits(limits);
    let started = std::time::Instant::now();
    let error = mailer
        .send(&envelope("a@example.org", &["b@example.org"]), b"x")
        .await
        .expect_err("stopped");
    assert!(matches!(error, sendbox::Error::RunTime(_)), "{error:?}");
    assert!(error.is_transient());
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "not stopped: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn the_memory_cap_is_enforced() {
    let server = loopback(ServerTls::None);
    let limits = Limits {
        memory_bytes: 256 * 1024,
        ..Limits::default()
    };
    let mailer = sendbox::Mailer::new(
        sandbox(),
        server_config(&server, sendbox::TlsMode::InsecurePlaintext),
        None,
    )
    .await
    .unwrap()
    .with_limits(limits);
    let error = mailer
        .send(&envelope("a@example.org", &["b@example.org"]), b"x")
        .await
        .expect_err("the component needs more than 256 KiB");
    assert!(matches!(error, sendbox::Error::Component(_)), "{error:?}");
    assert_eq!(server.connections(), 0);
}
