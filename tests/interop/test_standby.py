"""Standby and rollback: recover in place into an existing Data.fs (issue 12).

A real ZODB database goes through a full backup, increments, a pack (so a
new full backup starts a second chain) and more increments.  Four
repositories record it: ours and Python's, plain and ``-z``.  A standby
Data.fs is then recovered from them, advanced increment by increment
(``-D`` each backup in turn, then no ``-D``), rolled back to every earlier
date, damaged in the ways the behaviour spec names, and killed with SIGKILL
in the middle of an in-place append.

What is checked is what a user sees:

* exit status 0, FILE's bytes equal to the source Data.fs as it was at the
  target backup (the source truncated to the backup's end);
* FILE's inode unchanged when recovered in place, a new one after a full
  recover (FILE.part renamed over it);
* FILE.index byte-identical to the repository's ``<stem>.index`` of the
  target backup, and ZODB opening FILE read-only with that index, no rescan
  (FileStorage's ``_used_index == 1``), finding the state of that date;
* no ``FILE.recovering`` marker and no ``FILE.part`` after a success;
* under ``-v`` a stderr line starting ``Recovering in place: `` or
  ``Recovering in full: `` (the latter naming FILE) -- checked last, so
  that a failure on it says the rest was right;
* Python repozo 6.4 recovering the same repositories into another file (or
  over the standby) still gives the same bytes and index.

See the spec of the feature (docs, issue 12): the prefix check is the md5
of every .dat range FILE keeps (default), of the last one only (``-Q``);
``-w`` also checks appended files; ``-F`` forces a full recover.
"""
import datetime
import fcntl
import os
import random
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field

import pytest
import transaction
import ZODB
import ZODB.FileStorage
from persistent.mapping import PersistentMapping

from blob_helpers import BlobModel, blob_snapshot, read_layout
from conftest import KINDS, Workdirs, describe_output, fmt_now, read, rs_bin_path, write
from zodb_helpers import Model, read_state

CLOCK_START = datetime.datetime(2024, 7, 1, 22, 0, 5)
CLOCK_STEP = datetime.timedelta(hours=5, minutes=3, seconds=7)

IN_PLACE = 'Recovering in place: '
IN_FULL = 'Recovering in full: '
MARKER = '.recovering'
LOCK_NAME = '.repozo.lock'


def text(b):
    return b.decode('utf-8', 'replace')


def first_diff(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


def flip(data, pos):
    """``data`` with the byte at ``pos`` changed."""
    return data[:pos] + bytes([data[pos] ^ 0xFF]) + data[pos + 1:]


def read_repo(repo):
    """{name: bytes} of a repository's top-level files, less our lock."""
    return {n: read(os.path.join(repo, n)) for n in sorted(os.listdir(repo))
            if n != LOCK_NAME and os.path.isfile(os.path.join(repo, n))}


# ---------------------------------------------------------------------------
# The scenario: one database, four repositories
# ---------------------------------------------------------------------------

def _pack_and_grow(m):
    m.mutate(n_txn=1, n_delete=15)
    m.pack()
    m.mutate(n_txn=2, n_big_add=2)


# name, change; every step is backed up into every repository.
STEPS = [
    ('create', lambda m: m.create(n_items=200, n_big=4)),     # full
    ('mutate', lambda m: m.mutate(n_txn=3)),                  # increment
    ('mutate-big', lambda m: m.mutate(n_txn=2, n_delete=5, n_big_add=3)),
    ('mutate', lambda m: m.mutate(n_txn=2)),
    ('pack', _pack_and_grow),                                 # new full
    ('mutate', lambda m: m.mutate(n_txn=2)),
    ('mutate', lambda m: m.mutate(n_txn=1, n_big_add=1)),
]
PACK_STEP = 4


@dataclass
class Step:
    index: int
    name: str
    now: str                  # the backup's stem, used as -D
    datafs: bytes             # the source Data.fs when it was backed up
    expected: dict            # Model.expected() then
    chain: int = 0            # index of the step whose full backup starts it
    procs: dict = field(default_factory=dict)

    def label(self):
        return 'step %d (%s, %s)' % (self.index, self.name, self.now)


@dataclass
class Scenario(Workdirs):
    base: str
    repos: dict               # kind -> repository path
    steps: list
    final_now: str
    _n: int = 0


    @property
    def newest(self):
        return self.steps[-1]

    def chain_of(self, step):
        return [s for s in self.steps if s.chain == step.chain]


@pytest.fixture(scope='module')
def sc(tools, tmp_path_factory):
    base = str(tmp_path_factory.mktemp('standby'))
    repos = {k: os.path.join(base, 'repo-' + k) for k in KINDS}
    for r in repos.values():
        os.mkdir(r)
    datafs = os.path.join(base, 'Data.fs')
    model = Model(datafs, seed=20240701)
    clock = CLOCK_START
    steps = []
    chain = 0
    for i, (name, change) in enumerate(STEPS):
        change(model)
        now = fmt_now(clock)
        clock += CLOCK_STEP
        if i == PACK_STEP:
            chain = i
        step = Step(i, name, now, read(datafs), model.expected(), chain)
        for kind, (who, opts) in KINDS.items():
            step.procs[kind] = tools[who].run(
                ['-B', '-r', repos[kind], '-f', datafs] + opts, now=now)
        steps.append(step)
    return Scenario(base, repos, steps,
                    fmt_now(clock + datetime.timedelta(days=1)))


# ---------------------------------------------------------------------------
# Running a recover and checking its result
# ---------------------------------------------------------------------------

def recover(tool, repo, out, date=None, extra=(), now=None):
    args = ['-R', '-v', '-r', repo, '-o', out]
    if date is not None:
        args += ['-D', date]
    return tool.run(args + list(extra), now=now or '2030-01-01-00-00-00')


def ino(path):
    return os.stat(path).st_ino


def place_standby(path, repo, step, data=None):
    """Make ``path`` what a full recover of ``step`` left: its bytes (or
    ``data``) and the repository's index of that backup.  Returns the
    inode."""
    for p in (path, path + '.index', path + MARKER, path + '.part'):
        if os.path.lexists(p):
            os.remove(p)
    write(path, step.datafs if data is None else data)
    shutil.copyfile(os.path.join(repo, step.now + '.index'), path + '.index')
    return ino(path)


def lines_with(proc, prefix):
    return [l for l in text(proc.stderr).splitlines() if l.startswith(prefix)]


def check_bytes(out, want, what, proc):
    got = read(out)
    if got != want:
        pytest.fail('%s: FILE has %d bytes, expected %d, first difference at '
                    'offset %d\n%s' % (what, len(got), len(want),
                                       first_diff(got, want),
                                       describe_output(proc)), pytrace=False)


def check_how(proc, out, how, old_ino, what):
    """The inode and the -v line say in place / in full as expected.

    ``how``: 'place'; 'full' (a fallback: its line names FILE); 'forced'
    (-F: its line says so); 'new' (FILE did not exist: no line asked for).
    """
    if how == 'place':
        assert ino(out) == old_ino, (
            '%s: FILE should have been recovered in place (same inode), it '
            'was replaced\n%s' % (what, describe_output(proc)))
    elif old_ino is not None:
        assert ino(out) != old_ino, (
            '%s: expected a full recover (FILE.part renamed: a new inode), '
            'FILE kept its inode\n%s' % (what, describe_output(proc)))
    # The messages last: a failure here means the files were right.
    place, full = lines_with(proc, IN_PLACE), lines_with(proc, IN_FULL)
    if how == 'place':
        assert place and not full, (
            '%s: -v should say %r (and not %r)\n%s'
            % (what, IN_PLACE, IN_FULL, describe_output(proc)))
    elif how == 'full':
        assert full and not place, (
            '%s: -v should say %r (and not %r)\n%s'
            % (what, IN_FULL, IN_PLACE, describe_output(proc)))
        assert any(out in l for l in full), (
            '%s: the %r line should name FILE (%s)\n%s'
            % (what, IN_FULL, out, describe_output(proc)))
    elif how == 'forced':
        assert any('-F given' in l for l in full) and not place, (
            '%s: -v should say "%s-F given"\n%s'
            % (what, IN_FULL, describe_output(proc)))
    else:
        assert not place, '%s: FILE was missing\n%s' % (
            what, describe_output(proc))


def check_recovered(proc, out, repo, step, how, old_ino, what, zodb=True):
    """FILE is ``step``'s Data.fs with its index, recovered ``how``."""
    what = '%s, target %s' % (what, step.label())
    assert proc.returncode == 0, '%s failed\n%s' % (what,
                                                     describe_output(proc))
    check_bytes(out, step.datafs, what, proc)
    want_index = read(os.path.join(repo, step.now + '.index'))
    assert os.path.exists(out + '.index'), (
        '%s: no FILE.index installed\n%s' % (what, describe_output(proc)))
    assert read(out + '.index') == want_index, (
        '%s: FILE.index is not the repository\'s %s.index\n%s'
        % (what, step.now, describe_output(proc)))
    for suffix in (MARKER, '.part'):
        assert not os.path.exists(out + suffix), (
            '%s: FILE%s left behind\n%s' % (what, suffix,
                                             describe_output(proc)))
    if zodb:
        state, used_index = read_state(out)
        assert used_index == 1, (
            '%s: ZODB did not use FILE.index (it rescanned FILE)' % what)
        assert state == step.expected, '%s: ZODB reads another state' % what
    check_how(proc, out, how, old_ino, what)


def expected_how(from_step, to_step):
    """In place when FILE is at a backup of the target's chain."""
    if from_step is None:
        return 'new'
    return 'place' if from_step.chain == to_step.chain else 'full'


# ---------------------------------------------------------------------------
# The scenario itself
# ---------------------------------------------------------------------------

def test_scenario_is_what_it_claims(sc):
    """Every backup worked, full at the start and after the pack, increments
    otherwise, with the same data in all four repositories."""
    for step in sc.steps:
        for kind, proc in step.procs.items():
            assert proc.returncode == 0, '%s backup at %s\n%s' % (
                kind, step.label(), describe_output(proc))
    for kind, repo in sc.repos.items():
        gz = 'z' if KINDS[kind][1] else ''
        names = set(os.listdir(repo)) - {LOCK_NAME}
        want = set()
        for step in sc.steps:
            full = step.index == step.chain
            want.add(step.now + ('.fs' if full else '.deltafs') + gz)
            want.add(step.now + '.index')
            if full:
                want.add(step.now + '.dat')
        assert names == want, '%s repository: %s' % (kind, sorted(names))
        for step in sc.steps:
            if step.index != step.chain:
                continue
            dat = read(os.path.join(repo, step.now + '.dat')).decode()
            ends = [int(l.split()[2]) for l in dat.splitlines()]
            assert ends == [len(s.datafs) for s in sc.chain_of(step)], (
                kind, dat)
    for kind in KINDS:
        assert read_repo(sc.repos[kind]).keys() == read_repo(
            sc.repos['rs' + ('-z' if 'z' in kind else '')]).keys()
    assert len(sc.chain_of(sc.steps[0])) == 4
    assert len(sc.chain_of(sc.newest)) == 3
    pack, before = sc.steps[PACK_STEP], sc.steps[PACK_STEP - 1]
    assert not pack.datafs.startswith(before.datafs[:len(pack.datafs)])


def test_python_recovers_the_same_way(sc, tools):
    """Python repozo 6.4 recovers every repository as before: into a new
    file, and over a standby (it ignores -F and -Q when recovering)."""
    for kind, repo in sc.repos.items():
        for step in (sc.steps[PACK_STEP - 1], sc.newest):
            d = sc.workdir('py-' + kind)
            out = os.path.join(d, 'Data.fs')
            proc = recover(tools['py'], repo, out, date=step.now)
            check_recovered(proc, out, repo, step, 'new', None,
                            'python into a new file from ' + kind)
        # Over a standby at the previous backup, with -F -Q given.
        step = sc.newest
        place_standby(out, repo, sc.steps[step.index - 1])
        proc = recover(tools['py'], repo, out, extra=['-F', '-Q'])
        check_recovered(proc, out, repo, step, 'new', None,
                        'python -F -Q over a standby from ' + kind)


# ---------------------------------------------------------------------------
# Advancing a standby, rolling it back
# ---------------------------------------------------------------------------

ADVANCE_CASES = [
    pytest.param('rs', [], id='rs'),
    pytest.param('rs-z', [], id='rs-z'),
    pytest.param('py', [], id='py'),
    pytest.param('py-z', [], id='py-z'),
    pytest.param('rs', ['-Q'], id='rs-Q'),
    pytest.param('py-z', ['-Q'], id='py-z-Q'),
    pytest.param('rs-z', ['-w'], id='rs-z-w'),
    pytest.param('py', ['-w'], id='py-w'),
]


@pytest.mark.parametrize('kind,opts', ADVANCE_CASES)
def test_advance_increment_by_increment(sc, tools, kind, opts):
    """-D each backup in turn, then no -D: in place along a chain, a full
    recover where the pack started a new one; the repository is not
    touched."""
    repo = sc.repos[kind]
    before = read_repo(repo)
    out = os.path.join(sc.workdir('advance-' + kind), 'Data.fs')
    prev = None
    for step in sc.steps:
        old = ino(out) if prev else None
        proc = recover(tools['rs'], repo, out, date=step.now, extra=opts)
        check_recovered(proc, out, repo, step, expected_how(prev, step), old,
                        'advancing %s %s from %s' % (
                            kind, opts, prev.label() if prev else 'nothing'))
        prev = step
    # No -D: the newest backup, which FILE already is.
    old, mtime = ino(out), os.stat(out).st_mtime_ns
    os.remove(out + '.index')
    proc = recover(tools['rs'], repo, out, extra=opts)
    check_recovered(proc, out, repo, sc.newest, 'place', old,
                    'no -D on an up to date standby %s %s' % (kind, opts))
    assert os.stat(out).st_mtime_ns == mtime, (
        'FILE was already the target: nothing should be written to it')
    assert read_repo(repo) == before, 'recovering changed the repository'
    # Python recovers the same repository into another file the same way.
    other = os.path.join(sc.workdir('py-' + kind), 'Data.fs')
    proc = recover(tools['py'], repo, other)
    assert proc.returncode == 0, describe_output(proc)
    assert read(other) == read(out)
    assert read(other + '.index') == read(out + '.index')


ROLLBACK_CASES = [
    pytest.param('rs', [], id='rs'),
    pytest.param('rs-z', [], id='rs-z'),
    pytest.param('py', [], id='py'),
    pytest.param('py-z', [], id='py-z'),
    pytest.param('rs-z', ['-Q'], id='rs-z-Q'),
    pytest.param('py', ['-w'], id='py-w'),
]


@pytest.mark.parametrize('kind,opts', ROLLBACK_CASES)
def test_rollback_to_every_earlier_date(sc, tools, kind, opts):
    """From the newest backup, -D every earlier one: truncated in place
    within the newest chain, a full recover before the pack; then no -D
    brings the standby forward again."""
    repo = sc.repos[kind]
    out = os.path.join(sc.workdir('rollback-' + kind), 'Data.fs')
    for step in reversed(sc.steps[:-1]):
        old = place_standby(out, repo, sc.newest)
        proc = recover(tools['rs'], repo, out, date=step.now, extra=opts)
        how = expected_how(sc.newest, step)
        check_recovered(proc, out, repo, step, how, old,
                        'rolling %s %s back from the newest' % (kind, opts))
        old = ino(out)
        proc = recover(tools['rs'], repo, out, extra=opts)
        check_recovered(proc, out, repo, sc.newest, how, old,
                        'forward again %s %s from %s' % (kind, opts,
                                                         step.label()))


def test_rollback_step_by_step(sc, tools):
    """Back one backup at a time from the newest, down to the first."""
    repo = sc.repos['py-z']
    out = os.path.join(sc.workdir('stepwise'), 'Data.fs')
    place_standby(out, repo, sc.newest)
    prev = sc.newest
    for step in reversed(sc.steps[:-1]):
        old = ino(out)
        proc = recover(tools['rs'], repo, out, date=step.now)
        check_recovered(proc, out, repo, step, expected_how(prev, step), old,
                        'one back from %s' % prev.label())
        prev = step


def test_force_full(sc, tools):
    """-F always recovers in full (a new inode), also when FILE is already
    the target."""
    repo = sc.repos['rs']
    out = os.path.join(sc.workdir('force'), 'Data.fs')
    old = place_standby(out, repo, sc.steps[1])
    proc = recover(tools['rs'], repo, out, date=sc.steps[2].now, extra=['-F'])
    check_recovered(proc, out, repo, sc.steps[2], 'forced', old, '-F append')
    old = ino(out)
    proc = recover(tools['rs'], repo, out, date=sc.steps[2].now,
                   extra=['-F', '-Q'])
    check_recovered(proc, out, repo, sc.steps[2], 'forced', old,
                    '-F -Q on an up to date standby')
    old = ino(out)
    proc = recover(tools['rs'], repo, out, date=sc.steps[1].now, extra=['-F'])
    check_recovered(proc, out, repo, sc.steps[1], 'forced', old,
                    '-F rollback')


@pytest.mark.parametrize('kind', ['rs', 'py-z'])
def test_pack_in_source_makes_next_recover_full(sc, tools, kind):
    """A standby at the last backup before the pack: the newest backup is a
    new full one (another chain), so the next recover is a full one; the
    one after it is in place again."""
    repo = sc.repos[kind]
    out = os.path.join(sc.workdir('pack-' + kind), 'Data.fs')
    old = place_standby(out, repo, sc.steps[PACK_STEP - 1])
    proc = recover(tools['rs'], repo, out, date=sc.steps[PACK_STEP + 1].now)
    check_recovered(proc, out, repo, sc.steps[PACK_STEP + 1], 'full', old,
                    'recover across the pack')
    old = ino(out)
    proc = recover(tools['rs'], repo, out)
    check_recovered(proc, out, repo, sc.newest, 'place', old,
                    'the increment after')


# ---------------------------------------------------------------------------
# A standby that is not (quite) a prefix of the chain
# ---------------------------------------------------------------------------

def ranges(sc):
    """[(start, end)] of the first chain's backups (steps 0..3)."""
    out, start = [], 0
    for step in sc.chain_of(sc.steps[0]):
        out.append((start, len(step.datafs)))
        start = len(step.datafs)
    return out


def mid(r):
    return (r[0] + r[1]) // 2


FLIP_CASES = [
    # id, FILE at step, byte flipped in range, target step, options,
    # expected: 'full' or 'place' (keeping the flipped byte) or 'exact'
    # (in place, the flipped byte truncated away).
    ('append-early-default', 2, 0, 3, [], 'full'),
    ('append-early-w', 2, 0, 3, ['-w'], 'full'),
    ('append-early-Q', 2, 0, 3, ['-Q'], 'place'),
    ('append-last-Q', 2, 2, 3, ['-Q'], 'full'),
    ('append-last-default', 2, 2, 3, [], 'full'),
    ('rollback-early-default', 3, 1, 2, [], 'full'),
    ('rollback-early-Q', 3, 1, 2, ['-Q'], 'place'),
    ('rollback-last-Q', 3, 2, 2, ['-Q'], 'full'),
    ('rollback-cut-away', 3, 3, 1, [], 'exact'),
    ('equal-early-default', 3, 0, 3, [], 'full'),
    ('equal-early-Q', 3, 0, 3, ['-Q'], 'place'),
    ('equal-last-Q', 3, 3, 3, ['-Q'], 'full'),
]


@pytest.mark.parametrize('kind', ['rs', 'py-z'])
@pytest.mark.parametrize('case', FLIP_CASES, ids=[c[0] for c in FLIP_CASES])
def test_one_byte_changed_in_the_prefix(sc, tools, kind, case):
    """Default mode checks every range FILE keeps: any changed byte makes it
    a full recover.  -Q checks only the last range: a byte changed before it
    stays in FILE (the documented weakness of -Q), one inside it makes it a
    full recover.  A byte in a range a rollback cuts away does not matter."""
    name, at, rng_i, target_i, opts, expect = case
    repo = sc.repos[kind]
    out = os.path.join(sc.workdir('flip-' + name), 'Data.fs')
    pos = mid(ranges(sc)[rng_i])
    old = place_standby(out, repo, sc.steps[at],
                        flip(sc.steps[at].datafs, pos))
    target = sc.steps[target_i]
    proc = recover(tools['rs'], repo, out, date=target.now, extra=opts)
    what = '%s %s: byte %d changed, FILE at %s' % (name, kind, pos,
                                                  sc.steps[at].label())
    if expect in ('full', 'exact'):
        check_recovered(proc, out, repo, target,
                        'full' if expect == 'full' else 'place', old, what)
        return
    # In place with -Q: the changed byte is still there, the rest is the
    # target's, and the target's index is installed.
    assert proc.returncode == 0, describe_output(proc)
    check_bytes(out, flip(target.datafs, pos), what, proc)
    assert read(out + '.index') == read(
        os.path.join(repo, target.now + '.index')), what
    assert not os.path.exists(out + MARKER), what
    check_how(proc, out, 'place', old, what)


CUT_CASES = [
    # id, FILE content, target step
    ('inside-an-increment',
     lambda s: s[3].datafs[:len(s[2].datafs) + 1000], 3),
    ('inside-the-full', lambda s: s[0].datafs[:len(s[0].datafs) // 2], 1),
    ('empty', lambda s: b'', 1),
    ('longer-than-the-chain', lambda s: s[3].datafs + b'\0' * 100, 3),
    ('rollback-from-inside', lambda s: s[6].datafs[:len(s[6].datafs) - 50], 5),
    ('other-chain-length', lambda s: s[PACK_STEP - 1].datafs, 5),
]


@pytest.mark.parametrize('case', CUT_CASES, ids=[c[0] for c in CUT_CASES])
def test_cut_at_a_non_boundary_length(sc, tools, case):
    """FILE's length is not the end of any backup of the chain (and there
    is no marker of a killed run): a full recover."""
    name, content, target_i = case
    repo = sc.repos['rs-z']
    out = os.path.join(sc.workdir('cut-' + name), 'Data.fs')
    data = content(sc.steps)
    target = sc.steps[target_i]
    ends = {len(s.datafs) for s in sc.chain_of(target)}
    assert len(data) not in ends, 'the test case is not what it claims'
    old = place_standby(out, repo, sc.steps[0], data)
    proc = recover(tools['rs'], repo, out, date=target.now)
    check_recovered(proc, out, repo, target, 'full', old, 'FILE ' + name)


def test_stale_or_missing_index_on_an_up_to_date_standby(sc, tools):
    """FILE already the target: only FILE.index is put right."""
    repo = sc.repos['py']
    out = os.path.join(sc.workdir('index'), 'Data.fs')
    target = sc.steps[2]
    for damage in ('missing', 'stale', 'junk'):
        old = place_standby(out, repo, target)
        if damage == 'missing':
            os.remove(out + '.index')
        elif damage == 'stale':
            shutil.copyfile(os.path.join(repo, sc.steps[1].now + '.index'),
                            out + '.index')
        else:
            write(out + '.index', b'junk' * 100)
        proc = recover(tools['rs'], repo, out, date=target.now)
        check_recovered(proc, out, repo, target, 'place', old,
                        'up to date standby, index ' + damage)


def test_second_hard_link_makes_it_full(sc, tools):
    """FILE with another hard link: a full recover; the other name keeps the
    old file, untouched."""
    repo = sc.repos['rs']
    d = sc.workdir('hardlink')
    out = os.path.join(d, 'Data.fs')
    other = os.path.join(d, 'other-name.fs')
    for start, target in ((1, 2), (2, 1)):     # an append, a rollback
        if os.path.exists(other):
            os.remove(other)
        old = place_standby(out, repo, sc.steps[start])
        os.link(out, other)
        proc = recover(tools['rs'], repo, out, date=sc.steps[target].now)
        check_recovered(proc, out, repo, sc.steps[target], 'full', old,
                        'FILE with a second hard link')
        assert ino(other) == old and os.stat(other).st_nlink == 1
        assert read(other) == sc.steps[start].datafs, (
            'the other hard link was changed')


def test_locked_file_is_refused(sc, tools):
    """FILE.lock locked (as by a running ZODB, or another recovery): FILE
    is neither changed in place nor replaced, with -F too; exit 1 naming
    the lock.  A FILE.lock that nobody holds does not matter."""
    repo = sc.repos['py-z']
    out = os.path.join(sc.workdir('lock'), 'Data.fs')
    old = place_standby(out, repo, sc.steps[1])
    with open(out + '.lock', 'a+') as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        for extra in ((), ('-F',)):
            proc = recover(tools['rs'], repo, out, date=sc.steps[2].now,
                           extra=extra)
            assert proc.returncode == 1, describe_output(proc)
            assert text(proc.stderr).strip().endswith(
                out + '.lock is locked: a running ZODB (or another recovery)'
                ' has it open; stop it first'), describe_output(proc)
            assert ino(out) == old
            assert read(out) == sc.steps[1].datafs
    proc = recover(tools['rs'], repo, out, date=sc.steps[3].now)
    check_recovered(proc, out, repo, sc.steps[3], 'place', old,
                    'FILE.lock present, not held')


def test_a_reader_makes_it_full(sc, tools):
    """A read-only FileStorage takes no lock: with FILE open elsewhere,
    the recovery is a full one, and the reader keeps reading its file."""
    repo = sc.repos['rs']
    out = os.path.join(sc.workdir('reader'), 'Data.fs')
    old = place_standby(out, repo, sc.steps[1])
    with open(out, 'rb') as reader:
        proc = recover(tools['rs'], repo, out, date=sc.steps[3].now)
        check_recovered(proc, out, repo, sc.steps[3], 'full', old,
                        'FILE open in another process')
        assert reader.read() == sc.steps[1].datafs


def test_no_dat_log_makes_it_full(sc, tools):
    """Without the chain's .dat there are no boundaries: a full recover,
    the same bytes as Python's."""
    repo = sc.copy_repo('rs')
    os.remove(os.path.join(repo, sc.steps[PACK_STEP].now + '.dat'))
    out = os.path.join(sc.workdir('nodat'), 'Data.fs')
    old = place_standby(out, repo, sc.steps[PACK_STEP])
    proc = recover(tools['rs'], repo, out)
    check_recovered(proc, out, repo, sc.newest, 'full', old, 'no .dat')
    other = os.path.join(sc.workdir('nodat-py'), 'Data.fs')
    proc = recover(tools['py'], repo, other)
    assert proc.returncode == 0, describe_output(proc)
    assert read(other) == read(out)


def test_file_not_writable_makes_it_full(sc, tools):
    """FILE cannot be opened for writing (read-only, the run not root) but
    its directory is writable: a full recover replaces it."""
    if not shutil.which('setpriv') or os.getuid() != 0:
        pytest.skip('needs root and setpriv to run repozo as another user')
    base = os.path.join('/tmp', 'standby-ro-%d' % os.getpid())
    shutil.rmtree(base, ignore_errors=True)
    os.makedirs(base)
    try:
        os.chmod(base, 0o755)
        repo = os.path.join(base, 'repo')
        shutil.copytree(sc.repos['rs'], repo)
        for dirpath, _, files in os.walk(repo):
            os.chmod(dirpath, 0o777)
            for f in files:
                os.chmod(os.path.join(dirpath, f), 0o644)
        d = os.path.join(base, 'standby')
        os.makedirs(d)
        os.chmod(d, 0o777)
        out = os.path.join(d, 'Data.fs')
        old = place_standby(out, repo, sc.steps[1])
        os.chmod(out, 0o444)
        os.chmod(out + '.index', 0o666)
        tool = type(tools['rs'])('rust-as-nobody', [
            'setpriv', '--reuid=65534', '--regid=65534', '--clear-groups',
            str(rs_bin_path())])
        proc = recover(tool, repo, out, date=sc.steps[2].now)
        check_recovered(proc, out, repo, sc.steps[2], 'full', old,
                        'read-only FILE')
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize('kind,opts', [('rs-z', []), ('py', ['-w'])],
                         ids=['corrupt-deltafsz', 'w-mismatch'])
def test_error_while_appending_puts_file_back(sc, tools, kind, opts):
    """The second of two increments to append is damaged (a gzip error; an
    md5 mismatch with -w): exit 1 and FILE is back where it was, the first
    increment's bytes gone.  With the repository repaired, the same command
    then recovers in place."""
    repo = sc.copy_repo(kind)
    start, target = sc.steps[1], sc.steps[3]
    name = [n for n in os.listdir(repo) if n.startswith(target.now + '.delta')]
    assert len(name) == 1, name
    damaged = os.path.join(repo, name[0])
    good = read(damaged)
    write(damaged, flip(good, len(good) // 2))
    out = os.path.join(sc.workdir('error-' + kind), 'Data.fs')
    old = place_standby(out, repo, start)
    proc = recover(tools['rs'], repo, out, date=target.now, extra=opts)
    what = 'appending a damaged %s %s' % (name[0], opts)
    assert proc.returncode == 1, '%s: expected exit 1\n%s' % (
        what, describe_output(proc))
    check_bytes(out, start.datafs, what, proc)
    assert ino(out) == old, '%s: FILE was replaced' % what
    write(damaged, good)
    proc = recover(tools['rs'], repo, out, date=target.now, extra=opts)
    check_recovered(proc, out, repo, target, 'place', old,
                    'the same command once %s is repaired' % name[0])


# ---------------------------------------------------------------------------
# SIGKILL in the middle of an in-place append
# ---------------------------------------------------------------------------

BIG_KINDS = {'rs': ('rs', []), 'py-z': ('py', ['-z'])}
BIG_CHUNK = 128 * 1024
KILL_ROUNDS = 8
KILL_SEED = 1212


def commit_big(path, rng, tag, n_txn, per_txn):
    """``n_txn`` transactions of ``per_txn`` random chunks of BIG_CHUNK."""
    db = ZODB.DB(ZODB.FileStorage.FileStorage(path))
    try:
        for t in range(n_txn):
            with db.transaction('%s %d' % (tag, t)) as conn:
                root = conn.root()
                root['%s-%d' % (tag, t)] = PersistentMapping(
                    {'c%d' % i: rng.randbytes(BIG_CHUNK)
                     for i in range(per_txn)})
    finally:
        db.close()
    transaction.abort()


def root_keys(path):
    """(sorted root keys, used_index) of a FileStorage opened read-only."""
    storage = ZODB.FileStorage.FileStorage(path, read_only=True)
    used = storage._used_index
    db = ZODB.DB(storage)
    try:
        conn = db.open(transaction_manager=transaction.TransactionManager())
        try:
            return sorted(conn.root().keys()), used
        finally:
            conn.close()
    finally:
        db.close()


@pytest.fixture(scope='module')
def big(tools, tmp_path_factory):
    """A database with a ~1 MB full backup and three ~4 MB increments."""
    base = str(tmp_path_factory.mktemp('standby-big'))
    datafs = os.path.join(base, 'Data.fs')
    rng = random.Random(KILL_SEED)
    repos = {k: os.path.join(base, 'repo-' + k) for k in BIG_KINDS}
    for r in repos.values():
        os.mkdir(r)
    clock = CLOCK_START
    steps = []
    for i in range(4):
        if i == 0:
            commit_big(datafs, rng, 'full', 1, 8)
        else:
            commit_big(datafs, rng, 'inc%d' % i, 4, 8)
        now = fmt_now(clock)
        clock += CLOCK_STEP
        step = Step(i, 'big', now, read(datafs), {}, 0)
        step.expected = root_keys(datafs)[0]
        for kind, (who, opts) in BIG_KINDS.items():
            step.procs[kind] = tools[who].run(
                ['-B', '-r', repos[kind], '-f', datafs] + opts, now=now)
            assert step.procs[kind].returncode == 0, describe_output(
                step.procs[kind])
        steps.append(step)
    assert len(steps[-1].datafs) - len(steps[0].datafs) > 12_000_000
    return Scenario(base, repos, steps, fmt_now(clock))


def popen_recover(repo, out):
    env = dict(os.environ, REPOZO_TEST_NOW='2030-01-01-00-00-00')
    return subprocess.Popen([str(rs_bin_path()), '-R', '-v', '-r', repo,
                             '-o', out], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


@pytest.mark.parametrize('kind', list(BIG_KINDS))
def test_sigkill_during_in_place_append_then_rerun(big, tools, kind):
    """Kill an in-place append (12 MB from the full backup or 8 MB from the
    first increment) once to three times at random moments, then run the
    same command again: FILE is exactly the newest backup, with its index,
    in place, no marker left.  While killed, FILE without a marker is either
    untouched or complete."""
    repo = big.repos[kind]
    target = big.newest
    out = os.path.join(big.workdir('kill-' + kind), 'Data.fs')
    want_index = read(os.path.join(repo, target.now + '.index'))

    # An uninterrupted run first: it must work, and it sets the time scale.
    old = place_standby(out, repo, big.steps[0])
    t0 = time.monotonic()
    proc = recover(tools['rs'], repo, out)
    duration = time.monotonic() - t0
    assert proc.returncode == 0, describe_output(proc)
    check_bytes(out, target.datafs, 'uninterrupted append', proc)
    check_how(proc, out, 'place', old, 'uninterrupted append')

    rng = random.Random(KILL_SEED)
    killed_with_marker = 0
    for rnd in range(KILL_ROUNDS):
        start = big.steps[rng.choice((0, 1))]
        old = place_standby(out, repo, start)
        kills = rng.randint(1, 3)
        for k in range(kills):
            delay = rng.uniform(0.0, duration * 1.2)
            p = popen_recover(repo, out)
            time.sleep(delay)
            p.send_signal(signal.SIGKILL)
            p.communicate()
            what = 'round %d kill %d after %.3fs (from %s)' % (
                rnd, k, delay, start.label())
            data = read(out)
            assert ino(out) == old, '%s: FILE was replaced' % what
            assert data[:len(start.datafs)] == start.datafs, (
                '%s: the bytes FILE had were changed' % what)
            if os.path.exists(out + MARKER):
                killed_with_marker += 1
            else:
                assert data in (start.datafs, target.datafs), (
                    '%s: FILE changed (%d bytes) but no %s marker'
                    % (what, len(data), MARKER))
        proc = recover(tools['rs'], repo, out)
        what = 'round %d: rerun after %d kill(s)' % (rnd, kills)
        assert proc.returncode == 0, '%s\n%s' % (what, describe_output(proc))
        check_bytes(out, target.datafs, what, proc)
        assert read(out + '.index') == want_index, what
        assert not os.path.exists(out + MARKER), what
        keys, used = root_keys(out)
        assert keys == target.expected and used == 1, what
        check_how(proc, out, 'place', old, what)
    # A killed run, then a run for another date: still the exact state.
    for rnd in range(3):
        old = place_standby(out, repo, big.steps[0])
        p = popen_recover(repo, out)
        time.sleep(rng.uniform(0.0, duration))
        p.send_signal(signal.SIGKILL)
        p.communicate()
        if os.path.exists(out + MARKER):
            killed_with_marker += 1
        step = big.steps[rng.choice((1, 2))]
        proc = recover(tools['rs'], repo, out, date=step.now)
        what = 'killed, then -D %s' % step.label()
        assert proc.returncode == 0, '%s\n%s' % (what, describe_output(proc))
        check_bytes(out, step.datafs, what, proc)
        assert read(out + '.index') == read(
            os.path.join(repo, step.now + '.index')), what
        assert not os.path.exists(out + MARKER), what
        check_how(proc, out, 'place', old, what)
    print('%s: %d of the kills left a marker (run takes %.2fs)'
          % (kind, killed_with_marker, duration))


# ---------------------------------------------------------------------------
# A standby with a blob directory
# ---------------------------------------------------------------------------

def _blob_create(m):
    m.add(5, sizes=(0, 200 * 1024))
    m.add(3)


def _blob_more(m):
    m.add(3)
    m.change(2)


def _blob_change(m):
    m.change(1)
    m.plain()


def _blob_pack(m):
    m.delete(2)
    m.pack()
    m.add(1)


def _blob_after(m):
    m.add(2)
    m.change(1)


BLOB_STEPS = [
    ('create', _blob_create, []),           # full
    ('more', _blob_more, []),
    ('change', _blob_change, ['-z']),
    ('pack', _blob_pack, []),               # full (new chain)
    ('after-pack', _blob_after, ['-z']),
    ('final', lambda m: m.add(1), []),
]


@dataclass
class BlobStep(Step):
    blobs: dict = field(default_factory=dict)    # live snapshot
    layout: str = None


@pytest.fixture(scope='module')
def blob_sc(tools, tmp_path_factory):
    base = str(tmp_path_factory.mktemp('standby-blobs'))
    live = os.path.join(base, 'live')
    repo = os.path.join(base, 'repo')
    os.makedirs(live)
    os.makedirs(repo)
    model = BlobModel(live, seed=20240702)
    clock = CLOCK_START
    steps = []
    chain = 0
    for i, (name, change, opts) in enumerate(BLOB_STEPS):
        change(model)
        now = fmt_now(clock)
        clock += CLOCK_STEP
        if name == 'pack':
            chain = i
        step = BlobStep(i, name, now, read(model.path),
                        dict(model.contents), chain,
                        blobs=blob_snapshot(model.blob_dir),
                        layout=read_layout(model.blob_dir))
        step.procs['rs'] = tools['rs'].run(
            ['-B', '-r', repo, '-f', model.path, '--blob-dir',
             model.blob_dir] + opts, now=now)
        assert step.procs['rs'].returncode == 0, describe_output(
            step.procs['rs'])
        steps.append(step)
    model.close()
    sc = Scenario(base, {'rs': repo}, steps, fmt_now(clock))
    kinds = ['.fs' if s.index == s.chain else '.deltafs' for s in steps]
    assert [n for n in sorted(os.listdir(repo))
            if n.endswith(('.fs', '.deltafs', '.fsz', '.deltafsz'))] == [
        s.now + k + ('z' if '-z' in BLOB_STEPS[s.index][2] else '')
        for s, k in zip(steps, kinds)]
    return sc


def blob_inodes(blob_dir):
    out = {}
    for rel in blob_snapshot(blob_dir):
        out[rel] = ino(os.path.join(blob_dir, *rel.split('/')))
    return out


def check_blob_standby(proc, out, blobs, repo, step, how, old_ino,
                       old_blob_inos, what):
    what = '%s, target %s' % (what, step.label())
    check_recovered(proc, out, repo, step, how, old_ino, what, zodb=False)
    got = blob_snapshot(blobs)
    assert sorted(got) == sorted(step.blobs), (
        '%s: blob files\n  missing: %s\n  unexpected: %s\n%s'
        % (what, sorted(set(step.blobs) - set(got)),
           sorted(set(got) - set(step.blobs)), describe_output(proc)))
    wrong = [p for p in got if got[p] != step.blobs[p]]
    assert not wrong, '%s: wrong bytes in %s' % (what, wrong)
    assert read_layout(blobs) == step.layout, what
    if how == 'place':
        inos = blob_inodes(blobs)
        replaced = [p for p in old_blob_inos
                    if p in inos and inos[p] != old_blob_inos[p]]
        assert not replaced, (
            '%s: in place, blob files that stay should be left alone; '
            'replaced: %s' % (what, replaced))
    # ZODB opens it with the index and reads every blob.
    storage = ZODB.FileStorage.FileStorage(out, blob_dir=blobs,
                                           read_only=True)
    assert storage._used_index == 1, '%s: ZODB rescanned FILE' % what
    db = ZODB.DB(storage)
    try:
        conn = db.open(transaction_manager=transaction.TransactionManager())
        try:
            got = {}
            for key, holder in conn.root()['files'].items():
                with holder['blob'].open('r') as f:
                    got[key] = f.read()
        finally:
            conn.close()
    finally:
        db.close()
    assert got == step.expected, '%s: ZODB reads other blobs' % what


def test_blob_standby_advanced_and_rolled_back(blob_sc, tools):
    """Data.fs and its blob directory advanced in place backup by backup,
    then rolled back to every earlier date; ZODB's tmp/ is left alone."""
    repo = blob_sc.repos['rs']
    d = blob_sc.workdir('blobs')
    out = os.path.join(d, 'Data.fs')
    blobs = os.path.join(d, 'blobs')
    rs = tools['rs']

    def run(date=None, extra=()):
        args = ['--blob-dir', blobs] + list(extra)
        return recover(rs, repo, out, date=date, extra=args)

    prev = None
    for step in blob_sc.steps:
        old = ino(out) if prev else None
        old_blobs = blob_inodes(blobs) if prev else {}
        tmp_file = os.path.join(blobs, 'tmp', 'zodb-working-file')
        if prev:
            os.makedirs(os.path.dirname(tmp_file), exist_ok=True)
            write(tmp_file, b'ZODB is writing this')
        how = expected_how(prev, step)
        proc = run(step.now)
        check_blob_standby(proc, out, blobs, repo, step, how, old, old_blobs,
                           'advancing with blobs from %s'
                           % (prev.label() if prev else 'nothing'))
        if how == 'place':
            assert read(tmp_file) == b'ZODB is writing this', (
                'tmp/ at the top of the blob directory was touched')
        prev = step
    newest = blob_sc.newest
    for step in reversed(blob_sc.steps[:-1]):
        # Back to the newest first (a full recover when we left the chain).
        old = ino(out)
        proc = run()
        check_blob_standby(proc, out, blobs, repo, newest,
                           expected_how(prev, newest), old,
                           blob_inodes(blobs), 'forward again with blobs')
        old, old_blobs = ino(out), blob_inodes(blobs)
        proc = run(step.now)
        check_blob_standby(proc, out, blobs, repo, step,
                           expected_how(newest, step), old, old_blobs,
                           'rolling back with blobs')
        prev = step


def test_blob_directory_damaged_makes_it_full(blob_sc, tools):
    """A blob file missing or changed, or an unknown .blob file: a full
    recover of both Data.fs and the blob directory."""
    repo = blob_sc.repos['rs']
    start, target = blob_sc.steps[1], blob_sc.steps[2]
    rs = tools['rs']
    for damage in ('missing', 'changed', 'unknown'):
        d = blob_sc.workdir('blobs-' + damage)
        out = os.path.join(d, 'Data.fs')
        blobs = os.path.join(d, 'blobs')
        proc = recover(rs, repo, out, date=start.now,
                       extra=['--blob-dir', blobs])
        assert proc.returncode == 0, describe_output(proc)
        rel = sorted(p for p, b in start.blobs.items() if len(b) > 100)[0]
        path = os.path.join(blobs, *rel.split('/'))
        if damage == 'missing':
            os.remove(path)
        elif damage == 'changed':
            data = read(path)
            os.chmod(path, 0o644)
            write(path, flip(data, len(data) // 2))
            os.chmod(path, 0o444)
        else:
            write(os.path.join(os.path.dirname(path),
                               '0x7fffffffffffffff.blob'),
                  b'who put this here')
        old = ino(out)
        proc = recover(rs, repo, out, date=target.now,
                       extra=['--blob-dir', blobs])
        check_blob_standby(proc, out, blobs, repo, target, 'full', old, {},
                           'blob directory with a blob file ' + damage)
