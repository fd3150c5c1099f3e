//! Workload 5, footprint: the component's size; the time to compile it with Cranelift
//! (`Sandbox::from_component`) and to set it up as the CLI does at start (`Sandbox::new`,
//! which may load compiled code from a cache), both paid once per process; the time to
//! instantiate it (`Sandbox::instantiate`, paid once per session); and the peak resident
//! memory and CPU time of `sendbox batch --concurrency 16` against `smtp-source -s 16`
//! (GNU time).

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use sendbox::component::COMPONENT;
use sendbox::{Limits, NetworkGrant, Sandbox, Transcript};
use tokio::runtime::Runtime;

use crate::report::{Measure, Outcome, Row, Table, Unit, run_timed};
use crate::setup::{POSTFIX_IMPLICIT, Plan, Setup};
use crate::throughput::{self, Target};

const GNU_TIME: &str = "/usr/bin/time";
const SESSIONS: u32 = 16;

pub fn run(
    setup: &Setup,
    plan: &Plan,
    sandbox: &Result<Sandbox, String>,
    runtime: &Runtime,
    target: &Result<Target, String>,
    table: &mut Table,
) {
    eprintln!("footprint");
    let size = Measure::new(COMPONENT.len() as f64 / 1024.0, Unit::KiB)
        .with_note(format!("{} bytes", COMPONENT.len()));
    table.rows.push(Row::alone(
        "component size (host/component/sendbox.wasm)",
        Ok(size),
    ));
    table.rows.push(Row::alone(
        "compile the component: Sandbox::from_component",
        setup_time(plan, || Sandbox::from_component(COMPONENT)),
    ));
    table.rows.push(Row::alone(
        "set up the component as the CLI does: Sandbox::new",
        setup_time(plan, Sandbox::new),
    ));
    table.rows.push(Row::alone(
        "instantiate: Sandbox::instantiate, once per session",
        sandbox
            .clone()
            .and_then(|sandbox| runtime.block_on(instantiation_time(plan, &sandbox))),
    ));

    let m = plan.messages;
    let (ours, theirs) = match target {
        Ok(target) => (
            setup.sendbox.clone().and_then(|program| {
                let batch =
                    throughput::sendbox_batch(&program, target.sink, &target.message, m, SESSIONS);
                peak_rss(setup, batch, m)
            }),
            setup.peers.smtp_source.clone().and_then(|program| {
                let source =
                    throughput::smtp_source(&program, target.sink, &target.message, m, SESSIONS);
                peak_rss(setup, source, m)
            }),
        ),
        Err(reason) => (Err(reason.clone()), Err(reason.clone())),
    };
    table.rows.push(Row {
        workload: format!("peak RSS, {SESSIONS} connections, {m} messages, smtp-sink"),
        sendbox: ours,
        peer: format!("smtp-source -d -s {SESSIONS}"),
        peer_value: Some(theirs),
    });
}

/// One unmeasured warm-up (which fills a cache, if any), then `plan.compiles` runs.
fn setup_time(plan: &Plan, set_up: impl Fn() -> anyhow::Result<Sandbox>) -> Outcome {
    let mut times = Vec::new();
    for round in 0..=plan.compiles {
        let start = Instant::now();
        set_up().map_err(|e| format!("{e:#}"))?;
        if round > 0 {
            times.push(start.elapsed());
        }
    }
    Ok(Measure::millis(&times))
}

/// One unmeasured warm-up, then `plan.instantiations` instances, each dropped at once.
async fn instantiation_time(plan: &Plan, sandbox: &Sandbox) -> Outcome {
    let grant = NetworkGrant::new(vec![POSTFIX_IMPLICIT]);
    let mut times: Vec<Duration> = Vec::new();
    for round in 0..=plan.instantiations {
        let start = Instant::now();
        let instance = sandbox
            .instantiate(grant.clone(), Limits::default(), &Transcript::Off)
            .await
            .map_err(|e| format!("{e:#}"))?;
        let elapsed = start.elapsed();
        drop(instance);
        if round > 0 {
            times.push(elapsed);
        }
    }
    Ok(Measure::millis(&times))
}

/// Runs `command`, which sends `messages`, under GNU time; reads its peak resident set
/// size, and notes its CPU time (user and system) per message.
fn peak_rss(setup: &Setup, command: Command, messages: u32) -> Outcome {
    if !Path::new(GNU_TIME).is_file() {
        return Err(format!("{GNU_TIME} missing: apt-get install time"));
    }
    let report = setup.scratch_file("peak-rss", "")?;
    let mut timed = Command::new(GNU_TIME);
    timed
        .args(["-f", "%M %U %S", "-o"])
        .arg(&report)
        .arg(command.get_program())
        .args(command.get_args());
    run_timed(&mut timed).map_err(|e| format!("under GNU time: {e}"))?;
    let text = fs::read_to_string(&report).unwrap_or_default();
    let figures: Vec<f64> = text
        .split_whitespace()
        .filter_map(|figure| figure.parse().ok())
        .collect();
    let [kib, user, system] = figures[..] else {
        return Err(format!("GNU time said {:?}", text.trim()));
    };
    let cpu = (user + system) / f64::from(messages) * 1e6;
    Ok(Measure::new(kib / 1024.0, Unit::MiB).with_note(format!("CPU {cpu:.0} µs/message")))
}
