#!/usr/bin/env bash
# Independent DKIM verifiers for sendbox's tests, on loopback, with no network. Run as root,
# after tests/postfix/setup.sh (whose Postfix and mailboxes this extends). Safe to rerun:
# it installs only what is missing, keeps the keys it made before, restarts its OpenDKIM
# only when its configuration or the key records changed (or it is not running), and
# reloads Postfix only when master.cf changed.
#
#   127.0.0.1:2527  smtpd "dkim": as port 25 (same mailboxes alice, bob, carol @sendbox.test),
#                   but every message passes through the OpenDKIM milter below; should the
#                   milter not answer, the message is refused with a 4xx (never let through
#                   unchecked). The other listeners (25, 587, 465, 2525, 2526) get no milter.
#   127.0.0.1:8891  OpenDKIM, verifying only (Mode v), AuthservID sendbox-test: it adds
#                   "Authentication-Results: sendbox-test; dkim=pass|fail|none ..." to each
#                   message (removing any that claimed to come from sendbox-test before),
#                   and "DKIM-Filter: OpenDKIM ..."; for a signature whose key is not in
#                   dns.txt it adds no Authentication-Results at all (On-KeyNotFound accept).
#
# OpenDKIM looks no key up in DNS: its TestDNSData option replaces libopendkim's resolver with
# a lookup in $KEYS/dns.txt (no resolver, no daemon, no socket). tests/dkim/verify.py (dkimpy)
# answers from the same file. Keys, all under sendbox.test, in $KEYS:
#
#   rsa.private.pem    rsa-2048, selector "rsa", published    (PKCS#8 PEM, mode 0600)
#   ed.private.pem     ed25519,  selector "ed",  published    (PKCS#8 PEM, mode 0600)
#   wrong.private.pem  rsa-2048, published under no selector: sign with it as s=rsa, and
#                      both verifiers must say fail (the "wrong key" negative control)
#   NAME.public.pem    the public key (SubjectPublicKeyInfo PEM)
#   NAME.txt           the TXT record's value, one line: "v=DKIM1; k=rsa; p=..." or, per
#                      RFC 8463, "v=DKIM1; k=ed25519; p=" and the raw 32-byte key in base64
#   dns.txt            the published records, "NAME._domainkey.sendbox.test VALUE" a line,
#                      and RFC 8463's two (brisbane and test ._domainkey.football.example.com)
#
# There is no syslog daemon in CI, so OpenDKIM logs nowhere; its verdict is the header it adds.
# After a reboot rerun this script (it starts OpenDKIM); after tests/postfix/setup.sh (which
# rewrites master.cf) too: that script reruns this one when $KEYS/opendkim.conf exists.
set -euo pipefail

KEYS=/etc/sendbox-test-dkim
RUN=/run/sendbox-test-dkim
DOMAIN=sendbox.test
MILTER=127.0.0.1:8891
LISTENER=127.0.0.1:2527
WAIT=20 # seconds to wait for ports

die() {
    echo "dkim setup FAILED: $*" >&2
    exit 1
}

quietly() {
    local out
    out=$("$@" 2>&1) || die "$* failed:"$'\n'"$out"
}

[[ $(id -u) -eq 0 ]] || die "run me as root"
[[ " $(postconf -h virtual_mailbox_domains 2>/dev/null) " == *" $DOMAIN "* ]] ||
    die "the test Postfix is not set up (no virtual domain $DOMAIN): run tests/postfix/setup.sh first"

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# --- Packages -------------------------------------------------------------------------------

# python3-dkim is dkimpy (with python3-nacl for ed25519); opendkim-tools has opendkim-testmsg
# and friends, handy by hand. No resolver is needed (see TestDNSData below).
pkgs=(opendkim opendkim-tools python3-dkim python3-nacl swaks openssl)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q ' installed$' || missing+=("$p")
done
if ((${#missing[@]})); then
    export DEBIAN_FRONTEND=noninteractive
    start=$SECONDS
    # The index may be stale on a fresh machine; only update it when the install needs it.
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$TMP/apt.log" 2>&1 || {
        quietly apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$TMP/apt.log" 2>&1 ||
            die "apt-get install ${missing[*]} failed:"$'\n'"$(tail -n 30 "$TMP/apt.log")"
    }
    echo "dkim: installed ${missing[*]} in $((SECONDS - start)) s"
fi
# Debian's python3 has dkimpy; a python3 earlier on PATH (pyenv) may not. Use Debian's.
/usr/bin/python3 -c 'import dkim, nacl' 2>/dev/null || die "/usr/bin/python3 cannot import dkim and nacl"
opendkim -V 2>&1 | grep -q 'ed25519-sha256' || echo "dkim: WARNING: this OpenDKIM lists no ed25519-sha256" >&2

# --- Keys -----------------------------------------------------------------------------------

install -d -m 0755 -o root -g root "$KEYS"

# A private key is kept if it is PKCS#8 and parses as the right kind; otherwise a new one is
# made. openssl genpkey writes PKCS#8 ("BEGIN PRIVATE KEY") for both kinds.
make_key() { # name algorithm
    local name=$1 alg=$2 file=$KEYS/$1.private.pem kind
    case $alg in
    rsa) kind='^(RSA )?Private-Key: \(2048 bit' ;; # OpenSSL 3 leaves out "RSA "
    ed25519) kind='^ED25519 Private-Key:' ;;
    esac
    if [[ -s $file ]] && head -n 1 "$file" | grep -qx -- '-----BEGIN PRIVATE KEY-----' &&
        openssl pkey -in "$file" -noout -text 2>/dev/null | head -n 1 | grep -qE "$kind"; then
        chmod 0600 "$file"
        chown root:root "$file"
        return
    fi
    case $alg in
    rsa) quietly openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$TMP/$name.pem" ;;
    ed25519) quietly openssl genpkey -algorithm ed25519 -out "$TMP/$name.pem" ;;
    esac
    install -m 0600 -o root -g root "$TMP/$name.pem" "$file"
    echo "dkim: made a new $alg key $file"
}

# The public parts are derived again on every run, so they always match the private keys.
publish() { # name algorithm
    local name=$1 alg=$2 p
    openssl pkey -in "$KEYS/$name.private.pem" -pubout -out "$TMP/$name.public.pem" 2>/dev/null ||
        die "cannot read $KEYS/$name.private.pem"
    case $alg in
    # RFC 6376: p= is the DER SubjectPublicKeyInfo, as opendkim-genkey writes it.
    rsa) p=$(openssl pkey -pubin -in "$TMP/$name.public.pem" -outform DER | base64 -w0) ;;
    # RFC 8463: p= is the raw 32-byte public key, the last 32 bytes of the 44-byte SPKI.
    ed25519)
        openssl pkey -pubin -in "$TMP/$name.public.pem" -outform DER >"$TMP/$name.der"
        [[ $(stat -c %s "$TMP/$name.der") -eq 44 ]] || die "unexpected ed25519 SPKI length"
        p=$(tail -c 32 "$TMP/$name.der" | base64 -w0)
        ;;
    esac
    install -m 0644 -o root -g root "$TMP/$name.public.pem" "$KEYS/$name.public.pem"
    printf 'v=DKIM1; k=%s; p=%s\n' "$alg" "$p" >"$TMP/$name.txt"
    install -m 0644 -o root -g root "$TMP/$name.txt" "$KEYS/$name.txt"
}

make_key rsa rsa
make_key ed ed25519
make_key wrong rsa
publish rsa rsa
publish ed ed25519
publish wrong rsa
cmp -s "$KEYS/rsa.public.pem" "$KEYS/wrong.public.pem" && die "the wrong key is the rsa key"

# The published records: wrong.txt is deliberately not among them. The last two are RFC 8463's
# Appendix A.2, so that its signed example (tests/dkim/rfc8463-a3.eml) verifies as published.
{
    echo "# Written by sendbox's tests/dkim/setup.sh. The test DNS: NAME TXT-value, one a line."
    echo "# Read by OpenDKIM (TestDNSData) and tests/dkim/verify.py; nothing else is published."
    for s in rsa ed; do
        printf '%s._domainkey.%s %s\n' "$s" "$DOMAIN" "$(cat "$KEYS/$s.txt")"
    done
    echo "brisbane._domainkey.football.example.com v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
    echo "test._domainkey.football.example.com v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWRiGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB"
} >"$TMP/dns.txt"
install -m 0644 -o root -g root "$TMP/dns.txt" "$KEYS/dns.txt"

# --- OpenDKIM, verifying only ---------------------------------------------------------------

# InternalHosts defaults to 127.0.0.1, whose mail OpenDKIM would sign rather than verify;
# every test client is on 127.0.0.1, so the set is a TEST-NET address nobody uses.
echo "192.0.2.1" >"$TMP/internal-hosts"
install -m 0644 -o root -g root "$TMP/internal-hosts" "$KEYS/internal-hosts"

cat >"$TMP/opendkim.conf" <<EOF
# Written by sendbox's tests/dkim/setup.sh, which overwrites it on every run.
# A verifier only: it signs nothing and holds no private key.
Mode                v
Socket              inet:${MILTER#*:}@${MILTER%:*}
PidFile             $RUN/opendkim.pid
UserID              opendkim:opendkim
UMask               022
Background          yes
AuthservID          sendbox-test
# Add Authentication-Results even to unsigned mail (dkim=none), so that a test can tell
# "no signature" from "the milter never saw it".
AlwaysAddARHeader   yes
SoftwareHeader      yes
# No DNS: libopendkim's resolver is replaced by lookups in this file.
TestDNSData         file:$KEYS/dns.txt
InternalHosts       file:$KEYS/internal-hosts
# Verify every signature (the default is 3) and report each.
MaximumSignaturesToVerify 10
MinimumKeyBits      1024
Syslog              yes
SyslogSuccess       yes
LogWhy              yes
EOF
install -m 0644 -o root -g root "$TMP/opendkim.conf" "$KEYS/opendkim.conf"
quietly opendkim -n -x "$KEYS/opendkim.conf"

install -d -m 0755 -o opendkim -g opendkim "$RUN"

# Our instance, found by its pid file only (Debian's own opendkim service, if any, is left alone).
running_pid() {
    local pid
    pid=$(cat "$RUN/opendkim.pid" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ ]] && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == opendkim ]] &&
        tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$KEYS/opendkim.conf" && echo "$pid"
}

# Whether anything accepts connections there (bash's /dev/tcp: no iproute2 needed).
milter_listening() {
    timeout 2 bash -c "exec 3<>/dev/tcp/${MILTER%:*}/${MILTER#*:}" 2>/dev/null
}

# The configuration and the key data it was started with.
stamp=$(cat "$KEYS/opendkim.conf" "$KEYS/dns.txt" "$KEYS/internal-hosts" | sha256sum | cut -c1-64)
if pid=$(running_pid) && [[ $(cat "$RUN/stamp" 2>/dev/null) == "$stamp" ]] && milter_listening; then
    echo "dkim: OpenDKIM already running (pid $pid) with this configuration"
else
    if pid=$(running_pid); then
        kill "$pid"
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        ! kill -0 "$pid" 2>/dev/null || die "OpenDKIM (pid $pid) did not stop"
    fi
    ! milter_listening || die "something else listens on $MILTER"
    quietly opendkim -x "$KEYS/opendkim.conf"
    deadline=$((SECONDS + WAIT))
    until milter_listening; do
        ((SECONDS < deadline)) || die "OpenDKIM does not listen on $MILTER after ${WAIT}s"
        sleep 0.1
    done
    echo "$stamp" >"$RUN/stamp"
    echo "dkim: OpenDKIM started (pid $(running_pid || echo '?')), verifying on $MILTER"
fi

# --- Postfix: a new listener with the milter ------------------------------------------------

before=$(sha256sum /etc/postfix/master.cf)
quietly postconf -M "$LISTENER/inet=$LISTENER inet n - n - - smtpd"
quietly postconf -P "$LISTENER/inet/syslog_name=postfix/dkim"
quietly postconf -P "$LISTENER/inet/smtpd_milters=inet:$MILTER"
# A milter that does not answer means 451 4.7.1 for the client, never a message let through.
quietly postconf -P "$LISTENER/inet/milter_default_action=tempfail"
quietly postfix check
if [[ $(sha256sum /etc/postfix/master.cf) != "$before" ]]; then
    # A reload, not a restart: the other listeners keep serving the tests that use them.
    # A stopped Postfix is left stopped (the outbox tests stop and start it on purpose).
    "$(postconf -h daemon_directory)/master" -t 2>/dev/null &&
        die "Postfix is not running: start it (postfix start), then rerun me"
    quietly postfix reload
    echo "dkim: Postfix reloaded with the new listener $LISTENER"
fi

deadline=$((SECONDS + WAIT))
until out=$(swaks --server "$LISTENER" --quit-after CONNECT --timeout 5 2>&1) &&
    grep -qE '^<- +220 ' <<<"$out"; do
    ((SECONDS < deadline)) || die "$LISTENER gave no 220 greeting within ${WAIT}s:"$'\n'"$out"
    sleep 0.2
done
# Only the new listener has the milter.
if postconf -M | grep -v "^${LISTENER//./\\.} " | grep -q 'smtpd_milters'; then
    die "another Postfix service has smtpd_milters:"$'\n'"$(postconf -M | grep smtpd_milters)"
fi
[[ -z $(postconf -h smtpd_milters) ]] || die "main.cf sets smtpd_milters for every listener"

echo "dkim: ready: send to $LISTENER (OpenDKIM on $MILTER, keys and records in $KEYS);" \
    "tests/dkim/selfcheck.sh proves the verifiers"
