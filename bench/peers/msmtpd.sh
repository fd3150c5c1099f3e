#!/usr/bin/env bash
# Unpacks msmtpd, the peer of `sendbox serve` at rest, from Debian's msmtp-mta into
# TARGET/peers/msmtpd, where sendbox-bench looks for it. The package itself cannot be
# installed here: it conflicts with Postfix (both provide mail-transport-agent).
# Nothing is done when msmtpd is on PATH or already unpacked.
set -euo pipefail
dir="${CARGO_TARGET_DIR:-target}/peers/msmtpd"
if command -v msmtpd >/dev/null || test -x "$dir/usr/bin/msmtpd"; then
    exit 0
fi
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cd "$scratch"
apt-get download -qq msmtp-mta 2>/dev/null || { apt-get update -qq && apt-get download -qq msmtp-mta; }
cd - >/dev/null
rm -rf "$dir"
mkdir -p "$(dirname "$dir")"
dpkg-deb -x "$scratch"/msmtp-mta_*.deb "$scratch/unpacked"
mv "$scratch/unpacked" "$dir"
"$dir/usr/bin/msmtpd" --version | head -n 1
