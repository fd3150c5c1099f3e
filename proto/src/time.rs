//! Time as an input: the driver reads its monotonic clock and passes `now` in, and the
//! dialogue answers with the deadlines to arm. The limits themselves are the dialogue's
//! rules, so they live here, not in a driver.

/// A point on the driver's monotonic clock, in nanoseconds from an origin of its choice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(u64);

impl Instant {
    /// The instant `nanos` nanoseconds after the clock's origin.
    pub const fn from_nanos(nanos: u64) -> Self {
        Instant(nanos)
    }

    /// Nanoseconds since the clock's origin.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// `ms` milliseconds later (the clock's end if that overflows).
    pub const fn plus_ms(self, ms: u32) -> Self {
        Instant(self.0.saturating_add(ms as u64 * 1_000_000))
    }

    /// Milliseconds from `earlier` to `self`, zero if `earlier` is later.
    pub const fn ms_since(self, earlier: Instant) -> u64 {
        self.0.saturating_sub(earlier.0) / 1_000_000
    }
}

/// A connection idle longer than this is checked with NOOP before it carries another
/// message: servers commonly drop idle clients after some seconds to minutes.
pub const IDLE_CHECK_MS: u32 = 5_000;

/// The longest wait for the reply to QUIT: the message's fate is known by then, so a slow
/// goodbye must not hold the caller.
pub const QUIT_WAIT_MS: u32 = 10_000;

/// Time limits in milliseconds, per stage (RFC 5321 section 4.5.3.2), and for a whole call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Connecting (every address together).
    pub connect_ms: u32,
    /// The 220 greeting.
    pub greeting_ms: u32,
    /// EHLO, STARTTLS and the handshake, AUTH, RSET, NOOP and QUIT.
    pub command_ms: u32,
    /// The reply to MAIL FROM.
    pub mail_ms: u32,
    /// The reply to RCPT TO.
    pub rcpt_ms: u32,
    /// The 354 reply to DATA.
    pub data_start_ms: u32,
    /// Each write of content, and the reply to a BDAT chunk but the last.
    pub data_block_ms: u32,
    /// The reply after the whole content.
    pub data_end_ms: u32,
    /// One whole call: connecting, opening and sending, or sending one message.
    pub total_ms: u32,
}

impl Default for Timeouts {
    /// RFC 5321's minimums, a 30 s connect and 15 minutes for a whole call.
    fn default() -> Self {
        Timeouts {
            connect_ms: 30_000,
            greeting_ms: 300_000,
            command_ms: 300_000,
            mail_ms: 300_000,
            rcpt_ms: 300_000,
            data_start_ms: 120_000,
            data_block_ms: 180_000,
            data_end_ms: 600_000,
            total_ms: 900_000,
        }
    }
}

impl Timeouts {
    /// These limits, with each zero replaced by its default (the WIT's "0 means default").
    pub fn or_defaults(self) -> Self {
        let defaults = Timeouts::default();
        let pick = |given: u32, default: u32| if given == 0 { default } else { given };
        Timeouts {
            connect_ms: pick(self.connect_ms, defaults.connect_ms),
            greeting_ms: pick(self.greeting_ms, defaults.greeting_ms),
            command_ms: pick(self.command_ms, defaults.command_ms),
            mail_ms: pick(self.mail_ms, defaults.mail_ms),
            rcpt_ms: pick(self.rcpt_ms, defaults.rcpt_ms),
            data_start_ms: pick(self.data_start_ms, defaults.data_start_ms),
            data_block_ms: pick(self.data_block_ms, defaults.data_block_ms),
            data_end_ms: pick(self.data_end_ms, defaults.data_end_ms),
            total_ms: pick(self.total_ms, defaults.total_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_means_default_field_by_field() {
        let given = Timeouts {
            connect_ms: 0,
            rcpt_ms: 7,
            ..Timeouts::default()
        };
        let merged = Timeouts {
            greeting_ms: 0,
            ..given
        }
        .or_defaults();
        assert_eq!(merged.connect_ms, Timeouts::default().connect_ms);
        assert_eq!(merged.greeting_ms, Timeouts::default().greeting_ms);
        assert_eq!(merged.rcpt_ms, 7);
    }

    #[test]
    fn instants_saturate() {
        let end = Instant::from_nanos(u64::MAX - 1).plus_ms(1);
        assert_eq!(end.as_nanos(), u64::MAX);
        assert_eq!(Instant::from_nanos(0).ms_since(end), 0);
        assert_eq!(
            Instant::from_nanos(3_000_000).ms_since(Instant::default()),
            3
        );
    }
}
