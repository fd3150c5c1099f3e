//! Workload 6, the grant: one message at a time to Postfix on 127.0.0.1:25 (plaintext),
//! each in a fresh instance, through the sender made by `sendbox grant` against the plain
//! sender, both run in this process by the sendbox host, once with each instance's memories
//! mapped on demand and once with the pooling allocator. The two alternate, a batch of
//! sends each turn; the rows give the medians of wall time and of CPU time (this process's
//! user + system time from /proc, so the host's work counts too) per message, and the
//! granted component's size.

use std::process::Command;
use std::time::{Duration, Instant};

use sendbox::{Envelope, Mailer, Sandbox, Server, TlsMode};
use tokio::runtime::Runtime;

use crate::report::{Measure, Outcome, Row, Table, Unit};
use crate::setup::{Plan, RECIPIENT, SENDER, Setup};

/// Sends per turn: enough for /proc's 10 ms CPU clock to resolve 0.01 ms per message
/// (with 200, two ticks more made a 13% difference).
const BATCH: u32 = 1000;

pub fn run(setup: &Setup, plan: &Plan, runtime: &Runtime, table: &mut Table) {
    eprintln!(
        "grant: {} turns of {BATCH} sends each way, per allocation strategy",
        plan.grant_turns
    );
    let granted = setup
        .sendbox
        .clone()
        .and_then(|program| granted_component(&program));
    table.rows.push(Row::alone(
        "granted component size (sendbox grant)",
        granted.as_ref().map_err(Clone::clone).map(|granted| {
            let bytes = granted.len();
            Measure::new(bytes as f64 / 1024.0, Unit::KiB).with_note(format!("{bytes} bytes"))
        }),
    ));
    // Each instance's memories are mapped and unmapped one by one by default (`sendbox
    // send`, `Mailer`), and taken from a preallocated pool with `pooled_instances` (batches).
    for (allocation, pooled) in [
        ("memories mapped per instance", None),
        ("pooling allocator", Some(4)),
    ] {
        let measured = granted.clone().and_then(|granted| {
            let sandbox = |wasm: &[u8]| {
                Sandbox::from_component_pooled(wasm, pooled).map_err(|e| format!("{e:#}"))
            };
            let (plain, granted) = (sandbox(sendbox::component::COMPONENT)?, sandbox(&granted)?);
            let mailers = runtime.block_on(async {
                Ok::<_, String>((mailer(plain).await?, mailer(granted).await?))
            })?;
            alternate(plan, runtime, &mailers)
        });
        let (ours, theirs) = match measured {
            Ok((ours, theirs)) => (Ok(ours), Ok(theirs)),
            Err(reason) => (Err(reason.clone()), Err(reason)),
        };
        for (what, pick) in [("wall", 0), ("CPU", 1)] {
            let figure = |samples: &Result<[Vec<Duration>; 2], String>| -> Outcome {
                samples.clone().map(|s| Measure::millis(&s[pick]))
            };
            table.rows.push(Row {
                workload: format!(
                    "{what} time per message through the grant, Postfix :25, fresh instance each, {allocation}"
                ),
                sendbox: figure(&ours),
                peer: "the same sender without the grant".to_owned(),
                peer_value: Some(figure(&theirs)),
            });
        }
    }
}

/// `sendbox grant --server 127.0.0.1:25`, read back.
fn granted_component(program: &std::path::Path) -> Result<Vec<u8>, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = dir.path().join("granted.wasm");
    let output = Command::new(program)
        .args(["grant", "--server", "127.0.0.1:25", "-o"])
        .arg(&path)
        .output()
        .map_err(|e| format!("cannot run sendbox grant: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "sendbox grant failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    std::fs::read(&path).map_err(|e| e.to_string())
}

async fn mailer(sandbox: Sandbox) -> Result<Mailer, String> {
    let server = Server::new("127.0.0.1", 25, TlsMode::InsecurePlaintext);
    Mailer::new(sandbox, server, None)
        .await
        .map_err(|e| e.to_string())
}

/// Per-message wall and CPU times, granted then plain, from alternating turns.
#[allow(clippy::type_complexity)]
fn alternate(
    plan: &Plan,
    runtime: &Runtime,
    (plain, granted): &(Mailer, Mailer),
) -> Result<([Vec<Duration>; 2], [Vec<Duration>; 2]), String> {
    let envelope = Envelope::new(SENDER, vec![RECIPIENT.to_owned()]);
    let message = format!("From: {SENDER}\r\nTo: {RECIPIENT}\r\nSubject: grant bench\r\n\r\nx\r\n");
    let turn = |mailer: &Mailer| -> Result<(Duration, Duration), String> {
        let (wall, cpu) = (Instant::now(), cpu_time()?);
        for _ in 0..BATCH {
            runtime
                .block_on(mailer.send(&envelope, message.as_bytes()))
                .map_err(|e| e.to_string())?;
        }
        let per = |d: Duration| d / BATCH;
        Ok((per(wall.elapsed()), per(cpu_time()? - cpu)))
    };
    turn(granted)?;
    turn(plain)?;
    let (mut ours, mut theirs) = ([Vec::new(), Vec::new()], [Vec::new(), Vec::new()]);
    for _ in 0..plan.grant_turns {
        let (wall, cpu) = turn(granted)?;
        ours[0].push(wall);
        ours[1].push(cpu);
        let (wall, cpu) = turn(plain)?;
        theirs[0].push(wall);
        theirs[1].push(cpu);
    }
    Ok((ours, theirs))
}

/// This process's user + system CPU time so far (/proc/self/stat, in clock ticks of
/// 10 ms, as Linux reports them to user space).
fn cpu_time() -> Result<Duration, String> {
    let stat = std::fs::read_to_string("/proc/self/stat").map_err(|e| e.to_string())?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    // utime and stime are fields 14 and 15 of the line; the first after the name is 3.
    match (ticks(11), ticks(12)) {
        (Some(user), Some(system)) => Ok(Duration::from_millis((user + system) * 10)),
        _ => Err("cannot read /proc/self/stat".to_owned()),
    }
}
