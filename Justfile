# sendbox tasks. `just --list` shows them.

set shell := ["bash", "-euo", "pipefail", "-c"]
# Arguments reach recipes as $1, $2...: a recipe never pastes one into its shell text.
set positional-arguments

# Paths are remapped so that the component is the same byte for byte wherever it is built.
# simd128 (WebAssembly 2.0) lets memchr find a message's line ends 16 bytes at a time.
guest_rustflags := "-C target-feature=+simd128 --remap-path-prefix=" + justfile_directory() + "=/sendbox --remap-path-prefix=" + env("CARGO_HOME", env("HOME") + "/.cargo") + "=/cargo"

default:
    @just --list

# Run the demo: a loopback SMTP server and the sandboxed sender.
demo:
    cargo run -p sendbox-cli -- demo

# Run every test (Postfix tests need `just postfix` first, or are reported as excluded).
test:
    cargo test

# Install what building the component needs: clang and the wasm32-wasip2 target.
setup:
    rustup target add wasm32-wasip2
    command -v clang >/dev/null || (apt-get update -qq && apt-get install -y -qq clang)

# Rebuild the component from guest/, proto/ and wit/, and record what it is built from
# (host/component/sendbox.wasm.sources: the files rustc read, the Cargo.lock entries of
# the packages compiled in, the manifest tables, RUSTFLAGS and toolchain), each hashed.
# Then compile it ahead of time for x86-64 Linux (sendbox.x86_64-linux.cwasm), so that no
# run compiles it; a test checks that this build compiles it to the same bytes.
guest: (wasm "sendbox-guest" "host/component/sendbox.wasm")
    cargo run --quiet -p sendbox-release -- metadata --package sendbox-guest --name sendbox:sender host/component/sendbox.wasm
    cargo tree -p sendbox-guest --target wasm32-wasip2 -e no-dev --prefix none --format '{p}' --locked > target/sendbox-guest.packages
    SENDBOX_UPDATE_STAMP=1 SENDBOX_GUEST_DEPINFO="{{justfile_directory()}}/target/wasm32-wasip2/guest/sendbox_guest.d" SENDBOX_GUEST_PACKAGES="{{justfile_directory()}}/target/sendbox-guest.packages" cargo check -p sendbox --quiet
    cargo run --quiet -p sendbox --example precompile -- host/component/sendbox.x86_64-linux.cwasm
    @echo "host/component/sendbox.x86_64-linux.cwasm: $(wc -c < host/component/sendbox.x86_64-linux.cwasm) bytes"

# Rebuild the nosy test component that the sandbox tests run.
probe: (wasm "sendbox-probe" "tests/probe/probe.wasm")

# Rebuild the grant component that `sendbox grant` composes in front of the sender.
grant: (wasm "sendbox-grant" "cli/component/grant.wasm")
    cargo run --quiet -p sendbox-release -- metadata --package sendbox-grant --name sendbox:grant cli/component/grant.wasm

# Build the example application component (examples/notify-http) that tests/notify_http.rs
# composes with a granted sender and serves. Its sendbox:mail dependency is fetched with
# `wkg fetch` from the registry its wkg.lock names (the test registry: `just registry`).
notify-http: notify-http-wit (wasm "sendbox-notify-http" "target/notify-http.wasm")

# Fetch examples/notify-http's WIT dependencies (sendbox:mail) with wkg from the registry
# its wkg-config.toml names (the test registry, `just registry`), each held to the digest
# its wkg.lock pins (release/fetch-wit.sh says why wkg alone does not).
notify-http-wit: wkg
    bash release/fetch-wit.sh examples/notify-http

# The three artefacts a release publishes, in target/publish/: the WIT package
# sendbox-mail.wasm (built by `wkg build` from wit/, with its metadata), and the committed
# sender and grant components (`just guest`, `just grant`), under their published names.
artefacts: wkg
    rm -rf target/publish/artefacts && mkdir -p target/publish/artefacts
    # wkg writes a wkg.lock beside where it runs: not in the tree.
    cd target/publish && wkg build --wit-dir "{{justfile_directory()}}/wit" --output artefacts/sendbox-mail.wasm >/dev/null
    cargo run --quiet -p sendbox-release -- metadata --package sendbox --name sendbox:mail --wit wit target/publish/artefacts/sendbox-mail.wasm
    cp host/component/sendbox.wasm target/publish/artefacts/sendbox-sender.wasm
    cp cli/component/grant.wasm target/publish/artefacts/sendbox-grant.wasm
    @cd target/publish/artefacts && sha256sum *.wasm

# Publish sendbox:mail (the WIT package), sendbox:sender and sendbox:grant to the OCI
# registry REGISTRY (HOST[:PORT]; plain HTTP for a loopback address, HTTPS otherwise) as
# REGISTRY/sendbox/{mail,sender,grant}:VERSION. Credentials come from `docker login`.
# What it checks first, and what it refuses: release/publish.sh.
publish registry: wkg
    bash release/publish.sh "$1"

# Start the test registry (docker-registry on 127.0.0.1:5050, emptied) and publish to it.
registry:
    bash tests/oci/registry.sh --fresh
    just publish 127.0.0.1:5050

# Install wkg 0.16, the package tool for WIT and components in OCI registries (about 6
# minutes of compiling on 2 cores, once).
wkg:
    command -v wkg >/dev/null && wkg --version | grep -q '^wkg 0\.16\.' || cargo install wkg --version 0.16.1 --locked

# Build a wasm32-wasip2 crate reproducibly and copy the result to `dest`.
wasm package dest:
    RUSTFLAGS="{{guest_rustflags}}" cargo build -p {{package}} --target wasm32-wasip2 --profile guest
    cp target/wasm32-wasip2/guest/$(echo {{package}} | tr - _).wasm {{dest}}
    @echo "{{dest}}: $(wc -c < {{dest}}) bytes, sha256 $(sha256sum {{dest}} | cut -c1-16)…"

# Rebuild the committed components and fail if they differ from what is committed.
check-guest: guest probe grant
    git diff --exit-code --stat -- host/component/ tests/probe/probe.wasm cli/component/grant.wasm || (echo "the committed components are not what the sources build" && exit 1)

# Build the Debian packages sendbox and sendbox-mta into target/debian/ (installs cargo-deb
# when missing: about 2 minutes of compiling, once; and dpkg-dev, as root). The man pages and completions come
# from the binary itself; file times come from the last commit, so that the same commit
# gives the same packages.
deb:
    command -v cargo-deb >/dev/null || cargo install cargo-deb --version 3.8.0 --locked
    # dpkg-shlibdeps (dpkg-dev) finds the libc version the binary needs, for Depends.
    command -v dpkg-shlibdeps >/dev/null || { [ "$(id -u)" = 0 ] && apt-get install -y -qq dpkg-dev; } || { echo "just deb needs dpkg-dev: sudo apt install dpkg-dev" >&2; exit 1; }
    cargo build --release -p sendbox-cli --locked
    rm -rf target/release/man target/release/completions target/debian
    target/release/sendbox generate man target/release/man
    gzip -9n target/release/man/*
    mkdir -p target/release/completions
    target/release/sendbox generate completions bash > target/release/completions/sendbox
    target/release/sendbox generate completions zsh > target/release/completions/_sendbox
    target/release/sendbox generate completions fish > target/release/completions/sendbox.fish
    # The precompiled component, mapped from /usr/lib/sendbox instead of copied from the
    # binary (4 MiB less resident per run); named by the hash of the binary's copy, as the
    # binary looks for it, and without the symbol table (wasmtime reads only its own
    # sections; the symbols are for profilers).
    rm -rf target/release/lib && mkdir -p target/release/lib
    strip --strip-all -o target/release/lib/sendbox-$(sha256sum host/component/sendbox.x86_64-linux.cwasm | cut -c1-16).x86_64-linux.cwasm host/component/sendbox.x86_64-linux.cwasm
    SOURCE_DATE_EPOCH=$(git log -1 --format=%ct) cargo deb -p sendbox-cli --no-build --variant sendbox
    SOURCE_DATE_EPOCH=$(git log -1 --format=%ct) cargo deb -p sendbox-cli --no-build --variant mta
    @ls -l target/debian/*.deb

# Lints as CI runs them, the guest included.
lint:
    cargo fmt --all -- --check
    cargo clippy --all-targets -p sendbox-proto -p sendbox -p sendbox-cli -p sendbox-loopback -p sendbox-bench -p sendbox-release -- -D warnings
    cargo clippy -p sendbox-proto --all-features -- -D warnings
    cargo clippy -p sendbox --no-default-features --lib -- -D warnings
    cargo clippy -p sendbox-guest -p sendbox-probe -p sendbox-grant -p sendbox-notify-http --target wasm32-wasip2 -- -D warnings

# Run the component under Node.js through jco, confined to one server (needs `just postfix`;
# installs Node.js 20 when it is missing or older).
node:
    bash tests/node/setup.sh
    cd tests/node && npm ci --no-audit --no-fund --loglevel=error && npm test

# Install wasmtime-cli 48, which the grant tests run components with (about 10 minutes
# of compiling on 2 cores, once).
wasmtime:
    command -v wasmtime >/dev/null && wasmtime --version | grep -q '^wasmtime 48\.' || cargo install wasmtime-cli --version 48.0.8 --locked

# Install and start Postfix on loopback for the integration tests.
postfix:
    bash tests/postfix/setup.sh

# Add the DKIM verifiers to that Postfix (OpenDKIM milter on 127.0.0.1:2527, dkimpy, test
# keys in /etc/sendbox-test-dkim) and prove them with dkimpy's signatures (tests/dkim/).
dkim:
    bash tests/dkim/setup.sh
    bash tests/dkim/selfcheck.sh

# Fuzz the reply parser, the dialogue, the DATA encoder, the raw message's header, the
# relay's dialogue (serve) and the outbox's queue files, each for `seconds` (needs the
# nightly toolchain; installs cargo-fuzz). A crash fails the recipe; keep its input in
# fuzz/regressions/<target>/ so that `cargo test` replays it.
fuzz seconds="300":
    command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
    cd fuzz && for target in reply_parser dialogue data_encoder raw_message relay outbox_entry dkim; do \
        echo "== $target"; \
        cargo +nightly fuzz run $target -- -max_total_time={{seconds}} -print_final_stats=1 2>&1 | tail -n 8; \
    done

# Measure sendbox against curl, msmtp, msmtpd, swaks, smtplib, lettre and Postfix on loopback (see
# BENCHMARKS.md). Installs missing peers, starts Postfix, builds release. `just bench --quick`
# for a smoke run.
bench *args:
    command -v curl >/dev/null && command -v msmtp >/dev/null && command -v swaks >/dev/null && command -v python3 >/dev/null && test -x /usr/bin/time || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl msmtp swaks python3 time)
    bash bench/peers/msmtpd.sh
    bash tests/postfix/setup.sh
    # Apart: built together, the bench's need for Cranelift would be compiled into sendbox too.
    cargo build --release -p sendbox-cli
    cargo build --release -p sendbox-bench
    cargo run --release -q -p sendbox-bench -- {{args}}
