//! What the workloads run against: the sendbox CLI, the native peers, the test Postfix
//! and its account, smtp-sink, and a scratch directory for messages and peer settings.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use std::{env, fs, thread};

use anyhow::Context as _;

pub const SENDER: &str = "alice@sendbox.test";
/// The test Postfix takes mail to this address and discards it, so no workload fills a
/// mailbox. (Sent to a real mailbox, the grant workload's 36 000 sends kept Postfix
/// delivering for minutes into the next workload.) The sinks do not look at it.
pub const RECIPIENT: &str = "sink@sendbox.test";
/// Postfix from `tests/postfix/setup.sh`: STARTTLS and AUTH required, and implicit TLS.
pub const POSTFIX_STARTTLS: SocketAddr = SocketAddr::new(LOOPBACK, 587);
pub const POSTFIX_IMPLICIT: SocketAddr = SocketAddr::new(LOOPBACK, 465);
const LOOPBACK: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// How many times each thing is measured.
pub struct Plan {
    pub cold_starts: usize,
    pub throughput_runs: usize,
    pub messages: u32,
    pub handshakes: usize,
    pub compiles: usize,
    pub instantiations: usize,
    /// Alternating turns of the grant workload, each way.
    pub grant_turns: usize,
    /// Alternating runs of the outbox workload, and the messages in each.
    pub outbox_runs: usize,
    pub outbox_messages: u32,
    /// Messages in each run of the TLS bulk workload, and the runs each way: fewer than
    /// `messages` and `throughput_runs`, as lettre waits some 40 ms on each message over
    /// one connection (see `tls_bulk`), 3.7 minutes a run at 5000.
    pub tls_messages: u32,
    pub tls_runs: usize,
    /// Alternating runs of the large-message workload.
    pub large_runs: usize,
    /// Messages in each batch of the DKIM workload: RSA signing in the component takes
    /// milliseconds each.
    pub dkim_messages: u32,
}

impl Plan {
    pub fn new(quick: bool) -> Self {
        if quick {
            Plan {
                cold_starts: 3,
                throughput_runs: 1,
                messages: 2000,
                handshakes: 10,
                compiles: 1,
                instantiations: 10,
                grant_turns: 2,
                outbox_runs: 1,
                outbox_messages: 200,
                tls_messages: 200,
                tls_runs: 1,
                large_runs: 1,
                dkim_messages: 100,
            }
        } else {
            Plan {
                cold_starts: 15,
                throughput_runs: 5,
                messages: 20000,
                handshakes: 50,
                compiles: 3,
                instantiations: 50,
                grant_turns: 9,
                outbox_runs: 5,
                outbox_messages: 2000,
                tls_messages: 5000,
                tls_runs: 3,
                large_runs: 5,
                dkim_messages: 1000,
            }
        }
    }
}

/// The test account on Postfix, read from what `tests/postfix/setup.sh` wrote.
pub struct Postfix {
    pub ca: PathBuf,
    pub ca_pem: String,
    pub user: String,
    pub password: String,
}

impl Postfix {
    /// The account, or why Postfix cannot be used (not set up, or not answering).
    fn find(dir: &Path) -> Result<Self, String> {
        let read = |name: &str| {
            fs::read_to_string(dir.join(name))
                .map(|s| s.trim_end().to_owned())
                .map_err(|e| {
                    format!(
                        "{}: {e}; run bash tests/postfix/setup.sh",
                        dir.join(name).display()
                    )
                })
        };
        let postfix = Postfix {
            ca: dir.join("ca.pem"),
            ca_pem: read("ca.pem")?,
            user: read("user")?,
            password: read("password")?,
        };
        for address in [POSTFIX_STARTTLS, POSTFIX_IMPLICIT] {
            TcpStream::connect_timeout(&address, Duration::from_secs(2)).map_err(|e| {
                format!("Postfix not answering on {address}: {e}; run bash tests/postfix/setup.sh")
            })?;
        }
        Ok(postfix)
    }
}

/// A program under test: where it is, or why it cannot run.
pub type Program = Result<PathBuf, String>;

/// The native clients and servers sendbox is compared with.
pub struct Peers {
    pub curl: Program,
    pub msmtp: Program,
    pub swaks: Program,
    /// The interpreter itself, not a version manager's shim (which costs a process more).
    pub python: Program,
    pub smtp_source: Program,
    pub smtp_sink: Program,
    /// lettre's pooled async SMTP transport, in a program of this crate (src/bin).
    pub lettre: Program,
    /// msmtp's minimal SMTP server. Debian ships it in msmtp-mta, which cannot be
    /// installed beside Postfix (both provide mail-transport-agent): `just bench` unpacks
    /// that package under `target/peers/` instead.
    pub msmtpd: Program,
}

impl Peers {
    fn find() -> Self {
        Peers {
            curl: find_program("curl", "curl"),
            msmtp: find_program("msmtp", "msmtp"),
            swaks: find_program("swaks", "swaks"),
            python: find_program("python3", "python3").and_then(|shim| {
                let script = "import smtplib, ssl, sys; print(sys.executable)";
                let output = Command::new(&shim)
                    .args(["-c", script])
                    .output()
                    .map_err(|e| format!("python3: {e}"))?;
                let path = String::from_utf8_lossy(&output.stdout).trim().to_owned();
                if !output.status.success() || path.is_empty() {
                    return Err("python3 has no smtplib or ssl".to_owned());
                }
                Ok(PathBuf::from(path))
            }),
            smtp_source: find_program("smtp-source", "postfix"),
            smtp_sink: find_program("smtp-sink", "postfix"),
            // `cargo build --release -p sendbox-bench` puts it beside this program.
            lettre: env::current_exe()
                .map_err(|e| format!("where is sendbox-bench: {e}"))
                .map(|exe| exe.with_file_name("lettre-peer"))
                .and_then(|peer| {
                    if peer.is_file() {
                        Ok(peer)
                    } else {
                        Err(format!(
                            "{} missing: cargo build --release -p sendbox-bench",
                            peer.display()
                        ))
                    }
                }),
            msmtpd: find_program("msmtpd", "msmtp-mta").or_else(|missing| {
                // target/release/sendbox-bench -> target/peers/msmtpd/usr/bin/msmtpd
                env::current_exe()
                    .ok()
                    .and_then(|exe| Some(exe.parent()?.parent()?.join(MSMTPD_UNPACKED)))
                    .filter(|unpacked| unpacked.is_file())
                    .ok_or(format!("{missing}, or run `just bench`, which unpacks it"))
            }),
        }
    }
}

/// Where `just bench` unpacks msmtp-mta, under the target directory.
const MSMTPD_UNPACKED: &str = "peers/msmtpd/usr/bin/msmtpd";

/// Looks for `name` on PATH and in /usr/sbin (where Postfix keeps its tools).
fn find_program(name: &str, package: &str) -> Program {
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join(name))
        .find(|candidate| {
            fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .ok_or_else(|| format!("{name} not installed: apt-get install {package}"))
}

/// Everything the workloads share.
pub struct Setup {
    pub sendbox: Program,
    pub peers: Peers,
    pub postfix: Result<Postfix, String>,
    scratch: tempfile::TempDir,
}

impl Setup {
    pub fn new(sendbox: Option<PathBuf>, postfix_dir: &Path) -> anyhow::Result<Self> {
        let sendbox = match sendbox {
            Some(path) => path,
            // `cargo build --release` puts both programs in the same directory.
            None => env::current_exe()?.with_file_name("sendbox"),
        };
        let sendbox = if sendbox.is_file() {
            Ok(sendbox)
        } else {
            Err(format!(
                "{} missing: cargo build --release -p sendbox",
                sendbox.display()
            ))
        };
        Ok(Setup {
            sendbox,
            peers: Peers::find(),
            postfix: Postfix::find(postfix_dir),
            scratch: tempfile::Builder::new()
                .prefix("sendbox-bench")
                .tempdir()
                .context("creating a scratch directory")?,
        })
    }

    /// Writes a file in the scratch directory, readable by this user only.
    pub fn scratch_file(&self, name: &str, contents: &str) -> Result<PathBuf, String> {
        let path = self.scratch.path().join(name);
        fs::write(&path, contents)
            .and_then(|()| fs::set_permissions(&path, fs::Permissions::from_mode(0o600)))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(path)
    }
}

/// Postfix's smtp-sink on a free loopback port: accepts every message and discards it.
/// Dropping it stops it.
pub struct SmtpSink {
    child: Child,
    pub address: SocketAddr,
}

impl SmtpSink {
    pub fn start(program: &Path) -> Result<Self, String> {
        let address = TcpListener::bind((LOOPBACK, 0))
            .and_then(|listener| listener.local_addr())
            .map_err(|e| format!("no free loopback port: {e}"))?;
        let mut command = Command::new(program);
        // smtp-sink refuses to run as root without a user to drop privileges to.
        if fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0) {
            command.args(["-u", "postfix"]);
        }
        let child = command
            .args([address.to_string().as_str(), "512"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start smtp-sink: {e}"))?;
        let mut sink = SmtpSink { child, address };
        for _ in 0..100 {
            if TcpStream::connect(address).is_ok() {
                return Ok(sink);
            }
            if let Ok(Some(status)) = sink.child.try_wait() {
                return Err(format!("smtp-sink exited at start: {status}"));
            }
            thread::sleep(Duration::from_millis(20));
        }
        Err(format!("smtp-sink not listening on {address} after 2 s"))
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
