//! `queue list`, `show` and `remove`: the outbox for people, every line escaped.

use std::io;

use super::{Error, io_error, open};
use crate::config::Config;
use crate::error;
use crate::escape::escaped;
use crate::exit;
use crate::outbox::{self, Attempts, Damage, Peeked};
use crate::output::Output;

/// `queue list`: the queued messages, then those given up on. A damaged message is a
/// row that says what is wrong; like mailq, `list` exits 0 whatever the queue holds, and
/// `run` is what fails on damage.
pub fn list(config: &Config) -> Result<u8, error::Error> {
    let mut out = Output::new();
    rows(config, &mut out)?;
    out.finish()?;
    Ok(exit::OK)
}

/// `list`'s rows.
fn rows(config: &Config, out: &mut Output) -> Result<(), error::Error> {
    // Listing makes nothing: an outbox not made yet (no message was ever queued) is empty.
    let missing = std::fs::symlink_metadata(&config.queue.dir)
        .is_err_and(|e| e.kind() == io::ErrorKind::NotFound);
    if missing {
        out.line(format_args!(
            "the outbox {} is empty",
            config.queue.dir.display()
        ));
        return Ok(());
    }
    let outbox = open(&config.queue)?;
    let io = io_error(&outbox);
    let now = outbox::now();
    let queued = outbox.ids().map_err(io)?;
    let failed = outbox.failed_ids().map_err(io)?;
    let strays = outbox.strays().map_err(io)?;
    if queued.is_empty() && failed.is_empty() && strays.is_empty() {
        out.line(format_args!(
            "the outbox {} is empty",
            outbox.root().display()
        ));
        return Ok(());
    }
    for stray in &strays {
        out.line(format_args!(
            "{}  STRAY  not a message (a crash's leftover, or put there by hand): remove it \
             by hand",
            escaped(stray)
        ));
    }
    for id in &queued {
        let Some(Peeked {
            envelope,
            attempts,
            size,
        }) = listed(out, id, outbox.peek(id))
        else {
            continue;
        };
        let envelope = match envelope {
            Ok(envelope) => envelope,
            Err(damage) => {
                damaged_row(out, id, "", &damage);
                continue;
            }
        };
        let next = match &attempts {
            Err(_) => "tries unknown, due now".to_owned(),
            Ok(attempts) if attempts.count == 0 => "not tried yet".to_owned(),
            Ok(attempts) if attempts.next_at <= now => {
                format!(
                    "{}, due now",
                    counted(attempts.count.into(), "try", "tries")
                )
            }
            Ok(attempts) => format!(
                "{}, next in {}",
                counted(attempts.count.into(), "try", "tries"),
                age(attempts.next_at - now)
            ),
        };
        out.line(format_args!(
            "{id}  queued {} ago  {next}  to {}  {}",
            age(now.saturating_sub(envelope.accepted_at)),
            escaped(envelope.recipient_list(", ")),
            whence(&envelope, size)
        ));
        last_error(
            out,
            &attempts,
            "last: ",
            "; counted as never tried, so due now",
        );
    }
    for id in &failed {
        let Some(Peeked {
            envelope,
            attempts,
            size,
        }) = listed(out, id, outbox.failure(id))
        else {
            continue;
        };
        match envelope {
            Ok(envelope) => out.line(format_args!(
                "{id}  FAILED  to {}  {}",
                escaped(envelope.recipient_list(", ")),
                whence(&envelope, size)
            )),
            Err(damage) => damaged_row(out, id, "FAILED  ", &damage),
        }
        last_error(out, &attempts, "", "");
    }
    Ok(())
}

/// The rest of a `list` row, as mailq has it: the sender, the size, and the account when
/// one was named. (Not the subject: that would mean reading every message.)
fn whence(envelope: &outbox::Envelope, size: u64) -> String {
    let account = match &envelope.account {
        Some(name) => format!("  account {}", escaped(name)),
        None => String::new(),
    };
    format!(
        "from <{}>  {}{account}",
        escaped(envelope.sender.as_deref().unwrap_or("")),
        counted(size, "byte", "bytes")
    )
}

/// What `list` shows of a message: `None` for one gone meanwhile (delivered, removed);
/// one that cannot be read is a row saying why.
fn listed(out: &mut Output, id: &str, peeked: io::Result<Peeked>) -> Option<Peeked> {
    match peeked {
        Ok(peeked) => Some(peeked),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => {
            out.line(format_args!("{id}  UNREADABLE  {}", escaped(e.to_string())));
            None
        }
    }
}

fn damaged_row(out: &mut Output, id: &str, status: &str, damage: &Damage) {
    out.line(format_args!(
        "{id}  {status}DAMAGED  {}",
        escaped(damage.to_string())
    ));
    out.line(format_args!(
        "    not sent: `sendbox queue show {id}` shows what is left, \
         `sendbox queue remove {id}` removes it"
    ));
}

/// The line under a row: the last error (after `label`), or what is wrong with the state
/// (then `consequence`).
fn last_error(
    out: &mut Output,
    attempts: &Result<Attempts, Damage>,
    label: &str,
    consequence: &str,
) {
    match attempts {
        Ok(Attempts {
            last_error: Some(error),
            ..
        }) => out.line(format_args!("    {label}{}", escaped(error))),
        Ok(_) => {}
        Err(damage) => out.line(format_args!(
            "    DAMAGED  {}{consequence}",
            escaped(damage.to_string())
        )),
    }
}

/// `queue show ID`: what is readable of a message, each line escaped: what is wrong with
/// it, its attempts, the envelope line and the message.
pub fn show(config: &Config, id: &str) -> Result<u8, error::Error> {
    let outbox = open(&config.queue)?;
    if !outbox::is_id(id) {
        return Err(Error::BadId(id.to_owned()).into());
    }
    let stored = outbox.stored(id).map_err(|error| match error.kind() {
        io::ErrorKind::NotFound => Error::NoSuchMessage(id.to_owned()),
        _ => Error::Unreadable {
            id: id.to_owned(),
            error,
        },
    })?;
    let entry = outbox::entry::decode(&stored.bytes);
    let mut out = Output::new();
    match &entry {
        Ok(entry) => out.line(format_args!("{}", described(&entry.envelope))),
        Err(damage) => out.line(format_args!("# DAMAGED  {}", escaped(damage.to_string()))),
    }
    match &stored.attempts {
        Ok(attempts) if attempts.count > 0 => out.line(format_args!(
            "# {}; last: {}",
            counted(attempts.count.into(), "attempt", "attempts"),
            escaped(attempts.last_error.as_deref().unwrap_or("-"))
        )),
        Ok(_) => {}
        Err(damage) => out.line(format_args!("# DAMAGED  {}", escaped(damage.to_string()))),
    }
    // The message; the whole file when it is damaged, to show what is left.
    let shown = match &entry {
        Ok(entry) => entry.message,
        Err(_) => &stored.bytes[..],
    };
    // Line by line, so that the message reads as one; CRLF is its usual line ending.
    for line in shown.split_inclusive(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        out.line(format_args!(
            "{}",
            escaped(line.strip_suffix(b"\r").unwrap_or(line))
        ));
    }
    out.finish()?;
    Ok(exit::OK)
}

/// A queued envelope, for people: one `# field: value` line each, each value escaped.
fn described(envelope: &outbox::Envelope) -> String {
    let now = outbox::now();
    let mut fields = vec![
        (
            "account",
            envelope
                .account
                .as_deref()
                .unwrap_or("(the default)")
                .to_owned(),
        ),
        (
            "from",
            format!("<{}>", envelope.sender.as_deref().unwrap_or("")),
        ),
        ("to", envelope.recipient_list(", ")),
        (
            "queued",
            format!("{} ago", age(now.saturating_sub(envelope.accepted_at))),
        ),
    ];
    for (name, value) in [
        ("DSN notify", &envelope.dsn_notify),
        ("DSN ret", &envelope.dsn_ret),
        ("DSN envid", &envelope.dsn_envid),
    ] {
        if let Some(value) = value {
            fields.push((name, value.clone()));
        }
    }
    if envelope.require_tls {
        fields.push(("REQUIRETLS", "yes".to_owned()));
    }
    if envelope.keep_raw_header {
        fields.push(("header", "sent as it is".to_owned()));
    }
    fields
        .iter()
        .map(|(name, value)| format!("# {name}: {}", escaped(value)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `queue remove ID`.
pub fn remove(config: &Config, id: &str) -> Result<u8, error::Error> {
    let outbox = open(&config.queue)?;
    if !outbox::is_id(id) {
        return Err(Error::BadId(id.to_owned()).into());
    }
    match outbox.remove(id) {
        Ok(true) => Ok(exit::OK),
        Ok(false) => Err(Error::NoSuchMessage(id.to_owned()).into()),
        Err(error) => Err(Error::CannotRemove {
            id: id.to_owned(),
            error,
        }
        .into()),
    }
}

/// `queue remove --failed`: every message given up on.
pub fn remove_failed(config: &Config) -> Result<u8, error::Error> {
    let outbox = open(&config.queue)?;
    let io = io_error(&outbox);
    let failed = outbox.failed_ids().map_err(io)?;
    for id in &failed {
        outbox.remove(id).map_err(io)?;
    }
    let mut out = Output::new();
    out.line(format_args!(
        "removed {} from {}/failed",
        counted(failed.len() as u64, "message", "messages"),
        outbox.root().display()
    ));
    out.finish()?;
    Ok(exit::OK)
}

/// A duration for people: `45s`, `12m`, `3h`, `2d`.
pub fn age(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86400 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86400),
    }
}

/// `1 try`, `2 tries`: a count and its noun.
pub fn counted(count: u64, one: &str, many: &str) -> String {
    match count {
        1 => format!("1 {one}"),
        n => format!("{n} {many}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages() {
        assert_eq!(
            [age(5), age(600), age(7200), age(5 * 86400)],
            ["5s", "10m", "2h", "5d"]
        );
    }
}
