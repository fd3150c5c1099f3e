#!/usr/bin/env bash
# The Debian packages, proved on a real install (run by .ci/run as root, after the tests,
# with the test Postfix up):
#   - `just deb` builds sendbox and sendbox-mta; lintian finds no error or warning that
#     cli/debian/*.lintian-overrides does not justify;
#   - sendbox is installed with dpkg; from the installed files, the man pages render
#     without a groff warning, bash completes `sendbox` through bash-completion's
#     loader, systemd accepts the units, and /usr/bin/sendbox delivers to Postfix;
#   - sendbox-mta is not installed (it would remove the Postfix the tests send to): apt
#     shows that it replaces the current MTA, and its sendmail, mailq and newaliases
#     links, extracted beside sendbox, deliver, list and check as cron and mailx use them.
set -euo pipefail
cd "$(dirname "$0")/../.."

step() { printf -- '-- %s\n' "$*"; }
fail() { echo "FAILED: $*" >&2; exit 1; }

step "lintian, man-db and bash-completion (installed only when missing)"
missing=()
command -v lintian >/dev/null || missing+=(lintian)
command -v man >/dev/null || missing+=(man-db)
[ -f /usr/share/bash-completion/bash_completion ] || missing+=(bash-completion)
if ((${#missing[@]})); then
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi

step "build both packages"
just deb
sendbox_deb=$(ls target/debian/sendbox_*.deb)
mta_deb=$(ls target/debian/sendbox-mta_*.deb)
ls -l "$sendbox_deb" "$mta_deb"
dpkg-deb -f "$sendbox_deb" Depends | grep -q 'libc6 (>= ' || fail "sendbox does not depend on libc6"

step "lintian"
lintian --fail-on error,warning --pedantic "$sendbox_deb" "$mta_deb" 2>&1 | grep -v 'root privileges' || true
lintian --fail-on error,warning "$sendbox_deb" "$mta_deb" >/dev/null 2>&1 ||
    fail "lintian reports an error or an unjustified warning"

root_tmp=$(mktemp -d)
trap 'rm -rf "$root_tmp"' EXIT

step "install sendbox with dpkg"
dpkg -i "$sendbox_deb" >/dev/null
dpkg-query -W -f='${Package} ${Version} ${Status}\n' sendbox | grep -q 'install ok installed' ||
    fail "sendbox is not installed"
[ "$(command -v sendbox)" = /usr/bin/sendbox ] || fail "sendbox is not /usr/bin/sendbox"
[ -d /var/spool/sendbox ] && [ "$(stat -c %a /var/spool/sendbox)" = 1733 ] ||
    fail "/var/spool/sendbox was not made with mode 1733"

step "a user without a home maps the installed precompiled code (not the binary's copy)"
cwasm=$(ls /usr/lib/sendbox/sendbox-*.x86_64-linux.cwasm)
# A server that accepts and never greets holds the send while its mappings are read.
python3 -c 'import socket,sys,time
s=socket.socket(); s.bind(("127.0.0.1",0)); s.listen()
print(s.getsockname()[1], flush=True); c=s.accept(); time.sleep(30)' >"$root_tmp/port" &
silent=$!
for _ in $(seq 1 50); do [ -s "$root_tmp/port" ] && break; sleep 0.1; done
# setpriv execs in place (runuser would fork): $! is the send itself.
setpriv --reuid=nobody --regid=nogroup --clear-groups env HOME=/nonexistent /usr/bin/sendbox send --server "127.0.0.1:$(cat "$root_tmp/port")" \
    --tls none --from a@sendbox.test --to b@sendbox.test --subject s --body b --timeout 20 \
    >/dev/null 2>&1 &
sending=$!
mapped=no
for _ in $(seq 1 100); do
    if grep -q "$cwasm" "/proc/$sending/maps" 2>/dev/null; then mapped=yes; break; fi
    sleep 0.1
done
kill "$sending" "$silent" 2>/dev/null || true
wait "$sending" "$silent" 2>/dev/null || true
[ $mapped = yes ] || fail "the send did not map $cwasm"
echo "mapped: $cwasm"

step "the man pages render, without a groff warning"
for page in sendbox sendbox-send sendbox-queue-run sendbox.toml sendbox-sendmail; do
    MANPAGER=cat man "$page" 2>/dev/null | grep -q . || fail "man $page does not render"
done
for file in /usr/share/man/man?/sendbox*; do
    warnings=$(LC_ALL=C.UTF-8 MANROFFSEQ='' man --warnings -E UTF-8 -l "$file" 2>&1 >/dev/null)
    [ -z "$warnings" ] || fail "$file: $warnings"
done
echo "$(ls /usr/share/man/man?/sendbox* | wc -l) pages"

step "bash completes sendbox (bash-completion loads it on the first Tab)"
completion=$(bash -lic '_completion_loader sendbox; complete -p sendbox' 2>/dev/null)
echo "$completion"
[[ $completion == *"-F _sendbox sendbox"* ]] || fail "no completion for sendbox"

step "systemd accepts the units"
if command -v systemd-analyze >/dev/null; then
    runtime=$(mktemp -d)
    XDG_RUNTIME_DIR=$runtime systemd-analyze --user verify \
        /usr/lib/systemd/user/sendbox-queue.service /usr/lib/systemd/user/sendbox-queue.timer \
        /usr/lib/systemd/user/sendbox-serve.service
    rm -rf "$runtime"
    echo "verified"
else
    echo "no systemd here: not verified"
fi

# Bob's mailbox in the test Postfix (tests/postfix/setup.sh), and a wait for `token`.
mailbox=/var/mail/vhosts/sendbox.test/bob
arrived() {
    for _ in $(seq 1 60); do
        grep -q "$1" "$mailbox" 2>/dev/null && return 0
        sleep 0.5
    done
    fail "no message with $1 in $mailbox"
}

step "the installed /usr/bin/sendbox delivers to Postfix"
token="deb-send-$$-$RANDOM"
/usr/bin/sendbox send --server 127.0.0.1:25 --tls none --from alice@sendbox.test \
    --to bob@sendbox.test --subject "$token" --body "sent by the installed package"
arrived "$token"
echo "delivered: $token"

step "sendbox-mta replaces the system's MTA as Debian expects (simulated: apt)"
simulated=$(apt-get install --simulate "./$mta_deb" 2>&1)
echo "$simulated" | grep -E '^(Inst|Remv|Conf) ' || true
echo "$simulated" | grep -q '^Inst sendbox-mta ' || fail "apt would not install sendbox-mta"
if dpkg-query -W -f='${Status}' postfix 2>/dev/null | grep -q 'install ok installed'; then
    echo "$simulated" | grep -q '^Remv postfix ' || fail "apt would keep postfix beside sendbox-mta"
fi
dpkg-deb -f "$mta_deb" Provides Conflicts Replaces

step "sendbox-mta's links, extracted beside sendbox, as cron and mailx use them"
root=$root_tmp/root
mkdir "$root"
dpkg-deb -x "$sendbox_deb" "$root"
dpkg-deb -x "$mta_deb" "$root"
for link in usr/sbin/sendmail usr/lib/sendmail usr/bin/mailq usr/bin/newaliases; do
    [ "$(readlink -f "$root/$link")" = "$root/usr/bin/sendbox" ] || fail "$link does not lead to sendbox"
done
config=$root/config.toml
printf 'root: bob@sendbox.test\n' >"$root/aliases"
cat >"$config" <<EOF
default = "local"
aliases = "aliases"
[accounts.local]
server = "127.0.0.1:25"
tls = "none"
from = "alice@sendbox.test"
[queue]
dir = "$root/outbox"
EOF
token="deb-sendmail-$$-$RANDOM"
printf 'Subject: %s\n\nas cron sends it\n' "$token" | "$root/usr/sbin/sendmail" -C "$config" -i root
arrived "$token"
echo "delivered through sendmail to root's alias: $token"
"$root/usr/bin/mailq" -C "$config" | tee /dev/stderr | grep -q "is empty" || fail "mailq"
"$root/usr/bin/newaliases" -C "$config" | tee /dev/stderr | grep -q "1 alias, each usable" || fail "newaliases"
printf 'root admin\n' >"$root/aliases"
set +e
"$root/usr/bin/newaliases" -C "$config" 2>"$root/err"
code=$?
set -e
cat "$root/err"
[ $code = 78 ] && grep -q "aliases:1:" "$root/err" || fail "newaliases did not report line 1 (exit $code)"
echo "packages checked"
