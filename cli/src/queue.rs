//! Delivering from the outbox: the attempt `sendbox sendmail` makes at once, and `sendbox
//! queue run` / `flush` over what is queued, one session per account. Also `queue list`,
//! `show` and `remove`.
//!
//! What becomes of a message after an attempt:
//! - accepted for every recipient, or refused for good (5xx) for some: out of the queue;
//! - refused for now (4xx) for some recipients: queued for those only;
//! - refused for good as a whole (a 5xx to MAIL or DATA, every recipient refused with a
//!   5xx, or input the sender refuses): moved to `failed/`;
//! - anything else (the server down or unreachable, a 4xx, a time-out, TLS or name
//!   resolution failing, a refused login that the user may fix): queued, retried after
//!   `retry_minutes`, doubled after each failure up to 4 hours, and moved to `failed/`
//!   once it has been queued for `give_up_days`.
//!
//! A message whose file is damaged (cut short, overwritten) or cannot be read is never
//! skipped in silence: `list` names it, `run` names it on stderr and in the log, leaves it
//! where it is and exits 65 (74 if unreadable) after delivering the others. A damaged
//! state file loses only advice: the message is sent as if never tried.

use std::collections::BTreeMap;
use std::io;

use sendbox::{Delivery, Error, Message, SendOptions, Session};

use crate::config::{Account, Config, QueueSettings};
use crate::escape::escaped;
use crate::log::{self, Logged};
use crate::outbox::{self, Attempts, Damage, Locked, Outbox, Peeked};
use crate::{Stop, dsn, exit};

/// The longest wait between two attempts.
const MAX_RETRY_SECS: u64 = 4 * 60 * 60;

/// The wait after the `failures`-th failed attempt: the first retry delay, doubled after
/// each failure, at most [`MAX_RETRY_SECS`].
pub fn retry_delay(first_secs: u64, failures: u32) -> u64 {
    let doublings = failures.saturating_sub(1).min(16);
    first_secs
        .saturating_mul(1 << doublings)
        .min(MAX_RETRY_SECS.max(first_secs))
}

/// How an attempt ended, for the user.
#[derive(Debug)]
pub enum Outcome {
    /// The server took it (some recipients may have been refused for good).
    Delivered(Delivery),
    /// Still queued, for all or some recipients, and why.
    Queued(String),
    /// Given up on, moved to `failed/`, with the exit code the failure means.
    Failed(u8, String),
}

/// What one attempt gave: the server's answer, or why it did not get one.
pub enum Attempt {
    Answered(Delivery),
    Failed {
        /// Resending the message cannot succeed.
        permanent: bool,
        /// The exit code it means for sendmail.
        code: u8,
        reason: String,
    },
}

impl From<Result<Delivery, Error>> for Attempt {
    fn from(result: Result<Delivery, Error>) -> Self {
        match result {
            Ok(delivery) => Attempt::Answered(delivery),
            Err(error) => {
                let permanent = is_permanent(&error);
                let mut reason = error.to_string();
                // The server's word may be final (a refused login), yet the outbox keeps
                // the message for the user to fix the account: it is not "permanent".
                if let Some(kept) = reason.strip_suffix(" [permanent]").filter(|_| !permanent) {
                    reason = format!("{kept} [kept: fix the cause, then retry]");
                }
                Attempt::Failed {
                    permanent,
                    code: exit::for_error(&error),
                    reason,
                }
            }
        }
    }
}

/// Whether a failure is the message's own and final: resending it cannot succeed.
fn is_permanent(error: &Error) -> bool {
    let Error::Smtp(smtp) = error else {
        return false;
    };
    use sendbox::mailer::ErrorKind;
    match smtp.kind {
        ErrorKind::InvalidInput => true,
        // A refused login is the account's problem, which the user may fix; keep the mail.
        ErrorKind::Auth => false,
        _ => smtp.reply.as_ref().is_some_and(|r| r.code / 100 == 5),
    }
}

/// Records how an attempt ended, logs it, and takes the message out of the queue when it
/// is done.
pub fn settle(
    outbox: &Outbox,
    locked: Locked,
    attempt: Attempt,
    config: &Config,
) -> Result<Outcome, Stop> {
    let (id, envelope) = (locked.id.clone(), locked.envelope.clone());
    let outcome = record(outbox, locked, attempt, &config.queue)?;
    let reply;
    let logged = match &outcome {
        Outcome::Delivered(delivery) => {
            let mut text = delivery.final_reply.to_string();
            for refused in &delivery.refused {
                text.push_str(&format!("; {} refused: {}", refused.address, refused.reply));
            }
            reply = text;
            Logged::Delivered { reply: &reply }
        }
        Outcome::Queued(reason) => Logged::Queued { reason },
        Outcome::Failed(_, reason) => Logged::Failed { reason },
    };
    log::attempt(&config.log, &id, &envelope, logged);
    Ok(outcome)
}

fn record(
    outbox: &Outbox,
    mut locked: Locked,
    attempt: Attempt,
    settings: &QueueSettings,
) -> Result<Outcome, Stop> {
    let now = outbox::now();
    let io = io_error(outbox);
    let failed_attempt = |locked: &Locked, reason: &str| Attempts {
        count: locked.attempts.count + 1,
        last_at: now,
        next_at: now + retry_delay(settings.retry_secs, locked.attempts.count + 1),
        last_error: Some(reason.to_owned()),
    };
    let error = match attempt {
        Attempt::Answered(delivery) => {
            let later: Vec<String> = delivery
                .refused
                .iter()
                .filter(|r| r.reply.code / 100 == 4)
                .map(|r| r.address.clone())
                .collect();
            if later.is_empty() {
                outbox.delivered(locked).map_err(io)?;
                return Ok(Outcome::Delivered(delivery));
            }
            let reason = format!(
                "delivered to {}; {} refused for now",
                delivery.accepted.join(", "),
                later.join(", ")
            );
            outbox.narrow(&mut locked, later).map_err(io)?;
            reason
        }
        Attempt::Failed {
            permanent: true,
            code,
            reason,
        } => {
            let attempts = failed_attempt(&locked, &reason);
            outbox.give_up(locked, attempts).map_err(io)?;
            return Ok(Outcome::Failed(code, reason));
        }
        Attempt::Failed { reason, .. } => reason,
    };
    let attempts = failed_attempt(&locked, &error);
    if now.saturating_sub(locked.envelope.accepted_at) >= settings.give_up_secs {
        let reason = format!(
            "gave up after {} attempts over {}: {error}",
            attempts.count,
            age(now.saturating_sub(locked.envelope.accepted_at))
        );
        let attempts = Attempts {
            last_error: Some(reason.clone()),
            ..attempts
        };
        outbox.give_up(locked, attempts).map_err(io)?;
        return Ok(Outcome::Failed(exit::TEMPFAIL, reason));
    }
    outbox.retry_later(&mut locked, attempts).map_err(io)?;
    Ok(Outcome::Queued(error))
}

/// Why a queued message cannot be sent as it is.
pub enum Unsendable {
    /// Its envelope is broken (its DSN settings): for good.
    Envelope(String),
    /// A bare local name (cron's `root`) with no domain to give it, which only the
    /// account's `from` can: the configuration's fault, so the message waits for it.
    Unqualified(String),
}

impl From<Unsendable> for Attempt {
    fn from(unsendable: Unsendable) -> Self {
        match unsendable {
            Unsendable::Envelope(problem) => Attempt::Failed {
                permanent: true,
                code: exit::DATAERR,
                reason: format!("the queued envelope is unusable: {problem}"),
            },
            Unsendable::Unqualified(reason) => Attempt::Failed {
                permanent: false,
                code: exit::CONFIG,
                reason,
            },
        }
    }
}

/// The library's envelope and options for a queued message sent through `account`,
/// whose `from` gives bare names a domain when the message was queued without one.
pub fn request(
    queued: &outbox::Envelope,
    account: &Account,
) -> Result<(sendbox::Envelope, SendOptions), Unsendable> {
    // The account's `from` as it is now: it may have been added since the message was
    // queued without a sender or a domain for bare names.
    let account_from = account
        .from
        .as_deref()
        .and_then(|from| crate::compose::mailbox(from).ok())
        .map(|mailbox| mailbox.address);
    let qualify_domain = queued.qualify_domain.clone().or_else(|| {
        let (_, domain) = account_from.as_deref()?.rsplit_once('@')?;
        Some(domain.to_owned())
    });
    let bare = queued
        .recipients
        .iter()
        .chain(&queued.sender)
        .find(|address| !address.is_empty() && !address.contains('@'));
    if let (Some(name), None) = (bare, &qualify_domain) {
        return Err(Unsendable::Unqualified(format!(
            "the local name {name:?} needs a domain: give account {} a `from` (its domain \
             is given to bare names), or {name} an alias; the message waits until then",
            account.name
        )));
    }
    let envelope = sendbox::Envelope {
        sender: queued.sender.clone().or(account_from),
        recipients: queued.recipients.clone(),
        recipients_from_headers: queued.recipients_from_headers,
        qualify_domain,
    };
    let dsn = (|| {
        Ok(dsn::request(
            queued.dsn_notify.as_deref().map(dsn::notify).transpose()?,
            queued.dsn_ret.as_deref().map(dsn::ret).transpose()?,
            queued.dsn_envid.clone(),
        ))
    })()
    .map_err(Unsendable::Envelope)?;
    let options = SendOptions {
        dsn,
        require_tls: queued.require_tls,
        keep_raw_header: queued.keep_raw_header,
    };
    Ok((envelope, options))
}

/// A failure to read or write the outbox, as the user sees it.
fn io_error(outbox: &Outbox) -> impl Fn(io::Error) -> Stop + Copy + '_ {
    |e| {
        Stop(
            exit::IOERR,
            format!("outbox {}: {e}", outbox.root().display()),
        )
    }
}

/// The outbox the configuration names. One that cannot be made says where else to put it.
/// The system spool itself is an administrator's to make (contrib/sendbox.tmpfiles, mode
/// 1733): never made here, even by root, so that its mode is never a guess.
pub fn open(settings: &QueueSettings) -> Result<Outbox, Stop> {
    let spool = std::path::Path::new(crate::config::SYSTEM_SPOOL);
    let opened = match settings.dir.starts_with(spool) && !spool.is_dir() {
        true => Err(outbox::OutboxError {
            code: exit::CANTCREAT,
            message: format!(
                "cannot create the outbox {}: {} does not exist",
                settings.dir.display(),
                spool.display()
            ),
        }),
        false => Outbox::open(&settings.dir),
    };
    opened.map_err(|e| {
        if e.code != exit::CANTCREAT {
            return Stop(e.code, e.message);
        }
        let spool = match settings.dir.starts_with(crate::config::SYSTEM_SPOOL) {
            true => format!(
                "; a user without a home keeps it in {}/UID, which needs {} made once by an \
                 administrator (mode 1733: contrib/sendbox.tmpfiles)",
                crate::config::SYSTEM_SPOOL,
                crate::config::SYSTEM_SPOOL
            ),
            false => String::new(),
        };
        Stop(
            e.code,
            format!(
                "{}\n  name a folder of your own with `dir` under `[queue]` in the config file{spool}",
                e.message
            ),
        )
    })
}

/// What a run did, for its summary and its exit code.
#[derive(Default)]
struct Counts {
    delivered: usize,
    queued: usize,
    failed: usize,
    /// Left where they are, not sent: their file is damaged or cannot be read.
    damaged: usize,
    /// 0, or what the damage met means: 65 for a damaged file or state, 74 for a file
    /// that cannot be read.
    code: u8,
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
        let (what, code) = match problem {
            Problem::Damaged(damage) => {
                self.damaged += 1;
                eprintln!(
                    "sendbox: {id} not sent, damaged: {}; `sendbox queue show {id}` shows \
                     what is left, `sendbox queue remove {id}` removes it",
                    escaped(damage.to_string())
                );
                (damage.to_string(), exit::DATAERR)
            }
            Problem::Unreadable(e) => {
                self.damaged += 1;
                let what = format!("cannot be read: {e}");
                eprintln!("sendbox: {id} not sent, {}", escaped(&what));
                (what, exit::IOERR)
            }
            Problem::DamagedState(damage) => {
                let what = format!("{damage}; counted as never tried, so due now");
                eprintln!("sendbox: {id}: {}", escaped(&what));
                (what, exit::DATAERR)
            }
        };
        log::damaged(&config.log, id, envelope, &what);
        self.code = exit::combine([self.code, code]);
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
        self.code = exit::combine([self.code, other.code]);
    }
}

/// `queue run` (only what is due) and `queue flush` (everything): one session per account.
pub async fn run(config: &Config, everything: bool) -> Result<u8, Stop> {
    let outbox = open(&config.queue)?;
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
                    escaped(&problem)
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
        code,
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
    Ok(code)
}

/// `1 try`, `2 tries`: a count and its noun.
fn counted(count: u64, one: &str, many: &str) -> String {
    match count {
        1 => format!("1 {one}"),
        n => format!("{n} {many}"),
    }
}

/// Delivers `ids` through one account's session.
async fn run_account(
    outbox: &Outbox,
    account: &Account,
    ids: &[String],
    config: &Config,
) -> Result<Counts, Stop> {
    let mut counts = Counts::default();
    let mailer = match crate::mailer(
        &Default::default(),
        Some(account),
        &sendbox::SandboxOptions::cached(),
    )
    .await
    {
        Ok(mailer) => mailer,
        Err(Stop(_, problem)) => {
            eprintln!(
                "sendbox: account {}: {}; left queued",
                escaped(&account.name),
                escaped(&problem)
            );
            counts.queued = ids.len();
            return Ok(counts);
        }
    };
    let mut session: Option<Session> = None;
    for (done, id) in ids.iter().enumerate() {
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
        let attempt = match request(&locked.envelope, account) {
            Err(unsendable) => unsendable.into(),
            Ok((envelope, options)) => {
                if session.is_none() {
                    match mailer.open().await {
                        Ok(opened) => session = Some(opened),
                        Err(error) => {
                            // The server cannot be used now: this message records why, and
                            // the rest wait for the next run untouched.
                            let outcome = settle(outbox, locked, Err(error).into(), config)?;
                            tally(&mut counts, id, &outcome);
                            counts.queued += ids.len() - done - 1;
                            return Ok(counts);
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
        };
        let outcome = settle(outbox, locked, attempt, config)?;
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
        Outcome::Failed(_, reason) => {
            eprintln!(
                "sendbox: {id} failed, moved to failed/: {}",
                escaped(reason)
            );
            counts.failed += 1;
        }
    }
}

/// `queue list`: the queued messages, then those given up on. A damaged message is a
/// row that says what is wrong; like mailq, `list` exits 0 whatever the queue holds, and
/// `run` is what fails on damage.
pub fn list(config: &Config) -> Result<u8, Stop> {
    let outbox = open(&config.queue)?;
    let io = io_error(&outbox);
    let now = outbox::now();
    let queued = outbox.ids().map_err(io)?;
    let failed = outbox.failed_ids().map_err(io)?;
    let strays = outbox.strays().map_err(io)?;
    if queued.is_empty() && failed.is_empty() && strays.is_empty() {
        println!("the outbox {} is empty", outbox.root().display());
        return Ok(exit::OK);
    }
    for stray in &strays {
        println!(
            "{}  STRAY  not a message (a crash's leftover, or put there by hand): remove it \
             by hand",
            escaped(stray)
        );
    }
    for id in &queued {
        let Some(Peeked {
            envelope,
            attempts,
            size,
        }) = listed(id, outbox.peek(id))
        else {
            continue;
        };
        let envelope = match envelope {
            Ok(envelope) => envelope,
            Err(damage) => {
                damaged_row(id, "", &damage);
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
        println!(
            "{id}  queued {} ago  {next}  to {}  {}",
            age(now.saturating_sub(envelope.accepted_at)),
            escaped(envelope.recipient_list(", ")),
            whence(&envelope, size)
        );
        last_error(&attempts, "last: ", "; counted as never tried, so due now");
    }
    for id in &failed {
        let Some(Peeked {
            envelope,
            attempts,
            size,
        }) = listed(id, outbox.failure(id))
        else {
            continue;
        };
        match envelope {
            Ok(envelope) => println!(
                "{id}  FAILED  to {}  {}",
                escaped(envelope.recipient_list(", ")),
                whence(&envelope, size)
            ),
            Err(damage) => damaged_row(id, "FAILED  ", &damage),
        }
        last_error(&attempts, "", "");
    }
    Ok(exit::OK)
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
fn listed(id: &str, peeked: io::Result<Peeked>) -> Option<Peeked> {
    match peeked {
        Ok(peeked) => Some(peeked),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => {
            println!("{id}  UNREADABLE  {}", escaped(e.to_string()));
            None
        }
    }
}

fn damaged_row(id: &str, status: &str, damage: &Damage) {
    println!("{id}  {status}DAMAGED  {}", escaped(damage.to_string()));
    println!(
        "    not sent: `sendbox queue show {id}` shows what is left, \
         `sendbox queue remove {id}` removes it"
    );
}

/// The line under a row: the last error (after `label`), or what is wrong with the state
/// (then `consequence`).
fn last_error(attempts: &Result<Attempts, Damage>, label: &str, consequence: &str) {
    match attempts {
        Ok(Attempts {
            last_error: Some(error),
            ..
        }) => println!("    {label}{}", escaped(error)),
        Ok(_) => {}
        Err(damage) => println!("    DAMAGED  {}{consequence}", escaped(damage.to_string())),
    }
}

/// `queue show ID`: what is readable of a message, each line escaped: what is wrong with
/// it, its attempts, the envelope line and the message.
pub fn show(config: &Config, id: &str) -> Result<u8, Stop> {
    let outbox = open(&config.queue)?;
    let stored = outbox.stored(id).map_err(|e| match e.kind() {
        io::ErrorKind::InvalidInput => Stop(exit::USAGE, e.to_string()),
        io::ErrorKind::NotFound => Stop(exit::NOINPUT, format!("no message {id} in the outbox")),
        _ => Stop(exit::IOERR, format!("cannot read {id}: {e}")),
    })?;
    let entry = outbox::entry::decode(&stored.bytes);
    match &entry {
        Ok(entry) => println!("{}", described(&entry.envelope)),
        Err(damage) => println!("# DAMAGED  {}", escaped(damage.to_string())),
    }
    match &stored.attempts {
        Ok(attempts) if attempts.count > 0 => println!(
            "# {}; last: {}",
            counted(attempts.count.into(), "attempt", "attempts"),
            escaped(attempts.last_error.as_deref().unwrap_or("-"))
        ),
        Ok(_) => {}
        Err(damage) => println!("# DAMAGED  {}", escaped(damage.to_string())),
    }
    // The message; the whole file when it is damaged, to show what is left.
    let shown = match &entry {
        Ok(entry) => entry.message,
        Err(_) => &stored.bytes[..],
    };
    // Line by line, so that the message reads as one; CRLF is its usual line ending.
    for line in shown.split_inclusive(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        println!("{}", escaped(line.strip_suffix(b"\r").unwrap_or(line)));
    }
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
pub fn remove(config: &Config, id: &str) -> Result<u8, Stop> {
    let outbox = open(&config.queue)?;
    match outbox.remove(id) {
        Ok(true) => Ok(exit::OK),
        Ok(false) => Err(Stop(
            exit::NOINPUT,
            format!("no message {id} in the outbox"),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
            Err(Stop(exit::USAGE, e.to_string()))
        }
        Err(e) => Err(Stop(exit::TEMPFAIL, format!("cannot remove {id}: {e}"))),
    }
}

/// `queue remove --failed`: every message given up on.
pub fn remove_failed(config: &Config) -> Result<u8, Stop> {
    let outbox = open(&config.queue)?;
    let io = io_error(&outbox);
    let failed = outbox.failed_ids().map_err(io)?;
    for id in &failed {
        outbox.remove(id).map_err(io)?;
    }
    println!(
        "removed {} from {}/failed",
        counted(failed.len() as u64, "message", "messages"),
        outbox.root().display()
    );
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_from_the_first_delay_to_four_hours() {
        let half_hour = 30 * 60;
        let delays: Vec<u64> = (1..=6).map(|n| retry_delay(half_hour, n)).collect();
        assert_eq!(delays, [1800, 3600, 7200, 14400, 14400, 14400]);
        assert_eq!(retry_delay(0, 3), 0, "no delay stays no delay (tests)");
        assert_eq!(
            retry_delay(10 * 3600, 2),
            10 * 3600,
            "never shorter than asked"
        );
        assert_eq!(retry_delay(half_hour, u32::MAX), 14400);
    }

    #[test]
    fn ages() {
        assert_eq!(
            [age(5), age(600), age(7200), age(5 * 86400)],
            ["5s", "10m", "2h", "5d"]
        );
    }
}
