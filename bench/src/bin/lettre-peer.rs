//! The TLS bulk workload's peer: lettre 0.11's pooled async SMTP transport (tokio, rustls
//! with ring), what a Rust program would use instead of sendbox. It sends one raw message
//! `--count` times over STARTTLS with AUTH PLAIN, keeping `--concurrency` sends in flight
//! on a pool of that many connections, and prints the same summary line as `sendbox
//! batch`. It exits 0 only if every message was accepted.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use clap::Parser;
use lettre::address::Envelope;
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use tokio::task::JoinSet;

/// Send one message many times with lettre over STARTTLS and AUTH PLAIN (loopback only).
#[derive(Parser)]
struct Args {
    /// The server, on loopback.
    #[arg(long)]
    server: SocketAddr,
    /// The only trust anchor (PEM); the system's are not used.
    #[arg(long)]
    ca: PathBuf,
    #[arg(long)]
    user: String,
    #[arg(long)]
    password: String,
    #[arg(long)]
    from: String,
    #[arg(long)]
    to: String,
    /// The message to send (RFC 5322; LF or CRLF line ends).
    #[arg(long)]
    raw: PathBuf,
    #[arg(long)]
    count: u32,
    /// Sends in flight, and the most connections the pool keeps.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    concurrency: u32,
}

#[tokio::main]
async fn main() -> ExitCode {
    match send(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(reason) => {
            eprintln!("lettre-peer: {reason}");
            ExitCode::FAILURE
        }
    }
}

async fn send(args: Args) -> Result<(), String> {
    if !args.server.ip().is_loopback() {
        return Err(format!(
            "{}: a benchmark peer sends to loopback only",
            args.server
        ));
    }
    let ca = std::fs::read(&args.ca).map_err(|e| format!("{}: {e}", args.ca.display()))?;
    let tls = TlsParameters::builder(args.server.ip().to_string())
        .certificate_store(CertificateStore::None)
        .add_root_certificate(Certificate::from_pem(&ca).map_err(|e| format!("CA: {e}"))?)
        .build_rustls()
        .map_err(|e| format!("TLS settings: {e}"))?;
    let transport =
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(args.server.ip().to_string())
            .port(args.server.port())
            .tls(Tls::Required(tls))
            .credentials(Credentials::new(args.user, args.password))
            .authentication(vec![Mechanism::Plain])
            .pool_config(PoolConfig::new().max_size(args.concurrency))
            .build();
    let envelope = Envelope::new(
        Some(args.from.parse().map_err(|e| format!("--from: {e}"))?),
        vec![args.to.parse().map_err(|e| format!("--to: {e}"))?],
    )
    .map_err(|e| format!("envelope: {e}"))?;
    let message = std::fs::read(&args.raw).map_err(|e| format!("{}: {e}", args.raw.display()))?;
    let message = Arc::new(wire_form(&message));

    let count = args.count;
    let start = Instant::now();
    // The next message to send: each task takes one, sends it, and comes back for more,
    // so `concurrency` sends stay in flight until the last.
    let next = Arc::new(AtomicU32::new(0));
    let mut tasks = JoinSet::new();
    for _ in 0..args.concurrency {
        let (transport, envelope, message, next) = (
            transport.clone(),
            envelope.clone(),
            Arc::clone(&message),
            Arc::clone(&next),
        );
        tasks.spawn(async move {
            let (mut sent, mut first_error) = (0u32, None);
            while next.fetch_add(1, Ordering::Relaxed) < count {
                match transport.send_raw(&envelope, &message).await {
                    Ok(_) => sent += 1,
                    Err(e) => {
                        first_error.get_or_insert(e.to_string());
                    }
                }
            }
            (sent, first_error)
        });
    }
    let (mut sent, mut first_error) = (0, None);
    while let Some(joined) = tasks.join_next().await {
        let (task_sent, task_error) = joined.map_err(|e| format!("a sending task: {e}"))?;
        sent += task_sent;
        first_error = first_error.or(task_error);
    }
    let elapsed = start.elapsed().as_secs_f64();
    transport.shutdown().await;

    let failed = count - sent;
    println!(
        "sent {sent}, failed {failed} in {elapsed:.3} s ({:.1} messages/s)",
        f64::from(sent) / elapsed
    );
    match first_error {
        Some(error) => Err(format!("{failed} of {count} failed, the first: {error}")),
        None => Ok(()),
    }
}

/// The message with CRLF line ends and without its last one: lettre sends the bytes as
/// they are (it only doubles leading dots) and then CRLF . CRLF, which would otherwise add
/// an empty line. `sendbox batch` puts the same bytes on the wire.
fn wire_form(message: &[u8]) -> Vec<u8> {
    let mut wire = Vec::with_capacity(message.len() + message.len() / 32);
    for &byte in message {
        if byte == b'\n' && wire.last() != Some(&b'\r') {
            wire.push(b'\r');
        }
        wire.push(byte);
    }
    if wire.ends_with(b"\r\n") {
        wire.truncate(wire.len() - 2);
    }
    wire
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form_has_crlf_and_no_last_line_end() {
        assert_eq!(wire_form(b"A: b\n\nbody\n"), b"A: b\r\n\r\nbody");
        assert_eq!(wire_form(b"A: b\r\n\r\nbody\r\n"), b"A: b\r\n\r\nbody");
        assert_eq!(wire_form(b"body\n\n"), b"body\r\n");
    }
}
