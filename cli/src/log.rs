//! The delivery log: a line for every delivery attempt from the outbox, to a file (as
//! msmtp's `logfile`), to syslog's mail facility (as msmtp's `syslog`; journald reads it
//! too), or both. A line names the queue id, the account, the envelope, the outcome and
//! the server's reply or the error as the user sees it: never a secret, never the message.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use syslog::{Facility, Formatter3164};

use crate::escape::{escaped, quoted};
use crate::outbox;

/// `[log]` in the config file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogSettings {
    /// Append a line per attempt to this file (created with mode 0600, and its missing
    /// folders with 0700).
    pub file: Option<PathBuf>,
    /// Send a line per attempt to syslog at this socket (`/dev/log` when `syslog = true`).
    pub syslog: Option<PathBuf>,
}

/// How an attempt ended, for the log.
pub enum Logged<'a> {
    Delivered { reply: &'a str },
    Queued { reason: &'a str },
    Failed { reason: &'a str },
}

/// Logs one attempt where the settings say. A log that cannot be written is reported on
/// stderr and does not stop the delivery.
pub fn attempt(settings: &LogSettings, id: &str, envelope: &outbox::Envelope, outcome: Logged) {
    let (word, field, detail) = match outcome {
        Logged::Delivered { reply } => ("delivered", "reply", reply),
        Logged::Queued { reason } => ("deferred", "error", reason),
        Logged::Failed { reason } => ("failed", "error", reason),
    };
    let line = format!(
        "id={id} {} outcome={word} {field}={}",
        envelope_fields(envelope),
        quoted(detail)
    );
    write(settings, &line, word == "failed");
}

/// Logs a queued or failed message whose file or state is damaged (`what`), with its
/// envelope when that much is readable.
pub fn damaged(settings: &LogSettings, id: &str, envelope: Option<&outbox::Envelope>, what: &str) {
    let envelope = envelope.map(|e| format!("{} ", envelope_fields(e)));
    let line = format!(
        "id={id} {}outcome=damaged error={}",
        envelope.unwrap_or_default(),
        quoted(what)
    );
    write(settings, &line, true);
}

fn envelope_fields(envelope: &outbox::Envelope) -> String {
    format!(
        "account={} from=<{}> to={}",
        escaped(envelope.account.as_deref().unwrap_or("-")),
        escaped(envelope.sender.as_deref().unwrap_or("")),
        escaped(envelope.recipient_list(","))
    )
}

/// Writes one line to the file and to syslog, as the settings say; `error` makes it an
/// error for syslog rather than information.
fn write(settings: &LogSettings, line: &str, error: bool) {
    if let Some(path) = &settings.file {
        let written = open(path)
            .and_then(|mut file| file.write_all(format!("{} {line}\n", now()).as_bytes()));
        if let Err(e) = written {
            eprintln!("sendbox: cannot write the log {}: {e}", path.display());
        }
    }
    if let Some(socket) = &settings.syslog {
        let formatter = Formatter3164 {
            facility: Facility::LOG_MAIL,
            hostname: None,
            process: "sendbox".into(),
            pid: std::process::id(),
        };
        let logged = syslog::unix_custom(formatter, socket).and_then(|mut logger| {
            if error {
                logger.err(line)
            } else {
                logger.info(line)
            }
        });
        if let Err(e) = logged {
            eprintln!("sendbox: cannot log to syslog at {}: {e}", socket.display());
        }
    }
}

/// The log file for appending, made with mode 0600, and its missing folders with 0700 as
/// the outbox's are: a log under `~/.local/state` works on a fresh home.
fn open(path: &Path) -> io::Result<File> {
    if let Some(folder) = path
        .parent()
        .filter(|folder| !folder.as_os_str().is_empty())
    {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(folder)?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

/// The time of a log line: RFC 3339, UTC, to the second (as syslog's).
fn now() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.replace_nanosecond(0)
        .unwrap_or(now)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn a_log_in_folders_that_do_not_exist_yet_is_written_and_the_folders_are_private() {
        let home = tempfile::tempdir().unwrap();
        let path = home.path().join(".local/state/sendbox/log");
        let settings = LogSettings {
            file: Some(path.clone()),
            syslog: None,
        };
        damaged(&settings, "1.2.3.4", None, "empty file");
        let written = std::fs::read_to_string(&path).unwrap();
        assert!(
            written.ends_with(" id=1.2.3.4 outcome=damaged error=\"empty file\"\n"),
            "{written}"
        );
        for folder in [".local", ".local/state", ".local/state/sendbox"] {
            let mode = std::fs::metadata(home.path().join(folder))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o700, "{folder}");
        }
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn log_times_are_to_the_second() {
        let time = now();
        // 2026-12-05T20:18:15Z
        assert_eq!(time.len(), 20, "{time}");
        assert!(time.ends_with('Z') && !time.contains('.'), "{time}");
    }
}
