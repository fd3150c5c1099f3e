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

mod attempt;
mod listing;
mod policy;
mod runner;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

pub use attempt::{Failure, Unsendable};
pub use listing::{counted, list};
pub use runner::{Trouble, accept_and_try, run};

use crate::args::{QueueAction, QueueArgs};
use crate::config::{self, Config, QueueSettings};
use crate::outbox::{self, Outbox};

/// Why a queue command, or a message's way through the outbox, failed.
#[derive(Debug)]
pub enum Error {
    /// An id that the outbox never makes.
    BadId(String),
    /// No message with this id.
    NoSuchMessage(String),
    /// The message's file cannot be read.
    Unreadable { id: String, error: io::Error },
    /// The message's file cannot be removed.
    CannotRemove { id: String, error: io::Error },
    /// A message the outbox took, given up on: why, and where it is kept.
    NotDelivered {
        id: String,
        root: PathBuf,
        failure: Failure,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BadId(id) => write!(f, "{id:?} is not a queue id"),
            Error::NoSuchMessage(id) => write!(f, "no message {id} in the outbox"),
            Error::Unreadable { id, error } => write!(f, "cannot read {id}: {error}"),
            Error::CannotRemove { id, error } => write!(f, "cannot remove {id}: {error}"),
            Error::NotDelivered { id, root, failure } => write!(
                f,
                "{} (kept as {id} in {}/failed)",
                failure.reason(),
                root.display()
            ),
        }
    }
}

/// `sendbox queue`.
pub async fn command(args: QueueArgs) -> Result<u8, crate::error::Error> {
    let config = Config::load(args.config.as_deref())?;
    match args.action {
        QueueAction::List => listing::list(&config),
        QueueAction::Run => runner::run(&config, false).await,
        QueueAction::Flush => runner::run(&config, true).await,
        QueueAction::Show { id } => listing::show(&config, &id),
        QueueAction::Remove { id: Some(id), .. } => listing::remove(&config, &id),
        QueueAction::Remove { id: None, .. } => listing::remove_failed(&config),
    }
}

/// A failure to read or write the outbox, as the user sees it.
fn io_error(outbox: &Outbox) -> impl Fn(io::Error) -> outbox::Error + Copy + '_ {
    |e| outbox::Error::Io(format!("outbox {}: {e}", outbox.root().display()))
}

/// The outbox the configuration names. One that cannot be made says where else to put it.
/// The system spool itself is an administrator's to make (contrib/sendbox.tmpfiles, mode
/// 1733): never made here, even by root, so that its mode is never a guess.
pub fn open(settings: &QueueSettings) -> Result<Outbox, outbox::Error> {
    let spool = Path::new(config::SYSTEM_SPOOL);
    let in_spool = settings.dir.starts_with(spool);
    let opened = match in_spool && !spool.is_dir() {
        true => Err(outbox::Error::CannotCreate(format!(
            "cannot create the outbox {}: {} does not exist",
            settings.dir.display(),
            spool.display()
        ))),
        false => Outbox::open(&settings.dir),
    };
    opened.map_err(|e| {
        let outbox::Error::CannotCreate(message) = e else {
            return e;
        };
        let spool = match in_spool {
            true => format!(
                "; a user without a home keeps it in {0}/UID, which needs {0} made once by an \
                 administrator (mode 1733: contrib/sendbox.tmpfiles)",
                config::SYSTEM_SPOOL
            ),
            false => String::new(),
        };
        outbox::Error::CannotCreate(format!(
            "{message}\n  name a folder of your own with `dir` under `[queue]` in the config file{spool}"
        ))
    })
}
