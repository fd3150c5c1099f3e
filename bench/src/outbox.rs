//! Workload 7, the outbox: what keeping each message on disk costs.
//!
//! - Intake: `smtp-source` hands N messages over one connection to `sendbox serve`, which
//!   answers each only after it is fsynced into the outbox (its worker delivers to
//!   smtp-sink meanwhile), against the same `smtp-source` straight to smtp-sink.
//! - Drain: `sendbox queue flush` delivering N queued messages to smtp-sink over one
//!   session, against `sendbox batch` sending the same N straight from memory over one
//!   session. The difference per message is the outbox's cost: locking, reading, and
//!   removing each file with an fsync of the folder.
//!
//! Runs alternate (A B A B); each figure is a median, and each is a whole process's wall
//! time. The queue for each drain is filled by `sendbox serve` with the account's server
//! down, outside the timing.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::report::{Measure, Outcome, Row, Table, Unit, median, run_timed};
use crate::setup::{Plan, Setup};
use crate::throughput::{Target, sendbox_batch, smtp_source};

pub fn run(setup: &Setup, plan: &Plan, target: &Result<Target, String>, table: &mut Table) {
    let n = plan.outbox_messages;
    eprintln!("outbox: {} runs of {n} messages each way", plan.outbox_runs);
    let measured = target.as_ref().map_err(Clone::clone).and_then(|target| {
        let sendbox = setup.sendbox.clone()?;
        let smtp_source = setup.peers.smtp_source.clone()?;
        let mut intake = (Vec::new(), Vec::new());
        let mut drain = (Vec::new(), Vec::new());
        for run in 0..plan.outbox_runs {
            let bench = Bench::new(setup, &sendbox, &smtp_source, target, run)?;
            intake.0.push(bench.intake(n)?);
            intake.1.push(bench.straight(n)?);
            // What the intake's worker had not delivered yet when serve stopped.
            bench.flush()?;
            bench.fill(n)?;
            drain.0.push(bench.flush_exactly(n)?);
            drain.1.push(bench.batch(n)?);
        }
        Ok((intake, drain))
    });
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
    let ((intake, straight), (drained, batched)): ((Outcome, Outcome), (Outcome, Outcome)) =
        match measured {
            Ok(((through, straight), (flushed, batched))) => {
                let cost = per_message(&flushed) - per_message(&batched);
                (
                    (Ok(rate(&through)), Ok(rate(&straight))),
                    (
                        Ok(Measure::new(per_message(&flushed), Unit::Millis)
                            .with_note(format!("outbox cost {cost:.3} ms/message"))),
                        Ok(Measure::new(per_message(&batched), Unit::Millis)),
                    ),
                )
            }
            Err(reason) => (
                (Err(reason.clone()), Err(reason.clone())),
                (Err(reason.clone()), Err(reason)),
            ),
        };
    table.rows.push(Row {
        workload: format!(
            "outbox intake: {n} messages through sendbox serve (fsync each), one connection"
        ),
        sendbox: intake,
        peer: "smtp-source -d -s 1 straight to smtp-sink".to_owned(),
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

    /// smtp-source's wall time handing `n` messages to `sendbox serve`.
    fn intake(&self, n: u32) -> Result<Duration, String> {
        let (_served, address) = self.serve()?;
        let (time, _) = run_timed(&mut smtp_source(
            self.smtp_source,
            address,
            &self.target.message,
            n,
            1,
        ))?;
        Ok(time)
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
