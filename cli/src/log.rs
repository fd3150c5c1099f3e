//! The delivery log: a line for every delivery attempt from the outbox, to a file (as
//! msmtp's `logfile`), to syslog's mail facility (as msmtp's `syslog`; journald reads it
//! too), or both. A line names the queue id, the account, the envelope, the outcome and
//! the server's reply or the error as the user sees it: never a secret, never the message.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::PathBuf;

use syslog::{Facility, Formatter3164};

use crate::outbox;

/// `[log]` in the config file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogSettings {
    /// Append a line per attempt to this file (created with mode 0600).
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
    if settings.file.is_none() && settings.syslog.is_none() {
        return;
    }
    let (word, detail, failed) = match outcome {
        Logged::Delivered { reply } => ("delivered", reply, false),
        Logged::Queued { reason } => ("deferred", reason, false),
        Logged::Failed { reason } => ("failed", reason, true),
    };
    let line = format!(
        "id={id} account={} from=<{}> to={} outcome={word} {}={}",
        envelope.account.as_deref().unwrap_or("-"),
        envelope.sender.as_deref().unwrap_or(""),
        envelope.recipient_list(","),
        if word == "delivered" {
            "reply"
        } else {
            "error"
        },
        quoted(detail)
    );
    if let Some(path) = &settings.file {
        let time = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let written = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .and_then(|mut file| file.write_all(format!("{time} {line}\n").as_bytes()));
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
            if failed {
                logger.err(&line)
            } else {
                logger.info(&line)
            }
        });
        if let Err(e) = logged {
            eprintln!("sendbox: cannot log to syslog at {}: {e}", socket.display());
        }
    }
}

/// `text` in double quotes, with quotes, backslashes and line breaks escaped, so that
/// one attempt is always one line.
fn quoted(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push('?'),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_stays_one_line() {
        assert_eq!(
            quoted("550 5.1.1 \"no\"\nsecond"),
            r#""550 5.1.1 \"no\"\nsecond""#
        );
        assert_eq!(quoted("a\u{1b}b\\"), r#""a?b\\""#);
    }
}
