//! The component's imports are what EMBEDDING.md says they are.
//!
//! EMBEDDING.md's "What the component imports" table lists every WASI interface the
//! committed component imports, with why and what sendbox's host gives it. Embedders read
//! it to know what they must provide and what they hand to the component. This test lists
//! the imports through wasmtime and fails when one is added, removed or changes version
//! without the table saying so.

use std::collections::BTreeSet;

use wasmtime::component::Component;

const EMBEDDING: &str = include_str!("../EMBEDDING.md");
const HEADING: &str = "## What the component imports";

/// The first cell of each row of the table under [`HEADING`], without its backquotes.
fn documented_imports() -> BTreeSet<String> {
    let section = EMBEDDING
        .split_once(HEADING)
        .unwrap_or_else(|| panic!("EMBEDDING.md has no {HEADING:?} section"))
        .1;
    let section = section.split("\n## ").next().unwrap_or_default();
    let imports: BTreeSet<String> = section
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`'))
        .map(|(name, _)| name.to_string())
        .collect();
    assert!(!imports.is_empty(), "no imports listed under {HEADING:?}");
    imports
}

fn component() -> (wasmtime::Engine, Component) {
    let engine = wasmtime::Engine::default();
    let component = Component::new(&engine, sendbox::component::COMPONENT)
        .expect("the committed component compiles");
    (engine, component)
}

#[test]
fn the_component_imports_exactly_what_embedding_md_lists() {
    let (engine, component) = component();
    let imports: BTreeSet<String> = component
        .component_type()
        .imports(&engine)
        .map(|(name, _)| name.to_string())
        .collect();
    let documented = documented_imports();
    let unannounced: Vec<_> = imports.difference(&documented).collect();
    let gone: Vec<_> = documented.difference(&imports).collect();
    assert!(
        unannounced.is_empty() && gone.is_empty(),
        "the component's imports changed; update the table under {HEADING:?} in EMBEDDING.md \
         (and SECURITY.md if the sandbox must now refuse something new).\n\
         imported but not listed: {unannounced:#?}\nlisted but not imported: {gone:#?}"
    );
}

#[test]
fn the_component_never_imports_names_udp_files_or_http() {
    let (engine, component) = component();
    for (name, _) in component.component_type().imports(&engine) {
        for forbidden in ["ip-name-lookup", "udp", "wasi:filesystem", "wasi:http"] {
            assert!(!name.contains(forbidden), "the component imports {name}");
        }
    }
}

#[test]
fn the_component_exports_the_sender_and_nothing_else() {
    let (engine, component) = component();
    let exports: Vec<String> = component
        .component_type()
        .exports(&engine)
        .map(|(name, _)| name.to_string())
        .collect();
    assert_eq!(exports, ["sendbox:mail/mail-sender@0.2.0"]);
}
