"""A ZODB blob store for benches/blobs.sh, written by ZODB itself.

    python genblobs.py gen DIR --files N --bytes B [--seed S]
    python genblobs.py add DIR --count N [--seed S]
    python genblobs.py pack DIR

gen: DIR/Data.fs (FileStorage) with blob_dir DIR/blobstorage (ZODB's default
    layout for a new directory: bushy). Root['blobs'] is an IOBTree of
    ZODB.blob.Blob objects. N blob files in all: N - N//11 blobs, then N//11
    of them (chosen at random) rewritten once, so a pack drops about 9% of
    the files. Sizes: log-uniform 1 KB..200 KB, except that enough of them
    are 1-8 MiB (uniform) for the total to come near B. Transactions of 200
    blobs. Content: a unique 16-byte head (key, revision) then a slice of a
    64 MiB seeded random pool at a random offset: incompressible, distinct
    per file, the same bytes for the same seed.
add: N new blobs (the same size law) in transactions of 200.
pack: DB.pack() now (pack_keep_old=False): the rewritten blobs' old
    revisions and the tree's old buckets go.

Prints one line of figures (files, bytes, seconds) on stdout.
"""
import argparse
import math
import os
import random
import struct
import time

import transaction
import ZODB
import ZODB.FileStorage
from BTrees.IOBTree import IOBTree
from ZODB.blob import Blob

KB = 1000
MIB = 1 << 20
SMALL_LO, SMALL_HI = 1 * KB, 200 * KB
BIG_LO, BIG_HI = 1 * MIB, 8 * MIB
POOL = 64 * MIB
PER_TXN = 200


def small_mean():
    return (SMALL_HI - SMALL_LO) / math.log(SMALL_HI / SMALL_LO)


def small_size(rng):
    return int(math.exp(rng.uniform(math.log(SMALL_LO), math.log(SMALL_HI))))


def big_size(rng):
    return rng.randint(BIG_LO, BIG_HI)


class Writer:
    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.pool = memoryview(random.Random(seed ^ 0x5EED).randbytes(POOL))
        self.bytes = 0
        self.files = 0

    def fill(self, blob, key, rev, size):
        head = struct.pack('>QQ', key, rev)[:size]
        off = self.rng.randrange(POOL - size)
        with blob.open('w') as f:
            f.write(head)
            f.write(self.pool[off:off + size - len(head)])
        self.bytes += size
        self.files += 1


def open_db(path, **kw):
    storage = ZODB.FileStorage.FileStorage(
        os.path.join(path, 'Data.fs'),
        blob_dir=os.path.join(path, 'blobstorage'), **kw)
    return ZODB.DB(storage)


def commit_every(conn, i, note):
    if i % PER_TXN == PER_TXN - 1:
        transaction.get().note(note)
        transaction.commit()
        conn.cacheMinimize()


def gen(args):
    n = args.files
    n_mod = n // 11
    n_oids = n - n_mod
    rng = random.Random(args.seed)
    # How many 1-8 MiB files bring the expected total to --bytes.
    big_mean = (BIG_LO + BIG_HI) / 2
    n_big = max(0, round((args.bytes - n * small_mean())
                         / (big_mean - small_mean())))
    n_big = min(n_big, n)
    big = set(rng.sample(range(n), n_big))
    sizes = [big_size(rng) if i in big else small_size(rng) for i in range(n)]
    w = Writer(args.seed)
    os.makedirs(args.dir, exist_ok=True)
    t0 = time.time()
    db = open_db(args.dir)
    conn = db.open()
    root = conn.root()
    root['blobs'] = tree = IOBTree()
    transaction.commit()
    for k in range(n_oids):
        b = Blob()
        w.fill(b, k, 0, sizes[k])
        tree[k] = b
        commit_every(conn, k, 'genblobs: new')
    transaction.commit()
    for j, k in enumerate(sorted(rng.sample(range(n_oids), n_mod))):
        w.fill(tree[k], k, 1, sizes[n_oids + j])
        commit_every(conn, j, 'genblobs: rewrite')
    root['next'] = n_oids
    transaction.commit()
    conn.close()
    db.close()
    t1 = time.time()
    print('files=%d bytes=%d oids=%d rewritten=%d big=%d seconds=%.1f'
          % (w.files, w.bytes, n_oids, n_mod, n_big, t1 - t0))


def add(args):
    rng = random.Random(args.seed)
    w = Writer(args.seed)
    t0 = time.time()
    db = open_db(args.dir)
    conn = db.open()
    root = conn.root()
    tree = root['blobs']
    first = root['next']
    for i in range(args.count):
        b = Blob()
        w.fill(b, first + i, 0, small_size(rng))
        tree[first + i] = b
        commit_every(conn, i, 'genblobs: nightly')
    root['next'] = first + args.count
    transaction.commit()
    conn.close()
    db.close()
    print('files=%d bytes=%d seconds=%.1f'
          % (w.files, w.bytes, time.time() - t0))


def pack(args):
    t0 = time.time()
    db = open_db(args.dir, pack_keep_old=False)
    time.sleep(1.1)  # the pack time is after the last transaction
    db.pack()
    db.close()
    print('seconds=%.1f' % (time.time() - t0))


def main():
    p = argparse.ArgumentParser()
    p.add_argument('what', choices=('gen', 'add', 'pack'))
    p.add_argument('dir')
    p.add_argument('--files', type=int, default=100000)
    p.add_argument('--bytes', type=int, default=5 * 10**9)
    p.add_argument('--count', type=int, default=500)
    p.add_argument('--seed', type=int, default=1)
    args = p.parse_args()
    {'gen': gen, 'add': add, 'pack': pack}[args.what](args)


if __name__ == '__main__':
    main()
