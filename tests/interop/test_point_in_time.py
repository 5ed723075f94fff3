"""Point in time recovery: ``--transactions`` and ``-R --at / --at-tid``.

A real ZODB database gets 54 transactions, each with its own user and note
(one note not ASCII, one with a double quote and a newline, one user with a
backslash and a tab, one transaction written straight to the storage with
user and description that are not UTF-8 and no data record at all, one
undo, one with extended info).  Their tids are made at a clock the test
sets (ZODB.BaseStorage's ``time`` is replaced while committing), so the
times are known and spread over midnight: 2024-03-04 23:58 to 2024-03-05
00:03 UTC.  After every commit the tid, the length of Data.fs and the root
state read back through ZODB are recorded.

Four repositories record it (ours and Python's repozo, plain and ``-z``):
a full backup, then three increments; the last two transactions are never
backed up.  What is checked, on what a user sees:

* ``--transactions --json`` (and the text form) lists exactly the backed up
  transactions, oldest first, with the tid, the time (the tid's TimeStamp,
  UTC, rounded to the microsecond as ZODB's ``str(TimeStamp)`` shows it,
  computed here from the raw 8 bytes),
  user, description, size and record count (from a header-to-header walk
  of Data.fs written here), the backup file holding it and its offset and
  end in Data.fs; ``--since`` / ``--until`` filter it.
* ``-R --at-tid`` and ``-R --at <listed time>`` of transactions at the start,
  middle and end of the full backup and of increments: FILE is Data.fs as
  it was right after that commit, FILE.index is what ZODB builds by
  scanning FILE and ZODB opens FILE with it (``_used_index == 1``), and the
  root state read through ZODB is the one recorded after that commit.
* ``--at`` between two commits, every TIME form of the spec, errors that
  leave nothing behind, ``-w`` on a damaged cut file, a standby cut back in
  place, stdout, two chains holding the same transactions, a blob storage.
* Python repozo still recovers and verifies the same repositories.

The tids are made at whole milliseconds, so most land a fraction of a
microsecond before or after one: a time floored instead of rounded, or
compared unrounded, shows (test_times_are_rounded_to_the_microsecond says
so plainly; the other listing and --at tests then fail too).
"""
import calendar
import datetime
import json
import os
import random
import shutil
import struct
import time
from dataclasses import dataclass
from fractions import Fraction
from unittest import mock

import pytest
import transaction
import ZODB
import ZODB.BaseStorage
import ZODB.FileStorage
from BTrees.OOBTree import OOBTree
from persistent.mapping import PersistentMapping
from persistent.TimeStamp import TimeStamp
from ZODB.Connection import TransactionMetaData
from ZODB.fsIndex import fsIndex

from blob_helpers import BlobModel, blob_snapshot, read_layout
from conftest import KINDS, Workdirs, describe_output, fmt_now, read, write

# Where the recoveries run: no backup is ever newer than this.
LATER = '2030-01-01-00-00-00'
LOCK_NAME = '.repozo.lock'
IN_PLACE = 'Recovering in place: '


# The tid clock: the first transaction (ZODB's root creation), the seconds
# between two commits (in turn), and between a batch's backup and the next
# batch.
TID_START = datetime.datetime(2024, 3, 4, 23, 58, 10, 387000)
GAPS = (2.131, 0.307, 7.771, 0.052, 4.903, 1.417, 13.003, 0.611, 3.3,
        0.125, 0.95)
BATCH_GAP = 40.0
BACKUP_DELAY = 5            # whole seconds after a batch's last commit

# Transactions per backup (the first one includes the root creation), then
# transactions committed after the last backup.
BATCHES = (16, 14, 14, 8)
NOT_BACKED_UP = 2
N_BACKED = sum(BATCHES)

# Transactions with something special (index in the list of transactions).
NON_ASCII = 7
QUOTED = 21
UNDO = 24                   # undoes transaction 23
RAW = 33                    # written straight to the storage, 0 records
EXTENSION = 40

# Transaction index -> (user name, user path, note) of the special ones.
SPECIAL_TEXT = {
    NON_ASCII: ('jürgen', '/acl_users',
                'Größe geändert: café ☕ 日本語 – naïve'),
    QUOTED: ('dom\\admin\tops', '/', 'say "hello"\nsecond line'),
}
RAW_USER = b'raw \xff\xfe user'
RAW_DESCRIPTION = b'not utf-8: \xc3( end'

NAMES = ('alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'grace',
         'heidi', 'ivan', 'judy', 'mallory')


def text(b):
    return b.decode('utf-8', 'replace')


def ino(path):
    return os.stat(path).st_ino


def flip(data, pos):
    return data[:pos] + bytes([data[pos] ^ 0xFF]) + data[pos + 1:]


def first_diff(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


# ---------------------------------------------------------------------------
# Times of tids
# ---------------------------------------------------------------------------

US = datetime.timedelta(microseconds=1)


def tid_time(tid):
    """The time of ``tid`` (8 bytes), UTC, rounded to the nearest
    microsecond (half up), as ZODB's ``str(TimeStamp)`` shows it.

    The first 4 bytes count minutes from 1900 (31-day months), the last 4
    the fraction of that minute in units of 60 / 2**32 seconds.
    """
    hi, lo = struct.unpack('>II', tid)
    minute = hi % 60
    hi //= 60
    hour = hi % 24
    hi //= 24
    day = hi % 31 + 1
    hi //= 31
    month = hi % 12 + 1
    year = hi // 12 + 1900
    micros = (lo * 120_000_000 + (1 << 32)) // (1 << 33)
    return (datetime.datetime(year, month, day, hour, minute)
            + datetime.timedelta(microseconds=micros))


def sub_micro(tid):
    """How far past the microsecond below it ``tid`` is, in microseconds
    (a Fraction in [0, 1)): from a half on, it is shown in the next one."""
    lo = struct.unpack('>I', tid[4:])[0]
    exact = Fraction(lo * 60_000_000, 1 << 32)
    return exact - int(exact)


def fmt_time(dt):
    """As --transactions shows a time: 2024-03-05T14:02:59.250000Z."""
    return dt.strftime('%Y-%m-%dT%H:%M:%S.%fZ')


def tid_hex(tid):
    return '0x' + tid.hex()


class TidClock:
    """Stands in for the ``time`` module in ZODB.BaseStorage, so that a new
    transaction's tid has the time set here (ZODB still makes every tid
    later than the one before)."""

    def __init__(self, start):
        self.t = calendar.timegm(start.timetuple()) + start.microsecond / 1e6

    def time(self):
        return self.t

    def advance(self, seconds):
        self.t += seconds

    def utc(self):
        return datetime.datetime(1970, 1, 1) + datetime.timedelta(
            seconds=self.t)

    def __getattr__(self, name):
        return getattr(time, name)

    def patch(self):
        return mock.patch.object(ZODB.BaseStorage, 'time', self)


# ---------------------------------------------------------------------------
# Data.fs, read here header to header
# ---------------------------------------------------------------------------

TXN_HEADER = struct.Struct('>8sQcHHH')      # tid tl status ulen dlen elen
DATA_HEADER = struct.Struct('>8s8sQQHQ')    # oid tid prev tloc vlen plen


def walk_datafs(data):
    """[dict(tid, offset, size, records, user, description, status)] of a
    Data.fs's transactions (user and description as bytes)."""
    assert data[:4] in (b'FS21', b'FS30'), data[:4]
    out = []
    pos = 4
    while pos < len(data):
        tid, tl, status, ulen, dlen, elen = TXN_HEADER.unpack_from(data, pos)
        head = pos + TXN_HEADER.size
        user = data[head:head + ulen]
        descr = data[head + ulen:head + ulen + dlen]
        rpos = head + ulen + dlen + elen
        tend = pos + tl
        records = 0
        while rpos < tend:
            oid, rtid, prev, tloc, vlen, plen = DATA_HEADER.unpack_from(
                data, rpos)
            assert rtid == tid and tloc == pos and vlen == 0, (pos, rpos)
            rpos += DATA_HEADER.size + plen + (8 if plen == 0 else 0)
            records += 1
        assert rpos == tend, (pos, rpos, tend)
        assert struct.unpack('>Q', data[tend:tend + 8])[0] == tl, pos
        out.append(dict(tid=tid, offset=pos, size=tl + 8, records=records,
                        user=user, description=descr, status=status))
        pos = tend + 8
    assert pos == len(data)
    return out


# ---------------------------------------------------------------------------
# The database
# ---------------------------------------------------------------------------

def plain(v):
    """A ZODB value as plain Python (mappings and trees as dicts)."""
    if isinstance(v, (OOBTree, PersistentMapping, dict)):
        return {k: plain(x) for k, x in v.items()}
    return v


@dataclass
class Txn:
    index: int
    tid: bytes
    end: int                  # length of Data.fs right after the commit
    state: dict               # the root, read back through ZODB then
    user: object = None       # what was set: text, or bytes (raw); None:
    note: object = None       # ZODB's own root creation
    batch: int = None         # the backup holding it (None: not backed up)
    # From the walk of the final Data.fs:
    offset: int = None
    size: int = None
    records: int = None
    user_bytes: bytes = None
    descr_bytes: bytes = None

    @property
    def time(self):
        return tid_time(self.tid)

    @property
    def hex(self):
        return tid_hex(self.tid)

    def label(self):
        return 'transaction %d (%s, %s)' % (self.index, self.hex,
                                             fmt_time(self.time))


class Writer:
    """Commits transactions to a FileStorage and records each one."""

    def __init__(self, path, clock, seed):
        self.path = str(path)
        self.clock = clock
        self.rng = random.Random(seed)
        self.txns = []
        self.next_item = 0
        self.db = None
        self.open()
        self._record(None, None)     # ZODB's root creation

    def open(self):
        self.db = ZODB.DB(ZODB.FileStorage.FileStorage(self.path))
        self.tm = transaction.TransactionManager()
        self.conn = self.db.open(transaction_manager=self.tm)

    def close(self):
        if self.db is not None:
            self.conn.close()
            self.db.close()
            self.db = None

    def _record(self, user, note):
        self.tm.begin()
        state = plain(self.conn.root())
        self.tm.abort()
        t = Txn(len(self.txns), self.db.storage.lastTransaction(),
                os.path.getsize(self.path), state, user, note)
        self.txns.append(t)
        return t

    def _gap(self):
        self.clock.advance(GAPS[len(self.txns) % len(GAPS)])

    def commit(self, name, path, note, extension=None):
        """One transaction: bump the counter, add and change a few items."""
        self._gap()
        i = len(self.txns)
        txn = self.tm.begin()
        txn.note(note)
        txn.setUser(name, path)
        if extension:
            txn.setExtendedInfo(*extension)
        root = self.conn.root()
        root['counter'] = i
        if 'items' not in root:
            root['items'] = OOBTree()
        items = root['items']
        for _ in range(self.rng.choice((0, 1, 1, 2, 3))):
            key = 'item-%03d' % self.next_item
            self.next_item += 1
            items[key] = PersistentMapping(
                {'n': i, 'text': '%s %s' % (key, 'x' * self.rng.randint(
                    20, 400))})
        keys = sorted(items)
        for key in self.rng.sample(keys, min(self.rng.choice((0, 1, 2)),
                                             len(keys))):
            items[key]['n'] += 1000
            items[key]['text'] = 'changed in %d: %s' % (
                i, 'y' * self.rng.randint(10, 300))
        self.tm.commit()
        return self._record('%s %s' % (path, name), note)

    def undo_previous(self, name, path, note):
        self._gap()
        undo_id = self.db.undoLog(0, 1)[0]['id']
        txn = self.tm.begin()
        txn.note(note)
        txn.setUser(name, path)
        self.db.undo(undo_id, txn)
        self.tm.commit()
        return self._record('%s %s' % (path, name), note)

    def commit_raw(self, user, description):
        """A transaction with no data record, written straight to the
        storage with the given (bytes) user and description."""
        self.close()
        storage = ZODB.FileStorage.FileStorage(self.path)
        try:
            self._gap()
            meta = TransactionMetaData(user, description)
            storage.tpc_begin(meta)
            storage.tpc_vote(meta)
            storage.tpc_finish(meta)
        finally:
            storage.close()
        self.open()
        return self._record(user, description)

    def step(self):
        """The next transaction of the scenario."""
        i = len(self.txns)
        if i in SPECIAL_TEXT:
            return self.commit(*SPECIAL_TEXT[i])
        if i == UNDO:
            return self.undo_previous('undoer', '/acl_users',
                                      'undo of transaction %d' % (i - 1))
        if i == RAW:
            return self.commit_raw(RAW_USER, RAW_DESCRIPTION)
        name = '%s-%02d' % (NAMES[i % len(NAMES)], i)
        note = 'transaction %02d of the pit scenario' % i
        if i == EXTENSION:
            return self.commit(name, '/site', note, ('client', 'pit-tests'))
        return self.commit(name, '/site/acl_users' if i % 3 else '/', note)


# ---------------------------------------------------------------------------
# The scenario: one database, four repositories
# ---------------------------------------------------------------------------

@dataclass
class Scenario(Workdirs):
    base: str
    datafs: bytes             # the source Data.fs at the end
    repos: dict               # kind -> repository path
    txns: list                # every transaction, backed up or not
    backups: list             # [(now, first txn index, last txn index)]
    _n: int = 0

    @property
    def backed(self):
        return [t for t in self.txns if t.batch is not None]


    def file_name(self, kind, batch):
        gz = 'z' if '-z' in KINDS[kind][1] else ''
        ext = '.fs' if batch == 0 else '.deltafs'
        return self.backups[batch][0] + ext + gz

    def file_of(self, kind, t):
        return self.file_name(kind, t.batch)

    def batch_range(self, batch):
        """(start, end) of a backup's range in Data.fs."""
        first, last = self.backups[batch][1:]
        return self.txns[first].offset, self.txns[last].end

    def at_time(self, dt):
        """The last backed up transaction whose (rounded) time is <= dt."""
        kept = [t for t in self.backed if t.time <= dt]
        return kept[-1] if kept else None


@pytest.fixture(scope='module')
def sc(tools, tmp_path_factory):
    base = str(tmp_path_factory.mktemp('pit'))
    repos = {k: os.path.join(base, 'repo-' + k) for k in KINDS}
    for r in repos.values():
        os.mkdir(r)
    path = os.path.join(base, 'Data.fs')
    clock = TidClock(TID_START)
    backups = []
    with clock.patch():
        w = Writer(path, clock, seed=20240305)
        try:
            for batch, n in enumerate(BATCHES):
                if batch:
                    clock.advance(BATCH_GAP)
                first = len(w.txns) if batch else 0
                while len(w.txns) < first + n:
                    w.step()
                for t in w.txns[first:]:
                    t.batch = batch
                w.close()
                now = fmt_now(datetime.datetime(1970, 1, 1) +
                              datetime.timedelta(seconds=int(clock.t)
                                                 + BACKUP_DELAY))
                backups.append((now, first, len(w.txns) - 1))
                for kind, (who, opts) in KINDS.items():
                    tools[who].run(['-B', '-r', repos[kind], '-f', path]
                                   + opts, now=now, check=True,
                                   what='backing up batch %d' % batch)
                w.open()
            for _ in range(NOT_BACKED_UP):
                w.step()
        finally:
            w.close()
    datafs = read(path)
    walked = walk_datafs(datafs)
    assert [r['tid'] for r in walked] == [t.tid for t in w.txns]
    for t, r in zip(w.txns, walked):
        t.offset, t.size, t.records = r['offset'], r['size'], r['records']
        t.user_bytes, t.descr_bytes = r['user'], r['description']
        assert t.offset + t.size == t.end, t.label()
    return Scenario(base, datafs, repos, w.txns, backups)


def data_files(repo):
    return sorted(n for n in os.listdir(repo)
                  if n.endswith(('.fs', '.fsz', '.deltafs', '.deltafsz')))


def read_repo(repo):
    return {n: read(os.path.join(repo, n)) for n in sorted(os.listdir(repo))
            if n != LOCK_NAME and os.path.isfile(os.path.join(repo, n))}


def test_scenario_is_what_the_tests_assume(sc):
    """The fixture itself (no new option used): tids, times, users and
    notes as committed; the repositories hold the backups named."""
    txns = sc.txns
    assert len(txns) == N_BACKED + NOT_BACKED_UP
    assert len(sc.backed) == N_BACKED
    times = [t.time for t in txns]
    assert times == sorted(set(times)), 'two transactions share a time'
    assert times[0] - TID_START < datetime.timedelta(milliseconds=1)
    for t in txns:
        # Our rounded time agrees with ZODB's TimeStamp.
        ts = TimeStamp(t.tid)
        dt = t.time
        assert (ts.year(), ts.month(), ts.day(), ts.hour(), ts.minute()) == (
            dt.year, dt.month, dt.day, dt.hour, dt.minute), t.label()
        assert abs(ts.second() - dt.second - dt.microsecond / 1e6) < 2e-6
        if isinstance(t.user, str):
            assert t.user_bytes == t.user.encode('utf-8'), t.label()
            assert t.descr_bytes == t.note.encode('utf-8'), t.label()
        elif isinstance(t.user, bytes):
            assert (t.user_bytes, t.descr_bytes) == (t.user, t.note)
        else:
            assert t.index == 0 and t.records == 1
    assert txns[RAW].records == 0
    # The undo puts back the state before the transaction it undoes.
    assert txns[UNDO].state == txns[UNDO - 2].state
    assert txns[UNDO].state != txns[UNDO - 1].state
    assert len({t.records for t in txns}) >= 4, 'records hardly vary'
    assert len({t.user_bytes for t in txns}) == len(txns)
    assert '"' in txns[QUOTED].note and '\n' in txns[QUOTED].note
    # Midnight falls inside the first increment.
    midnight = datetime.datetime(2024, 3, 5)
    inc1 = [t for t in txns if t.batch == 1]
    assert inc1[0].time < midnight < inc1[-1].time
    assert txns[0].offset == 4 and sc.backed[-1].end < len(sc.datafs)
    for kind in KINDS:
        assert data_files(sc.repos[kind]) == [
            sc.file_name(kind, b) for b in range(len(BATCHES))]


# ---------------------------------------------------------------------------
# --transactions
# ---------------------------------------------------------------------------

JSON_KEYS = {'tid', 'time', 'user', 'description', 'size', 'records', 'file',
             'offset', 'end'}
HEADER = 'tid  time  size  records  file  user  description'


def expected_entry(sc, kind, t):
    return {
        'tid': t.hex,
        'time': fmt_time(t.time),
        'user': t.user_bytes.decode('utf-8', 'replace'),
        'description': t.descr_bytes.decode('utf-8', 'replace'),
        'size': t.size,
        'records': t.records,
        'file': sc.file_of(kind, t),
        'offset': t.offset,
        'end': t.end,
    }


def list_txns(tools, repo, *extra):
    proc = tools['rs'].run(['--transactions', '-r', repo] + list(extra),
                           now=LATER)
    assert proc.returncode == 0, describe_output(proc)
    return proc


def parse_json_lines(proc):
    out = []
    for line in text(proc.stdout).splitlines():
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except ValueError:
            pytest.fail('not a JSON object: %r\n%s'
                        % (line, describe_output(proc)), pytrace=False)
    return out


def parse_text_listing(proc):
    """The text form as a list of dicts like the JSON ones (sizes as int,
    no offset/end)."""
    lines = proc.stdout.decode('utf-8').split('\n')
    assert lines and lines[-1] == '', 'no newline at the end'
    lines = lines[:-1]
    assert lines[0] == HEADER, lines[0]
    dec = json.JSONDecoder()
    out = []
    for line in lines[1:]:
        parts = line.split('  ', 5)
        assert len(parts) == 6, line
        rest = parts[5]
        user, i = dec.raw_decode(rest)
        assert rest[i:i + 2] == '  ', line
        descr, j = dec.raw_decode(rest, i + 2)
        assert j == len(rest), line
        assert rest[0] == '"' and rest[i + 2] == '"', line
        out.append({'tid': parts[0], 'time': parts[1],
                    'size': int(parts[2]), 'records': int(parts[3]),
                    'file': parts[4], 'user': user, 'description': descr})
    return out


def compare_listing(got, want, what):
    got_tids = [g.get('tid') for g in got]
    want_tids = [w['tid'] for w in want]
    assert got_tids == want_tids, (
        '%s: listed tids differ\n  missing: %s\n  unexpected: %s'
        % (what, sorted(set(want_tids) - set(got_tids)),
           sorted(set(got_tids) - set(want_tids))))
    for g, w in zip(got, want):
        assert g == w, '%s: %s listed as\n  %r\nexpected\n  %r' % (
            what, w['tid'], g, w)


@pytest.mark.parametrize('kind', list(KINDS))
def test_transactions_json(sc, tools, kind):
    """Exactly the backed up transactions, oldest first, each as the spec
    says; the repository is not changed."""
    repo = sc.repos[kind]
    before = read_repo(repo)
    proc = list_txns(tools, repo, '--json')
    got = parse_json_lines(proc)
    for g in got:
        assert set(g) == JSON_KEYS, 'keys %s' % sorted(g)
    want = [expected_entry(sc, kind, t) for t in sc.backed]
    compare_listing(got, want, '--transactions --json of %s' % kind)
    # What was committed, said again from the commit side.
    for g, t in zip(got, sc.backed):
        assert g['end'] == t.end
        if isinstance(t.user, str):
            assert (g['user'], g['description']) == (t.user, t.note)
    assert got[NON_ASCII]['description'] == SPECIAL_TEXT[NON_ASCII][2]
    assert got[QUOTED]['description'] == 'say "hello"\nsecond line'
    assert got[RAW]['user'] == 'raw \ufffd\ufffd user'
    assert got[RAW]['description'] == 'not utf-8: \ufffd( end'
    assert got[RAW]['records'] == 0
    assert read_repo(repo) == before, '--transactions changed the repository'


@pytest.mark.parametrize('kind', ['rs', 'py-z'])
def test_times_are_rounded_to_the_microsecond(sc, tools, kind):
    """A tid's time is rounded to the microsecond, as ZODB's
    str(TimeStamp) shows it, for showing it and for comparing it with
    --at / --since / --until: a tid 0.9 us past a microsecond is shown in
    the next one (not floored), and a tid a little past the microsecond
    it is shown in is kept by --at / --until of that shown time (one tid a
    little past, one more than half a microsecond past: a time compared
    exactly or floored fails one)."""
    repo = sc.repos[kind]
    half = Fraction(1, 2)
    near_next = [t for t in sc.backed[1:] if sub_micro(t.tid) >= half]
    a_little = [t for t in sc.backed[1:] if 0 < sub_micro(t.tid) < half]
    assert near_next and a_little, 'the scenario has no such tid'
    listed = {g['tid']: g['time']
              for g in parse_json_lines(list_txns(tools, repo, '--json'))}
    for t in near_next[:3]:
        assert listed.get(t.hex) == fmt_time(t.time), (
            '%s is %s us past %s: listed as %s, expected %s (rounded)'
            % (t.hex, float(sub_micro(t.tid)), fmt_time(t.time),
               listed.get(t.hex), fmt_time(t.time)))
    for t in (a_little[len(a_little) // 2], near_next[len(near_next) // 2]):
        at = fmt_time(t.time)
        why = '%s is %.3f us past %s, the time the spec lists it with' % (
            t.hex, float(sub_micro(t.tid)), at)
        got = parse_json_lines(list_txns(tools, repo, '--json', '--until',
                                         at))
        assert got and got[-1]['tid'] == t.hex, (
            '--until %s: the last listed is %s, expected %s (%s)'
            % (at, got[-1]['tid'] if got else None, t.hex, why))
        got = parse_json_lines(list_txns(tools, repo, '--json', '--since',
                                         at))
        assert got and got[0]['tid'] == t.hex, (
            '--since %s: the first listed is %s, expected %s (%s)'
            % (at, got[0]['tid'] if got else None, t.hex, why))
        out = os.path.join(sc.workdir('floor-' + kind), 'Data.fs')
        proc = rs_recover(tools, repo, out, '--at', at)
        assert proc.returncode == 0, describe_output(proc)
        assert len(read(out)) == t.end, (
            '--at %s recovered %d bytes, expected %d, up to %s (%s)\n%s'
            % (at, len(read(out)), t.end, t.hex, why, describe_output(proc)))


@pytest.mark.parametrize('kind', list(KINDS))
def test_transactions_text(sc, tools, kind):
    """The text form: a header, then one line per transaction, fields
    separated by two spaces, user and description as JSON strings."""
    proc = list_txns(tools, sc.repos[kind])
    got = parse_text_listing(proc)
    want = []
    for t in sc.backed:
        e = expected_entry(sc, kind, t)
        del e['offset'], e['end']
        want.append(e)
    compare_listing(got, want, '--transactions of %s' % kind)


@pytest.mark.parametrize('kind', list(KINDS))
def test_transactions_since_until(sc, tools, kind):
    """--since / --until keep the transactions whose listed time is >= /
    <= the given one, bounds included, in JSON and text form."""
    repo = sc.repos[kind]
    b = sc.backed
    t10, t40 = b[10].time, b[40].time

    def check(args, want_idx, json_form=True):
        if json_form:
            got = parse_json_lines(list_txns(tools, repo, '--json', *args))
            want = [expected_entry(sc, kind, b[i]) for i in want_idx]
        else:
            got = parse_text_listing(list_txns(tools, repo, *args))
            want = []
            for i in want_idx:
                e = expected_entry(sc, kind, b[i])
                del e['offset'], e['end']
                want.append(e)
        compare_listing(got, want, ' '.join(args))

    check(['--since', fmt_time(t10), '--until', fmt_time(t40)],
          range(10, 41))
    check(['--since', fmt_time(t10 + US), '--until', fmt_time(t40 - US)],
          range(11, 40))
    check(['--since', fmt_time(t10)], range(10, N_BACKED))
    check(['--until', fmt_time(t40)], range(0, 41))
    check(['--since', fmt_time(b[QUOTED].time), '--until',
           fmt_time(b[QUOTED].time)], [QUOTED])
    check(['--since', fmt_time(t10), '--until', fmt_time(t40)],
          range(10, 41), json_form=False)
    # repozo's form: a day alone is its midnight.
    midnight = datetime.datetime(2024, 3, 5)
    first_on_5th = [t.index for t in b if t.time >= midnight][0]
    check(['--since', '2024-03-05'], range(first_on_5th, N_BACKED))
    check(['--until', '2024-03-05'], range(0, first_on_5th))


# ---------------------------------------------------------------------------
# Recovering a point in time
# ---------------------------------------------------------------------------

def rs_recover(tools, repo, out, *extra, cwd=None):
    args = ['-R', '-v', '-r', repo]
    if out is not None:
        args += ['-o', out]
    return tools['rs'].run(args + list(extra), now=LATER, cwd=cwd)


def zodb_scan(path, scratch):
    """(pos, {oid: offset}) as ZODB finds them scanning a copy of ``path``
    that has no index (``scratch``: an empty directory)."""
    copy = os.path.join(scratch, 'scan.fs')
    shutil.copyfile(path, copy)
    fs = ZODB.FileStorage.FileStorage(copy, read_only=True)
    try:
        assert fs._used_index == 0
        return fs._pos, dict(fs._index.items())
    finally:
        fs.close()


def open_read(path, blob_dir=None):
    """(used_index, index items, pos, last tid, root state, blob contents)
    of ``path`` opened read-only by ZODB."""
    storage = ZODB.FileStorage.FileStorage(path, read_only=True,
                                           blob_dir=blob_dir)
    used = storage._used_index
    index = dict(storage._index.items())
    pos = storage._pos
    last = storage.lastTransaction()
    db = ZODB.DB(storage)
    blobs = None
    try:
        conn = db.open(transaction_manager=transaction.TransactionManager())
        try:
            root = conn.root()
            if blob_dir is None:
                state = plain(root)
            else:
                state = None
                blobs = {}
                if 'files' in root:
                    for key, holder in root['files'].items():
                        with holder['blob'].open('r') as f:
                            blobs[key] = f.read()
        finally:
            conn.close()
    finally:
        db.close()
    return used, index, pos, last, state, blobs


def check_bytes(out, want, what, proc):
    got = read(out)
    if got != want:
        pytest.fail('%s: FILE has %d bytes, expected %d, first difference at '
                    'offset %d\n%s' % (what, len(got), len(want),
                                       first_diff(got, want),
                                       describe_output(proc)), pytrace=False)


def check_recovered(sc, proc, out, t, what, full=True):
    """FILE is Data.fs right after ``t``, with an index ZODB uses and would
    build itself, and ZODB reads the state recorded after ``t``."""
    what = '%s, target %s' % (what, t.label())
    assert proc.returncode == 0, '%s\n%s' % (what, describe_output(proc))
    check_bytes(out, sc.datafs[:t.end], what, proc)
    d = os.path.dirname(out)
    name = os.path.basename(out)
    left = set(os.listdir(d)) - {name, name + '.index', name + '.lock'}
    assert not left, '%s: left behind: %s' % (what, sorted(left))
    assert os.path.exists(out + '.index'), '%s: no FILE.index' % what
    used, index, pos, last, state, _ = open_read(out)
    assert used == 1, '%s: ZODB did not use FILE.index (rescan)' % what
    assert pos == t.end and last == t.tid, what
    if full:
        scan_pos, scan_index = zodb_scan(out, sc.workdir('scan'))
        assert scan_pos == t.end, what
        assert index == scan_index, (
            '%s: FILE.index differs from what ZODB builds by scanning' % what)
        saved = fsIndex.load(out + '.index')
        assert saved['pos'] == t.end, what
    assert state == t.state, '%s: ZODB reads another state' % what


# Positions: transaction index in the scenario.
POSITIONS = {
    'full-first': 0,                       # ZODB's root creation
    'full-middle': 8,
    'full-last': BATCHES[0] - 1,
    'inc1-first': BATCHES[0],
    'inc1-middle': BATCHES[0] + 6,
    'inc1-last': BATCHES[0] + BATCHES[1] - 1,
    'inc2-raw-txn': RAW,                   # no data record
    'inc3-middle': N_BACKED - 4,
    'newest': N_BACKED - 1,
}


@pytest.mark.parametrize('pos', list(POSITIONS))
@pytest.mark.parametrize('kind', list(KINDS))
def test_recover_at_tid_and_at_time(sc, tools, kind, pos):
    """-R --at-tid and -R --at <its listed time> give the state right after
    that commit, with an index ZODB uses."""
    t = sc.txns[POSITIONS[pos]]
    repo = sc.repos[kind]
    out = os.path.join(sc.workdir('tid-%s-%s' % (kind, pos)), 'Data.fs')
    proc = rs_recover(tools, repo, out, '--at-tid', t.hex)
    check_recovered(sc, proc, out, t, '--at-tid %s (%s)' % (t.hex, kind))
    out = os.path.join(sc.workdir('at-%s-%s' % (kind, pos)), 'Data.fs')
    proc = rs_recover(tools, repo, out, '--at', fmt_time(t.time))
    check_recovered(sc, proc, out, t, '--at %s (%s)' % (fmt_time(t.time),
                                                       kind))


@pytest.mark.parametrize('kind', list(KINDS))
def test_at_tid_without_0x(sc, tools, kind):
    """--at-tid takes the 16 hex digits without 0x too."""
    t = sc.txns[POSITIONS['inc1-middle']]
    out = os.path.join(sc.workdir('no0x-' + kind), 'Data.fs')
    proc = rs_recover(tools, sc.repos[kind], out, '--at-tid', t.tid.hex())
    check_recovered(sc, proc, out, t, '--at-tid without 0x', full=False)


@pytest.mark.parametrize('kind', list(KINDS))
def test_at_between_two_commits(sc, tools, kind):
    """A time after a commit and before the next one: the earlier commit's
    state (one microsecond after it, one before the next)."""
    for i in (3, 15, 22, 37, N_BACKED - 2):
        t, nxt = sc.txns[i], sc.txns[i + 1]
        assert nxt.time - t.time > 2 * US
        for at in (t.time + US, nxt.time - US):
            assert sc.at_time(at) is t
            out = os.path.join(sc.workdir('between-%s-%d' % (kind, i)),
                               'Data.fs')
            proc = rs_recover(tools, sc.repos[kind], out, '--at',
                              fmt_time(at))
            check_recovered(sc, proc, out, t, '--at %s' % fmt_time(at),
                            full=False)
    # After the newest backed up commit (even after the ones never backed
    # up): the newest backed up state.
    out = os.path.join(sc.workdir('after-all-' + kind), 'Data.fs')
    proc = rs_recover(tools, sc.repos[kind], out, '--at',
                      '2024-03-06T00:00:00Z')
    check_recovered(sc, proc, out, sc.backed[-1], '--at after everything',
                    full=False)


def time_forms(sc):
    """[(id, TIME string, the UTC instant it means)] for every form the spec
    names, around a second holding a transaction in its first quarter."""
    for t in sc.backed[1:]:
        if 0 < t.time.microsecond < 250000 and t.batch == 2:
            break
    else:
        raise AssertionError('no transaction early in its second')
    s = t.time.replace(microsecond=0)
    quarter = s + datetime.timedelta(microseconds=250000)
    east = s + datetime.timedelta(hours=2)
    iso = s.strftime('%Y-%m-%dT%H:%M:%S')
    return [
        ('iso-micro-Z', iso + '.250000Z', quarter),
        ('iso-seconds-Z', iso + 'Z', s),
        ('iso-fraction-no-zone', iso + '.25', quarter),
        ('iso-offset', east.strftime('%Y-%m-%dT%H:%M:%S') + '+02:00', s),
        ('space', s.strftime('%Y-%m-%d %H:%M:%S'), s),
        ('repozo', s.strftime('%Y-%m-%d-%H-%M-%S'), s),
        ('repozo-minutes', s.strftime('%Y-%m-%d-%H-%M'),
         s.replace(second=0)),
        ('repozo-hours', s.strftime('%Y-%m-%d-%H'),
         s.replace(minute=0, second=0)),
        ('repozo-day', '2024-03-05', datetime.datetime(2024, 3, 5)),
    ]


@pytest.mark.parametrize('kind', ['rs-z', 'py'])
def test_time_forms(sc, tools, kind):
    """Every TIME form of the spec means the instant it says (no zone is
    UTC, an offset is converted, a short repozo date is its start)."""
    forms = time_forms(sc)
    picked = {f[0]: sc.at_time(f[2]) for f in forms}
    # The forms do tell things apart: the fraction matters, a day alone is
    # not its end.
    assert picked['iso-micro-Z'] is not picked['iso-seconds-Z']
    assert picked['repozo-day'] is not sc.backed[-1]
    assert len({id(p) for p in picked.values()}) >= 4
    for name, s, _ in forms:
        t = picked[name]
        assert t is not None, name
        out = os.path.join(sc.workdir('form-%s-%s' % (kind, name)), 'Data.fs')
        proc = rs_recover(tools, sc.repos[kind], out, '--at', s)
        check_recovered(sc, proc, out, t, 'form %s: --at %r' % (name, s),
                        full=False)


def assert_refused(proc, d, what, one_line=True):
    assert proc.returncode == 1, '%s: expected exit 1\n%s' % (
        what, describe_output(proc))
    if one_line:
        lines = [l for l in text(proc.stderr).splitlines() if l.strip()]
        assert len(lines) == 1, '%s: expected one line on stderr\n%s' % (
            what, describe_output(proc))
    left = sorted(os.listdir(d))
    assert not left, '%s: left behind: %s' % (what, left)


@pytest.mark.parametrize('kind', ['rs', 'py-z'])
def test_errors_leave_nothing(sc, tools, kind):
    """A tid the repository does not hold (committed after the last backup,
    between two tids, zero), a time before the first commit, and --at /
    --at-tid / -D together: exit 1 (one line on stderr, but for the usage
    errors) and nothing in the output's directory: no FILE, FILE.part or
    FILE.index."""
    repo = sc.repos[kind]
    first = sc.txns[0]
    absent = [
        ('not backed up', sc.txns[-1].hex),
        ('between two tids', tid_hex((int.from_bytes(sc.txns[22].tid, 'big')
                                      + 1).to_bytes(8, 'big'))),
        ('zero', '0x' + '0' * 16),
    ]
    for what, tid in absent:
        d = sc.workdir('absent-tid')
        proc = tools['rs'].run(['-R', '-r', repo, '-o',
                                os.path.join(d, 'Data.fs'), '--at-tid', tid],
                               now=LATER)
        assert_refused(proc, d, '--at-tid of a tid %s' % what)
    for at in (fmt_time(first.time - US), '2024-03-04T23:00:00Z',
               '2024-03-04'):
        d = sc.workdir('before-first')
        proc = tools['rs'].run(['-R', '-r', repo, '-o',
                                os.path.join(d, 'Data.fs'), '--at', at],
                               now=LATER)
        assert_refused(proc, d, '--at %s, before the first commit' % at)
    t = sc.txns[22]
    for args in (['--at', fmt_time(t.time), '-D', sc.backups[1][0]],
                 ['--at-tid', t.hex, '-D', sc.backups[1][0]],
                 ['--at', fmt_time(t.time), '--at-tid', t.hex]):
        d = sc.workdir('exclusive')
        proc = tools['rs'].run(['-R', '-r', repo, '-o',
                                os.path.join(d, 'Data.fs')] + args, now=LATER)
        assert_refused(proc, d, ' '.join(args), one_line=False)


@pytest.mark.parametrize('kind', ['py', 'rs-z'])
def test_recover_to_stdout(sc, tools, kind):
    """Without -o the bytes go to stdout and no file is written."""
    for t in (sc.txns[9], sc.txns[35]):
        d = sc.workdir('stdout-' + kind)
        for args in (['--at-tid', t.hex], ['--at', fmt_time(t.time)]):
            proc = rs_recover(tools, sc.repos[kind], None, *args, cwd=d)
            assert proc.returncode == 0, describe_output(proc)
            assert proc.stdout == sc.datafs[:t.end], (
                '%s: stdout has %d bytes, expected %d' % (
                    ' '.join(args), len(proc.stdout), t.end))
            assert os.listdir(d) == [], os.listdir(d)


@pytest.mark.parametrize('kind', list(KINDS))
def test_in_place_cut_back(sc, tools, kind):
    """FILE recovered at the newest backup, then --at-tid of a transaction
    in the middle of an earlier increment (and --at of one in the middle
    of the full backup): cut in place, same inode, index used."""
    repo = sc.repos[kind]
    out = os.path.join(sc.workdir('in-place-' + kind), 'Data.fs')
    for t, args in ((sc.txns[POSITIONS['inc1-middle']], ['--at-tid']),
                    (sc.txns[POSITIONS['full-middle']], ['--at'])):
        proc = rs_recover(tools, repo, out)
        check_recovered(sc, proc, out, sc.backed[-1], 'the newest backup',
                        full=False)
        old = ino(out)
        args = args + [t.hex if args[0] == '--at-tid' else fmt_time(t.time)]
        proc = rs_recover(tools, repo, out, *args)
        what = 'in place, %s from the newest' % ' '.join(args)
        check_recovered(sc, proc, out, t, what)
        assert ino(out) == old, '%s: FILE was replaced\n%s' % (
            what, describe_output(proc))
        assert [l for l in text(proc.stderr).splitlines()
                if l.startswith(IN_PLACE)], (
            '%s: no %r line under -v\n%s' % (what, IN_PLACE,
                                            describe_output(proc)))
        assert not os.path.exists(out + '.part')


@pytest.mark.parametrize('kind', list(KINDS))
def test_verify_damaged_cut_file(sc, tools, kind):
    """-w checks every backup file used against the .dat, also the one that
    is cut: damaged after the target transaction, it fails with exit 1 and
    FILE is not made, or left as it was."""
    t = sc.txns[POSITIONS['inc1-middle']]
    repo, name = damage_after(sc, kind, t)
    for args in (['--at-tid', t.hex], ['--at', fmt_time(t.time)]):
        d = sc.workdir('w-fresh-' + kind)
        proc = tools['rs'].run(['-R', '-w', '-r', repo, '-o',
                                os.path.join(d, 'Data.fs')] + args, now=LATER)
        assert_refused(proc, d, '-w %s with %s damaged after it'
                       % (' '.join(args), name), one_line=False)
    # An existing FILE at the end of the full backup (to be brought to the
    # middle of the damaged increment, in place or in full) stays as it was.
    full_end = sc.txns[sc.backups[0][2]]
    d = sc.workdir('w-existing-' + kind)
    out = os.path.join(d, 'Data.fs')
    proc = rs_recover(tools, sc.repos[kind], out, '-D', sc.backups[0][0])
    check_recovered(sc, proc, out, full_end, 'the full backup', full=False)
    old = ino(out)
    proc = tools['rs'].run(['-R', '-w', '-r', repo, '-o', out, '--at-tid',
                            t.hex], now=LATER)
    what = '-w --at-tid from the full backup\'s state, %s damaged' % name
    assert proc.returncode == 1, '%s\n%s' % (what, describe_output(proc))
    check_bytes(out, sc.datafs[:full_end.end], what, proc)
    assert ino(out) == old, '%s: FILE was replaced' % what
    assert not os.path.exists(out + '.part'), what


def damage_after(sc, kind, t):
    """A copy of the repository whose backup file holding ``t`` has a byte
    changed after ``t`` (plain) or in its last quarter (gzip'd)."""
    repo = sc.copy_repo(kind)
    name = sc.file_of(kind, t)
    path = os.path.join(repo, name)
    good = read(path)
    if name.endswith('z'):
        pos = len(good) * 3 // 4
    else:
        start, end = sc.batch_range(t.batch)
        pos = (t.end - start) + (end - t.end) // 2
    write(path, flip(good, pos))
    return repo, name


@pytest.mark.parametrize('kind', ['rs', 'py-z'])
def test_verify_damaged_cut_file_in_place(sc, tools, kind):
    """Cutting a standby back in place to the middle of an increment
    writes no byte of a backup file: FILE's own ranges are checked against
    the .dat md5s instead, so a damaged increment (after the target) does
    not matter, -w or not: FILE is cut back in place, right.  A gzip'd
    increment is inflated to find the transaction, and its damage (a CRC
    that does not match) is an error naming it, FILE left as it was."""
    t = sc.txns[POSITIONS['inc1-middle']]
    repo, name = damage_after(sc, kind, t)
    d = sc.workdir('w-in-place-' + kind)
    out = os.path.join(d, 'Data.fs')
    proc = rs_recover(tools, sc.repos[kind], out)
    check_recovered(sc, proc, out, sc.backed[-1], 'the newest backup',
                    full=False)
    ino = os.stat(out).st_ino
    proc = tools['rs'].run(['-R', '-v', '-w', '-r', repo, '-o', out,
                            '--at-tid', t.hex], now=LATER)
    what = '-w --at-tid cutting back the newest state, %s damaged' % name
    if kind.endswith('-z'):
        assert proc.returncode == 1, '%s\n%s' % (what, describe_output(proc))
        assert name + ': corrupt gzip data' in proc.stderr.decode(), (
            describe_output(proc))
        check_bytes(out, sc.datafs[:sc.backed[-1].end], what, proc)
        assert os.stat(out).st_ino == ino, what
        return
    assert proc.returncode == 0, '%s\n%s' % (what, describe_output(proc))
    check_bytes(out, sc.datafs[:t.end], what, proc)
    assert os.stat(out).st_ino == ino, what
    assert IN_PLACE in proc.stderr.decode(), describe_output(proc)


@pytest.mark.parametrize('kind', list(KINDS))
def test_python_repozo_unchanged(sc, tools, kind):
    """Python repozo still verifies and recovers these repositories, and
    our plain -R gives the same bytes."""
    repo = sc.repos[kind]
    proc = tools['py'].run(['-V', '-r', repo], now=LATER)
    assert proc.returncode == 0, describe_output(proc)
    for date, t in ((None, sc.backed[-1]),
                    (sc.backups[1][0], sc.txns[sc.backups[1][2]])):
        extra = ['-D', date] if date else []
        for who in ('py', 'rs'):
            out = os.path.join(sc.workdir('plain-%s-%s' % (who, kind)),
                               'Data.fs')
            proc = tools[who].run(['-R', '-r', repo, '-o', out] + extra,
                                  now=LATER)
            assert proc.returncode == 0, describe_output(proc)
            check_bytes(out, sc.datafs[:t.end], '%s -R %s' % (who, extra),
                        proc)
            used, _, _, last, state, _ = open_read(out)
            assert used == 1 and last == t.tid and state == t.state


# ---------------------------------------------------------------------------
# Two chains holding the same transactions
# ---------------------------------------------------------------------------

@pytest.mark.parametrize('who', ['rs', 'py'])
def test_two_chains_each_transaction_once(tools, tmp_path, who):
    """A forced full backup starts a second chain holding every earlier
    transaction again: each is listed once, from the oldest chain holding
    it; recovering one of them (or a later one) gives the right bytes."""
    path = str(tmp_path / 'Data.fs')
    repo = str(tmp_path / 'repo')
    os.mkdir(repo)
    clock = TidClock(datetime.datetime(2024, 3, 7, 8, 0, 0, 500000))
    # (transactions before the backup, options, file extension)
    plan = [(5, [], '.fs'), (3, [], '.deltafs'), (3, ['-F'], '.fs'),
            (2, [], '.deltafs')]
    files = []
    owner = []                # backup index holding each txn first
    with clock.patch():
        w = Writer(path, clock, seed=7)
        try:
            for b, (n, opts, ext) in enumerate(plan):
                clock.advance(BATCH_GAP)
                first = len(w.txns) if b else 0
                while len(w.txns) < first + n:
                    w.step()
                owner += [b] * (len(w.txns) - len(owner))
                w.close()
                now = fmt_now(clock.utc().replace(microsecond=0)
                              + datetime.timedelta(seconds=BACKUP_DELAY))
                tools[who].run(['-B', '-r', repo, '-f', path] + opts,
                               now=now, check=True)
                files.append(now + ext)
                w.open()
        finally:
            w.close()
    datafs = read(path)
    walked = walk_datafs(datafs)
    assert data_files(repo) == sorted(files)
    proc = list_txns(tools, repo, '--json')
    got = parse_json_lines(proc)
    want = []
    for t, r, b in zip(w.txns, walked, owner):
        want.append({
            'tid': t.hex, 'time': fmt_time(t.time),
            'user': r['user'].decode('utf-8', 'replace'),
            'description': r['description'].decode('utf-8', 'replace'),
            'size': r['size'], 'records': r['records'], 'file': files[b],
            'offset': r['offset'], 'end': t.end})
    compare_listing(got, want, 'two chains (%s)' % who)
    for i in (2, 6, 9, len(w.txns) - 1):
        t = w.txns[i]
        for args in (['--at-tid', t.hex], ['--at', fmt_time(t.time)]):
            out = str(tmp_path / ('out-%d-%s.fs' % (i, args[0][2:])))
            proc = tools['rs'].run(['-R', '-r', repo, '-o', out] + args,
                                   now=LATER)
            assert proc.returncode == 0, describe_output(proc)
            check_bytes(out, datafs[:t.end], 'two chains %s' % args, proc)
            used, _, _, last, state, _ = open_read(out)
            assert used == 1 and last == t.tid and state == t.state, args


# ---------------------------------------------------------------------------
# Blobs
# ---------------------------------------------------------------------------

@dataclass
class BlobTxn:
    index: int
    tid: bytes
    end: int
    blobs: dict               # the live blob directory's files then
    contents: dict            # key -> bytes, as ZODB reads them
    layout: str = None


# Backups: (operations, backup options)
BLOB_PLAN = [
    ([lambda m: m.add(3, sizes=(0, 100 * 1024)), lambda m: m.add(2),
      lambda m: m.change(2)], []),
    ([lambda m: m.plain(), lambda m: m.add(2), lambda m: m.change(1),
      lambda m: m.delete(1), lambda m: m.add(1)], ['-z']),
    ([lambda m: m.change(2), lambda m: m.add(1)], []),
]


@pytest.fixture(scope='module')
def blob_sc(tools, tmp_path_factory):
    base = str(tmp_path_factory.mktemp('pit-blobs'))
    live = os.path.join(base, 'live')
    repo = os.path.join(base, 'repo')
    os.makedirs(live)
    os.makedirs(repo)
    clock = TidClock(datetime.datetime(2024, 3, 6, 9, 15, 2, 250000))
    txns = []

    def record(m):
        txns.append(BlobTxn(len(txns), m.db.storage.lastTransaction(),
                            os.path.getsize(m.path),
                            blob_snapshot(m.blob_dir), dict(m.contents),
                            read_layout(m.blob_dir)))

    with clock.patch():
        m = BlobModel(live, seed=20240306)
        try:
            m.open()
            record(m)                 # ZODB's root creation
            for ops, opts in BLOB_PLAN:
                m.open()
                for op in ops:
                    clock.advance(1.7)
                    op(m)
                    record(m)
                m.close()
                clock.advance(30)
                now = fmt_now(clock.utc().replace(microsecond=0))
                tools['rs'].run(['-B', '-r', repo, '-f', m.path,
                                 '--blob-dir', m.blob_dir] + opts, now=now,
                                check=True)
        finally:
            m.close()
    return base, repo, txns, read(m.path)


@pytest.mark.parametrize('form', ['at-tid', 'at'])
def test_blobs_at_tid(blob_sc, tools, form):
    """--at-tid (and --at) with --blob-dir: the blob directory holds exactly
    the blob files of the transactions kept, and ZODB reads them.  The
    targets: the root creation (no blob yet), the middle of the full
    backup, the first (blob-less) transaction of the gzip'd increment, a
    deletion in its middle, the first and the last of the last increment."""
    base, repo, txns, datafs = blob_sc
    assert [t.tid for t in txns] == [
        r['tid'] for r in walk_datafs(datafs)]
    assert len({len(t.blobs) for t in txns}) > 5
    for i in (0, 2, 4, 7, 9, len(txns) - 1):
        t = txns[i]
        if form == 'at-tid':
            args = ['--at-tid', tid_hex(t.tid)]
        else:
            args = ['--at', fmt_time(tid_time(t.tid))]
        d = os.path.join(base, 'work-%d-%s' % (i, form))
        os.makedirs(d)
        out = os.path.join(d, 'Data.fs')
        blobs = os.path.join(d, 'blobs')
        proc = tools['rs'].run(['-R', '-r', repo, '-o', out,
                                '--blob-dir', blobs] + args, now=LATER)
        what = 'blobs %s (transaction %d)' % (' '.join(args), i)
        assert proc.returncode == 0, '%s\n%s' % (what,
                                                describe_output(proc))
        check_bytes(out, datafs[:t.end], what, proc)
        got = blob_snapshot(blobs) if os.path.isdir(blobs) else {}
        assert sorted(got) == sorted(t.blobs), (
            '%s: blob files\n  missing: %s\n  unexpected: %s'
            % (what, sorted(set(t.blobs) - set(got)),
               sorted(set(got) - set(t.blobs))))
        assert got == t.blobs, '%s: wrong blob bytes' % what
        if t.blobs:
            assert read_layout(blobs) == t.layout, what
            used, _, pos, last, _, contents = open_read(out, blobs)
            assert contents == t.contents, (
                '%s: ZODB reads other blobs' % what)
        else:
            used, _, pos, last, _, _ = open_read(out)
        assert used == 1 and pos == t.end and last == t.tid, what
