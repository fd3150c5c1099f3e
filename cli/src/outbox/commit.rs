//! Group commit: one fsync of `queue/` covers every message renamed into it before that
//! fsync began.
//!
//! A message is accepted once its rename into `queue/` is durable, which takes an fsync of
//! the folder that *begins after* the rename. Threads accepting at the same moment (the
//! relay's clients) need not each pay for one. After its rename, each joins the open
//! batch; the first to find no sync running closes that batch to newcomers and syncs once
//! for all its members, who each joined after their own rename: so the sync began after
//! every member's rename. Whoever arrives while it runs joins the next batch. A failed
//! sync fails every member of its batch.

use std::fmt;
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};

/// The sync it runs for each batch: an fsync of `queue/` (a test's own in unit tests).
type SyncFn = Box<dyn Fn() -> io::Result<()> + Send + Sync>;

pub struct GroupCommit {
    sync: SyncFn,
    state: Mutex<State>,
    synced: Condvar,
}

struct State {
    /// The batch newcomers join; its sync has not begun.
    open: Arc<Batch>,
    /// A sync runs, for a batch no longer open.
    syncing: bool,
}

/// The members of one sync: its outcome, set (under the state's lock) when it is over.
#[derive(Default)]
struct Batch {
    outcome: OnceLock<Result<(), (io::ErrorKind, String)>>,
}

impl GroupCommit {
    pub fn new(sync: impl Fn() -> io::Result<()> + Send + Sync + 'static) -> GroupCommit {
        GroupCommit {
            sync: Box::new(sync),
            state: Mutex::new(State {
                open: Arc::default(),
                syncing: false,
            }),
            synced: Condvar::new(),
        }
    }

    /// Returns once a sync that began after this call began has succeeded, or with its
    /// error. Call it after the change the sync is to make durable (the rename).
    pub fn commit(&self) -> io::Result<()> {
        let mut state = self.lock();
        let batch = state.open.clone();
        loop {
            if let Some(outcome) = batch.outcome.get() {
                return outcome
                    .clone()
                    .map_err(|(kind, message)| io::Error::new(kind, message));
            }
            if !state.syncing {
                // Ours is still the open batch: a batch leaves `open` only to be synced,
                // and has its outcome before `syncing` is false again. Close it, sync.
                state.open = Arc::default();
                state.syncing = true;
                drop(state);
                let outcome = (self.sync)();
                let mut state = self.lock();
                let _ = batch.outcome.set(match &outcome {
                    Ok(()) => Ok(()),
                    Err(e) => Err((e.kind(), e.to_string())),
                });
                state.syncing = false;
                drop(state);
                self.synced.notify_all();
                return outcome;
            }
            state = self
                .synced
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many wait in the open batch (for the tests).
    #[cfg(test)]
    fn waiting(&self) -> usize {
        Arc::strong_count(&self.lock().open) - 1
    }
}

impl fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GroupCommit")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::mpsc;
    use std::thread;

    /// One sync as the injected function saw it, on a clock of events.
    #[derive(Clone, Copy, Debug)]
    struct Synced {
        began: u64,
        ended: u64,
        ok: bool,
    }

    #[test]
    fn a_commit_returns_only_after_a_sync_that_began_after_its_rename() {
        let clock = Arc::new(AtomicU64::new(0));
        let syncs = Arc::new(Mutex::new(Vec::<Synced>::new()));
        let commit = {
            let (clock, syncs) = (clock.clone(), syncs.clone());
            Arc::new(GroupCommit::new(move || {
                let began = clock.fetch_add(1, Ordering::SeqCst);
                thread::yield_now();
                // Every fifth sync fails.
                let ok = syncs.lock().unwrap().len() % 5 != 4;
                let ended = clock.fetch_add(1, Ordering::SeqCst);
                syncs.lock().unwrap().push(Synced { began, ended, ok });
                match ok {
                    true => Ok(()),
                    false => Err(io::Error::other("the disk failed")),
                }
            }))
        };
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (clock, commit) = (clock.clone(), commit.clone());
                thread::spawn(move || {
                    (0..200)
                        .map(|_| {
                            let renamed = clock.fetch_add(1, Ordering::SeqCst);
                            let ok = commit.commit().is_ok();
                            (renamed, ok, clock.fetch_add(1, Ordering::SeqCst))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let commits: Vec<_> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        let syncs = syncs.lock().unwrap().clone();
        for (renamed, ok, returned) in &commits {
            // A sync of the same outcome, begun after the rename and over before the
            // return: never one begun before the rename, nor one still running.
            let covered = syncs
                .iter()
                .any(|s| s.ok == *ok && s.began > *renamed && s.ended < *returned);
            let around: Vec<_> = syncs
                .iter()
                .filter(|s| s.ended > *renamed && s.began < *returned)
                .collect();
            assert!(
                covered,
                "renamed at {renamed}, {ok} at {returned}: {around:?}"
            );
        }
        assert!(commits.iter().any(|c| !c.1), "no sync failed");
        assert!(syncs.len() <= commits.len());
    }

    #[test]
    fn those_who_arrive_during_a_sync_share_the_next_and_its_failure() {
        let (began, began_seen) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        let released = Mutex::new(released);
        let count = Arc::new(AtomicU64::new(0));
        let commit = {
            let count = count.clone();
            Arc::new(GroupCommit::new(move || {
                match count.fetch_add(1, Ordering::SeqCst) {
                    // The first sync waits until the test lets it go.
                    0 => {
                        began.send(()).unwrap();
                        released.lock().unwrap().recv().unwrap();
                        Ok(())
                    }
                    1 => Err(io::Error::new(io::ErrorKind::StorageFull, "disk full")),
                    _ => Ok(()),
                }
            }))
        };
        let first = {
            let commit = commit.clone();
            thread::spawn(move || commit.commit())
        };
        began_seen.recv().unwrap();
        // Three more renames while the first sync runs: that sync began before them, so
        // none of them may return on it.
        let later: Vec<_> = (0..3)
            .map(|_| {
                let commit = commit.clone();
                thread::spawn(move || commit.commit())
            })
            .collect();
        while commit.waiting() < 3 {
            thread::yield_now();
        }
        release.send(()).unwrap();
        assert!(first.join().unwrap().is_ok());
        for waiter in later {
            let error = waiter.join().unwrap().unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::StorageFull, "{error}");
        }
        // One sync for the three together, and it failed for all three.
        assert_eq!(count.load(Ordering::SeqCst), 2);
        // The next commit gets a sync of its own.
        commit.commit().unwrap();
        assert_eq!(count.load(Ordering::SeqCst), 3);
    }
}
