//! What becomes of a queued message after an attempt: a pure function of the attempt,
//! the message's history, the settings and the time, which it is given.

use sendbox::Delivery;

use crate::config::QueueSettings;
use crate::outbox::Attempts;

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

/// What to do with a message after an attempt.
#[derive(Debug, PartialEq, Eq)]
pub struct Decision {
    /// Keep it for these recipients only (refused for now), before what follows.
    pub narrow_to: Option<Vec<String>>,
    pub then: Then,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Then {
    /// Done: every recipient took it, or refused it for good.
    Done,
    /// Keep it, and try again when the attempts say (their last error says why).
    Retry(Attempts),
    /// Move it to `failed/`; `expired` when it was given up on for its age, not for a
    /// failure of its own.
    GiveUp { attempts: Attempts, expired: bool },
}

/// How an attempt ended, as the policy sees it.
pub enum Ended<'a> {
    /// The server answered: accepted for some, maybe refused for others.
    Answered(&'a Delivery),
    /// No delivery; `permanent` when resending cannot succeed.
    Failed { permanent: bool, reason: &'a str },
}

/// The decision for a message accepted at `accepted_at` and tried `history.count` times
/// before this attempt, which ended `now`.
pub fn decide(
    ended: Ended,
    history: &Attempts,
    accepted_at: u64,
    settings: &QueueSettings,
    now: u64,
) -> Decision {
    let count = history.count + 1;
    let failed = |reason: String| Attempts {
        count,
        last_at: now,
        next_at: now.saturating_add(retry_delay(settings.retry_secs, count)),
        last_error: Some(reason),
    };
    let (narrow_to, reason) = match ended {
        Ended::Answered(delivery) => {
            let later: Vec<String> = delivery
                .refused
                .iter()
                .filter(|r| r.reply.is_transient())
                .map(|r| r.address.clone())
                .collect();
            if later.is_empty() {
                return Decision {
                    narrow_to: None,
                    then: Then::Done,
                };
            }
            let reason = format!(
                "delivered to {}; {} refused for now",
                delivery.accepted.join(", "),
                later.join(", ")
            );
            (Some(later), reason)
        }
        Ended::Failed {
            permanent: true,
            reason,
        } => {
            return Decision {
                narrow_to: None,
                then: Then::GiveUp {
                    attempts: failed(reason.to_owned()),
                    expired: false,
                },
            };
        }
        Ended::Failed { reason, .. } => (None, reason.to_owned()),
    };
    let age = now.saturating_sub(accepted_at);
    let then = if age >= settings.give_up_secs {
        Then::GiveUp {
            attempts: failed(format!(
                "gave up after {} over {}: {reason}",
                super::listing::counted(count.into(), "attempt", "attempts"),
                super::listing::age(age)
            )),
            expired: true,
        }
    } else {
        Then::Retry(failed(reason))
    };
    Decision { narrow_to, then }
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
    fn a_temporary_failure_waits_until_the_message_is_too_old() {
        let settings = QueueSettings {
            retry_secs: 60,
            give_up_secs: 1000,
            ..QueueSettings::default()
        };
        let history = Attempts {
            count: 2,
            ..Attempts::default()
        };
        let ended = || Ended::Failed {
            permanent: false,
            reason: "421 busy",
        };
        let young = decide(ended(), &history, 0, &settings, 999);
        assert_eq!(
            young.then,
            Then::Retry(Attempts {
                count: 3,
                last_at: 999,
                next_at: 999 + 240,
                last_error: Some("421 busy".into()),
            })
        );
        let old = decide(ended(), &history, 0, &settings, 1000);
        let Then::GiveUp { attempts, expired } = old.then else {
            panic!("kept: {old:?}")
        };
        assert!(expired);
        assert_eq!(
            attempts.last_error.as_deref(),
            Some("gave up after 3 attempts over 16m: 421 busy")
        );
        let permanent = Ended::Failed {
            permanent: true,
            reason: "550 no",
        };
        let refused = decide(permanent, &history, 0, &settings, 5);
        assert!(matches!(refused.then, Then::GiveUp { expired: false, .. }));
    }
}
