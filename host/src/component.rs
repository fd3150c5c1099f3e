//! The sendbox component: the committed `.wasm` embedded in this crate, compiled once per
//! [`Sandbox`] and linked against WASI, ready to be instantiated per call.
//!
//! `build/main.rs` refuses to build when `component/sendbox.wasm` is older than the guest, proto
//! or WIT sources, so a stale component can never be tested or shipped.
//!
//! Compiling the component with Cranelift takes most of a second, so [`Sandbox::new`] keeps
//! the compiled code in a cache directory, keyed by the component's hash, the wasmtime
//! version and the engine's settings, and later loads it in milliseconds.
//!
//! That cache is a trust boundary: what is loaded from it is native code that runs outside
//! the sandbox. It is used only when nobody but the user (or root) could have put the file
//! there, checked as OpenSSH's `StrictModes` checks `~/.ssh`: the file is a regular file
//! (not a symlink) and the file and its directory are owned by the user or root and not
//! writable by group or others, and so is every directory above, up to `/`, except a
//! root-owned directory with the sticky bit (like `/tmp`). Otherwise the component is
//! compiled in memory, the cache is neither read nor written, and [`Sandbox::cache`] says
//! why. The library prints nothing; the caller decides whether to warn.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};

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

/// What became of the compiled-code cache when a [`Sandbox`] was set up
/// ([`Sandbox::cache`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CacheUse {
    /// No cache directory was given: the component was compiled in memory.
    Off,
    /// The compiled component was loaded from this file.
    Loaded(PathBuf),
    /// The component was compiled and stored in this file for next time.
    Stored(PathBuf),
    /// The component was compiled, but storing it failed (only a cost: the next
    /// [`Sandbox`] compiles again). The text says why.
    NotStored(String),
    /// The cache could have been written by someone other than the user, so it was neither
    /// read nor written and the component was compiled in memory. The text names the path
    /// and what is wrong with it; a program may want to show it as a warning.
    Refused(String),
}

impl std::fmt::Display for CacheUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CacheUse::Off => write!(f, "no compiled-code cache"),
            CacheUse::Loaded(path) => write!(f, "compiled code loaded from {}", path.display()),
            CacheUse::Stored(path) => write!(f, "compiled code stored in {}", path.display()),
            CacheUse::NotStored(why) => write!(f, "compiled code not cached: {why}"),
            CacheUse::Refused(why) => write!(f, "compiled-code cache not used: {why}"),
        }
    }
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
            Some(dir) => load_or_compile(&engine, COMPONENT, dir)?,
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

fn compile(engine: &Engine, wasm: &[u8]) -> anyhow::Result<Component> {
    Component::new(engine, wasm)
        .map_err(|e| anyhow::Error::from(e).context("compiling the sendbox component"))
}

/// Loads the compiled component from `dir`, or compiles it and stores it there, provided
/// the cache can be trusted ([`trusted_cache_dir`], [`trusted_cache_file`]). A cache that
/// cannot be read or written only costs the compilation.
fn load_or_compile(
    engine: &Engine,
    wasm: &[u8],
    dir: &Path,
) -> anyhow::Result<(Component, CacheUse)> {
    let dir = match trusted_cache_dir(dir) {
        Ok(dir) => dir,
        Err(why) => return Ok((compile(engine, wasm)?, CacheUse::Refused(why))),
    };
    let path = dir.join(format!("sendbox-{}.cwasm", cache_key(engine, wasm)));
    match trusted_cache_file(&path) {
        Ok(Some(file)) => {
            if let Some(component) = load(engine, file) {
                return Ok((component, CacheUse::Loaded(path)));
            }
            // Not a compiled component for this engine: compile and replace it below.
        }
        Ok(None) => {}
        Err(why) => return Ok((compile(engine, wasm)?, CacheUse::Refused(why))),
    }
    let compiled = engine
        .precompile_component(wasm)
        .map_err(|e| anyhow::Error::from(e).context("compiling the sendbox component"))?;
    let cache = match store_atomically(&dir, &path, &compiled) {
        Ok(()) => CacheUse::Stored(path),
        Err(e) => CacheUse::NotStored(format!("writing {}: {e}", path.display())),
    };
    // SAFETY: these bytes were produced by this engine a moment ago.
    let component = unsafe { Component::deserialize(engine, &compiled) }
        .map_err(anyhow::Error::from)
        .context("loading the compiled component")?;
    Ok((component, cache))
}

/// Loads a cache file that [`trusted_cache_file`] opened and checked, from the open file so
/// that nothing can be swapped in between. It is mapped rather than read where it can be
/// (through `/proc/self/fd`, which names the open file itself): then only the code a run
/// touches is ever resident, instead of a copy of all of it.
fn load(engine: &Engine, mut file: std::fs::File) -> Option<Component> {
    use std::io::Read as _;
    use std::os::fd::AsRawFd as _;
    // SAFETY (both calls): the file is a regular file in a directory only the user (or
    // root) can write, owned by the user or root and writable by nobody else (checked on
    // the open file), and named by the hash of what it was compiled from: this function's
    // own output. It is replaced by a rename, never changed in place, so a mapping of it
    // stays as it was. wasmtime also checks its header against this engine and refuses a
    // mismatch, which falls back to compiling.
    let open_file = format!("/proc/self/fd/{}", file.as_raw_fd());
    if let Ok(component) = unsafe { Component::deserialize_file(engine, &open_file) } {
        return Some(component);
    }
    let mut compiled = Vec::new();
    file.read_to_end(&mut compiled).ok()?;
    unsafe { Component::deserialize(engine, &compiled) }.ok()
}

/// The effective user id, for the ownership checks of the cache.
fn current_uid() -> u32 {
    unsafe extern "C" {
        safe fn geteuid() -> u32;
    }
    geteuid()
}

/// Why a file or directory with this owner and mode could be written by someone other than
/// the user or root; `None` when it cannot.
fn untrusted_because(metadata: &std::fs::Metadata, ancestor: bool) -> Option<String> {
    use std::os::unix::fs::MetadataExt as _;
    let (owner, mode, user) = (metadata.uid(), metadata.mode(), current_uid());
    if owner != user && owner != 0 {
        return Some(format!("owned by uid {owner}, not by uid {user} or root"));
    }
    let sticky_root_directory = ancestor && owner == 0 && mode & 0o1000 != 0;
    if mode & 0o022 != 0 && !sticky_root_directory {
        let who = match mode & 0o022 {
            0o002 => "others",
            0o020 => "its group",
            _ => "its group and others",
        };
        return Some(format!("writable by {who} (mode {:o})", mode & 0o7777));
    }
    None
}

/// Checks a directory above the cache directory.
fn check_ancestors(path: &Path) -> Result<(), String> {
    for ancestor in path.ancestors() {
        let metadata =
            std::fs::metadata(ancestor).map_err(|e| format!("{}: {e}", ancestor.display()))?;
        if let Some(why) = untrusted_because(&metadata, true) {
            return Err(format!("{} (above the cache) is {why}", ancestor.display()));
        }
    }
    Ok(())
}

/// The cache directory with symlinks resolved, created (mode 0700) if absent, once it is
/// known that nobody but the user or root can write to it or to a directory above it.
fn trusted_cache_dir(dir: &Path) -> Result<PathBuf, String> {
    let dir = std::path::absolute(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if std::fs::symlink_metadata(&dir).is_err() {
        // Check where it would be created before creating it.
        let existing = dir
            .ancestors()
            .find(|a| std::fs::symlink_metadata(a).is_ok())
            .unwrap_or(Path::new("/"));
        let existing = existing
            .canonicalize()
            .map_err(|e| format!("{}: {e}", existing.display()))?;
        check_ancestors(&existing)?;
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let canonical = dir
        .canonicalize()
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let metadata =
        std::fs::metadata(&canonical).map_err(|e| format!("{}: {e}", canonical.display()))?;
    if !metadata.is_dir() {
        return Err(format!("{} is not a directory", canonical.display()));
    }
    if let Some(why) = untrusted_because(&metadata, false) {
        return Err(format!(
            "the cache directory {} is {why}",
            canonical.display()
        ));
    }
    if let Some(parent) = canonical.parent() {
        check_ancestors(parent)?;
    }
    Ok(canonical)
}

/// The cache file, open for reading, if it exists and is trusted: a regular file, not a
/// symlink, owned by the user or root and writable by nobody else. `Ok(None)` when there is
/// none yet; an error when there is one that must not be used (nor overwritten).
fn trusted_cache_file(path: &Path) -> Result<Option<std::fs::File>, String> {
    use std::os::unix::fs::MetadataExt as _;
    let before = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    if before.file_type().is_symlink() {
        return Err(format!("the cache file {} is a symlink", path.display()));
    }
    if !before.is_file() {
        return Err(format!(
            "the cache file {} is not a regular file",
            path.display()
        ));
    }
    if let Some(why) = untrusted_because(&before, false) {
        return Err(format!("the cache file {} is {why}", path.display()));
    }
    // Open it, then make sure the open file is the one just checked (no symlink or other
    // file put in its place in between), as O_NOFOLLOW with fstat would.
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let after = file
        .metadata()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if (after.dev(), after.ino()) != (before.dev(), before.ino())
        || untrusted_because(&after, false).is_some()
    {
        return Err(format!(
            "the cache file {} changed while it was opened",
            path.display()
        ));
    }
    Ok(Some(file))
}

/// The component's SHA-256, with wasmtime's version and settings folded in.
fn cache_key(engine: &Engine, wasm: &[u8]) -> String {
    let mut settings = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut settings);
    let mut hasher = Sha256::new();
    hasher.update(wasm);
    hasher.update(settings.finish().to_le_bytes());
    hasher
        .finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes to a new temporary file (mode 0600, never through an existing name or symlink)
/// and renames it, so a reader never sees half a file.
fn store_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let temporary = dir.join(format!(".sendbox-{}-{nanos}.tmp", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)
        .and_then(|mut file| file.write_all(bytes));
    let result = written.and_then(|()| std::fs::rename(&temporary, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiled_code_is_cached_and_a_bad_cache_file_is_replaced() {
        let dir = std::env::temp_dir().join(format!("sendbox-cache-test-{}", std::process::id()));
        let options = SandboxOptions {
            cache_dir: Some(dir.clone()),
            pooled_instances: None,
        };
        Sandbox::with_options(&options).unwrap();
        let cached: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        assert_eq!(cached.len(), 1, "{cached:?}");
        assert!(cached[0].extension().is_some_and(|e| e == "cwasm"));

        std::fs::write(&cached[0], b"not a compiled component").unwrap();
        Sandbox::with_options(&options).expect("a bad cache file is only a cache miss");
        assert_ne!(
            std::fs::read(&cached[0]).unwrap(),
            b"not a compiled component"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_cache_others_can_write_to_is_not_used() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("sendbox-open-cache-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let options = SandboxOptions {
            cache_dir: Some(dir.clone()),
            pooled_instances: None,
        };
        Sandbox::with_options(&options).unwrap();
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            0,
            "compiled code was stored"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
