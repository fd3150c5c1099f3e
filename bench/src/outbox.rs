//! Workload 7, the outbox: what keeping each message on disk costs.
//!
//! - Intake, against its fair peer: `smtp-source` hands N messages over 1 and over 16
//!   connections to `sendbox serve`, which answers each only after it is fsynced into the
//!   outbox (clients at the same moment share the fsync of `queue/`), and to Postfix's own
//!   smtpd, whose 250 also comes only after its cleanup has fsynced the queue file. Both
//!   relay what they take to the same smtp-sink meanwhile: sendbox's worker, and for
//!   Postfix a listener this workload adds to the test Postfix (`postconf -M`, removed
//!   again at the end) whose mail a content filter hands to an smtp client aimed at the
//!   sink. Figures: messages per second by smtp-source's wall time, and the server's CPU
//!   per message from the start of the intake until its queue is empty again, so its
//!   deliveries included: the `sendbox serve` process; Postfix's master and every process
//!   under it. And smtp-source straight to smtp-sink, which keeps nothing.
//! - Drain: `sendbox queue flush` delivering N queued messages to smtp-sink over one
//!   session, against `sendbox batch` sending the same N straight from memory over one
//!   session. The difference per message is the outbox's cost: locking, reading, and
//!   removing each file with an fsync of the folder.
//!
//! Runs alternate (sendbox, Postfix, sendbox, Postfix... at each number of connections);
//! each figure is a median. The queue for each drain is filled by `sendbox serve` with the
//! account's server down, outside the timing.

use std::fs;
use std::io::{BufRead as _, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::report::{Measure, Outcome, Row, Table, Unit, median, run_timed};
use crate::setup::{Plan, Setup};
use crate::throughput::{Target, sendbox_batch, smtp_source};

/// Connections of smtp-source for the intake.
const CONNECTIONS: [u32; 2] = [1, 16];
/// The longest wait for a server to deliver what it took in.
const DRAIN: Duration = Duration::from_secs(120);
const POSTFIX_PEER: &str = "Postfix smtpd, relaying to smtp-sink";

/// One intake: smtp-source's wall time, and the server's CPU from its start until the
/// server's queue was empty again.
struct Intake {
    wall: Duration,
    cpu: Duration,
}

/// Every run of one server at one number of connections, or why there are none.
type Intakes = Result<Vec<Intake>, String>;

pub fn run(setup: &Setup, plan: &Plan, target: &Result<Target, String>, table: &mut Table) {
    let n = plan.outbox_messages;
    eprintln!(
        "outbox: {} runs of {n} messages each way, intake at 1 and 16 connections",
        plan.outbox_runs
    );
    let postfix = setup
        .postfix
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|_| target.as_ref().map_err(Clone::clone))
        .and_then(|target| PostfixRelay::start(target.sink));
    let mut theirs: [Intakes; 2] = match &postfix {
        Ok(_) => [Ok(Vec::new()), Ok(Vec::new())],
        Err(reason) => [Err(reason.clone()), Err(reason.clone())],
    };
    let measured = target.as_ref().map_err(Clone::clone).and_then(|target| {
        let sendbox = setup.sendbox.clone()?;
        let smtp_source = setup.peers.smtp_source.clone()?;
        let mut ours: [Vec<Intake>; 2] = [Vec::new(), Vec::new()];
        let mut straight = Vec::new();
        let mut drain = (Vec::new(), Vec::new());
        for run in 0..plan.outbox_runs {
            let bench = Bench::new(setup, &sendbox, &smtp_source, target, run)?;
            for (at, k) in CONNECTIONS.into_iter().enumerate() {
                ours[at].push(bench.intake(n, k)?);
                if let (Ok(relay), Ok(runs)) = (&postfix, &mut theirs[at]) {
                    match relay.intake(&smtp_source, &target.message, n, k) {
                        Ok(intake) => runs.push(intake),
                        Err(reason) => theirs[at] = Err(reason),
                    }
                }
            }
            straight.push(bench.straight(n)?);
            // What a worker had not delivered yet when serve stopped, if anything.
            bench.flush()?;
            bench.fill(n)?;
            drain.0.push(bench.flush_exactly(n)?);
            drain.1.push(bench.batch(n)?);
        }
        Ok((ours, straight, drain))
    });
    drop(postfix);
    let rate = |times: &[Duration]| {
        let rates: Vec<f64> = times
            .iter()
            .map(|t| f64::from(n) / t.as_secs_f64())
            .collect();
        Measure::new(median(&rates), Unit::MessagesPerSecond)
    };
    let per_message = |times: &[Duration]| {
        let millis: Vec<f64> = times
            .iter()
            .map(|t| t.as_secs_f64() * 1e3 / f64::from(n))
            .collect();
        median(&millis)
    };
    let walls = |runs: &[Intake]| runs.iter().map(|r| r.wall).collect::<Vec<_>>();
    let cpu = |runs: &[Intake]| {
        let micros: Vec<f64> = runs
            .iter()
            .map(|r| r.cpu.as_secs_f64() * 1e6 / f64::from(n))
            .collect();
        Measure::new(median(&micros), Unit::Micros)
    };
    let (ours, straight, (drained, batched)) = match measured {
        Ok(measured) => measured,
        Err(reason) => {
            let failed = || Err::<Measure, String>(reason.clone());
            for k in CONNECTIONS {
                push_intake(table, n, k, failed(), failed(), failed(), failed());
            }
            push_straight_and_drain(table, n, [failed(), failed(), failed(), failed()]);
            return;
        }
    };
    for (at, k) in CONNECTIONS.into_iter().enumerate() {
        let peer = || theirs[at].as_ref().map_err(Clone::clone);
        push_intake(
            table,
            n,
            k,
            Ok(rate(&walls(&ours[at]))),
            peer().map(|runs| rate(&walls(runs))),
            Ok(cpu(&ours[at])),
            peer().map(|runs| cpu(runs)),
        );
    }
    let cost = per_message(&drained) - per_message(&batched);
    push_straight_and_drain(
        table,
        n,
        [
            Ok(rate(&walls(&ours[0]))),
            Ok(rate(&straight)),
            Ok(Measure::new(per_message(&drained), Unit::Millis)
                .with_note(format!("outbox cost {cost:.3} ms/message"))),
            Ok(Measure::new(per_message(&batched), Unit::Millis)),
        ],
    );
}

fn connections(k: u32) -> String {
    match k {
        1 => "one connection".to_owned(),
        k => format!("{k} connections"),
    }
}

/// The rows of the intake at `k` connections against Postfix: messages per second, and
/// the server's CPU per message.
fn push_intake(
    table: &mut Table,
    n: u32,
    k: u32,
    ours: Outcome,
    theirs: Outcome,
    our_cpu: Outcome,
    their_cpu: Outcome,
) {
    let workload = format!(
        "outbox intake: {n} messages over {} (smtp-source -d -s {k}), each 250 after its fsync",
        connections(k)
    );
    table.rows.push(Row {
        workload: format!("{workload}: messages/s"),
        sendbox: ours,
        peer: POSTFIX_PEER.to_owned(),
        peer_value: Some(theirs),
    });
    table.rows.push(Row {
        workload: format!(
            "{workload}: server CPU per message, its deliveries to smtp-sink included"
        ),
        sendbox: our_cpu,
        peer: POSTFIX_PEER.to_owned(),
        peer_value: Some(their_cpu),
    });
}

/// The intake against smtp-source straight to smtp-sink, and the drain.
fn push_straight_and_drain(
    table: &mut Table,
    n: u32,
    [ours, straight, drained, batched]: [Outcome; 4],
) {
    table.rows.push(Row {
        workload: format!(
            "outbox intake: {n} messages through sendbox serve (fsync each), one connection"
        ),
        sendbox: ours,
        peer: "smtp-source -d -s 1 straight to smtp-sink (keeps nothing)".to_owned(),
        peer_value: Some(straight),
    });
    table.rows.push(Row {
        workload: format!("outbox drain: sendbox queue flush of {n} messages, time per message"),
        sendbox: drained,
        peer: "sendbox batch of the same, from memory".to_owned(),
        peer_value: Some(batched),
    });
}

/// One run's configuration: an account on smtp-sink (or on a closed port, to fill the
/// queue), an outbox of its own.
struct Bench<'a> {
    sendbox: &'a Path,
    smtp_source: &'a Path,
    target: &'a Target,
    config: PathBuf,
    outbox: PathBuf,
}

impl<'a> Bench<'a> {
    fn new(
        setup: &Setup,
        sendbox: &'a Path,
        smtp_source: &'a Path,
        target: &'a Target,
        run: usize,
    ) -> Result<Self, String> {
        let config = setup.scratch_file(&format!("outbox-{run}.toml"), "")?;
        let outbox = config.with_file_name(format!("outbox-{run}"));
        let bench = Bench {
            sendbox,
            smtp_source,
            target,
            config,
            outbox,
        };
        bench.point_at(target.sink)?;
        Ok(bench)
    }

    fn point_at(&self, server: SocketAddr) -> Result<(), String> {
        let text = format!(
            "default = \"sink\"\n[accounts.sink]\nserver = \"{server}\"\ntls = \"none\"\n\
             from = \"{}\"\n[queue]\ndir = \"{}\"\n",
            crate::setup::SENDER,
            self.outbox.display()
        );
        std::fs::write(&self.config, text).map_err(|e| e.to_string())
    }

    /// `sendbox serve` on a free port, until the returned guard is dropped.
    fn serve(&self) -> Result<(Served, SocketAddr), String> {
        let address = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?;
        let child = Command::new(self.sendbox)
            .args(["serve", "--config"])
            .arg(&self.config)
            .args(["--listen", &address.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start sendbox serve: {e}"))?;
        let served = Served(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(address).is_err() {
            if Instant::now() > deadline {
                return Err("sendbox serve is not listening".to_owned());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok((served, address))
    }

    /// `n` messages from smtp-source over `k` connections into `sendbox serve`: its wall
    /// time, and serve's CPU until its worker has delivered them all.
    fn intake(&self, n: u32, k: u32) -> Result<Intake, String> {
        let (served, address) = self.serve()?;
        let before = process_cpu(served.0.id())?;
        let (wall, _) = run_timed(&mut smtp_source(
            self.smtp_source,
            address,
            &self.target.message,
            n,
            k,
        ))?;
        let queue = self.outbox.join("queue");
        drained("sendbox serve", || {
            Ok(fs::read_dir(&queue)
                .map_err(|e| format!("{}: {e}", queue.display()))?
                .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
                .any(|name| !name.ends_with(".state")))
        })?;
        let cpu = process_cpu(served.0.id())?.saturating_sub(before);
        Ok(Intake { wall, cpu })
    }

    fn straight(&self, n: u32) -> Result<Duration, String> {
        let (time, _) = run_timed(&mut smtp_source(
            self.smtp_source,
            self.target.sink,
            &self.target.message,
            n,
            1,
        ))?;
        Ok(time)
    }

    /// Fills the outbox with `n` messages through `sendbox serve`, its server down.
    fn fill(&self, n: u32) -> Result<(), String> {
        let closed = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?;
        self.point_at(closed)?;
        let (served, address) = self.serve()?;
        run_timed(&mut smtp_source(
            self.smtp_source,
            address,
            &self.target.message,
            n,
            1,
        ))?;
        drop(served);
        self.point_at(self.target.sink)
    }

    /// `sendbox queue flush` of the whole outbox: its time and what it printed.
    fn flush(&self) -> Result<(Duration, String), String> {
        run_timed(
            Command::new(self.sendbox)
                .args(["queue", "--config"])
                .arg(&self.config)
                .arg("flush"),
        )
    }

    /// [`Bench::flush`] of an outbox that holds `n` messages, all delivered.
    fn flush_exactly(&self, n: u32) -> Result<Duration, String> {
        let (time, stdout) = self.flush()?;
        if !stdout.starts_with(&format!("{n} delivered, 0 still queued")) {
            return Err(format!("queue flush: {}", stdout.trim()));
        }
        Ok(time)
    }

    fn batch(&self, n: u32) -> Result<Duration, String> {
        let (time, _) = run_timed(&mut sendbox_batch(
            self.sendbox,
            self.target.sink,
            &self.target.message,
            n,
            1,
        ))?;
        Ok(time)
    }
}

/// A running `sendbox serve`; dropping it stops it.
struct Served(Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until `busy` says the server `who` has nothing left to deliver.
fn drained(who: &str, mut busy: impl FnMut() -> Result<bool, String>) -> Result<(), String> {
    let deadline = Instant::now() + DRAIN;
    while busy()? {
        if Instant::now() > deadline {
            return Err(format!(
                "{who} had not delivered everything after {DRAIN:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// The CPU time (user and system, every thread) of process `pid`, and of its children
/// that it has reaped.
fn process_cpu(pid: u32) -> Result<Duration, String> {
    let times = stat_times(pid)?;
    Ok(times[0] + times[1] + times[2] + times[3])
}

/// utime, stime, cutime and cstime of process `pid`, and its parent, from /proc.
fn stat_times_and_parent(pid: u32) -> Result<([Duration; 4], u32), String> {
    let path = format!("/proc/{pid}/stat");
    let stat = fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    // Fields after the command name (which may hold spaces), from the state (field 3).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |number: usize| -> Result<u64, String> {
        fields
            .get(number - 3)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| format!("{path}: no field {number}"))
    };
    // SAFETY: sysconf has no preconditions.
    let ticks = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100);
    let time = |number| field(number).map(|t| Duration::from_micros(t * 1_000_000 / ticks));
    let parent = u32::try_from(field(4)?).map_err(|e| e.to_string())?;
    Ok(([time(14)?, time(15)?, time(16)?, time(17)?], parent))
}

fn stat_times(pid: u32) -> Result<[Duration; 4], String> {
    stat_times_and_parent(pid).map(|(times, _)| times)
}

/// The test Postfix with one more listener, on a free port, whose mail goes to smtp-sink
/// through an smtp client service of its own: added with `postconf -M`, and removed (and
/// Postfix reloaded) when this is dropped. Postfix's other ports are left as they are.
struct PostfixRelay {
    address: SocketAddr,
    service: String,
    queue_directory: PathBuf,
    master_pid: PathBuf,
}

/// The smtp client service the listener's content filter names.
const SINK_SERVICE: &str = "sendbox-bench-sink";

impl PostfixRelay {
    fn start(sink: SocketAddr) -> Result<Self, String> {
        let address = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?;
        let queue_directory = PathBuf::from(postconf(&["-h", "queue_directory"])?.trim());
        // Made first, so that what is added below is removed again on an error.
        let relay = PostfixRelay {
            address,
            service: format!("{address}/inet"),
            master_pid: queue_directory.join("pid/master.pid"),
            queue_directory,
        };
        let service = &relay.service;
        postconf(&["-Me", &format!("{service}={address} inet n - n - - smtpd")])?;
        postconf(&[
            "-P",
            &format!("{service}/syslog_name=postfix/sendbox-bench"),
            &format!(
                "{service}/content_filter={SINK_SERVICE}:[{}]:{}",
                sink.ip(),
                sink.port()
            ),
        ])?;
        postconf(&[
            "-Me",
            &format!("{SINK_SERVICE}/unix={SINK_SERVICE} unix - - n - - smtp"),
        ])?;
        postconf(&[
            "-P",
            &format!("{SINK_SERVICE}/unix/syslog_name=postfix/sendbox-bench-sink"),
            &format!("{SINK_SERVICE}/unix/smtp_tls_security_level=none"),
        ])?;
        reload()?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while !greets(address) {
            if Instant::now() > deadline {
                return Err(format!("the Postfix listener on {address} does not answer"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(relay)
    }

    /// `n` messages from smtp-source over `k` connections into Postfix's smtpd: the wall
    /// time, and Postfix's CPU until its queue is empty again.
    fn intake(&self, program: &Path, message: &Path, n: u32, k: u32) -> Result<Intake, String> {
        let queued = || {
            let mut files = 0;
            for folder in ["incoming", "active", "maildrop"] {
                files += count_files(&self.queue_directory.join(folder))?;
            }
            Ok(files > 0)
        };
        drained("Postfix", queued)?;
        let before = self.cpu()?;
        let (wall, _) = run_timed(&mut smtp_source(program, self.address, message, n, k))?;
        drained("Postfix", queued)?;
        let cpu = self.cpu()?.saturating_sub(before);
        Ok(Intake { wall, cpu })
    }

    /// The CPU time of Postfix's master, of the children it has reaped, and of those that
    /// run now (smtpd, cleanup, qmgr, trivial-rewrite, smtp...).
    fn cpu(&self) -> Result<Duration, String> {
        let text = fs::read_to_string(&self.master_pid)
            .map_err(|e| format!("{}: {e}", self.master_pid.display()))?;
        let master: u32 = text
            .trim()
            .parse()
            .map_err(|_| format!("{}: {text:?}", self.master_pid.display()))?;
        let mut total = process_cpu(master)?;
        let entries = fs::read_dir("/proc").map_err(|e| format!("/proc: {e}"))?;
        for entry in entries.filter_map(Result::ok) {
            let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse().ok()) else {
                continue;
            };
            // A process may end between the listing and the read: its time is then in
            // the master's reaped children, or soon will be.
            if let Ok((times, parent)) = stat_times_and_parent(pid)
                && parent == master
            {
                total += times.iter().sum::<Duration>();
            }
        }
        Ok(total)
    }
}

impl Drop for PostfixRelay {
    fn drop(&mut self) {
        let _ = postconf(&["-MX", &self.service, &format!("{SINK_SERVICE}/unix")]);
        let _ = reload();
    }
}

fn postconf(args: &[&str]) -> Result<String, String> {
    run_timed(Command::new("postconf").args(args)).map(|(_, stdout)| stdout)
}

fn reload() -> Result<(), String> {
    run_timed(Command::new("postfix").arg("reload")).map(|_| ())
}

/// Whether an SMTP server on `address` sends its 220 greeting.
fn greets(address: SocketAddr) -> bool {
    let Ok(stream) = TcpStream::connect_timeout(&address, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with("220")
}

/// The files under `dir`, in its subfolders too (Postfix hashes some queues).
fn count_files(dir: &Path) -> Result<usize, String> {
    let mut count = 0;
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(format!("{}: {e}", dir.display())),
    };
    for entry in entries.filter_map(Result::ok) {
        match entry.file_type() {
            Ok(kind) if kind.is_dir() => count += count_files(&entry.path())?,
            Ok(_) => count += 1,
            Err(_) => {}
        }
    }
    Ok(count)
}
