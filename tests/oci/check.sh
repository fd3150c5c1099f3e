#!/usr/bin/env bash
# The release artefacts through a real OCI registry (issue 27), as .ci/run proves them:
# published by `just publish` to docker-registry on 127.0.0.1:5050, pulled back into an
# empty folder and compared byte for byte with what the tree builds, and the ways it goes
# wrong: a version published twice, a wrong reference, a registry that is down, a package
# whose digest is not the one wkg.lock pins. Leaves the registry running with the
# release published, the example's WIT fetched and the pulled sender in target/oci/pulled/
# for tests/notify_http.rs. Needs wkg (`just wkg`); no network beyond loopback.
set -euo pipefail
cd "$(dirname "$0")/../.."
registry=127.0.0.1:5050
export WKG_OCI_INSECURE=$registry
# A cache of its own: every fetch below goes to the registry.
export WKG_CACHE_DIR=$PWD/target/oci/cache
pulled=target/oci/pulled
rm -rf target/oci && mkdir -p "$pulled" "$WKG_CACHE_DIR"

fail() { echo "FAIL: $*" >&2; exit 1; }
pass() { echo "ok: $*"; }
# Runs a command that must fail, with its output in $out; fails if it succeeds.
must_fail() { if out=$("$@" 2>&1); then fail "succeeded: $*"; fi; }

version=$(sed -n 's/^package sendbox:mail@\(.*\);$/\1/p' wit/mail.wit)

echo "== publish to a fresh registry"
bash tests/oci/registry.sh --fresh
just publish $registry
catalog=$(curl -fsS http://$registry/v2/_catalog)
[ "$catalog" = '{"repositories":["sendbox/grant","sendbox/mail","sendbox/sender"]}' ] || fail "catalog: $catalog"
pass "the registry holds $catalog"

echo "== pulled into an empty folder, byte for byte"
(cd "$pulled" && WKG_CONFIG_FILE=../../../examples/notify-http/wkg-config.toml wkg get --format wasm -o ./sendbox-mail.wasm "sendbox:mail@$version" >/dev/null)
for name in sender grant; do
    wkg oci pull "$registry/sendbox/$name:$version" -o "$pulled/sendbox-$name.wasm" >/dev/null
done
for name in mail sender grant; do
    cmp "$pulled/sendbox-$name.wasm" "target/publish/artefacts/sendbox-$name.wasm" || fail "sendbox-$name.wasm differs from the published one"
done
cmp "$pulled/sendbox-sender.wasm" host/component/sendbox.wasm && cmp "$pulled/sendbox-grant.wasm" cli/component/grant.wasm ||
    fail "the pulled components are not the committed ones"
pass "sendbox:mail, sendbox:sender and sendbox:grant $version pulled as published ($(cd "$pulled" && sha256sum *.wasm | cut -c1-16 | tr '\n' ' '))"

echo "== the registry shows each artefact's metadata"
for name in mail sender grant; do
    curl -fsS -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$registry/v2/sendbox/$name/manifests/$version" |
        python3 -c '
import json, sys
a = json.load(sys.stdin).get("annotations", {})
want = {"version", "description", "licenses", "source"}
missing = [k for k in want if not a.get("org.opencontainers.image." + k)]
sys.exit("missing annotations: %s" % missing if missing else 0)' || fail "sendbox/$name: annotations"
done
pass "version, description, licenses and source annotated on all three"

echo "== publishing again: the same bytes are left alone, other bytes refused"
out=$(just publish $registry 2>&1) || fail "publishing the same release again failed: $out"
[ "$(grep -c "already published, the same bytes" <<<"$out")" = 3 ] || fail "publishing again said: $out"
pass "publishing $version again changes nothing (a publish cut short can be run again)"
wkg oci push "$registry/sendbox/grant:$version" host/component/sendbox.wasm >/dev/null
must_fail just publish $registry
grep -q "sendbox/grant:$version is already published with other bytes" <<<"$out" || fail "publishing over other bytes said: $out"
pass "a version the registry holds with other bytes is refused: $(grep -m1 "already published with other bytes" <<<"$out")"
bash tests/oci/registry.sh --fresh >/dev/null
just publish $registry >/dev/null 2>&1 || fail "publishing to a fresh registry again failed"

echo "== wkg 0.16.1's bug that just publish works around: publish --package on a component"
must_fail env WKG_CONFIG_FILE=target/publish/wkg-config.toml wkg publish --package sendbox:canary@0.0.1 host/component/sendbox.wasm
grep -q "version not found" <<<"$out" ||
    fail "wkg publish --package now works on a component (or fails otherwise): switch just publish back to it. It said: $out"
pass "still there (fixed upstream after 0.16.1 by wasm-pkg-tools#250), so components go by wkg oci push"

echo "== a wrong reference"
must_fail wkg oci pull "$registry/sendbox/sender:9.9.9" -o "$pulled/wrong.wasm"
[ ! -e "$pulled/wrong.wasm" ] || fail "a failed pull left $pulled/wrong.wasm"
grep -qi "manifest unknown\|not found" <<<"$out" || fail "a wrong reference said: $out"
pass "a pull of sendbox/sender:9.9.9 fails and writes nothing: $(grep -m1 -io "manifest unknown[^\"]*\|not found[^\"]*" <<<"$out")"

echo "== the example's dependency, fetched as its wkg.lock pins it"
rm -rf examples/notify-http/wit/deps
just notify-http-wit
fetched=examples/notify-http/wit/deps/sendbox-mail-$version.wasm
cmp "$fetched" target/publish/artefacts/sendbox-mail.wasm || fail "$fetched is not the published package"
git diff --exit-code -- examples/notify-http/wkg.lock || fail "the fetch changed the committed wkg.lock"
pass "$fetched fetched at the pinned digest"

echo "== a package whose digest is not the pinned one"
# Someone replaces the tag's content: a different (valid) WIT package under the same tag.
mkdir -p target/oci/other
sed 's/^package sendbox:mail@.*;$/package sendbox:mail@'"$version"';/' wit/released/0.1.0.wit > target/oci/other/mail.wit
(cd target/oci && wkg build --wit-dir other --output other.wasm >/dev/null)
wkg oci push "$registry/sendbox/mail:$version" target/oci/other.wasm >/dev/null
rm -rf "$WKG_CACHE_DIR" && mkdir -p "$WKG_CACHE_DIR"
# wkg 0.16.1 alone takes it and rewrites the pin (its fetch empties the lock it loaded
# before resolving): the bug that just notify-http-wit works around.
mkdir -p target/oci/plain/wit && cp examples/notify-http/wit/world.wit target/oci/plain/wit/ && cp examples/notify-http/wkg.lock target/oci/plain/
(cd target/oci/plain && WKG_CONFIG_FILE=../../../examples/notify-http/wkg-config.toml wkg fetch >/dev/null 2>&1) || true
if cmp -s examples/notify-http/wkg.lock target/oci/plain/wkg.lock; then
    fail "wkg fetch now refuses a package whose digest is not the pinned one: the scratch copy in just notify-http-wit can go"
fi
pass "wkg 0.16.1's fetch still takes the replaced package and rewrites the lock's digest"
rm -rf "$WKG_CACHE_DIR" && mkdir -p "$WKG_CACHE_DIR"
before=$(find examples/notify-http/wit -type f | sort | xargs sha256sum)
must_fail just notify-http-wit
[ "$before" = "$(find examples/notify-http/wit -type f | sort | xargs sha256sum)" ] || fail "a mismatched digest changed examples/notify-http/wit"
git diff --exit-code --quiet -- examples/notify-http/wkg.lock || fail "a mismatched digest changed wkg.lock"
grep -q "not the one wkg.lock pins" <<<"$out" || fail "a replaced package said: $out"
pass "just notify-http-wit refuses it and changes nothing: $(grep -A2 "not the one wkg.lock pins" <<<"$out" | tr '\n' ' ' | cut -c1-240)"

echo "== a poisoned cache"
# The cached blob named by the pinned digest holds other bytes.
rm -rf "$WKG_CACHE_DIR" && mkdir -p "$WKG_CACHE_DIR"
bash tests/oci/registry.sh --fresh >/dev/null
just publish $registry >/dev/null 2>&1 || fail "publishing to a fresh registry again failed"
just notify-http-wit >/dev/null
pinned=$(sed -n 's/^digest = "\(sha256:[0-9a-f]*\)"$/\1/p' examples/notify-http/wkg.lock)
[ -f "$WKG_CACHE_DIR/$pinned" ] || fail "no cached blob $WKG_CACHE_DIR/$pinned to poison"
cp target/oci/other.wasm "$WKG_CACHE_DIR/$pinned"
before=$(find examples/notify-http/wit -type f | sort | xargs sha256sum)
must_fail just notify-http-wit
[ "$before" = "$(find examples/notify-http/wit -type f | sort | xargs sha256sum)" ] || fail "a poisoned cache changed examples/notify-http/wit"
grep -q "are not the ones wkg.lock pins" <<<"$out" || fail "a poisoned cache said: $out"
pass "a cached blob with other bytes is refused, nothing changed: $(grep -m1 "are not the ones" <<<"$out" | cut -c1-160)"

echo "== addresses that are not HOST[:PORT] are refused before anything runs"
for bad in "" "http://$registry" "$registry/some/path" "$registry;touch target/oci/pwned" '$(touch target/oci/pwned)' "a b" "alice:pw@$registry"; do
    must_fail just publish "$bad"
    grep -q "is not a registry address" <<<"$out" || fail "just publish $(printf %q "$bad") said: $out"
    ! grep -q "pw@" <<<"$out" || fail "just publish echoed the credentials it was given: $out"
done
[ ! -e target/oci/pwned ] || fail "an address ran a command"
pass "seven malformed addresses refused, none run"

echo "== two publishes at once: one waits its turn"
exec 8>target/publish/.lock && flock 8
must_fail just publish $registry
grep -q "another just publish runs in this tree" <<<"$out" || fail "a second publish said: $out"
exec 8>&-
pass "a second publish in the same tree is refused while one runs"

echo "== the release published again, as it was"
bash tests/oci/registry.sh --fresh
just publish $registry >/dev/null 2>&1
rm -rf "$WKG_CACHE_DIR" && mkdir -p "$WKG_CACHE_DIR"
just notify-http-wit
pass "republished, and the example's WIT fetched again"

echo "== a registry that is down"
bash tests/oci/registry.sh stop
must_fail just publish $registry
grep -qi "connect\|refused" <<<"$out" || fail "publishing to a stopped registry said: $out"
pass "publishing fails: $(grep -m1 -i "connect\|refused" <<<"$out" | cut -c1-160)"
rm -rf "$WKG_CACHE_DIR" && mkdir -p "$WKG_CACHE_DIR"
before=$(find examples/notify-http/wit -type f | sort | xargs sha256sum)
must_fail just notify-http-wit
[ "$before" = "$(find examples/notify-http/wit -type f | sort | xargs sha256sum)" ] || fail "a failed fetch changed examples/notify-http/wit"
grep -qi "connect\|refused" <<<"$out" || fail "fetching from a stopped registry said: $out"
pass "fetching fails and changes nothing: $(grep -m1 -i "connect\|refused" <<<"$out" | cut -c1-160)"
bash tests/oci/registry.sh
echo "all OCI checks passed; the registry runs on $registry with sendbox $version published"
