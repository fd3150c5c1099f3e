#!/usr/bin/python3
"""Verify every DKIM-Signature of one message with dkimpy, against the test records only.

usage: verify.py [--dns FILE] [MESSAGE]     (MESSAGE defaults to stdin; LF or CRLF line ends)

The public keys come from FILE (default /etc/sendbox-test-dkim/dns.txt, written by
tests/dkim/setup.sh: "NAME TXT-value" a line, "#" comments); no DNS query is ever made, and
a name not in FILE is "no such record". One line per signature, in header order:

    pass d=sendbox.test s=rsa a=rsa-sha256 c=relaxed/relaxed
    fail d=sendbox.test s=ed a=ed25519-sha256 c=simple/simple (body hash mismatch ...)

with " l=N" after c= when the signature covers only N bytes of the body, and a single line
"none" when there is no signature. Exit 0 only when there is at least one signature and
every one passes; 1 otherwise; 2 for bad usage or an unreadable file.

This is /usr/bin/python3 on purpose: Debian's python3-dkim (dkimpy) is installed there, and a
python3 earlier on PATH (pyenv, a venv) may not have it.
"""

import argparse
import logging
import sys

try:
    import dkim
except ImportError:
    sys.exit("verify.py: dkimpy is missing (apt-get install python3-dkim; tests/dkim/setup.sh does)")

DNS = "/etc/sendbox-test-dkim/dns.txt"


def load_records(path):
    records = {}
    with open(path, "rb") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith(b"#"):
                continue
            name, _, value = line.partition(b" ")
            records[name.rstrip(b".").lower()] = value.strip()
    return records


def main():
    ap = argparse.ArgumentParser(description="Verify a message's DKIM signatures with dkimpy.")
    ap.add_argument("--dns", default=DNS, help=f"the test TXT records (default {DNS})")
    ap.add_argument("message", nargs="?", help="the message file (default: stdin)")
    args = ap.parse_args()

    try:
        records = load_records(args.dns)
        if args.message is None:
            message = sys.stdin.buffer.read()
        else:
            with open(args.message, "rb") as f:
                message = f.read()
    except OSError as e:
        print(f"verify.py: {e}", file=sys.stderr)
        return 2

    def dnsfunc(name, timeout=5):
        if isinstance(name, str):
            name = name.encode()
        return records.get(name.rstrip(b".").lower())

    # dkimpy says why a signature fails only through its logger.
    class Collect(logging.Handler):
        def __init__(self):
            super().__init__(logging.INFO)
            self.messages = []

        def emit(self, record):
            self.messages.append(record.getMessage())

    collect = Collect()
    logger = logging.getLogger("sendbox-dkim-verify")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(collect)

    try:
        headers, _ = dkim.rfc822_parse(message)
    except dkim.DKIMException as e:
        print(f"fail (the message does not parse: {e})")
        return 1
    count = sum(1 for name, _ in headers if name.lower() == b"dkim-signature")
    if count == 0:
        print("none")
        return 1

    ok = True
    for idx in range(count):
        collect.messages.clear()
        d = dkim.DKIM(message, logger=logger)
        reason = ""
        try:
            passed = bool(d.verify(idx=idx, dnsfunc=dnsfunc))
        except dkim.DKIMException as e:
            passed = False
            reason = str(e)
        if not passed and not reason:
            reason = "; ".join(collect.messages) or "signature does not verify"
        tags = d.signature_fields or {}  # empty when the tag list did not parse
        fields = " ".join(
            f"{t}={tags.get(t.encode(), b'?').decode('ascii', 'replace')}"
            for t in ("d", "s", "a")
        )
        c = tags.get(b"c", b"simple").decode("ascii", "replace")
        fields += " c=" + (c if "/" in c else c + "/simple")  # RFC 6376 3.5: body defaults to simple
        if b"l" in tags:
            fields += " l=" + tags[b"l"].decode("ascii", "replace")
        if passed:
            print(f"pass {fields}")
        else:
            ok = False
            print(f"fail {fields} ({reason})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
