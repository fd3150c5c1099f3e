#!/usr/bin/env bash
# `just notify-http-wit`, for any folder DIR that holds wit/, wkg.lock and wkg-config.toml:
# its WIT dependencies fetched with wkg, held to the digests wkg.lock pins, and put in
# DIR/wit/deps only when every one matches. wkg 0.16.1's fetch does not do the holding:
# it takes what a tag holds now and rewrites the lock (tests/oci/check.sh shows it). So the
# fetch runs in a scratch folder, as WIT packages (wasm), and each file's sha256 is checked
# against the lock: a changed registry, or a poisoned cache, changes nothing here.
# To take a new release, run `wkg update` in DIR and commit its wkg.lock.
set -euo pipefail
export RUST_BACKTRACE=0
dir=${1:?usage: fetch-wit.sh DIR}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$dir"
fail() { printf '%s: %s; nothing was changed\n' "$dir" "$*" >&2; exit 1; }
[ -f wkg.lock ] || fail "wkg.lock is missing: it pins what may be fetched; restore it (git checkout -- $dir/wkg.lock), or run wkg fetch there to pin what the registry holds now"

mkdir -p "$root/target"
scratch=$(mktemp -d "$root/target/fetch-wit.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
mkdir "$scratch/wit"
cp wit/*.wit "$scratch/wit/"
cp wkg.lock "$scratch/"
if ! out=$(cd "$scratch" && WKG_CONFIG_FILE="$OLDPWD/wkg-config.toml" timeout 120 wkg fetch --type wasm 2>&1 | cat -v); then
    [ -n "$out" ] || fail "no answer from the registry in 120 s"
    printf '%s\n' "$out" >&2
    fail "wkg fetch failed (above), from the registry $dir/wkg-config.toml names (the test registry: just registry), with the lock $dir/wkg.lock"
fi
if ! cmp -s wkg.lock "$scratch/wkg.lock"; then
    diff wkg.lock "$scratch/wkg.lock" | grep '^[<>] digest' | sed 's/^</  pinned: /; s/^>/  served: /' >&2 || true
    fail "the package served (by the registry, or wkg's cache: WKG_CACHE_DIR, else ~/.cache/wasm-pkg) is not the one wkg.lock pins"
fi
pinned=$(sed -n 's/^digest = "sha256:\([0-9a-f]\{64\}\)"$/\1/p' wkg.lock | sort)
fetched=$(cd "$scratch/wit/deps" && sha256sum -- * | cut -d' ' -f1 | sort)
[ "$pinned" = "$fetched" ] ||
    fail "the packages fetched (sha256 $(echo $fetched)) are not the ones wkg.lock pins ($(echo $pinned)): a poisoned cache? clear WKG_CACHE_DIR or ~/.cache/wasm-pkg"
mv "$scratch/wit/deps" "$scratch/deps.new"
rm -rf wit/deps
mv "$scratch/deps.new" wit/deps
echo "$dir/wit/deps: $(cd wit/deps && ls | tr '\n' ' ')at the digests wkg.lock pins"
