#!/usr/bin/env python3
"""Run ZODB's own repozo (ZODB.scripts.repozo) with a faked clock.

Usage: python py_repozo.py [repozo options...]

If the environment variable REPOZO_TEST_NOW=YYYY-MM-DD-hh-mm-ss (UTC) is set,
``gen_filedate`` is replaced so that repozo believes that is the current time.
repozo uses it for the names of new backup files and, through
find_files -> gen_filename, as the default recover/verify/backup date.
"""
import os
import sys

from ZODB.scripts import repozo


def _fake_now():
    raw = os.environ.get("REPOZO_TEST_NOW")
    if not raw:
        return None
    parts = tuple(int(p) for p in raw.split("-"))
    if len(parts) != 6:
        sys.exit("py_repozo.py: REPOZO_TEST_NOW must be YYYY-MM-DD-hh-mm-ss, "
                 "got %r" % raw)
    return parts


def main():
    now = _fake_now()
    if now is not None:
        repozo.gen_filedate = lambda options: now
    # repozo.program is sys.argv[0] captured at import time; it only shows up
    # in the usage text.  Make it the plain command name.
    repozo.program = "repozo"
    return repozo.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
