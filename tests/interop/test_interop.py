"""Interop tests: our repozo against ZODB's repozo on real ZODB databases.

Every test works on real files in a temporary directory: ZODB writes the
Data.fs, both tools back it up / recover it / verify it, and the results are
compared byte for byte (or meaning for meaning where Python's output holds
paths).  See conftest.py for how the two tools are found and run.
"""
import datetime
import gzip
import os
import re
import shutil
import subprocess
import zlib
from dataclasses import dataclass, field

import pytest

from conftest import REPO_ROOT, describe_output, rs_bin_path
from zodb_helpers import Model, read_state

# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------

DATA_RE = re.compile(r'^\d{4}(?:-\d\d){5}\.(?:delta)?fsz?$')
FULL_EXTS = ('.fs', '.fsz')
DELTA_EXTS = ('.deltafs', '.deltafsz')

# The scenario clock starts shortly before midnight so that the backups span
# a change of day (this makes date-only -D values interesting).
CLOCK_START = datetime.datetime(2024, 5, 6, 23, 57, 9)
CLOCK_STEP = datetime.timedelta(minutes=1, seconds=11)


def fmt_now(t):
    return t.strftime('%Y-%m-%d-%H-%M-%S')


# Our repozo's lock file (docs/reliability.md); Python repozo has none.
LOCK_NAME = '.repozo.lock'


def listdir(path):
    """The entries of a repository, less our lock file."""
    return sorted(n for n in os.listdir(path) if n != LOCK_NAME)


def read_repo(path):
    """{file name: bytes} for every entry of a repository directory."""
    out = {}
    for entry in listdir(path):
        full = os.path.join(path, entry)
        if os.path.isdir(full):
            out[entry + '/'] = b''
        else:
            with open(full, 'rb') as f:
                out[entry] = f.read()
    return out


def ext_of(name):
    return os.path.splitext(name)[1]


def data_files(files):
    return sorted(n for n in files if DATA_RE.match(n))


def gunzip(blob):
    return gzip.decompress(blob)


def text(b):
    return b.decode('utf-8', 'replace')


def last_line(b):
    lines = [l for l in text(b).splitlines() if l.strip()]
    return lines[-1].strip() if lines else ''


def compare_dat(py_blob, rs_blob):
    """Differences between two .dat files, comparing file names by basename."""
    diffs = []
    py_lines = text(py_blob).splitlines()
    rs_lines = text(rs_blob).splitlines()
    if rs_blob and not rs_blob.endswith(b'\n'):
        diffs.append('does not end with a newline (Python repozo appends '
                     'lines to it)')
    if len(py_lines) != len(rs_lines):
        diffs.append('has %d lines, python has %d:\n  py: %r\n  rs: %r'
                     % (len(rs_lines), len(py_lines), py_lines, rs_lines))
        return diffs
    for i, (pl, rl) in enumerate(zip(py_lines, rs_lines)):
        pf, rf = pl.split(), rl.split()
        if len(rf) != 4:
            diffs.append('line %d has %d fields, want 4: %r' % (i + 1, len(rf), rl))
            continue
        pf = [os.path.basename(pf[0])] + pf[1:]
        rf = [os.path.basename(rf[0])] + rf[1:]
        if pf != rf:
            diffs.append('line %d differs (basename, start, end, md5):\n'
                         '  py: %r\n  rs: %r' % (i + 1, pl, rl))
    return diffs


def compare_repos(py_files, rs_files):
    """List of human readable differences between two repositories."""
    diffs = []
    py_names, rs_names = set(py_files), set(rs_files)
    if py_names != rs_names:
        diffs.append('file names differ:\n  only python: %s\n  only ours:   %s'
                     % (sorted(py_names - rs_names) or '-',
                        sorted(rs_names - py_names) or '-'))
    for name in sorted(py_names & rs_names):
        p, r = py_files[name], rs_files[name]
        ext = ext_of(name)
        if ext in ('.fsz', '.deltafsz'):
            try:
                r_data = gunzip(r)
            except (OSError, EOFError, zlib.error) as e:
                diffs.append('%s: ours is not a valid gzip file: %s' % (name, e))
                continue
            p_data = gunzip(p)
            if p_data != r_data:
                diffs.append('%s: uncompressed data differs (python %d bytes, '
                             'ours %d bytes)' % (name, len(p_data), len(r_data)))
        elif ext == '.dat':
            diffs.extend('%s: %s' % (name, d) for d in compare_dat(p, r))
        elif p != r:
            diffs.append('%s: bytes differ (python %d bytes, ours %d bytes%s)'
                         % (name, len(p), len(r),
                            ', first difference at offset %d' % first_diff(p, r)))
    return diffs


def first_diff(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


def assert_same_bytes(actual, expected, what, proc=None):
    if actual == expected:
        return
    msg = '%s: %d bytes, expected %d bytes, first difference at offset %d' % (
        what, len(actual), len(expected), first_diff(actual, expected))
    if proc is not None:
        msg += '\n' + describe_output(proc)
    pytest.fail(msg, pytrace=False)


def assert_ok(proc, what):
    assert proc.returncode == 0, '%s failed\n%s' % (what, describe_output(proc))


def assert_error_like_python(rs, py, what, key=None, name=None):
    """Both exit 1; ours prints Python's message (and ``key``/``name``)."""
    assert py.returncode == 1, ('python repozo was expected to fail: %s\n%s'
                                % (what, describe_output(py)))
    assert rs.returncode == 1, ('ours should exit 1 like python: %s\n%s\n%s'
                                % (what, describe_output(rs),
                                   describe_output(py)))
    py_msg = last_line(py.stderr)
    rs_err = text(rs.stderr)
    assert py_msg in rs_err, ('ours should print python\'s message %r: %s\n%s'
                              % (py_msg, what, describe_output(rs)))
    if key is not None:
        assert key in rs_err, '%r missing from stderr: %s\n%s' % (
            key, what, describe_output(rs))
    if name is not None:
        assert name in rs_err, '%r missing from stderr: %s\n%s' % (
            name, what, describe_output(rs))


def test_binary_under_test_exists():
    """Fails (not skips) with a clear message when the binary is missing."""
    path = rs_bin_path()
    assert path.is_file() and os.access(path, os.X_OK), (
        'repozo binary under test not found or not executable: %s; build it '
        'with `cargo build` or set REPOZO_BIN' % path)


# ---------------------------------------------------------------------------
# Scenario 1: the same sequence of database changes and backups, both tools
# ---------------------------------------------------------------------------

def _pack_shrink(m):
    # Modify and delete a lot, then pack: the file ends up smaller than what
    # the repository holds, so the next backup must be a full one.
    m.mutate(n_delete=20, n_big_modify=2)
    m.pack()


def _pack_grow(m):
    # Pack, then add more than the pack removed: the file is larger than the
    # repository but its beginning changed, so the next backup must be full.
    m.pack()
    m.mutate(n_txn=2, n_big_add=4)


STEPS = [
    ('create', lambda m: m.create()),
    ('mutate', lambda m: m.mutate()),
    ('mutate-delete', lambda m: m.mutate(n_delete=10)),
    ('nochange', None),
    ('pack-shrink', _pack_shrink),
    ('mutate', lambda m: m.mutate()),
    ('pack-grow', _pack_grow),
    ('mutate', lambda m: m.mutate(n_txn=2)),
]

OPTION_SETS = [
    pytest.param([], id='default'),
    pytest.param(['-Q'], id='Q'),
    pytest.param(['-z'], id='z'),
    pytest.param(['-Q', '-z'], id='Qz'),
    pytest.param(['-F'], id='F'),
    pytest.param(['-k'], id='k'),
    pytest.param(['-z', '-k'], id='zk'),
]


@dataclass
class Step:
    index: int
    action: str
    now: str                  # faked clock of this backup == its -D value
    datafs: bytes             # Data.fs as it was when backed up
    expected: dict            # Model.expected() at that time
    procs: dict               # 'py'/'rs' -> CompletedProcess of the backup
    before: dict              # 'py'/'rs' -> repository content before
    after: dict               # 'py'/'rs' -> repository content after

    def new_files(self, who):
        return sorted(set(self.after[who]) - set(self.before[who]))

    def label(self):
        return 'step %d (%s, now=%s)' % (self.index, self.action, self.now)


@dataclass
class Scenario:
    base: str
    opts: list
    tools: dict
    steps: list = field(default_factory=list)
    _counter: int = 0
    _oracle: dict = field(default_factory=dict)

    @property
    def repos(self):
        return {'py': os.path.join(self.base, 'repo_py'),
                'rs': os.path.join(self.base, 'repo_rs')}

    def run(self):
        for repo in self.repos.values():
            os.mkdir(repo)
        datafs = os.path.join(self.base, 'Data.fs')
        model = Model(datafs, seed=20240506)
        clock = CLOCK_START
        for i, (action, change) in enumerate(STEPS):
            if change is not None:
                change(model)
            now = fmt_now(clock)
            clock += CLOCK_STEP
            before = {k: read_repo(v) for k, v in self.repos.items()}
            with open(datafs, 'rb') as f:
                snapshot = f.read()
            procs = {}
            for who in ('py', 'rs'):
                # Relative paths on purpose: the .dat file records the -r
                # path as given.
                procs[who] = self.tools[who].run(
                    ['-B', '-r', 'repo_' + who, '-f', 'Data.fs'] + self.opts,
                    now=now, cwd=self.base)
            after = {k: read_repo(v) for k, v in self.repos.items()}
            self.steps.append(Step(i, action, now, snapshot, model.expected(),
                                   procs, before, after))
        self.final_now = fmt_now(clock + datetime.timedelta(days=1))

    def outpath(self, name='out.fs'):
        self._counter += 1
        d = os.path.join(self.base, 'recover-%04d' % self._counter)
        os.mkdir(d)
        return os.path.join(d, name)

    def expected_step(self, date):
        """The step whose state a recovery as of ``date`` should give.

        repozo compares the file name stem (YYYY-MM-DD-hh-mm-ss) with the
        date string as strings: files with stem <= date are used.
        """
        candidates = [s for s in self.steps if s.now <= date]
        return candidates[-1] if candidates else None

    def recover(self, who, repo_of, date=None, now=None, output=True,
                extra=()):
        """Run a recovery; returns (proc, output path or None)."""
        args = ['-R', '-r', self.repos[repo_of]]
        if date is not None:
            args += ['-D', date]
        out = None
        if output:
            out = self.outpath()
            args += ['-o', out]
        args += list(extra)
        proc = self.tools[who].run(args, now=now or self.final_now)
        return proc, out

    def oracle(self, date=None, now=None):
        """Python repozo recovering from Python's repository (memoized)."""
        key = (date, now)
        if key not in self._oracle:
            proc, out = self.recover('py', 'py', date=date, now=now)
            data = index = None
            if proc.returncode == 0:
                with open(out, 'rb') as f:
                    data = f.read()
                if os.path.exists(out + '.index'):
                    with open(out + '.index', 'rb') as f:
                        index = f.read()
            self._oracle[key] = (proc, data, index)
        return self._oracle[key]

    def recoverable_steps(self):
        """Steps whose exact date Python can recover (all, unless -k)."""
        out = []
        for step in self.steps:
            proc, _, _ = self.oracle(step.now)
            if proc.returncode == 0:
                out.append(step)
            else:
                assert '-k' in self.opts, (
                    'python could not recover %s without -k\n%s'
                    % (step.label(), describe_output(proc)))
        return out


@pytest.fixture(scope='module', params=OPTION_SETS)
def scenario(request, tools, tmp_path_factory):
    label = ''.join(o.strip('-') for o in request.param) or 'default'
    base = tmp_path_factory.mktemp('scenario-' + label)
    sc = Scenario(str(base), list(request.param), tools)
    sc.run()
    return sc


def test_backup_python_side_is_sane(scenario):
    """The scenario does what it is meant to do (checks Python's side)."""
    for step in scenario.steps:
        assert_ok(step.procs['py'], 'python backup at ' + step.label())
    steps = scenario.steps
    by_action = {s.action: s for s in steps}
    shrink, grow = by_action['pack-shrink'], by_action['pack-grow']
    prev_shrink = steps[shrink.index - 1]
    prev_grow = steps[grow.index - 1]
    assert len(shrink.datafs) < len(prev_shrink.datafs), 'pack did not shrink'
    assert len(grow.datafs) > len(prev_grow.datafs), 'pack+grow did not grow'
    assert grow.datafs[:len(prev_grow.datafs)] != prev_grow.datafs
    assert 100_000 < len(steps[-1].datafs) < 2_000_000


def test_backup_repositories_match(scenario):
    """After every backup both repositories hold the same files and data."""
    for step in scenario.steps:
        py, rs = step.procs['py'], step.procs['rs']
        assert_ok(py, 'python backup at ' + step.label())
        assert rs.returncode == 0, 'our backup failed at %s\n%s' % (
            step.label(), describe_output(rs))
        diffs = compare_repos(step.after['py'], step.after['rs'])
        assert not diffs, ('repositories differ after %s with options %s:\n'
                           '%s\nnew python files: %s\nnew rust files: %s\n%s'
                           % (step.label(), scenario.opts,
                              '\n'.join(diffs), step.new_files('py'),
                              step.new_files('rs'), describe_output(rs)))


def test_backup_index_files_identical(scenario):
    """Every .index of ours is byte-identical to Python's (fsIndex.save)."""
    for step in scenario.steps:
        for name in step.new_files('py'):
            if name.endswith('.index'):
                assert name in step.after['rs'], (
                    '%s: ours wrote no %s' % (step.label(), name))
                assert_same_bytes(step.after['rs'][name],
                                  step.after['py'][name],
                                  '%s: %s' % (step.label(), name))


def test_backup_full_or_incremental_as_python(scenario):
    """Full vs incremental decisions, incl. the forced full after a pack."""
    forced = '-F' in scenario.opts
    for step in scenario.steps:
        new_py = data_files(step.new_files('py'))
        new_rs = data_files(step.new_files('rs'))
        assert new_rs == new_py, '%s: python wrote %s, ours wrote %s' % (
            step.label(), new_py, new_rs)
        if step.action == 'nochange' and not forced:
            assert new_py == [], 'python wrote %s although nothing changed' % new_py
            for who in ('py', 'rs'):
                assert step.after[who] == step.before[who], (
                    '%s: %s repository changed although Data.fs did not: new '
                    'files %s' % (step.label(), who, step.new_files(who)))
        else:
            assert len(new_py) == 1, (step.label(), new_py)
        if step.index == 0 or forced or step.action.startswith('pack'):
            assert [ext_of(n) for n in new_py] in (['.fs'], ['.fsz']), (
                '%s should be a full backup, python wrote %s'
                % (step.label(), new_py))
        elif step.action != 'nochange':
            assert [ext_of(n) for n in new_py] in (['.deltafs'], ['.deltafsz'])
        if '-z' in scenario.opts:
            assert all(n.endswith('z') for n in new_py)


def test_backup_kill_old_on_full(scenario):
    """With -k only the newest full backup and its increments are kept;
    without -k a backup never removes anything."""
    for step in scenario.steps:
        for who in ('py', 'rs'):
            if '-k' not in scenario.opts:
                gone = sorted(set(step.before[who]) - set(step.after[who]))
                assert not gone, '%s: %s backup removed %s without -k' % (
                    step.label(), who, gone)
                continue
            names = data_files(step.after[who])
            fulls = [n for n in names if ext_of(n) in FULL_EXTS]
            assert len(fulls) == 1, '%s: %s repository holds fulls %s' % (
                step.label(), who, fulls)
            assert names[0] == fulls[0], names
            stems = {os.path.splitext(n)[0] for n in step.after[who]}
            assert stems == {os.path.splitext(n)[0] for n in names}, (
                '%s: leftover .dat/.index in %s repository: %s'
                % (step.label(), who, sorted(step.after[who])))


def test_cross_recovery_at_every_backup_date(scenario):
    """Each tool recovers from each repository the exact Data.fs bytes."""
    for step in scenario.steps:
        oracle, py_data, py_index = scenario.oracle(step.now)
        if oracle.returncode != 0:
            # Only with -k: the chain this date needs was deleted.  Ours must
            # refuse the same way.
            assert '-k' in scenario.opts, describe_output(oracle)
            for repo_of in ('py', 'rs'):
                rs, out = scenario.recover('rs', repo_of, date=step.now)
                assert_error_like_python(
                    rs, oracle, 'recover -D %s from %s repo (-k)'
                    % (step.now, repo_of), key='No files in repository')
                assert not os.path.exists(out)
            continue
        assert_same_bytes(py_data, step.datafs,
                          'python recovering its own repo at ' + step.label(),
                          oracle)
        assert py_index is not None, 'python restored no out.fs.index'
        last = [n for n in data_files(step.after['py']) if n[:19] <= step.now][-1]
        assert py_index == step.after['py'][os.path.splitext(last)[0] + '.index']
        for who, repo_of in (('py', 'rs'), ('rs', 'py'), ('rs', 'rs')):
            what = '%s recovering from %s repo at %s' % (who, repo_of,
                                                       step.label())
            proc, out = scenario.recover(who, repo_of, date=step.now)
            assert_ok(proc, what)
            with open(out, 'rb') as f:
                assert_same_bytes(f.read(), step.datafs, what, proc)
            assert os.path.exists(out + '.index'), (
                '%s: no %s.index written\n%s' % (what, out, describe_output(proc)))
            with open(out + '.index', 'rb') as f:
                assert_same_bytes(f.read(), py_index, what + ' (out.fs.index)',
                                  proc)
            leftovers = sorted(set(os.listdir(os.path.dirname(out)))
                               - {'out.fs', 'out.fs.index'})
            assert not leftovers, '%s left %s behind' % (what, leftovers)


def test_recover_overwrites_existing_output(scenario):
    """An existing, longer -o file and index are replaced, not patched."""
    step = scenario.recoverable_steps()[0]
    for who in ('py', 'rs'):
        out = scenario.outpath()
        with open(out, 'wb') as f:
            f.write(b'junk' * 500_000)
        with open(out + '.index', 'wb') as f:
            f.write(b'stale index')
        proc = scenario.tools[who].run(
            ['-R', '-r', scenario.repos['py'], '-D', step.now, '-o', out],
            now=scenario.final_now)
        assert_ok(proc, '%s recover over an existing file' % who)
        with open(out, 'rb') as f:
            assert_same_bytes(f.read(), step.datafs, who + ' overwrite', proc)
        with open(out + '.index', 'rb') as f:
            assert f.read() != b'stale index'


def test_recover_to_stdout(scenario):
    """Without -o the recovered bytes go to stdout (and no index is made)."""
    steps = scenario.recoverable_steps()
    for step in steps:
        proc, _ = scenario.recover('rs', 'py', date=step.now, output=False)
        assert_ok(proc, 'our recover to stdout at ' + step.label())
        assert_same_bytes(proc.stdout, step.datafs,
                          'our recover to stdout at ' + step.label(), proc)
    step = steps[-1]
    proc, _ = scenario.recover('py', 'rs', date=step.now, output=False)
    assert_ok(proc, 'python recover to stdout')
    assert_same_bytes(proc.stdout, step.datafs, 'python recover to stdout', proc)


def test_recover_with_verify(scenario):
    """-w recovers the same bytes (each tool on the other's repository)."""
    for step in scenario.recoverable_steps():
        for who, repo_of in (('rs', 'py'), ('py', 'rs')):
            what = '%s -w recovering from %s repo at %s' % (who, repo_of,
                                                          step.label())
            proc, out = scenario.recover(who, repo_of, date=step.now,
                                         extra=['-w'])
            assert_ok(proc, what)
            with open(out, 'rb') as f:
                assert_same_bytes(f.read(), step.datafs, what, proc)
            assert os.path.exists(out + '.index'), what


def test_recover_other_dates(scenario):
    """Dates between backups, truncated dates and the default date ("now").

    Python is the oracle: the same exit status, the same bytes.
    """
    cases = []   # (label, date, now)
    for step in scenario.steps:
        cases.append(('minute of ' + step.label(), step.now[:16], None))
        cases.append(('hour of ' + step.label(), step.now[:13], None))
        if step.index in (0, 3, len(scenario.steps) - 1):
            t = datetime.datetime.strptime(step.now, '%Y-%m-%d-%H-%M-%S')
            cases.append(('default date 30s after ' + step.label(), None,
                          fmt_now(t + datetime.timedelta(seconds=30))))
    cases.append(('default date before the first backup', None,
                  fmt_now(CLOCK_START - datetime.timedelta(seconds=1))))
    for day in ('2024-05-05', '2024-05-06', '2024-05-07', '2024-05-08'):
        cases.append(('day ' + day, day, None))
    seen = set()
    for label, date, now in cases:
        if (date, now) in seen:
            continue
        seen.add((date, now))
        # Ours recovers alternately from Python's repository and its own.
        repo_of = ('py', 'rs')[len(seen) % 2]
        oracle, py_data, py_index = scenario.oracle(date, now)
        expected = scenario.expected_step(date or now)
        if oracle.returncode == 0:
            assert expected is not None, label
            assert_same_bytes(py_data, expected.datafs, 'python, ' + label,
                              oracle)
        else:
            assert expected is None or '-k' in scenario.opts, (
                label, describe_output(oracle))
        what = 'ours recovering from %s repo, %s (-D %s, now %s)' % (
            repo_of, label, date, now)
        proc, out = scenario.recover('rs', repo_of, date=date, now=now)
        if oracle.returncode != 0:
            assert_error_like_python(proc, oracle, what,
                                     key='No files in repository')
            assert not os.path.exists(out), what
            continue
        assert_ok(proc, what)
        with open(out, 'rb') as f:
            assert_same_bytes(f.read(), py_data, what, proc)
        with open(out + '.index', 'rb') as f:
            assert_same_bytes(f.read(), py_index, what + ' (index)', proc)


def test_recovered_file_opens_with_index(scenario):
    """ZODB uses the restored index (no rescan) and finds every object."""
    for step in scenario.recoverable_steps():
        for who, repo_of in (('rs', 'py'),):
            what = '%s recovering from %s repo at %s' % (who, repo_of,
                                                       step.label())
            proc, out = scenario.recover(who, repo_of, date=step.now)
            assert_ok(proc, what)
            state, used_index = read_state(out)
            assert used_index == 1, (
                '%s: ZODB ignored %s.index and rescanned the file' % (what, out))
            assert state['counter'] == step.expected['counter'], what
            assert state == step.expected, '%s: database content differs' % what
            assert len(state['items']) > 250 and len(state['big']) >= 6


def test_verify_scenario_repositories(scenario):
    """-V and -V -Q pass on both repositories, with both tools."""
    for who in ('py', 'rs'):
        for repo_of in ('py', 'rs'):
            for quick in ([], ['-Q']):
                args = ['-V', '-r', scenario.repos[repo_of]] + quick
                proc = scenario.tools[who].run(args, now=scenario.final_now)
                assert proc.returncode == 0, (
                    '%s verify of %s repository failed\n%s'
                    % (who, repo_of, describe_output(proc)))
                assert proc.stdout == b'', describe_output(proc)


# ---------------------------------------------------------------------------
# Both tools taking turns on one repository
# ---------------------------------------------------------------------------

@pytest.mark.parametrize('opts', [[], ['-Q', '-z']], ids=['default', 'Qz'])
def test_tools_take_turns_on_one_repository(tools, tmp_path, opts):
    """Backups alternate between the tools in one repository; the result is
    what Python alone makes, and both recover it."""
    (tmp_path / 'mixed').mkdir()
    (tmp_path / 'ref').mkdir()
    datafs = tmp_path / 'Data.fs'
    model = Model(datafs, seed=99)
    clock = CLOCK_START
    snapshots = []
    turns = ['rs', 'py', 'rs', 'py', 'rs', 'rs', 'py']
    for i, who in enumerate(turns):
        if i == 0:
            model.create(n_items=120, n_big=3)
        elif i == 4:
            model.mutate(n_txn=1, n_delete=10)
            model.pack()
        else:
            model.mutate(n_txn=1)
        now = fmt_now(clock)
        clock += CLOCK_STEP
        ref = tools['py'].run(['-B', '-r', tmp_path / 'ref', '-f', datafs] + opts,
                              now=now, check=True)
        proc = tools[who].run(['-B', '-r', tmp_path / 'mixed', '-f', datafs]
                              + opts, now=now)
        assert_ok(proc, 'turn %d (%s)' % (i, who))
        diffs = compare_repos(read_repo(tmp_path / 'ref'),
                              read_repo(tmp_path / 'mixed'))
        assert not diffs, 'after turn %d (%s):\n%s\n%s' % (
            i, who, '\n'.join(diffs), describe_output(ref))
        snapshots.append((now, datafs.read_bytes()))
    for who in ('py', 'rs'):
        for now, data in snapshots:
            out = tmp_path / ('out-%s-%s.fs' % (who, now))
            proc = tools[who].run(['-R', '-w', '-r', tmp_path / 'mixed',
                                   '-D', now, '-o', out], now=now)
            assert_ok(proc, '%s recovering mixed repo at %s' % (who, now))
            assert_same_bytes(out.read_bytes(), data, 'recover ' + now, proc)
        proc = tools[who].run(['-V', '-r', tmp_path / 'mixed'],
                              now=fmt_now(clock))
        assert_ok(proc, '%s verify of the mixed repo' % who)


# ---------------------------------------------------------------------------
# Verify (-V) on damaged repositories
# ---------------------------------------------------------------------------

@dataclass
class SmallRepos:
    base: str
    gz: bool
    repos: dict               # 'py'/'rs' -> path
    old_chain: list           # data file names of the older full + incremental
    last_chain: list          # data file names of the newest full + 2 incrementals
    nows: list
    verify_now: str


def _build_small_repos(base, tools, gz):
    datafs = os.path.join(base, 'Data.fs')
    repos = {'py': os.path.join(base, 'repo_py'),
             'rs': os.path.join(base, 'repo_rs')}
    for r in repos.values():
        os.mkdir(r)
    model = Model(datafs, seed=4242)
    clock = CLOCK_START
    nows = []
    plan = [('create', []), ('mutate', []), ('none', ['-F']),
            ('mutate', []), ('mutate', [])]
    for action, extra in plan:
        if action == 'create':
            model.create(n_items=150, n_big=3)
        elif action == 'mutate':
            model.mutate(n_txn=2)
        now = fmt_now(clock)
        clock += CLOCK_STEP
        nows.append(now)
        for who in ('py', 'rs'):
            args = ['-B', '-r', repos[who], '-f', datafs] + extra
            if gz:
                args.append('-z')
            tools[who].run(args, now=now, check=True,
                           what='building the verify repositories')
    names = data_files(read_repo(repos['py']))
    assert len(names) == 5 and ext_of(names[2]) in FULL_EXTS, names
    return SmallRepos(base, gz, repos, names[:2], names[2:], nows,
                      fmt_now(clock + datetime.timedelta(hours=1)))


@pytest.fixture(scope='module', params=[False, True], ids=['plain', 'gz'])
def small_repos(request, tools, tmp_path_factory):
    base = tmp_path_factory.mktemp('verify-' + ('gz' if request.param else 'plain'))
    return _build_small_repos(str(base), tools, request.param)


def test_verify_passes_on_both_repositories(small_repos, tools):
    for who in ('py', 'rs'):
        for repo_of in ('py', 'rs'):
            for quick in ([], ['-Q']):
                proc = tools[who].run(['-V', '-r', small_repos.repos[repo_of]]
                                      + quick, now=small_repos.verify_now)
                assert proc.returncode == 0, '%s -V %s on %s repo\n%s' % (
                    who, quick, repo_of, describe_output(proc))


def _flip_byte(path, offset=None):
    with open(path, 'rb') as f:
        data = bytearray(f.read())
    if offset is None:
        offset = len(data) // 2
    data[offset] ^= 0x55
    with open(path, 'wb') as f:
        f.write(bytes(data))


def _rewrite(path, transform, gz):
    """Change the (uncompressed) content of a backup file."""
    with open(path, 'rb') as f:
        data = f.read()
    if gz:
        data = gzip.decompress(data)
    data = transform(data)
    if gz:
        data = gzip.compress(data)
    with open(path, 'wb') as f:
        f.write(data)


def _flip_middle(data):
    b = bytearray(data)
    b[len(b) // 2] ^= 0x55
    return bytes(b)


# case -> (which file, damage(path, gz), (kind, python message regex) for -V,
#          the same for -V -Q); None means "verification passes".
def _target(info, which):
    chain = info.old_chain if which == 'old' else info.last_chain
    idx = {'full': 0, 'inc': 1, 'old': 1, 'inc2': 2}[which]
    return chain[idx]


CHECKSUM = ('has checksum',
            r'^{f} has checksum [0-9a-f]{{32}}{u} instead of [0-9a-f]{{32}}$')
SIZE = ('should be', r'^{f} is \d+ bytes{u}, should be \d+ bytes$')
MISSING = ('is missing', r'^{f} is missing$')

DAMAGE_CASES = {
    'flip-byte-incremental': (
        'inc', lambda p, gz: _rewrite(p, _flip_middle, gz),
        CHECKSUM, None),
    'flip-byte-full': (
        'full', lambda p, gz: _rewrite(p, _flip_middle, gz),
        CHECKSUM, None),
    'truncate-incremental': (
        'inc', lambda p, gz: _rewrite(p, lambda d: d[:-10], gz),
        SIZE, SIZE),
    'extend-last-incremental': (
        'inc2', lambda p, gz: _rewrite(p, lambda d: d + b'xyz', gz),
        SIZE, SIZE),
    'delete-incremental': (
        'inc', lambda p, gz: os.unlink(p),
        MISSING, MISSING),
    'damage-older-chain': (
        'old', lambda p, gz: _rewrite(p, _flip_middle, gz), None, None),
}


@pytest.mark.parametrize('quick', [False, True], ids=['full-check', 'quick'])
@pytest.mark.parametrize('case', sorted(DAMAGE_CASES))
def test_verify_damaged_repository(small_repos, tools, case, quick):
    which, damage, msg_re, quick_re = DAMAGE_CASES[case]
    name = _target(small_repos, which)
    repo = os.path.join(small_repos.base,
                        'damaged-%s-%s' % (case, 'q' if quick else 'f'))
    shutil.copytree(small_repos.repos['py'], repo)
    damage(os.path.join(repo, name), small_repos.gz)
    args = ['-V', '-r', repo] + (['-Q'] if quick else [])
    py = tools['py'].run(args, now=small_repos.verify_now)
    rs = tools['rs'].run(args, now=small_repos.verify_now)
    expect = quick_re if quick else msg_re  # (key phrase, regex) or None
    what = '-V%s on a repository with %s (%s)' % (' -Q' if quick else '',
                                                 case, name)
    if expect is None:
        assert py.returncode == 0, describe_output(py)
        assert rs.returncode == 0, ('ours should pass %s like python\n%s'
                                    % (what, describe_output(rs)))
        return
    key, regex = expect
    regex = regex.format(
        f=re.escape(os.path.join(repo, name)),
        u=re.escape(' (when uncompressed)') if small_repos.gz else '')
    py_msg = last_line(py.stderr)
    assert re.match(regex, py_msg), ('python said %r, expected /%s/'
                                     % (py_msg, regex))
    assert_error_like_python(rs, py, what, key=key, name=name)
    assert rs.stdout == b'', describe_output(rs)


@pytest.mark.parametrize('damage', ['garbage', 'truncated'])
def test_verify_broken_gzip_file(tools, tmp_path_factory, damage):
    """A .deltafsz that is not valid gzip any more: both tools exit 1.

    (Python's own message is not useful here: "... is missing" when zlib
    rejects the data, a traceback when the gzip stream is cut short.)
    """
    base = str(tmp_path_factory.mktemp('broken-gz-' + damage))
    info = _build_small_repos(base, tools, gz=True)
    name = info.last_chain[1]
    path = os.path.join(info.repos['py'], name)
    if damage == 'garbage':
        _flip_byte(path)
    else:
        with open(path, 'rb') as f:
            data = f.read()
        with open(path, 'wb') as f:
            f.write(data[:len(data) // 2])
    for quick in ([], ['-Q']):
        args = ['-V', '-r', info.repos['py']] + quick
        py = tools['py'].run(args, now=info.verify_now)
        rs = tools['rs'].run(args, now=info.verify_now)
        assert py.returncode == 1, describe_output(py)
        assert rs.returncode == 1, ('ours should exit 1 on a broken gzip file '
                                    '(%s)\n%s' % (damage, describe_output(rs)))
        assert name in text(rs.stderr), describe_output(rs)


def test_recover_with_verify_on_damaged_repository(small_repos, tools):
    """-R -w stops with the verification message and leaves no -o file."""
    name = small_repos.last_chain[1]
    repo = os.path.join(small_repos.base, 'damaged-for-w')
    shutil.copytree(small_repos.repos['py'], repo)
    _rewrite(os.path.join(repo, name), _flip_middle, small_repos.gz)
    procs, outs = {}, {}
    for who in ('py', 'rs'):
        outs[who] = os.path.join(small_repos.base, 'w-out-%s.fs' % who)
        procs[who] = tools[who].run(['-R', '-w', '-r', repo, '-o', outs[who]],
                                    now=small_repos.verify_now)
    py_msg = last_line(procs['py'].stderr)
    assert re.match(r'^%s has checksum [0-9a-f]{32} instead of [0-9a-f]{32}$'
                    % re.escape(os.path.join(repo, name)), py_msg), py_msg
    assert_error_like_python(procs['rs'], procs['py'], 'recover -w',
                             key='has checksum', name=name)
    for who in ('py', 'rs'):
        assert not os.path.exists(outs[who]), (
            '%s created %s although verification failed' % (who, outs[who]))
    # Without -w the damaged data is recovered without complaint.
    for who in ('py', 'rs'):
        out = os.path.join(small_repos.base, 'nw-out-%s.fs' % who)
        proc = tools[who].run(['-R', '-r', repo, '-o', out],
                              now=small_repos.verify_now)
        assert_ok(proc, '%s recover without -w' % who)


def test_verify_and_recover_empty_repository(tools, tmp_path):
    repo = tmp_path / 'empty'
    repo.mkdir()
    for args, key in ((['-V', '-r', repo], 'No files in repository'),
                      (['-R', '-r', repo, '-o', tmp_path / 'o.fs'],
                       'No files in repository'),
                      (['-R', '-r', repo, '-D', '2020-01-01'],
                       'No files in repository before 2020-01-01')):
        py = tools['py'].run(args, now='2024-01-01-00-00-00')
        rs = tools['rs'].run(args, now='2024-01-01-00-00-00')
        assert_error_like_python(rs, py, ' '.join(map(str, args)), key=key)
    assert not (tmp_path / 'o.fs').exists()


# ---------------------------------------------------------------------------
# Command line parity
# ---------------------------------------------------------------------------

@pytest.fixture
def cli_env(tmp_path):
    repo = tmp_path / 'repo'
    repo.mkdir()
    datafs = tmp_path / 'Data.fs'
    model = Model(datafs, seed=5)
    model.create(n_items=20, n_big=1)
    return tmp_path, repo, datafs, model


BAD_COMMAND_LINES = {
    'no-arguments': lambda r, d: [],
    'no-mode': lambda r, d: ['-r', r, '-f', d],
    'backup-and-recover': lambda r, d: ['-B', '-R', '-r', r, '-f', d],
    'verify-and-recover': lambda r, d: ['-V', '-R', '-r', r],
    'backup-twice': lambda r, d: ['-B', '-B', '-r', r, '-f', d],
    'no-repository': lambda r, d: ['-B', '-f', d],
    'backup-without-file': lambda r, d: ['-B', '-r', r],
    'stray-argument': lambda r, d: ['-V', '-r', r, 'stray'],
    'unknown-short-option': lambda r, d: ['-V', '-r', r, '-x'],
    'unknown-long-option': lambda r, d: ['-V', '-r', r, '--bogus'],
    'missing-option-value': lambda r, d: ['-V', '-r'],
    'value-for-flag': lambda r, d: ['-V', '--quick=yes', '-r', r],
}


@pytest.mark.parametrize('case', sorted(BAD_COMMAND_LINES))
def test_bad_command_line(cli_env, tools, case):
    tmp, repo, datafs, model = cli_env
    args = BAD_COMMAND_LINES[case](str(repo), str(datafs))
    py = tools['py'].run(args, now='2024-01-01-00-00-00', cwd=tmp)
    rs = tools['rs'].run(args, now='2024-01-01-00-00-00', cwd=tmp)
    assert py.returncode == 1, describe_output(py)
    assert rs.returncode == 1, ('ours should exit 1 like python for %s\n%s\n'
                                'python said: %s' % (case, describe_output(rs),
                                                     last_line(py.stderr)))
    assert text(rs.stderr).strip(), (
        'ours printed no explanation on stderr for %s' % case)
    assert rs.stdout == b'', describe_output(rs)
    assert os.listdir(repo) == [], 'a bad command line wrote %s' % os.listdir(repo)


HELP_TOKENS = ['-B', '--backup', '-R', '--recover', '-V', '--verify', '-v',
               '--verbose', '-h', '--help', '-r', '--repository', '-f',
               '--file', '-F', '--full', '-Q', '--quick', '-z', '--gzip',
               '-k', '--kill-old-on-full', '-D', '--date', '-o', '--output',
               '-w', '--with-verify']


@pytest.mark.parametrize('args', [['-h'], ['--help'], ['-V', '-h']],
                         ids=['h', 'help', 'V-h'])
def test_help(tools, args):
    py = tools['py'].run(args)
    rs = tools['rs'].run(args)
    assert py.returncode == 0 and b'Usage:' in py.stdout, describe_output(py)
    assert rs.returncode == 0, describe_output(rs)
    out = text(rs.stdout)
    missing = [t for t in HELP_TOKENS if not re.search(
        r'(?<![\w-])%s(?![\w-])' % re.escape(t), out)]
    assert not missing, 'our usage text on stdout lacks %s:\n%s' % (missing, out)
    assert 'yyyy-mm-dd[-hh[-mm[-ss]]]' in out


def test_bundled_short_flags_and_long_options(cli_env, tools):
    tmp, repo, datafs, model = cli_env
    ref = tmp / 'ref'
    ref.mkdir()
    nows = ['2024-01-01-00-00-%02d' % s for s in (1, 2, 3)]
    # 1: bundled short flags with the value of -r attached to the bundle.
    tools['py'].run(['-BQzr', ref, '-f', datafs], now=nows[0], check=True)
    rs = tools['rs'].run(['-BQzr', repo, '-f', datafs], now=nows[0])
    assert_ok(rs, '-BQzr REPO -f Data.fs')
    assert listdir(repo) == listdir(ref)
    assert any(n.endswith('.fsz') for n in os.listdir(repo))
    # 2: long options with '=', after a change.
    model.mutate(n_txn=1)
    long_args = ['--backup', '--quick', '--gzip', '--file=%s' % datafs]
    tools['py'].run(long_args + ['--repository=%s' % ref], now=nows[1],
                    check=True)
    rs = tools['rs'].run(long_args + ['--repository=%s' % repo], now=nows[1])
    assert_ok(rs, ' '.join(long_args) + ' --repository=REPO')
    assert listdir(repo) == listdir(ref)
    assert any(n.endswith('.deltafsz') for n in os.listdir(repo))
    diffs = compare_repos(read_repo(ref), read_repo(repo))
    assert not diffs, '\n'.join(diffs)
    # 3: -rREPO glued, long options with separate values, --verify.
    for args in (['-VQr%s' % repo], ['--verify', '--repository', str(repo)],
                 ['-V', '-r%s' % repo]):
        rs = tools['rs'].run(args, now=nows[2])
        assert_ok(rs, ' '.join(args))
    out = tmp / 'out.fs'
    rs = tools['rs'].run(['--recover', '--repository', repo, '--output', out,
                          '--date', nows[1], '--with-verify'], now=nows[2])
    assert_ok(rs, 'long-option recover')
    assert_same_bytes(out.read_bytes(), datafs.read_bytes(), 'recover', rs)


def test_options_ignored_in_other_modes(cli_env, tools):
    """Python only logs (with -v) options that do not apply to the mode."""
    tmp, repo, datafs, model = cli_env
    now = '2024-01-01-00-00-00'
    for who in ('py', 'rs'):
        r = tmp / ('repo-' + who)
        r.mkdir()
        out = tmp / ('out-%s.fs' % who)
        cases = [
            ['-B', '-r', r, '-f', datafs, '-D', '2020-01-01', '-o', out, '-w'],
            ['-V', '-r', r, '-D', '2000-01-01', '-o', out, '-F', '-z', '-f',
             datafs, '-k', '-w'],
            ['-R', '-r', r, '-o', out, '-f', datafs, '-k', '-F', '-z', '-Q'],
        ]
        for args in cases:
            proc = tools[who].run(args, now=now)
            assert proc.returncode == 0, (
                '%s should accept (and ignore) options meant for other modes'
                '\n%s' % (who, describe_output(proc)))
        assert listdir(r) == ['2024-01-01-00-00-00.dat',
                                         '2024-01-01-00-00-00.fs',
                                         '2024-01-01-00-00-00.index']
        assert not os.path.exists(str(out) + '.part')
        assert_same_bytes(out.read_bytes(), datafs.read_bytes(),
                          '%s recover' % who)


@pytest.mark.parametrize('args,ok', [
    (['--back', '--repo={repo}', '--fi={datafs}'], True),
    (['--verif', '--rep', '{repo}'], True),
    (['--ver', '-r', '{repo}'], False),   # ambiguous: --verify / --verbose
], ids=['backup-prefixes', 'verify-prefix', 'ambiguous-prefix'])
def test_long_option_prefixes_like_getopt(cli_env, tools, args, ok):
    """Python's getopt accepts any unique prefix of a long option."""
    tmp, repo, datafs, model = cli_env
    tools['py'].run(['-B', '-r', repo, '-f', datafs], now='2024-01-01-00-00-00',
                    check=True)
    args = [a.format(repo=repo, datafs=datafs) for a in args]
    py = tools['py'].run(args, now='2024-01-01-00-01-00')
    rs = tools['rs'].run(args, now='2024-01-01-00-01-00')
    assert py.returncode == (0 if ok else 1), describe_output(py)
    assert rs.returncode == py.returncode, (
        'ours should treat %s like python\'s getopt\n%s\npython said: %s'
        % (args, describe_output(rs), last_line(py.stderr)))


def test_multi_member_gzip_both_ways(tools, tmp_path):
    """A Data.fs of several MiB gzip'd by ours is many gzip members, each
    saying its length in the header's extra field. Python's gzip module (and
    so Python repozo) reads it as one stream; ours reads Python's single
    member files; each tool verifies and recovers the other's repository."""
    datafs = tmp_path / 'Data.fs'
    model = Model(datafs, seed=7)
    model.create(n_items=2000, n_big=200)
    model.mutate(n_txn=2, n_big_add=40)
    data = datafs.read_bytes()
    assert len(data) > 4 << 20, 'the database should span several members'
    now = '2024-01-01-00-00-00'
    for writer in ('rs', 'py'):
        repo = tmp_path / ('repo-' + writer)
        repo.mkdir()
        tools[writer].run(['-B', '-z', '-r', repo, '-f', datafs], now=now,
                          check=True)
        fsz = repo / (now + '.fsz')
        blob = fsz.read_bytes()
        if writer == 'rs':
            # FEXTRA set, subfield 'Rz' of 4 bytes: the member's length.
            assert blob[3] == 4 and blob[12:16] == b'Rz\x04\x00', blob[:20]
            first = int.from_bytes(blob[16:20], 'little')
            assert 0 < first < len(blob), 'the first member is one of many'
            assert blob[first:first + 2] == b'\x1f\x8b'
        assert_same_bytes(gzip.decompress(blob), data, '%s .fsz' % writer)
        for reader in ('py', 'rs'):
            for args in (['-V'], ['-V', '-Q']):
                proc = tools[reader].run(args + ['-r', repo], now=now)
                assert proc.returncode == 0, '%s %s of %s .fsz\n%s' % (
                    reader, args, writer, describe_output(proc))
            out = tmp_path / ('out-%s-%s.fs' % (writer, reader))
            tools[reader].run(['-R', '-r', repo, '-o', out], now=now,
                              check=True)
            assert_same_bytes(out.read_bytes(), data,
                              '%s recovering %s .fsz' % (reader, writer))


def test_python_fsz_verified_quick_on_two_threads(tools, tmp_path):
    """Python repozo's .fsz is one gzip member; -V -Q inflates one of
    several MiB on two threads (src/gzip_size.rs), which the example
    program gzip_size reports. Sizes agree with Python's; damage in the
    part the second thread reads fails both tools, as do a bad CRC and a
    bad length in the trailer. (Python says "... is missing" when zlib
    rejects the data, see test_verify_broken_gzip_file; ours names the
    file and the gzip error.)"""
    datafs = tmp_path / 'Data.fs'
    model = Model(datafs, seed=11)
    model.create(n_items=300, n_big=330)
    now = '2024-01-01-00-00-00'
    repo = tmp_path / 'repo'
    repo.mkdir()
    tools['py'].run(['-B', '-z', '-r', repo, '-f', datafs], now=now,
                    check=True)
    fsz = repo / (now + '.fsz')
    blob = fsz.read_bytes()
    assert len(blob) >= 4 << 20, 'gzip_size leaves files under 4 MiB alone'
    # A debug tool of the checkout, whichever binary is under test (the
    # wheel's is elsewhere).
    probe = REPO_ROOT / 'target' / 'debug' / 'examples' / 'gzip_size'
    assert probe.is_file(), '%s: built by cargo test' % probe
    report = subprocess.run([str(probe), str(fsz)], capture_output=True,
                            text=True, check=True).stdout.strip()
    assert report == 'size=%d split=true' % datafs.stat().st_size, report
    for reader in ('py', 'rs'):
        assert_ok(tools[reader].run(['-V', '-Q', '-r', repo], now=now),
                  '%s -V -Q of a Python .fsz' % reader)
    n = len(blob)
    for what, at in (('deflate data near the end', n * 9 // 10),
                     ('the trailer CRC', n - 7), ('the trailer length', n - 3)):
        damaged = bytearray(blob)
        damaged[at] ^= 0x10
        fsz.write_bytes(bytes(damaged))
        py = tools['py'].run(['-V', '-Q', '-r', repo], now=now)
        rs = tools['rs'].run(['-V', '-Q', '-r', repo], now=now)
        what = 'a flipped bit in ' + what
        assert py.returncode == 1, '%s\n%s' % (what, describe_output(py))
        assert rs.returncode == 1, '%s\n%s' % (what, describe_output(rs))
        err = text(rs.stderr)
        assert fsz.name in err and 'gzip' in err, describe_output(rs)
