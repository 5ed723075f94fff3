"""Backups with ``--blob-dir`` of a LIVE blob storage: ZODB keeps committing
blobs and packing meanwhile.

A writer process (live_blob_writer.py, real ZODB FileStorage with a blob
directory) commits in a loop: new blobs, new content in existing blobs,
deletions of objects holding blobs, commits without blobs and now and then
an undo; every few seconds it packs as of now, which renames a new Data.fs
over the old one and then removes (once: moves to blobs.old) the blob files
of what was packed away.  Meanwhile our repozo backs it up with
``--blob-dir`` back to back into two repositories, one plain and one with
``-Q -z``, every run with its own fake clock (REPOZO_TEST_NOW) one second
after the previous one.  When the writer has stopped (it packs once more and
closes the database) each repository gets one last backup, which must hold
the writer's final state.

The writer logs, after every commit, the transaction id and, for every live
blob, the oid of its Blob and the md5 of its content.  Once it has stopped,
every backup of every repository is recovered as of its timestamp with
``--blob-dir``, and

  (a) the recovered Data.fs passes ZODB's fstest and ends with a
      transaction the writer committed, at least as recent as the last one
      it had logged before that backup started (for the last backups: its
      very last one);
  (b) the recovered blob directory holds exactly the files of the blob
      records of the recovered Data.fs, and each holds the content the
      writer logged for that oid at that record's transaction;
  (c) ZODB opens the recovered Data.fs with the recovered blob directory:
      every current blob record's file loads (``loadBlob``), and reading
      ``root['files']`` gives exactly the writer's blobs (keys, oids and
      contents) after the last transaction;

every repository verifies (``-V``), and no backup recorded a blob missing:
ZODB removes blob files only after the packed Data.fs replaced the old one,
and a backup that notices Data.fs was replaced starts over, so no blob of
the range it commits can have gone.

A backup may only fail if its message blames a replacement of Data.fs (a
pack) and a pack did run then; such failures are listed in the output.
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
import ZODB.blob
import ZODB.FileStorage
from ZODB.POSException import POSKeyError
from ZODB.scripts import fstest

from blob_helpers import (blob_path, blob_records, blob_snapshot, hex16, md5,
                          read_layout, read_manifest)
from conftest import describe_output
from live_driver import back_up_while_writing

HERE = Path(__file__).resolve().parent
WRITER = HERE / 'live_blob_writer.py'

WRITER_SECONDS = 15      # how long the writer commits
PACK_EVERY = 3.0         # seconds between the writer's packs
WRITER_PAUSE = 0.01      # seconds between the writer's commits
# Minimum time between the starts of two backups: each one is recovered and
# checked afterwards, so this bounds the run time.
BACKUP_GAP = 0.2

OPTION_SETS = {
    'plain': [],
    'Qz': ['-Q', '-z'],
}

CLOCK_START = datetime.datetime(2024, 9, 1, 8, 0, 0)

# What a failure "because of a pack" must say: Data.fs was replaced.
REPLACED = re.compile(r'Data\.fs\b.*\breplaced\b', re.I)
MISSING_MSG = re.compile(r'\bmissing\b', re.I)


@dataclass
class LiveBlobRun:
    base: Path
    datafs: Path
    blob_dir: Path
    repos: dict                    # key -> Path
    backups: list = field(default_factory=list)
    states: dict = field(default_factory=dict)   # tid16 -> {key: [oid, md5]}
    ops: dict = field(default_factory=dict)      # tid16 -> op
    tid_order: list = field(default_factory=list)
    packs: list = field(default_factory=list)    # pack records
    done: dict = None
    log_lines: list = field(default_factory=list)  # (end offset, record)
    writer_seconds: float = 0.0

    def last_tid_before(self, nbytes):
        last = None
        for end, rec in self.log_lines:
            if end > nbytes:
                break
            if 'tid' in rec:
                last = rec['tid']
        return last

    def packs_during(self, start, end):
        return [(p['pack'], round(p['start'], 3), round(p['end'], 3))
                for p in self.packs if p['start'] <= end and p['end'] >= start]


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
            run.ops[rec['tid']] = rec['op']
            run.tid_order.append(rec['tid'])
        elif 'pack' in rec:
            run.packs.append(rec)
        elif rec.get('done'):
            run.done = rec


@pytest.fixture(scope='module')
def live(tmp_path_factory, rs_tool):
    base = tmp_path_factory.mktemp('live-blobs')
    db_dir = base / 'db'
    db_dir.mkdir()
    log_path = base / 'writer.jsonl'
    errpath = base / 'writer.stderr'
    repos = {}
    for key in OPTION_SETS:
        repos[key] = base / ('repo_' + key)
        repos[key].mkdir()
    run = LiveBlobRun(base, db_dir / 'Data.fs', db_dir / 'blobs', repos)

    with open(errpath, 'wb') as err:
        t0 = time.monotonic()
        writer = subprocess.Popen(
            [sys.executable, str(WRITER), str(db_dir), str(log_path),
             str(WRITER_SECONDS), str(PACK_EVERY), '20240901',
             str(WRITER_PAUSE)],
            stdout=err, stderr=err, cwd=str(base))
        back_up_while_writing(
            writer, log_path, errpath, rs_tool, OPTION_SETS,
            lambda key: ['-B', '-r', str(repos[key]), '-f', str(run.datafs),
                         '--blob-dir', str(run.blob_dir)],
            CLOCK_START, BACKUP_GAP, run.backups)
        run.writer_seconds = time.monotonic() - t0
    if writer.returncode != 0:
        pytest.fail('the writer failed (exit %d):\n%s'
                    % (writer.returncode, errpath.read_text(errors='replace')))
    _read_log(run, log_path)
    assert run.done is not None, 'the writer did not log its end'
    print('\nlive blobs: writer %.1f s, %d commits (%d undos, %d deletes), '
          '%d packs removing %s blob files; %d backups'
          % (run.writer_seconds, run.done['commits'], run.done['undos'],
             run.done['deletes'], run.done['packs'],
             [p['removed'] for p in run.packs], len(run.backups)))
    return run


def _succeeded(run, key):
    return [b for b in run.backups if b.repo == key and b.proc.returncode == 0]


def _data_files(repo):
    return sorted(n for n in os.listdir(repo)
                  if n.endswith(('.fs', '.fsz', '.deltafs', '.deltafsz')))


def _missing_in_manifest(repo, stem):
    path = os.path.join(str(repo), stem + '.blobs')
    if not os.path.exists(path):
        return None
    _, lines = read_manifest(path)
    return [line for line in lines if line[2] == 'missing']


# ---------------------------------------------------------------------------

def test_live_blob_writer_really_ran(live):
    """The scenario exercised what it is meant to."""
    d = live.done
    assert d['commits'] >= 100, d
    assert d['packs'] >= 3, d
    assert d['undos'] >= 2, d
    assert d['deletes'] >= 5, d
    # Packs removed blob files (not only the last one), one kept them old.
    assert sum(1 for p in live.packs[:-1] if p['removed'] > 0) >= 2, live.packs
    assert any(p['keep_old'] for p in live.packs), live.packs
    for key in OPTION_SETS:
        runs = [b for b in live.backups if b.repo == key and not b.final]
        assert len(runs) >= 5, ('too few %s backups while the writer ran: %d'
                                % (key, len(runs)))
        files = _data_files(live.repos[key])
        fulls = [f for f in files if f.endswith(('.fs', '.fsz'))]
        incs = [f for f in files if f.endswith(('.deltafs', '.deltafsz'))]
        # Every pack makes the next backup a full one.
        assert len(fulls) >= 2 and incs, (key, files)
        print('%s: %d full and %d incremental backups'
              % (key, len(fulls), len(incs)))


def test_live_blob_backups_exit_0(live):
    """Every backup exits 0, except one whose message blames a replacement
    of Data.fs (a pack) while a pack did run."""
    bad, pack_related = [], []
    for b in live.backups:
        if b.proc.returncode == 0:
            continue
        err = b.proc.stderr.decode('utf-8', 'replace')
        if (b.proc.returncode == 1 and REPLACED.search(err)
                and live.packs_during(b.start - 0.5, b.end + 0.5)):
            pack_related.append(b)
        else:
            bad.append(b)
    for b in live.backups:
        err = b.proc.stderr.decode('utf-8', 'replace')
        print('  %s: exit %d in %.2f s%s%s' % (
            b.label(), b.proc.returncode, b.end - b.start,
            ' (pack during it)' if live.packs_during(b.start, b.end) else '',
            ' (started over)' if 'starting over' in err else ''))
    for b in pack_related:
        print('pack-related backup failure: %s, packs %s\n%s'
              % (b.label(), live.packs_during(b.start - 0.5, b.end + 0.5),
                 describe_output(b.proc)))
    print('%d backups, %d pack-related failures, %d started over'
          % (len(live.backups), len(pack_related),
             sum(1 for b in live.backups
                 if b'starting over' in b.proc.stderr)))
    if bad:
        pytest.fail('%d of %d backups failed:\n%s' % (
            len(bad), len(live.backups), '\n'.join(
                '%s, packs during it: %s\n%s'
                % (b.label(), live.packs_during(b.start, b.end),
                   describe_output(b.proc)) for b in bad)), pytrace=False)


def test_live_no_blob_recorded_missing(live):
    """ZODB removes blob files only after the packed Data.fs is in place,
    and a backup that sees Data.fs replaced starts over: no backup may
    record a blob as missing."""
    problems = []
    for b in live.backups:
        if b.proc.returncode != 0:
            continue
        err = b.proc.stderr.decode('utf-8', 'replace')
        missing = _missing_in_manifest(live.repos[b.repo], b.now)
        said = [line for line in err.splitlines() if MISSING_MSG.search(line)]
        if missing or said:
            problems.append(
                '%s (%.3f..%.3f; packs during it: %s): manifest %s.blobs '
                'records missing %s; stderr lines: %s\n%s'
                % (b.label(), b.start, b.end,
                   live.packs_during(b.start, b.end), b.now, missing, said,
                   describe_output(b.proc)))
    assert not problems, '\n'.join(problems)


def _expected_md5(live, oid16, tid16):
    state = live.states.get(tid16)
    if state is None:
        return None, 'tid %s was never logged by the writer' % tid16
    for key, (oid, digest) in state.items():
        if oid == oid16:
            return digest, None
    return None, ('oid %s holds no live blob in the writer\'s state after '
                  'tid %s (%s)' % (oid16, tid16, live.ops.get(tid16)))


def _check_recovered(live, b, out_fs, out_blobs):
    """(a)-(c) for one recovered backup: a list of problems."""
    what = '%s: recovered %s' % (b.label(), out_fs)
    problems = []
    try:
        fstest.check(str(out_fs))
    except Exception as e:     # FormatError, or anything else fstest hits
        return ['%s fails fstest: %s' % (what, e)]
    # (b) exactly the blob files of the blob records, with their content.
    layout = read_layout(str(out_blobs))
    if layout != 'bushy':
        problems.append('%s: blob directory layout %r, expected bushy'
                        % (what, layout))
        return problems
    records = blob_records(str(out_fs))
    want = {blob_path(layout, o, t): (hex16(o), hex16(t)) for o, t in records}
    got = blob_snapshot(str(out_blobs))
    if set(got) != set(want):
        problems.append('%s: blob files missing %s, unexpected %s'
                        % (what, sorted(set(want) - set(got))[:10],
                           sorted(set(got) - set(want))[:10]))
    for rel in sorted(set(got) & set(want)):
        oid16, tid16 = want[rel]
        digest, why = _expected_md5(live, oid16, tid16)
        if why:
            problems.append('%s: blob record %s %s: %s' % (what, oid16, tid16,
                                                           why))
        elif md5(got[rel]) != digest:
            problems.append('%s: blob file %s holds %d bytes, md5 %s; the '
                            'writer wrote md5 %s for oid %s at tid %s'
                            % (what, rel, len(got[rel]), md5(got[rel]),
                               digest, oid16, tid16))
    # (a) and (c) through ZODB.
    storage = ZODB.FileStorage.FileStorage(str(out_fs), blob_dir=str(out_blobs),
                                           read_only=True)
    db = ZODB.DB(storage)
    try:
        tid16 = hex16(storage.lastTransaction())
        for oid in storage._index.keys():
            try:
                data, serial = storage.load(oid)
            except POSKeyError:        # an undone creation
                continue
            if not ZODB.blob.is_blob_record(data):
                continue
            try:
                storage.loadBlob(oid, serial)
            except POSKeyError as e:
                problems.append('%s: loadBlob(%s, %s) of the current '
                                'revision: %r' % (what, hex16(oid),
                                                  hex16(serial), e))
        conn = db.open(transaction_manager=transaction.TransactionManager())
        try:
            state = {}
            for key, holder in conn.root()['files'].items():
                blob = holder['blob']
                try:
                    with blob.open('r') as f:
                        content = f.read()
                except Exception as e:
                    problems.append('%s: %s: blob.open("r") failed: %r'
                                    % (what, key, e))
                    continue
                state[key] = [hex16(blob._p_oid), md5(content)]
        finally:
            conn.close()
    finally:
        db.close()
    wanted = live.states.get(tid16)
    if wanted is None:
        problems.append('%s: last transaction %s was never logged as '
                        'committed by the writer' % (what, tid16))
        return problems
    if state != wanted:
        diff = sorted(k for k in set(state) | set(wanted)
                      if state.get(k) != wanted.get(k))
        problems.append('%s: blobs differ from the writer\'s after %s (%s) '
                        'in keys %s (read: %s; writer: %s)'
                        % (what, tid16, live.ops[tid16], diff[:8],
                           {k: state.get(k) for k in diff[:3]},
                           {k: wanted.get(k) for k in diff[:3]}))
    if b.final and tid16 != live.tid_order[-1]:
        problems.append('%s: ends at %s, not at the writer\'s last '
                        'transaction %s' % (what, tid16, live.tid_order[-1]))
    floor = live.last_tid_before(b.log_bytes)
    if floor is not None and tid16 < floor:
        problems.append('%s: ends at %s, older than %s which the writer had '
                        'committed before the backup started'
                        % (what, tid16, floor))
    return problems


@pytest.mark.parametrize('key', list(OPTION_SETS))
def test_live_blobs_recover_every_backup(live, rs_tool, key):
    """Recover each backup with --blob-dir as of its date and read it back
    with ZODB against the writer's log."""
    repo = live.repos[key]
    runs = _succeeded(live, key)
    assert runs, 'no successful %s backup' % key
    problems = []
    work = live.base / ('recover_' + key)
    work.mkdir()
    blob_counts = []
    for n, b in enumerate(runs):
        d = work / ('%03d' % n)
        d.mkdir()
        out_fs, out_blobs = d / 'Data.fs', d / 'blobs'
        proc = rs_tool.run(['-R', '-r', repo, '-o', out_fs,
                            '--blob-dir', out_blobs, '-D', b.now])
        if proc.returncode != 0:
            problems.append('%s: recover --blob-dir -D %s failed\n%s'
                            % (b.label(), b.now, describe_output(proc)))
            continue
        found = _check_recovered(live, b, out_fs, out_blobs)
        if found:
            found.append('  (the backup itself, %.3f..%.3f, packs during '
                         'it: %s)\n%s' % (b.start, b.end,
                                           live.packs_during(b.start, b.end),
                                           describe_output(b.proc)))
        problems.extend(found)
        blob_counts.append(len(blob_snapshot(str(out_blobs))))
    print('%s: %d backups recovered and checked (%s..%s blob files each)'
          % (key, len(runs), min(blob_counts, default=0),
             max(blob_counts, default=0)))
    if problems:
        pytest.fail('%d problems in %s (%s):\n%s' % (
            len(problems), key, repo, '\n'.join(problems)), pytrace=False)


@pytest.mark.parametrize('quick', [[], ['-Q']], ids=['md5', 'quick'])
@pytest.mark.parametrize('key', list(OPTION_SETS))
def test_live_blobs_repository_verifies(live, rs_tool, key, quick):
    proc = rs_tool.run(['-V', '-r', live.repos[key]] + quick)
    missing = {b.now: _missing_in_manifest(live.repos[key], b.now)
               for b in _succeeded(live, key)}
    missing = {k: v for k, v in missing.items() if v}
    assert proc.returncode == 0, (
        '%s repository does not verify%s\n%s'
        % (key, ' (manifests recording missing blobs: %s)' % missing
           if missing else '', describe_output(proc)))
