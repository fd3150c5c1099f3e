//! Workload 5, footprint: the component's size; the time to compile it with Cranelift
//! (`Sandbox::from_component`) and to set it up as the CLI does at start (`Sandbox::new`,
//! which may load compiled code from a cache), both paid once per process; the time to
//! instantiate it (`Sandbox::instantiate`, paid once per session). Peak memory and CPU
//! time per message are in [`crate::throughput`], beside each run's wall time.

use std::time::{Duration, Instant};

use sendbox::component::COMPONENT;
use sendbox::{Limits, NetworkGrant, Sandbox, Transcript};
use tokio::runtime::Runtime;

use crate::report::{Measure, Outcome, Row, Table, Unit};
use crate::setup::{POSTFIX_IMPLICIT, Plan};

pub fn run(plan: &Plan, sandbox: &Result<Sandbox, String>, runtime: &Runtime, table: &mut Table) {
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
