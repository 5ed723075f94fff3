"""Backups of a LIVE database: ZODB keeps committing and packing meanwhile.

A writer process (live_writer.py, real ZODB) commits to Data.fs in a loop
and packs it every few seconds (a pack renames a new file over Data.fs).
Meanwhile our repozo backs it up back to back into four repositories, one
per option set (plain, -Q, -z, -Q -z), every run with its own fake clock
(REPOZO_TEST_NOW), one second after the previous one.

When the writer has stopped (it packs once more and closes the database,
so Data.fs.index covers the whole file) each repository gets one last
backup, which must hold the writer's final state.

The writer logs, after every commit, the transaction id and a digest of the
whole logical state it committed.  Once it has stopped, every backup of
every repository is recovered as of its timestamp, and the recovered file

  (a) passes ZODB's fstest,
  (b) opens read-only with FileStorage using the installed .index
      (``_used_index == 1``),
  (c) ends with a transaction the writer committed, at least as recent as
      the last one the writer had logged before that backup started, and
      reads (through ZODB) exactly as the writer's state after it,
  (d) is byte for byte (with its .index) what Python repozo recovers from
      the same repository as of the same date;

and every repository verifies (``-V``).

A backup may only fail if its message clearly blames a pack that replaced
Data.fs while it ran (and a pack did run then); every such failure is
listed in the test output.  Any other failure fails the test.
"""
import datetime
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import transaction
import ZODB
import ZODB.FileStorage
from ZODB.scripts import fstest

from conftest import describe_output
from live_driver import back_up_while_writing
from live_writer import digest

HERE = Path(__file__).resolve().parent
WRITER = HERE / 'live_writer.py'

WRITER_SECONDS = 15      # how long the writer commits
PACK_EVERY = 3.0         # seconds between the writer's packs
WRITER_PAUSE = 0.01      # seconds between the writer's commits
# Minimum time between the starts of two backups.  Each backup is recovered
# and checked afterwards (about 0.5 s each), so this bounds the run time.
BACKUP_GAP = 0.25

OPTION_SETS = {
    'plain': [],
    'Q': ['-Q'],
    'z': ['-z'],
    'Qz': ['-Q', '-z'],
}

CLOCK_START = datetime.datetime(2024, 3, 1, 12, 0, 0)

# What a failure "clearly because of a pack" must say.
PACK_WORDS = re.compile(r'pack|replaced|renamed|changed while|'
                        r'no such file', re.I)


@dataclass
class LiveRun:
    base: Path
    datafs: Path
    repos: dict                    # key -> Path
    backups: list = field(default_factory=list)
    states: dict = field(default_factory=dict)     # tid hex -> state
    tid_order: list = field(default_factory=list)  # tid hex, commit order
    packs: list = field(default_factory=list)      # (start, end)
    done: dict = None
    log_lines: list = field(default_factory=list)  # (end offset, record)
    writer_seconds: float = 0.0

    def last_tid_before(self, nbytes):
        """The last tid the writer had logged within the first nbytes."""
        last = None
        for end, rec in self.log_lines:
            if end > nbytes:
                break
            if 'tid' in rec:
                last = rec['tid']
        return last

    def packs_during(self, start, end):
        return [p for p in self.packs if p[0] <= end and p[1] >= start]


def _read_log(run, path):
    with open(path, 'rb') as f:
        raw = f.read()
    pos = 0
    for line in raw.splitlines(keepends=True):
        pos += len(line)
        rec = json.loads(line)
        run.log_lines.append((pos, rec))
        if 'tid' in rec:
            assert rec['tid'] not in run.states, 'tid logged twice: %s' % rec
            run.states[rec['tid']] = rec['state']
            run.tid_order.append(rec['tid'])
        elif 'pack' in rec:
            run.packs.append((rec['start'], rec['end']))
        elif rec.get('done'):
            run.done = rec


@pytest.fixture(scope='module')
def live(tmp_path_factory, rs_tool):
    base = tmp_path_factory.mktemp('live')
    datafs = base / 'Data.fs'
    log_path = base / 'writer.jsonl'
    errpath = base / 'writer.stderr'
    repos = {}
    for key in OPTION_SETS:
        repos[key] = base / ('repo_' + key)
        repos[key].mkdir()
    run = LiveRun(base, datafs, repos)

    with open(errpath, 'wb') as err:
        t0 = time.monotonic()
        writer = subprocess.Popen(
            [sys.executable, str(WRITER), str(datafs), str(log_path),
             str(WRITER_SECONDS), str(PACK_EVERY), '20240301',
             str(WRITER_PAUSE)],
            stdout=err, stderr=err, cwd=str(base))
        back_up_while_writing(
            writer, log_path, errpath, rs_tool, OPTION_SETS,
            lambda key: ['-B', '-r', str(repos[key]), '-f', str(datafs)],
            CLOCK_START, BACKUP_GAP, run.backups)
        run.writer_seconds = time.monotonic() - t0
    if writer.returncode != 0:
        pytest.fail('the writer failed (exit %d):\n%s'
                    % (writer.returncode, errpath.read_text(errors='replace')))
    _read_log(run, log_path)
    assert run.done is not None, 'the writer did not log its end'
    print('\nlive: writer %.1f s, %d commits, %d packs; %d backups'
          % (run.writer_seconds, run.done['commits'], run.done['packs'],
             len(run.backups)))
    return run


def _pack_failure(run, b):
    """A non-zero backup whose message clearly blames a pack that ran."""
    err = b.proc.stderr.decode('utf-8', 'replace')
    return (b.proc.returncode == 1 and PACK_WORDS.search(err)
            and 'Data.fs' in err
            and run.packs_during(b.start - 0.5, b.end + 0.5))


def _succeeded(run, key):
    return [b for b in run.backups if b.repo == key and b.proc.returncode == 0]


def test_live_writer_really_ran(live):
    """The scenario exercised what it is meant to: many commits and packs,
    backups of every option set, pack-time full backups."""
    assert live.done['commits'] >= 100, live.done
    assert live.done['packs'] >= 2, live.done
    for key in OPTION_SETS:
        n = len([b for b in live.backups if b.repo == key and not b.final])
        assert n >= 2, 'too few %s backups while the writer ran: %d' % (key, n)


def test_live_backups_exit_0(live):
    """Every backup exits 0, except a clearly worded pack-related failure."""
    bad, pack_related = [], []
    for b in live.backups:
        if b.proc.returncode == 0:
            continue
        if _pack_failure(live, b):
            pack_related.append(b)
        else:
            bad.append(b)
    for b in pack_related:
        print('pack-related backup failure: %s (%.3f..%.3f, packs %s)\n%s'
              % (b.label(), b.start, b.end,
                 live.packs_during(b.start - 0.5, b.end + 0.5),
                 describe_output(b.proc)))
    for b in live.backups:
        print('  %s: exit %d in %.2f s%s' % (
            b.label(), b.proc.returncode, b.end - b.start,
            ' (pack during it)' if live.packs_during(b.start, b.end) else ''))
    print('%d backups, %d pack-related failures'
          % (len(live.backups), len(pack_related)))
    if bad:
        pytest.fail('%d of %d backups failed:\n%s' % (
            len(bad), len(live.backups), '\n'.join(
                '%s, packs during it: %s\n%s'
                % (b.label(), live.packs_during(b.start, b.end),
                   describe_output(b.proc)) for b in bad)), pytrace=False)


def _repo_files(path):
    return sorted(n for n in os.listdir(path) if not n.startswith('.'))


def _check_recovered(live, b, out, rs_proc):
    """(a)-(c) for one recovered file; returns (problems, last tid)."""
    what = '%s: recovered %s' % (b.label(), out)
    problems = []
    try:
        fstest.check(str(out))
    except Exception as e:  # FormatError, or anything else fstest hits
        problems.append('%s fails fstest: %s' % (what, e))
        return problems, None
    if not os.path.exists(str(out) + '.index'):
        problems.append('%s: no .index installed\n%s'
                        % (what, describe_output(rs_proc)))
    storage = ZODB.FileStorage.FileStorage(str(out), read_only=True)
    try:
        used_index = storage._used_index
        tid = storage.lastTransaction().hex()
        db = ZODB.DB(storage)
        try:
            conn = db.open(
                transaction_manager=transaction.TransactionManager())
            try:
                state = digest(conn.root())
            finally:
                conn.close()
        finally:
            db.close()
    finally:
        storage.close()
    if used_index != 1:
        problems.append('%s: FileStorage did not use the installed index '
                        '(_used_index=%r)' % (what, used_index))
    want = live.states.get(tid)
    if want is None:
        problems.append('%s: last transaction %s was never logged as '
                        'committed by the writer' % (what, tid))
        return problems, tid
    if state != want:
        diff = sorted(k for k in set(state) | set(want)
                      if state.get(k) != want.get(k))
        problems.append('%s: state differs from the writer\'s after %s in '
                        'keys %s (ours: %s; writer: %s)'
                        % (what, tid, diff[:8],
                           {k: state.get(k) for k in diff[:3]},
                           {k: want.get(k) for k in diff[:3]}))
    if b.final and tid != live.tid_order[-1]:
        problems.append('%s: ends at %s, not at the writer\'s last '
                        'transaction %s' % (what, tid, live.tid_order[-1]))
    floor = live.last_tid_before(b.log_bytes)
    if floor is not None and tid < floor:
        problems.append('%s: ends at %s, older than %s which the writer had '
                        'committed before the backup started'
                        % (what, tid, floor))
    return problems, tid


@pytest.mark.parametrize('key', list(OPTION_SETS))
def test_live_recover_every_backup(live, tools, key):
    """Recover each backup as of its date: fstest, index used, the writer's
    state, and the same bytes as Python repozo."""
    repo = live.repos[key]
    runs = _succeeded(live, key)
    assert runs, 'no successful %s backup' % key
    files = _repo_files(repo)
    problems = []
    prev_tid = None
    work = live.base / ('recover_' + key)
    work.mkdir()
    for n, b in enumerate(runs):
        d = work / ('%03d' % n)
        d.mkdir()
        out = d / 'out.fs'
        rs = tools['rs'].run(['-R', '-r', repo, '-D', b.now, '-o', out])
        if rs.returncode != 0:
            problems.append('%s: our recovery failed\n%s'
                            % (b.label(), describe_output(rs)))
            continue
        found, tid = _check_recovered(live, b, out, rs)
        if found:
            found.append('  (the backup itself, %.3f..%.3f, packs during '
                         'it: %s)\n%s' % (b.start, b.end,
                                           live.packs_during(b.start, b.end),
                                           describe_output(b.proc)))
        problems.extend(found)
        if tid is not None and prev_tid is not None and tid < prev_tid:
            problems.append('%s: recovered tid %s is older than the previous '
                            'backup\'s %s' % (b.label(), tid, prev_tid))
        if tid is not None:
            prev_tid = tid
        py_out = d / 'py.fs'
        py = tools['py'].run(['-R', '-r', repo, '-D', b.now, '-o', py_out])
        if py.returncode != 0:
            problems.append('%s: python repozo could not recover it\n%s'
                            % (b.label(), describe_output(py)))
            continue
        for suffix in ('', '.index'):
            ours, theirs = Path(str(out) + suffix), Path(str(py_out) + suffix)
            if not theirs.exists():
                problems.append('%s: python recovered no %s'
                                % (b.label(), theirs.name))
            elif not ours.exists() or ours.read_bytes() != theirs.read_bytes():
                problems.append('%s: out.fs%s differs from python\'s '
                                '(%s vs %s bytes)'
                                % (b.label(), suffix,
                                   ours.stat().st_size if ours.exists()
                                   else 'no file', theirs.stat().st_size))
    fulls = [f for f in files if f.endswith(('.fs', '.fsz'))]
    deltas = [f for f in files if f.endswith(('.deltafs', '.deltafsz'))]
    print('%s: %d backups recovered and checked; repository holds %d full '
          'and %d incremental backups' % (key, len(runs), len(fulls),
                                          len(deltas)))
    if problems:
        pytest.fail('%d problems in %s (%s):\n%s' % (
            len(problems), key, repo, '\n'.join(problems)), pytrace=False)


@pytest.mark.parametrize('key', list(OPTION_SETS))
def test_live_repository_verifies(live, tools, key):
    proc = tools['rs'].run(['-V', '-r', live.repos[key]])
    assert proc.returncode == 0, '%s repository does not verify\n%s\n%s' % (
        key, describe_output(proc), _repo_files(live.repos[key]))
