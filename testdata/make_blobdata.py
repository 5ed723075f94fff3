#!/usr/bin/env python3
"""Regenerate testdata/blobs/ with the real ZODB: FileStorages with blobs.

Run from the repository root with any Python that has ZODB (written
against ZODB 6.4):

    target/venv/bin/python testdata/make_blobdata.py

Fixtures (each a Data.fs and its blob directory, `blobstorage`):

bushy/   the default layout. Transactions: three blobs (one empty); one
         blob rewritten and a plain object added; a db.undo() of that
         transaction (FileStorage writes a back pointer for the blob record
         and copies the old blob file under the undo's tid); a fourth blob.
lawn/    the same history in the deprecated lawn layout (`.layout` written
         before the storage is opened).

blobs.json records, per fixture, what ZODB says: the Data.fs size and md5,
and every committed blob file (path relative to the blob directory, size,
md5), so the Rust tests compare with ZODB, not with themselves. Tids come
from the clock: every run writes different bytes.
"""
import hashlib
import json
import os
import shutil
import tempfile

import transaction
import ZODB
import ZODB.FileStorage
from persistent.mapping import PersistentMapping
from ZODB.blob import Blob

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, 'blobs')


def md5(path):
    with open(path, 'rb') as f:
        return hashlib.md5(f.read()).hexdigest()


def blob_files(blob_dir):
    found = {}
    for root, dirs, files in os.walk(blob_dir):
        dirs[:] = [d for d in dirs if d != 'tmp']
        for name in files:
            if name.endswith('.blob'):
                path = os.path.join(root, name)
                rel = os.path.relpath(path, blob_dir)
                found[rel] = {'size': os.path.getsize(path), 'md5': md5(path)}
    return found


def put(blob, data):
    with blob.open('w') as f:
        f.write(data)


def build(dst, layout):
    tmp = tempfile.mkdtemp()
    try:
        blob_dir = os.path.join(tmp, 'blobstorage')
        if layout == 'lawn':
            # A FileStorage that creates its Data.fs also empties its blob
            # directory: the file is made first, the marker after.
            ZODB.FileStorage.FileStorage(os.path.join(tmp, 'Data.fs')).close()
            os.makedirs(blob_dir, mode=0o700)
            with open(os.path.join(blob_dir, '.layout'), 'w') as f:
                f.write('lawn')
        storage = ZODB.FileStorage.FileStorage(
            os.path.join(tmp, 'Data.fs'), blob_dir=blob_dir)
        db = ZODB.DB(storage)
        conn = db.open()
        root = conn.root()
        for i, data in enumerate([b'first blob ' * 50, b'', b'\x00\xff' * 3000]):
            b = Blob()
            put(b, data)
            root['b%d' % i] = b
        transaction.get().note(u'three blobs')
        transaction.commit()
        put(root['b0'], b'rewritten')
        root['plain'] = PersistentMapping(x=1)
        transaction.get().note(u'one blob rewritten')
        transaction.commit()
        db.undo(db.undoLog(0, 1)[0]['id'])
        transaction.get().note(u'undo the rewrite')
        transaction.commit()
        b = Blob()
        put(b, b'fourth blob')
        root['b3'] = b
        transaction.get().note(u'a fourth blob')
        transaction.commit()
        conn.close()
        db.close()
        os.makedirs(dst)
        shutil.copy(os.path.join(tmp, 'Data.fs'), dst)
        shutil.copytree(blob_dir, os.path.join(dst, 'blobstorage'),
                        ignore=shutil.ignore_patterns('tmp'))
        return {
            'layout': layout,
            'datafs_size': os.path.getsize(os.path.join(dst, 'Data.fs')),
            'datafs_md5': md5(os.path.join(dst, 'Data.fs')),
            'blobs': blob_files(os.path.join(dst, 'blobstorage')),
        }
    finally:
        shutil.rmtree(tmp)


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    facts = {layout: build(os.path.join(OUT, layout), layout)
             for layout in ('bushy', 'lawn')}
    with open(os.path.join(OUT, 'blobs.json'), 'w') as f:
        json.dump(facts, f, indent=1, sort_keys=True)
        f.write('\n')


if __name__ == '__main__':
    main()
