//! Workload 11, a relay's memory at rest: `sendbox serve` holding 16 idle client
//! connections, each greeted and past EHLO, against msmtpd (msmtp's minimal SMTP server,
//! which forks a process per connection) holding the same 16. Runs alternate, each with a
//! fresh server; after the connections have settled, the server's memory is read from
//! /proc: the resident set (RSS) summed over the server's processes, and the proportional
//! set (PSS), which counts a page shared by N of them as 1/N in each, so that msmtpd's
//! forked children are not charged the same pages 17 times. Medians.

use std::fs;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::report::{Measure, Outcome, Row, Table, Unit, median};
use crate::setup::{Plan, SENDER, Setup};

const CONNECTIONS: usize = 16;
/// How long the connections rest before the server's memory is read.
const SETTLE: Duration = Duration::from_secs(1);

/// One server's memory with the connections open, in KiB.
#[derive(Clone, Copy)]
struct Memory {
    rss_kib: u64,
    pss_kib: u64,
    processes: usize,
}

pub fn run(setup: &Setup, plan: &Plan, table: &mut Table) {
    let workload = format!("a relay at rest: {CONNECTIONS} idle connections after EHLO");
    eprintln!("{workload}");
    let measured = match (&setup.sendbox, &setup.peers.msmtpd) {
        (Ok(sendbox), Ok(msmtpd)) => measure(setup, plan, sendbox, msmtpd),
        (Err(reason), _) | (_, Err(reason)) => Err(reason.clone()),
    };
    let figure = |runs: &Result<Vec<Memory>, String>, pick: fn(&Memory) -> u64| -> Outcome {
        let runs = runs.as_ref().map_err(Clone::clone)?;
        let kib: Vec<f64> = runs.iter().map(|m| pick(m) as f64).collect();
        let processes = runs.first().map_or(0, |m| m.processes);
        Ok(
            Measure::new(median(&kib) / 1024.0, Unit::MiB).with_note(match processes {
                1 => "1 process".to_owned(),
                n => format!("{n} processes"),
            }),
        )
    };
    let (ours, theirs) = match measured {
        Ok((ours, theirs)) => (Ok(ours), Ok(theirs)),
        Err(reason) => (Err(reason.clone()), Err(reason)),
    };
    for (what, pick) in [
        (
            "resident memory (RSS), summed over the server's processes",
            (|m: &Memory| m.rss_kib) as fn(&Memory) -> u64,
        ),
        (
            "proportional memory (PSS: a page shared by n processes counts 1/n in each)",
            |m: &Memory| m.pss_kib,
        ),
    ] {
        table.rows.push(Row {
            workload: format!("{workload}: {what}"),
            sendbox: figure(&ours, pick),
            peer: "msmtpd (msmtp 1.8), a process per connection".to_owned(),
            peer_value: Some(figure(&theirs, pick)),
        });
    }
}

type Both = (Vec<Memory>, Vec<Memory>);

fn measure(setup: &Setup, plan: &Plan, sendbox: &Path, msmtpd: &Path) -> Result<Both, String> {
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for run in 0..plan.throughput_runs {
        let outbox = setup.scratch_file(&format!("idle-{run}.toml"), "")?;
        let config = serve_config(&outbox)?;
        ours.push(at_rest(|address| {
            let mut command = Command::new(sendbox);
            command
                .args(["serve", "--config"])
                .arg(&config)
                .args(["--listen", &address.to_string()]);
            command
        })?);
        theirs.push(at_rest(|address| {
            let mut command = Command::new(msmtpd);
            command.args([
                "--interface=127.0.0.1".to_owned(),
                format!("--port={}", address.port()),
                // Nothing is sent, so nothing is piped; a command that would deliver
                // is not needed.
                "--command=/bin/true --".to_owned(),
            ]);
            command
        })?);
    }
    Ok((ours, theirs))
}

/// An account on a port nothing listens on (the workload sends nothing) and an outbox
/// beside `file`, written into `file`.
fn serve_config(file: &Path) -> Result<std::path::PathBuf, String> {
    let closed = free_port()?;
    let text = format!(
        "default = \"idle\"\n[accounts.idle]\nserver = \"{closed}\"\ntls = \"none\"\n\
         from = \"{SENDER}\"\n[queue]\ndir = \"{}\"\n",
        file.with_extension("outbox").display()
    );
    fs::write(file, text).map_err(|e| format!("{}: {e}", file.display()))?;
    Ok(file.to_owned())
}

fn free_port() -> Result<SocketAddr, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free loopback port: {e}"))
}

/// Starts the server `command` makes for a free port, opens the connections, lets them
/// rest, and reads the memory of the server and every process under it.
fn at_rest(command: impl FnOnce(SocketAddr) -> Command) -> Result<Memory, String> {
    let address = free_port()?;
    let mut command = command(address);
    let program = command.get_program().to_string_lossy().into_owned();
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    let server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(address).is_err() {
        if Instant::now() > deadline {
            return Err(format!("{program} is not listening on {address}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let connections = (0..CONNECTIONS)
        .map(|_| past_ehlo(address))
        .collect::<Result<Vec<_>, String>>()
        .map_err(|e| format!("{program}: {e}"))?;
    std::thread::sleep(SETTLE);
    let memory = memory_of_tree(server.0.id());
    drop(connections);
    memory
}

/// A connection that has read the greeting and the whole EHLO reply.
fn past_ehlo(address: SocketAddr) -> Result<BufReader<TcpStream>, String> {
    let stream = TcpStream::connect(address).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream);
    read_reply(&mut reader, "greeting")?;
    reader
        .get_mut()
        .write_all(b"EHLO bench.sendbox.test\r\n")
        .map_err(|e| format!("EHLO: {e}"))?;
    read_reply(&mut reader, "EHLO")?;
    Ok(reader)
}

/// Reads one reply, all its lines, and checks it is a 2yz.
fn read_reply(reader: &mut BufReader<TcpStream>, what: &str) -> Result<(), String> {
    loop {
        let mut line = String::new();
        reader
            .read_line(&mut line)
            .map_err(|e| format!("reading the {what} reply: {e}"))?;
        if !line.starts_with('2') {
            return Err(format!("the {what} reply: {:?}", line.trim_end()));
        }
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok(());
        }
    }
}

/// The memory of process `root` and of every process under it.
fn memory_of_tree(root: u32) -> Result<Memory, String> {
    let mut tree = vec![root];
    let mut parents: Vec<(u32, u32)> = Vec::new();
    for entry in fs::read_dir("/proc").map_err(|e| format!("/proc: {e}"))? {
        let Some(pid) = entry
            .ok()
            .and_then(|e| e.file_name().to_str()?.parse::<u32>().ok())
        else {
            continue;
        };
        if let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) {
            // The parent is the second field after the command name, which may hold spaces.
            if let Some(parent) = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse().ok())
            {
                parents.push((pid, parent));
            }
        }
    }
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            parents
                .iter()
                .filter(|&&(_, p)| p == parent)
                .map(|&(pid, _)| pid),
        );
        i += 1;
    }
    let mut memory = Memory {
        rss_kib: 0,
        pss_kib: 0,
        processes: tree.len(),
    };
    for pid in tree {
        memory.rss_kib += kib_field(&format!("/proc/{pid}/status"), "VmRSS:")?;
        memory.pss_kib += kib_field(&format!("/proc/{pid}/smaps_rollup"), "Pss:")?;
    }
    Ok(memory)
}

/// The value of the `name  N kB` line of a /proc file.
fn kib_field(path: &str, name: &str) -> Result<u64, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    text.lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|value| value.trim().trim_end_matches(" kB").trim().parse().ok())
        .ok_or_else(|| format!("{path}: no {name} line"))
}

/// The server, killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_memory_is_read_and_counts_its_children() {
        let mut child = Command::new("sleep").arg("5").spawn().unwrap();
        let alone = kib_field("/proc/self/status", "VmRSS:").unwrap();
        let tree = memory_of_tree(std::process::id()).unwrap();
        let _ = child.kill();
        let _ = child.wait();
        assert!(tree.processes >= 2, "{} processes", tree.processes);
        assert!(tree.rss_kib > alone, "{} <= {alone}", tree.rss_kib);
        assert!(tree.pss_kib > 0);
    }
}
