"""Backups of a ZODB blob storage: ``--blob-dir`` with -B, -R and -V.

A real ZODB FileStorage with a blob directory (blob_helpers.BlobModel) goes
through commits of new and changed blobs, undo, packs (keeping and not
keeping old files) and commits that touch no blob; after each phase our
repozo backs it up with ``--blob-dir`` (several option sets, sometimes
while the database is open).  What the live blob directory held at every
backup (paths and bytes) is kept, and every backup date is recovered and
compared with it, then read back through ZODB.

The repository format checked here (docs of the feature): next to repozo's
own files, ``<stem>.blobs`` per backup (``repozo-blobs 1``, ``layout
bushy|lawn``, then ``<oid16> <tid16> <size> <md5>`` or ``<oid16> <tid16>
missing`` per blob record of the backup's Data.fs range) and a pool
``blobs/<2 hex>/<oid16>-<tid16>-<md5>.blob`` holding each blob file once.
"""
import datetime
import os
import re
import shutil
import time
from dataclasses import dataclass, field

import pytest
import transaction
import ZODB
import ZODB.FileStorage
from ZODB.utils import oid_repr, p64

from blob_helpers import (LARGE, POOL, BlobModel, ManifestError, all_files,
                          blob_path, blob_records, blob_snapshot, hex16, md5,
                          mode_of, pool_files, pool_path_of, read_layout,
                          read_manifest)
from conftest import describe_output

CLOCK_START = datetime.datetime(2024, 6, 1, 23, 50, 7)
CLOCK_STEP = datetime.timedelta(minutes=7, seconds=3)

FULL_EXTS = ('.fs', '.fsz')
DATA_RE = re.compile(r'^(\d{4}(?:-\d\d){5})\.(fs|fsz|deltafs|deltafsz)$')
LOCK_NAME = '.repozo.lock'


def fmt_now(t):
    return t.strftime('%Y-%m-%d-%H-%M-%S')


def text(b):
    return b.decode('utf-8', 'replace')


def top_files(repo):
    """Top-level entries of a repository (directories end with '/')."""
    out = []
    for name in os.listdir(repo):
        if name == LOCK_NAME:
            continue
        out.append(name + '/' if os.path.isdir(os.path.join(repo, name))
                   else name)
    return sorted(out)


def assert_ok(proc, what):
    assert proc.returncode == 0, '%s failed\n%s' % (what, describe_output(proc))


def assert_exit1(proc, what):
    assert proc.returncode == 1, ('%s: expected exit 1\n%s'
                                  % (what, describe_output(proc)))


def names_blob(err, oid16, tid16, *names):
    """Whether a message names a blob: by one of ``names`` (a path or a
    pool file name) or by its oid and tid, in 16 hex digits or as ZODB
    prints them (``0x0b``)."""
    if any(n and n in err for n in names):
        return True
    oid_forms = (oid16, oid_repr(p64(int(oid16, 16))))
    return any(o in err for o in oid_forms) and tid16 in err


def read(path):
    with open(path, 'rb') as f:
        return f.read()


def write_over(path, data):
    """Replace a (possibly read-only) file's content in place."""
    os.chmod(path, 0o644)
    with open(path, 'wb') as f:
        f.write(data)


def diff_snapshots(got, want):
    """Human readable differences between two {path: bytes} snapshots."""
    out = []
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    if missing:
        out.append('missing: %s' % missing)
    if extra:
        out.append('unexpected: %s' % extra)
    for p in sorted(set(want) & set(got)):
        if want[p] != got[p]:
            out.append('%s: %d bytes, expected %d bytes (md5 %s, expected %s)'
                       % (p, len(got[p]), len(want[p]), md5(got[p]),
                          md5(want[p])))
    return out


# ---------------------------------------------------------------------------
# The scenario
# ---------------------------------------------------------------------------

def _create(m):
    m.add(5, sizes=(0, LARGE), note='first blobs (one empty, one large)')
    m.add(4)
    m.plain()
    m.add(3)


def _nightly(m):
    m.open()
    m.add(4)
    m.change(2)


def _undo(m):
    m.change(1)
    m.undo_last()        # copies the old blob under the undo's tid
    m.add(1)
    m.undo_last()        # undoes a blob's creation: no blob record


def _gzip(m):
    m.close()
    m.add(2)
    m.change(1)


def _plain(m):
    m.plain()


def _pack(m):
    m.delete(2)
    m.change(1)
    m.pack()             # pack_keep_old: old files go to blobs.old
    m.add(2)


def _after_pack(m):
    m.open()
    m.change(2)


def _pack_gc(m):
    m.close()
    m.open(pack_keep_old=False)
    m.delete(2)
    m.pack()             # the deleted blobs' files are removed
    m.close()


def _final(m):
    m.open()
    m.add(1)


# name, change, repozo options, kind of backup ('full', 'inc', None: no
# backup file at all), number of files the pool must gain.
STEPS = [
    ('create', _create, [], 'full', 12),
    ('nightly', _nightly, [], 'inc', 6),
    ('undo', _undo, ['-Q'], 'inc', 3),
    ('gzip', _gzip, ['-z'], 'inc', 3),
    ('plain-only', _plain, [], 'inc', 0),
    ('nochange', None, [], None, 0),
    ('pack', _pack, [], 'full', 3),
    ('after-pack', _after_pack, ['-Q', '-z'], 'inc', 2),
    ('pack-gc', _pack_gc, ['-F'], 'full', 0),
    ('final', _final, [], 'inc', 1),
]
STEP_IDS = ['%d-%s' % (i, s[0]) for i, s in enumerate(STEPS)]
BACKUP_STEP_IDS = [sid for sid, s in zip(STEP_IDS, STEPS) if s[3]]


@dataclass
class BStep:
    index: int
    name: str
    now: str
    opts: list
    kind: str                 # expected: 'full', 'inc' or None
    gain: int                 # expected number of new pool files
    db_open: bool             # the DB was open during the backup
    datafs: bytes             # Data.fs when backed up
    blobs: dict               # live blob snapshot {rel path: bytes}
    layout: str
    contents: dict            # key -> bytes, what ZODB reads
    records: list             # [(oid, tid)] blob records of datafs
    proc: object = None
    new_top: list = field(default_factory=list)
    pool_before: list = field(default_factory=list)
    pool_after: list = field(default_factory=list)
    old_dir: dict = field(default_factory=dict)   # blobs.old snapshot

    def label(self):
        return 'step %d (%s, %s, %s)' % (self.index, self.name, self.now,
                                         ' '.join(self.opts) or 'no options')

    def data_file(self):
        names = [n for n in self.new_top if DATA_RE.match(n)]
        return names[0] if len(names) == 1 else None


@dataclass
class BlobScenario:
    base: str
    live: str
    repo: str
    pristine: str
    steps: list
    final_now: str
    model: BlobModel

    def step(self, sid):
        return self.steps[STEP_IDS.index(sid)]

    def backup_steps(self):
        return [s for s in self.steps if s.kind]

    def previous_backup(self, step):
        before = [s for s in self.backup_steps() if s.index < step.index]
        return before[-1] if before else None

    def outdir(self, name):
        d = os.path.join(self.base, 'out', name)
        os.makedirs(d)
        return d


def run_backup(tools, repo, model, now, opts):
    return tools['rs'].run(['-B', '-r', repo, '-f', model.path,
                            '--blob-dir', model.blob_dir] + list(opts),
                           now=now)


@pytest.fixture(scope='module')
def scenario(tools, tmp_path_factory):
    base = str(tmp_path_factory.mktemp('blob-scenario'))
    live = os.path.join(base, 'live')
    repo = os.path.join(base, 'repo')
    os.makedirs(live)
    os.makedirs(repo)
    model = BlobModel(live, seed=20240601)
    clock = CLOCK_START
    steps = []
    try:
        for i, (name, change, opts, kind, gain) in enumerate(STEPS):
            if change is not None:
                change(model)
            now = fmt_now(clock)
            clock += CLOCK_STEP
            snap_dir = os.path.join(base, 'snap-%02d' % i)
            os.makedirs(snap_dir)
            datafs = read(model.path)
            with open(os.path.join(snap_dir, 'Data.fs'), 'wb') as f:
                f.write(datafs)
            step = BStep(i, name, now, opts, kind, gain, model.is_open,
                         datafs, blob_snapshot(model.blob_dir),
                         read_layout(model.blob_dir), dict(model.contents),
                         blob_records(os.path.join(snap_dir, 'Data.fs')))
            step.old_dir = blob_snapshot(model.blob_dir + '.old')
            top_before = top_files(repo)
            step.pool_before = pool_files(repo)
            step.proc = run_backup(tools, repo, model, now, opts)
            step.new_top = sorted(set(top_files(repo)) - set(top_before))
            step.pool_after = pool_files(repo)
            steps.append(step)
    finally:
        model.close()
    pristine = os.path.join(base, 'pristine')
    shutil.copytree(repo, pristine, symlinks=True)
    return BlobScenario(base, live, repo, pristine, steps,
                        fmt_now(clock + datetime.timedelta(days=1)), model)


def _copy_repo(scenario, name):
    dest = os.path.join(scenario.base, 'copies', name)
    shutil.copytree(scenario.pristine, dest, symlinks=True)
    return dest


# ---------------------------------------------------------------------------
# Checking a recovered state
# ---------------------------------------------------------------------------

def read_back_with_zodb(out_fs, out_blobs, step):
    """Open the recovered files with ZODB and read every blob."""
    problems = []
    storage = ZODB.FileStorage.FileStorage(out_fs, blob_dir=out_blobs,
                                           read_only=True)
    db = ZODB.DB(storage)
    try:
        for oid, tid in blob_records(out_fs):
            rel = blob_path(step.layout, oid, tid)
            try:
                fn = storage.loadBlob(oid, tid)
            except Exception as e:    # POSKeyError: no file
                problems.append('loadBlob(%s, %s): %r' % (hex16(oid),
                                                          hex16(tid), e))
                continue
            if read(fn) != step.blobs.get(rel):
                problems.append('loadBlob(%s, %s) -> %s has the wrong bytes'
                                % (hex16(oid), hex16(tid), fn))
        conn = db.open(transaction_manager=transaction.TransactionManager())
        try:
            got = {}
            for key, holder in conn.root()['files'].items():
                try:
                    with holder['blob'].open('r') as f:
                        got[key] = f.read()
                except Exception as e:
                    problems.append('%s: blob.open("r") failed: %r' % (key, e))
            if set(got) != set(step.contents):
                problems.append('objects: %s, expected %s'
                                % (sorted(got), sorted(step.contents)))
            for key in sorted(set(got) & set(step.contents)):
                if got[key] != step.contents[key]:
                    problems.append('%s reads %d bytes, expected %d bytes'
                                    % (key, len(got[key]),
                                       len(step.contents[key])))
        finally:
            conn.close()
    finally:
        db.close()
    return problems


def check_recovered(proc, out_fs, out_blobs, step, what):
    assert_ok(proc, what)
    got = read(out_fs)
    assert got == step.datafs, ('%s: recovered Data.fs has %d bytes, expected '
                                '%d (the Data.fs of %s)\n%s'
                                % (what, len(got), len(step.datafs),
                                   step.label(), describe_output(proc)))
    assert os.path.isdir(out_blobs), '%s: %s was not created' % (what,
                                                                  out_blobs)
    diffs = diff_snapshots(blob_snapshot(out_blobs), step.blobs)
    assert not diffs, ('%s: the blob directory differs from the live one at '
                       '%s:\n  %s' % (what, step.label(), '\n  '.join(diffs)))
    files = all_files(out_blobs)
    want = sorted(list(step.blobs) + ['.layout'])
    assert files == want, ('%s: %s should hold exactly the blob files and '
                           '.layout;\n  unexpected: %s\n  missing: %s'
                           % (what, out_blobs, sorted(set(files) - set(want)),
                              sorted(set(want) - set(files))))
    assert read_layout(out_blobs) == step.layout, (
        '%s: .layout says %r, the live directory said %r'
        % (what, read_layout(out_blobs), step.layout))
    writable = ['%s (%o)' % (rel, mode_of(os.path.join(out_blobs, rel)))
                for rel in step.blobs
                if mode_of(os.path.join(out_blobs, rel)) != 0o444]
    assert not writable, ('%s: blob files should be read-only (0444): %s'
                          % (what, writable))
    # Each output directory here holds only what -R makes: nothing of the
    # way the blob directory was built and swapped in may stay behind.
    parent = os.path.dirname(os.path.abspath(out_blobs))
    if parent == os.path.dirname(os.path.abspath(out_fs)):
        # ZODB's lock file, which a recovery onto an existing Data.fs
        # takes as ZODB does, and leaves as ZODB leaves it.
        made = {os.path.basename(out_fs), os.path.basename(out_fs) + '.index',
                os.path.basename(out_fs) + '.lock', os.path.basename(out_blobs)}
        left = sorted(set(os.listdir(parent)) - made)
        assert not left, ('%s: left behind beside the blob directory: %s'
                          % (what, left))
    problems = read_back_with_zodb(out_fs, out_blobs, step)
    assert not problems, ('%s: reading the recovered database with ZODB:\n  %s'
                          % (what, '\n  '.join(problems)))


def recover(tools, repo, out_dir, date, now, extra=(), who='rs'):
    out_fs = os.path.join(out_dir, 'Data.fs')
    out_blobs = os.path.join(out_dir, 'blobs')
    args = ['-R', '-r', repo, '-o', out_fs, '--blob-dir', out_blobs]
    if date is not None:
        args += ['-D', date]
    proc = tools[who].run(args + list(extra), now=now)
    return proc, out_fs, out_blobs


# ---------------------------------------------------------------------------
# The scenario itself (checks what ZODB did, so the rest means something)
# ---------------------------------------------------------------------------

def test_scenario_is_what_it_claims(scenario):
    steps = scenario.steps
    for step in steps:
        assert step.layout == 'bushy', step.label()
        paths = sorted(blob_path(step.layout, o, t) for o, t in step.records)
        assert paths == sorted(step.blobs), (
            '%s: blob records and live blob files do not match' % step.label())
    by = {s.name: s for s in steps}
    assert by['create'].blobs and any(len(b) == 0 for b in
                                      by['create'].blobs.values())
    assert by['nightly'].db_open and by['undo'].db_open
    assert by['after-pack'].db_open and by['final'].db_open
    assert not by['create'].db_open and not by['gzip'].db_open
    # The packs dropped blob files, the undo added one.
    assert set(by['pack'].blobs) - set(by['plain-only'].blobs)
    assert set(by['plain-only'].blobs) - set(by['pack'].blobs)
    assert set(by['after-pack'].blobs) - set(by['pack-gc'].blobs)
    assert not set(by['pack-gc'].blobs) - set(by['after-pack'].blobs)
    # pack_keep_old kept the packed away files in blobs.old ...
    assert (set(by['plain-only'].blobs) - set(by['pack'].blobs)
            <= set(by['pack'].old_dir))
    # ... and the pack without it removed them.
    assert not by['pack-gc'].old_dir


# ---------------------------------------------------------------------------
# Backing up
# ---------------------------------------------------------------------------

@pytest.mark.parametrize('sid', STEP_IDS)
def test_backup_runs_and_makes_the_expected_kind(scenario, sid):
    step = scenario.step(sid)
    assert_ok(step.proc, 'backup at ' + step.label())
    if step.kind is None:
        assert step.new_top == [], ('%s: nothing changed, yet the backup '
                                    'wrote %s' % (step.label(), step.new_top))
        return
    data = step.data_file()
    assert data, ('%s: expected one new data file, got %s\n%s'
                  % (step.label(), step.new_top, describe_output(step.proc)))
    stem, ext = os.path.splitext(data)
    assert stem == step.now, (step.label(), data)
    is_full = ext in FULL_EXTS
    assert is_full == (step.kind == 'full'), (
        '%s: expected a%s backup, got %s\n%s'
        % (step.label(), ' full' if step.kind == 'full' else 'n incremental',
           data, describe_output(step.proc)))
    assert ext.endswith('z') == ('-z' in step.opts), (step.label(), data)
    assert stem + '.blobs' in step.new_top, (
        '%s: no %s.blobs manifest written; new files: %s'
        % (step.label(), stem, step.new_top))


@pytest.mark.parametrize('sid', BACKUP_STEP_IDS)
def test_manifest_lists_the_blob_records_of_the_range(scenario, sid):
    step = scenario.step(sid)
    path = os.path.join(scenario.pristine, step.now + '.blobs')
    assert os.path.isfile(path), '%s: %s missing' % (step.label(), path)
    try:
        layout, lines = read_manifest(path)
    except ManifestError as e:
        pytest.fail(str(e), pytrace=False)
    assert layout == 'bushy', (step.label(), layout)
    prev = scenario.previous_backup(step)
    want_records = step.records
    if step.kind == 'inc':
        seen = set(prev.records)
        want_records = [r for r in step.records if r not in seen]
    want = []
    for oid, tid in want_records:
        data = step.blobs[blob_path(step.layout, oid, tid)]
        want.append((hex16(oid), hex16(tid), len(data), md5(data)))
    assert sorted(lines) == sorted(want), (
        '%s: %s lists\n  %s\nexpected (the blob records of [%s, end))\n  %s'
        % (step.label(), os.path.basename(path),
           '\n  '.join(map(str, sorted(lines))) or '-',
           'start' if step.kind == 'inc' else '0',
           '\n  '.join(map(str, sorted(want))) or '-'))


def test_pool_gains_only_blobs_it_has_not_seen(scenario):
    problems = []
    seen = {}   # pool file name -> blob bytes
    for step in scenario.steps:
        gained = sorted(set(step.pool_after) - set(step.pool_before))
        lost = sorted(set(step.pool_before) - set(step.pool_after))
        if lost:
            problems.append('%s removed pool files %s' % (step.label(), lost))
        if len(gained) != step.gain:
            problems.append('%s: the pool gained %d files, expected %d: %s'
                            % (step.label(), len(gained), step.gain, gained))
        want = {}
        for oid, tid in step.records:
            data = step.blobs[blob_path(step.layout, oid, tid)]
            name = '%s-%s-%s.blob' % (hex16(oid), hex16(tid), md5(data))
            if name not in seen:
                want[name] = data
        got = {g.rsplit('/', 1)[-1]: g for g in gained}
        if step.kind and set(got) != set(want):
            problems.append('%s: pool gained %s, expected %s'
                            % (step.label(), sorted(got), sorted(want)))
        for name, rel in got.items():
            if not re.match(r'^[0-9a-f]{2}/[0-9a-f]{16}-[0-9a-f]{16}-'
                            r'[0-9a-f]{32}\.blob$', rel):
                problems.append('%s: pool file %s is not named '
                                '<2 hex>/<oid16>-<tid16>-<md5>.blob'
                                % (step.label(), rel))
            data = read(os.path.join(scenario.pristine, POOL, rel))
            if name in want and data != want[name]:
                problems.append('%s: pool file %s does not hold the blob\'s '
                                'bytes' % (step.label(), rel))
            if md5(data) != name[34:66]:
                problems.append('%s: pool file %s: md5 of content is %s'
                                % (step.label(), rel, md5(data)))
        seen.update(want)
    assert not problems, '\n'.join(problems)


# ---------------------------------------------------------------------------
# Recovering
# ---------------------------------------------------------------------------

@pytest.mark.parametrize('sid', STEP_IDS)
def test_recover_every_date_gives_the_live_blob_directory(scenario, tools,
                                                          sid):
    step = scenario.step(sid)
    out = scenario.outdir('date-' + sid)
    proc, out_fs, out_blobs = recover(tools, scenario.repo, out, step.now,
                                      scenario.final_now)
    check_recovered(proc, out_fs, out_blobs, step,
                    'recover -D %s' % step.now)


@pytest.mark.parametrize('sid', ['3-gzip', '9-final'])
def test_recover_with_verify(scenario, tools, sid):
    step = scenario.step(sid)
    out = scenario.outdir('w-' + sid)
    proc, out_fs, out_blobs = recover(tools, scenario.repo, out, step.now,
                                      scenario.final_now, extra=['-w'])
    check_recovered(proc, out_fs, out_blobs, step,
                    'recover -w -D %s' % step.now)


def test_recover_newest_by_default(scenario, tools):
    out = scenario.outdir('newest')
    proc, out_fs, out_blobs = recover(tools, scenario.repo, out, None,
                                      scenario.final_now)
    check_recovered(proc, out_fs, out_blobs, scenario.steps[-1],
                    'recover (no -D)')


def test_recover_replaces_an_existing_blob_directory(scenario, tools):
    """Other content of DIR goes; DIR holds exactly the state's files."""
    new = scenario.step('9-final')
    old = scenario.step('1-nightly')
    out = scenario.outdir('replace')
    out_blobs = os.path.join(out, 'blobs')
    os.makedirs(os.path.join(out_blobs, 'tmp'))
    with open(os.path.join(out_blobs, 'tmp', 'leftover.tmp'), 'wb') as f:
        f.write(b'x')
    with open(os.path.join(out_blobs, 'junk.txt'), 'wb') as f:
        f.write(b'not a blob')
    with open(os.path.join(out_blobs, '.layout'), 'w') as f:
        f.write('lawn')
    # Blob files of an older state, some of them with wrong bytes.
    for i, (rel, data) in enumerate(sorted(old.blobs.items())):
        p = os.path.join(out_blobs, *rel.split('/'))
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, 'wb') as f:
            f.write(data if i % 2 else b'stale ' + data)
    stale = sorted(set(old.blobs) - set(new.blobs))
    assert stale, 'scenario: the old state should have other blob files'
    with open(os.path.join(out, 'Data.fs'), 'wb') as f:
        f.write(b'old content')
    proc, out_fs, out_blobs = recover(tools, scenario.repo, out, new.now,
                                      scenario.final_now)
    check_recovered(proc, out_fs, out_blobs, new,
                    'recover into an existing, different blob directory')


# ---------------------------------------------------------------------------
# Verifying, and damage to the pool
# ---------------------------------------------------------------------------

@pytest.mark.parametrize('quick', [[], ['-Q']], ids=['full', 'quick'])
def test_verify_passes(scenario, tools, quick):
    proc = tools['rs'].run(['-V', '-r', scenario.repo] + quick,
                           now=scenario.final_now)
    assert_ok(proc, '-V %s on a repository with blobs' % ' '.join(quick))


def _current_chain_blob(scenario):
    """(oid16, tid16, pool name) of a non-empty blob of the newest full."""
    full = [s for s in scenario.steps if s.kind == 'full'][-1]
    _, lines = read_manifest(os.path.join(scenario.pristine,
                                          full.now + '.blobs'))
    present = [l for l in lines if l[2] != 'missing']
    line = next(l for l in sorted(present, key=lambda l: l[2]) if l[2] > 100)
    return line[0], line[1], '%s-%s-%s.blob' % (line[0], line[1], line[3])


def _damaged_copy(scenario, name, damage):
    repo = _copy_repo(scenario, name)
    oid16, tid16, pool_name = _current_chain_blob(scenario)
    path = pool_path_of(repo, pool_name)
    assert path, 'pool file %s not found in %s' % (pool_name, repo)
    damage(path)
    return repo, oid16, tid16, pool_name


def _flip(path):
    data = bytearray(read(path))
    data[len(data) // 2] ^= 0x55
    write_over(path, bytes(data))


def _truncate(path):
    data = read(path)
    write_over(path, data[:-7])


def test_verify_flipped_byte_in_pool(scenario, tools):
    repo, oid16, tid16, name = _damaged_copy(scenario, 'flip', _flip)
    now = scenario.final_now
    proc = tools['rs'].run(['-V', '-r', repo], now=now)
    assert_exit1(proc, '-V with a changed byte in pool file ' + name)
    assert names_blob(text(proc.stderr), oid16, tid16, name), (
        '-V should name the damaged blob %s\n%s' % (name, describe_output(proc)))
    proc = tools['rs'].run(['-V', '-Q', '-r', repo], now=now)
    assert_ok(proc, '-V -Q (sizes only) with a changed byte in ' + name)

    # -R -w refuses and leaves the existing output alone.
    step = scenario.steps[-1]
    out = scenario.outdir('w-damaged')
    out_fs = os.path.join(out, 'Data.fs')
    out_blobs = os.path.join(out, 'blobs')
    with open(out_fs, 'wb') as f:
        f.write(b'existing Data.fs')
    os.makedirs(os.path.join(out_blobs, 'sub'))
    with open(os.path.join(out_blobs, 'sub', 'keep.blob'), 'wb') as f:
        f.write(b'existing blob')
    with open(os.path.join(out_blobs, '.layout'), 'w') as f:
        f.write('bushy')
    before = {p: read(os.path.join(out_blobs, p)) for p in all_files(out_blobs)}
    proc = tools['rs'].run(['-R', '-w', '-r', repo, '-o', out_fs,
                            '--blob-dir', out_blobs, '-D', step.now], now=now)
    assert_exit1(proc, '-R -w --blob-dir with a changed byte in ' + name)
    assert names_blob(text(proc.stderr), oid16, tid16, name), (
        '-R -w should name the damaged blob %s\n%s'
        % (name, describe_output(proc)))
    assert read(out_fs) == b'existing Data.fs', (
        '-R -w changed the existing output Data.fs although it failed')
    after = {p: read(os.path.join(out_blobs, p)) for p in all_files(out_blobs)}
    assert after == before, ('-R -w changed the existing blob directory '
                             'although it failed: %s -> %s'
                             % (sorted(before), sorted(after)))
    # Data.fs.lock: ZODB's lock, taken (and left, as ZODB leaves it) by a
    # recovery onto an existing Data.fs.
    assert sorted(os.listdir(out)) == ['Data.fs', 'Data.fs.lock', 'blobs'], (
        '-R -w left files behind: %s' % sorted(os.listdir(out)))


@pytest.mark.parametrize('damage', ['truncate', 'delete'])
def test_verify_quick_catches_size_and_presence(scenario, tools, damage):
    fn = _truncate if damage == 'truncate' else os.unlink
    repo, oid16, tid16, name = _damaged_copy(scenario, damage, fn)
    for quick in (['-Q'], []):
        proc = tools['rs'].run(['-V', '-r', repo] + quick,
                               now=scenario.final_now)
        what = '-V %s with pool file %s %sd' % (' '.join(quick), name, damage)
        assert_exit1(proc, what)
        assert names_blob(text(proc.stderr), oid16, tid16, name), (
            '%s: should name the blob\n%s' % (what, describe_output(proc)))


# ---------------------------------------------------------------------------
# Python repozo on our repository
# ---------------------------------------------------------------------------

@pytest.mark.parametrize('sid', BACKUP_STEP_IDS)
def test_python_repozo_recovers_our_repository(scenario, tools, sid):
    step = scenario.step(sid)
    out = os.path.join(scenario.outdir('py-' + sid), 'Data.fs')
    proc = tools['py'].run(['-R', '-r', scenario.repo, '-D', step.now,
                            '-o', out], now=scenario.final_now)
    assert_ok(proc, 'python repozo -R -D %s' % step.now)
    assert read(out) == step.datafs, (
        'python repozo recovered %d bytes at %s, expected %d'
        % (len(read(out)), step.label(), len(step.datafs)))


@pytest.mark.parametrize('quick', [[], ['-Q']], ids=['full', 'quick'])
def test_python_repozo_verifies_our_repository(scenario, tools, quick):
    proc = tools['py'].run(['-V', '-r', scenario.repo] + quick,
                           now=scenario.final_now)
    assert_ok(proc, 'python repozo -V %s' % ' '.join(quick))


# ---------------------------------------------------------------------------
# -k
# ---------------------------------------------------------------------------

def test_kill_old_on_full_prunes_the_pool(scenario, tools):
    repo = _copy_repo(scenario, 'kill-old')
    model = scenario.model          # closed; its state is the last step's
    final = scenario.steps[-1]
    assert read(model.path) == final.datafs
    pool_before = {rel: read(os.path.join(repo, POOL, rel))
                   for rel in pool_files(repo)}
    now = fmt_now(CLOCK_START + CLOCK_STEP * (len(STEPS) + 1))
    proc = run_backup(tools, repo, model, now, ['-F', '-k'])
    assert_ok(proc, '-B -F -k --blob-dir')

    data = [n for n in top_files(repo) if DATA_RE.match(n)]
    assert data == [now + '.fs'], ('-k should leave only the new full backup, '
                                   'got %s' % data)
    manifests = sorted(n for n in top_files(repo) if n.endswith('.blobs'))
    assert manifests == [now + '.blobs'], (
        '-k should remove the .blobs manifests of the backups it removes; '
        'left: %s' % manifests)
    want = set()
    for oid, tid in final.records:
        blob = final.blobs[blob_path(final.layout, oid, tid)]
        want.add('%s-%s-%s.blob' % (hex16(oid), hex16(tid), md5(blob)))
    after = pool_files(repo)
    got = {rel.rsplit('/', 1)[-1] for rel in after}
    assert got == want, ('-k: the pool should hold exactly the blobs of the '
                         'remaining backup;\n  not removed: %s\n  missing: %s'
                         % (sorted(got - want), sorted(want - got)))
    assert len(pool_before) > len(after), 'scenario: nothing to prune'
    for rel in after:
        assert read(os.path.join(repo, POOL, rel)) == pool_before.get(rel), (
            '-k changed or moved the kept pool file %s' % rel)
    snapshot = BStep(-1, 'after -k', now, [], 'full', 0, False, final.datafs,
                     final.blobs, final.layout, final.contents, final.records)
    proc, out_fs, out_blobs = recover(tools, repo, scenario.outdir('k'), None,
                                      scenario.final_now)
    check_recovered(proc, out_fs, out_blobs, snapshot, 'recover after -k')
    proc = tools['rs'].run(['-V', '-r', repo], now=scenario.final_now)
    assert_ok(proc, '-V after -k')


# ---------------------------------------------------------------------------
# A blob file missing from the live blob directory
# ---------------------------------------------------------------------------

def test_blob_missing_from_live_directory(tools, tmp_path):
    live = tmp_path / 'live'
    live.mkdir()
    repo = tmp_path / 'repo'
    repo.mkdir()
    m = BlobModel(live, seed=4)
    m.add(3)
    proc = run_backup(tools, repo, m, '2024-03-01-10-00-00', [])
    assert_ok(proc, 'first backup')
    before = blob_snapshot(m.blob_dir)
    m.add(2)
    new = sorted(set(blob_snapshot(m.blob_dir)) - set(before))
    assert len(new) == 2
    gone = new[0]
    os.unlink(os.path.join(m.blob_dir, *gone.split('/')))
    rec = [(o, t) for o, t in blob_records(m.path)
           if blob_path('bushy', o, t) == gone]
    assert len(rec) == 1
    oid16, tid16 = hex16(rec[0][0]), hex16(rec[0][1])

    proc = run_backup(tools, repo, m, '2024-03-01-11-00-00', [])
    assert_ok(proc, 'backup with a blob file missing from the blob directory')
    err = text(proc.stderr)
    assert gone in err.replace(os.sep, '/'), (
        'the backup should name the missing blob file %s on stderr\n%s'
        % (gone, describe_output(proc)))
    assert oid16 in err or oid_repr(p64(int(oid16, 16))) in err, (
        'the backup should name the oid %s on stderr\n%s'
        % (oid16, describe_output(proc)))
    _, lines = read_manifest(os.path.join(repo,
                                          '2024-03-01-11-00-00.blobs'))
    assert (oid16, tid16, 'missing') in lines, (
        'the manifest should record %s %s as missing: %s'
        % (oid16, tid16, lines))
    # The backed up Data.fs is complete all the same.
    out = tmp_path / 'out.fs'
    proc = tools['rs'].run(['-R', '-r', repo, '-o', out],
                           now='2024-03-02-00-00-00')
    assert_ok(proc, 'recover Data.fs only')
    assert read(out) == read(m.path)
    for quick in ([], ['-Q']):
        proc = tools['rs'].run(['-V', '-r', repo] + quick,
                               now='2024-03-02-00-00-00')
        assert_exit1(proc, '-V %s on a repository missing blob %s'
                     % (' '.join(quick), gone))
        assert names_blob(text(proc.stderr), oid16, tid16, gone), (
            '-V should name the missing blob %s\n%s'
            % (gone, describe_output(proc)))


# ---------------------------------------------------------------------------
# collective.recipe.backup's cleanup
# ---------------------------------------------------------------------------

FAKE_BASE_NS = 1_600_000_000 * 10**9      # 2020-09-13: before any real run
HOUR_NS = 3600 * 10**9


def _age_run(repo, run, start_ns):
    """Give the entries a run touched the times a run ``run`` hours after
    FAKE_BASE would have given them, keeping their order within the run.

    An entry was touched by the run if its mtime is not before ``start_ns``
    (entries from earlier runs already carry fake times, far in the past).
    """
    for dirpath, dirnames, filenames in os.walk(repo):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            m = os.stat(p).st_mtime_ns
            if m >= start_ns:
                t = FAKE_BASE_NS + run * HOUR_NS + (m - start_ns)
                os.utime(p, ns=(t, t))


@pytest.mark.parametrize('keep', [1, 2])
def test_collective_recipe_backup_cleanup(tools, tmp_path, keep):
    """bin/backup: repozo -B, then cleanup(keep), as the recipe does."""
    from collective.recipe.backup.repozorunner import cleanup
    live = tmp_path / 'live'
    live.mkdir()
    repo = str(tmp_path / 'repo')
    os.mkdir(repo)
    m = BlobModel(live, seed=7)
    runs = [
        ('full', lambda: m.add(3), []),
        ('incremental', lambda: (m.add(2), m.change(1)), []),
        ('full without new blobs', lambda: m.plain(), ['-F']),
        ('incremental', lambda: m.change(1), []),
        ('full, gzip', lambda: m.add(1), ['-F', '-z']),
        ('full after a pack', lambda: (m.delete(1), m.pack()), []),
    ]
    clock = datetime.datetime(2024, 7, 1, 3, 0, 0)
    for i, (what, change, opts) in enumerate(runs):
        change()
        now = fmt_now(clock + datetime.timedelta(days=i))
        start = time.time_ns()
        time.sleep(0.02)       # file times lag the clock by up to a tick
        proc = run_backup(tools, repo, m, now, opts)
        assert_ok(proc, 'run %d (%s)' % (i, what))
        _age_run(repo, i, start)
        listing = top_files(repo)
        try:
            cleanup(repo, keep=keep)
        except Exception as e:
            pytest.fail('run %d (%s): collective.recipe.backup cleanup(keep=%d)'
                        ' raised %r on a repository holding %s'
                        % (i, what, keep, e, listing), pytrace=False)
        later = fmt_now(clock + datetime.timedelta(days=i, hours=12))
        state = BStep(i, what, now, opts, None, 0, False, read(m.path),
                      blob_snapshot(m.blob_dir), read_layout(m.blob_dir),
                      dict(m.contents), blob_records(m.path))
        out = tmp_path / ('out-%d' % i)
        out.mkdir()
        proc, out_fs, out_blobs = recover(tools, repo, str(out), None, later)
        check_recovered(proc, out_fs, out_blobs, state,
                        'run %d (%s): recover after cleanup (repository: %s)'
                        % (i, what, top_files(repo)))
        proc = tools['rs'].run(['-V', '-r', repo], now=later)
        assert_ok(proc, 'run %d (%s): -V after cleanup' % (i, what))
    # The cleanup did remove older backups.
    assert not any(n.startswith('2024-07-01') for n in top_files(repo)), (
        top_files(repo))


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

@pytest.fixture(scope='module')
def small_blob_repo(tools, tmp_path_factory):
    base = tmp_path_factory.mktemp('small-blob-repo')
    live = base / 'live'
    live.mkdir()
    repo = base / 'repo'
    repo.mkdir()
    m = BlobModel(live, seed=3)
    m.add(2)
    proc = run_backup(tools, repo, m, '2024-02-01-00-00-00', [])
    assert_ok(proc, 'backup')
    return base, repo


USAGE_ERRORS = {
    'recover-without-output': ['-R', '-r', '{repo}'],
    'verify': ['-V', '-r', '{repo}'],
    'verify-quick': ['-V', '-Q', '-r', '{repo}'],
}


@pytest.mark.parametrize('case', sorted(USAGE_ERRORS))
def test_blob_dir_usage_errors(small_blob_repo, tools, case):
    base, repo = small_blob_repo
    args = [a.format(repo=repo) for a in USAGE_ERRORS[case]]
    # Without --blob-dir the command is fine.
    proc = tools['rs'].run(args, now='2024-02-02-00-00-00')
    assert_ok(proc, ' '.join(args))
    blob_dir = base / ('out-blobs-' + case)
    for extra in (['--blob-dir', str(blob_dir)],
                  ['--blob-dir=%s' % blob_dir]):
        proc = tools['rs'].run(args + extra, now='2024-02-02-00-00-00')
        what = ' '.join(args + extra)
        assert_exit1(proc, what + ' (usage error)')
        assert text(proc.stderr).strip(), what + ': no message on stderr'
        assert proc.stdout == b'', ('%s wrote to stdout\n%s'
                                    % (what, describe_output(proc)))
        assert not blob_dir.exists(), what + ' created the blob directory'


# ---------------------------------------------------------------------------
# The lawn layout
# ---------------------------------------------------------------------------

def test_lawn_layout(tools, tmp_path):
    live = tmp_path / 'live'
    live.mkdir()
    repo = str(tmp_path / 'repo')
    os.mkdir(repo)
    m = BlobModel(live, seed=9, layout='lawn')
    states = []
    for i, (change, opts) in enumerate([
            (lambda: m.add(4), []),
            (lambda: (m.change(2), m.add(1)), ['-z']),
            (lambda: m.change(1), ['-Q'])]):
        change()
        now = '2024-04-0%d-12-00-00' % (i + 1)
        # Relative paths, from tmp_path.
        proc = tools['rs'].run(['-B', '-r', 'repo', '-f', 'live/Data.fs',
                                '--blob-dir', 'live/blobs'] + opts,
                               now=now, cwd=tmp_path)
        assert_ok(proc, 'lawn backup %d' % i)
        st = BStep(i, 'lawn', now, opts, None, 0, False, read(m.path),
                   blob_snapshot(m.blob_dir), read_layout(m.blob_dir),
                   dict(m.contents), blob_records(m.path))
        assert st.layout == 'lawn'
        for rel in st.blobs:
            assert re.match(r'^0x[0-9a-f]{2,16}/0x[0-9a-f]{16}\.blob$', rel), (
                'ZODB did not use the lawn layout: %s' % rel)
        try:
            layout, _ = read_manifest(os.path.join(repo, now + '.blobs'))
        except (ManifestError, FileNotFoundError) as e:
            pytest.fail(str(e), pytrace=False)
        assert layout == 'lawn', '%s.blobs says layout %s' % (now, layout)
        states.append(st)
    for st in states:
        out = 'out-%d' % st.index
        (tmp_path / out).mkdir()
        proc = tools['rs'].run(['-R', '-r', 'repo', '-o', out + '/Data.fs',
                                '--blob-dir', out + '/blobs', '-D', st.now],
                               now='2024-05-01-00-00-00', cwd=tmp_path)
        check_recovered(proc, str(tmp_path / out / 'Data.fs'),
                        str(tmp_path / out / 'blobs'), st,
                        'lawn recover -D %s' % st.now)


# ---------------------------------------------------------------------------
# Repositories with backups made without --blob-dir
# ---------------------------------------------------------------------------

def _state_now(m, index, now):
    return BStep(index, 'live', now, [], None, 0, False, read(m.path),
                 blob_snapshot(m.blob_dir), read_layout(m.blob_dir),
                 dict(m.contents), blob_records(m.path))


@pytest.mark.parametrize('first', ['py', 'rs'],
                         ids=['python-repozo', 'ours-without-blob-dir'])
def test_blob_dir_backups_on_a_repository_started_without(tools, tmp_path,
                                                          first):
    """Taking up --blob-dir on an existing repository: the first backup
    with it must give a recoverable state with all its blobs."""
    live = tmp_path / 'live'
    live.mkdir()
    repo = str(tmp_path / 'repo')
    os.mkdir(repo)
    m = BlobModel(live, seed=11)
    m.add(4)
    proc = tools[first].run(['-B', '-r', repo, '-f', m.path],
                            now='2024-08-01-00-00-00')
    assert_ok(proc, '%s backup without --blob-dir' % first)
    m.add(2)
    m.change(1)
    proc = run_backup(tools, repo, m, '2024-08-02-00-00-00', [])
    assert_ok(proc, 'first backup with --blob-dir')
    state = _state_now(m, 0, '2024-08-02-00-00-00')
    out = tmp_path / 'out'
    out.mkdir()
    proc, out_fs, out_blobs = recover(tools, repo, str(out), None,
                                      '2024-08-03-00-00-00')
    check_recovered(proc, out_fs, out_blobs, state,
                    'recover after the first --blob-dir backup (repository: '
                    '%s)' % top_files(repo))
    for quick in ([], ['-Q']):
        proc = tools['rs'].run(['-V', '-r', repo] + quick,
                               now='2024-08-03-00-00-00')
        assert_ok(proc, '-V %s' % ' '.join(quick))


def test_recover_refuses_a_chain_missing_blobs(tools, tmp_path):
    """An increment made without --blob-dir holds blob records whose files
    the repository lacks: -R --blob-dir must not give a blob directory
    without them, and leaves the existing output alone."""
    live = tmp_path / 'live'
    live.mkdir()
    repo = str(tmp_path / 'repo')
    os.mkdir(repo)
    m = BlobModel(live, seed=12)
    m.add(3)
    proc = run_backup(tools, repo, m, '2024-08-01-00-00-00', [])
    assert_ok(proc, 'full backup with --blob-dir')
    m.add(2)
    proc = tools['py'].run(['-B', '-r', repo, '-f', m.path],
                           now='2024-08-02-00-00-00')
    assert_ok(proc, 'python repozo incremental backup')
    inc = '2024-08-02-00-00-00.deltafs'
    assert inc in top_files(repo), top_files(repo)
    out = tmp_path / 'out'
    out_blobs = out / 'blobs'
    out_blobs.mkdir(parents=True)
    (out / 'Data.fs').write_bytes(b'existing')
    (out_blobs / 'keep.blob').write_bytes(b'existing blob')
    proc, out_fs, _ = recover(tools, repo, str(out), None,
                              '2024-08-03-00-00-00')
    assert proc.returncode == 1, (
        'recover --blob-dir of a state whose blobs are not all in the '
        'repository should fail\n%s' % describe_output(proc))
    assert inc in text(proc.stderr), (
        'the message should name %s\n%s' % (inc, describe_output(proc)))
    assert (out / 'Data.fs').read_bytes() == b'existing'
    assert all_files(out_blobs) == ['keep.blob'], all_files(out_blobs)
    assert sorted(os.listdir(out)) == ['Data.fs', 'Data.fs.lock', 'blobs'], (
        os.listdir(out))
    # The state before the increment is still complete.
    proc = tools['rs'].run(['-R', '-r', repo, '-o', out_fs, '--blob-dir',
                            str(out_blobs), '-D', '2024-08-01-00-00-00'],
                           now='2024-08-03-00-00-00')
    assert_ok(proc, 'recover of the full backup before the increment')


def test_database_without_blobs(tools, tmp_path):
    """A blob storage that has no blob yet: the recovered blob directory
    holds only its .layout and ZODB opens it."""
    live = tmp_path / 'live'
    live.mkdir()
    repo = str(tmp_path / 'repo')
    os.mkdir(repo)
    m = BlobModel(live, seed=13)
    m.plain()
    m.plain()
    proc = run_backup(tools, repo, m, '2024-08-01-00-00-00', [])
    assert_ok(proc, 'backup of a blob storage without blobs')
    layout, lines = read_manifest(os.path.join(repo,
                                               '2024-08-01-00-00-00.blobs'))
    assert (layout, lines) == ('bushy', [])
    state = _state_now(m, 0, '2024-08-01-00-00-00')
    assert state.blobs == {} and state.layout == 'bushy'
    out = tmp_path / 'out'
    out.mkdir()
    proc, out_fs, out_blobs = recover(tools, repo, str(out), None,
                                      '2024-08-02-00-00-00')
    check_recovered(proc, out_fs, out_blobs, state, 'recover without blobs')
    for quick in ([], ['-Q']):
        proc = tools['rs'].run(['-V', '-r', repo] + quick,
                               now='2024-08-02-00-00-00')
        assert_ok(proc, '-V %s' % ' '.join(quick))
