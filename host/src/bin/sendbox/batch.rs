//! `sendbox batch`: many messages over K concurrent sandboxed sessions, with a progress
//! bar and a one-line summary that scripts and the benchmark read:
//! `sent N, refused R, failed F in S s (X messages/s)`.

use std::path::Path;
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressStyle};
use sendbox::batch::{self, Job, Outcome};
use sendbox::{Envelope, SandboxOptions};

use crate::args::BatchArgs;
use crate::{Stop, exit, mailer};

pub async fn run(args: BatchArgs) -> Result<u8, Stop> {
    let envelope = Envelope {
        sender: args.from.clone(),
        recipients: args.to.clone(),
    };
    let messages = messages(&args).map_err(|m| Stop(exit::NOINPUT, m))?;
    let jobs: Vec<Job> = messages
        .into_iter()
        .map(|message| Job {
            envelope: envelope.clone(),
            message,
        })
        .collect();
    // Room for every session at once, preallocated (plus one spare for a reconnect).
    let options = SandboxOptions {
        pooled_instances: Some(args.concurrency + 1),
        ..SandboxOptions::cached()
    };
    let mailer = Arc::new(mailer(&args.connection, &options).await?);

    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(jobs.len() as u64).with_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} {per_sec} eta {eta}")
                .expect("a valid template"),
        )
    };
    let ticker = bar.clone();
    let summary = batch::send_all(mailer, jobs, args.concurrency as usize, move |outcome| {
        if let Outcome::Failed(error) = outcome {
            ticker.suspend(|| eprintln!("sendbox: {error}"));
        }
        ticker.inc(1);
    })
    .await;
    bar.finish_and_clear();

    println!(
        "sent {}, refused {}, failed {} in {:.3} s ({:.1} messages/s)",
        summary.sent,
        summary.partly_refused,
        summary.failed,
        summary.elapsed.as_secs_f64(),
        summary.rate()
    );
    Ok(match (summary.failed, summary.partly_refused) {
        (0, 0) => exit::OK,
        (0, _) => exit::NOUSER,
        _ => exit::TEMPFAIL,
    })
}

/// The message bytes: N copies of --raw (shared, not copied), or each file of --dir.
fn messages(args: &BatchArgs) -> Result<Vec<Arc<[u8]>>, String> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    };
    if let Some(path) = &args.raw {
        let message: Arc<[u8]> = read(path)?.into();
        return Ok(vec![message; args.count]);
    }
    let dir = args.dir.as_deref().expect("clap requires --raw or --dir");
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.is_file())
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|path| read(path).map(Into::into))
        .collect()
}
