//! `queue run` and `flush` over what is queued, one session per account, and the attempt
//! sendmail and `send --queue` make at once after the outbox has accepted a message.

use std::collections::BTreeMap;
use std::io;

use sendbox::{Message, SandboxOptions, Session};

use super::attempt::{self, Attempt, Failure, Outcome};
use super::listing::{age, counted};
use super::{Error, io_error};
use crate::config::{Account, Config};
use crate::connection::Connection;
use crate::escape::escaped;
use crate::exit;
use crate::log;
use crate::outbox::{self, Attempts, Damage, Outbox};

/// What a run did, for its summary and its exit code.
#[derive(Default)]
struct Counts {
    delivered: usize,
    queued: usize,
    failed: usize,
    /// Left where they are, not sent: their file is damaged or cannot be read.
    damaged: usize,
    /// The worst the run found wrong with the outbox's files.
    trouble: Trouble,
}

/// What a run found wrong with the outbox's files, least first: the exit code says it
/// (`exit::for_run`) after the others are delivered.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Trouble {
    #[default]
    None,
    /// A message's file cannot be read.
    Unreadable,
    /// A message's file or state is not what the outbox writes.
    Damaged,
}

/// What is wrong with a queued message or its state.
enum Problem<'a> {
    /// Its file is not what the outbox writes: it is not sent.
    Damaged(&'a dyn std::fmt::Display),
    /// Its file cannot be read (permissions, a directory in its place, I/O): not sent.
    Unreadable(&'a io::Error),
    /// Its state is damaged: it counts as never tried, so it is sent now.
    DamagedState(&'a Damage),
}

impl Counts {
    /// Names a problem on stderr and in the log, and counts it for the exit code: a
    /// damaged entry is never skipped in silence.
    fn problem(
        &mut self,
        config: &Config,
        id: &str,
        envelope: Option<&outbox::Envelope>,
        problem: Problem,
    ) {
        let (what, trouble) = match problem {
            Problem::Damaged(damage) => {
                self.damaged += 1;
                eprintln!(
                    "sendbox: {id} not sent, damaged: {}; `sendbox queue show {id}` shows \
                     what is left, `sendbox queue remove {id}` removes it",
                    escaped(damage.to_string())
                );
                (damage.to_string(), Trouble::Damaged)
            }
            Problem::Unreadable(e) => {
                self.damaged += 1;
                let what = format!("cannot be read: {e}");
                eprintln!("sendbox: {id} not sent, {}", escaped(&what));
                (what, Trouble::Unreadable)
            }
            Problem::DamagedState(damage) => {
                let what = format!("{damage}; counted as never tried, so due now");
                eprintln!("sendbox: {id}: {}", escaped(&what));
                (what, Trouble::Damaged)
            }
        };
        log::damaged(&config.log, id, envelope, &what);
        self.trouble = self.trouble.max(trouble);
    }

    /// Names what locking or reading a message found wrong: its damage, or the error.
    fn unusable(&mut self, config: &Config, id: &str, error: &io::Error) {
        let problem = match error.get_ref() {
            Some(inner) if inner.is::<Damage>() => Problem::Damaged(error),
            _ => Problem::Unreadable(error),
        };
        self.problem(config, id, None, problem);
    }

    fn add(&mut self, other: Counts) {
        self.delivered += other.delivered;
        self.queued += other.queued;
        self.failed += other.failed;
        self.damaged += other.damaged;
        self.trouble = self.trouble.max(other.trouble);
    }
}

/// `queue run` (only what is due) and `queue flush` (everything): one session per account.
pub async fn run(config: &Config, everything: bool) -> Result<u8, crate::error::Error> {
    let outbox = super::open(&config.queue)?;
    let io = io_error(&outbox);
    let now = outbox::now();
    let mut counts = Counts::default();
    let mut by_account: BTreeMap<Option<String>, Vec<String>> = BTreeMap::new();
    // When each message left for later is due.
    let mut not_due = Vec::new();
    for id in outbox.ids().map_err(io)? {
        let peeked = match outbox.peek(&id) {
            Ok(peeked) => peeked,
            // Delivered meanwhile by another runner.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                counts.problem(config, &id, None, Problem::Unreadable(&e));
                continue;
            }
        };
        let envelope = match peeked.envelope {
            Ok(envelope) => envelope,
            Err(damage) => {
                counts.problem(config, &id, None, Problem::Damaged(&damage));
                continue;
            }
        };
        let attempts = peeked.attempts.unwrap_or_else(|damage| {
            counts.problem(config, &id, Some(&envelope), Problem::DamagedState(&damage));
            Attempts::default()
        });
        if everything || attempts.next_at <= now {
            by_account.entry(envelope.account).or_default().push(id);
        } else {
            not_due.push(attempts.next_at);
        }
    }
    let strays = outbox.strays().map_err(io)?;
    if !strays.is_empty() {
        eprintln!(
            "sendbox: the outbox holds {} that {} not messages: `sendbox queue list` names them",
            counted(strays.len() as u64, "file", "files"),
            if strays.len() == 1 { "is" } else { "are" }
        );
    }
    // With one account, the summary below says it all.
    let several_accounts = by_account.len() > 1;
    for (name, ids) in by_account {
        let label = name.as_deref().unwrap_or("the default account").to_owned();
        let account = match config.account(name.as_deref()) {
            Ok(Some(account)) => account,
            Ok(None) => {
                eprintln!(
                    "sendbox: {} left queued: no account to send them with",
                    counted(ids.len() as u64, "message", "messages")
                );
                counts.queued += ids.len();
                continue;
            }
            Err(problem) => {
                eprintln!(
                    "sendbox: {} left queued: {}",
                    counted(ids.len() as u64, "message", "messages"),
                    escaped(problem.to_string())
                );
                counts.queued += ids.len();
                continue;
            }
        };
        let done = run_account(&outbox, account, &ids, config).await?;
        if several_accounts && done.failed + done.queued > 0 {
            eprintln!(
                "sendbox: account {}: {} delivered, {} still queued, {} failed",
                escaped(&label),
                done.delivered,
                done.queued,
                done.failed
            );
        }
        counts.add(done);
    }
    let Counts {
        delivered,
        queued,
        failed,
        damaged,
        trouble,
    } = counts;
    if delivered + queued + failed + damaged > 0 {
        let damaged = match damaged {
            0 => String::new(),
            n => format!(", {n} damaged and left as they are"),
        };
        println!("{delivered} delivered, {queued} still queued, {failed} failed{damaged}");
    }
    if let Some(next) = not_due.iter().min() {
        println!(
            "{} not due yet, the next in {}: `sendbox queue flush` tries {} now",
            counted(not_due.len() as u64, "message", "messages"),
            age(next.saturating_sub(now)),
            if not_due.len() == 1 { "it" } else { "them" }
        );
    }
    Ok(exit::for_run(trouble))
}

/// Delivers `ids` through one account's session.
async fn run_account(
    outbox: &Outbox,
    account: &Account,
    ids: &[String],
    config: &Config,
) -> Result<Counts, outbox::Error> {
    let mut counts = Counts::default();
    let connection = Connection::of_account(account, false);
    let mailer = async { connection?.mailer(&SandboxOptions::cached()).await }.await;
    // Once the server proves unusable in this run, every other message records the same
    // reason without a new try, so that its retries back off and its age is checked, as
    // an MTA defers all mail for a dead destination.
    let (mailer, mut unusable) = match mailer {
        Ok(mailer) => (Some(mailer), None),
        Err(problem) => {
            eprintln!(
                "sendbox: account {}: {}",
                escaped(&account.name),
                escaped(problem.to_string())
            );
            (None, Some(problem.to_string()))
        }
    };
    let mut session: Option<Session> = None;
    for id in ids {
        // Damaged or unreadable since it was peeked at: named, and the others go on.
        let (locked, message) = match outbox.lock(id) {
            Ok(Some(locked)) => match outbox.message(&locked) {
                Ok(message) => (locked, message),
                Err(e) => {
                    counts.unusable(config, id, &e);
                    continue;
                }
            },
            Ok(None) => continue, // another runner has it, or delivered it
            Err(e) => {
                counts.unusable(config, id, &e);
                continue;
            }
        };
        let attempt = match (
            attempt::request(&locked.envelope, account),
            &mailer,
            &unusable,
        ) {
            (Err(unsendable), _, _) => Attempt::Failed(Failure::Unsendable(unsendable)),
            (Ok((envelope, options)), Some(mailer), None) => {
                if session.is_none() {
                    match mailer.open().await {
                        Ok(opened) => session = Some(opened),
                        Err(error) => {
                            unusable = Some(error.to_string());
                            let outcome =
                                attempt::settle(outbox, locked, Err(error).into(), config)?;
                            tally(&mut counts, id, &outcome);
                            continue;
                        }
                    }
                }
                let open = session.as_mut().expect("opened above");
                let result = open
                    .send_with(&envelope, Message::Raw(message), &options)
                    .await;
                if !open.is_open().await {
                    session = None;
                }
                result.into()
            }
            (Ok(_), _, reason) => {
                Attempt::Failed(Failure::NotTried(reason.clone().unwrap_or_default()))
            }
        };
        let outcome = attempt::settle(outbox, locked, attempt, config)?;
        tally(&mut counts, id, &outcome);
    }
    if let Some(session) = session {
        let _ = session.close().await;
    }
    Ok(counts)
}

fn tally(counts: &mut Counts, id: &str, outcome: &Outcome) {
    match outcome {
        Outcome::Delivered(delivery) => {
            for refused in &delivery.refused {
                eprintln!(
                    "sendbox: {id}: recipient {} refused: {}",
                    escaped(&refused.address),
                    escaped(refused.reply.to_string())
                );
            }
            counts.delivered += 1;
        }
        Outcome::Queued(reason) => {
            eprintln!("sendbox: {id} still queued: {}", escaped(reason));
            counts.queued += 1;
        }
        Outcome::Failed(failure) => {
            eprintln!(
                "sendbox: {id} failed, moved to failed/: {}",
                escaped(failure.reason())
            );
            counts.failed += 1;
        }
    }
}

/// sendmail and `send --queue` with the outbox: the message is on disk before anything
/// else, then tried at once through the account. Exit 0 once it is delivered or safely
/// queued; a permanent failure still fails. `verbose` shows the dialogue, and
/// `report_success` prints what the server accepted.
pub async fn accept_and_try(
    config: &Config,
    account: &Account,
    verbose: bool,
    report_success: bool,
    queued: outbox::Envelope,
    message: Vec<u8>,
) -> Result<u8, crate::error::Error> {
    let outbox = super::open(&config.queue)?;
    let locked = outbox.accept(&queued, &message)?;
    let id = locked.id.clone();
    let connection = Connection::of_account(account, verbose);
    let mailer = async { connection?.mailer(&SandboxOptions::cached()).await }.await;
    let attempt = match (mailer, attempt::request(&queued, account)) {
        (Ok(mailer), Ok((envelope, options))) => mailer
            .send_with(&envelope, Message::Raw(message), &options)
            .await
            .into(),
        // Accepted already: a problem of the account or the network waits for a retry.
        (Err(problem), _) => Attempt::Failed(Failure::Connection(problem)),
        (_, Err(unsendable)) => Attempt::Failed(Failure::Unsendable(unsendable)),
    };
    let outcome = match attempt::settle(&outbox, locked, attempt, config) {
        Ok(outcome) => outcome,
        // Accepted and on disk already: a failure to record the attempt (a full disk)
        // leaves it queued as it was, which is no failure to report.
        Err(e) => Outcome::Queued(format!("the attempt could not be recorded: {e}")),
    };
    match outcome {
        Outcome::Delivered(delivery) => {
            crate::send::report(&delivery, report_success);
            let refused_for_good = delivery.refused.iter().any(|r| r.reply.is_permanent());
            Ok(if refused_for_good {
                exit::NOUSER
            } else {
                exit::OK
            })
        }
        Outcome::Queued(reason) => {
            let next = match outbox.peek(&id).ok().and_then(|p| p.attempts.ok()) {
                Some(attempts) => {
                    format!("in {}", age(attempts.next_at.saturating_sub(outbox::now())))
                }
                None => "later".to_owned(),
            };
            eprintln!(
                "sendbox: queued as {id} in {}, not delivered yet: {}\n  \
                 `sendbox queue run` (cron, the systemd timer) tries it again {next}; \
                 `sendbox queue flush` tries it now",
                outbox.root().display(),
                escaped(&reason)
            );
            Ok(exit::OK)
        }
        Outcome::Failed(failure) => Err(Error::NotDelivered {
            id,
            root: outbox.root().to_owned(),
            failure,
        }
        .into()),
    }
}
