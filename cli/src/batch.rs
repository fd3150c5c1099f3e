//! `sendbox batch`: many messages over K concurrent sandboxed sessions, with a progress
//! bar and a one-line summary that scripts and the benchmark read:
//! `sent N, refused R, failed F in S s (X messages/s)`.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

use indicatif::{ProgressBar, ProgressStyle};
use sendbox::batch::{self, Job, Outcome};
use sendbox::{Envelope, SandboxOptions, SendOptions};

use crate::args::BatchArgs;
use crate::config::Config;
use crate::connection::{self, Connection};
use crate::dkim::Dkim;
use crate::error::Error;
use crate::escape::escaped;
use crate::{compose, exit};

pub async fn run(args: BatchArgs) -> Result<u8, Error> {
    let config = Config::load(args.connection.config.as_deref())?;
    let account = connection::account(&config, &args.connection)?;
    // --from, else the account's; with neither, each message's Sender or From.
    let sender = match &args.from {
        Some(text) => Some(
            compose::mailbox(text)
                .map_err(|why| Error::Data(format!("--from: {why}")))?
                .address,
        ),
        None => account.and_then(|a| a.address()).map(str::to_owned),
    };
    let envelope = Envelope {
        sender,
        recipients: args.to.clone(),
        recipients_from_headers: false,
        qualify_domain: None,
    };
    let mut messages = messages(&args)?.peekable();
    let (count, first) = (messages.len(), messages.peek().cloned());
    // Room for every session at once, preallocated (plus one spare for a reconnect).
    let options = SandboxOptions {
        pooled_instances: Some(args.concurrency + 1),
        ..SandboxOptions::cached()
    };
    let mailer = Connection::resolve(&args.connection, account)?
        .mailer(&options)
        .await?;
    let mailer = Arc::new(mailer);

    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(count as u64).with_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} {per_sec} eta {eta}")
                .expect("a valid template"),
        )
    };
    let ticker = bar.clone();
    // The exit code each message would have had on its own.
    let codes = Arc::new(Mutex::new(BTreeSet::new()));
    let seen = codes.clone();
    let options = SendOptions {
        dkim: Dkim::resolve(&args.dkim, account)
            .map(|dkim| dkim.signing())
            .transpose()?,
        ..SendOptions::default()
    };
    // The options (a DKIM key that does not parse, say) are checked once, before any
    // connection: otherwise each message would fail on its own, after connecting.
    if let Some(message) = first {
        sendbox::prepare(mailer.sandbox(), &envelope, &message[..], &options).await?;
    }
    // Made as sessions take them: each job's copy of the envelope lives only while it is
    // sent, so a batch's memory does not grow with its length.
    let jobs = messages.map(move |message| Job {
        envelope: envelope.clone(),
        message,
    });
    let summary = batch::send_all(
        mailer,
        jobs,
        args.concurrency as usize,
        options,
        move |outcome| {
            let code = match outcome {
                Outcome::Sent => exit::OK,
                // The library does not say whether the refusals were 4xx or 5xx.
                Outcome::PartlyRefused => exit::NOUSER,
                Outcome::Failed(error) => {
                    ticker.suspend(|| eprintln!("sendbox: {}", escaped(error.to_string())));
                    exit::for_send(error)
                }
            };
            seen.lock().expect("codes lock").insert(code);
            ticker.inc(1);
        },
    )
    .await;
    bar.finish_and_clear();

    println!(
        "sent {}, refused {}, failed {} in {:.3} s ({:.1} messages/s)",
        summary.sent,
        summary.partly_refused,
        summary.failed,
        summary.elapsed.as_secs_f64(),
        summary.rate()
    );
    let codes = std::mem::take(&mut *codes.lock().expect("codes lock"));
    Ok(exit::combine(codes))
}

/// The messages of a batch, handed out one at a time as they are sent.
type Messages = Box<dyn ExactSizeIterator<Item = Arc<[u8]>> + Send>;

/// The message bytes: N copies of --raw (one buffer, and nothing per copy), each message
/// of --mbox, or each file of --dir.
fn messages(args: &BatchArgs) -> Result<Messages, Error> {
    let read = |option: &str, path: &Path| {
        std::fs::read(path).map_err(|e| {
            Error::NoInput(format!("{option} {}: cannot read it: {e}", path.display()))
        })
    };
    if let Some(path) = &args.raw {
        let message: Arc<[u8]> = read("--raw", path)?.into();
        return Ok(Box::new(std::iter::repeat_n(message, args.count as usize)));
    }
    if let Some(path) = &args.mbox {
        let messages = split_mbox(&read("--mbox", path)?);
        if messages.is_empty() {
            return Err(Error::Data(format!(
                "--mbox {}: no message in it (an mbox file starts with a `From ` line)",
                path.display()
            )));
        }
        let messages: Vec<Arc<[u8]>> = messages.into_iter().map(Into::into).collect();
        return Ok(Box::new(messages.into_iter()));
    }
    let dir = args
        .dir
        .as_deref()
        .expect("clap requires --raw, --mbox or --dir");
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| Error::NoInput(format!("--dir {}: cannot read it: {e}", dir.display())))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.is_file())
        .collect();
    paths.sort();
    let messages = paths
        .iter()
        .map(|path| read("--dir", path).map(Into::into))
        .collect::<Result<Vec<Arc<[u8]>>, Error>>()?;
    Ok(Box::new(messages.into_iter()))
}

/// Splits an mbox file (RFC 4155). A message starts after a `From ` line at the start of
/// the file or after an empty line; that empty line belongs to the separator. Lines
/// quoted as `>From ` (or `>>From `...) lose one `>` (the mboxrd convention).
fn split_mbox(mbox: &[u8]) -> Vec<Vec<u8>> {
    let mut messages: Vec<Vec<u8>> = Vec::new();
    let mut after_blank = true;
    for line in mbox.split_inclusive(|&b| b == b'\n') {
        if after_blank && line.starts_with(b"From ") {
            if let Some(previous) = messages.last_mut() {
                drop_separator_line(previous);
            }
            messages.push(Vec::new());
            after_blank = false;
            continue;
        }
        after_blank = line == b"\n" || line == b"\r\n";
        let Some(message) = messages.last_mut() else {
            continue;
        };
        let quotes = line.iter().take_while(|&&b| b == b'>').count();
        let unquoted = if quotes > 0 && line[quotes..].starts_with(b"From ") {
            &line[1..]
        } else {
            line
        };
        message.extend_from_slice(unquoted);
    }
    if let Some(last) = messages.last_mut() {
        drop_separator_line(last);
    }
    messages
}

/// Removes the empty line that ends a message in an mbox, if there is one.
fn drop_separator_line(message: &mut Vec<u8>) {
    for separator in [&b"\r\n\r\n"[..], b"\n\n"] {
        if message.ends_with(separator) {
            message.truncate(message.len() - separator.len() / 2);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mbox_messages_are_split_and_unquoted() {
        let mbox = b"From alice@example.org Sat Jan  3 01:05:34 1996\n\
Subject: one\n\n>From the start\n>>From deeper\nFrom inside a line is text\n\n\
From bob@example.org Sat Jan  3 01:06:00 1996\nSubject: two\n\nbody\n";
        let messages = split_mbox(mbox);
        let texts: Vec<String> = messages
            .iter()
            .map(|m| String::from_utf8_lossy(m).into_owned())
            .collect();
        assert_eq!(
            texts,
            [
                "Subject: one\n\nFrom the start\n>From deeper\nFrom inside a line is text\n",
                "Subject: two\n\nbody\n",
            ]
        );
        assert!(split_mbox(b"").is_empty());
    }
}
