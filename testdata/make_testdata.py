#!/usr/bin/env python3
"""Regenerate the test fixtures in testdata/ with the real ZODB (Python).

Run from the repository root:

    /tmp/zvenv/bin/python testdata/make_testdata.py

(any Python 3 with ZODB installed will do; it was written against ZODB 6.4).
The script deletes and rebuilds every fixture listed below, then writes
testdata/MANIFEST.json with the facts ZODB itself computes for them, so the
Rust tests can compare against ZODB rather than against themselves.
Databases are built in a temporary directory and only the intended files are
copied into testdata/ (a writable FileStorage leaves Data.fs.lock and
Data.fs.tmp behind; read-only ones create nothing).  Random content uses a
fixed seed, but transaction ids come from the clock, so every run produces
different bytes (and a different MANIFEST.json).

Fixtures
--------
small/Data.fs, small/Data.fs.index
    A tiny database (8 transactions): the base of the truncated/, damaged/
    and fs21/ fixtures.

sample/Data.fs, sample/Data.fs.index
    ~30 transactions written through ZODB.DB: a root PersistentMapping, an
    OOBTree with 280 keys (its buckets are rewritten over and over), a few
    ~6 KB strings, transactions with user/description/extension (one with a
    non-ASCII description), key deletions, and a db.undo() of an earlier
    transaction, which writes data records with backpointers (data length 0
    followed by an 8-byte back pointer; one of them is 0 = "un-creation").
    The .index is the one ZODB wrote when the database was closed.

manyoids/Data.fs, manyoids/Data.fs.index
    A database whose index spans four 6-byte oid prefixes: ~370 dense oids
    from 0 (prefix 000000000000), a run straddling 0xFFFF/0x10000
    (prefixes ...0000 and ...0001) and a run straddling 2**40 + 0xFFFF /
    2**40 + 0x10000 (prefixes 000001000000 and 000001000001), so the max
    oid is far above 70000 and the prefix-0 bucket is longer than 255 bytes.
    The oid counter is advanced by setting FileStorage._oid rather than by
    storing 70000 objects: every data record costs at least 42 header bytes,
    so a dense file would be several MB.  The file is just over 64 KiB, so
    its index position is pickled as a 4-byte int.

packed/Data.fs, packed/Data.fs.index
    History (including objects that become unreachable), then
    db.pack(t) at a point in the middle of the history, then two more
    transactions.  Contains status 'p' and status ' ' transactions.

repo-plain/, repo-gzip/
    Repositories written by ZODB's own repozo (ZODB.scripts.repozo.main,
    with the clock monkeypatched) from a copy of sample/Data.fs: a full
    backup at 2024-01-01-10-00-00, the database is changed, an incremental
    at 2024-01-02-11-30-00, changed again, an incremental at
    2024-01-03-12-45-30.  repo-gzip is the same with -z, taken from the same
    Data.fs at the same moments (so both have the same states); the gzip
    header mtime is set to the faked backup time for stable bytes.  repozo
    was run with the relative repository path (testdata/repo-plain), so the
    .dat files name "testdata/repo-plain/<file>".
    repo-plain/states/<timestamp>.fs is the Data.fs as it was at each
    backup (recovering at that date must give exactly these bytes).
    MANIFEST.json lists what Python repozo -R returns for a range of -D
    dates (including ones that select no file).

truncated/
    tail-partial.fs: small/Data.fs cut in the middle of its last
    transaction.  tail-checkpoint.fs: small/Data.fs with the last
    transaction's status byte set to 'c'.  tail-short-header.fs: the first
    7 transactions of small/Data.fs plus the first 10 bytes of the 8th
    transaction's header.  For each, <name>.expected.index is the index
    ZODB builds for the complete prefix (fs._index.save(fs.getSize(), ...)).

damaged/
    Files ZODB refuses (MANIFEST.json has ZODB's exception and message and
    the offset involved): not-a-filestorage.fs (text), wrong-magic.fs
    (FS99), bad-redundant-length.fs (a middle transaction's trailing length
    +1), data-outside-txn.fs (a data record's tloc +1), bad-txn-length.fs
    (a middle transaction's length -1, so its last record sticks out),
    bad-txn-header.fs (a middle transaction's length smaller than its own
    header), bad.index (small/Data.fs.index cut in half), garbage.index
    (random bytes), corrupt.fsz (gzip of small/Data.fs whose first deflate
    block has the reserved block type 11) and truncated.fsz (that gzip cut in half).

fs21/
    Python-2-era fixtures emitted opcode by opcode.  Data.fs is
    small/Data.fs with the magic patched from FS30 to FS21.  Data.fs.index
    is its index as Python 2 ZODB 3.10-5.x wrote it (cPickle protocol 1,
    fast mode: no PROTO, no memo; position as K/M/J; one (prefix, bucket)
    tuple per pickle as MARK, U/T, U/T, TUPLE; then None).  manyoids.index
    is manyoids/Data.fs's index encoded the same way (buckets longer than
    255 bytes use T).  old-dict.index is a ZODB 3.9-style index: one
    protocol-1 pickle of {'index': {oid: pos}, 'pos': N, 'oid': maxoid,
    'vindex': {}} written the way Python 2's pickle.py does it (EMPTY_DICT,
    BINPUT memo, MARK ... SETITEMS).
"""

import calendar
import gzip
import hashlib
import importlib.metadata
import io
import json
import logging
import os
import pickletools
import random
import re
import shutil
import struct
import sys
import tempfile
import time

import transaction
import ZODB
import ZODB.fsIndex
from BTrees.OOBTree import OOBTree
from persistent.mapping import PersistentMapping
from persistent.TimeStamp import TimeStamp
from ZODB.FileStorage import FileIterator
from ZODB.FileStorage import FileStorage
from ZODB.fsIndex import fsIndex
from ZODB.scripts import fstest
from ZODB.scripts import repozo
from ZODB.utils import p64
from ZODB.utils import u64


HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TD = 'testdata'  # every path below is relative to ROOT

# What this script owns (deleted and regenerated on every run).
GENERATED = ['small', 'sample', 'manyoids', 'packed', 'repo-plain',
             'repo-gzip', 'truncated', 'damaged', 'fs21', 'MANIFEST.json']

SEED = 20240101

TRANS_HDR = '>8sQcHHH'
TRANS_HDR_LEN = 23
DATA_HDR = '>8s8sQQHQ'
DATA_HDR_LEN = 42

BACKUP_TIMES = [(2024, 1, 1, 10, 0, 0),
                (2024, 1, 2, 11, 30, 0),
                (2024, 1, 3, 12, 45, 30)]

# -D values probed with Python repozo -R (None = no -D, i.e. "now").
RECOVER_DATES = ['2023-12-31', '2024-01-01', '2024-01-01-10',
                 '2024-01-01-10-00-00', '2024-01-01-10-00-01', '2024-01-02',
                 '2024-01-02-11-30', '2024-01-02-11-30-00', '2024-01-03',
                 '2024-01-03-12-45-29', '2024-01-03-12-45-30', '2025-01-01',
                 None]


# ---------------------------------------------------------------- helpers

class LogCollector(logging.Handler):
    """Keep ZODB's log records (instead of printing them) for the manifest."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        msg = record.getMessage()
        if TMP:
            msg = msg.replace(TMP, '<tmp>')
        self.records.append(f'{record.levelname}: {msg}')

    def take(self):
        r, self.records = self.records, []
        return r


LOG = LogCollector()
TMP = None  # the temporary build directory, hidden in collected log lines


def md5_file(path):
    with open(path, 'rb') as f:
        return hashlib.md5(f.read()).hexdigest()


def read(path):
    with open(path, 'rb') as f:
        return f.read()


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as f:
        f.write(data)


def random_text(rng, n):
    words = ['zodb', 'backup', 'repozo', 'persistent', 'btree', 'index',
             'transaction', 'record', 'storage', 'pickle', 'oid', 'tid']
    out = []
    size = 0
    while size < n:
        w = rng.choice(words) + str(rng.randrange(1000))
        out.append(w)
        size += len(w) + 1
    return ' '.join(out)[:n]


def scan_txns(data):
    """Minimal FileStorage parser (independent of ZODB) used to pick the
    byte offsets to damage and to count record kinds.  Stops at the first
    incomplete transaction."""
    pos = 4
    txns = []
    while pos + TRANS_HDR_LEN <= len(data):
        tid, tlen, status, ul, dl, el = struct.unpack(
            TRANS_HDR, data[pos:pos + TRANS_HDR_LEN])
        if pos + tlen + 8 > len(data):
            break
        recs = []
        rpos = pos + TRANS_HDR_LEN + ul + dl + el
        while rpos < pos + tlen:
            oid, rtid, prev, tloc, vlen, plen = struct.unpack(
                DATA_HDR, data[rpos:rpos + DATA_HDR_LEN])
            back = None
            if plen == 0:
                back = u64(data[rpos + DATA_HDR_LEN:rpos + DATA_HDR_LEN + 8])
            recs.append(dict(pos=rpos, oid=oid, plen=plen, back=back,
                             tloc=tloc, prev=prev))
            rpos += DATA_HDR_LEN + (plen or 8)
        txns.append(dict(pos=pos, tid=tid, tlen=tlen,
                         status=status.decode('latin-1'), ulen=ul, dlen=dl,
                         elen=el, records=recs))
        pos += tlen + 8
    return txns


def exc_info(exc):
    """Exception class and message (plus the exception it was raised while
    handling, if any), without memory addresses."""
    info = {'exception': f'{type(exc).__module__}.{type(exc).__name__}',
            'message': re.sub(r' at 0x[0-9a-f]+', '', str(exc))}
    if exc.__context__ is not None:
        info['context'] = exc_info(exc.__context__)
    return info


class Builder:
    """A writable ZODB.DB on a fresh FileStorage, with its own transaction
    manager.  close() removes the .lock and .tmp files ZODB leaves behind."""

    def __init__(self, path, create=True):
        self.path = path
        self.storage = FileStorage(path, create=create)
        self.db = ZODB.DB(self.storage)
        self.tm = transaction.TransactionManager()
        self.conn = self.db.open(self.tm)
        self.root = self.conn.root()

    def commit(self, note=None, user=None, ext=None):
        t = self.tm.get()
        if note:
            t.note(note)
        if user:
            t.setUser(user, '/acl_users')
        for k, v in (ext or {}).items():
            t.setExtendedInfo(k, v)
        self.tm.commit()

    def last_tid(self):
        return self.storage.lastTransaction()

    def close(self):
        self.conn.close()
        self.db.close()  # writes Data.fs.index
        for ext in ('.lock', '.tmp'):
            if os.path.exists(self.path + ext):
                os.remove(self.path + ext)


def copy_db(src, dst_dir, with_index=True):
    os.makedirs(dst_dir, exist_ok=True)
    shutil.copyfile(src, os.path.join(dst_dir, 'Data.fs'))
    if with_index:
        shutil.copyfile(src + '.index',
                        os.path.join(dst_dir, 'Data.fs.index'))


# ---------------------------------------------------------- pickle helpers

def pickle_opcodes(path):
    """Disassemble every pickle in the file (an index is a sequence of
    pickles); return (number of pickles, sorted opcode names)."""
    data = read(path)
    f = io.BytesIO(data)
    names = set()
    count = 0
    while f.tell() < len(data):
        start = f.tell()
        for op, arg, pos in pickletools.genops(f):
            names.add(op.name)
        # pickletools.dis also validates the stack/memo discipline
        pickletools.dis(data[start:f.tell()], out=io.StringIO())
        count += 1
    return count, sorted(names)


def py2_int(n):
    """An int as Python 2's cPickle wrote it with a binary protocol."""
    if 0 <= n < 0x100:
        return b'K' + bytes([n])
    if 0 <= n < 0x10000:
        return b'M' + struct.pack('<H', n)
    if -2**31 <= n < 2**31:
        return b'J' + struct.pack('<i', n)
    return b'I%d\n' % n


def py2_str(s):
    """A Python 2 str (bytes) with a binary protocol: SHORT_BINSTRING or
    BINSTRING."""
    if len(s) < 256:
        return b'U' + bytes([len(s)]) + s
    return b'T' + struct.pack('<i', len(s)) + s


def py2_fsindex_bytes(pos, items):
    """fsIndex.save() as run by Python 2 ZODB: cPickle.Pickler(f, 1) with
    fast = True; dump(pos), dump((prefix, bucket.toString())) per prefix,
    dump(None)."""
    out = [py2_int(pos) + b'.']
    for prefix, bucket in items:
        out.append(b'(' + py2_str(prefix) + py2_str(bucket) + b't.')
    out.append(b'N.')
    return b''.join(out)


class Py2Pickler:
    """Just enough of Python 2's pickle.py (protocol 1, memo on) to write the
    ZODB 3.9-style index dict."""

    def __init__(self):
        self.out = bytearray()
        self.memo = 0

    def memoize(self):
        i = self.memo
        self.memo += 1
        if i < 256:
            self.out += b'q' + bytes([i])
        else:
            self.out += b'r' + struct.pack('<i', i)

    def save(self, obj):
        if obj is None:
            self.out += b'N'
        elif isinstance(obj, int):
            self.out += py2_int(obj)
        elif isinstance(obj, bytes):
            self.out += py2_str(obj)
            self.memoize()
        elif isinstance(obj, list):  # list of (key, value) = a dict
            self.out += b'}'
            self.memoize()
            for i in range(0, len(obj), 1000):  # pickle.py's _BATCHSIZE
                batch = obj[i:i + 1000]
                if len(batch) == 1:
                    self.save(batch[0][0])
                    self.save(batch[0][1])
                    self.out += b's'
                else:
                    self.out += b'('
                    for k, v in batch:
                        self.save(k)
                        self.save(v)
                    self.out += b'u'
        else:
            raise TypeError(obj)

    def dump(self, obj):
        self.save(obj)
        self.out += b'.'
        return bytes(self.out)


def load_index_bytes_mode(path):
    """fsIndex.load(), but with an unpickler that keeps py2 strings as
    bytes (what ZODB's ensure_bytes() would need to be lossless)."""
    class BytesUnpickler(ZODB.fsIndex.Unpickler):
        def __init__(self, f):
            ZODB._compat.zodbpickle.pickle.Unpickler.__init__(
                self, f, encoding='bytes')
    saved = ZODB.fsIndex.Unpickler
    ZODB.fsIndex.Unpickler = BytesUnpickler
    try:
        return fsIndex.load(path)
    finally:
        ZODB.fsIndex.Unpickler = saved


def index_items(index):
    return sorted((k, index[k]) for k in index.keys())


# --------------------------------------------------------- database facts

def fs_facts(path, index_path=None):
    """What ZODB says about a (valid, FS30) Data.fs opened read-only."""
    data = read(path)
    LOG.take()
    fs = FileStorage(path, read_only=True)
    try:
        facts = {
            'size': len(data),
            'md5': hashlib.md5(data).hexdigest(),
            'end': fs.getSize(),
            'oids': len(fs._index),
            'max_oid': fs._oid.hex(),
            'last_tid': fs.lastTransaction().hex(),
            'prefixes': [k.hex() for k in fs._index._data.keys()],
            'used_index_file': bool(fs._used_index),
        }
    finally:
        fs.close()
    it = FileIterator(path)
    try:
        facts['transactions'] = sum(1 for _ in it)
    finally:
        it.close()
    txns = scan_txns(data)
    assert len(txns) == facts['transactions'], path
    statuses = {}
    for t in txns:
        statuses[t['status']] = statuses.get(t['status'], 0) + 1
    recs = [r for t in txns for r in t['records']]
    facts['statuses'] = statuses
    facts['data_records'] = len(recs)
    facts['backpointer_records'] = sum(1 for r in recs if r['plen'] == 0)
    facts['zero_backpointer_records'] = sum(
        1 for r in recs if r['plen'] == 0 and r['back'] == 0)
    facts['first_tid'] = txns[0]['tid'].hex() if txns else None
    try:
        fstest.check(path)
        facts['fstest'] = 'ok'
    except fstest.FormatError as e:
        facts['fstest'] = str(e)
    if index_path and os.path.exists(index_path):
        facts['index'] = index_facts(index_path)
    facts['log'] = LOG.take()
    return facts


def index_facts(path):
    info = fsIndex.load(path)
    npickles, ops = pickle_opcodes(path)
    return {
        'path': path,
        'size': os.path.getsize(path),
        'md5': md5_file(path),
        'pos': info['pos'],
        'oids': len(info['index']),
        'prefixes': [k.hex() for k in info['index']._data.keys()],
        'pickles': npickles,
        'opcodes': ops,
    }


# ------------------------------------------------------------- databases

def build_small(path):
    rng = random.Random(SEED + 1)
    b = Builder(path)                                    # txn 1: root
    b.root['tree'] = OOBTree()
    b.root['config'] = PersistentMapping(name='small')
    b.commit('create tree and config')                  # txn 2
    for batch in range(4):                               # txns 3-6
        for i in range(10):
            b.root['tree']['k%03d' % (batch * 10 + i)] = rng.randrange(10**6)
        b.root['config']['batch'] = batch
        b.commit()
    b.root['config']['owner'] = 'alice'
    b.commit('set owner', user='alice', ext={'ip': '127.0.0.1'})  # txn 7
    b.root['note'] = PersistentMapping(text=random_text(rng, 300))
    b.commit('add note')                                 # txn 8
    b.close()


def build_sample(path):
    rng = random.Random(SEED + 2)
    b = Builder(path)                                    # txn 1: root
    root = b.root
    root['tree'] = OOBTree()
    root['counters'] = PersistentMapping(hits=0)
    root['docs'] = PersistentMapping()
    root['undo-target'] = PersistentMapping(value=0)
    b.commit('create containers')
    for batch in range(8):                               # 280 keys
        tree = root['tree']
        for i in range(35):
            n = batch * 35 + i
            if n % 10 == 0:
                tree['key%04d' % n] = PersistentMapping(n=n)
            else:
                tree['key%04d' % n] = rng.randrange(10**9)
        root['counters']['hits'] += 1
        b.commit('add keys batch %d' % batch if batch % 3 == 0 else None)
    for name in ('alpha', 'beta', 'gamma'):
        root['docs'][name] = PersistentMapping(
            text=random_text(rng, rng.randrange(5000, 6000)))
    b.commit('Add three documents', user='alice',
             ext={'ip': '192.0.2.7', 'reason': 'fixtures'})
    # The transaction that will be undone: modifies one object and creates
    # another; nothing touches either afterwards.
    root['undo-target']['value'] = 1
    root['undo-target']['child'] = PersistentMapping(created=True)
    b.commit('change to be undone')
    undo_tid = b.last_tid()
    for step in range(6):                                # rewrite objects
        tree = root['tree']
        for i in range(4):
            k = 'key%04d' % rng.randrange(280)
            v = tree.get(k)
            if isinstance(v, PersistentMapping):
                v['n'] = v['n'] + 1000
            elif v is not None:
                tree[k] = v + 1
        root['counters']['hits'] += 1
        b.commit('rewrite step %d' % step if step % 2 else None)
    for n in range(100, 120, 2):                         # delete keys
        del root['tree']['key%04d' % n]
    b.commit('Caf\u00e9: delete ten keys \u2615', user='b\u00f6b')
    root['docs']['gamma']['text'] += ' (edited)'
    root['counters']['hits'] += 1
    b.commit()
    # Undo the earlier transaction.
    log = b.db.undoLog(0, 100)
    ids = [d['id'] for d in log if d['description'] == 'change to be undone']
    assert len(ids) == 1
    b.db.undo(ids[0], b.tm.get())
    b.commit('undo "change to be undone"', user='alice')
    root['counters']['hits'] += 1
    b.commit('final')
    b.close()
    return undo_tid


def build_manyoids(path):
    b = Builder(path)
    root = b.root
    root['objects'] = OOBTree()
    b.commit('create tree')

    def add(first_oid, count, note):
        if first_oid is not None:
            with b.storage._lock:
                b.storage._oid = p64(first_oid - 1)  # next new_oid()
        for i in range(count):
            root['objects'][len(root['objects'])] = PersistentMapping()
        b.commit(note)

    add(None, 120, 'dense oids in prefix 0')
    add(None, 120, 'more dense oids in prefix 0')
    add(None, 120, 'even more dense oids in prefix 0')
    add(0xFFFF - 40, 80, 'oids straddling 0xffff/0x10000')
    add((1 << 40) + (1 << 16) - 3, 12, 'oids around 2**40 + 2**16')
    b.close()


def build_packed(path):
    rng = random.Random(SEED + 3)
    b = Builder(path)
    root = b.root
    root['items'] = PersistentMapping()
    for i in range(10):
        root['items']['item%d' % i] = PersistentMapping(v=0)
    b.commit('create items')
    for step in range(6):
        for k in rng.sample(sorted(root['items']), 4):
            root['items'][k]['v'] += 1
        if step == 2:
            for i in (7, 8, 9):   # these become garbage at pack time
                del root['items']['item%d' % i]
        b.commit('step %d' % step)
    time.sleep(0.05)
    pack_time = time.time()
    time.sleep(0.05)
    for step in range(4):
        for i in rng.sample(range(7), 3):
            root['items']['item%d' % i]['v'] += 10
        b.commit('after pack time %d' % step)
    b.db.pack(t=pack_time)
    for step in range(2):
        root['items']['item0']['v'] += 100
        b.commit('after pack %d' % step)
    b.close()  # (pack also left Data.fs.old in the temporary directory)
    return pack_time


def mutate_repo_db(path, step):
    rng = random.Random(SEED + 10 + step)
    b = Builder(path, create=False)
    root = b.root
    for t in range(3):
        tree = root['tree']
        for i in range(5):
            tree['new-%d-%d-%d' % (step, t, i)] = rng.randrange(10**9)
        root['counters']['hits'] += 1
        b.commit('repo step %d txn %d' % (step, t))
    root['docs']['delta%d' % step] = PersistentMapping(
        text=random_text(rng, 1000))
    b.commit('repo step %d doc' % step, user='backup-test')
    b.close()


# ------------------------------------------------------------ repositories

class FixedMtimeGzip:
    """Stands in for the gzip module inside repozo so that the gzip header's
    mtime is the faked backup time instead of the real clock."""

    def __init__(self, mtime):
        self.mtime = mtime

    def open(self, filename, mode='rb'):
        return gzip.GzipFile(filename, mode, mtime=self.mtime)


def run_repozo(args, now=None):
    """Run Python repozo in-process; returns None or the SystemExit text."""
    saved = repozo.gen_filedate, repozo.gzip
    if now is not None:
        repozo.gen_filedate = lambda options: now
        repozo.gzip = FixedMtimeGzip(calendar.timegm(now))
    try:
        repozo.main(args)
        return None
    except SystemExit as e:
        return str(e.code)
    finally:
        repozo.gen_filedate, repozo.gzip = saved


def stamp(t):
    return '%04d-%02d-%02d-%02d-%02d-%02d' % t


def build_repos(tmp):
    work = os.path.join(tmp, 'repo-work', 'Data.fs')
    os.makedirs(os.path.dirname(work))
    shutil.copyfile(f'{TD}/sample/Data.fs', work)
    plain, gz = f'{TD}/repo-plain', f'{TD}/repo-gzip'
    os.makedirs(f'{plain}/states')
    os.makedirs(gz)
    for step, now in enumerate(BACKUP_TIMES):
        if step:
            mutate_repo_db(work, step)
        shutil.copyfile(work, f'{plain}/states/{stamp(now)}.fs')
        assert run_repozo(['-B', '-r', plain, '-f', work], now) is None
        assert run_repozo(['-B', '-z', '-r', gz, '-f', work], now) is None
    return work


def repo_facts(repo, tmp, states_dir):
    gz = repo.endswith('gzip')
    facts = {'gzip': gz, 'files': {}, 'dat': {}, 'backups': [],
             'recover': []}
    for name in sorted(os.listdir(repo)):
        p = os.path.join(repo, name)
        if os.path.isdir(p):
            continue
        entry = {'size': os.path.getsize(p), 'md5': md5_file(p)}
        if name.endswith('.fsz') or name.endswith('.deltafsz'):
            with gzip.open(p, 'rb') as f:
                raw = f.read()
            entry['uncompressed_size'] = len(raw)
            entry['uncompressed_md5'] = hashlib.md5(raw).hexdigest()
        if name.endswith('.index'):
            entry['index'] = index_facts(p)
        facts['files'][name] = entry
        if name.endswith('.dat'):
            with open(p) as f:
                facts['dat'][name] = f.read()
    for text in facts['dat'].values():
        for line in text.splitlines():
            fn, start, end, summ = line.split()
            ts = os.path.basename(fn).split('.')[0]
            facts['backups'].append({
                'timestamp': ts, 'file': fn, 'start': int(start),
                'end': int(end), 'md5': summ,
                'kind': 'incremental' if '.deltafs' in fn else 'full',
                'index': f'{repo}/{ts}.index',
                'state': f'{states_dir}/{ts}.fs',
            })
    facts['verify'] = run_repozo(['-V', '-r', repo]) or 'ok'
    state_by_md5 = {md5_file(os.path.join(states_dir, n)):
                    f'{states_dir}/{n}' for n in os.listdir(states_dir)}
    for date in RECOVER_DATES:
        out = os.path.join(tmp, 'recovered', 'Data.fs')
        shutil.rmtree(os.path.dirname(out), ignore_errors=True)
        os.makedirs(os.path.dirname(out))
        args = ['-R', '-r', repo, '-o', out]
        if date:
            args += ['-D', date]
        opts = repozo.parseargs(args)
        files = repozo.find_files(opts)
        err = run_repozo(args)
        entry = {'date': date}
        if err is not None:
            entry['error'] = err
            assert not files
        else:
            md5 = md5_file(out)
            entry.update(files=files, size=os.path.getsize(out), md5=md5,
                         state=state_by_md5[md5])
            last = os.path.splitext(files[-1])[0] + '.index'
            assert read(out + '.index') == read(last)
            entry['index'] = last
        facts['recover'].append(entry)
    return facts


# -------------------------------------------------------------- truncated

def build_truncated(small):
    data = read(small)
    txns = scan_txns(data)
    last = txns[-1]
    cut = last['pos']
    out = {}
    variants = {
        'tail-partial': data[:cut + (last['tlen'] + 8) // 2],
        'tail-checkpoint': (data[:cut + 16] + b'c' + data[cut + 17:]),
        'tail-short-header': data[:cut + 10],
    }
    assert data[cut + 16:cut + 17] == b' '
    for name, content in variants.items():
        path = f'{TD}/truncated/{name}.fs'
        write(path, content)
        LOG.take()
        fs = FileStorage(path, read_only=True)
        try:
            end = fs.getSize()
            idx = f'{TD}/truncated/{name}.expected.index'
            fs._index.save(end, idx)
            entry = {'size': len(content), 'md5': hashlib.md5(content).hexdigest(),
                     'end': end, 'oids': len(fs._index),
                     'max_oid': fs._oid.hex(),
                     'last_tid': fs.lastTransaction().hex(),
                     'expected_index': index_facts(idx)}
        finally:
            fs.close()
        assert end == cut, (name, end, cut)
        entry['complete_transactions'] = len(txns) - 1
        entry['last_complete_tid'] = txns[-2]['tid'].hex()
        entry['incomplete_tid'] = last['tid'].hex()
        entry['log'] = LOG.take()
        it = FileIterator(path)
        try:
            entry['file_iterator_transactions'] = sum(1 for _ in it)
        except Exception as e:
            entry['file_iterator_error'] = exc_info(e)
        finally:
            it.close()
        try:
            fstest.check(path)
            entry['fstest'] = 'ok'
        except fstest.FormatError as e:
            entry['fstest'] = str(e)
        entry['log'] += LOG.take()
        out[f'{TD}/truncated/{name}.fs'] = entry
    return out


# ---------------------------------------------------------------- damaged

def zodb_open_error(path):
    LOG.take()
    try:
        fs = FileStorage(path, read_only=True)
    except Exception as e:
        return dict(exc_info(e), log=LOG.take())
    fs.close()
    raise AssertionError(f'ZODB opened {path}')


def build_damaged(small, tmp):
    data = read(small)
    txns = scan_txns(data)
    mid = txns[len(txns) // 2]
    d = f'{TD}/damaged'
    os.makedirs(d)
    out = {}

    def patch(offset, new):
        return data[:offset] + new + data[offset + len(new):]

    cases = {}
    cases['not-a-filestorage.fs'] = (
        b'This is not a FileStorage.\nJust some text.\n', 0,
        'text file')
    cases['wrong-magic.fs'] = (patch(0, b'FS99'), 0, 'magic FS99')
    off = mid['pos'] + mid['tlen']
    cases['bad-redundant-length.fs'] = (
        patch(off, p64(mid['tlen'] + 1)), off,
        'trailing length of the transaction at %d is tlen+1' % mid['pos'])
    rec = mid['records'][0]
    off = rec['pos'] + 24
    cases['data-outside-txn.fs'] = (
        patch(off, p64(rec['tloc'] + 1)), off,
        'tloc of the data record at %d is +1' % rec['pos'])
    off = mid['pos'] + 8
    cases['bad-txn-length.fs'] = (
        patch(off, p64(mid['tlen'] - 1)), off,
        'length field of the transaction at %d is tlen-1' % mid['pos'])
    cases['bad-txn-header.fs'] = (
        patch(off, p64(TRANS_HDR_LEN - 1)), off,
        'length field of the transaction at %d is 22' % mid['pos'])
    for name, (content, offset, what) in cases.items():
        path = f'{d}/{name}'
        write(path, content)
        entry = {'size': len(content), 'md5': hashlib.md5(content).hexdigest(),
                 'damage': what, 'patched_offset': offset,
                 'base': f'{TD}/small/Data.fs', 'middle_txn_pos': mid['pos'],
                 'zodb': zodb_open_error(path)}
        m = re.search(r' at (\d+)$', entry['zodb']['message'])
        entry['reported_offset'] = int(m.group(1)) if m else 0
        try:
            fstest.check(path)
            entry['fstest'] = 'ok'
        except fstest.FormatError as e:
            entry['fstest'] = str(e)
        out[path] = entry

    # Index files.
    good_index = read(small + '.index')
    rng = random.Random(SEED + 4)
    for name, content in [
            ('bad.index', good_index[:len(good_index) // 2]),
            ('garbage.index', bytes(rng.randrange(256) for _ in range(512)))]:
        path = f'{d}/{name}'
        write(path, content)
        entry = {'size': len(content), 'md5': hashlib.md5(content).hexdigest()}
        try:
            fsIndex.load(path)
            raise AssertionError(f'fsIndex.load accepted {path}')
        except AssertionError:
            raise
        except Exception as e:
            entry['fsindex_load'] = exc_info(e)
        # What FileStorage does with it next to a good Data.fs.
        t = os.path.join(tmp, 'idx-' + name, 'Data.fs')
        os.makedirs(os.path.dirname(t))
        shutil.copyfile(small, t)
        shutil.copyfile(path, t + '.index')
        LOG.take()
        fs = FileStorage(t, read_only=True)
        entry['filestorage'] = {'end': fs.getSize(),
                                'used_index_file': bool(fs._used_index)}
        fs.close()
        entry['filestorage']['log'] = [
            line.split('\n')[0] for line in LOG.take()]
        out[path] = entry

    # Gzip files (repozo's .fsz).
    buf = io.BytesIO()
    with gzip.GzipFile('Data.fs', 'wb', fileobj=buf, mtime=1704103200) as g:
        g.write(data)
    good = buf.getvalue()
    # header: 10 bytes + "Data.fs\0", then the deflate stream.  Setting the
    # low 3 bits of its first byte gives BFINAL=1, BTYPE=11 (reserved): an
    # invalid deflate block whatever the compressed content is.
    m = 10 + len(b'Data.fs\0')
    corrupt = good[:m] + bytes([good[m] | 0x07]) + good[m + 1:]
    for name, content, offset in [('corrupt.fsz', corrupt, m),
                                  ('truncated.fsz', good[:len(good) // 2],
                                   len(good) // 2)]:
        path = f'{d}/{name}'
        write(path, content)
        entry = {'size': len(content), 'md5': hashlib.md5(content).hexdigest(),
                 'offset': offset, 'intact_size': len(good),
                 'uncompressed_md5': hashlib.md5(data).hexdigest(),
                 'uncompressed_size': len(data)}
        try:
            with gzip.open(path, 'rb') as f:
                f.read()
            raise AssertionError(f'gzip accepted {path}')
        except AssertionError:
            raise
        except Exception as e:
            entry['gzip_read'] = exc_info(e)
        out[path] = entry
    return out


# ------------------------------------------------------------------- fs21

def build_fs21(small, manyoids):
    d = f'{TD}/fs21'
    os.makedirs(d)
    data = read(small)
    assert data[:4] == b'FS30'
    write(f'{d}/Data.fs', b'FS21' + data[4:])
    out = {}

    def emit(index_src, dst):
        info = fsIndex.load(index_src)
        items = [(k, v.toString()) for k, v in info['index']._data.items()]
        write(dst, py2_fsindex_bytes(info['pos'], items))
        return info

    for src, dst, describes in [
            (small + '.index', f'{d}/Data.fs.index', f'{d}/Data.fs'),
            (manyoids + '.index', f'{d}/manyoids.index', manyoids)]:
        info = emit(src, dst)
        out[dst] = check_py2_index(dst, info, describes, src)

    # ZODB 3.9-style: one pickle of a dict.
    info = fsIndex.load(small + '.index')
    items = index_items(info['index'])
    maxoid = max(k for k, _ in items)
    p = Py2Pickler()
    blob = p.dump([(b'index', items), (b'pos', info['pos']),
                   (b'oid', maxoid), (b'vindex', [])])
    dst = f'{d}/old-dict.index'
    write(dst, blob)
    entry = check_py2_index(dst, info, f'{d}/Data.fs', small + '.index')
    entry['format'] = ("one protocol-1 pickle: {'index': {oid: pos}, "
                       "'pos': N, 'oid': maxoid, 'vindex': {}}")
    entry['max_oid'] = maxoid.hex()
    out[dst] = entry

    # What ZODB 6 says about an FS21 file.
    out[f'{d}/Data.fs'] = {
        'size': len(data), 'md5': md5_file(f'{d}/Data.fs'),
        'fs30_twin': small, 'fs30_twin_md5': md5_file(small),
        'zodb': zodb_open_error(f'{d}/Data.fs'),
    }
    return out


def check_py2_index(path, ref_info, describes, ref_path):
    """Disassemble, then load with ZODB and compare with the FS30 index."""
    npickles, ops = pickle_opcodes(path)
    assert 'PROTO' not in ops, ops
    ref_items = index_items(ref_info['index'])
    entry = {'describes': describes, 'same_content_as': ref_path,
             'size': os.path.getsize(path), 'md5': md5_file(path),
             'pos': ref_info['pos'], 'oids': len(ref_items),
             'pickles': npickles, 'opcodes': ops}

    def compare(info):
        info = {k.decode() if isinstance(k, bytes) else k: v
                for k, v in info.items()}
        if not isinstance(info.get('index'), fsIndex):
            # Old format: a dict, converted by FileStorage._restore_index.
            ix = fsIndex()
            ix.update(info['index'])
            info = dict(info, index=ix)
        assert int(info['pos']) == ref_info['pos'], path
        assert index_items(info['index']) == ref_items, path

    # 1. stock ZODB (decodes py2 strings as ASCII text, like Python 3 does)
    try:
        compare(fsIndex.load(path))
        entry['stock_fsindex_load'] = 'ok'
    except Exception as e:
        entry['stock_fsindex_load'] = exc_info(e)
    # 2. py2 strings kept as bytes
    compare(load_index_bytes_mode(path))
    entry['bytes_mode_load'] = 'ok'
    # 3. what FileStorage(read_only=True) does with it next to the FS30 twin
    twin = ref_path[:-len('.index')]
    t = os.path.join(TMP, 'py2-' + os.path.basename(path), 'Data.fs')
    os.makedirs(os.path.dirname(t))
    shutil.copyfile(twin, t)
    shutil.copyfile(path, t + '.index')
    LOG.take()
    fs = FileStorage(t, read_only=True)
    entry['filestorage_with_fs30_twin'] = {
        'twin': twin, 'end': fs.getSize(),
        'used_index_file': bool(fs._used_index)}
    fs.close()
    entry['filestorage_with_fs30_twin']['log'] = [
        line.split('\n')[0] for line in LOG.take()]
    return entry


# ------------------------------------------------------------------- main

def check_no_strays():
    bad = []
    for dirpath, dirnames, filenames in os.walk(TD):
        for f in filenames:
            if (f.endswith(('.lock', '.tmp', '.index_tmp', '.part', '.old'))
                    or '.tr' in os.path.splitext(f)[1]):
                bad.append(os.path.join(dirpath, f))
    assert not bad, bad


def main():
    os.chdir(ROOT)
    zlog = logging.getLogger('ZODB')
    zlog.addHandler(LOG)
    zlog.setLevel(logging.INFO)
    zlog.propagate = False
    for name in GENERATED:
        p = os.path.join(TD, name)
        if os.path.isdir(p):
            shutil.rmtree(p)
        elif os.path.exists(p):
            os.remove(p)
    global TMP
    tmp = TMP = tempfile.mkdtemp(prefix='repozo-testdata-')
    try:
        manifest = build_all(tmp)
    finally:
        shutil.rmtree(tmp)
    with open(f'{TD}/MANIFEST.json', 'w') as f:
        json.dump(manifest, f, indent=1, sort_keys=True, ensure_ascii=False)
        f.write('\n')
    check_no_strays()
    total = 0
    for dirpath, dirnames, filenames in os.walk(TD):
        for f in filenames:
            total += os.path.getsize(os.path.join(dirpath, f))
    print(f'testdata regenerated: {total} bytes in {TD}/')


def build_all(tmp):
    built = {}
    for name, builder in [('small', build_small), ('sample', build_sample),
                          ('manyoids', build_manyoids),
                          ('packed', build_packed)]:
        p = os.path.join(tmp, name, 'Data.fs')
        os.makedirs(os.path.dirname(p))
        built[name] = builder(p)
        copy_db(p, f'{TD}/{name}')

    datafs = {}
    for name in ('small', 'sample', 'manyoids', 'packed'):
        p = f'{TD}/{name}/Data.fs'
        datafs[p] = fs_facts(p, p + '.index')
    undo_tid = built['sample']
    datafs[f'{TD}/sample/Data.fs']['undone_tid'] = undo_tid.hex()
    ptime = built['packed']
    datafs[f'{TD}/packed/Data.fs']['pack_time'] = ptime
    datafs[f'{TD}/packed/Data.fs']['pack_tid'] = TimeStamp(
        *time.gmtime(ptime)[:5] + (ptime % 60,)).raw().hex()
    assert datafs[f'{TD}/packed/Data.fs']['statuses'].get('p')
    assert datafs[f'{TD}/sample/Data.fs']['backpointer_records']
    assert len(datafs[f'{TD}/manyoids/Data.fs']['prefixes']) >= 3

    build_repos(tmp)
    states = f'{TD}/repo-plain/states'
    for n in sorted(os.listdir(states)):
        datafs[f'{states}/{n}'] = fs_facts(f'{states}/{n}')
    repos = {r: repo_facts(r, tmp, states)
             for r in (f'{TD}/repo-plain', f'{TD}/repo-gzip')}

    small = f'{TD}/small/Data.fs'
    truncated = build_truncated(small)
    damaged = build_damaged(small, tmp)
    fs21 = build_fs21(small, f'{TD}/manyoids/Data.fs')

    return {
        'generator': {
            'script': f'{TD}/make_testdata.py',
            'python': sys.version.split()[0],
            'zodb': importlib.metadata.version('ZODB'),
        },
        'notes': {
            'paths': 'relative to the repository root',
            'end': 'FileStorage(path, read_only=True).getSize(): end of '
                   'the last complete transaction',
            'oids': 'len(fs._index)',
            'max_oid': 'fs._oid (largest oid in the index), hex',
            'transactions': 'number of transactions FileIterator yields',
            'last_tid': 'fs.lastTransaction(); for tail-partial and '
                        'tail-checkpoint ZODB reports the tid of the '
                        'incomplete transaction (read_index sets ltid before '
                        'it notices the truncation): see last_complete_tid',
            'reported_offset': 'the position in ZODB\'s error message',
        },
        'datafs': datafs,
        'repos': repos,
        'truncated': truncated,
        'damaged': damaged,
        'fs21': fs21,
    }


if __name__ == '__main__':
    main()
