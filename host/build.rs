//! Refuses to build with a committed component that does not match its sources.
//!
//! `component/sendbox.wasm` is built from `wit/`, `guest/` and `proto/` by `just guest`,
//! which also writes `component/sendbox.wasm.sources`: a hash of those sources and of the
//! component. Any change to the sources without a rebuild, or any other component put in
//! its place, stops the build here, so a stale component is never tested or shipped.

use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

const COMPONENT: &str = "component/sendbox.wasm";
const STAMP: &str = "component/sendbox.wasm.sources";
/// What the component is built from, relative to the workspace root.
const SOURCES: &[&str] = &["wit", "guest", "proto", "rust-toolchain.toml"];

fn main() {
    let manifest =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest
        .parent()
        .expect("host/ sits in the workspace")
        .to_path_buf();
    println!("cargo:rerun-if-changed={COMPONENT}");
    println!("cargo:rerun-if-changed={STAMP}");
    println!("cargo:rerun-if-env-changed=SENDBOX_UPDATE_STAMP");
    if !root.join("guest").is_dir() {
        // Built outside the workspace (e.g. from a package): the sources are not here.
        println!(
            "cargo:warning=guest sources not found; not checking that the component is current"
        );
        return;
    }
    for source in SOURCES {
        println!("cargo:rerun-if-changed={}", root.join(source).display());
    }

    let component = fs::read(manifest.join(COMPONENT)).expect("reading component/sendbox.wasm");
    let expected = format!(
        "# Written by `just guest`, checked by host/build.rs. Do not edit.\nsources {}\ncomponent {}\n",
        hash_sources(&root),
        hex(&Sha256::digest(&component))
    );
    if std::env::var("SENDBOX_UPDATE_STAMP").as_deref() == Ok("1") {
        fs::write(manifest.join(STAMP), &expected).expect("writing the component stamp");
        return;
    }
    let recorded = fs::read_to_string(manifest.join(STAMP)).unwrap_or_default();
    if recorded != expected {
        panic!(
            "\n\nhost/{COMPONENT} does not match the guest, proto and WIT sources \
             (or was replaced).\nRebuild it with `just guest` (needs clang and the wasm32-wasip2 \
             target; `just setup` installs them) and commit the result.\n\n"
        );
    }
}

/// SHA-256 over every source file's path and contents, in path order.
fn hash_sources(root: &Path) -> String {
    let mut files = Vec::new();
    for source in SOURCES {
        collect(&root.join(source), &mut files);
    }
    files.sort();
    let mut hasher = Sha256::new();
    for file in files {
        let relative = file
            .strip_prefix(root)
            .expect("under the root")
            .to_string_lossy()
            .replace('\\', "/");
        let contents = fs::read(&file).expect("reading a source file");
        hasher.update(relative.as_bytes());
        hasher.update([0]);
        hasher.update((contents.len() as u64).to_le_bytes());
        hasher.update(&contents);
    }
    hex(&hasher.finalize())
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
        let path = entry.path();
        if path.file_name().is_some_and(|n| n == "target") {
            continue;
        }
        collect(&path, files);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
