#!/usr/bin/env bash
# Install, configure and start a real Postfix on 127.0.0.1 for sendbox's integration tests,
# then check that it works. Run as root (CI runs it on a fresh Debian/Ubuntu machine, no stdin).
# Safe to rerun: it rewrites Postfix's whole configuration, restarts it and checks again.
#
#   127.0.0.1:25   smtp         plaintext, STARTTLS offered, no AUTH; accepts mail for sendbox.test only
#                               (also on [::1]:25, for the IPv6 tests)
#   127.0.0.1:587  submission   STARTTLS required, then AUTH required to send
#   127.0.0.1:465  submissions  implicit TLS, AUTH required to send
#   127.0.0.1:2525 limited      as port 25, but 2 recipients per transaction and a 3 s idle timeout
#   127.0.0.1:2526 large        as port 25, but messages up to 64 MiB (the benchmark's 25 MB
#                               messages); mail to sink@sendbox.test is taken and discarded
#   127.0.0.1:2527 dkim         not made here: tests/dkim/setup.sh adds it (port 25 through an
#                               OpenDKIM milter); when it has, the end of this script adds it again
#
# AUTH offers SCRAM-SHA-256, PLAIN, LOGIN and CRAM-MD5 (Cyrus SASL, sasldb). Postfix offers
# PIPELINING, SIZE (10240000), 8BITMIME, SMTPUTF8, DSN, ENHANCEDSTATUSCODES and CHUNKING.
#
# Postfix adds no missing Date, Message-ID or From (local_header_rewrite_clients is empty), so
# the tests see the header exactly as sendbox sent it.
#
# Mailboxes alice, bob and carol @sendbox.test are mbox files in /var/mail/vhosts/sendbox.test/;
# any other sendbox.test address is refused with 550 5.1.1. Nothing ever leaves this machine:
# every other destination goes to Postfix's error transport, and there is no SMTP client service.
# Tests read /var/lib/sendbox-postfix/{ca.pem,user,password}; the log is /var/log/postfix.log.
#
# Note: /etc/postfix/main.cf and master.cf are overwritten (the originals are kept, once, as
# *.sendbox-orig), user postfix joins group sasl to read /etc/sasldb2, and Postfix is restarted.
set -euo pipefail

STATE=/var/lib/sendbox-postfix
DOMAIN=sendbox.test
MAILBOXES=(alice bob carol)
VHOSTS=/var/mail/vhosts
SASL_USER=sendbox
SASL_PASSWORD=sendbox-test-password
SASL_REALM=localhost # must equal smtpd_sasl_local_domain, so clients log in as plain "sendbox"
LOG=/var/log/postfix.log
WAIT=20 # seconds to wait for ports and for delivery

die() {
    echo "postfix setup FAILED: $*" >&2
    if [[ -s $LOG ]]; then
        echo "--- last lines of $LOG ---" >&2
        tail -n 40 "$LOG" >&2
    fi
    exit 1
}

# Run a command silently; on failure show its output and stop.
quietly() {
    local out
    out=$("$@" 2>&1) || die "$* failed:"$'\n'"$out"
}

[[ $(id -u) -eq 0 ]] || die "run me as root"

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# --- Packages -------------------------------------------------------------------------------

# swaks needs Net::SSLeay for TLS, which it only recommends.
# git-email is for the test of git send-email through `sendbox sendmail`.
pkgs=(postfix sasl2-bin libsasl2-modules openssl swaks libnet-ssleay-perl git git-email)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q ' installed$' || missing+=("$p")
done
if ((${#missing[@]})); then
    # "Local only": should the package start Postfix before we configure it, it stays on loopback.
    echo "postfix postfix/main_mailer_type select Local only" | debconf-set-selections
    echo "postfix postfix/mailname string localhost" | debconf-set-selections
    export DEBIAN_FRONTEND=noninteractive
    quietly apt-get update -qq
    quietly apt-get install -y -qq "${pkgs[@]}"
fi

# --- TLS: a test CA and a server certificate for localhost and 127.0.0.1 --------------------

install -d -m 0755 "$STATE"

# Keep the existing files if they still verify for a day; otherwise make new ones.
tls_ok() {
    [[ -s $STATE/ca.pem && -s $STATE/ca.key && -s $STATE/server.pem && -s $STATE/server.key ]] &&
        openssl verify -CAfile "$STATE/ca.pem" -purpose sslserver -verify_hostname localhost \
            -verify_ip 127.0.0.1 "$STATE/server.pem" >/dev/null 2>&1 &&
        openssl x509 -in "$STATE/server.pem" -noout -checkend 86400 >/dev/null 2>&1 &&
        openssl x509 -in "$STATE/ca.pem" -noout -checkend 86400 >/dev/null 2>&1
}

make_tls() {
    local tmp=$TMP
    # A real CA and a leaf it signs: rustls/webpki rejects a self-signed leaf as a trust anchor.
    cat >"$tmp/ca.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
x509_extensions = ca_ext
[dn]
O = sendbox tests
CN = sendbox test CA
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EOF
    # webpki only matches names against subjectAltName (not CN), and wants a non-CA leaf.
    cat >"$tmp/server.ext" <<'EOF'
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
EOF
    # OpenSSL 3.0 cannot backdate notBefore, so validity starts now (30 days).
    quietly openssl req -x509 -new -config "$tmp/ca.cnf" -newkey rsa:2048 -nodes -sha256 \
        -days 30 -keyout "$tmp/ca.key" -out "$tmp/ca.pem"
    quietly openssl req -new -newkey rsa:2048 -nodes -subj "/O=sendbox tests/CN=localhost" \
        -keyout "$tmp/server.key" -out "$tmp/server.csr"
    quietly openssl x509 -req -in "$tmp/server.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" \
        -set_serial "0x$(openssl rand -hex 8)" -sha256 -days 30 -extfile "$tmp/server.ext" \
        -out "$tmp/server.pem"
    # Keys: root only, except that Postfix's group may read the server key.
    install -m 0600 -o root -g root "$tmp/ca.key" "$STATE/ca.key"
    install -m 0640 -o root -g postfix "$tmp/server.key" "$STATE/server.key"
    install -m 0644 -o root -g root "$tmp/server.pem" "$STATE/server.pem"
    install -m 0644 -o root -g root "$tmp/ca.pem" "$STATE/ca.pem" # tests read this
}

tls_ok || make_tls
tls_ok || die "the generated certificate does not verify"

# Credentials for the tests to read, so they need not hard-code them. No trailing newline.
printf '%s' "$SASL_USER" >"$STATE/user"
printf '%s' "$SASL_PASSWORD" >"$STATE/password"
chmod 0644 "$STATE/user" "$STATE/password"

# --- Virtual mailboxes ----------------------------------------------------------------------

# A dedicated system user owns the mailbox files; the virtual agent delivers as it.
getent group vmail >/dev/null || groupadd --system vmail
getent passwd vmail >/dev/null ||
    useradd --system --gid vmail --home-dir "$VHOSTS" --no-create-home --shell /usr/sbin/nologin vmail
VMAIL_UID=$(id -u vmail)
VMAIL_GID=$(id -g vmail)
install -d -m 0755 -o root -g root "$VHOSTS"
install -d -m 0755 -o vmail -g vmail "$VHOSTS/$DOMAIN"

# No trailing slash on the mailbox path: mbox files, not Maildirs.
for m in "${MAILBOXES[@]}" sink; do
    echo "$m@$DOMAIN $DOMAIN/$m"
done >/etc/postfix/sendbox-vmailbox
# sink@ is listed so that it is accepted, then discarded: large messages fill no mailbox.
echo "sink@$DOMAIN discard:" >/etc/postfix/sendbox-transport

# --- SASL: Cyrus with sasldb ----------------------------------------------------------------

install -d -m 0755 /etc/postfix/sasl
cat >/etc/postfix/sasl/smtpd.conf <<'EOF'
pwcheck_method: auxprop
auxprop_plugin: sasldb
mech_list: SCRAM-SHA-256 PLAIN LOGIN CRAM-MD5
sasldb_path: /etc/sasldb2
EOF
# -c creates the user or, if it exists, sets its password again.
printf '%s' "$SASL_PASSWORD" | quietly saslpasswd2 -p -c -u "$SASL_REALM" "$SASL_USER"
# smtpd runs unchrooted as user postfix and opens the database itself. Debian's way: the file
# belongs to group sasl (as dpkg-statoverride has it) and postfix joins that group.
usermod -a -G sasl postfix
chgrp sasl /etc/sasldb2
chmod 0640 /etc/sasldb2

# --- Postfix configuration ------------------------------------------------------------------

for f in /etc/postfix/main.cf /etc/postfix/master.cf; do
    [[ ! -e $f || -e $f.sendbox-orig ]] || cp -p "$f" "$f.sendbox-orig"
done

cat >/etc/postfix/main.cf <<EOF
# Written by sendbox's tests/postfix/setup.sh, which overwrites it on every run.
compatibility_level = 3.6

# Loopback only, IPv4 and IPv6. No DNS lookups of clients, who are all on this machine.
inet_interfaces = 127.0.0.1, [::1]
inet_protocols = all
myhostname = localhost
mydomain = localdomain
myorigin = \$myhostname
mynetworks = 127.0.0.0/8 [::1]/128
smtpd_banner = \$myhostname ESMTP \$mail_name
smtpd_peername_lookup = no
# The tests check what sendbox itself writes: Postfix must not fill in a missing Date,
# Message-ID or From for local clients, as it does by default.
local_header_rewrite_clients =

# Deliver to the virtual domain only: no Unix users, no relaying, nothing leaves this machine.
mydestination =
relayhost =
relay_domains =
local_transport = error:local delivery is disabled on this test server
default_transport = error:mail to other machines is disabled on this test server
relay_transport = \$default_transport
alias_maps =
alias_database =

# sendbox.test: one mbox file per listed user, owned by vmail; other users get 550 5.1.1.
virtual_mailbox_domains = $DOMAIN
virtual_mailbox_base = $VHOSTS
virtual_mailbox_maps = texthash:/etc/postfix/sendbox-vmailbox
virtual_uid_maps = static:$VMAIL_UID
virtual_gid_maps = static:$VMAIL_GID
virtual_minimum_uid = $VMAIL_UID
virtual_mailbox_limit = 0
smtpd_reject_unlisted_recipient = yes
transport_maps = texthash:/etc/postfix/sendbox-transport

# A delivery deferred here (a mailbox a test is reading is locked) is tried again within
# seconds, not the default minutes, which outlast any test's wait.
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s

message_size_limit = 10240000
mailbox_size_limit = 0
smtputf8_enable = yes

# These are port 25's settings; master.cf overrides them for 587 and 465.
smtpd_relay_restrictions = reject_unauth_destination
smtpd_recipient_restrictions =
smtpd_sasl_auth_enable = no
smtpd_tls_security_level = may

smtpd_tls_cert_file = $STATE/server.pem
smtpd_tls_key_file = $STATE/server.key
smtpd_tls_loglevel = 1
smtpd_tls_received_header = yes

smtpd_sasl_type = cyrus
smtpd_sasl_path = smtpd
cyrus_sasl_config_path = /etc/postfix/sasl
smtpd_sasl_local_domain = $SASL_REALM
smtpd_sasl_security_options = noanonymous
smtpd_sasl_authenticated_header = yes

# There is no syslog daemon in CI.
maillog_file = $LOG
EOF

# No service is chrooted (column 5 is "n"): smtpd reads /etc/sasldb2 and the certificates
# directly. The smtp, relay and lmtp clients are left out, so nothing can be sent anywhere.
cat >/etc/postfix/master.cf <<'EOF'
# Written by sendbox's tests/postfix/setup.sh, which overwrites it on every run.
# service     type  private unpriv  chroot  wakeup  maxproc command + args
smtp          inet  n       -       n       -       -       smtpd
submission    inet  n       -       n       -       -       smtpd
  -o syslog_name=postfix/submission
  -o smtpd_tls_security_level=encrypt
  -o smtpd_tls_auth_only=yes
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
  -o smtpd_recipient_restrictions=permit_sasl_authenticated,reject
submissions   inet  n       -       n       -       -       smtpd
  -o syslog_name=postfix/submissions
  -o smtpd_tls_wrappermode=yes
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
  -o smtpd_recipient_restrictions=permit_sasl_authenticated,reject
# Port 2525 is port 25 with two limits the tests meet: at most 2 recipients per
# transaction (452 for the rest) and 3 s before an idle client is dropped.
127.0.0.1:2525 inet n       -       n       -       -       smtpd
  -o syslog_name=postfix/limited
  -o smtpd_recipient_limit=2
  -o smtpd_timeout=3s
# Port 2526 takes messages up to 64 MiB; its own cleanup service has the same limit.
127.0.0.1:2526 inet n       -       n       -       -       smtpd
  -o syslog_name=postfix/large
  -o message_size_limit=67108864
  -o cleanup_service_name=cleanup_large
cleanup_large unix  n       -       n       -       0       cleanup
  -o message_size_limit=67108864
pickup        unix  n       -       n       60      1       pickup
cleanup       unix  n       -       n       -       0       cleanup
qmgr          unix  n       -       n       300     1       qmgr
tlsmgr        unix  -       -       n       1000?   1       tlsmgr
rewrite       unix  -       -       n       -       -       trivial-rewrite
bounce        unix  -       -       n       -       0       bounce
defer         unix  -       -       n       -       0       bounce
trace         unix  -       -       n       -       0       bounce
verify        unix  -       -       n       -       1       verify
flush         unix  n       -       n       1000?   0       flush
proxymap      unix  -       -       n       -       -       proxymap
proxywrite    unix  -       -       n       -       1       proxymap
showq         unix  n       -       n       -       -       showq
error         unix  -       -       n       -       -       error
retry         unix  -       -       n       -       -       error
discard       unix  -       -       n       -       -       discard
local         unix  -       n       n       -       -       local
virtual       unix  -       n       n       -       -       virtual
anvil         unix  -       -       n       -       1       anvil
scache        unix  -       -       n       -       1       scache
postlog       unix-dgram n  -       n       -       1       postlogd
EOF

quietly postfix check

# --- Start ----------------------------------------------------------------------------------

# "master -t" exits 0 when Postfix is NOT running. A reload cannot move listeners to new
# inet_interfaces, and a running Postfix may have an older config, so restart it instead.
master=$(postconf -h daemon_directory)/master
if ! "$master" -t 2>/dev/null; then
    quietly postfix stop
fi
quietly postfix start

# --- Self-check -----------------------------------------------------------------------------

SWAKS_COMMON=(--timeout 10 --from "alice@$DOMAIN")
SWAKS_TLS=(--tls-verify --tls-ca-path "$STATE/ca.pem")
SWAKS_AUTH=(--auth-user "$SASL_USER" --auth-password "$SASL_PASSWORD")

# Wait until the port answers with a 220 greeting.
wait_greeting() { # port [swaks TLS option]
    local port=$1 out deadline=$((SECONDS + WAIT))
    shift
    until out=$(swaks --server "127.0.0.1:$port" "$@" --quit-after CONNECT --timeout 5 2>&1) &&
        grep -qE '^<[-~] +220 ' <<<"$out"; do
        ((SECONDS < deadline)) || die "127.0.0.1:$port gave no 220 greeting within ${WAIT}s:"$'\n'"$out"
        sleep 0.2
    done
}

# The live certificate must verify against ca.pem for the name localhost, as rustls will check.
check_cert() { # port [openssl s_client options]
    local port=$1 out
    shift
    if ! out=$(timeout 10 openssl s_client -connect "127.0.0.1:$port" "$@" -CAfile "$STATE/ca.pem" \
        -verify_return_error -verify_hostname localhost </dev/null 2>&1) ||
        ! grep -q 'Verify return code: 0 (ok)' <<<"$out"; then
        die "the certificate on 127.0.0.1:$port does not verify against $STATE/ca.pem:"$'\n'"$out"
    fi
}

# Send one message and wait until it is in the recipient's mbox.
send_and_wait() { # port rcpt swaks-options...
    local port=$1 rcpt=$2 out deadline token
    shift 2
    token="sendbox-setup-check-$port-$$-$(date +%s%N)"
    out=$(swaks --server "127.0.0.1:$port" "${SWAKS_COMMON[@]}" --to "$rcpt@$DOMAIN" \
        --header "Subject: $token" --body "setup.sh self-check over port $port" "$@" 2>&1) ||
        die "sending over 127.0.0.1:$port failed:"$'\n'"$out"
    deadline=$((SECONDS + WAIT))
    until grep -qsF "$token" "$VHOSTS/$DOMAIN/$rcpt"; do
        ((SECONDS < deadline)) ||
            die "the message sent over port $port did not reach $VHOSTS/$DOMAIN/$rcpt within ${WAIT}s"
        sleep 0.2
    done
}

# Expect a given reply to RCPT TO.
expect_rcpt() { # port address reply-prefix swaks-options...
    local port=$1 addr=$2 want=$3 out
    shift 3
    out=$(swaks --server "127.0.0.1:$port" "${SWAKS_COMMON[@]}" --to "$addr" --quit-after RCPT "$@" 2>&1) || true
    grep -qE "^<[-~*]+ +$want" <<<"$out" ||
        die "RCPT TO:<$addr> on port $port did not get $want:"$'\n'"$out"
}

wait_greeting 25
out=$(swaks --server "[::1]:25" --quit-after CONNECT --timeout 5 2>&1) && grep -qE '^<- +220 ' <<<"$out" ||
    die "[::1]:25 gave no 220 greeting (is IPv6 loopback up?):"$'\n'"$out"
wait_greeting 587
wait_greeting 465 --tls-on-connect
wait_greeting 2525

# 25: plaintext delivery without AUTH; unknown users and other domains refused.
out=$(swaks --server 127.0.0.1:25 --quit-after EHLO --timeout 10 2>&1) || die "EHLO on port 25 failed:"$'\n'"$out"
grep -qE '^<- +250.STARTTLS' <<<"$out" || die "port 25 does not offer STARTTLS:"$'\n'"$out"
send_and_wait 25 carol
expect_rcpt 25 "nobody@$DOMAIN" '550 5\.1\.1'
expect_rcpt 25 "someone@example.com" '554 5\.7\.1'
echo "postfix: 127.0.0.1:25  smtp        ok: plaintext delivery to carol@$DOMAIN, STARTTLS offered, unknown user 550 5.1.1, relaying refused"

# 587: nothing before STARTTLS; AUTH only after it, and required to send.
out=$(swaks --server 127.0.0.1:587 --quit-after EHLO --timeout 10 2>&1) || die "EHLO on port 587 failed:"$'\n'"$out"
grep -qE '^<- +250.STARTTLS' <<<"$out" || die "port 587 does not offer STARTTLS:"$'\n'"$out"
! grep -qE '^<- +250.AUTH' <<<"$out" || die "port 587 offers AUTH before STARTTLS:"$'\n'"$out"
check_cert 587 -starttls smtp
expect_rcpt 587 "bob@$DOMAIN" '554 5\.7\.1' --tls "${SWAKS_TLS[@]}"
send_and_wait 587 bob --tls "${SWAKS_TLS[@]}" --auth PLAIN "${SWAKS_AUTH[@]}"
echo "postfix: 127.0.0.1:587 submission  ok: STARTTLS (certificate verified for localhost), AUTH PLAIN required, delivery to bob@$DOMAIN"

# 465: TLS from the first byte; AUTH required to send.
check_cert 465
expect_rcpt 465 "bob@$DOMAIN" '554 5\.7\.1' --tls-on-connect "${SWAKS_TLS[@]}"
send_and_wait 465 bob --tls-on-connect "${SWAKS_TLS[@]}" --auth LOGIN "${SWAKS_AUTH[@]}"
echo "postfix: 127.0.0.1:465 submissions ok: implicit TLS (certificate verified for localhost), AUTH LOGIN required, delivery to bob@$DOMAIN"

# The mechanisms the tests use must be offered, SCRAM-SHA-256 first among them.
out=$(swaks --server 127.0.0.1:465 --tls-on-connect "${SWAKS_TLS[@]}" --quit-after EHLO --timeout 10 2>&1) ||
    die "EHLO on port 465 failed:"$'\n'"$out"
grep -qE '^<~ +250.AUTH .*SCRAM-SHA-256' <<<"$out" || die "port 465 does not offer SCRAM-SHA-256:"$'\n'"$out"
grep -qE '^<~ +250.AUTH .*CRAM-MD5' <<<"$out" || die "port 465 does not offer CRAM-MD5:"$'\n'"$out"
send_and_wait 465 bob --tls-on-connect "${SWAKS_TLS[@]}" --auth CRAM-MD5 "${SWAKS_AUTH[@]}"
echo "postfix: AUTH offers SCRAM-SHA-256 and CRAM-MD5; CRAM-MD5 delivery to bob@$DOMAIN ok"

# 2525: the recipient limit.
expect_rcpt 2525 "alice@$DOMAIN,bob@$DOMAIN,carol@$DOMAIN" '452 4\.5\.3'
echo "postfix: 127.0.0.1:2525 limited     ok: the third recipient of a transaction gets 452 4.5.3"

# 2526: the larger size limit, and sink@ taken.
wait_greeting 2526
out=$(swaks --server 127.0.0.1:2526 --quit-after EHLO --timeout 10 2>&1) || die "EHLO on port 2526 failed:"$'\n'"$out"
grep -qE '^<- +250.SIZE 67108864' <<<"$out" || die "port 2526 does not offer SIZE 67108864:"$'\n'"$out"
expect_rcpt 2526 "sink@$DOMAIN" '250 2\.1\.5'
echo "postfix: 127.0.0.1:2526 large       ok: SIZE 67108864, sink@$DOMAIN accepted"

# master.cf was rewritten above, without the DKIM listener: put it back if it was set up.
dkim_setup=$(dirname "$0")/../dkim/setup.sh
if [[ -e /etc/sendbox-test-dkim/opendkim.conf && -f $dkim_setup ]]; then
    bash "$dkim_setup"
fi
