//! The component stamp, `host/component/sendbox.wasm.sources`: the list of what the
//! committed component is built from, each input with its SHA-256, and the component's own.
//!
//! `just guest` builds the component, then runs the build script with `SENDBOX_UPDATE_STAMP=1`,
//! which calls [`gather`] with the dep-info file that cargo wrote for the guest build and the
//! package list of `cargo tree -p sendbox-guest --target wasm32-wasip2 -e no-dev`, and writes
//! the stamp ([`render`]). Every other build of the host calls [`verify`]: it hashes exactly
//! the listed inputs again (no wasm toolchain needed) and refuses a mismatch. So a change to
//! what the component is compiled from stops the build until the component is rebuilt, and
//! a change to anything else (a proto test, a host-only dependency) does not.
//!
//! One line per input, so that a reviewer sees what is covered and which input changed:
//!
//! ```text
//! file guest/src/lib.rs <sha256>                         a source file rustc read (dep-info)
//! tree wit <sha256>                                      every file under wit/
//! toml Cargo.toml [profile.guest] <sha256>               a whole table of a manifest
//! toml Cargo.toml [workspace.dependencies] rustls <sha256>   one key of a table
//! just Justfile guest_rustflags <sha256>                 a `name := value` line of the Justfile
//! lock rustls 0.23.46 <sha256>                           name, version, source, checksum in Cargo.lock
//! component <sha256>                                     the component itself
//! ```
//!
//! A `toml` line hashes the parsed value, so comments and layout do not count. The unit
//! tests run as the host's `stamp` test target (`stamp_test.rs`).

use std::cell::OnceCell;
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use toml::{Table, Value};

/// The first lines of the stamp.
pub const HEADER: &str = "# Written by `just guest`, checked by host/build/main.rs (see host/build/stamp.rs). Do not edit.\n\
# What host/component/sendbox.wasm is built from, each with its SHA-256; the host's build\n\
# script hashes these again and refuses to build when one differs.\n";

/// The directories whose every file is an input, whether or not rustc names it.
const TREES: &[&str] = &["wit"];
/// Files that are inputs without appearing in the dep-info.
const FILES: &[&str] = &["rust-toolchain.toml"];
/// Tables (and keys) of the root manifest that change how the guest is compiled. The rest of
/// it (members, the dev profile, workspace dependencies the guest does not use) does not.
const ROOT_TABLES: &[(&str, Option<&str>)] = &[
    ("workspace", Some("resolver")),
    ("workspace.package", None),
    ("profile.release", None),
    ("profile.guest", None),
];
/// The Justfile variable holding the guest build's RUSTFLAGS.
const RUSTFLAGS_VARIABLE: &str = "guest_rustflags";

/// One thing the component is built from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Input {
    /// A file, relative to the workspace root.
    File(String),
    /// Every file under a directory, relative to the workspace root.
    Tree(String),
    /// A table of a TOML file, or one key of it.
    Toml {
        file: String,
        table: String,
        key: Option<String>,
    },
    /// A `name := value` line of a Justfile.
    Just { file: String, name: String },
    /// A package's entry in Cargo.lock.
    Lock { name: String, version: String },
}

impl Input {
    /// The stamp line without its hash.
    pub fn describe(&self) -> String {
        match self {
            Input::File(path) => format!("file {path}"),
            Input::Tree(path) => format!("tree {path}"),
            Input::Toml { file, table, key } => match key {
                None => format!("toml {file} [{table}]"),
                Some(key) => format!("toml {file} [{table}] {key}"),
            },
            Input::Just { file, name } => format!("just {file} {name}"),
            Input::Lock { name, version } => format!("lock {name} {version}"),
        }
    }

    fn parse(words: &[&str]) -> Option<Input> {
        let owned = |s: &&str| s.to_string();
        let table = |s: &&str| Some(s.strip_prefix('[')?.strip_suffix(']')?.to_string());
        Some(match words {
            ["file", path] => Input::File(owned(path)),
            ["tree", path] => Input::Tree(owned(path)),
            ["toml", file, t, key @ ..] if key.len() <= 1 => Input::Toml {
                file: owned(file),
                table: table(t)?,
                key: key.first().map(owned),
            },
            ["just", file, name] => Input::Just {
                file: owned(file),
                name: owned(name),
            },
            ["lock", name, version] => Input::Lock {
                name: owned(name),
                version: owned(version),
            },
            _ => return None,
        })
    }
}

/// The workspace whose files the inputs are read from.
struct Workspace<'a> {
    root: &'a Path,
    /// Cargo.lock, parsed once for all the `lock` lines.
    lock: OnceCell<Result<Table, String>>,
}

impl<'a> Workspace<'a> {
    fn new(root: &'a Path) -> Self {
        Workspace {
            root,
            lock: OnceCell::new(),
        }
    }

    /// The SHA-256 of what `input` is now, or why it cannot be read.
    fn digest(&self, input: &Input) -> Result<String, String> {
        let mut hasher = Sha256::new();
        match input {
            Input::File(path) => hasher.update(self.read(path)?),
            Input::Tree(path) => {
                let mut files = Vec::new();
                collect(&self.root.join(path), &mut files);
                files.sort();
                for file in files {
                    let contents = fs::read(&file)
                        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
                    hasher.update(relative(self.root, &file).unwrap_or_default());
                    hasher.update([0]);
                    hasher.update((contents.len() as u64).to_le_bytes());
                    hasher.update(&contents);
                }
            }
            Input::Toml { file, table, key } => {
                let document = self.toml(file)?;
                let table = table
                    .split('.')
                    .try_fold(&document, |table, name| table.get(name)?.as_table());
                let selected = match (table, key) {
                    (Some(table), None) => Some(canonical_table(table)),
                    (Some(table), Some(key)) => table.get(key).map(canonical),
                    (None, _) => None,
                };
                // An absent table or key is an input too: adding it changes the build.
                hasher.update(selected.as_deref().unwrap_or("\0absent"));
            }
            Input::Just { file, name } => {
                let text = self.text(file)?;
                let line = just_variable(&text, name)
                    .ok_or_else(|| format!("{file} no longer sets `{name}`"))?;
                hasher.update(line);
            }
            Input::Lock { name, version } => {
                let lock = self.lock.get_or_init(|| self.toml("Cargo.lock"));
                let packages = lock.as_ref()?.get("package").and_then(Value::as_array);
                let entry = packages
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_table)
                    .find(|p| string(p, "name") == name && string(p, "version") == version)
                    .ok_or_else(|| format!("Cargo.lock no longer has {name} {version}"))?;
                for key in ["name", "version", "source", "checksum"] {
                    hasher.update(string(entry, key));
                    hasher.update([0]);
                }
            }
        }
        Ok(hex(&hasher.finalize()))
    }

    fn read(&self, path: &str) -> Result<Vec<u8>, String> {
        fs::read(self.root.join(path)).map_err(|e| format!("cannot read {path}: {e}"))
    }

    fn text(&self, path: &str) -> Result<String, String> {
        fs::read_to_string(self.root.join(path)).map_err(|e| format!("cannot read {path}: {e}"))
    }

    fn toml(&self, path: &str) -> Result<Table, String> {
        (self.text(path)?.parse()).map_err(|e| format!("cannot parse {path}: {e}"))
    }
}

/// The string at `key`, or "" when there is none (a lock entry of a path package has no
/// source or checksum).
fn string<'a>(table: &'a Table, key: &str) -> &'a str {
    table.get(key).and_then(Value::as_str).unwrap_or("")
}

/// `value` written out with each table's keys sorted, so that its hash follows what the
/// TOML says, and stays the same if some dependency turns on toml's `preserve_order`.
fn canonical(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        Value::Integer(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Boolean(b) => b.to_string(),
        Value::Datetime(d) => d.to_string(),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(canonical).collect();
            format!("[{}]", items.join(","))
        }
        Value::Table(table) => canonical_table(table),
    }
}

fn canonical_table(table: &Table) -> String {
    let mut entries: Vec<String> = table
        .iter()
        .map(|(key, value)| format!("{key:?}={}", canonical(value)))
        .collect();
    entries.sort();
    format!("{{{}}}", entries.join(","))
}

/// What the component is built from, given the guest build's dep-info file and
/// `cargo tree -p sendbox-guest --target wasm32-wasip2 -e no-dev --prefix none --format {p}`.
pub fn gather(root: &Path, depinfo: &str, packages: &str) -> Result<Vec<Input>, String> {
    let mut inputs = BTreeSet::new();
    inputs.extend(TREES.iter().map(|tree| Input::Tree(tree.to_string())));
    inputs.extend(FILES.iter().map(|file| Input::File(file.to_string())));
    let files = depinfo_files(depinfo);
    if files.is_empty() {
        return Err("the guest's dep-info names no files".into());
    }
    for file in files {
        // Files outside the workspace belong to registry packages, covered by their lock
        // entries; files under a tree are already covered by it.
        let Some(relative) = relative(root, Path::new(&file)) else {
            continue;
        };
        if !TREES
            .iter()
            .any(|tree| relative.starts_with(&format!("{tree}/")))
        {
            inputs.insert(Input::File(relative));
        }
    }
    for (table, key) in ROOT_TABLES {
        inputs.insert(Input::Toml {
            file: "Cargo.toml".into(),
            table: table.to_string(),
            key: key.map(str::to_string),
        });
    }
    inputs.insert(Input::Just {
        file: "Justfile".into(),
        name: RUSTFLAGS_VARIABLE.into(),
    });
    let workspace = Workspace::new(root);
    let mut any = false;
    // Lines such as `rustls v0.23.46`, `sendbox-proto v0.1.0 (/work/proto)`, `serde_derive
    // v1.0.229 (proc-macro)`, or a repeat ending in `(*)`.
    for line in packages.lines() {
        let mut words = line.split_whitespace();
        let (Some(name), Some(version)) = (words.next(), words.next()) else {
            continue;
        };
        let Some(version) = version.strip_prefix('v') else {
            return Err(format!("unexpected line in the package list: {line}"));
        };
        any = true;
        inputs.insert(Input::Lock {
            name: name.to_string(),
            version: version.to_string(),
        });
        // A workspace member: its manifest, and the workspace dependencies it inherits.
        let member = words
            .filter_map(|w| w.strip_prefix('(')?.strip_suffix(')'))
            .find_map(|dir| relative(root, Path::new(dir)));
        if let Some(member) = member {
            let manifest = match member.as_str() {
                "" => "Cargo.toml".to_string(),
                dir => format!("{dir}/Cargo.toml"),
            };
            for dependency in inherited_dependencies(&workspace.toml(&manifest)?) {
                inputs.insert(Input::Toml {
                    file: "Cargo.toml".into(),
                    table: "workspace.dependencies".into(),
                    key: Some(dependency),
                });
            }
            inputs.insert(Input::File(manifest));
        }
    }
    if !any {
        return Err("the guest's package list is empty".into());
    }
    Ok(inputs.into_iter().collect())
}

/// The stamp for `inputs` as they are now and `component`.
pub fn render(root: &Path, inputs: &[Input], component: &[u8]) -> Result<String, String> {
    let workspace = Workspace::new(root);
    let mut stamp = HEADER.to_string();
    for input in inputs {
        let digest = workspace.digest(input)?;
        stamp.push_str(&format!("{} {digest}\n", input.describe()));
    }
    stamp.push_str(&format!("component {}\n", hex(&Sha256::digest(component))));
    Ok(stamp)
}

/// A stamp read back: its inputs with their recorded hashes, and the component's hash.
#[derive(Debug)]
pub struct Stamp {
    pub inputs: Vec<(Input, String)>,
    pub component: String,
}

/// Reads a stamp; `None` when it is not one (for example the older format).
pub fn parse(text: &str) -> Option<Stamp> {
    let mut inputs = Vec::new();
    let mut component = None;
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let (hash, described) = words.split_last()?;
        if described == ["component"] {
            component = Some(hash.to_string());
        } else {
            inputs.push((Input::parse(described)?, hash.to_string()));
        }
    }
    if inputs.is_empty() {
        return None;
    }
    Some(Stamp {
        inputs,
        component: component?,
    })
}

/// Checks every input of the stamp and the component against what is on disk now. The
/// error lists each difference, one per line.
pub fn verify(root: &Path, stamp: &Stamp, component: &[u8]) -> Result<(), Vec<String>> {
    let workspace = Workspace::new(root);
    let mut problems = Vec::new();
    for (input, recorded) in &stamp.inputs {
        match workspace.digest(input) {
            Ok(now) if now == *recorded => {}
            Ok(_) => problems.push(format!("changed: {}", input.describe())),
            Err(why) => problems.push(format!("{}: {why}", input.describe())),
        }
    }
    if hex(&Sha256::digest(component)) != stamp.component {
        problems.push(
            "the component is not the one recorded (replaced or rebuilt without `just guest`)"
                .into(),
        );
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// The paths of a dep-info file as cargo writes it, `target: dep dep ...` with spaces in
/// names escaped as `\ `, sorted and without repeats.
pub fn depinfo_files(depinfo: &str) -> Vec<String> {
    let mut files = Vec::new();
    for line in depinfo.lines() {
        let Some((_, deps)) = line.split_once(": ") else {
            continue;
        };
        let deps = deps.replace("\\ ", "\0");
        files.extend(deps.split_whitespace().map(|file| file.replace('\0', " ")));
    }
    files.sort();
    files.dedup();
    files
}

/// The dependencies a member manifest inherits from `[workspace.dependencies]`, in the
/// tables the guest build compiles (not dev-dependencies).
fn inherited_dependencies(manifest: &Table) -> Vec<String> {
    let targets = manifest.get("target").and_then(Value::as_table);
    let platforms = targets
        .into_iter()
        .flat_map(|t| t.values().filter_map(Value::as_table));
    std::iter::once(manifest)
        .chain(platforms)
        .flat_map(|table| ["dependencies", "build-dependencies"].map(|kind| table.get(kind)))
        .filter_map(|dependencies| dependencies?.as_table())
        .flatten()
        .filter(|(_, spec)| spec.get("workspace").and_then(Value::as_bool) == Some(true))
        .map(|(name, _)| name.clone())
        .collect()
}

/// The line that sets `name` in a Justfile (`name := ...`), trimmed.
fn just_variable<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines().map(str::trim).find(|line| {
        line.strip_prefix(name)
            .is_some_and(|rest| rest.trim_start().starts_with(":="))
    })
}

/// `path` relative to `root` with forward slashes, or `None` when it is outside.
fn relative(root: &Path, path: &Path) -> Option<String> {
    let relative = path.strip_prefix(root).ok()?;
    Some(relative.to_string_lossy().replace('\\', "/"))
}

fn collect(path: &Path, files: &mut Vec<PathBuf>) {
    if path.is_file() {
        files.push(path.to_path_buf());
        return;
    }
    let Ok(entries) = fs::read_dir(path) else {
        return;
    };
    for entry in entries.flatten() {
        collect(&entry.path(), files);
    }
}

/// Lower-case hexadecimal.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small workspace shaped like sendbox's: a guest, a proto crate with tests, a host,
    /// one guest dependency (rustls) and one host-only dependency (tokio) in Cargo.lock.
    fn workspace() -> (tempfile::TempDir, Vec<Input>) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let files: &[(&str, &str)] = &[
            (
                "Cargo.toml",
                "[workspace]\nresolver = \"2\"\nmembers = [\"proto\", \"guest\", \"host\"]\n\n\
                 [workspace.package]\nversion = \"0.1.0\"\nedition = \"2024\"\n\n\
                 [workspace.dependencies]\nsendbox-proto = { path = \"proto\" }\n\
                 rustls = { version = \"0.23\", default-features = false, features = [\n    \"ring\",\n] }\n\
                 tokio = \"1\"\n\n\
                 [profile.dev.package.\"*\"]\nopt-level = 2\n\n\
                 [profile.guest]\ninherits = \"release\"\nlto = true\n",
            ),
            (
                "Cargo.lock",
                "version = 4\n\n[[package]]\nname = \"rustls\"\nversion = \"0.23.46\"\n\
                 source = \"registry+https://github.com/rust-lang/crates.io-index\"\n\
                 checksum = \"aaaa\"\ndependencies = [\n \"ring\",\n]\n\n\
                 [[package]]\nname = \"sendbox-guest\"\nversion = \"0.1.0\"\n\n\
                 [[package]]\nname = \"sendbox-proto\"\nversion = \"0.1.0\"\n\n\
                 [[package]]\nname = \"tokio\"\nversion = \"1.48.0\"\n\
                 source = \"registry+https://github.com/rust-lang/crates.io-index\"\n\
                 checksum = \"bbbb\"\n",
            ),
            (
                "Justfile",
                "guest_rustflags := \"--remap-path-prefix=a=b\"\n\nguest:\n    cargo build\n",
            ),
            ("rust-toolchain.toml", "[toolchain]\nchannel = \"1.95.0\"\n"),
            ("wit/mail.wit", "package sendbox:mail@0.1.0;\n"),
            (
                "guest/Cargo.toml",
                "[package]\nname = \"sendbox-guest\"\n\n[dependencies]\n\
                 sendbox-proto.workspace = true\nrustls = { workspace = true }\n",
            ),
            ("guest/src/lib.rs", "mod net;\n"),
            ("guest/src/net.rs", "\n"),
            (
                "proto/Cargo.toml",
                "[package]\nname = \"sendbox-proto\"\n\n[dev-dependencies]\ntokio.workspace = true\n",
            ),
            ("proto/src/lib.rs", "#[cfg(test)]\nmod client_tests;\n"),
            ("proto/src/client_tests.rs", "#[test]\nfn t() {}\n"),
            ("proto/tests/roundtrip.rs", "#[test]\nfn t() {}\n"),
            ("host/src/lib.rs", "\n"),
        ];
        for (path, text) in files {
            let path = root.join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }
        let r = root.display();
        // As cargo writes it for the guest build: only what rustc read.
        let depinfo = format!(
            "{r}/target/wasm32-wasip2/guest/sendbox_guest.wasm: {r}/guest/src/lib.rs \
             {r}/guest/src/net.rs {r}/proto/src/lib.rs {r}/wit/mail.wit\n"
        );
        let packages = format!(
            "rustls v0.23.46\nsendbox-guest v0.1.0 ({r}/guest)\n\
             sendbox-proto v0.1.0 ({r}/proto)\nrustls v0.23.46 (*)\n"
        );
        let inputs = gather(root, &depinfo, &packages).unwrap();
        (dir, inputs)
    }

    fn stamped(root: &Path, inputs: &[Input]) -> Stamp {
        parse(&render(root, inputs, b"component").unwrap()).unwrap()
    }

    fn edit(root: &Path, path: &str, from: &str, to: &str) {
        let text = fs::read_to_string(root.join(path)).unwrap();
        assert!(text.contains(from), "{path} lacks {from:?}");
        fs::write(root.join(path), text.replacen(from, to, 1)).unwrap();
    }

    #[test]
    fn the_stamp_lists_what_the_guest_build_compiles_and_nothing_else() {
        let (dir, inputs) = workspace();
        let lines: Vec<String> = inputs.iter().map(Input::describe).collect();
        for expected in [
            "file guest/Cargo.toml",
            "file guest/src/lib.rs",
            "file guest/src/net.rs",
            "file proto/Cargo.toml",
            "file proto/src/lib.rs",
            "file rust-toolchain.toml",
            "tree wit",
            "toml Cargo.toml [profile.guest]",
            "toml Cargo.toml [profile.release]",
            "toml Cargo.toml [workspace] resolver",
            "toml Cargo.toml [workspace.package]",
            "toml Cargo.toml [workspace.dependencies] rustls",
            "toml Cargo.toml [workspace.dependencies] sendbox-proto",
            "just Justfile guest_rustflags",
            "lock rustls 0.23.46",
            "lock sendbox-guest 0.1.0",
            "lock sendbox-proto 0.1.0",
        ] {
            assert!(
                lines.iter().any(|l| l == expected),
                "{expected} missing: {lines:#?}"
            );
        }
        assert_eq!(lines.len(), 17, "{lines:#?}");
        let stamp = render(dir.path(), &inputs, b"component").unwrap();
        assert!(stamp.contains("\nfile guest/src/lib.rs "), "{stamp}");
        assert!(stamp.ends_with(&format!(
            "component {}\n",
            hex(&Sha256::digest(b"component"))
        )));
        let read = parse(&stamp).unwrap();
        assert_eq!(
            read.inputs
                .iter()
                .map(|(i, _)| i.clone())
                .collect::<Vec<_>>(),
            inputs
        );
        verify(dir.path(), &read, b"component").unwrap();
    }

    #[test]
    fn edits_outside_the_guest_build_need_no_rebuild() {
        let (dir, inputs) = workspace();
        let root = dir.path();
        let stamp = stamped(root, &inputs);
        // (a) proto's unit tests, integration tests and dev-only code
        edit(root, "proto/src/client_tests.rs", "fn t", "fn u");
        edit(root, "proto/tests/roundtrip.rs", "fn t", "fn u");
        // (d) a host-only dependency: its lock entry and its workspace entry
        edit(root, "Cargo.lock", "1.48.0", "1.49.0");
        edit(root, "Cargo.lock", "bbbb", "cccc");
        edit(
            root,
            "Cargo.toml",
            "tokio = \"1\"",
            "tokio = \"1.49\"\nclap = \"4\"",
        );
        // the host, the dev profile, workspace members, other Justfile recipes, comments
        edit(root, "host/src/lib.rs", "\n", "pub fn f() {}\n");
        edit(root, "Cargo.toml", "opt-level = 2", "opt-level = 3");
        edit(root, "Cargo.toml", "\"host\"]", "\"host\", \"bench\"]");
        edit(
            root,
            "Cargo.toml",
            "[profile.guest]\n",
            "[profile.guest]\n# Small and fast.\n",
        );
        edit(root, "Justfile", "cargo build", "cargo build --quiet");
        verify(root, &stamp, b"component").unwrap();
    }

    #[test]
    fn edits_to_the_guest_build_stop_the_build() {
        let cases: &[(&str, &str, &str, &str)] = &[
            // (b) a source file the guest compiles
            (
                "proto/src/lib.rs",
                "mod client_tests",
                "mod client_test",
                "file proto/src/lib.rs",
            ),
            ("guest/src/net.rs", "\n", "// x\n", "file guest/src/net.rs"),
            ("wit/mail.wit", "0.1.0", "0.2.0", "tree wit"),
            // (c) the lock entry of a guest dependency: a new version or another checksum
            ("Cargo.lock", "0.23.46", "0.23.47", "lock rustls 0.23.46"),
            ("Cargo.lock", "aaaa", "abab", "lock rustls 0.23.46"),
            // manifests, profile, flags, toolchain
            (
                "guest/Cargo.toml",
                "rustls",
                "webpki-roots",
                "file guest/Cargo.toml",
            ),
            (
                "Cargo.toml",
                "\"ring\"",
                "\"aws-lc-rs\"",
                "[workspace.dependencies] rustls",
            ),
            ("Cargo.toml", "lto = true", "lto = false", "[profile.guest]"),
            (
                "Cargo.toml",
                "[profile.guest]",
                "[profile.release]\ndebug = true\n\n[profile.guest]",
                "[profile.release]",
            ),
            (
                "Cargo.toml",
                "edition = \"2024\"",
                "edition = \"2021\"",
                "[workspace.package]",
            ),
            (
                "Cargo.toml",
                "resolver = \"2\"",
                "resolver = \"3\"",
                "[workspace] resolver",
            ),
            ("Justfile", "a=b", "a=c", "just Justfile guest_rustflags"),
            (
                "rust-toolchain.toml",
                "1.95.0",
                "1.96.0",
                "file rust-toolchain.toml",
            ),
        ];
        for (path, from, to, named) in cases {
            let (dir, inputs) = workspace();
            let root = dir.path();
            let stamp = stamped(root, &inputs);
            edit(root, path, from, to);
            let problems = verify(root, &stamp, b"component")
                .expect_err(&format!("{path}: {from:?} -> {to:?} went unnoticed"));
            assert!(
                problems.iter().any(|p| p.contains(named)),
                "{path}: {problems:?} does not name {named}"
            );
        }
    }

    #[test]
    fn another_component_or_a_missing_input_stops_the_build() {
        let (dir, inputs) = workspace();
        let root = dir.path();
        let stamp = stamped(root, &inputs);
        let problems = verify(root, &stamp, b"another component").unwrap_err();
        assert!(
            problems[0].contains("the component is not the one recorded"),
            "{problems:?}"
        );
        fs::remove_file(root.join("guest/src/net.rs")).unwrap();
        let problems = verify(root, &stamp, b"component").unwrap_err();
        assert!(
            problems[0].contains("cannot read guest/src/net.rs"),
            "{problems:?}"
        );
        assert!(parse("# Written by `just guest`\nsources 00\ncomponent 00\n").is_none());
    }

    #[test]
    fn dep_info_paths_with_spaces_are_read() {
        assert_eq!(
            depinfo_files("/t/a.wasm: /w/a\\ b.rs /w/c.rs\n\n/w/c.rs:\n"),
            ["/w/a b.rs", "/w/c.rs"]
        );
    }

    #[test]
    fn the_committed_stamp_matches_this_tree() {
        // The same check as host/build/main.rs, on the real workspace, plus what it must cover.
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let text = fs::read_to_string(root.join("host/component/sendbox.wasm.sources")).unwrap();
        let stamp = parse(&text).expect("the committed stamp parses");
        let component = fs::read(root.join("host/component/sendbox.wasm")).unwrap();
        verify(root, &stamp, &component).unwrap();
        let lines: Vec<String> = stamp.inputs.iter().map(|(i, _)| i.describe()).collect();
        for covered in [
            "file guest/src/lib.rs",
            "file proto/src/reply.rs",
            "tree wit",
        ] {
            assert!(lines.iter().any(|l| l == covered), "{covered} not covered");
        }
        for compiled_in in [
            "rustls",
            "webpki-roots",
            "mail-builder",
            "ring",
            "wit-bindgen",
        ] {
            assert!(
                lines
                    .iter()
                    .any(|l| l.starts_with(&format!("lock {compiled_in} "))),
                "{compiled_in} not covered"
            );
        }
        for not_compiled in [
            "proto/tests",
            "client_tests",
            "fuzzing",
            "host/",
            "lock tokio ",
        ] {
            assert!(
                !lines.iter().any(|l| l.contains(not_compiled)),
                "{not_compiled} is in the stamp"
            );
        }
    }
}
