#!/usr/bin/python3
"""Print the last message in an mbox file whose Subject (or another field) contains a token.

usage: last-message.py [--wait SECONDS] [--field NAME] MBOX TOKEN

MBOX is one of the test Postfix's mailboxes, e.g. /var/mail/vhosts/sendbox.test/bob. The
message is written to stdout as it was delivered, less what the mbox format added:

  - the "From sender date" line that starts each message, and the empty line that Postfix
    adds after each message;
  - ">From " at the start of a line, which Postfix writes for a line that began "From "
    (mboxo quoting), is turned back into "From ". A line that really began ">From " cannot
    be told apart and comes out as "From ": a test should not send one;
  - line ends stay LF, as Postfix stores them (dkimpy, verify.py, reads LF or CRLF).

The token must be in the Subject as a whole word (not followed or preceded by a letter, digit,
"_" or "-": "t-1" does not find "t-14"), as written or after RFC 2047 decoding, so a token
inside an encoded non-ASCII Subject is found too. --field NAME looks in that header field
instead (e.g. an unsigned X- field, for a message whose Subject cannot change). With --wait, polls until such a message arrives
(default 0: look once). Reads under a shared fcntl lock, so a message Postfix is still
appending (it holds an exclusive one) is never cut short. Exit 0 when found, 1 when not,
2 for bad usage or an unreadable file.
"""

import argparse
import email.header
import fcntl
import mmap
import os
import re
import sys
import time


def field_values(header_block, field):
    """The unfolded values of the fields named so in a header block (bytes, LF line ends)."""
    unfolded = re.sub(rb"\r?\n(?=[ \t])", b"", header_block)
    for line in unfolded.split(b"\n"):
        name, colon, value = line.partition(b":")
        if colon and name.strip().lower() == field:
            yield value.strip()


def contains_word(text, token):
    """token in text, not as part of a longer word: "t-1" is not found in "t-14"."""
    if isinstance(text, bytes):
        token = token.encode()
        pattern = rb"(?<![\w-])" + re.escape(token) + rb"(?![\w-])"
    else:
        pattern = r"(?<![\w-])" + re.escape(token) + r"(?![\w-])"
    return re.search(pattern, text) is not None


def field_matches(header_block, field, token):
    for value in field_values(header_block, field):
        if contains_word(value, token):
            return True
        try:
            decoded = str(email.header.make_header(email.header.decode_header(value.decode("utf-8", "replace"))))
        except Exception:  # a malformed encoded word: the raw match above is all there is
            continue
        if contains_word(decoded, token):
            return True
    return False


def find_last(data, field, token, floor=0):
    """The last message (bytes, mbox framing removed) whose field contains token, or None.
    Messages that start before floor are not looked at."""
    end = len(data)
    while end > floor:
        # Every line that starts "From " begins a message: Postfix quotes the others.
        start = data.rfind(b"\nFrom ", 0, max(end - 1, 0))
        start = 0 if start < 0 else start + 1
        if start < floor:
            return None  # looked at already, when the file ended at floor
        chunk = data[start:end]
        end = start
        if not chunk.startswith(b"From "):
            continue  # text before the first message: not a message
        newline = chunk.find(b"\n")
        if newline < 0:
            continue
        message = chunk[newline + 1 :]
        header_end = message.find(b"\n\n")
        headers = message if header_end < 0 else message[: header_end + 1]
        if not field_matches(headers, field, token):
            continue
        # Postfix ends each message with an empty line, the mbox separator.
        if message.endswith(b"\n\n"):
            message = message[:-1]
        return re.sub(rb"(?m)^>From ", b"From ", message)
    return None


def search_locked(path, field, token, deadline, floor=0):
    """find_last over the file from floor on, read under a shared lock (mapped, not copied:
    bob's mailbox is tens of MB), and the size it had. While several tests wait on one
    mailbox, each scan is of what arrived since its last: a whole scan under the lock, again
    and again, kept Postfix from its exclusive lock until it deferred the delivery."""
    with open(path, "rb") as f:
        while True:
            try:
                fcntl.lockf(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
                break
            except OSError:
                if time.monotonic() >= deadline:
                    fcntl.lockf(f, fcntl.LOCK_SH)  # block: a delivery does not take long
                    break
                time.sleep(0.05)
        try:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                return None, 0
            if size < floor:
                floor = 0  # the file was emptied: everything in it is new
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                return find_last(data, field, token, floor), size
        finally:
            fcntl.lockf(f, fcntl.LOCK_UN)


def main():
    ap = argparse.ArgumentParser(description="Print the last message whose Subject (or --field) contains TOKEN.")
    ap.add_argument("--wait", type=float, default=0, metavar="SECONDS",
                    help="poll until such a message arrives, at most this long (default 0)")
    ap.add_argument("--field", default="Subject", metavar="NAME",
                    help="the header field to look in (default Subject)")
    ap.add_argument("mbox")
    ap.add_argument("token")
    args = ap.parse_args()
    if not args.token:
        ap.error("the token is empty")

    deadline = time.monotonic() + args.wait
    scanned = 0
    while True:
        try:
            message, scanned = search_locked(args.mbox, args.field.lower().encode(), args.token,
                                             deadline, scanned)
        except FileNotFoundError:
            message = None  # no mail delivered to it yet
        except OSError as e:
            print(f"last-message.py: {e}", file=sys.stderr)
            return 2
        if message is not None:
            sys.stdout.buffer.write(message)
            return 0
        if time.monotonic() >= deadline:
            print(f"last-message.py: no message with {args.token!r} in its {args.field} in {args.mbox}"
                  + (f" after {args.wait:g} s" if args.wait else ""), file=sys.stderr)
            return 1
        time.sleep(0.1)


if __name__ == "__main__":
    sys.exit(main())
