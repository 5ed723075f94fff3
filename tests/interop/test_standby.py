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
import os
import shutil
from dataclasses import dataclass, field

import pytest

from conftest import describe_output
from zodb_helpers import Model, read_state

CLOCK_START = datetime.datetime(2024, 7, 1, 22, 0, 5)
CLOCK_STEP = datetime.timedelta(hours=5, minutes=3, seconds=7)

IN_PLACE = 'Recovering in place: '
IN_FULL = 'Recovering in full: '
MARKER = '.recovering'
LOCK_NAME = '.repozo.lock'

# kind -> (tool that makes the backups, backup options)
KINDS = {
    'rs': ('rs', []),
    'rs-z': ('rs', ['-z']),
    'py': ('py', []),
    'py-z': ('py', ['-z']),
}


def fmt_now(t):
    return t.strftime('%Y-%m-%d-%H-%M-%S')


def read(path):
    with open(path, 'rb') as f:
        return f.read()


def write(path, data):
    with open(path, 'wb') as f:
        f.write(data)


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
class Scenario:
    base: str
    repos: dict               # kind -> repository path
    steps: list
    final_now: str
    _n: int = 0

    def workdir(self, name):
        """A new empty directory for one standby."""
        self._n += 1
        d = os.path.join(self.base, 'work', '%03d-%s' % (self._n, name))
        os.makedirs(d)
        return d

    def copy_repo(self, kind):
        self._n += 1
        dest = os.path.join(self.base, 'copies', '%03d-%s' % (self._n, kind))
        shutil.copytree(self.repos[kind], dest)
        return dest

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
