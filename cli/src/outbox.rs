//! The outbox: messages accepted for delivery, kept on disk until a server takes them.
//!
//! ```text
//! OUTBOX/            mode 0700
//! ├── tmp/ID         a message being written: not accepted yet
//! ├── queue/ID       an accepted message: one JSON line (its envelope), then the message
//! ├── queue/ID.state its delivery attempts so far (JSON); absent before the first
//! ├── failed/ID      a message given up on, as it was queued
//! └── failed/ID.state  why
//! ```
//!
//! A message is accepted once `queue/ID` exists: written in `tmp/`, fsynced, renamed into
//! `queue/`, and `queue/` fsynced. Only then may anyone say it was accepted. Messages
//! accepted at the same moment share that last fsync ([`commit::GroupCommit`]). Whoever
//! delivers a message holds an exclusive lock on `queue/ID` (flock), and checks after
//! locking that the path is still that file, so that two runners never both send it.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::dsn;
use crate::escape::escaped;

pub mod commit;
pub mod entry;

pub use entry::{Attempts, Damage, Envelope};

/// A failure of the outbox itself, each saying what and where.
#[derive(Debug)]
pub enum Error {
    /// The outbox cannot be made or opened, or is not safe to use.
    CannotCreate(String),
    /// A message could not be written to disk.
    CannotWrite(String),
    /// Reading or changing the outbox failed.
    Io(String),
    /// A message larger than the outbox takes.
    TooLarge(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::CannotCreate(m) | Error::CannotWrite(m) | Error::Io(m) | Error::TooLarge(m) => {
                f.write_str(m)
            }
        }
    }
}

fn cannot_create(what: &Path, e: io::Error) -> Error {
    Error::CannotCreate(format!("cannot create the outbox {}: {e}", what.display()))
}

/// An outbox that exists but is not safe to use: not the user's own, or open to others.
fn unusable(root: &Path, why: String) -> Error {
    Error::CannotCreate(format!("cannot use the outbox {}: {why}", root.display()))
}

fn cannot_write(what: &Path, e: io::Error) -> Error {
    Error::CannotWrite(format!("cannot write {} to disk: {e}", what.display()))
}

/// The outbox's side of an envelope: the entry file holds the DSN request as sendmail's
/// -N, -R and -V words (entry.rs stands alone for the fuzzer), turned from and into the
/// library's types here only.
impl Envelope {
    /// What the outbox keeps of a message accepted `now` for delivery through `account`:
    /// the library's envelope and the options it is to be sent with.
    pub fn new(
        account: &str,
        envelope: sendbox::Envelope,
        options: &sendbox::SendOptions,
        now: u64,
    ) -> Envelope {
        let dsn = options.dsn.as_ref();
        Envelope {
            account: Some(account.to_owned()),
            sender: envelope.sender,
            recipients: envelope.recipients,
            recipients_from_headers: envelope.recipients_from_headers,
            qualify_domain: envelope.qualify_domain,
            dsn_notify: dsn.and_then(|d| d.notify).map(dsn::notify_text),
            dsn_ret: dsn.and_then(|d| d.ret).map(|r| dsn::ret_text(r).to_owned()),
            dsn_envid: dsn.and_then(|d| d.envid.clone()),
            keep_raw_header: options.keep_raw_header,
            require_tls: options.require_tls,
            accepted_at: now,
        }
    }

    /// The DSN request it was queued with; an error when its words are not ours.
    pub fn dsn(&self) -> Result<Option<sendbox::Dsn>, String> {
        Ok(dsn::request(
            self.dsn_notify.as_deref().map(dsn::notify).transpose()?,
            self.dsn_ret.as_deref().map(dsn::ret).transpose()?,
            self.dsn_envid.as_deref().map(dsn::envid).transpose()?,
        ))
    }
}

/// A queued or failed message as [`Outbox::peek`] reads it: its envelope unless its file
/// is damaged, and its attempts unless its state is.
#[derive(Debug)]
pub struct Peeked {
    pub envelope: Result<Envelope, Damage>,
    pub attempts: Result<Attempts, Damage>,
    /// The message's size in bytes (the file's, less its envelope line).
    pub size: u64,
}

/// A queued or failed message as it lies on disk, damaged or not.
#[derive(Debug)]
pub struct Stored {
    /// The whole file: the envelope line, then the message.
    pub bytes: Vec<u8>,
    pub attempts: Result<Attempts, Damage>,
}

/// One outbox directory. Its clones share one [`commit::GroupCommit`] of `queue/`.
#[derive(Debug, Clone)]
pub struct Outbox {
    root: PathBuf,
    queue_sync: Arc<commit::GroupCommit>,
}

/// A message in the queue, locked by us: nobody else delivers it while this lives.
#[derive(Debug)]
pub struct Locked {
    pub id: String,
    pub envelope: Envelope,
    pub attempts: Attempts,
    _lock: File,
}

/// The seconds since the Unix epoch, now.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Outbox {
    /// Opens the outbox at `root`, creating it (mode 0700) and its folders when missing.
    pub fn open(root: &Path) -> Result<Outbox, Error> {
        for dir in [
            root,
            &root.join("tmp"),
            &root.join("queue"),
            &root.join("failed"),
        ] {
            match fs::create_dir(dir) {
                Ok(()) => {
                    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                        .map_err(|e| cannot_create(dir, e))?;
                    sync_new_dir(dir).map_err(|e| cannot_create(dir, e))?;
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound && dir == root => {
                    fs::create_dir_all(dir).map_err(|e| cannot_create(dir, e))?;
                    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                        .map_err(|e| cannot_create(dir, e))?;
                }
                Err(e) => return Err(cannot_create(dir, e)),
            }
        }
        // Another user's folder, or one others may write to, could hand us their messages
        // or take ours.
        let metadata = fs::metadata(root).map_err(|e| cannot_create(root, e))?;
        let me = rustix::process::geteuid().as_raw();
        if metadata.uid() != me {
            return Err(unusable(
                root,
                format!("it belongs to user {}, not to {me}", metadata.uid()),
            ));
        }
        if metadata.mode() & 0o077 != 0 {
            return Err(unusable(
                root,
                format!(
                    "others may use it (mode {:o}); `chmod 700 {}` it",
                    metadata.mode() & 0o777,
                    root.display()
                ),
            ));
        }
        let queue = root.join("queue");
        Ok(Outbox {
            root: root.to_owned(),
            queue_sync: Arc::new(commit::GroupCommit::new(move || sync_dir(&queue))),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn queue(&self) -> PathBuf {
        self.root.join("queue")
    }

    fn failed(&self) -> PathBuf {
        self.root.join("failed")
    }

    /// Accepts a message: when this returns, it is on disk and survives a crash. The
    /// message comes back locked, so that a runner started meanwhile leaves it to us.
    /// Threads accepting at once share the fsync of `queue/`; each still returns only
    /// after one that began after its own rename.
    pub fn accept(&self, envelope: &Envelope, message: &[u8]) -> Result<Locked, Error> {
        if message.len() > entry::MAX_MESSAGE {
            return Err(Error::TooLarge(format!(
                "the message is {} bytes; the outbox takes at most {} MiB",
                message.len(),
                entry::MAX_MESSAGE / (1024 * 1024)
            )));
        }
        let id = new_id();
        let tmp = self.root.join("tmp").join(&id);
        let queued = self.queue().join(&id);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| cannot_create(&tmp, e))?;
        let written = (|| {
            // Waits, briefly, rather than fails: `strays` may be holding it for a moment to
            // see whether anyone is writing it (a 451 under load, before).
            file.lock()?;
            // The envelope line alone, so that the message is written without a copy.
            file.write_all(&entry::encode_line(envelope, message.len())?)?;
            file.write_all(message)?;
            file.sync_all()?;
            fs::rename(&tmp, &queued)
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(cannot_write(&tmp, e));
        }
        // Renamed, but not accepted until the rename is durable. Still locked by us, so
        // no runner takes it meanwhile, nor after a failed sync, when it goes again.
        if let Err(e) = self.queue_sync.commit() {
            let _ = fs::remove_file(&queued);
            return Err(cannot_write(&queued, e));
        }
        Ok(Locked {
            id,
            envelope: envelope.clone(),
            attempts: Attempts::default(),
            _lock: file,
        })
    }

    /// The ids in the queue, oldest first.
    pub fn ids(&self) -> io::Result<Vec<String>> {
        ids_in(&self.queue())
    }

    /// The ids given up on, oldest first.
    pub fn failed_ids(&self) -> io::Result<Vec<String>> {
        ids_in(&self.failed())
    }

    /// What the outbox holds that is not a message: names that are not ids, states
    /// without their message, and what is in `tmp/` but a file being written now (left by
    /// a crash before it was accepted), each as `folder/name`, escaped for a terminal.
    /// A state without its message, or an unlocked file in `tmp/`, counts only once it is
    /// [`SETTLING`] old: until then it may be a message being removed (its file goes
    /// first), or a file just created and not locked yet.
    pub fn strays(&self) -> io::Result<Vec<String>> {
        let mut strays = Vec::new();
        for folder in ["queue", "failed"] {
            let dir = self.root.join(folder);
            // One listing: a message arriving between two would look like a stray.
            let names = names_in(&dir)?;
            let is_message = |text: &str| is_id(text) && names.iter().any(|name| name == text);
            for name in &names {
                let text = name.to_str().unwrap_or_default();
                if is_message(text) {
                    continue;
                }
                let is_state = text
                    .strip_suffix(".state")
                    .is_some_and(|id| is_message(id) || (is_id(id) && settling(&dir.join(name))));
                if !is_state {
                    strays.push(format!("{folder}/{}", escaped(name.as_bytes())));
                }
            }
        }
        let tmp = self.root.join("tmp");
        for name in names_in(&tmp)? {
            // A writer holds its file locked until it is renamed into `queue/`. Only a
            // regular file is opened (a FIFO would block, a link lead elsewhere).
            let path = tmp.join(&name);
            let stray = match open_entry(&path) {
                Ok(file) => {
                    !matches!(file.try_lock(), Err(fs::TryLockError::WouldBlock))
                        && !settling(&path)
                }
                // Renamed into `queue/` since the listing.
                Err(e) => e.kind() != io::ErrorKind::NotFound,
            };
            if stray {
                strays.push(format!("tmp/{}", escaped(name.as_bytes())));
            }
        }
        Ok(strays)
    }

    /// The envelope and attempts of a queued message, without locking it. An error is
    /// the file's (gone, unreadable); what is wrong inside it is in the answer.
    pub fn peek(&self, id: &str) -> io::Result<Peeked> {
        peek_in(&self.queue(), checked(id)?)
    }

    /// The envelope and attempts of a message given up on (why is its last error).
    pub fn failure(&self, id: &str) -> io::Result<Peeked> {
        peek_in(&self.failed(), checked(id)?)
    }

    /// The whole queued (or else failed) file and its attempts, damaged or not.
    pub fn stored(&self, id: &str) -> io::Result<Stored> {
        let id = checked(id)?;
        for dir in [self.queue(), self.failed()] {
            match read_entry(&dir.join(id)) {
                Ok(bytes) => {
                    let attempts = read_state(&dir, id)?;
                    return Ok(Stored { bytes, attempts });
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Err(io::ErrorKind::NotFound.into())
    }

    /// Locks a queued message, or `None` when another runner has it or it is gone. A
    /// damaged file is an error (`InvalidData`) whose inner error is its [`Damage`].
    pub fn lock(&self, id: &str) -> io::Result<Option<Locked>> {
        let Some(mut file) = self.lock_file(id)? else {
            return Ok(None);
        };
        let envelope = read_head(&mut file)?
            .0
            .map_err(|damage| io::Error::new(io::ErrorKind::InvalidData, damage))?;
        Ok(Some(Locked {
            id: id.to_owned(),
            envelope,
            // The state is advice and the message the truth: a damaged state counts as no
            // attempt yet, and the next attempt's record replaces it.
            attempts: read_state(&self.queue(), id)?.unwrap_or_default(),
            _lock: file,
        }))
    }

    /// Locks a queued file without reading it: `None` when another runner has it or it is
    /// gone.
    fn lock_file(&self, id: &str) -> io::Result<Option<File>> {
        let path = self.queue().join(checked(id)?);
        let file = match open_entry(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Ok(None),
            Err(fs::TryLockError::Error(e)) => return Err(e),
        }
        // Delivered and removed (or rewritten) by another runner between open and lock.
        match fs::metadata(&path) {
            Ok(now) if now.ino() == file.metadata()?.ino() => Ok(Some(file)),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The message of a locked entry (without its envelope line).
    pub fn message(&self, locked: &Locked) -> io::Result<Vec<u8>> {
        let bytes = read_entry(&self.queue().join(&locked.id))?;
        let entry = entry::decode(&bytes)
            .map_err(|damage| io::Error::new(io::ErrorKind::InvalidData, damage))?;
        Ok(entry.message.to_vec())
    }

    /// Delivered: out of the queue for good.
    pub fn delivered(&self, locked: Locked) -> io::Result<()> {
        remove_entry(&self.queue(), &locked.id)
    }

    /// Not delivered yet: records the attempt, keeps it queued.
    pub fn retry_later(&self, locked: &mut Locked, attempts: Attempts) -> io::Result<()> {
        write_durably(
            &self.root.join("tmp"),
            &self.queue().join(format!("{}.state", locked.id)),
            &entry::encode_state(&attempts)?,
        )?;
        locked.attempts = attempts;
        Ok(())
    }

    /// Delivered to some, still due to the rest: the queued envelope now names only
    /// `recipients`, and no longer takes recipients from the header.
    pub fn narrow(&self, locked: &mut Locked, recipients: Vec<String>) -> io::Result<()> {
        let message = self.message(locked)?;
        let mut envelope = locked.envelope.clone();
        envelope.recipients = recipients;
        envelope.recipients_from_headers = false;
        let content = entry::encode(&envelope, &message)?;
        write_durably(
            &self.root.join("tmp"),
            &self.queue().join(&locked.id),
            &content,
        )?;
        locked.envelope = envelope;
        Ok(())
    }

    /// Given up on: moved to `failed/` with the reason.
    pub fn give_up(&self, locked: Locked, attempts: Attempts) -> io::Result<()> {
        let (queue, failed) = (self.queue(), self.failed());
        write_durably(
            &self.root.join("tmp"),
            &failed.join(format!("{}.state", locked.id)),
            &entry::encode_state(&attempts)?,
        )?;
        fs::rename(queue.join(&locked.id), failed.join(&locked.id))?;
        sync_dir(&failed)?;
        remove_any(&queue.join(format!("{}.state", locked.id)))?;
        sync_dir(&queue)
    }

    /// Removes a queued or failed message, damaged or not; refused while a runner is
    /// delivering it.
    pub fn remove(&self, id: &str) -> io::Result<bool> {
        match self.lock_file(id) {
            Ok(Some(_locked)) => {
                remove_entry(&self.queue(), id)?;
                return Ok(true);
            }
            // Not a regular file: no runner can be delivering it.
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                remove_entry(&self.queue(), id)?;
                return Ok(true);
            }
            Err(e) => return Err(e),
            Ok(None) => {}
        }
        let failed = self.failed();
        if fs::symlink_metadata(failed.join(checked(id)?)).is_ok() {
            remove_entry(&failed, id)?;
            return Ok(true);
        }
        if self.queue().join(id).exists() {
            return Err(io::Error::new(
                io::ErrorKind::ResourceBusy,
                "it is being delivered right now",
            ));
        }
        Ok(false)
    }
}

/// A new id: the time, then the process, then a counter; sorts by age.
fn new_id() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let time = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{}.{:09}.{}.{}",
        time.as_secs(),
        time.subsec_nanos(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The longest id: the outbox makes ids of about 40 characters.
const MAX_ID: usize = 64;

/// Whether `text` is an id as the outbox makes them (digits and dots): never a path to
/// elsewhere.
pub fn is_id(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_ID
        && text.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && !text.starts_with('.')
}

/// `id`, refused before it touches the disk unless it is one of ours.
fn checked(id: &str) -> io::Result<&str> {
    match is_id(id) {
        true => Ok(id),
        false => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{id:?} is not a queue id"),
        )),
    }
}

/// Every name in `dir`, sorted.
/// How long a file that may be part of a write or a removal in progress is given before
/// [`Outbox::strays`] names it.
const SETTLING: Duration = Duration::from_secs(60);

/// Whether `path` changed less than [`SETTLING`] ago, or is gone already.
fn settling(path: &Path) -> bool {
    match fs::symlink_metadata(path) {
        Ok(metadata) => metadata
            .modified()
            .ok()
            .and_then(|at| at.elapsed().ok())
            // A time in the future, or none, does not hide a file.
            .is_some_and(|age| age < SETTLING),
        Err(e) => e.kind() == io::ErrorKind::NotFound,
    }
}

fn names_in(dir: &Path) -> io::Result<Vec<OsString>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir)? {
        names.push(entry?.file_name());
    }
    names.sort();
    Ok(names)
}

fn ids_in(dir: &Path) -> io::Result<Vec<String>> {
    let mut ids: Vec<String> = names_in(dir)?
        .into_iter()
        .filter_map(|name| name.into_string().ok())
        .filter(|name| is_id(name))
        .collect();
    ids.sort_by_key(|id| {
        let mut parts = id.split('.').map(|p| p.parse::<u64>().unwrap_or(0));
        [(); 4].map(|()| parts.next().unwrap_or(0))
    });
    Ok(ids)
}

fn peek_in(dir: &Path, id: &str) -> io::Result<Peeked> {
    let (envelope, size) = match open_entry(&dir.join(id)) {
        Ok(mut file) => read_head(&mut file)?,
        Err(e) => (Err(damage_of(e)?), 0),
    };
    Ok(Peeked {
        envelope,
        attempts: read_state(dir, id)?,
        size,
    })
}

/// The envelope of a queued file from its first line, the message's length checked
/// against the file's size: the message itself is not read.
/// With it, the message's size.
fn read_head(file: &mut File) -> io::Result<(Result<Envelope, Damage>, u64)> {
    let length = file.metadata()?.len();
    let mut line = Vec::new();
    BufReader::new(file.take(entry::MAX_ENVELOPE_LINE as u64)).read_until(b'\n', &mut line)?;
    let size = length.saturating_sub(line.len() as u64);
    Ok((entry::decode_head(&line, length), size))
}

/// Opens a queue file for reading: a regular file only, never through a symbolic link,
/// and without blocking on a FIFO put in its place, which would hang every runner and
/// the relay's worker. What is not a regular file is an `InvalidData` error whose inner
/// error is its [`Damage`].
fn open_entry(path: &Path) -> io::Result<File> {
    use rustix::fs::OFlags;
    let not_a_file = |what| io::Error::new(io::ErrorKind::InvalidData, Damage::NotAFile(what));
    let file = OpenOptions::new()
        .read(true)
        .custom_flags((OFlags::NONBLOCK | OFlags::NOFOLLOW).bits() as i32)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(code) if code == rustix::io::Errno::LOOP.raw_os_error() => {
                not_a_file("a symbolic link")
            }
            _ => e,
        })?;
    let kind = file.metadata()?.file_type();
    if kind.is_file() {
        return Ok(file);
    }
    use std::os::unix::fs::FileTypeExt as _;
    Err(not_a_file(match kind {
        kind if kind.is_dir() => "a directory",
        kind if kind.is_fifo() => "a FIFO",
        kind if kind.is_socket() => "a socket",
        kind if kind.is_block_device() || kind.is_char_device() => "a device",
        _ => "something else",
    }))
}

/// A whole queue file, as [`open_entry`] opens it, unless it is larger than the outbox
/// ever writes.
fn read_entry(path: &Path) -> io::Result<Vec<u8>> {
    let mut file = open_entry(path)?;
    let size = file.metadata()?.len();
    if size > (entry::MAX_MESSAGE + entry::MAX_ENVELOPE_LINE) as u64 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            Damage::TooBig(size),
        ));
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The [`Damage`] an error from [`open_entry`] carries, or the error itself.
fn damage_of(error: io::Error) -> io::Result<Damage> {
    if !error.get_ref().is_some_and(|inner| inner.is::<Damage>()) {
        return Err(error);
    }
    let kind = error.kind();
    error
        .into_inner()
        .and_then(|inner| inner.downcast::<Damage>().ok())
        .map(|damage| *damage)
        .ok_or_else(|| kind.into())
}

/// The attempts kept in `dir/ID.state`; none yet when there is no such file. A state
/// that cannot be read is damage, not an error: the state is advice, the message the
/// truth, so the message is still delivered.
fn read_state(dir: &Path, id: &str) -> io::Result<Result<Attempts, Damage>> {
    match read_entry(&dir.join(format!("{id}.state"))) {
        Ok(bytes) => Ok(entry::decode_state(&bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Ok(Attempts::default())),
        Err(e) => Ok(Err(match damage_of(e) {
            Ok(Damage::NotAFile(what)) => {
                Damage::StateUnusable(format!("is not a regular file but {what}"))
            }
            Ok(damage) => damage,
            Err(e) => Damage::StateUnusable(format!("cannot be read: {e}")),
        })),
    }
}

/// Removes a message and then its state from `dir`, whatever they are (a directory put
/// in a file's place too), so that a failure leaves the message, never a half.
fn remove_entry(dir: &Path, id: &str) -> io::Result<()> {
    remove_any(&dir.join(id))?;
    remove_any(&dir.join(format!("{id}.state")))?;
    sync_dir(dir)
}

/// Removes a file or a directory tree; nothing there is fine.
fn remove_any(path: &Path) -> io::Result<()> {
    let removed = match fs::symlink_metadata(path) {
        Ok(metadata) if metadata.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    };
    match removed {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Replaces `path` with `content` so that a crash leaves the old or the new, whole.
fn write_durably(tmp_dir: &Path, path: &Path, content: &[u8]) -> io::Result<()> {
    // A directory put where a state belongs could not be renamed over.
    if fs::symlink_metadata(path).is_ok_and(|metadata| metadata.is_dir()) {
        fs::remove_dir_all(path)?;
    }
    let tmp = tmp_dir.join(format!("{}.new", new_id()));
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(content)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        sync_dir(path.parent().unwrap_or(Path::new(".")))
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// Makes a directory's entries (a rename, a new or removed file) durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Makes the entry of `dir`, just made, durable in its parent. The system spool (mode
/// 1733) lets a user make a folder there but not open the spool to sync it: then the
/// whole file system is synced through the new folder, once per user.
fn sync_new_dir(dir: &Path) -> io::Result<()> {
    match sync_dir(dir.parent().unwrap_or(Path::new("."))) {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            rustix::fs::syncfs(File::open(dir)?).map_err(io::Error::from)
        }
        done => done,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope() -> Envelope {
        Envelope {
            account: Some("work".into()),
            sender: Some("alice@example.org".into()),
            recipients: vec!["bob@example.org".into()],
            recipients_from_headers: false,
            qualify_domain: None,
            dsn_notify: None,
            dsn_ret: None,
            dsn_envid: None,
            keep_raw_header: false,
            require_tls: false,
            accepted_at: now(),
        }
    }

    #[test]
    fn a_write_or_a_removal_in_progress_is_not_named_a_stray_until_it_has_settled() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("outbox");
        let outbox = Outbox::open(&root).unwrap();
        // Created, not locked yet; and the state of a message whose file just went.
        let (tmp, state) = (
            root.join("tmp/1796000000.1.1.0"),
            root.join("queue/1796000000.2.1.0.state"),
        );
        fs::write(&tmp, "being written").unwrap();
        fs::write(&state, "{}").unwrap();
        assert_eq!(outbox.strays().unwrap(), Vec::<String>::new());
        let a_while_ago = SystemTime::now() - SETTLING - Duration::from_secs(1);
        for file in [&tmp, &state] {
            let file = File::options().write(true).open(file).unwrap();
            file.set_modified(a_while_ago).unwrap();
        }
        assert_eq!(
            outbox.strays().unwrap(),
            ["queue/1796000000.2.1.0.state", "tmp/1796000000.1.1.0"]
        );
    }
    #[test]
    fn an_accepted_message_is_queued_whole_and_locked() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(&dir.path().join("outbox")).unwrap();
        let mode = fs::metadata(outbox.root()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let locked = outbox
            .accept(&envelope(), b"Subject: x\r\n\r\nbody\r\n")
            .unwrap();
        assert_eq!(outbox.ids().unwrap(), std::slice::from_ref(&locked.id));
        assert!(outbox.lock(&locked.id).unwrap().is_none(), "locked twice");
        assert_eq!(
            outbox.message(&locked).unwrap(),
            b"Subject: x\r\n\r\nbody\r\n"
        );
        assert_eq!(
            outbox.peek(&locked.id).unwrap().envelope.unwrap(),
            envelope()
        );
        let id = locked.id.clone();
        drop(locked);
        let again = outbox.lock(&id).unwrap().expect("free once dropped");
        outbox.delivered(again).unwrap();
        assert!(outbox.ids().unwrap().is_empty());
        assert!(
            fs::read_dir(outbox.root().join("tmp"))
                .unwrap()
                .next()
                .is_none()
        );
    }

    #[test]
    fn attempts_narrowing_and_giving_up_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(&dir.path().join("outbox")).unwrap();
        let mut locked = outbox.accept(&envelope(), b"m").unwrap();
        let attempts = Attempts {
            count: 1,
            last_at: 10,
            next_at: 20,
            last_error: Some("421 busy".into()),
        };
        outbox.retry_later(&mut locked, attempts.clone()).unwrap();
        outbox
            .narrow(&mut locked, vec!["carol@example.org".into()])
            .unwrap();
        let id = locked.id.clone();
        drop(locked);
        let peeked = outbox.peek(&id).unwrap();
        assert_eq!(peeked.envelope.unwrap().recipients, ["carol@example.org"]);
        assert_eq!(peeked.attempts.unwrap(), attempts);
        let locked = outbox.lock(&id).unwrap().unwrap();
        assert_eq!(outbox.message(&locked).unwrap(), b"m");
        outbox.give_up(locked, attempts.clone()).unwrap();
        assert!(outbox.ids().unwrap().is_empty());
        assert_eq!(outbox.failed_ids().unwrap(), std::slice::from_ref(&id));
        assert_eq!(outbox.failure(&id).unwrap().attempts.unwrap(), attempts);
        assert!(outbox.remove(&id).unwrap());
        assert!(outbox.failed_ids().unwrap().is_empty());
    }

    #[test]
    fn a_damaged_entry_says_why_and_can_be_removed() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(&dir.path().join("outbox")).unwrap();
        let id = outbox.accept(&envelope(), b"m").unwrap().id;
        let file = outbox.root().join("queue").join(&id);
        let whole = fs::read(&file).unwrap();
        fs::write(&file, &whole[..10]).unwrap();

        let damage = outbox.peek(&id).unwrap().envelope.unwrap_err();
        assert!(matches!(damage, Damage::NoEnvelopeLine), "{damage}");
        let error = outbox.lock(&id).unwrap_err();
        assert!(error.get_ref().is_some_and(|e| e.is::<Damage>()), "{error}");
        assert_eq!(outbox.stored(&id).unwrap().bytes, &whole[..10]);
        assert!(outbox.remove(&id).unwrap());
        assert!(outbox.ids().unwrap().is_empty());
    }

    #[test]
    fn a_file_larger_than_the_outbox_writes_is_never_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(&dir.path().join("outbox")).unwrap();
        let too_big = entry::MAX_MESSAGE + entry::MAX_ENVELOPE_LINE;
        let id = outbox.accept(&envelope(), b"m").unwrap().id;
        // Its envelope line claims the length, and the (sparse) file has it.
        let line = entry::encode_line(&envelope(), too_big).unwrap();
        let file = File::create(outbox.root().join("queue").join(&id)).unwrap();
        (&file).write_all(&line).unwrap();
        file.set_len((line.len() + too_big) as u64).unwrap();
        let locked = outbox.lock(&id).unwrap().unwrap();
        match outbox.message(&locked) {
            Ok(bytes) => panic!("{} bytes read", bytes.len()),
            Err(error) => {
                let damage = error.get_ref().and_then(|e| e.downcast_ref::<Damage>());
                assert!(matches!(damage, Some(Damage::TooBig(_))), "{error}");
            }
        }
        // And nothing that large is taken in.
        match outbox.accept(&envelope(), &vec![0; entry::MAX_MESSAGE + 1]) {
            Ok(locked) => panic!("accepted as {}", locked.id),
            Err(refused) => assert!(matches!(refused, Error::TooLarge(_)), "{refused}"),
        }
    }

    #[test]
    fn a_damaged_state_counts_as_no_attempt_and_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(&dir.path().join("outbox")).unwrap();
        let id = outbox.accept(&envelope(), b"m").unwrap().id;
        let state = outbox.root().join("queue").join(format!("{id}.state"));
        fs::write(&state, "{\"count\": 3, \"last").unwrap();

        let peeked = outbox.peek(&id).unwrap();
        assert_eq!(peeked.envelope.unwrap(), envelope());
        assert!(matches!(peeked.attempts, Err(Damage::StateNotJson(_))));
        let mut locked = outbox.lock(&id).unwrap().unwrap();
        assert_eq!(locked.attempts, Attempts::default());
        let attempts = Attempts {
            count: 1,
            ..Attempts::default()
        };
        outbox.retry_later(&mut locked, attempts.clone()).unwrap();
        assert_eq!(outbox.peek(&id).unwrap().attempts.unwrap(), attempts);
    }

    #[test]
    fn ids_are_checked_before_they_touch_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(&dir.path().join("outbox")).unwrap();
        let long = "1".repeat(65);
        for id in ["../x", "", ".1", "1/2", "a", &long] {
            assert!(outbox.lock(id).is_err(), "{id:?}");
            assert!(outbox.remove(id).is_err(), "{id:?}");
        }
        assert!(!outbox.remove("1.2.3.4").unwrap());
    }

    #[test]
    fn an_outbox_open_to_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("outbox");
        Outbox::open(&root).unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        let error = Outbox::open(&root).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "cannot use the outbox {0}: others may use it (mode 755); `chmod 700 {0}` it",
                root.display()
            )
        );
    }

    #[test]
    fn an_outbox_that_cannot_be_made_says_so() {
        let error = Outbox::open(Path::new("/dev/null/outbox")).unwrap_err();
        assert!(
            matches!(&error, Error::CannotCreate(m) if m.contains("/dev/null/outbox")),
            "{error}"
        );
    }
}
