//! What the Postfix tests share: where tests/postfix/setup.sh leaves its state, unique
//! tokens to find a message by, and waiting for a message in a mailbox.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Where tests/postfix/setup.sh writes the CA, the AUTH user and its password.
pub const STATE: &str = "/var/lib/sendbox-postfix";
/// The virtual mailboxes, one mbox file per user.
pub const MAILBOXES: &str = "/var/mail/vhosts/sendbox.test";

/// A file of the set-up's state; a clear failure when Postfix was not set up.
pub fn state(name: &str) -> String {
    std::fs::read_to_string(Path::new(STATE).join(name)).unwrap_or_else(|e| {
        panic!(
            "Postfix is not set up ({STATE}/{name}: {e}); run `just postfix` \
             (tests/postfix/setup.sh) as root"
        )
    })
}

/// A string no other message has, to find ours in the mailbox.
pub fn token(label: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{label}-{}-{nanos}", std::process::id())
}

/// Waits until a message containing `token` is in `user`'s mailbox and returns it.
pub fn delivered(user: &str, token: &str) -> String {
    delivered_where(user, token, |_| true)
}

/// Waits until a message containing `token` and passing `wanted` is in `user`'s mailbox
/// and returns it (from its mbox `From ` line on, that line's `From ` cut off).
pub fn delivered_where(user: &str, token: &str, wanted: impl Fn(&str) -> bool) -> String {
    let path = Path::new(MAILBOXES).join(user);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // Lossy: a message with 8-bit content must not hide the others.
        let mbox = String::from_utf8_lossy(&std::fs::read(&path).unwrap_or_default()).into_owned();
        let mut messages = mbox.split("\nFrom ");
        if let Some(message) = messages.find(|m| m.contains(token) && wanted(m)) {
            return message.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no such message with {token} in {} after 30 s",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
