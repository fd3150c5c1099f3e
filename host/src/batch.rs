//! Many messages over several concurrent sessions, each in its own confined instance:
//! what `sendbox batch` runs.
//!
//! Each worker keeps one session (one connection) for as many messages as it can, and
//! opens a new one only when the server or the network ended the old one.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::mailer::{Envelope, Error, Mailer, SendOptions, Session};

/// One message to send.
#[derive(Clone, Debug)]
pub struct Job {
    /// Sender and recipients.
    pub envelope: Envelope,
    /// The RFC 5322 message, shared between jobs that send the same one.
    pub message: Arc<[u8]>,
}

/// What happened to one job.
#[derive(Debug)]
pub enum Outcome {
    /// Accepted for every recipient.
    Sent,
    /// Accepted for some recipients, refused for others.
    PartlyRefused,
    /// Not delivered to anyone.
    Failed(Error),
}

/// Totals for a batch.
#[derive(Debug, Default)]
pub struct Summary {
    /// Accepted for every recipient.
    pub sent: usize,
    /// Accepted for some recipients only.
    pub partly_refused: usize,
    /// Not delivered.
    pub failed: usize,
    /// Wall time for the whole batch.
    pub elapsed: Duration,
    /// The first few failures, by job number, for the report.
    pub failures: Vec<(usize, String)>,
}

impl Summary {
    /// Messages per second that reached at least one recipient.
    pub fn rate(&self) -> f64 {
        (self.sent + self.partly_refused) as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }
}

/// How many failures a summary keeps word for word.
const FAILURES_KEPT: usize = 10;

/// Sends every job, with `options` (DSN, DKIM...), over `concurrency` sessions;
/// `progress` is called after each job. Jobs are taken from `jobs` one at a time, as a
/// session is ready for the next, so a lazy iterator keeps only the jobs in flight in
/// memory, however many it yields.
pub async fn send_all<J>(
    mailer: Arc<Mailer>,
    jobs: J,
    concurrency: usize,
    options: SendOptions,
    progress: impl Fn(&Outcome) + Send + Sync + 'static,
) -> Summary
where
    J: IntoIterator<Item = Job>,
    J::IntoIter: Send + 'static,
{
    let options = Arc::new(options);
    let started = Instant::now();
    let queue = Arc::new(Mutex::new(jobs.into_iter().enumerate()));
    let summary = Arc::new(Mutex::new(Summary::default()));
    let progress = Arc::new(progress);
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (mailer, queue, summary, progress, options) = (
                mailer.clone(),
                queue.clone(),
                summary.clone(),
                progress.clone(),
                options.clone(),
            );
            tokio::spawn(async move {
                let mut session: Option<Session> = None;
                loop {
                    let Some((number, job)) = queue.lock().expect("queue lock").next() else {
                        break;
                    };
                    let outcome = send_one(&mailer, &mut session, &job, &options).await;
                    progress(&outcome);
                    record(&mut summary.lock().expect("summary lock"), number, outcome);
                }
                if let Some(session) = session {
                    let _ = session.close().await;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("a batch worker panicked");
    }
    let mut summary = std::mem::take(&mut *summary.lock().expect("summary lock"));
    summary.elapsed = started.elapsed();
    summary
}

/// Sends one job over the worker's session, opening one if it has none, and keeps the
/// session for the next job only while it is open.
async fn send_one(
    mailer: &Mailer,
    session: &mut Option<Session>,
    job: &Job,
    options: &SendOptions,
) -> Outcome {
    if session.is_none() {
        match mailer.open().await {
            Ok(opened) => *session = Some(opened),
            Err(error) => return Outcome::Failed(error),
        }
    }
    let open = session.as_mut().expect("opened above");
    let result = open
        .send_with(&job.envelope, &job.message[..], options)
        .await;
    // Asked after a delivery too: one that a later failure cut short ends the session.
    if !open.is_open().await {
        *session = None;
    }
    match result {
        Ok(delivery) if delivery.refused.is_empty() => Outcome::Sent,
        Ok(_) => Outcome::PartlyRefused,
        Err(error) => Outcome::Failed(error),
    }
}

fn record(summary: &mut Summary, number: usize, outcome: Outcome) {
    match outcome {
        Outcome::Sent => summary.sent += 1,
        Outcome::PartlyRefused => summary.partly_refused += 1,
        Outcome::Failed(error) => {
            summary.failed += 1;
            if summary.failures.len() < FAILURES_KEPT {
                summary.failures.push((number, error.to_string()));
            }
        }
    }
}
