//! Workload 9, large messages: one message of about 25 MB to Postfix's port 2526 (which
//! takes up to 64 MiB and discards mail to sink@sendbox.test, so no mailbox fills up), as
//! a raw file (`sendbox send --raw`) and composed with a 25 MB attachment (`--attach`,
//! base64 makes it about 34 MB). The peer is curl uploading the same bytes
//! (`--upload-file`, streamed from disk): for the composed message, the bytes the
//! component builds, got from `sendbox::prepare`. Runs alternate (A B A B); each tool is a
//! whole process measured by the kernel. Issue 13's targets: peak memory at most 3 times
//! the message, time at most 1.1 times curl's.

use std::path::{Path, PathBuf};
use std::process::Command;

use sendbox::{ComposedMessage, Envelope, Mailbox, SendOptions};
use tokio::runtime::Runtime;

use crate::report::{Runs, Table, push_figures, run_measured};
use crate::setup::{Plan, RECIPIENT, SENDER, Setup};

/// Postfix's port for large messages (tests/postfix/setup.sh).
const LARGE_PORT: &str = "127.0.0.1:2526";
/// The raw message's and the attachment's size.
const SIZE: usize = 25_000_000;

pub fn run(setup: &Setup, plan: &Plan, runtime: &Runtime, table: &mut Table) {
    eprintln!("large messages");
    const PEER: &str = "curl --upload-file, the same bytes";
    let files = match write_files(setup, runtime) {
        Ok(files) => files,
        Err(reason) => {
            for workload in ["25 MB raw message", "25 MB attachment, composed"] {
                let failed = || Err(reason.clone());
                push_figures(table, workload, &failed(), PEER, &failed(), 1);
            }
            return;
        }
    };
    let raw = vec!["--raw".to_owned(), files.raw.display().to_string()];
    let mut composed: Vec<String> = ["--subject", "large", "--body", "see attached", "--attach"]
        .iter()
        .map(|a| a.to_string())
        .collect();
    composed.push(files.attachment.display().to_string());
    for (workload, args, upload) in [
        ("25 MB raw message", raw, &files.raw),
        ("25 MB attachment, composed", composed, &files.composed),
    ] {
        let megabytes = std::fs::metadata(upload).map_or(0.0, |m| m.len() as f64 / 1e6);
        let workload = format!("{workload} ({megabytes:.1} MB sent), Postfix :2526");
        let (ours, theirs) = measure(setup, plan, &args, upload);
        push_figures(table, &workload, &ours, PEER, &theirs, 1);
    }
}

/// The raw message, the attachment, and the message the component composes from it.
struct Files {
    raw: PathBuf,
    attachment: PathBuf,
    composed: PathBuf,
}

fn write_files(setup: &Setup, runtime: &Runtime) -> Result<Files, String> {
    let mut raw = format!(
        "From: {SENDER}\r\nTo: {RECIPIENT}\r\nSubject: sendbox-bench large\r\n\
         Date: Fri, 04 Dec 2026 12:00:00 +0000\r\nMessage-ID: <large@sendbox.test>\r\n\r\n"
    );
    let line = "The quick brown fox jumps over the lazy dog, again and again and again......\r\n";
    while raw.len() + line.len() <= SIZE {
        raw.push_str(line);
    }
    let raw = setup.scratch_file("large.eml", &raw)?;
    // Bytes base64 cannot shrink, from a fixed xorshift: the same every run.
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let bytes: Vec<u8> = (0..SIZE)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let attachment = raw.with_file_name("large.bin");
    std::fs::write(&attachment, &bytes).map_err(|e| format!("{}: {e}", attachment.display()))?;
    let composed = composed_bytes(runtime, bytes)?;
    let composed_path = raw.with_file_name("large-composed.eml");
    std::fs::write(&composed_path, composed)
        .map_err(|e| format!("{}: {e}", composed_path.display()))?;
    Ok(Files {
        raw,
        attachment,
        composed: composed_path,
    })
}

/// What `sendbox send --attach large.bin` sends, built by the component itself.
fn composed_bytes(runtime: &Runtime, content: Vec<u8>) -> Result<Vec<u8>, String> {
    let sandbox = sendbox::Sandbox::new().map_err(|e| format!("{e:#}"))?;
    let mut message = ComposedMessage::new(Mailbox::new(SENDER));
    message.to.push(Mailbox::new(RECIPIENT));
    message.subject = "large".into();
    message.text = Some("see attached".into());
    message.attachments.push(sendbox::Attachment {
        filename: "large.bin".into(),
        media_type: "application/octet-stream".into(),
        content,
    });
    let prepared = runtime
        .block_on(sendbox::prepare(
            &sandbox,
            &Envelope::from_headers(),
            message,
            &SendOptions::default(),
        ))
        .map_err(|e| e.to_string())?;
    Ok(prepared.content)
}

/// Alternating runs of `sendbox send ARGS` and of curl uploading `upload`.
fn measure(
    setup: &Setup,
    plan: &Plan,
    args: &[String],
    upload: &Path,
) -> (Result<Runs, String>, Result<Runs, String>) {
    let mut ours = setup.sendbox.clone().map(|_| Runs::default());
    let mut theirs = setup.peers.curl.clone().map(|_| Runs::default());
    for _ in 0..plan.large_runs {
        if let (Ok(program), Ok(runs)) = (&setup.sendbox, ours.as_mut()) {
            let mut command = Command::new(program);
            command
                .args(["send", "--server", LARGE_PORT, "--tls", "none"])
                .args(["--from", SENDER, "--to", RECIPIENT])
                .args(args);
            match run_measured(&mut command) {
                Ok(usage) => runs.usages.push(usage),
                Err(reason) => ours = Err(reason),
            }
        }
        if let (Ok(program), Ok(runs)) = (&setup.peers.curl, theirs.as_mut()) {
            let mut command = Command::new(program);
            command
                .args(["-sS", "--url", &format!("smtp://{LARGE_PORT}")])
                .args([
                    "--mail-from",
                    SENDER,
                    "--mail-rcpt",
                    RECIPIENT,
                    "--upload-file",
                ])
                .arg(upload);
            match run_measured(&mut command) {
                Ok(usage) => runs.usages.push(usage),
                Err(reason) => theirs = Err(reason),
            }
        }
    }
    (ours, theirs)
}
