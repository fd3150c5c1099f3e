//! Workloads 2 and 3, throughput: M copies of a 1 KiB message to smtp-sink on loopback
//! (no TLS, no AUTH) over K = 1, 4 and 16 concurrent sessions, each keeping its one
//! connection for all its messages. sendbox runs `sendbox batch` (PIPELINING, a sandboxed
//! instance per session); the peer is Postfix's `smtp-source -d` (no pipelining). The
//! wall time is the whole process's, start-up included; the sendbox cell also gives
//! the rate `sendbox batch` reports itself, which leaves the start-up out. Each tool is a
//! whole process measured by the kernel (wait4): wall time, CPU time per message and peak
//! resident memory, each the median of alternating runs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::report::{Runs, Table, push_figures, run_measured};
use crate::setup::{Plan, RECIPIENT, SENDER, Setup};

const CONCURRENCY: [u32; 3] = [1, 4, 16];

/// Writes the message both tools send: LF line ends, as `smtp-source -F` adds the CR.
pub fn message_file(setup: &Setup) -> Result<PathBuf, String> {
    let mut message = format!(
        "From: {SENDER}\nTo: {RECIPIENT}\nSubject: sendbox-bench throughput\n\
         Content-Type: text/plain; charset=us-ascii\n\n"
    );
    let line = "The quick brown fox jumps over the lazy dog, again and again....\n";
    while message.len() + line.len() <= 1024 {
        message.push_str(line);
    }
    setup.scratch_file("bulk.eml", &message)
}

/// `sendbox batch` sending `messages` over `concurrency` sessions.
pub fn sendbox_batch(
    program: &Path,
    sink: SocketAddr,
    message: &Path,
    messages: u32,
    concurrency: u32,
) -> Command {
    let mut command = Command::new(program);
    command
        .args(["batch", "--server", &sink.to_string(), "--tls", "none"])
        .args(["--from", SENDER, "--to", RECIPIENT, "--raw"])
        .arg(message)
        .args(["--count", &messages.to_string()])
        .args(["--concurrency", &concurrency.to_string(), "--quiet"]);
    command
}

/// `smtp-source` sending `messages` over `sessions` connections, one message after another.
pub fn smtp_source(
    program: &Path,
    sink: SocketAddr,
    message: &Path,
    messages: u32,
    sessions: u32,
) -> Command {
    let mut command = Command::new(program);
    command
        .args([
            "-d",
            "-s",
            &sessions.to_string(),
            "-m",
            &messages.to_string(),
        ])
        .args(["-M", "localhost", "-f", SENDER, "-t", RECIPIENT, "-F"])
        .arg(message)
        .arg(sink.to_string());
    command
}

/// The counts and the rate from the summary line of `sendbox batch`:
/// `sent {sent}, refused {refused}, failed {failed} in {secs} s ({rate} messages/s)`.
pub fn parse_summary(line: &str) -> Option<(u32, f64)> {
    let sent = line
        .strip_prefix("sent ")?
        .split(',')
        .next()?
        .parse()
        .ok()?;
    let rate = line
        .rsplit_once('(')?
        .1
        .strip_suffix(" messages/s)")?
        .parse()
        .ok()?;
    Some((sent, rate))
}

/// Where the throughput runs send to, and what.
pub struct Target {
    pub sink: SocketAddr,
    pub message: PathBuf,
}

pub fn run(setup: &Setup, plan: &Plan, target: &Result<Target, String>, table: &mut Table) {
    let m = plan.messages;
    for k in CONCURRENCY {
        let workload = match k {
            1 => format!("1 connection, {m} messages, smtp-sink"),
            _ => format!("{k} connections, {m} messages in all, smtp-sink"),
        };
        eprintln!("throughput: {workload}");
        let (ours, theirs) = match target {
            Ok(target) => measure(setup, plan, target, k),
            Err(reason) => (Err(reason.clone()), Err(reason.clone())),
        };
        push_figures(
            table,
            &workload,
            &ours,
            &format!("smtp-source -d -s {k}"),
            &theirs,
            m,
        );
    }
}

/// Runs both tools `plan.throughput_runs` times, alternating (A B A B), each a whole
/// process measured by the kernel: wall time, CPU time and peak memory.
fn measure(
    setup: &Setup,
    plan: &Plan,
    target: &Target,
    k: u32,
) -> (Result<Runs, String>, Result<Runs, String>) {
    let (m, sink, message) = (plan.messages, target.sink, target.message.as_path());
    let mut ours = setup.sendbox.clone().map(|_| Runs::default());
    let mut theirs = setup.peers.smtp_source.clone().map(|_| Runs::default());
    for _ in 0..plan.throughput_runs {
        if let (Ok(program), Ok(runs)) = (&setup.sendbox, ours.as_mut()) {
            let result =
                run_measured(&mut sendbox_batch(program, sink, message, m, k)).and_then(|usage| {
                    match parse_summary(usage.stdout.trim()) {
                        Some((sent, rate)) if sent == m => Ok((usage, rate)),
                        _ => Err(format!("unexpected summary: {}", usage.stdout.trim())),
                    }
                });
            match result {
                Ok((usage, rate)) => {
                    runs.usages.push(usage);
                    runs.reported_rates.push(rate);
                }
                Err(reason) => ours = Err(reason),
            }
        }
        if let (Ok(program), Ok(runs)) = (&setup.peers.smtp_source, theirs.as_mut()) {
            match run_measured(&mut smtp_source(program, sink, message, m, k)) {
                Ok(usage) => runs.usages.push(usage),
                Err(reason) => theirs = Err(reason),
            }
        }
    }
    (ours, theirs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_batch_summary() {
        let line = "sent 2000, refused 0, failed 0 in 1.234 s (1620.7 messages/s)";
        assert_eq!(parse_summary(line), Some((2000, 1620.7)));
        assert_eq!(
            parse_summary("error: unrecognized subcommand 'batch'"),
            None
        );
    }
}
