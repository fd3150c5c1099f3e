//! Workloads 2 and 3, throughput: M copies of a 1 KiB message to smtp-sink on loopback
//! (no TLS, no AUTH) over K = 1, 4 and 16 concurrent sessions, each keeping its one
//! connection for all its messages. sendbox runs `sendbox batch` (PIPELINING, a sandboxed
//! instance per session); the peer is Postfix's `smtp-source -d` (no pipelining). The rate
//! is M over the process's wall time, start-up included; the sendbox cell also gives
//! the rate `sendbox batch` reports itself, which leaves the start-up out.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::report::{Measure, Outcome, Row, Table, Unit, median, run_timed};
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
fn parse_summary(line: &str) -> Option<(u32, f64)> {
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
        let (sendbox, peer) = match target {
            Ok(target) => measure(setup, plan, target, k),
            Err(reason) => (Err(reason.clone()), Err(reason.clone())),
        };
        table.rows.push(Row {
            workload,
            sendbox,
            peer: format!("smtp-source -d -s {k}"),
            peer_value: Some(peer),
        });
    }
}

/// Runs both tools `plan.throughput_runs` times, alternating, and gives their median rates.
fn measure(setup: &Setup, plan: &Plan, target: &Target, k: u32) -> (Outcome, Outcome) {
    let (m, sink, message) = (plan.messages, target.sink, target.message.as_path());
    let mut ours: Result<(Vec<f64>, Vec<f64>), String> =
        setup.sendbox.clone().map(|_| (Vec::new(), Vec::new()));
    let mut theirs: Result<Vec<f64>, String> = setup.peers.smtp_source.clone().map(|_| Vec::new());
    for _ in 0..plan.throughput_runs {
        if let (Ok(program), Ok((wall, reported))) = (&setup.sendbox, ours.as_mut()) {
            let result = run_timed(&mut sendbox_batch(program, sink, message, m, k)).and_then(
                |(elapsed, stdout)| match parse_summary(stdout.trim()) {
                    Some((sent, rate)) if sent == m => Ok((elapsed, rate)),
                    _ => Err(format!("unexpected summary: {}", stdout.trim())),
                },
            );
            match result {
                Ok((elapsed, rate)) => {
                    wall.push(f64::from(m) / elapsed.as_secs_f64());
                    reported.push(rate);
                }
                Err(reason) => ours = Err(reason),
            }
        }
        if let (Ok(program), Ok(rates)) = (&setup.peers.smtp_source, theirs.as_mut()) {
            match run_timed(&mut smtp_source(program, sink, message, m, k)) {
                Ok((elapsed, _)) => rates.push(f64::from(m) / elapsed.as_secs_f64()),
                Err(reason) => theirs = Err(reason),
            }
        }
    }
    let ours = ours.map(|(wall, reported)| {
        Measure::new(median(&wall), Unit::MessagesPerSecond)
            .with_note(format!("{:.0} msg/s by its own clock", median(&reported)))
    });
    let theirs = theirs.map(|rates| Measure::new(median(&rates), Unit::MessagesPerSecond));
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
