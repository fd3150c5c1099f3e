//! One delivery attempt of a queued message: what it asks of the library, how it ended,
//! and what the outbox and the log keep of it.

use sendbox::{Delivery, SendOptions};

use super::policy::{self, Ended, Then};
use crate::config::{Account, Config};
use crate::connection;
use crate::log::{self, Logged};
use crate::outbox::{self, Locked, Outbox};

/// How an attempt ended, for the user.
#[derive(Debug)]
pub enum Outcome {
    /// The server took it (some recipients may have been refused for good).
    Delivered(Delivery),
    /// Still queued, for all or some recipients, and why.
    Queued(String),
    /// Given up on and moved to `failed/`.
    Failed(Failure),
}

/// What one attempt gave: the server's answer, or why it did not get one.
pub enum Attempt {
    Answered(Delivery),
    Failed(Failure),
}

/// Why an attempt delivered nothing.
#[derive(Debug)]
pub enum Failure {
    /// The send failed.
    Send(sendbox::Error),
    /// The account's connection cannot be made (its secret, its trust anchors).
    Connection(connection::Error),
    /// The queued message cannot be sent as it is.
    Unsendable(Unsendable),
    /// Not tried: the server proved unusable for this run's other messages, for this
    /// reason.
    NotTried(String),
    /// Queued for longer than `give_up_days`: the last failure, and how long it tried.
    GaveUp(String),
}

/// Why a queued message cannot be sent as it is.
#[derive(Debug)]
pub enum Unsendable {
    /// Its envelope is broken (its DSN settings): for good.
    Envelope(String),
    /// A bare local name (cron's `root`) with no domain to give it, which only the
    /// account's `from` can: the configuration's fault, so the message waits for it.
    Unqualified(String),
    /// The account's DKIM key cannot be read: the configuration's fault too.
    Dkim(String),
}

impl Failure {
    /// Whether the failure is the message's own and final: resending it cannot succeed.
    fn is_permanent(&self) -> bool {
        match self {
            Failure::Send(sendbox::Error::Smtp(smtp)) => match smtp.kind {
                // A DKIM key or setting the component cannot sign with: the account's to
                // fix, so the message waits.
                sendbox::mailer::ErrorKind::InvalidInput
                    if smtp.phase == sendbox::mailer::Phase::Sign =>
                {
                    false
                }
                sendbox::mailer::ErrorKind::InvalidInput => true,
                // A refused login is the account's problem, which the user may fix; keep
                // the mail.
                sendbox::mailer::ErrorKind::Auth => false,
                _ => smtp.reply.as_ref().is_some_and(|r| r.is_permanent()),
            },
            Failure::Unsendable(Unsendable::Envelope(_)) => true,
            _ => false,
        }
    }

    /// Why, for the user, the log and the outbox's record.
    pub fn reason(&self) -> String {
        match self {
            Failure::Send(error) => {
                let reason = error.to_string();
                // The server's word may be final (a refused login), yet the outbox keeps
                // the message for the user to fix the account: it is not "permanent".
                match reason.strip_suffix(" [permanent]") {
                    Some(kept) if !self.is_permanent() => {
                        format!("{kept} [kept: fix the cause, then retry]")
                    }
                    _ => reason,
                }
            }
            Failure::Connection(error) => error.to_string(),
            Failure::Unsendable(Unsendable::Envelope(problem)) => {
                format!("the queued envelope is unusable: {problem}")
            }
            Failure::Unsendable(Unsendable::Unqualified(reason))
            | Failure::Unsendable(Unsendable::Dkim(reason))
            | Failure::NotTried(reason)
            | Failure::GaveUp(reason) => reason.clone(),
        }
    }
}

impl From<Result<Delivery, sendbox::Error>> for Attempt {
    fn from(result: Result<Delivery, sendbox::Error>) -> Self {
        match result {
            Ok(delivery) => Attempt::Answered(delivery),
            Err(error) => Attempt::Failed(Failure::Send(error)),
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
    let qualify_domain = queued
        .qualify_domain
        .clone()
        .or_else(|| account.domain().map(str::to_owned));
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
        sender: queued
            .sender
            .clone()
            .or_else(|| account.address().map(str::to_owned)),
        recipients: queued.recipients.clone(),
        recipients_from_headers: queued.recipients_from_headers,
        qualify_domain,
    };
    let dsn = queued.dsn().map_err(Unsendable::Envelope)?;
    // Signed at each attempt, with the account's key as it is now: the outbox never
    // holds a key, and each attempt's signature is fresh.
    let dkim = account
        .dkim
        .as_ref()
        .map(|dkim| dkim.signing())
        .transpose()
        .map_err(|e| {
            Unsendable::Dkim(format!(
                "account {}: {e}; the message waits until it can be signed",
                account.name
            ))
        })?;
    let options = SendOptions {
        dsn,
        require_tls: queued.require_tls,
        keep_raw_header: queued.keep_raw_header,
        dkim,
    };
    Ok((envelope, options))
}

/// Records how an attempt ended (the policy decides what becomes of the message), logs
/// it, and takes the message out of the queue when it is done.
pub fn settle(
    outbox: &Outbox,
    mut locked: Locked,
    attempt: Attempt,
    config: &Config,
) -> Result<Outcome, outbox::Error> {
    let io = super::io_error(outbox);
    let (id, envelope) = (locked.id.clone(), locked.envelope.clone());
    let failed_because = match &attempt {
        Attempt::Failed(failure) => failure.reason(),
        Attempt::Answered(_) => String::new(),
    };
    let ended = match &attempt {
        Attempt::Answered(delivery) => Ended::Answered(delivery),
        Attempt::Failed(failure) => Ended::Failed {
            permanent: failure.is_permanent(),
            reason: &failed_because,
        },
    };
    let decision = policy::decide(
        ended,
        &locked.attempts,
        locked.envelope.accepted_at,
        &config.queue,
        outbox::now(),
    );
    if let Some(later) = decision.narrow_to {
        outbox.narrow(&mut locked, later).map_err(io)?;
    }
    let outcome = match (decision.then, attempt) {
        (Then::Done, Attempt::Answered(delivery)) => {
            outbox.delivered(locked).map_err(io)?;
            Outcome::Delivered(delivery)
        }
        (Then::Retry(attempts), _) => {
            let reason = attempts.last_error.clone().unwrap_or_default();
            outbox.retry_later(&mut locked, attempts).map_err(io)?;
            Outcome::Queued(reason)
        }
        (Then::GiveUp { attempts, expired }, attempt) => {
            let failure = match attempt {
                Attempt::Failed(failure) if !expired => failure,
                _ => Failure::GaveUp(attempts.last_error.clone().unwrap_or_default()),
            };
            outbox.give_up(locked, attempts).map_err(io)?;
            Outcome::Failed(failure)
        }
        (Then::Done, Attempt::Failed(_)) => unreachable!("a failed attempt is never done"),
    };
    let reply;
    let reason;
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
        Outcome::Failed(failure) => {
            reason = failure.reason();
            Logged::Failed { reason: &reason }
        }
    };
    log::attempt(&config.log, &id, &envelope, logged);
    Ok(outcome)
}
