//! Workload 8, TLS bulk: M copies of a 1 KiB message over STARTTLS and AUTH PLAIN to
//! [`TlsSink`] (this process, loopback), over K = 1, 4 and 16 concurrent connections.
//! sendbox runs `sendbox batch`; the peer is lettre 0.11's pooled async transport (the
//! `lettre-peer` program beside this one), what a Rust program would use instead. Both
//! check the sink's certificate against the run's CA. Runs alternate (A B A B); each tool
//! is a whole process measured by the kernel: wall time, CPU time per message and peak
//! resident memory. The sink counts what it accepted, so a run that did not deliver all M
//! messages fails its row, and the TLS sessions it saw, which the wall time cell gives.
//!
//! lettre writes a message and its final dot in two writes and leaves Nagle's algorithm
//! on, so the dot waits for the server's delayed ACK of the message: some 40 ms a message
//! on Linux, against Postfix too (strace shows it). M (5000) is therefore smaller than in
//! the plaintext workload, and there are 3 runs each way, not 5: lettre's run at K = 1
//! alone takes 3.7 minutes.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::report::{Runs, Table, push_figures, run_measured};
use crate::setup::{Plan, RECIPIENT, SENDER, Setup};
use crate::throughput::parse_summary;
use crate::tls_sink::{self, TlsSink};

const CONCURRENCY: [u32; 3] = [1, 4, 16];
/// How `sendbox batch` gets the sink's password.
const PASSWORD_VAR: &str = "SENDBOX_BENCH_PASSWORD";

/// The sink, its CA in a file, and the message both tools send.
struct Target {
    sink: TlsSink,
    ca: PathBuf,
    message: PathBuf,
}

pub fn run(setup: &Setup, plan: &Plan, message: &Result<PathBuf, String>, table: &mut Table) {
    let m = plan.tls_messages;
    let target = message.clone().and_then(|message| {
        let sink = TlsSink::start()?;
        let ca = setup.scratch_file("tls-sink-ca.pem", &sink.ca_pem)?;
        Ok(Target { sink, ca, message })
    });
    for k in CONCURRENCY {
        let workload = match k {
            1 => format!("TLS bulk: 1 connection, {m} messages, STARTTLS + AUTH PLAIN"),
            _ => format!("TLS bulk: {k} connections, {m} messages in all, STARTTLS + AUTH PLAIN"),
        };
        eprintln!("{workload}");
        let (ours, theirs) = match &target {
            Ok(target) => measure(setup, plan, target, k),
            Err(reason) => (Err(reason.clone()), Err(reason.clone())),
        };
        push_figures(
            table,
            &workload,
            &ours,
            &format!("lettre 0.11 (pool of {k})"),
            &theirs,
            m,
        );
    }
}

/// `sendbox batch` to the sink: STARTTLS, the run's CA, AUTH PLAIN.
fn sendbox_batch(program: &Path, target: &Target, messages: u32, k: u32) -> Command {
    let mut command = Command::new(program);
    command
        .args(["batch", "--server", &target.sink.address.to_string()])
        .args(["--tls", "starttls", "--ca"])
        .arg(&target.ca)
        .args(["--user", tls_sink::USER, "--password-env", PASSWORD_VAR])
        .args([
            "--auth", "plain", "--from", SENDER, "--to", RECIPIENT, "--raw",
        ])
        .arg(&target.message)
        .args(["--count", &messages.to_string()])
        .args(["--concurrency", &k.to_string(), "--quiet"])
        .env(PASSWORD_VAR, tls_sink::PASSWORD);
    command
}

/// The lettre peer, with the same settings.
fn lettre_peer(program: &Path, target: &Target, messages: u32, k: u32) -> Command {
    let mut command = Command::new(program);
    command
        .args(["--server", &target.sink.address.to_string(), "--ca"])
        .arg(&target.ca)
        .args(["--user", tls_sink::USER, "--password", tls_sink::PASSWORD])
        .args(["--from", SENDER, "--to", RECIPIENT, "--raw"])
        .arg(&target.message)
        .args(["--count", &messages.to_string()])
        .args(["--concurrency", &k.to_string()]);
    command
}

/// Runs both tools `plan.tls_runs` times, alternating.
fn measure(
    setup: &Setup,
    plan: &Plan,
    target: &Target,
    k: u32,
) -> (Result<Runs, String>, Result<Runs, String>) {
    let m = plan.tls_messages;
    let mut ours = setup.sendbox.clone().map(|_| Runs::default());
    let mut theirs = setup.peers.lettre.clone().map(|_| Runs::default());
    for _ in 0..plan.tls_runs {
        if let (Ok(program), Ok(runs)) = (&setup.sendbox, ours.as_mut()) {
            let mut command = sendbox_batch(program, target, m, k);
            if let Err(reason) = run_once(&target.sink, m, &mut command, runs) {
                ours = Err(reason);
            }
        }
        if let (Ok(program), Ok(runs)) = (&setup.peers.lettre, theirs.as_mut()) {
            let mut command = lettre_peer(program, target, m, k);
            if let Err(reason) = run_once(&target.sink, m, &mut command, runs) {
                theirs = Err(reason);
            }
        }
    }
    (ours, theirs)
}

/// One measured run, kept only if the tool says it sent all `m` messages and the sink
/// accepted exactly `m`.
fn run_once(sink: &TlsSink, m: u32, command: &mut Command, runs: &mut Runs) -> Result<(), String> {
    let (messages, sessions) = (sink.messages(), sink.sessions());
    let usage = run_measured(command)?;
    let summary = usage.stdout.trim();
    let Some((sent, rate)) = parse_summary(summary).filter(|&(sent, _)| sent == m) else {
        return Err(format!("unexpected summary: {summary}"));
    };
    let accepted = sink.messages() - messages;
    if accepted != u64::from(sent) {
        return Err(format!("the sink accepted {accepted} messages, not {sent}"));
    }
    runs.sessions.push((sink.sessions() - sessions) as f64);
    runs.usages.push(usage);
    runs.reported_rates.push(rate);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_lettre_peer_summary() {
        let line = "sent 5000, failed 0 in 55.125 s (90.7 messages/s)";
        assert_eq!(parse_summary(line), Some((5000, 90.7)));
    }
}
