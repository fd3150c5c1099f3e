//! Workload 4, TLS sessions without AUTH against Postfix, the certificate checked against
//! the test CA: TCP connect, TLS, the 220 greeting, EHLO and QUIT on :465 (implicit TLS),
//! and the same with STARTTLS on :587 (greeting, EHLO, STARTTLS, TLS, EHLO, QUIT).
//!
//! - in the component: `Mailer::open` then `Session::close`, in this process; each
//!   session is a fresh instance, so instantiation is included (its own row is in
//!   [`crate::footprint`]);
//! - native: rustls with the ring provider, as in the component, over std's TcpStream.
//!
//! Both build their TLS settings per connection, as the component does, and both write
//! each TLS flight with one write. The two alternate; the rows give medians.
//!
//! On :465 Postfix writes its session ticket and its greeting separately, so the greeting
//! waits for the client's delayed ACK (about 40 ms on Linux) whoever the client is. On :587
//! the client speaks first after TLS and no such stall hides the cost of TLS itself.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};
use sendbox::{Mailer, Sandbox, Server, TlsMode};
use tokio::runtime::Runtime;

use crate::report::{Measure, Row, Table};
use crate::setup::{POSTFIX_IMPLICIT, POSTFIX_STARTTLS, Plan, Setup};

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
    let variants = [
        (
            "TLS session: connect, TLS, greeting, EHLO, QUIT, Postfix :465",
            POSTFIX_IMPLICIT,
            TlsMode::Implicit,
        ),
        (
            "TLS session: connect, greeting, EHLO, STARTTLS, TLS, EHLO, QUIT, Postfix :587",
            POSTFIX_STARTTLS,
            TlsMode::Starttls,
        ),
    ];
    for (workload, address, tls) in variants {
        eprintln!("handshake: {workload}, {} of each", plan.handshakes);
        let measured = setup
            .postfix
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|postfix| {
                let mut server = Server::new(address.ip().to_string(), address.port(), tls);
                server.ca_pem = Some(postfix.ca_pem.clone());
                let mailer = runtime
                    .block_on(Mailer::new(sandbox.clone()?, server, None))
                    .map_err(|e| e.to_string())?;
                measure(plan, runtime, &mailer, &postfix.ca_pem, address, tls)
            });
        let (ours, theirs) = match measured {
            Ok((ours, theirs)) => (Ok(Measure::millis(&ours)), Ok(Measure::millis(&theirs))),
            Err(reason) => (Err(reason.clone()), Err(reason)),
        };
        let row = Row {
            workload: workload.to_owned(),
            sendbox: ours.map(|m| m.with_note("fresh instance included")),
            peer: "native rustls (ring), same process".to_owned(),
            peer_value: Some(theirs),
        };
        if let Some(ratio) = row.ratio().filter(|&r| r > GUARD_RATIO) {
            table.warnings.push(format!(
                "a TLS session on {address} in the component takes {ratio:.1}x native (more \
                 than {GUARD_RATIO}x): look for TLS records written one socket write each \
                 (Nagle and delayed-ACK stalls)"
            ));
        }
        table.rows.push(row);
    }
}

/// One unmeasured warm-up each, then `plan.handshakes` of each, alternating.
fn measure(
    plan: &Plan,
    runtime: &Runtime,
    mailer: &Mailer,
    ca_pem: &str,
    address: SocketAddr,
    tls: TlsMode,
) -> Result<(Vec<Duration>, Vec<Duration>), String> {
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 0..=plan.handshakes {
        let component = runtime.block_on(component_session(mailer))?;
        let native = native_session(ca_pem, address, tls).map_err(|e| format!("native: {e}"))?;
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

fn native_session(ca_pem: &str, address: SocketAddr, mode: TlsMode) -> Result<Duration, String> {
    let start = Instant::now();
    // Exactly the component's settings: the test CA as the only trust anchor.
    let config = sendbox_proto::tls::client_config(Some(ca_pem))?;
    let tls = ClientConnection::new(config, ServerName::from(address.ip()))
        .map_err(|e| format!("TLS setup: {e}"))?;
    let mut tcp = TcpStream::connect(address).map_err(|e| format!("connect: {e}"))?;
    if matches!(mode, TlsMode::Starttls) {
        command(&mut tcp, None, "220")?;
        command(&mut tcp, Some("EHLO localhost"), "250")?;
        command(&mut tcp, Some("STARTTLS"), "220")?;
    }
    let mut stream = StreamOwned::new(tls, tcp);
    if matches!(mode, TlsMode::Implicit) {
        command(&mut stream, None, "220")?;
    }
    command(&mut stream, Some("EHLO localhost"), "250")?;
    command(&mut stream, Some("QUIT"), "221")?;
    Ok(start.elapsed())
}

/// Sends `line` (if any), then reads one whole reply, up to its last line (`NNN text`),
/// and checks its code. Nothing is pipelined, so nothing follows the reply.
fn command(stream: &mut (impl Read + Write), line: Option<&str>, code: &str) -> Result<(), String> {
    if let Some(line) = line {
        stream
            .write_all(format!("{line}\r\n").as_bytes())
            .map_err(|e| format!("sending {line}: {e}"))?;
    }
    let mut reply = Vec::new();
    let mut chunk = [0; 4096];
    loop {
        let n = stream
            .read(&mut chunk)
            .map_err(|e| format!("reading a reply: {e}"))?;
        if n == 0 {
            return Err("the server closed the connection".to_owned());
        }
        reply.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&reply);
        let Some(last) = text.strip_suffix("\r\n").and_then(|t| t.lines().last()) else {
            continue;
        };
        if last.as_bytes().get(3) == Some(&b' ') {
            return match last.starts_with(code) {
                true => Ok(()),
                false => Err(format!("expected {code}, got {last}")),
            };
        }
    }
}
