//! Workload: one send as a daemon or a cron job of a system user makes it, with no home
//! and so no compiled-code cache (`HOME=/nonexistent`, as `nobody` has). It is measured
//! against the same send with a warm cache in a home, and against msmtp, each a whole
//! process sending one small message to Postfix on 127.0.0.1:25 without TLS, so that
//! start-up is most of what is measured. Runs alternate; rows give medians of wall time,
//! CPU time and peak RSS.

use std::path::Path;
use std::process::Command;

use crate::report::{Runs, Table, push_figures, run_measured};
use crate::setup::{Plan, RECIPIENT, SENDER, Setup};

const WORKLOAD: &str = "1 send without a home (HOME=/nonexistent), Postfix :25";
const MESSAGE: &str = "From: alice@sendbox.test\r\nTo: sink@sendbox.test\r\n\
    Subject: sendbox-bench without a home\r\n\r\nOne small message.\r\n";

pub fn run(setup: &Setup, plan: &Plan, table: &mut Table) {
    let measured = measure(setup, plan);
    let (homeless, cached, msmtp) = match measured {
        Ok(runs) => runs,
        Err(reason) => {
            let failed = || Err(reason.clone());
            push_figures(
                table,
                WORKLOAD,
                &failed(),
                "sendbox with a cache",
                &failed(),
                1,
            );
            return;
        }
    };
    push_figures(
        table,
        WORKLOAD,
        &homeless,
        "sendbox with a cache",
        &cached,
        1,
    );
    push_figures(table, WORKLOAD, &homeless, "msmtp", &msmtp, 1);
}

type Measured = (
    Result<Runs, String>,
    Result<Runs, String>,
    Result<Runs, String>,
);

fn measure(setup: &Setup, plan: &Plan) -> Result<Measured, String> {
    let sendbox = setup.sendbox.clone()?;
    let message = setup.scratch_file("homeless.eml", MESSAGE)?;
    let home = tempfile::tempdir().map_err(|e| format!("a home for the cached send: {e}"))?;
    let msmtprc = setup.scratch_file(
        "msmtprc-25",
        &format!(
            "account default\nhost 127.0.0.1\nport 25\ntls off\nauth off\n\
             from {SENDER}\ndomain localhost\n"
        ),
    )?;
    let send = |home: &Path| {
        let mut command = Command::new(&sendbox);
        command
            .args(["send", "--server", "127.0.0.1:25", "--tls", "none"])
            .args(["--from", SENDER, "--to", RECIPIENT, "--raw"])
            .arg(&message)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", home);
        command
    };
    let msmtp = setup.peers.msmtp.clone().map(|program| {
        let mut command = Command::new(program);
        command.arg("-C").arg(&msmtprc).arg(RECIPIENT);
        (command, message.clone())
    });
    // Fills the cache of the home that has one (where sendbox still uses one).
    run_measured(&mut send(home.path()))?;
    let mut homeless = Ok(Runs::default());
    let mut cached = Ok(Runs::default());
    let mut theirs = msmtp
        .as_ref()
        .map(|_| Runs::default())
        .map_err(Clone::clone);
    for _ in 0..plan.cold_starts {
        for (mut command, runs) in [
            (send(Path::new("/nonexistent")), &mut homeless),
            (send(home.path()), &mut cached),
        ] {
            if let Ok(collected) = runs.as_mut() {
                match run_measured(&mut command) {
                    Ok(usage) => collected.usages.push(usage),
                    Err(reason) => *runs = Err(reason),
                }
            }
        }
        if let (Ok((command, message)), Ok(collected)) = (&msmtp, theirs.as_mut()) {
            let mut command = piped(command, message)?;
            match run_measured(&mut command) {
                Ok(usage) => collected.usages.push(usage),
                Err(reason) => theirs = Err(reason),
            }
        }
    }
    Ok((homeless, cached, theirs))
}

/// msmtp reads the message on stdin: `sh -c 'exec msmtp ... < FILE'`, so that GNU time
/// measures msmtp itself.
fn piped(command: &Command, message: &Path) -> Result<Command, String> {
    let mut line = format!("exec {}", quote(command.get_program())?);
    for arg in command.get_args() {
        line.push(' ');
        line.push_str(&quote(arg)?);
    }
    line.push_str(" < ");
    line.push_str(&quote(message.as_os_str())?);
    let mut sh = Command::new("/bin/sh");
    sh.args(["-c", &line]);
    Ok(sh)
}

fn quote(word: &std::ffi::OsStr) -> Result<String, String> {
    let word = word
        .to_str()
        .ok_or_else(|| format!("{word:?} is not UTF-8"))?;
    Ok(format!("'{}'", word.replace('\'', r"'\''")))
}
