//! Workload: what DKIM signing costs. `sendbox batch` sends the same 1 KiB message
//! `plan.dkim_messages` times over one session to smtp-sink, unsigned, signed with an RSA-2048
//! key and signed with an Ed25519 key (both made by `sendbox dkim keygen` for the run).
//! Runs alternate; rows give medians of wall time, CPU time per message and peak RSS,
//! each signed batch against the unsigned one.
//!
//! lettre's DKIM signing, the other peer, is not measured: it signs RSA with the
//! `rsa` crate, whose private-key operations have a known timing flaw (RUSTSEC-2023-0071),
//! and this workspace's lock file takes no crate with such an advisory, not even for a
//! benchmark.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::report::{Runs, Table, push_figures, run_measured};
use crate::setup::{Plan, Setup};
use crate::throughput::{Target, sendbox_batch};

pub fn run(setup: &Setup, plan: &Plan, target: &Result<Target, String>, table: &mut Table) {
    let m = plan.dkim_messages;
    let workload =
        |signed: &str| format!("batch of {m} 1 KiB messages, smtp-sink, signed with {signed}");
    eprintln!(
        "dkim: {} runs of {m} messages, three ways",
        plan.throughput_runs
    );
    let measured = target
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|target| measure(setup, plan, target));
    let (unsigned, rsa, ed25519) = match measured {
        Ok(runs) => runs,
        Err(reason) => (Err(reason.clone()), Err(reason.clone()), Err(reason)),
    };
    for (name, signed) in [
        ("rsa-sha256 (2048 bits)", &rsa),
        ("ed25519-sha256", &ed25519),
    ] {
        push_figures(
            table,
            &workload(name),
            signed,
            "the same batch unsigned",
            &unsigned,
            m,
        );
    }
}

type Measured = (
    Result<Runs, String>,
    Result<Runs, String>,
    Result<Runs, String>,
);

fn measure(setup: &Setup, plan: &Plan, target: &Target) -> Result<Measured, String> {
    let sendbox = setup.sendbox.clone()?;
    let keys = tempfile::tempdir().map_err(|e| format!("a folder for the keys: {e}"))?;
    let rsa = keygen(&sendbox, keys.path(), "rsa")?;
    let ed25519 = keygen(&sendbox, keys.path(), "ed25519")?;
    let batch = |key: Option<&Path>| {
        let mut command = sendbox_batch(
            &sendbox,
            target.sink,
            &target.message,
            plan.dkim_messages,
            1,
        );
        if let Some(key) = key {
            command.arg("--dkim-key").arg(key).args([
                "--dkim-selector",
                "bench",
                "--dkim-domain",
                "sendbox.test",
            ]);
        }
        command
    };
    let mut runs = [Runs::default(), Runs::default(), Runs::default()];
    for _ in 0..plan.throughput_runs {
        for (key, collected) in [None, Some(rsa.as_path()), Some(ed25519.as_path())]
            .into_iter()
            .zip(runs.iter_mut())
        {
            collected.usages.push(run_measured(&mut batch(key))?);
        }
    }
    let [unsigned, rsa, ed25519] = runs;
    Ok((Ok(unsigned), Ok(rsa), Ok(ed25519)))
}

/// A key made as a user makes one.
fn keygen(sendbox: &Path, dir: &Path, algorithm: &str) -> Result<PathBuf, String> {
    let key = dir.join(format!("{algorithm}.pem"));
    let made = Command::new(sendbox)
        .args([
            "dkim",
            "keygen",
            "--selector",
            "bench",
            "--domain",
            "sendbox.test",
        ])
        .args(["--algorithm", algorithm, "--output"])
        .arg(&key)
        .output()
        .map_err(|e| format!("cannot run sendbox dkim keygen: {e}"))?;
    if !made.status.success() {
        return Err(format!(
            "sendbox dkim keygen --algorithm {algorithm}: {}",
            String::from_utf8_lossy(&made.stderr).trim()
        ));
    }
    Ok(key)
}
