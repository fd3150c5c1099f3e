#!/usr/bin/env bash
# Prove the DKIM verifiers of tests/dkim/setup.sh with signatures made by dkimpy, which nobody
# here wrote: each message is signed (or not, or signed and then changed), sent to Postfix on
# 127.0.0.1:2527 for bob@sendbox.test, found again in bob's mbox by a unique Subject token,
# and judged by both verifiers: OpenDKIM's Authentication-Results (authres.py) and dkimpy
# (verify.py). Every case has an expected verdict; the negative controls must fail in BOTH,
# or this script fails. Run as root (the mailbox is vmail's, mode 0600), after setup.sh.
# Exits 0 when every verdict is as expected, 1 otherwise.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
KEYS=/etc/sendbox-test-dkim
MBOX=/var/mail/vhosts/sendbox.test/bob
HOST=127.0.0.1
PORT=2527
WAIT=30 # seconds for each message to arrive
RUNID="dkim-selfcheck-$$-$(date +%s%N)"

[[ -r $KEYS/rsa.private.pem && -r $KEYS/dns.txt ]] || {
    echo "dkim selfcheck: no keys in $KEYS (run tests/dkim/setup.sh as root)" >&2
    exit 1
}

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
start=$SECONDS

# A key nobody published, for the ed25519 "wrong key" control (the rsa one is in $KEYS).
openssl genpkey -algorithm ed25519 -out "$TMP/wrong-ed.pem" 2>/dev/null

# The message: a folded header, non-ASCII text, a body line that begins "From " (Postfix
# writes ">From " in the mbox; last-message.py undoes it), one that SMTP dot-stuffs, trailing
# blanks and a tab (which simple and relaxed treat differently), and an empty last line.
# With "utf8", the From and Subject are raw UTF-8 (RFC 6532), as sent with SMTPUTF8.
message() { # token [utf8]
    local from="Alice <alice@sendbox.test>" subject="dkim self-check $1"
    if [[ ${2-} == utf8 ]]; then
        from="Älice Ünïcode <alice@sendbox.test>"
        subject="dkim self-check, grüße 日本 $1"
    fi
    printf '%s\r\n' \
        "From: $from" \
        "To: Bob <bob@sendbox.test>" \
        "Subject: $subject" \
        "Date: $(date -R)" \
        "Message-ID: <$1@sendbox.test>" \
        "MIME-Version: 1.0" \
        "Content-Type: text/plain; charset=utf-8" \
        "X-Folded: a field folded" \
        "   over two lines,  with  runs of blanks" \
        "" \
        "Hello Bob," \
        "" \
        "From the start of a line, Grüße aus Köln." \
        ".a line that begins with a dot" \
        "trailing blanks   " \
        "	a tab first, and	inside" \
        ""
}

# smtp: DATA (smtplib dot-stuffs); smtputf8: DATA with MAIL FROM ... SMTPUTF8 BODY=8BITMIME;
# bdat: CHUNKING, the message in two BDAT chunks split inside a line (smtplib has no BDAT).
send() { # file port via
    /usr/bin/python3 - "$1" "$HOST" "$2" "$3" <<'EOF'
import smtplib, socket, sys
path, host, port, via = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
with open(path, "rb") as f:
    data = f.read()
if via in ("smtp", "smtputf8"):
    opts = ["SMTPUTF8", "BODY=8BITMIME"] if via == "smtputf8" else []
    with smtplib.SMTP(host, port, timeout=30) as s:
        s.sendmail("alice@sendbox.test", ["bob@sendbox.test"], data, mail_options=opts)
    sys.exit(0)
assert via == "bdat"
conn = socket.create_connection((host, port), timeout=30)
replies = conn.makefile("rb")
def reply(want):
    lines = []
    while True:
        line = replies.readline()
        lines.append(line)
        if len(line) < 4 or line[3:4] != b"-":
            break
    if not lines[-1].startswith(want):
        sys.exit("BDAT send: expected %r, got %r" % (want, b"".join(lines)))
    return b"".join(lines)
reply(b"220")
conn.sendall(b"EHLO selfcheck\r\n")
if b"CHUNKING" not in reply(b"250"):
    sys.exit("BDAT send: the server offers no CHUNKING")
conn.sendall(b"MAIL FROM:<alice@sendbox.test>\r\n"); reply(b"250")
conn.sendall(b"RCPT TO:<bob@sendbox.test>\r\n"); reply(b"250")
cut = len(data) // 2
for chunk, last in ((data[:cut], b""), (data[cut:], b" LAST")):
    conn.sendall(b"BDAT %d%s\r\n" % (len(chunk), last) + chunk)
    reply(b"250")
conn.sendall(b"QUIT\r\n"); reply(b"221")
EOF
}

# Cases: name|expected|key|selector|canon|change|port|via
#   expected: pass (both verifiers pass, with this s= and a=), fail (both say fail),
#             rfc8463 (RFC 8463's own example, ed25519 and rsa-1024 by football.example.com,
#             passes in both: the verifiers agree with the RFC, not only with dkimpy),
#             nokey (OpenDKIM lets it through with no verdict, dkimpy fails: no key),
#             none (both see no signature), absent (no Authentication-Results from
#             sendbox-test at all: the port has no milter)
#   change: what is done to the signed message before it is sent (utf8: the message has raw
#           UTF-8 in From and Subject from the start)
#   via: how it is sent (see send above)
CASES=(
    "rsa relaxed/relaxed|pass|rsa|rsa|relaxed/relaxed|-|$PORT|smtp"
    "rsa simple/simple|pass|rsa|rsa|simple/simple|-|$PORT|smtp"
    "ed25519 relaxed/relaxed|pass|ed|ed|relaxed/relaxed|-|$PORT|smtp"
    "ed25519 simple/simple|pass|ed|ed|simple/simple|-|$PORT|smtp"
    "rsa and ed25519 on one message|pass|rsa+ed|rsa+ed|relaxed/relaxed+simple/simple|-|$PORT|smtp"
    "RFC 8463 A.3, signed example as published|rfc8463|-|-|-|-|$PORT|smtp"
    "rsa relaxed/relaxed, sent in two BDAT chunks|pass|rsa|rsa|relaxed/relaxed|-|$PORT|bdat"
    "ed25519 simple, UTF-8 headers over SMTPUTF8|pass|ed|ed|simple/simple|utf8|$PORT|smtputf8"
    "rsa, one body byte changed|fail|rsa|rsa|relaxed/relaxed|body|$PORT|smtp"
    "ed25519, one body byte changed|fail|ed|ed|simple/simple|body|$PORT|smtp"
    "rsa, one header byte changed|fail|rsa|rsa|simple/simple|header|$PORT|smtp"
    "ed25519, one header byte changed|fail|ed|ed|relaxed/relaxed|header|$PORT|smtp"
    "rsa, unpublished key claiming s=rsa|fail|wrong|rsa|relaxed/relaxed|-|$PORT|smtp"
    "ed25519, unpublished key claiming s=ed|fail|wrong-ed|ed|relaxed/relaxed|-|$PORT|smtp"
    "rsa, selector not published (s=nokey)|nokey|rsa|nokey|relaxed/relaxed|-|$PORT|smtp"
    "unsigned|none|-|-|-|-|$PORT|smtp"
    "unsigned, forged A-R dkim=pass|none|-|-|-|forge|$PORT|smtp"
    "rsa, sent to port 25 (no milter)|absent|rsa|rsa|relaxed/relaxed|-|25|smtp"
)

keyfile() { # name
    case $1 in
    wrong-ed) echo "$TMP/wrong-ed.pem" ;;
    *) echo "$KEYS/$1.private.pem" ;;
    esac
}

alg_of() { # selector
    case $1 in
    ed) echo ed25519-sha256 ;;
    *) echo rsa-sha256 ;;
    esac
}

# Sign and send every case first, then collect: deliveries overlap.
n=0
for c in "${CASES[@]}"; do
    IFS='|' read -r name expected keys selectors canons change port via <<<"$c"
    n=$((n + 1))
    token="$RUNID-$n"
    if [[ $expected == rfc8463 ]]; then
        # Its Subject is signed: the token goes in a field of its own, which is not.
        { printf 'X-Selfcheck-Token: %s\r\n' "$token" && sed 's/$/\r/' "$HERE/rfc8463-a3.eml"; } >"$TMP/$n.msg"
    elif [[ $change == utf8 ]]; then
        message "$token" utf8 >"$TMP/$n.msg"
    else
        message "$token" >"$TMP/$n.msg"
    fi
    if [[ $keys != - ]]; then
        IFS=+ read -ra ks <<<"$keys"
        IFS=+ read -ra ss <<<"$selectors"
        IFS=+ read -ra cs <<<"$canons"
        for i in "${!ks[@]}"; do
            "$HERE/dkimpy-sign.py" --key "$(keyfile "${ks[$i]}")" --selector "${ss[$i]}" \
                --canon "${cs[$i]}" --headers from,to,subject,date,message-id,mime-version,content-type,x-folded \
                <"$TMP/$n.msg" >"$TMP/$n.signed"
            mv "$TMP/$n.signed" "$TMP/$n.msg"
        done
    fi
    cp "$TMP/$n.msg" "$TMP/$n.before"
    case $change in
    - | utf8) ;;
    body) sed -i 's/^Hello Bob,/Hello Bod,/' "$TMP/$n.msg" ;;
    header) sed -i 's/^Subject: dkim self-check/Subject: dkim self-checK/' "$TMP/$n.msg" ;;
    # A sender's own claim of a pass, in OpenDKIM's name: it must be removed, not believed.
    forge) sed -i "1i Authentication-Results: sendbox-test; dkim=pass header.d=sendbox.test header.s=rsa header.a=rsa-sha256 header.b=forged00\r" "$TMP/$n.msg" ;;
    esac
    [[ $change == - || $change == utf8 ]] || ! cmp -s "$TMP/$n.before" "$TMP/$n.msg" || {
        echo "dkim selfcheck: case \"$name\": the change \"$change\" changed nothing" >&2
        exit 1
    }
    send "$TMP/$n.msg" "$port" "$via" || {
        echo "dkim selfcheck: sending case \"$name\" to $HOST:$port ($via) failed" >&2
        exit 1
    }
done

failures=0
n=0
for c in "${CASES[@]}"; do
    IFS='|' read -r name expected keys selectors canons change port via <<<"$c"
    n=$((n + 1))
    token="$RUNID-$n"
    field=Subject
    [[ $expected != rfc8463 ]] || field=X-Selfcheck-Token
    if ! "$HERE/last-message.py" --wait "$WAIT" --field "$field" "$MBOX" "$token" >"$TMP/$n.got"; then
        echo "FAILED  $name: not delivered to $MBOX within ${WAIT}s" >&2
        failures=$((failures + 1))
        continue
    fi
    ar_rc=0 && "$HERE/authres.py" "$TMP/$n.got" >"$TMP/$n.ar" 2>"$TMP/$n.ar.err" || ar_rc=$?
    py_rc=0 && "$HERE/verify.py" "$TMP/$n.got" >"$TMP/$n.py" 2>"$TMP/$n.py.err" || py_rc=$?
    # What each said: its verdict lines, or else its complaint.
    said() { # file
        if [[ -s $1 ]]; then paste -sd'|' "$1" | sed 's/|/ | /g'; else paste -sd' ' "$1.err"; fi
    }
    ar=$(said "$TMP/$n.ar")
    py=$(said "$TMP/$n.py")

    ok=yes
    case $expected in
    pass)
        [[ $ar_rc -eq 0 && $py_rc -eq 0 ]] || ok=no
        IFS=+ read -ra ss <<<"$selectors"
        IFS=+ read -ra cs <<<"$canons"
        [[ $(wc -l <"$TMP/$n.ar") -eq ${#ss[@]} && $(wc -l <"$TMP/$n.py") -eq ${#ss[@]} ]] || ok=no
        for i in "${!ss[@]}"; do
            a=$(alg_of "${ss[$i]}")
            grep -qx "pass d=sendbox.test s=${ss[$i]} a=$a b=.*" "$TMP/$n.ar" || ok=no
            grep -qx "pass d=sendbox.test s=${ss[$i]} a=$a c=${cs[$i]}" "$TMP/$n.py" || ok=no
        done
        ;;
    fail)
        # A verdict of fail from each, on a signature both found: not "none", not an error.
        [[ $ar_rc -eq 1 && $py_rc -eq 1 ]] || ok=no
        grep -q "^fail d=sendbox.test s=$selectors " "$TMP/$n.ar" || ok=no
        grep -q "^fail d=sendbox.test s=$selectors " "$TMP/$n.py" || ok=no
        ! grep -q '^pass' "$TMP/$n.ar" "$TMP/$n.py" || ok=no
        ;;
    rfc8463)
        [[ $ar_rc -eq 0 && $py_rc -eq 0 ]] || ok=no
        [[ $(wc -l <"$TMP/$n.ar") -eq 2 && $(wc -l <"$TMP/$n.py") -eq 2 ]] || ok=no
        grep -qx "pass d=football.example.com s=brisbane a=ed25519-sha256 b=/gCrinpc" "$TMP/$n.ar" || ok=no
        grep -qx "pass d=football.example.com s=test a=rsa-sha256 b=F45dVWDf" "$TMP/$n.ar" || ok=no
        grep -qx "pass d=football.example.com s=brisbane a=ed25519-sha256 c=relaxed/relaxed" "$TMP/$n.py" || ok=no
        grep -qx "pass d=football.example.com s=test a=rsa-sha256 c=relaxed/relaxed" "$TMP/$n.py" || ok=no
        ;;
    nokey)
        [[ $ar_rc -eq 1 && $py_rc -eq 1 ]] || ok=no
        [[ $(head -n 1 "$TMP/$n.ar") == nokey ]] || ok=no
        grep -q "^fail d=sendbox.test s=$selectors .*missing public key" "$TMP/$n.py" || ok=no
        ;;
    none)
        [[ $ar_rc -eq 1 && $py_rc -eq 1 ]] || ok=no
        [[ $(cat "$TMP/$n.ar") == none && $(cat "$TMP/$n.py") == none ]] || ok=no
        ;;
    absent)
        [[ $ar_rc -eq 1 && ! -s $TMP/$n.ar ]] || ok=no
        grep -q 'did not pass through the OpenDKIM milter' "$TMP/$n.ar.err" || ok=no
        [[ $py_rc -eq 0 ]] || ok=no # the signature itself is good
        ;;
    esac
    if [[ $ok == yes ]]; then
        printf 'ok      %-46s expected %-7s OpenDKIM: %s\n%71s dkimpy:   %s\n' "$name" "$expected" "$ar" "" "$py"
    else
        printf 'FAILED  %-46s expected %-7s OpenDKIM (rc %s): %s\n%71s dkimpy (rc %s):   %s\n' \
            "$name" "$expected" "$ar_rc" "$ar" "" "$py_rc" "$py" >&2
        failures=$((failures + 1))
    fi
done

if ((failures)); then
    echo "dkim selfcheck: $failures of ${#CASES[@]} cases FAILED ($((SECONDS - start)) s)" >&2
    exit 1
fi
echo "dkim selfcheck: all ${#CASES[@]} cases as expected, in both verifiers ($((SECONDS - start)) s)"
