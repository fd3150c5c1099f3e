//! Workload: what DKIM signing costs. `sendbox batch` sends the same 1 KiB message
//! `plan.dkim_messages` times over one session to smtp-sink, unsigned, signed with an RSA-2048
//! key and signed with an Ed25519 key (both made by `sendbox dkim keygen` for the run).
//! The peer is lettre 0.11's DKIM signing (its `dkim` feature) of the same message with the
//! same two key files, relaxed/relaxed, sent as many times over one session to the same
//! sink: the `lettre-dkim-peer` program in bench/peers/lettre-dkim/. Runs alternate (the
//! five ways in turn); rows give medians of wall time, CPU time per message and peak RSS,
//! each signed batch against the unsigned one and against lettre with the same algorithm.
//!
//! lettre signs RSA with the `rsa` crate, whose private-key operations have a known timing
//! flaw (RUSTSEC-2023-0071). This workspace's lock file takes no crate with an advisory, not
//! even for a benchmark, so the peer is a crate outside the workspace with a lock file of
//! its own, built here (`cargo build --release --locked`) only when this workload runs, and
//! it only ever signs with the run's throw-away keys. lettre sends the last line of a
//! message and the final dot in two writes with Nagle's algorithm on (see `tls_bulk`), so
//! its wall time waits some 40 ms a message for delayed ACKs: compare CPU per message.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::report::{Runs, Table, push_figures, run_measured};
use crate::setup::{Plan, RECIPIENT, SENDER, Setup};
use crate::throughput::{Target, sendbox_batch};

pub fn run(setup: &Setup, plan: &Plan, target: &Result<Target, String>, table: &mut Table) {
    let m = plan.dkim_messages;
    let workload =
        |signed: &str| format!("batch of {m} 1 KiB messages, smtp-sink, signed with {signed}");
    eprintln!(
        "dkim: {} runs of {m} messages, five ways (three with sendbox, two with lettre)",
        plan.throughput_runs
    );
    let measured = target
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|target| measure(setup, plan, target));
    let Measured {
        unsigned,
        rsa,
        ed25519,
        lettre_rsa,
        lettre_ed25519,
    } = measured.unwrap_or_else(|reason| Measured::failed(&reason));
    for (name, signed, peer, theirs) in [
        (
            "rsa-sha256 (2048 bits)",
            &rsa,
            "lettre 0.11 dkim rsa-2048",
            &lettre_rsa,
        ),
        (
            "ed25519-sha256",
            &ed25519,
            "lettre 0.11 dkim ed25519",
            &lettre_ed25519,
        ),
    ] {
        push_figures(
            table,
            &workload(name),
            signed,
            "the same batch unsigned",
            &unsigned,
            m,
        );
        push_figures(table, &workload(name), signed, peer, theirs, m);
    }
}

/// The runs of each of the five ways.
struct Measured {
    unsigned: Result<Runs, String>,
    rsa: Result<Runs, String>,
    ed25519: Result<Runs, String>,
    lettre_rsa: Result<Runs, String>,
    lettre_ed25519: Result<Runs, String>,
}

impl Measured {
    fn failed(reason: &str) -> Self {
        let failed = || Err(reason.to_owned());
        Measured {
            unsigned: failed(),
            rsa: failed(),
            ed25519: failed(),
            lettre_rsa: failed(),
            lettre_ed25519: failed(),
        }
    }
}

fn measure(setup: &Setup, plan: &Plan, target: &Target) -> Result<Measured, String> {
    let sendbox = setup.sendbox.clone()?;
    let keys = tempfile::tempdir().map_err(|e| format!("a folder for the keys: {e}"))?;
    let rsa = keygen(&sendbox, keys.path(), "rsa")?;
    let ed25519 = keygen(&sendbox, keys.path(), "ed25519")?;
    // Without the peer, sendbox's rows are still measured and lettre's say why not.
    let peer = build_lettre_peer();
    let lettre = |key: &Path| {
        let mut command = Command::new(peer.as_ref().map_err(Clone::clone)?);
        command
            .args(["--server", &target.sink.to_string()])
            .args(["--from", SENDER, "--to", RECIPIENT, "--raw"])
            .arg(&target.message)
            .arg("--key")
            .arg(key)
            .args(["--selector", "bench", "--domain", "sendbox.test"])
            .args(["--count", &plan.dkim_messages.to_string()]);
        Ok::<_, String>(command)
    };
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
    let mut ours = [Runs::default(), Runs::default(), Runs::default()];
    let mut theirs = [Ok(Runs::default()), Ok(Runs::default())];
    for _ in 0..plan.throughput_runs {
        for (key, collected) in [None, Some(rsa.as_path()), Some(ed25519.as_path())]
            .into_iter()
            .zip(ours.iter_mut())
        {
            collected.usages.push(run_measured(&mut batch(key))?);
        }
        for (key, collected) in [rsa.as_path(), ed25519.as_path()]
            .into_iter()
            .zip(theirs.iter_mut())
        {
            if let Ok(runs) = collected {
                match lettre(key).and_then(|mut command| run_measured(&mut command)) {
                    Ok(usage) => runs.usages.push(usage),
                    Err(reason) => *collected = Err(reason),
                }
            }
        }
    }
    let [unsigned, rsa, ed25519] = ours;
    let [lettre_rsa, lettre_ed25519] = theirs;
    Ok(Measured {
        unsigned: Ok(unsigned),
        rsa: Ok(rsa),
        ed25519: Ok(ed25519),
        lettre_rsa,
        lettre_ed25519,
    })
}

/// Builds the lettre peer with its own lock file, into the workspace's target folder.
fn build_lettre_peer() -> Result<PathBuf, String> {
    let bench = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = bench.join("peers/lettre-dkim/Cargo.toml");
    let target_dir = bench.join("../target/peers");
    eprintln!("dkim: building the lettre peer ({})", manifest.display());
    // `cargo run` says which cargo it is; else the one on PATH.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let built = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--locked",
            "--quiet",
            "--manifest-path",
        ])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target_dir)
        .output()
        .map_err(|e| format!("cannot run cargo to build the lettre peer: {e}"))?;
    if !built.status.success() {
        let stderr = String::from_utf8_lossy(&built.stderr);
        return Err(format!(
            "building {} failed: {}",
            manifest.display(),
            stderr.lines().last().unwrap_or("no error output")
        ));
    }
    Ok(target_dir.join("release/lettre-dkim-peer"))
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
