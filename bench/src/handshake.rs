//! Workload 4, TLS handshake: TCP connect, TLS, the 220 greeting, EHLO and QUIT against
//! Postfix on 127.0.0.1:465 (implicit TLS), the certificate checked against the test CA.
//!
//! - in the component: `Mailer::open` then `Session::close`, in this process; each
//!   session is a fresh instance, so instantiation is included (its own row is in
//!   [`crate::footprint`]);
//! - native: rustls with the ring provider, as in the component, over std's TcpStream.
//!
//! Both build their TLS settings per connection, as the component does, and both write
//! each TLS flight with one write. The two alternate; the rows give medians.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use sendbox::{Mailer, Sandbox, Server, TlsMode};
use tokio::runtime::Runtime;

use crate::report::{Measure, Row, Table};
use crate::setup::{POSTFIX_IMPLICIT, Plan, Setup};

/// Above this ratio the component is not merely slower: something is wrong (a TLS
/// record per socket write once cost 88 ms a handshake in Nagle and delayed-ACK stalls).
const GUARD_RATIO: f64 = 10.0;

pub fn run(
    setup: &Setup,
    plan: &Plan,
    sandbox: &Result<Sandbox, String>,
    runtime: &Runtime,
    table: &mut Table,
) {
    const WORKLOAD: &str = "TLS session: connect, TLS, greeting, EHLO, QUIT, Postfix :465";
    eprintln!("handshake: {} of each", plan.handshakes);
    let measured = setup
        .postfix
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|postfix| {
            let sandbox = sandbox.clone()?;
            let mut server = Server::new(
                POSTFIX_IMPLICIT.ip().to_string(),
                POSTFIX_IMPLICIT.port(),
                TlsMode::Implicit,
            );
            server.ca_pem = Some(postfix.ca_pem.clone());
            let mailer = runtime
                .block_on(Mailer::new(sandbox, server, None))
                .map_err(|e| e.to_string())?;
            measure(plan, runtime, &mailer, &postfix.ca_pem)
        });
    let (ours, theirs) = match measured {
        Ok((ours, theirs)) => (Ok(Measure::millis(&ours)), Ok(Measure::millis(&theirs))),
        Err(reason) => (Err(reason.clone()), Err(reason)),
    };
    let row = Row {
        workload: WORKLOAD.to_owned(),
        sendbox: ours.map(|m| m.with_note("fresh instance included")),
        peer: "native rustls (ring), same process".to_owned(),
        peer_value: Some(theirs),
    };
    if let Some(ratio) = row.ratio().filter(|&r| r > GUARD_RATIO) {
        table.warnings.push(format!(
            "the TLS session in the component takes {ratio:.1}x native (more than \
             {GUARD_RATIO}x): look for TLS records written one socket write each \
             (Nagle and delayed-ACK stalls)"
        ));
    }
    table.rows.push(row);
}

/// One unmeasured warm-up each, then `plan.handshakes` of each, alternating.
fn measure(
    plan: &Plan,
    runtime: &Runtime,
    mailer: &Mailer,
    ca_pem: &str,
) -> Result<(Vec<Duration>, Vec<Duration>), String> {
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 0..=plan.handshakes {
        let component = runtime.block_on(component_session(mailer))?;
        let native = native_session(ca_pem)?;
        if round > 0 {
            ours.push(component);
            theirs.push(native);
        }
    }
    Ok((ours, theirs))
}

async fn component_session(mailer: &Mailer) -> Result<Duration, String> {
    let start = Instant::now();
    let session = mailer.open().await.map_err(|e| e.to_string())?;
    session.close().await.map_err(|e| e.to_string())?;
    Ok(start.elapsed())
}

fn native_session(ca_pem: &str) -> Result<Duration, String> {
    let fail = |what: &str, e: &dyn std::fmt::Display| format!("native rustls: {what}: {e}");
    let start = Instant::now();
    let config = client_config(ca_pem)?;
    let name = ServerName::from(POSTFIX_IMPLICIT.ip());
    let tls = ClientConnection::new(config, name).map_err(|e| fail("TLS setup", &e))?;
    let tcp = TcpStream::connect(POSTFIX_IMPLICIT).map_err(|e| fail("connect", &e))?;
    let mut stream = StreamOwned::new(tls, tcp);
    expect_reply(&mut stream, "220")?;
    stream
        .write_all(b"EHLO localhost\r\n")
        .map_err(|e| fail("EHLO", &e))?;
    expect_reply(&mut stream, "250")?;
    stream
        .write_all(b"QUIT\r\n")
        .map_err(|e| fail("QUIT", &e))?;
    expect_reply(&mut stream, "221")?;
    Ok(start.elapsed())
}

/// The TLS settings the component uses: the CA as the only trust anchor, ring, and the
/// safe default protocol versions.
fn client_config(ca_pem: &str) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| format!("cannot read the CA: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("cannot use the CA: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Reads one whole SMTP reply (up to its last line, `NNN text`) and checks its code.
fn expect_reply(stream: &mut impl Read, code: &str) -> Result<(), String> {
    let mut reply = Vec::new();
    let mut chunk = [0; 4096];
    loop {
        let n = stream
            .read(&mut chunk)
            .map_err(|e| format!("native rustls: reading a reply: {e}"))?;
        if n == 0 {
            return Err("native rustls: the server closed the connection".to_owned());
        }
        reply.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&reply);
        let Some(last) = text.strip_suffix("\r\n").and_then(|t| t.lines().last()) else {
            continue;
        };
        if last.as_bytes().get(3) == Some(&b' ') {
            return match last.starts_with(code) {
                true => Ok(()),
                false => Err(format!("native rustls: expected {code}, got {last}")),
            };
        }
    }
}
