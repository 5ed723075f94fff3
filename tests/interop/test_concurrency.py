"""Several repozo runs on one repository at the same time.

A backup locks ``<repository>/.repozo.lock``; a second backup started
meanwhile must fail at once (exit 1, "locked" on stderr) rather than write
into the repository too.  A recovery or a verification started while a
backup runs may fail the same way, or wait and succeed, but never give a
result mixing the two states.  Afterwards the repository verifies and
recovers to exactly Data.fs.

The database is made by ZODB once per module, big enough (~6-8 MB of text
that compresses to about half) that a ``-z`` backup takes a while (about a
second with a debug build).  The other runs start once the backup has its
temporary file in the repository, so they overlap it even with a fast
build.
"""
import os
import random
import shutil
import subprocess
import threading
import time

import pytest
import ZODB
import ZODB.FileStorage
from persistent.mapping import PersistentMapping

from conftest import describe_output

TXN_OBJECTS = 4
OBJECT_BYTES = 256 * 1024      # random bytes, stored as hex: 512 KB per object
SMALL_TXNS = 3                 # the database "A": ~6 MB
GROW_TXNS = 1                  # "B" = A + ~2 MB

LOCK_NAME = '.repozo.lock'
TEMP_PREFIX = '.repozo-'


def _commit_big(path, n_txn, rng, tag):
    db = ZODB.DB(ZODB.FileStorage.FileStorage(str(path)))
    try:
        for t in range(n_txn):
            with db.transaction('%s %d' % (tag, t)) as conn:
                root = conn.root()
                for o in range(TXN_OBJECTS):
                    root['%s-%d-%d' % (tag, t, o)] = PersistentMapping(
                        {'text': rng.randbytes(OBJECT_BYTES).hex()})
    finally:
        db.close()


@pytest.fixture(scope='module')
def databases(tmp_path_factory):
    """(A, B): two versions of a big Data.fs, B being A plus transactions."""
    base = tmp_path_factory.mktemp('concurrency-db')
    rng = random.Random(424242)
    a = base / 'A' / 'Data.fs'
    b = base / 'B' / 'Data.fs'
    a.parent.mkdir()
    b.parent.mkdir()
    _commit_big(a, SMALL_TXNS, rng, 'a')
    shutil.copyfile(a, b)
    _commit_big(b, GROW_TXNS, rng, 'b')
    for p in (a, b):
        # ZODB's clean close saved Data.fs.index.  These tests are about
        # the lock, so the backups here walk the whole file; starting from a
        # saved index is exercised by test_live.py.
        for extra in ('.index', '.lock', '.tmp'):
            if os.path.exists(str(p) + extra):
                os.remove(str(p) + extra)
    assert a.read_bytes() == b.read_bytes()[:a.stat().st_size]
    return a, b


def _env(now=None):
    env = dict(os.environ)
    env.pop('REPOZO_TEST_NOW', None)
    if now is not None:
        env['REPOZO_TEST_NOW'] = now
    return env


class Run:
    """One of our repozo processes, started in the background.

    A thread collects its output, so that ``elapsed`` is its own run time
    whatever order the runs are waited for in.
    """

    def __init__(self, rs_tool, args, now=None):
        self.args = [str(a) for a in args]
        self.now = now
        self.proc = None
        self.elapsed = None
        self._out = None
        self.started = time.monotonic()
        self.popen = subprocess.Popen(rs_tool.argv0 + self.args,
                                      stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, env=_env(now))
        self._thread = threading.Thread(target=self._collect, daemon=True)
        self._thread.start()

    def _collect(self):
        self._out = self.popen.communicate()
        self.elapsed = time.monotonic() - self.started

    def wait(self, timeout=300):
        if self.proc is None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                self.popen.kill()
                self._thread.join()
            out, err = self._out
            self.proc = subprocess.CompletedProcess(
                self.popen.args, self.popen.returncode, out, err)
            self.proc.tool = 'rust'
            self.proc.now = self.now
        return self.proc

    def describe(self):
        p = self.wait()
        return '%s\n  ran %.2f s' % (describe_output(p), self.elapsed)


def _stderr(proc):
    return proc.stderr.decode('utf-8', 'replace')


def _temp_files(repo):
    return [n for n in os.listdir(repo) if n.startswith(TEMP_PREFIX)]


def _data_files(repo):
    return sorted(n for n in os.listdir(repo) if not n.startswith('.'))


def _wait_until_writing(run, repo, timeout=60):
    """Wait until the backup has a temporary file in the repository (so it
    holds the lock and is writing).  Fails if it ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _temp_files(repo):
            return
        if run.popen.poll() is not None:
            pytest.fail('the backup ended before another run could be '
                        'started beside it (make the database bigger)\n%s'
                        % run.describe(), pytrace=False)
        time.sleep(0.002)
    pytest.fail('the backup wrote no temporary file in %s within %d s'
                % (repo, timeout))


def _check_repository(rs_tool, repo, datafs, tmp_path, what):
    """-V exits 0, no temporary file is left, -R gives exactly Data.fs."""
    assert not _temp_files(repo), '%s: temporary files left in %s: %s' % (
        what, repo, _temp_files(repo))
    v = rs_tool.run(['-V', '-r', repo])
    assert v.returncode == 0, '%s: the repository does not verify\n%s' % (
        what, describe_output(v))
    out = tmp_path / ('final-%d.fs' % len(os.listdir(tmp_path)))
    r = rs_tool.run(['-R', '-r', repo, '-o', out])
    assert r.returncode == 0, '%s: recovery failed\n%s' % (
        what, describe_output(r))
    assert out.read_bytes() == datafs.read_bytes(), (
        '%s: the recovered file (%d bytes) is not Data.fs (%d bytes); '
        'repository: %s' % (what, out.stat().st_size, datafs.stat().st_size,
                            _data_files(repo)))


def _assert_locked_failure(run, what):
    p = run.wait()
    assert p.returncode == 1 and 'locked' in _stderr(p), (
        '%s: expected exit 1 with a message saying the repository is '
        'locked\n%s' % (what, run.describe()))


@pytest.mark.parametrize('same_second', [True, False],
                         ids=['same-second', 'next-second'])
def test_two_backups_at_once(rs_tool, databases, tmp_path, same_second):
    """Two backups started together into one repository: exactly one runs,
    the other exits 1 saying the repository is locked, and writes nothing."""
    datafs = databases[0]
    repo = tmp_path / 'repo'
    repo.mkdir()
    nows = ['2024-04-01-10-00-00',
            '2024-04-01-10-00-00' if same_second else '2024-04-01-10-00-01']
    args = ['-B', '-z', '-r', repo, '-f', datafs]
    runs = [Run(rs_tool, args, now) for now in nows]
    procs = [r.wait() for r in runs]
    what = 'two backups at once'
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 1], (
        '%s: want exactly one to succeed and one to exit 1, got exits %s\n'
        '%s\n%s\nrepository: %s' % (what, [p.returncode for p in procs],
                                    runs[0].describe(), runs[1].describe(),
                                    _data_files(repo)))
    winner = runs[[p.returncode for p in procs].index(0)]
    loser = runs[[p.returncode for p in procs].index(1)]
    _assert_locked_failure(loser, what + ' (the one that lost)')
    print('\n%s: winner %.2f s; loser exit 1 after %.2f s: %s'
          % (what, winner.elapsed, loser.elapsed, _stderr(loser.proc).strip()))
    stem = winner.now
    assert _data_files(repo) == [stem + '.dat', stem + '.fsz',
                                 stem + '.index'], (
        '%s: the repository should hold the winner\'s backup only: %s'
        % (what, _data_files(repo)))
    assert os.path.exists(repo / LOCK_NAME)
    _check_repository(rs_tool, repo, datafs, tmp_path, what)


def test_recover_and_verify_during_backup(rs_tool, databases, tmp_path):
    """-R and -V started while a backup writes: either they fail at once
    saying the repository is locked, or they succeed with a state that was
    backed up (before or after that backup), never a mix."""
    a, b = databases
    repo = tmp_path / 'repo'
    repo.mkdir()
    datafs = tmp_path / 'Data.fs'
    shutil.copyfile(a, datafs)
    first = rs_tool.run(['-B', '-r', repo, '-f', datafs],
                        now='2024-04-02-10-00-00')
    assert first.returncode == 0, describe_output(first)
    shutil.copyfile(b, datafs)    # the database grew
    # A slow one: a forced, compressed full backup.
    backup = Run(rs_tool, ['-B', '-F', '-z', '-r', repo, '-f', datafs],
                 now='2024-04-02-10-00-01')
    try:
        _wait_until_writing(backup, repo)
        out = tmp_path / 'during.fs'
        recover = Run(rs_tool, ['-R', '-r', repo, '-o', out])
        verify = Run(rs_tool, ['-V', '-r', repo])
        still_running = backup.popen.poll() is None
        rp, vp = recover.wait(), verify.wait()
    finally:
        bp = backup.wait()
    what = 'recover/verify during a backup'
    assert bp.returncode == 0, '%s: the backup failed\n%s' % (
        what, backup.describe())
    report = ('the backup %s still running once both had started\n'
              'backup:  %s\nrecover: %s\nverify:  %s'
              % ('was' if still_running else 'was NOT', backup.describe(),
                 recover.describe(), verify.describe()))
    print('\n%s: backup %.2f s (exit %d); -R exit %d after %.2f s; -V exit '
          '%d after %.2f s\n  -R: %s\n  -V: %s'
          % (what, backup.elapsed, bp.returncode, rp.returncode,
             recover.elapsed, vp.returncode, verify.elapsed,
             _stderr(rp).strip(), _stderr(vp).strip()))
    if rp.returncode != 0:
        _assert_locked_failure(recover, what + ' (-R)\n' + report)
        assert not out.exists(), '%s: a failed -R left %s' % (what, out)
    else:
        got = out.read_bytes()
        assert got in (a.read_bytes(), b.read_bytes()), (
            '%s: -R succeeded but recovered %d bytes that are neither the '
            'first backup (%d bytes) nor the second (%d bytes)\n%s'
            % (what, len(got), a.stat().st_size, b.stat().st_size, report))
    if vp.returncode != 0:
        _assert_locked_failure(verify, what + ' (-V)\n' + report)
    _check_repository(rs_tool, repo, datafs, tmp_path, what)


def test_killed_backup_leaves_no_lock(rs_tool, databases, tmp_path):
    """A backup killed (SIGKILL) in the middle does not keep the repository
    locked: the next backup runs, and the repository stays consistent."""
    datafs = databases[0]
    repo = tmp_path / 'repo'
    repo.mkdir()
    backup = Run(rs_tool, ['-B', '-z', '-r', repo, '-f', datafs],
                 now='2024-04-03-10-00-00')
    try:
        _wait_until_writing(backup, repo)
    finally:
        if backup.popen.poll() is None:
            backup.popen.kill()
        backup.wait()
    again = rs_tool.run(['-B', '-r', repo, '-f', datafs],
                        now='2024-04-03-10-00-01')
    assert again.returncode == 0, (
        'a backup after a killed one failed (exit of the killed one: %s)\n%s'
        % (backup.proc.returncode, describe_output(again)))
    # SIGKILL may leave the killed run's temporary file behind: it is not
    # a backup, and must not upset verification.
    v = rs_tool.run(['-V', '-r', repo])
    assert v.returncode == 0, (
        'the repository does not verify after a killed backup (temporary '
        'files: %s)\n%s' % (_temp_files(repo), describe_output(v)))
    for name in _temp_files(repo):
        os.remove(repo / name)
    assert _data_files(repo) == ['2024-04-03-10-00-01.dat',
                                 '2024-04-03-10-00-01.fs',
                                 '2024-04-03-10-00-01.index'], (
        _data_files(repo))
    _check_repository(rs_tool, repo, datafs, tmp_path, 'after a killed backup')
