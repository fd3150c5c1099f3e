#!/usr/bin/python3
"""Print OpenDKIM's verdicts from a delivered message's Authentication-Results field.

usage: authres.py [--authserv-id ID] [MESSAGE]      (MESSAGE defaults to stdin)

Reads the Authentication-Results field(s) whose authserv-id is ID (default sendbox-test,
the OpenDKIM milter of tests/dkim/setup.sh) and prints one line per dkim= result, in the
same shape as verify.py prints dkimpy's:

    pass d=sendbox.test s=rsa a=rsa-sha256 b=gNYtLn1y
    fail d=sendbox.test s=ed a=ed25519-sha256 b=XYpgNyU3 (signature verification failed)
    none                                        (OpenDKIM saw no signature)
    nokey                                       (see below)

Exit 0 only when there is exactly one such field (OpenDKIM removes any that a sender forged
with its authserv-id), it holds at least one dkim= result, and every one is "pass"; 1
otherwise; 2 for bad usage or an unreadable file. No such field at all means either that the
message did not pass through the milter (was it sent to 127.0.0.1:2527?), or, when OpenDKIM's
own "DKIM-Filter:" field is there, that a signature named a key that is not published: OpenDKIM
(On-KeyNotFound accept) then lets the message through with no verdict, and this prints "nokey".
"""

import argparse
import re
import sys

DNS = "/etc/sendbox-test-dkim/dns.txt"


def header_fields(message):
    """(name, unfolded value) for each field of the header, as bytes."""
    end = re.search(rb"\r?\n\r?\n", message)
    block = message[: end.start()] if end else message
    block = re.sub(rb"\r?\n(?=[ \t])", b"", block)
    for line in re.split(rb"\r?\n", block):
        name, colon, value = line.partition(b":")
        if colon:
            yield name.strip(), value.strip()


def strip_comments(s):
    # RFC 5322 comments, possibly nested; quoted strings do not occur in OpenDKIM's output.
    out, depth = [], 0
    for ch in s:
        if ch == "(":
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return "".join(out)


def main():
    ap = argparse.ArgumentParser(description="OpenDKIM's dkim= results from Authentication-Results.")
    ap.add_argument("--authserv-id", default="sendbox-test")
    ap.add_argument("message", nargs="?", help="the message file (default: stdin)")
    args = ap.parse_args()
    try:
        if args.message is None:
            message = sys.stdin.buffer.read()
        else:
            with open(args.message, "rb") as f:
                message = f.read()
    except OSError as e:
        print(f"authres.py: {e}", file=sys.stderr)
        return 2

    ours = []
    for name, value in header_fields(message):
        if name.lower() != b"authentication-results":
            continue
        value = value.decode("utf-8", "replace")
        parts = [p.strip() for p in value.split(";")]
        # authserv-id [version], then the results
        if strip_comments(parts[0]).split()[:1] == [args.authserv_id]:
            ours.append(parts[1:])
    if not ours:
        if any(n.lower() == b"dkim-filter" and b"OpenDKIM" in v for n, v in header_fields(message)):
            # OpenDKIM's On-KeyNotFound=accept path lets the message through with no verdict.
            print("nokey")
            print(f"authres.py: OpenDKIM saw the message (DKIM-Filter) but added no "
                  f"Authentication-Results: it does so when a signature's key is not published; "
                  f"are d= and s= among {DNS}'s records?", file=sys.stderr)
        else:
            print(f"authres.py: no Authentication-Results from {args.authserv_id}: the message did "
                  "not pass through the OpenDKIM milter (was it sent to 127.0.0.1:2527?)",
                  file=sys.stderr)
        return 1
    if len(ours) > 1:
        print(f"authres.py: {len(ours)} Authentication-Results fields from {args.authserv_id}, "
              "expected exactly one", file=sys.stderr)

    ok = len(ours) == 1
    results = 0
    for part in ours[0]:
        comment = " ".join(re.findall(r"\(([^()]*)\)", part))
        # method=result, then ptype.property=value; a value may be a quoted string
        tokens = re.findall(r'[^\s=]+="[^"]*"|\S+', strip_comments(part))
        if not tokens:
            continue
        method, _, result = tokens[0].partition("=")
        if method.lower() != "dkim":
            continue  # dkim-atps and others
        results += 1
        props = dict(t.split("=", 1) for t in tokens[1:] if "=" in t)
        if result == "none":
            print("none")
            ok = False
            continue
        line = f"{result} d={props.get('header.d', '?')} s={props.get('header.s', '?')} " \
               f"a={props.get('header.a', '?')} b={props.get('header.b', '?')}"
        if result != "pass":
            ok = False
            why = "; ".join(x for x in (props.get("reason", "").strip('"'), comment) if x)
            if why:
                line += f" ({why})"
        print(line)
    if results == 0:
        print(f"authres.py: no dkim= result from {args.authserv_id}", file=sys.stderr)
        ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
