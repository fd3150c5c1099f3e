//! The sandbox policy: what one instance of the component may reach and use.
//!
//! Granted: TCP connections to the resolved addresses of the one server, on its one port;
//! clocks; random numbers (TLS needs them); stderr for the transcript.
//! Not granted: any other address or port, UDP, name lookups, files (no preopened
//! directories), environment variables, arguments, stdin, stdout. Memory is capped and
//! the run time bounded.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// How often the epoch advances; a spinning guest yields to the host at least this often.
const EPOCH_TICK: Duration = Duration::from_millis(10);
/// How long the host lets a call run past the component's own overall deadline before it
/// stops the call. The component ends a slow dialogue itself and says in which phase (a
/// `timeout`); the host's limit is the backstop for a component that does not, so it
/// must not fire first.
const RUN_TIME_GRACE: Duration = Duration::from_secs(60);
/// Most bytes of stderr kept from a guest that is not asked for a transcript
/// (enough for a panic message, not enough to grow without bound).
const QUIET_STDERR: usize = 64 * 1024;

/// The network the component may reach: these socket addresses, by TCP, and nothing else.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkGrant {
    addresses: Vec<SocketAddr>,
}

impl NetworkGrant {
    /// A grant of exactly these socket addresses.
    pub fn new(addresses: Vec<SocketAddr>) -> Self {
        NetworkGrant { addresses }
    }

    /// The granted socket addresses.
    pub fn addresses(&self) -> &[SocketAddr] {
        &self.addresses
    }

    /// The whole policy for sockets. A TCP connect first binds the unspecified address
    /// implicitly; that bind is allowed, as it reaches nothing by itself.
    pub fn allows(&self, address: SocketAddr, use_: SocketAddrUse) -> bool {
        match use_ {
            SocketAddrUse::TcpBind => address.ip().is_unspecified() && address.port() == 0,
            SocketAddrUse::TcpConnect => self.addresses.contains(&address),
            _ => false,
        }
    }
}

/// Bounds on one call.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Most linear memory the component may have, in bytes.
    pub memory_bytes: usize,
    /// Longest a call may run, waiting included, before the host stops it. By default a
    /// minute more than the component's own deadline for a call (`total-ms`, 15 minutes).
    pub run_time: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        // The deadline the component applies when the caller sets none: proto's.
        let component_deadline = sendbox_proto::Timeouts::default().total_ms;
        Limits {
            memory_bytes: 64 << 20,
            run_time: Duration::from_millis(component_deadline.into()) + RUN_TIME_GRACE,
        }
    }
}

/// Where the component's stderr (its transcript) goes.
#[derive(Clone, Debug, Default)]
pub enum Transcript {
    /// Not asked for; a little is kept for error reports.
    #[default]
    Off,
    /// Written to this process's stderr as it happens.
    Stderr,
    /// Kept in memory, for the caller to read.
    Capture(TranscriptBuffer),
}

/// A bounded in-memory transcript; clones share the same buffer.
#[derive(Clone)]
pub struct TranscriptBuffer(MemoryOutputPipe);

impl TranscriptBuffer {
    /// A buffer that keeps at most `capacity` bytes (the component's writes beyond it fail
    /// and are dropped; the transcript never stops a send).
    pub fn new(capacity: usize) -> Self {
        TranscriptBuffer(MemoryOutputPipe::new(capacity))
    }

    /// What the component wrote so far.
    pub fn contents(&self) -> String {
        String::from_utf8_lossy(&self.0.contents()).into_owned()
    }
}

impl std::fmt::Debug for TranscriptBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TranscriptBuffer({} bytes)", self.0.contents().len())
    }
}

/// A socket use the policy refused.
#[derive(Clone, Copy, Debug)]
pub struct Denied {
    /// The address the component asked for.
    pub address: SocketAddr,
    /// What it wanted to do with it.
    pub use_: SocketAddrUse,
}

/// The state of one store: the WASI context built from the policy, and its limits.
pub struct Confined {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
    stderr: Option<MemoryOutputPipe>,
    denied: Arc<Mutex<Vec<Denied>>>,
}

impl WasiView for Confined {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl Confined {
    /// What the component wrote to stderr, when it was kept in memory.
    pub fn stderr(&self) -> String {
        self.stderr
            .as_ref()
            .map(|pipe| String::from_utf8_lossy(&pipe.contents()).into_owned())
            .unwrap_or_default()
    }

    /// Socket uses the policy refused during the call.
    pub fn denied(&self) -> Vec<Denied> {
        self.denied.lock().expect("denied list lock").clone()
    }
}

/// A store for one call, confined by `grant` and `limits`.
pub fn confined_store(
    engine: &Engine,
    grant: NetworkGrant,
    limits: Limits,
    transcript: &Transcript,
) -> Store<Confined> {
    let denied = Arc::new(Mutex::new(Vec::new()));
    let log = denied.clone();
    let mut wasi = WasiCtxBuilder::new();
    wasi.allow_tcp(true)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .allow_blocking_current_thread(false)
        .socket_addr_check(move |address, use_| {
            let allowed = grant.allows(address, use_);
            if !allowed {
                log.lock()
                    .expect("denied list lock")
                    .push(Denied { address, use_ });
            }
            Box::pin(async move { allowed })
        });
    let stderr = match transcript {
        Transcript::Stderr => {
            wasi.stderr(std::io::stderr());
            None
        }
        Transcript::Off => Some(MemoryOutputPipe::new(QUIET_STDERR)),
        Transcript::Capture(buffer) => Some(buffer.0.clone()),
    };
    if let Some(pipe) = &stderr {
        wasi.stderr(pipe.clone());
    }
    let state = Confined {
        wasi: wasi.build(),
        table: ResourceTable::new(),
        limits: StoreLimitsBuilder::new()
            .memory_size(limits.memory_bytes)
            // The sender has a handful of core instances; a component made by
            // `sendbox grant` adds the grant's and the policy's.
            .instances(32)
            .build(),
        stderr,
        denied,
    };
    let mut store = Store::new(engine, state);
    store.limiter(|state| &mut state.limits);
    // Yield to the host on every epoch tick, so the host's timer can stop a spinning guest.
    store.epoch_deadline_async_yield_and_update(1);
    store
}

/// Advances `engine`'s epoch every [`EPOCH_TICK`] until the engine is dropped.
pub(crate) fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("sendbox-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawning the epoch thread");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_run_time_is_the_components_deadline_and_a_minute() {
        // The README says 960 s: a change to proto's total must change it too.
        assert_eq!(Limits::default().run_time, Duration::from_secs(960));
    }

    #[test]
    fn only_the_granted_address_and_port_may_be_reached() {
        let server: SocketAddr = "127.0.0.1:2525".parse().unwrap();
        let grant = NetworkGrant::new(vec![server]);
        assert!(grant.allows(server, SocketAddrUse::TcpConnect));
        assert!(grant.allows("0.0.0.0:0".parse().unwrap(), SocketAddrUse::TcpBind));
        assert!(grant.allows("[::]:0".parse().unwrap(), SocketAddrUse::TcpBind));
        for (address, use_) in [
            ("127.0.0.1:2526", SocketAddrUse::TcpConnect),
            ("127.0.0.2:2525", SocketAddrUse::TcpConnect),
            ("[::ffff:127.0.0.1]:2525", SocketAddrUse::TcpConnect),
            ("0.0.0.0:2525", SocketAddrUse::TcpBind),
            ("127.0.0.1:0", SocketAddrUse::TcpBind),
            ("127.0.0.1:2525", SocketAddrUse::UdpSend),
            ("127.0.0.1:2525", SocketAddrUse::UdpBind),
            ("127.0.0.1:2525", SocketAddrUse::TcpListen),
            ("127.0.0.1:2525", SocketAddrUse::TcpAccept),
        ] {
            assert!(
                !grant.allows(address.parse().unwrap(), use_),
                "{address} {use_:?} was allowed"
            );
        }
    }
}
