//! The sendbox component: the committed `.wasm` embedded in this crate, compiled once per
//! [`Sandbox`] and linked against WASI, ready to be instantiated per call.
//!
//! `build/main.rs` refuses to build when `component/sendbox.wasm` is older than the guest, proto
//! or WIT sources, so a stale component can never be tested or shipped.
//!
//! Compiling the component with Cranelift takes most of a second, so [`Sandbox::new`] keeps
//! the compiled code in a cache directory, which is trusted only when nobody but the user
//! (or root) could have written it; [`Sandbox::cache`] says what became of it.

use std::path::PathBuf;

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};

use crate::cache;
pub use crate::cache::CacheUse;
use crate::policy::{self, Confined, Limits, NetworkGrant, Transcript};

/// The component, built from `guest/` by `just guest`.
pub const COMPONENT: &[u8] = include_bytes!("../component/sendbox.wasm");

/// Bindings generated from `wit/mail.wit`; the WIT documents every type.
#[allow(missing_docs)]
mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "sender",
        exports: { default: async },
    });
}

pub use bindings::exports::sendbox::mail::mail_sender as wit;
pub use bindings::{Sender, SenderPre};

/// A wasmtime engine set up as sendbox runs components: epoch interruption on, so that
/// [`policy::confined_store`] can stop a guest that computes instead of waiting, and a
/// thread that advances the epoch for as long as the engine lives.
pub fn engine() -> anyhow::Result<Engine> {
    engine_with(None)
}

/// [`engine`], with wasmtime's pooling allocator preallocating room for `pooled`
/// concurrent instances when given.
fn engine_with(pooled: Option<u32>) -> anyhow::Result<Engine> {
    let mut config = Config::new();
    config.epoch_interruption(true);
    if let Some(instances) = pooled {
        // The component has a handful of core instances, memories and tables, and a granted
        // one (`sendbox grant`) twice as many instances; leave room.
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(instances)
            .total_core_instances(instances * 32)
            .total_memories(instances * 4)
            .total_tables(instances * 8)
            .total_stacks(instances)
            .max_memory_size(Limits::default().memory_bytes);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    let engine = Engine::new(&config)?;
    policy::start_epoch_ticker(&engine);
    Ok(engine)
}

/// How a [`Sandbox`] is set up.
#[derive(Clone, Debug, Default)]
pub struct SandboxOptions {
    /// Where compiled code is cached; `None` compiles in memory every time.
    pub cache_dir: Option<PathBuf>,
    /// Preallocate instances for this many concurrent sessions (the pooling allocator),
    /// for many sessions in one process. Each session's memory is then capped at
    /// [`Limits::default`]'s size.
    pub pooled_instances: Option<u32>,
}

impl SandboxOptions {
    /// The default cache: `$SENDBOX_CACHE_DIR`, else `$XDG_CACHE_HOME/sendbox`, else
    /// `~/.cache/sendbox` when the home directory exists (a daemon's `/nonexistent` is
    /// never made); no cache otherwise.
    pub fn cached() -> Self {
        let env = |name| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let cache_dir = env("SENDBOX_CACHE_DIR")
            .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("sendbox")))
            .or_else(|| {
                env("HOME")
                    .filter(|home| home.is_dir())
                    .map(|d| d.join(".cache").join("sendbox"))
            });
        SandboxOptions {
            cache_dir,
            pooled_instances: None,
        }
    }
}

/// A compiled, linked component, shared by every send.
#[derive(Clone)]
pub struct Sandbox {
    engine: Engine,
    pre: SenderPre<Confined>,
    cache: CacheUse,
}

impl Sandbox {
    /// The embedded component, from the default cache ([`SandboxOptions::cached`]).
    pub fn new() -> anyhow::Result<Self> {
        Self::with_options(&SandboxOptions::cached())
    }

    /// The embedded component, set up as `options` say.
    pub fn with_options(options: &SandboxOptions) -> anyhow::Result<Self> {
        let engine = engine_with(options.pooled_instances)?;
        let (component, cache) = match &options.cache_dir {
            Some(dir) => cache::load_or_compile(&engine, COMPONENT, dir)?,
            None => (compile(&engine, COMPONENT)?, CacheUse::Off),
        };
        Self::link(engine, component, cache)
    }

    /// Compiles another build of the component (for example one under test, or one made by
    /// `sendbox grant`), uncached.
    pub fn from_component(wasm: &[u8]) -> anyhow::Result<Self> {
        Self::from_component_pooled(wasm, None)
    }

    /// [`Sandbox::from_component`], with room for `pooled` concurrent instances preallocated
    /// as [`SandboxOptions::pooled_instances`] says.
    pub fn from_component_pooled(wasm: &[u8], pooled: Option<u32>) -> anyhow::Result<Self> {
        let engine = engine_with(pooled)?;
        let component = compile(&engine, wasm)?;
        Self::link(engine, component, CacheUse::Off)
    }

    fn link(engine: Engine, component: Component, cache: CacheUse) -> anyhow::Result<Self> {
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        let pre = SenderPre::new(linker.instantiate_pre(&component)?)?;
        Ok(Sandbox { engine, pre, cache })
    }

    /// Whether the compiled component came from the cache, went into it, or why the cache
    /// was not used. The library never prints; a program that wants to tell its user that
    /// the cache was refused checks for [`CacheUse::Refused`].
    pub fn cache(&self) -> &CacheUse {
        &self.cache
    }

    /// A fresh instance in a store confined by the policy: TCP to `grant` only, memory
    /// and run time bounded by `limits`. [`crate::Mailer`] is built on this; use it
    /// directly to call the WIT interface yourself.
    pub async fn instantiate(
        &self,
        grant: NetworkGrant,
        limits: Limits,
        transcript: &Transcript,
    ) -> anyhow::Result<(Store<Confined>, Sender)> {
        let mut store = policy::confined_store(&self.engine, grant, limits, transcript);
        let sender = self.pre.instantiate_async(&mut store).await?;
        Ok((store, sender))
    }
}

pub(crate) fn compile(engine: &Engine, wasm: &[u8]) -> anyhow::Result<Component> {
    Component::new(engine, wasm)
        .map_err(|e| anyhow::Error::from(e).context("compiling the sendbox component"))
}
