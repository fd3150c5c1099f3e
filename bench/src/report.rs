//! The results table: rows of medians, their ratio sendbox / peer, and the warnings.

use std::fmt::{self, Display};
use std::io::Read;
use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// What a figure measures; it decides how the figure is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Micros,
    Millis,
    MessagesPerSecond,
    KiB,
    MiB,
}

/// One figure, with an optional remark printed after it.
#[derive(Clone, Debug)]
pub struct Measure {
    pub value: f64,
    pub unit: Unit,
    pub note: Option<String>,
}

impl Measure {
    pub fn new(value: f64, unit: Unit) -> Self {
        Measure {
            value,
            unit,
            note: None,
        }
    }

    pub fn millis(times: &[Duration]) -> Self {
        let millis: Vec<f64> = times.iter().map(|t| t.as_secs_f64() * 1e3).collect();
        Measure::new(median(&millis), Unit::Millis)
    }

    /// The median, with the fastest run as a note: a bimodal spread shows as a gap.
    pub fn millis_and_fastest(times: &[Duration]) -> Self {
        let fastest = times.iter().min().copied().unwrap_or_default();
        let note = format!(
            "fastest {}",
            Measure::new(fastest.as_secs_f64() * 1e3, Unit::Millis)
        );
        Measure::millis(times).with_note(note)
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }
}

impl Display for Measure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.value;
        match self.unit {
            Unit::Micros if v >= 1000.0 => write!(f, "{:.1} ms", v / 1000.0)?,
            Unit::Micros => write!(f, "{v:.1} µs")?,
            Unit::Millis if v < 1.0 => write!(f, "{v:.3} ms")?,
            Unit::Millis if v < 10.0 => write!(f, "{v:.2} ms")?,
            Unit::Millis if v < 100.0 => write!(f, "{v:.1} ms")?,
            Unit::Millis => write!(f, "{v:.0} ms")?,
            Unit::MessagesPerSecond => write!(f, "{v:.0} msg/s")?,
            Unit::KiB => write!(f, "{v:.0} KiB")?,
            Unit::MiB => write!(f, "{v:.1} MiB")?,
        }
        match &self.note {
            Some(note) => write!(f, " ({note})"),
            None => Ok(()),
        }
    }
}

/// A measured figure, or why there is none.
pub type Outcome = Result<Measure, String>;

/// One line of the table. `peer_value` is `None` for figures without a peer.
pub struct Row {
    pub workload: String,
    pub sendbox: Outcome,
    pub peer: String,
    pub peer_value: Option<Outcome>,
}

impl Row {
    /// A figure of sendbox's own, with nothing native to compare it with.
    pub fn alone(workload: impl Into<String>, sendbox: Outcome) -> Self {
        Row {
            workload: workload.into(),
            sendbox,
            peer: "—".to_owned(),
            peer_value: None,
        }
    }

    /// sendbox / peer, when both were measured in the same unit.
    pub fn ratio(&self) -> Option<f64> {
        match (&self.sendbox, &self.peer_value) {
            (Ok(ours), Some(Ok(theirs))) if ours.unit == theirs.unit && theirs.value > 0.0 => {
                Some(ours.value / theirs.value)
            }
            _ => None,
        }
    }
}

#[derive(Default)]
pub struct Table {
    pub rows: Vec<Row>,
    pub warnings: Vec<String>,
}

impl Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "| workload | sendbox | peer | peer value | ratio |")?;
        writeln!(f, "|---|---|---|---|---|")?;
        for row in &self.rows {
            let ratio = row.ratio().map_or("—".to_owned(), ratio_cell);
            let peer_value = row.peer_value.as_ref().map_or("—".to_owned(), cell);
            writeln!(
                f,
                "| {} | {} | {} | {} | {} |",
                escape(&row.workload),
                cell(&row.sendbox),
                escape(&row.peer),
                peer_value,
                ratio
            )?;
        }
        for warning in &self.warnings {
            writeln!(f, "\nWARNING: {warning}")?;
        }
        Ok(())
    }
}

/// Two decimals, or two significant digits below 0.1 so that a ratio far below 1 still
/// shows its size.
fn ratio_cell(ratio: f64) -> String {
    match ratio {
        r if r >= 10.0 => format!("{r:.0}x"),
        r if r >= 0.1 => format!("{r:.2}x"),
        r => {
            // Leading zeros after the point, plus two digits; at most six decimals.
            let decimals = (-r.log10()).ceil().clamp(1.0, 5.0) as usize + 1;
            format!("{r:.decimals$}x")
        }
    }
}

fn cell(outcome: &Outcome) -> String {
    match outcome {
        Ok(measure) => escape(&measure.to_string()),
        Err(reason) => escape(&format!("n/a ({reason})")),
    }
}

fn escape(text: &str) -> String {
    text.replace('|', "\\|")
}

/// The median; the mean of the two middle values for an even count.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    }
}

/// What a whole process cost: wall time, CPU time (user and system) and peak resident
/// memory, as the kernel accounts them for that one child (wait4), and its stdout.
pub struct Usage {
    pub wall: Duration,
    pub cpu: Duration,
    pub peak_rss_kib: u64,
    pub stdout: String,
}

/// The whole-process figures of one tool's runs, what the tool reported by its own clock
/// (start-up left out), and how many sessions the server counted, when they are known.
#[derive(Default)]
pub(crate) struct Runs {
    pub(crate) usages: Vec<Usage>,
    pub(crate) reported_rates: Vec<f64>,
    pub(crate) sessions: Vec<f64>,
}

/// Which figure of a run a row shows.
#[derive(Clone, Copy)]
enum Figure {
    Wall,
    CpuPerMessage,
    PeakRss,
}

impl Runs {
    fn median(&self, figure: Figure, messages: u32) -> Measure {
        let of =
            |value: fn(&Usage) -> f64| median(&self.usages.iter().map(value).collect::<Vec<_>>());
        match figure {
            Figure::Wall => {
                let millis = of(|u| u.wall.as_secs_f64() * 1e3);
                let mut note = format!("{:.0} msg/s", f64::from(messages) / millis * 1e3);
                if !self.reported_rates.is_empty() {
                    note += &format!(
                        ", {:.0} msg/s by its own clock",
                        median(&self.reported_rates)
                    );
                }
                if !self.sessions.is_empty() {
                    let sessions = median(&self.sessions);
                    let plural = if sessions == 1.0 { "" } else { "s" };
                    note += &format!(", {sessions:.0} TLS session{plural}");
                }
                Measure::new(millis, Unit::Millis).with_note(note)
            }
            Figure::CpuPerMessage => Measure::new(
                of(|u| u.cpu.as_secs_f64()) / f64::from(messages) * 1e6,
                Unit::Micros,
            ),
            Figure::PeakRss => Measure::new(of(|u| u.peak_rss_kib as f64) / 1024.0, Unit::MiB),
        }
    }
}

/// Three rows for one workload that sent `messages`: wall time (and the rate), CPU time
/// per message, and peak resident memory, each the median of the runs.
pub(crate) fn push_figures(
    table: &mut Table,
    workload: &str,
    ours: &Result<Runs, String>,
    peer: &str,
    theirs: &Result<Runs, String>,
    messages: u32,
) {
    let figures = [
        ("wall time", Figure::Wall),
        ("CPU time per message", Figure::CpuPerMessage),
        ("peak RSS", Figure::PeakRss),
    ];
    let median = |runs: &Result<Runs, String>, figure| {
        runs.as_ref()
            .map_err(Clone::clone)
            .map(|runs| runs.median(figure, messages))
    };
    for (what, figure) in figures {
        table.rows.push(Row {
            workload: format!("{workload}: {what}"),
            sendbox: median(ours, figure),
            peer: peer.to_owned(),
            peer_value: Some(median(theirs, figure)),
        });
    }
}

/// Runs a command to completion and returns its wall time and stdout. A failure to
/// start or a non-zero exit is an error that names the program and quotes its stderr.
pub fn run_timed(command: &mut Command) -> Result<(Duration, String), String> {
    let program = Path::new(command.get_program())
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let start = Instant::now();
    let output = command
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let elapsed = start.elapsed();
    if !output.status.success() {
        return Err(format!(
            "{program} {}: {}",
            output.status,
            gist(&String::from_utf8_lossy(&output.stderr))
        ));
    }
    Ok((
        elapsed,
        String::from_utf8_lossy(&output.stdout).into_owned(),
    ))
}

/// GNU time: the one way to read a child's own peak memory (see [`run_measured`]).
const GNU_TIME: &str = "/usr/bin/time";

/// [`run_timed`] with the child's CPU time and peak memory.
///
/// The command runs under GNU time. A child spawned straight from this process would
/// report this process's peak memory if it is the larger: Linux keeps the high-water mark
/// of the memory a process had before its exec, and a spawned child's is ours. GNU time
/// is small, and reports the peak of the child it spawns. The CPU time (user and system)
/// comes from `wait4`, which counts the child and GNU time together (GNU time's own is
/// about a millisecond); the wall time is measured here.
pub fn run_measured(command: &mut Command) -> Result<Usage, String> {
    if !Path::new(GNU_TIME).is_file() {
        return Err(format!("{GNU_TIME} missing: apt-get install time"));
    }
    let program = Path::new(command.get_program())
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let report = tempfile::NamedTempFile::new().map_err(|e| format!("a temporary file: {e}"))?;
    let mut timed = Command::new(GNU_TIME);
    timed
        .args(["-f", "%M", "-o"])
        .arg(report.path())
        .arg(command.get_program())
        .args(command.get_args())
        .envs(
            command
                .get_envs()
                .filter_map(|(key, value)| Some((key, value?))),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(dir) = command.get_current_dir() {
        timed.current_dir(dir);
    }
    let start = Instant::now();
    let mut child = timed
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let read_all = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut text);
            }
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let stdout = read_all(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = read_all(child.stderr.take().map(|p| Box::new(p) as _));
    let (status, usage) = wait4(child.id()).map_err(|e| format!("waiting for {program}: {e}"))?;
    let wall = start.elapsed();
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    if !status.success() {
        return Err(format!("{program} {status}: {}", gist(&stderr)));
    }
    let peak = std::fs::read_to_string(report.path()).unwrap_or_default();
    let peak_rss_kib = peak
        .trim()
        .parse()
        .map_err(|_| format!("GNU time said {:?}", peak.trim()))?;
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.unsigned_abs())
            + Duration::from_micros(t.tv_usec.unsigned_abs())
    };
    Ok(Usage {
        wall,
        cpu: time(usage.ru_utime) + time(usage.ru_stime),
        peak_rss_kib,
        stdout,
    })
}

/// Reaps the child `pid` and returns its exit status and resource usage. std's `Child`
/// cannot give the usage, so the child is reaped here instead of by `Child::wait`.
fn wait4(pid: u32) -> std::io::Result<(ExitStatus, libc::rusage)> {
    let pid = libc::pid_t::try_from(pid).map_err(std::io::Error::other)?;
    let mut status = 0;
    // SAFETY: rusage is plain data, fully written by a successful wait4.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: valid pointers to a local int and rusage; pid is our own child.
        let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if reaped == pid {
            return Ok((ExitStatus::from_raw(status), usage));
        }
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// The first and last lines of an error output, which between them usually say what
/// failed and why (a usage error and its hint, a traceback's start and its exception).
fn gist(stderr: &str) -> String {
    let mut lines = stderr.lines().map(str::trim).filter(|l| !l.is_empty());
    let text = match (lines.next(), lines.next_back()) {
        (None, _) => "no error output".to_owned(),
        (Some(only), None) => only.to_owned(),
        (Some(first), Some(last)) => format!("{first} … {last}"),
    };
    truncate(&text, 200).to_owned()
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    #[test]
    fn gist_keeps_the_first_and_last_lines() {
        assert_eq!(gist(""), "no error output");
        assert_eq!(gist("sendbox: AUTH failed\n"), "sendbox: AUTH failed");
        assert_eq!(
            gist("error: unrecognized subcommand 'batch'\n\nUsage: x\n\nFor more, try '--help'.\n"),
            "error: unrecognized subcommand 'batch' … For more, try '--help'."
        );
    }

    #[test]
    fn small_ratios_keep_their_digits() {
        assert_eq!(ratio_cell(12.4), "12x");
        assert_eq!(ratio_cell(1.544), "1.54x");
        assert_eq!(ratio_cell(0.0944), "0.094x");
        assert_eq!(ratio_cell(0.00224), "0.0022x");
        assert_eq!(ratio_cell(0.0), "0.000000x");
    }

    #[test]
    fn ratio_needs_both_figures_in_one_unit() {
        let row = |peer: Option<Outcome>| Row {
            workload: "w".into(),
            sendbox: Ok(Measure::new(30.0, Unit::Millis)),
            peer: "p".into(),
            peer_value: peer,
        };
        assert_eq!(
            row(Some(Ok(Measure::new(10.0, Unit::Millis)))).ratio(),
            Some(3.0)
        );
        assert_eq!(row(Some(Ok(Measure::new(10.0, Unit::MiB)))).ratio(), None);
        assert_eq!(row(Some(Err("missing".into()))).ratio(), None);
        assert_eq!(row(None).ratio(), None);
    }
}
