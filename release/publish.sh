#!/usr/bin/env bash
# `just publish REGISTRY`: the WIT package sendbox:mail and the components sendbox:sender and
# sendbox:grant, pushed to the OCI registry REGISTRY (HOST[:PORT]) as
# REGISTRY/sendbox/{mail,sender,grant}:VERSION with wkg. Plain HTTP only for a loopback
# address. Credentials: `docker login REGISTRY` (wkg reads Docker's config.json).
#
# It refuses, before anything is pushed: an address that is not HOST[:PORT]; a wit/ whose
# version is not recorded in wit/released/ as it is; uncommitted artefacts; components
# that are not of the WIT package's version. Then each artefact once: a version the
# registry holds with the same bytes is left alone (so a publish cut short can be run
# again), one it holds with other bytes, or cannot be read back, is refused.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUST_BACKTRACE=0
registry=${1-}

fail() { printf 'just publish: %s\n' "$*" >&2; exit 1; }
# wkg's output, which may carry a registry's text, with control bytes made visible.
wkg_shown() { local limit=$1; shift; timeout "$limit" wkg "$@" 2>&1 | cat -v; }

# An address with credentials is not echoed back.
[[ $registry != *@* ]] ||
    fail "that is not a registry address: it holds user@ or user:password@; give HOST[:PORT], and log in with docker login"
label='[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?'
if ! [[ $registry =~ ^($label(\.$label)*|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?$ ]]; then
    fail "$(printf '%q' "$registry") is not a registry address: give HOST[:PORT], such as ghcr.io or 127.0.0.1:5050 (no scheme, no path, no credentials; log in with docker login)"
fi
loopback='^(127\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}|[Ll][Oo][Cc][Aa][Ll][Hh][Oo][Ss][Tt]|\[::1\])(:[0-9]{1,5})?$'
if [[ $registry =~ $loopback ]]; then protocol=http insecure=$registry; else protocol=https insecure=; fi
export WKG_OCI_INSECURE=$insecure

mkdir -p target/publish
exec 9>target/publish/.lock
flock -n 9 || fail "another just publish runs in this tree; wait for it to end"

version=$(sed -n 's/^package sendbox:mail@\(.*\);$/\1/p' wit/mail.wit)
cargo run --quiet -p sendbox-release -- wit-version >/dev/null ||
    fail "wit/ does not follow its last release (above): give it the version named there"
record=wit/released/$version.wit
[ -f "$record" ] ||
    fail "sendbox:mail@$version is not recorded as a release: cp wit/mail.wit $record, commit it, and publish again"
cmp -s wit/mail.wit "$record" ||
    fail "wit/mail.wit differs from the recorded release $record (in documentation only, or the check above would have said): a published version never changes, so publish the change as a new patch version and record that"
git ls-files --error-unmatch "$record" >/dev/null 2>&1 && git diff --quiet HEAD -- wit host/component cli/component ||
    fail "wit/, host/component/ or cli/component/ differ from the last commit: what is published is a commit; commit first"

just artefacts
artefacts=target/publish/artefacts
cargo run --quiet -p sendbox-release -- check-release --wit wit --sender $artefacts/sendbox-sender.wasm --grant $artefacts/sendbox-grant.wasm

# Only the sendbox namespace, at the registry's root (REGISTRY/sendbox/NAME).
printf '[namespace_registries]\nsendbox = { registry = "%s", metadata = { preferredProtocol = "oci", "oci" = { registry = "%s", namespacePrefix = "" } } }\n[registry."%s".oci]\nprotocol = "%s"\n' \
    "$registry" "$registry" "$registry" "$protocol" > target/publish/wkg-config.toml

for name in mail sender grant; do
    file=$artefacts/sendbox-$name.wasm
    reference=$registry/sendbox/$name:$version
    rm -f target/publish/existing.wasm
    if out=$(wkg_shown 120 oci pull "$reference" -o target/publish/existing.wasm); then
        cmp -s target/publish/existing.wasm "$file" ||
            fail "$reference is already published with other bytes: a version is never replaced; give a new version"
        echo "$reference: already published, the same bytes"
        continue
    elif [ -z "$out" ]; then
        fail "no answer from $registry in 120 s; nothing more was pushed"
    elif ! grep -qi "manifest unknown\|name unknown" <<<"$out"; then
        fail "cannot tell whether $reference is published, so it is not pushed: $(tail -n 1 <<<"$out")"
    fi
    if [ $name = mail ]; then
        # `wkg publish` also checks the package against the registry's earlier releases of
        # the same series, as wit/released/ is checked here.
        WKG_CONFIG_FILE=target/publish/wkg-config.toml wkg_shown 600 publish "$file"
    else
        # `wkg oci push`, with the annotations `wkg publish` would write: wkg 0.16.1's
        # `publish --package` fails on a component ("version not found", fixed after that
        # release; tests/oci/check.sh shows it).
        mapfile -t annotations < <(cargo run --quiet -p sendbox-release -- annotations "$file")
        wkg_shown 600 oci push "${annotations[@]}" "$reference" "$file"
    fi || fail "pushing $reference failed (above); run just publish again once the registry answers: what is published stays"
done
