//! The machine and the version of everything measured, printed above the table.

use std::fmt::Write as _;
use std::fs;
use std::process::Command;
use std::thread;

use crate::setup::{Program, Setup};

pub fn describe(setup: &Setup) -> String {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = field(&cpuinfo, "model name", ':').unwrap_or("unknown CPU");
    let cpus = thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = field(&meminfo, "MemTotal", ':')
        .and_then(|kb| kb.trim_end_matches(" kB").parse::<f64>().ok())
        .map_or("unknown".to_owned(), |kb| {
            format!("{:.1} GiB", kb / 1024.0 / 1024.0)
        });
    let os_release = fs::read_to_string("/etc/os-release").unwrap_or_default();
    let os = field(&os_release, "PRETTY_NAME", '=').map_or("unknown OS", |s| s.trim_matches('"'));
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();

    let mut text = String::new();
    let mut line = |label: &str, value: String| {
        let _ = writeln!(text, "- {label}: {value}");
    };
    line("CPU", format!("{cpu}, nproc {cpus}"));
    line("memory", memory);
    line("OS", format!("{os}, Linux {}", kernel.trim()));
    line("sendbox", version(&setup.sendbox, &["--version"], ""));
    let peers = &setup.peers;
    line("curl", version(&peers.curl, &["--version"], ""));
    line(
        "msmtp",
        version(&peers.msmtp, &["--version"], "TLS/SSL library"),
    );
    line("swaks", version(&peers.swaks, &["--version"], ""));
    let python =
        "import ssl, sys; print(sys.executable, sys.version.split()[0], ssl.OPENSSL_VERSION)";
    line("python3", version(&peers.python, &["-c", python], ""));
    let postfix = version(
        &Ok("/usr/sbin/postconf".into()),
        &["-h", "mail_version"],
        "",
    );
    line("smtp-source, smtp-sink", format!("Postfix {postfix}"));
    text
}

/// The value of the first `name<separator>value` line.
fn field<'a>(text: &'a str, name: &str, separator: char) -> Option<&'a str> {
    text.lines()
        .filter_map(|l| l.split_once(separator))
        .find(|(key, _)| key.trim() == name)
        .map(|(_, value)| value.trim())
}

/// The first line the program prints, and the line starting with `also` if not empty.
fn version(program: &Program, args: &[&str], also: &str) -> String {
    let program = match program {
        Ok(program) => program,
        Err(reason) => return format!("n/a ({reason})"),
    };
    let output = match Command::new(program).args(args).output() {
        Ok(output) => output,
        Err(e) => return format!("n/a ({}: {e})", program.display()),
    };
    let text = String::from_utf8_lossy(&output.stdout);
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let mut found = lines.next().unwrap_or("unknown version").trim().to_owned();
    if let Some(extra) = lines.find(|l| !also.is_empty() && l.starts_with(also)) {
        found = format!("{found}; {}", extra.trim());
    }
    found
}
