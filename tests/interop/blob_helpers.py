"""Drive a real ZODB blob storage and look at blob directories and repozo
repositories holding blobs.

The database (everything reachable from the root):

    root['files']  OOBTree: 'file-NNN' -> PersistentMapping
                   {'title': str, 'blob': ZODB.blob.Blob}
    root['plain']  PersistentMapping of short str (no blobs at all)

``BlobModel`` keeps a plain copy of the current content of every blob
(``contents``: key -> bytes) so that a recovered database can be read back
and compared.  Blob data comes from a seeded ``random.Random``.
"""
import hashlib
import os
import random
import re
import stat

import transaction
import ZODB
import ZODB.blob
import ZODB.FileStorage
from BTrees.OOBTree import OOBTree
from persistent.mapping import PersistentMapping
from ZODB.utils import u64

# Sizes of new blob contents; one empty blob and one of a few hundred KB are
# added by ``create`` on purpose.
SMALL = (20, 3000)
LARGE = 300 * 1024


class BlobModel:
    """A FileStorage with a blob directory at ``base``/Data.fs, ``base``/blobs.

    The DB stays open between operations once ``open`` was called (so that
    backups can be taken while it is open); ``close`` closes it.  Every
    operation opens it when needed and leaves it as it found it.
    """

    def __init__(self, base, seed=1, layout=None, pack_keep_old=True):
        self.base = str(base)
        self.path = os.path.join(self.base, 'Data.fs')
        self.blob_dir = os.path.join(self.base, 'blobs')
        if layout is not None:
            # ZODB picks the layout named by an existing .layout marker, but
            # FileStorage removes the blob directory when it creates Data.fs:
            # create an empty Data.fs first.
            ZODB.FileStorage.FileStorage(self.path).close()
            os.makedirs(self.blob_dir)
            with open(os.path.join(self.blob_dir, '.layout'), 'w') as f:
                f.write(layout)
        self.rng = random.Random(seed)
        self.pack_keep_old = pack_keep_old
        self.contents = {}       # key -> bytes of the current blob
        self.next_key = 0
        self.db = None
        self._undo_info = None   # key -> previous bytes (None: absent)

    # -- opening ---------------------------------------------------------
    def open(self, pack_keep_old=None):
        if pack_keep_old is not None:
            self.pack_keep_old = pack_keep_old
        if self.db is None:
            storage = ZODB.FileStorage.FileStorage(
                self.path, blob_dir=self.blob_dir,
                pack_keep_old=self.pack_keep_old)
            self.db = ZODB.DB(storage)
        return self.db

    def close(self):
        if self.db is not None:
            self.db.close()
            self.db = None

    @property
    def is_open(self):
        return self.db is not None

    def _run(self, note, change):
        """Commit one transaction made by ``change(root, before)``.

        ``change`` records in ``before`` (key -> previous bytes or None) the
        blobs it touches, so that the transaction can be undone in the model.
        """
        was_open = self.is_open
        db = self.open()
        try:
            before = {}
            with db.transaction(note) as conn:
                root = conn.root()
                if 'files' not in root:
                    root['files'] = OOBTree()
                    root['plain'] = PersistentMapping()
                change(root, before)
            self._undo_info = before
        finally:
            if not was_open:
                self.close()

    # -- content ---------------------------------------------------------
    def _data(self, size=None):
        if size is None:
            size = self.rng.randint(*SMALL)
        return self.rng.randbytes(size)

    def _write(self, blob, data):
        with blob.open('w') as f:
            f.write(data)

    def add(self, n, note='add', sizes=()):
        """Add ``n`` new blobs (the first ones with the given ``sizes``)."""
        sizes = list(sizes)

        def change(root, before):
            for i in range(n):
                key = 'file-%03d' % self.next_key
                self.next_key += 1
                data = self._data(sizes[i] if i < len(sizes) else None)
                blob = ZODB.blob.Blob()
                self._write(blob, data)
                root['files'][key] = PersistentMapping(
                    {'title': key.upper(), 'blob': blob})
                before[key] = None
                self.contents[key] = data
        self._run(note, change)

    def change(self, n, note='change'):
        """Write new content into ``n`` existing blobs."""
        def change(root, before):
            for key in self.rng.sample(sorted(self.contents), n):
                data = self._data()
                self._write(root['files'][key]['blob'], data)
                before[key] = self.contents[key]
                self.contents[key] = data
        self._run(note, change)

    def delete(self, n, note='delete'):
        """Drop ``n`` blobs from the tree (their files go at the next pack)."""
        def change(root, before):
            for key in self.rng.sample(sorted(self.contents), n):
                del root['files'][key]
                before[key] = self.contents.pop(key)
        self._run(note, change)

    def plain(self, note='plain'):
        """A transaction that touches no blob at all."""
        def change(root, before):
            root['plain']['n%d' % len(root['plain'])] = note
        self._run(note, change)

    def undo_last(self):
        """Undo the last transaction (ZODB copies the blobs it restores)."""
        was_open = self.is_open
        db = self.open()
        try:
            tid = db.undoLog(0, 1)[0]['id']
            tm = transaction.TransactionManager()
            txn = tm.begin()
            txn.note('undo')
            db.undo(tid, txn)
            tm.commit()
        finally:
            if not was_open:
                self.close()
        for key, old in self._undo_info.items():
            if old is None:
                self.contents.pop(key, None)
            else:
                self.contents[key] = old
        self._undo_info = {}

    def pack(self):
        was_open = self.is_open
        db = self.open()
        try:
            db.pack()
        finally:
            if not was_open:
                self.close()


# ---------------------------------------------------------------------------
# Blob directories
# ---------------------------------------------------------------------------

def blob_snapshot(blob_dir):
    """{relative posix path: bytes} of the committed ``*.blob`` files.

    Ignores ZODB's working files: ``tmp/``, ``.layout``, ``*.tmp`` and
    ``.removed``.
    """
    out = {}
    for dirpath, dirnames, filenames in os.walk(blob_dir):
        rel_dir = os.path.relpath(dirpath, blob_dir)
        if rel_dir == '.':
            dirnames[:] = [d for d in dirnames if d != 'tmp']
        for name in filenames:
            if not name.endswith('.blob'):
                continue
            rel = os.path.normpath(os.path.join(rel_dir, name))
            with open(os.path.join(dirpath, name), 'rb') as f:
                out[rel.replace(os.sep, '/')] = f.read()
    return out


def all_files(top):
    """Relative posix paths of every non-directory entry under ``top``."""
    out = []
    for dirpath, dirnames, filenames in os.walk(top):
        for name in filenames:
            rel = os.path.relpath(os.path.join(dirpath, name), top)
            out.append(rel.replace(os.sep, '/'))
    return sorted(out)


def read_layout(blob_dir):
    try:
        with open(os.path.join(blob_dir, '.layout')) as f:
            return f.read().strip()
    except FileNotFoundError:
        return None


def blob_path(layout, oid, tid):
    """Relative path of the file of blob record (oid, tid) in a layout."""
    rel = ZODB.blob.LAYOUTS[layout].getBlobFilePath(oid, tid)
    return rel.replace(os.sep, '/')


def hex16(b8):
    return '%016x' % u64(b8)


def blob_records(datafs):
    """[(oid, tid)] (8-byte strings) of the blob records of a Data.fs file.

    In file order.  Undo records (back pointers) count when the record they
    point to is a blob's, as ZODB copies the blob file for them.
    """
    out = []
    it = ZODB.FileStorage.FileIterator(str(datafs))
    try:
        for txn in it:
            for rec in txn:
                if rec.data and ZODB.blob.is_blob_record(rec.data):
                    out.append((rec.oid, txn.tid))
    finally:
        it.close()
    return out


def mode_of(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def md5(data):
    return hashlib.md5(data).hexdigest()


# ---------------------------------------------------------------------------
# Repository side: manifests and the pool
# ---------------------------------------------------------------------------

POOL = 'blobs'
POOL_RE = re.compile(r'^[0-9a-f]{2}/([0-9a-f]{16})-([0-9a-f]{16})-'
                     r'([0-9a-f]{32})\.blob$')
MANIFEST_LINE_RE = re.compile(
    r'^([0-9a-f]{16}) ([0-9a-f]{16}) (?:(\d+) ([0-9a-f]{32})|(missing))$')


def pool_files(repo):
    """Relative posix paths of the files in the repository's blob pool."""
    top = os.path.join(str(repo), POOL)
    if not os.path.isdir(top):
        return []
    return all_files(top)


def pool_path_of(repo, name):
    """Full path of the pool file whose base name is ``name``."""
    for rel in pool_files(repo):
        if rel.rsplit('/', 1)[-1] == name:
            return os.path.join(str(repo), POOL, *rel.split('/'))
    return None


class ManifestError(AssertionError):
    pass


def read_manifest(path):
    """Parse a ``<stem>.blobs`` file: (layout, [line tuples]).

    Each line is (oid16, tid16, size:int, md5) or (oid16, tid16, 'missing');
    the last line, `end N`, counts them.
    Raises ManifestError when the file does not have the documented form.
    """
    with open(path, 'rb') as f:
        raw = f.read()
    try:
        lines = raw.decode('ascii').split('\n')
    except UnicodeDecodeError:
        raise ManifestError('%s is not ASCII text' % path)
    if lines and lines[-1] == '':
        lines.pop()
    else:
        raise ManifestError('%s does not end with a newline: %r'
                            % (path, raw[-80:]))
    if len(lines) < 2 or lines[0] != 'repozo-blobs 1':
        raise ManifestError('%s does not start with "repozo-blobs 1": %r'
                            % (path, lines[:2]))
    m = re.match(r'^layout (bushy|lawn)$', lines[1])
    if not m:
        raise ManifestError('%s: second line is not "layout bushy|lawn": %r'
                            % (path, lines[1]))
    end = re.match(r'^end (\d+)$', lines[-1]) if len(lines) > 2 else None
    if not end or int(end.group(1)) != len(lines) - 3:
        raise ManifestError('%s does not end with "end <number of lines>": %r'
                            % (path, lines[-1:]))
    lines = lines[:-1]
    records = []
    for i, line in enumerate(lines[2:], 3):
        r = MANIFEST_LINE_RE.match(line)
        if not r:
            raise ManifestError('%s line %d has the wrong form: %r'
                                % (path, i, line))
        if r.group(5):
            records.append((r.group(1), r.group(2), 'missing'))
        else:
            records.append((r.group(1), r.group(2), int(r.group(3)),
                            r.group(4)))
    return m.group(1), records
