#!/usr/bin/env python3
"""Keep committing to a real ZODB FileStorage for a while, packing now and then.

Usage: python live_writer.py DATA_FS LOG_JSONL DURATION PACK_EVERY [SEED] [PAUSE]

Opens DATA_FS read-write with ZODB (creating it) and commits transactions in
a loop for DURATION seconds.  Every transaction bumps ``root['n']`` and a few
integer counters in ``root['tree']`` (an OOBTree), and replaces, adds or
deletes a few ``PersistentMapping({'text': <5-20 KB str>})`` values in the
same tree, so transactions vary from a few hundred bytes to ~60 KB.  Every
PACK_EVERY seconds it packs the database as of now (``db.pack()``), which
writes Data.fs.pack and renames it over Data.fs.  At the end it packs once
more and closes the database, so Data.fs.index covers the whole file.

After every commit it appends one JSON line to LOG_JSONL, flushed and
fsync'd before the next commit:

    {"tid": "<16 hex>", "n": <root['n']>, "state": {key: digest, ...}}

where ``state`` is ``digest(root)``: the whole logical content it just
committed.  Packs are logged as ``{"pack": <index>, "start": t, "end": t}``
and the end as ``{"done": true, "commits": N, "packs": P}``.  A test reads
any recovered Data.fs with ``digest`` and compares it with the line of its
last transaction id.
"""
import hashlib
import json
import os
import random
import sys
import time

import transaction
import ZODB
import ZODB.FileStorage
from BTrees.OOBTree import OOBTree
from persistent.mapping import PersistentMapping

N_COUNTERS = 16
N_TEXTS = 100


def digest(root):
    """{key: short digest} of everything reachable from the root."""
    out = {'n': str(root['n'])}
    for key, value in root['tree'].items():
        if isinstance(value, int):
            out[key] = str(value)
        else:
            text = value['text']
            out[key] = '%d:%s' % (len(text), hashlib.md5(
                text.encode('ascii')).hexdigest()[:16])
    return out


def _text(rng):
    # Random hex: cheap to make, compresses to about half (so -z has work).
    return rng.randbytes(rng.randint(2500, 10000)).hex()


def main(argv):
    path, log_path, duration, pack_every = argv[:4]
    seed = int(argv[4]) if len(argv) > 4 else 1
    pause = float(argv[5]) if len(argv) > 5 else 0.005
    duration, pack_every = float(duration), float(pack_every)
    rng = random.Random(seed)

    storage = ZODB.FileStorage.FileStorage(path)
    db = ZODB.DB(storage)
    tm = transaction.TransactionManager()
    conn = db.open(transaction_manager=tm)
    root = conn.root()
    log = open(log_path, 'a')

    def record(obj):
        log.write(json.dumps(obj, sort_keys=True) + '\n')
        log.flush()
        os.fsync(log.fileno())

    def commit(note):
        tm.get().note(note)
        tm.commit()
        tid = storage.lastTransaction()
        record({'tid': tid.hex(), 'n': root['n'], 'state': digest(root)})

    # Initial content.
    root['n'] = 0
    tree = root['tree'] = OOBTree()
    for i in range(N_COUNTERS):
        tree['c-%02d' % i] = 0
    next_text = 0
    for _ in range(N_TEXTS):
        tree['t-%04d' % next_text] = PersistentMapping({'text': _text(rng)})
        next_text += 1
    commit('create')
    commits, packs = 1, 0

    start = time.monotonic()
    last_pack = start
    while time.monotonic() - start < duration:
        root['n'] += 1
        for i in rng.sample(range(N_COUNTERS), rng.randint(1, 4)):
            tree['c-%02d' % i] += rng.randint(1, 1000)
        texts = [k for k in tree.keys() if k.startswith('t-')]
        for key in rng.sample(texts, rng.randint(0, 3)):
            roll = rng.random()
            if roll < 0.15 and len(texts) > 4:
                del tree[key]          # garbage for the next pack
                texts.remove(key)
            elif roll < 0.3:
                tree['t-%04d' % next_text] = PersistentMapping(
                    {'text': _text(rng)})
                next_text += 1
            else:
                tree[key]['text'] = _text(rng)
        commit('commit %d' % root['n'])
        commits += 1
        if time.monotonic() - last_pack >= pack_every:
            t0 = time.time()
            db.pack()
            packs += 1
            record({'pack': packs, 'start': t0, 'end': time.time()})
            last_pack = time.monotonic()
        if pause:
            time.sleep(pause)

    # A last pack, then a clean close: Data.fs.index (saved by both) now
    # covers the whole file, as after a pack job or a shutdown.
    t0 = time.time()
    db.pack()
    packs += 1
    record({'pack': packs, 'start': t0, 'end': time.time()})
    conn.close()
    db.close()
    record({'done': True, 'commits': commits, 'packs': packs})
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
