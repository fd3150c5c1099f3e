//! The results table: rows of medians, their ratio sendbox / peer, and the warnings.

use std::fmt::{self, Display};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What a figure measures; it decides how the figure is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
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
            let ratio = match row.ratio() {
                Some(r) if r >= 10.0 => format!("{r:.0}x"),
                Some(r) => format!("{r:.2}x"),
                None => "—".to_owned(),
            };
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
