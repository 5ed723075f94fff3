#!/usr/bin/env python3
"""Keep committing blobs to a real ZODB blob storage, packing now and then.

Usage: python live_blob_writer.py BASE LOG_JSONL DURATION PACK_EVERY
                                  [SEED] [PAUSE]

Works on BASE/Data.fs with the blob directory BASE/blobs through
blob_helpers.BlobModel (``root['files']``: 'file-NNN' -> PersistentMapping
{'title', 'blob'}), opened with ``pack_keep_old=False``.  It commits in a
loop for DURATION seconds: new blobs (now and then a large one), new
content written into existing blobs, deletions of objects holding blobs,
commits that touch no blob, and now and then an undo of the commit just
made (ZODB copies the blob it restores under the undo's tid).  Every
PACK_EVERY seconds it packs as of now (``db.pack(time.time())``): Data.fs
is replaced (a new file renamed over it) and the blob files of the
revisions and objects packed away are then removed.  The second pack is
made with ``pack_keep_old=True`` (the database is closed and reopened for
it), which moves those files to BASE/blobs.old instead.  At the end it packs
once more and closes the database.

After every commit (undo included) it appends one JSON line to LOG_JSONL,
flushed and fsync'd before the next commit:

    {"tid": "<16 hex>", "op": "...", "t": time,
     "state": {key: ["<oid16 of the Blob>", "<md5 of its content>"], ...}}

``state`` holds every live blob (every key of root['files']) as committed
by that transaction.  Packs are logged as ``{"pack": i, "start": t, "end":
t, "keep_old": bool, "removed": n}`` (``removed``: blob files that left the
blob directory) and the end as ``{"done": true, "commits": N, "packs": P,
"undos": U, "deletes": D}``.
"""
import json
import os
import sys
import time

from blob_helpers import LARGE, BlobModel, hex16, md5

INITIAL_BLOBS = 30
MIN_BLOBS = 12
MAX_BLOBS = 60
UNDO_CHANCE = 0.08
KEEP_OLD_PACK = 2          # which pack runs with pack_keep_old=True


def count_blob_files(top):
    n = 0
    for dirpath, dirnames, filenames in os.walk(top):
        if dirpath == top:
            dirnames[:] = [d for d in dirnames if d != 'tmp']
        n += sum(1 for f in filenames if f.endswith('.blob'))
    return n


def main(argv):
    base, log_path, duration, pack_every = argv[:4]
    seed = int(argv[4]) if len(argv) > 4 else 1
    pause = float(argv[5]) if len(argv) > 5 else 0.01
    duration, pack_every = float(duration), float(pack_every)

    m = BlobModel(base, seed=seed, pack_keep_old=False)
    rng = m.rng
    m.open()
    log = open(log_path, 'a')
    oids = {}        # key -> oid16 of its Blob (keys are never reused)
    counts = {'commits': 0, 'packs': 0, 'undos': 0, 'deletes': 0}

    def record(obj):
        log.write(json.dumps(obj, sort_keys=True) + '\n')
        log.flush()
        os.fsync(log.fileno())

    def logged(op):
        tid = m.db.storage.lastTransaction()
        new = [k for k in m.contents if k not in oids]
        if new:
            conn = m.db.open()
            try:
                files = conn.root()['files']
                for k in new:
                    oids[k] = hex16(files[k]['blob']._p_oid)
            finally:
                conn.close()
        counts['commits'] += 1
        record({'tid': hex16(tid), 'op': op, 't': time.time(),
                'state': {k: [oids[k], md5(v)]
                          for k, v in m.contents.items()}})

    def pack():
        counts['packs'] += 1
        keep_old = counts['packs'] == KEEP_OLD_PACK
        if keep_old:
            m.close()
            m.open(pack_keep_old=True)
        before = count_blob_files(m.blob_dir)
        t0 = time.time()
        m.db.pack(t0)
        t1 = time.time()
        removed = before - count_blob_files(m.blob_dir)
        if keep_old:
            m.close()
            m.open(pack_keep_old=False)
        record({'pack': counts['packs'], 'start': t0, 'end': t1,
                'keep_old': keep_old, 'removed': removed})

    m.add(INITIAL_BLOBS, sizes=(0, LARGE), note='first blobs')
    logged('create')

    start = time.monotonic()
    last_pack = start
    while time.monotonic() - start < duration:
        n = len(m.contents)
        roll = rng.random()
        if n < MIN_BLOBS or (roll < 0.35 and n < MAX_BLOBS):
            big = rng.random() < 0.05
            m.add(rng.randint(1, 3), sizes=(LARGE,) if big else ())
            op = 'add'
        elif roll < 0.7:
            m.change(rng.randint(1, 3))
            op = 'change'
        elif roll < 0.9:
            m.delete(rng.randint(1, 2))
            counts['deletes'] += 1
            op = 'delete'
        else:
            m.plain()
            op = 'plain'
        logged(op)
        if op != 'plain' and rng.random() < UNDO_CHANCE:
            m.undo_last()
            counts['undos'] += 1
            logged('undo ' + op)
        if time.monotonic() - last_pack >= pack_every:
            pack()
            last_pack = time.monotonic()
        if pause:
            time.sleep(pause)

    pack()
    m.close()
    record(dict(counts, done=True))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
