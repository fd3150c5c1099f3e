//! The sendbox component: the committed `.wasm` embedded in this crate, compiled once per
//! [`Sandbox`] and linked against WASI, ready to be instantiated per call.
//!
//! `build/main.rs` refuses to build when `component/sendbox.wasm` is older than the guest, proto
//! or WIT sources, so a stale component can never be tested or shipped.
//!
//! Compiling the component with Cranelift takes most of a second and tens of megabytes, so
//! no run compiles it where it need not: on x86-64 Linux the crate carries the component
//! compiled ahead of time (`component/sendbox.x86_64-linux.cwasm`, made by `just guest`
//! from the `.wasm` with this engine's settings and checked like it), and [`Sandbox::new`]
//! only loads it. Elsewhere, with the `compiler` feature, it compiles the component once
//! and keeps the compiled code in a cache directory, which is trusted only when nobody but
//! the user (or root) could have written it; [`Sandbox::cache`] says what became of it.

use std::fmt;
use std::path::PathBuf;

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};

use crate::cache;
use crate::policy::{self, Confined, Limits, NetworkGrant, Transcript};

/// The component, built from `guest/` by `just guest`.
pub const COMPONENT: &[u8] = include_bytes!("../component/sendbox.wasm");

/// [`COMPONENT`] compiled ahead of time by `just guest` ([`precompile`]) for x86-64 Linux
/// CPUs with SSE4.2 and POPCNT (x86-64-v2, any from 2009 on), with [`engine`]'s settings.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
const PRECOMPILED: Option<&[u8]> = Some(include_bytes!("../component/sendbox.x86_64-linux.cwasm"));
#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
const PRECOMPILED: Option<&[u8]> = None;

/// The target and CPU features [`PRECOMPILED`] is compiled for: x86-64-v2.
#[cfg(feature = "compiler")]
const PRECOMPILED_FOR: (&str, [&str; 5]) = (
    "x86_64-unknown-linux-gnu",
    [
        "has_sse3",
        "has_ssse3",
        "has_sse41",
        "has_sse42",
        "has_popcnt",
    ],
);

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
pub use cache::INSTALLED_DIR;

/// A wasmtime engine set up as sendbox runs components: epoch interruption on, so that
/// [`policy::confined_store`] can stop a guest that computes instead of waiting, and a
/// thread that advances the epoch for as long as the engine lives.
pub fn engine() -> anyhow::Result<Engine> {
    engine_with(None)
}

/// [`engine`], with wasmtime's pooling allocator preallocating room for `pooled`
/// concurrent instances when given.
fn engine_with(pooled: Option<u32>) -> anyhow::Result<Engine> {
    let engine = Engine::new(&config(pooled))?;
    policy::start_epoch_ticker(&engine);
    Ok(engine)
}

/// The component compiled ahead of time, as `just guest` makes
/// `component/sendbox.x86_64-linux.cwasm`: for [`PRECOMPILED_FOR`], with the settings every
/// [`engine`] has (the pooling allocator changes none that compiled code depends on).
#[cfg(feature = "compiler")]
pub fn precompile() -> anyhow::Result<Vec<u8>> {
    let mut config = config(None);
    let (target, features) = PRECOMPILED_FOR;
    config.target(target)?;
    for feature in features {
        // SAFETY: the code runs only where `Component::deserialize` finds these features.
        unsafe {
            config.cranelift_flag_enable(feature);
        }
    }
    Engine::new(&config)?
        .precompile_component(COMPONENT)
        .map_err(|e| anyhow::Error::from(e).context("compiling the sendbox component"))
}

/// Gives back the memory of `bytes` of the binary once they have been copied: their pages
/// are the executable file's, read back from it should they ever be read again.
#[cfg(target_os = "linux")]
pub(crate) fn release(bytes: &'static [u8]) {
    const PAGE: usize = 4096;
    let start = (bytes.as_ptr() as usize).next_multiple_of(PAGE);
    let end = (bytes.as_ptr() as usize + bytes.len()) / PAGE * PAGE;
    if end > start {
        // SAFETY: whole pages inside a read-only static, which nothing writes: dropping
        // them only makes the next read fault them in from the file again.
        let _ = unsafe {
            rustix::mm::madvise(
                start as *mut std::ffi::c_void,
                end - start,
                rustix::mm::Advice::LinuxDontNeed,
            )
        };
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn release(_bytes: &'static [u8]) {}

/// The settings of every engine sendbox makes.
fn config(pooled: Option<u32>) -> Config {
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
    config
}

/// What became of the compiled-code cache when a [`Sandbox`] was set up
/// ([`Sandbox::cache`]).
///
/// [`Sandbox`]: crate::Sandbox
/// [`Sandbox::cache`]: crate::Sandbox::cache
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CacheUse {
    /// None was needed: the component's precompiled code was loaded.
    Precompiled,
    /// No cache directory was given: the component was compiled in memory.
    Off,
    /// The compiled component was loaded from this file: the cache, or for the precompiled
    /// code a copy installed with sendbox, mapped rather than copied.
    Loaded(PathBuf),
    /// The component was compiled (or its precompiled code copied from the binary) and
    /// stored in this file for next time.
    Stored(PathBuf),
    /// The component was compiled, but storing it failed (only a cost: the next
    /// [`Sandbox`](crate::Sandbox) compiles again). The text says why.
    NotStored(String),
    /// The cache could have been written by someone other than the user, so it was neither
    /// read nor written and the component was compiled in memory. The text names the path
    /// and what is wrong with it; a program may want to show it as a warning.
    Refused(String),
}

impl fmt::Display for CacheUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheUse::Precompiled => write!(f, "the component's precompiled code, no cache"),
            CacheUse::Off => write!(f, "no compiled-code cache"),
            CacheUse::Loaded(path) => write!(f, "compiled code loaded from {}", path.display()),
            CacheUse::Stored(path) => write!(f, "compiled code stored in {}", path.display()),
            CacheUse::NotStored(why) => write!(f, "compiled code not cached: {why}"),
            CacheUse::Refused(why) => write!(f, "compiled-code cache not used: {why}"),
        }
    }
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
    /// Compile the component (with the cache) even where its precompiled code would run:
    /// for the cache's own tests. Needs the `compiler` feature.
    pub compile_at_run_time: bool,
    /// Where a package installed a copy of the precompiled code, mapped from there rather
    /// than copied from the binary: [`INSTALLED_DIR`](crate::component::INSTALLED_DIR).
    pub installed_dir: Option<PathBuf>,
}

impl SandboxOptions {
    /// The default cache: `$SENDBOX_CACHE_DIR`, else `$XDG_CACHE_HOME/sendbox`, else
    /// `~/.cache/sendbox` when the home directory exists (a daemon's `/nonexistent` is
    /// never made); no cache otherwise. The precompiled code installed by a package in
    /// [`INSTALLED_DIR`] is used when it is there.
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
            compile_at_run_time: false,
            installed_dir: Some(PathBuf::from(INSTALLED_DIR)),
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
        let precompiled = match PRECOMPILED {
            _ if options.compile_at_run_time => Err("compiling at run time was asked for".into()),
            // SAFETY: compiled by `just guest` from COMPONENT, checked like it by the build
            // script; wasmtime checks that this engine and CPU can run it.
            Some(compiled) => cache::load_precompiled(
                &engine,
                compiled,
                options.installed_dir.as_deref(),
                options.cache_dir.as_deref(),
            ),
            None => Err(format!(
                "it is precompiled for x86-64 Linux only, not for {}",
                std::env::consts::ARCH
            )),
        };
        let (component, cache) = match precompiled {
            Ok(loaded) => loaded,
            Err(why) => compile_here(&engine, options, why)?,
        };
        Self::link(engine, component, cache)
    }

    /// Compiles another build of the component (for example one under test, or one made by
    /// `sendbox grant`), uncached.
    #[cfg(feature = "compiler")]
    pub fn from_component(wasm: &[u8]) -> anyhow::Result<Self> {
        Self::from_component_pooled(wasm, None)
    }

    /// [`Sandbox::from_component`], with room for `pooled` concurrent instances preallocated
    /// as [`SandboxOptions::pooled_instances`] says.
    #[cfg(feature = "compiler")]
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

/// The built-in component compiled here, through the cache when there is one, since its
/// precompiled code cannot be used (`why`).
#[cfg(feature = "compiler")]
fn compile_here(
    engine: &Engine,
    options: &SandboxOptions,
    _why: String,
) -> anyhow::Result<(Component, CacheUse)> {
    match &options.cache_dir {
        Some(dir) => cache::load_or_compile(engine, COMPONENT, dir),
        None => Ok((compile(engine, COMPONENT)?, CacheUse::Off)),
    }
}

#[cfg(not(feature = "compiler"))]
fn compile_here(
    _engine: &Engine,
    _options: &SandboxOptions,
    why: String,
) -> anyhow::Result<(Component, CacheUse)> {
    anyhow::bail!(
        "cannot load the sendbox component: {why}, and this build has no compiler (build \
         sendbox with the `compiler` feature of the `sendbox` crate)"
    )
}

#[cfg(feature = "compiler")]
pub(crate) fn compile(engine: &Engine, wasm: &[u8]) -> anyhow::Result<Component> {
    Component::new(engine, wasm)
        .map_err(|e| anyhow::Error::from(e).context("compiling the sendbox component"))
}

#[cfg(all(
    test,
    feature = "compiler",
    target_arch = "x86_64",
    target_os = "linux"
))]
mod tests {
    use super::*;

    #[test]
    fn the_precompiled_component_is_what_this_build_compiles() {
        let compiled = precompile().unwrap();
        // Not assert_eq: a diff of megabytes helps nobody.
        assert!(
            Some(&compiled[..]) == PRECOMPILED,
            "component/sendbox.x86_64-linux.cwasm is stale (wasmtime, its settings or the \
             component changed): run `just guest` and commit it"
        );
    }

    /// `just deb` names the packaged copy by `sha256sum | cut -c1-16`, as the build script
    /// names it.
    #[test]
    fn the_precompiled_codes_file_name_is_its_hash() {
        use sha2::Digest as _;
        let hash: String = sha2::Sha256::digest(PRECOMPILED.unwrap())
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            cache::precompiled_name(),
            format!("sendbox-{hash}.x86_64-linux.cwasm")
        );
    }

    #[test]
    fn the_built_in_component_is_loaded_precompiled_not_compiled() {
        let sandbox = Sandbox::with_options(&SandboxOptions::default()).unwrap();
        assert_eq!(sandbox.cache(), &CacheUse::Precompiled);
        let pooled = SandboxOptions {
            pooled_instances: Some(4),
            ..SandboxOptions::default()
        };
        assert_eq!(
            Sandbox::with_options(&pooled).unwrap().cache(),
            &CacheUse::Precompiled
        );
    }
}
