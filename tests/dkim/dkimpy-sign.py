#!/usr/bin/python3
"""Sign a message with dkimpy: reference signatures made by a tool nobody here wrote.

usage: dkimpy-sign.py --key FILE --selector S [--domain D] [--canon H/B]
                      [--headers from,to,...] < message > signed-message

The key is a PKCS#8 PEM private key as tests/dkim/setup.sh writes them (rsa or ed25519; the
algorithm, rsa-sha256 or ed25519-sha256, follows from the key). The selector is whatever
the signature should claim: sign with wrong.private.pem as --selector rsa for the "wrong key"
control. The message is read with LF or CRLF line ends and written back with CRLF, the
DKIM-Signature field first. dkimpy takes ed25519 keys as a base64 32-byte seed, which this
takes from the end of the PKCS#8 structure.
"""

import argparse
import base64
import re
import sys

import dkim

# PKCS#8 for Ed25519 (RFC 8410): 48 bytes, the algorithm OID 1.3.101.112, then the 32-byte seed.
ED25519_OID = bytes.fromhex("06032b6570")


def main():
    ap = argparse.ArgumentParser(description="Sign a message (stdin) with dkimpy.")
    ap.add_argument("--key", required=True, help="PKCS#8 PEM private key, rsa or ed25519")
    ap.add_argument("--selector", required=True)
    ap.add_argument("--domain", default="sendbox.test")
    ap.add_argument("--canon", default="relaxed/relaxed", help="header/body (default relaxed/relaxed)")
    ap.add_argument("--headers", default="from,to,cc,subject,date,message-id,mime-version,content-type",
                    help="the fields to sign, comma-separated; only those present are signed")
    args = ap.parse_args()

    with open(args.key, "rb") as f:
        pem = f.read()
    m = re.search(rb"-----BEGIN PRIVATE KEY-----(.*?)-----END PRIVATE KEY-----", pem, re.S)
    if not m:
        sys.exit("dkimpy-sign.py: the key is not a PKCS#8 PEM private key")
    der = base64.b64decode(m.group(1))
    if len(der) == 48 and ED25519_OID in der:
        key, algorithm = base64.b64encode(der[-32:]), b"ed25519-sha256"
    else:
        key, algorithm = pem, b"rsa-sha256"

    header, _, body = args.canon.partition("/")
    canon = (header.encode(), (body or "simple").encode())

    message = sys.stdin.buffer.read()
    message = re.sub(rb"\r?\n", b"\r\n", message)
    present = {name.lower() for name, _ in dkim.rfc822_parse(message)[0]}
    include = [h.encode() for h in args.headers.lower().split(",") if h.encode() in present]

    signature = dkim.sign(message, args.selector.encode(), args.domain.encode(), key,
                          canonicalize=canon, include_headers=include,
                          signature_algorithm=algorithm, linesep=b"\r\n")
    sys.stdout.buffer.write(signature + message)
    return 0


if __name__ == "__main__":
    sys.exit(main())
