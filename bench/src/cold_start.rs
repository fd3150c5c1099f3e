//! Workload 1, cold start: one whole process sends one small message to Postfix on
//! 127.0.0.1:587 over STARTTLS with AUTH PLAIN, checking the server's certificate
//! against the test CA. Every tool verifies. Runs go round-robin across the tools, after
//! one unmeasured warm-up each; a row gives the median wall time and the fastest run.
//! Each round also runs every tool once more under GNU time, for its CPU time and peak
//! memory, which rows give against the two native clients, curl and msmtp (the
//! interpreters' memory says little about sending mail).

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::report::{Measure, Outcome, Row, Table, Unit, Usage, median, run_measured, run_timed};
use crate::setup::{POSTFIX_STARTTLS, Plan, Postfix, RECIPIENT, SENDER, Setup};

const MESSAGE: &str = "From: alice@sendbox.test\r\nTo: sink@sendbox.test\r\n\
    Subject: sendbox-bench cold start\r\n\r\nOne small message.\r\n";

/// smtplib with certificate checks against the CA (`create_default_context(cafile=…)`).
const SMTPLIB: &str = r#"import os, smtplib, ssl, sys
host, port, ca, user, sender, recipient, path = sys.argv[1:]
with smtplib.SMTP(host, int(port), local_hostname="localhost") as smtp:
    smtp.starttls(context=ssl.create_default_context(cafile=ca))
    smtp.login(user, os.environ["SMTP_PASSWORD"])
    with open(path, "rb") as message:
        smtp.sendmail(sender, [recipient], message.read())
"#;

/// How to launch a tool, or why it cannot run.
type Launcher = Result<Launch, String>;

/// A tool's launcher, its wall times and its measured runs so far, or why it stopped.
type Runs = Result<(Launch, Vec<Duration>, Vec<Usage>), String>;

/// The peers whose CPU time and peak memory get rows of their own.
const NATIVE: [&str; 2] = ["curl", "msmtp"];

/// How to launch one tool: a fresh `Command` each run, as some read the message on stdin.
struct Launch {
    program: PathBuf,
    args: Vec<OsString>,
    env: Option<(&'static str, String)>,
    stdin: Option<PathBuf>,
}

impl Launch {
    fn new(program: PathBuf, args: &[&dyn AsRef<OsStr>]) -> Self {
        Launch {
            program,
            args: args.iter().map(|a| a.as_ref().to_owned()).collect(),
            env: None,
            stdin: None,
        }
    }

    fn env(mut self, name: &'static str, value: &str) -> Self {
        self.env = Some((name, value.to_owned()));
        self
    }

    fn stdin(mut self, file: &Path) -> Self {
        self.stdin = Some(file.to_owned());
        self
    }

    fn command(&self) -> Result<Command, String> {
        let mut command = Command::new(&self.program);
        command.args(&self.args);
        if let Some((name, value)) = &self.env {
            command.env(name, value);
        }
        if let Some(file) = &self.stdin {
            let stdin = File::open(file).map_err(|e| format!("{}: {e}", file.display()))?;
            command.stdin(stdin);
        }
        Ok(command)
    }
}

pub fn run(setup: &Setup, plan: &Plan, table: &mut Table) {
    const WORKLOAD: &str = "cold start: 1 message, STARTTLS + AUTH, Postfix :587";
    let postfix = match &setup.postfix {
        Ok(postfix) => postfix,
        Err(reason) => {
            table.rows.push(Row::alone(WORKLOAD, Err(reason.clone())));
            return;
        }
    };
    let launchers = match launchers(setup, postfix) {
        Ok(launchers) => launchers,
        Err(reason) => {
            table.rows.push(Row::alone(WORKLOAD, Err(reason)));
            return;
        }
    };
    let mut tools: Vec<(&str, Runs)> = launchers
        .into_iter()
        .map(|(name, launch)| (name, launch.map(|launch| (launch, Vec::new(), Vec::new()))))
        .collect();
    for round in 0..=plan.cold_starts {
        eprintln!("cold start: round {round} of {}", plan.cold_starts);
        for (_, state) in &mut tools {
            let Ok((launch, times, usages)) = state else {
                continue;
            };
            let timed = launch
                .command()
                .and_then(|mut command| run_timed(&mut command));
            let measured = launch
                .command()
                .and_then(|mut command| run_measured(&mut command));
            match (timed, measured) {
                (Ok((elapsed, _)), Ok(usage)) if round > 0 => {
                    times.push(elapsed);
                    usages.push(usage);
                }
                (Ok(_), Ok(_)) => {}
                (Err(reason), _) | (_, Err(reason)) => *state = Err(reason),
            }
        }
    }
    let figures = |state: &Runs| -> [Outcome; 3] {
        let of = |value: fn(&Usage) -> f64| -> Result<f64, String> {
            let (_, _, usages) = state.as_ref().map_err(Clone::clone)?;
            Ok(median(&usages.iter().map(value).collect::<Vec<_>>()))
        };
        [
            state
                .as_ref()
                .map_err(Clone::clone)
                .map(|(_, times, _)| Measure::millis_and_fastest(times)),
            of(|u| u.cpu.as_secs_f64() * 1e3).map(|ms| Measure::new(ms, Unit::Millis)),
            of(|u| u.peak_rss_kib as f64).map(|kib| Measure::new(kib / 1024.0, Unit::MiB)),
        ]
    };
    let mut outcomes = tools.iter().map(|(name, state)| (*name, figures(state)));
    let (_, [sendbox, sendbox_cpu, sendbox_rss]) =
        outcomes.next().expect("sendbox is the first tool");
    let outcomes: Vec<_> = outcomes.collect();
    for (peer, [wall, _, _]) in &outcomes {
        table.rows.push(Row {
            workload: WORKLOAD.to_owned(),
            sendbox: sendbox.clone(),
            peer: (*peer).to_owned(),
            peer_value: Some(wall.clone()),
        });
    }
    for (peer, [_, cpu, rss]) in outcomes.iter().filter(|(peer, _)| NATIVE.contains(peer)) {
        for (what, ours, theirs) in [
            ("CPU time (under GNU time)", &sendbox_cpu, cpu),
            ("peak RSS", &sendbox_rss, rss),
        ] {
            table.rows.push(Row {
                workload: format!("{WORKLOAD}: {what}"),
                sendbox: ours.clone(),
                peer: (*peer).to_owned(),
                peer_value: Some(theirs.clone()),
            });
        }
    }
}

/// sendbox first, then each peer, with how to launch it or why it cannot run.
fn launchers(setup: &Setup, postfix: &Postfix) -> Result<Vec<(&'static str, Launcher)>, String> {
    let message = setup.scratch_file("cold.eml", MESSAGE)?;
    let server = POSTFIX_STARTTLS.to_string();
    let host = POSTFIX_STARTTLS.ip().to_string();
    let port = POSTFIX_STARTTLS.port().to_string();
    let (ca, user, password) = (&postfix.ca, &postfix.user, &postfix.password);

    // By default sendbox authenticates with SCRAM-SHA-256 (4096 PBKDF2 rounds in the
    // component); the same send with PLAIN shows what that costs.
    let sendbox_with = |auth: &'static str| {
        setup.sendbox.clone().map(|program| {
            Launch::new(
                program,
                &[
                    &"send",
                    &"--auth",
                    &auth,
                    &"--server",
                    &server,
                    &"--tls",
                    &"starttls",
                    &"--ca",
                    ca,
                    &"--user",
                    user,
                    &"--password-env",
                    &"SMTP_PASSWORD",
                    &"--from",
                    &SENDER,
                    &"--to",
                    &RECIPIENT,
                    &"--raw",
                    &message,
                ],
            )
            .env("SMTP_PASSWORD", password)
        })
    };
    let sendbox = sendbox_with("scram-sha256");
    let sendbox_plain = sendbox_with("plain");

    let netrc = setup.scratch_file(
        "netrc",
        &format!("machine {host} login {user} password {password}\n"),
    )?;
    let curl = setup.peers.curl.clone().map(|program| {
        Launch::new(
            program,
            &[
                &"-sS",
                &"--ssl-reqd",
                &"--cacert",
                ca,
                &"--url",
                &format!("smtp://{server}"),
                &"--netrc-file",
                &netrc,
                &"--login-options",
                &"AUTH=PLAIN",
                &"--mail-from",
                &SENDER,
                &"--mail-rcpt",
                &RECIPIENT,
                &"--upload-file",
                &message,
            ],
        )
    });

    let msmtprc = setup.scratch_file(
        "msmtprc",
        &format!(
            "account default\nhost {host}\nport {port}\ntls on\ntls_starttls on\n\
             tls_trust_file {}\nauth plain\nuser {user}\npassword {password}\n\
             from {SENDER}\ndomain localhost\n",
            ca.display()
        ),
    )?;
    let msmtp = setup
        .peers
        .msmtp
        .clone()
        .map(|program| Launch::new(program, &[&"-C", &msmtprc, &RECIPIENT]).stdin(&message));

    let mut data = OsString::from("@");
    data.push(&message);
    let swaks = setup.peers.swaks.clone().map(|program| {
        Launch::new(
            program,
            &[
                &"--server",
                &host,
                &"--port",
                &port,
                &"--tls",
                &"--tls-verify",
                &"--tls-ca-path",
                ca,
                &"--auth",
                &"PLAIN",
                &"--auth-user",
                user,
                &"--from",
                &SENDER,
                &"--to",
                &RECIPIENT,
                &"--helo",
                &"localhost",
                &"--data",
                &data,
                &"--silent",
                &"2",
            ],
        )
        // swaks reads any option from SWAKS_OPT_<name>: this keeps it off the command line.
        .env("SWAKS_OPT_auth_password", password)
    });

    let script = setup.scratch_file("smtplib_send.py", SMTPLIB)?;
    let python = setup.peers.python.clone().map(|program| {
        Launch::new(
            program,
            &[
                &script, &host, &port, ca, user, &SENDER, &RECIPIENT, &message,
            ],
        )
        .env("SMTP_PASSWORD", password)
    });

    Ok(vec![
        ("sendbox", sendbox),
        ("sendbox --auth plain", sendbox_plain),
        ("curl", curl),
        ("msmtp", msmtp),
        ("swaks", swaks),
        ("python3 smtplib", python),
    ])
}
