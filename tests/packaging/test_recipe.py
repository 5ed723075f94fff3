"""collective.recipe.backup driving the installed binary as ``bin/repozo``.

The recipe has no setting for repozo's path: it runs
``<bin-directory>/repozo``. docs/install.md tells a site to make that name
run ``repozo-rs``; this is that setup, with the recipe's own functions making
two nightly backups (``--quick --gzip``), pruning with its ``keep``, and
restoring, as ``bin/backup`` and ``bin/restore`` do.
"""
import os

import transaction
import ZODB
import ZODB.FileStorage
from collective.recipe.backup import config
from collective.recipe.backup.repozorunner import backup_main, restore_main


def commit(path, key, value):
    db = ZODB.DB(ZODB.FileStorage.FileStorage(path))
    try:
        with db.transaction() as conn:
            conn.root()[key] = value
    finally:
        db.close()


def read(path):
    db = ZODB.DB(ZODB.FileStorage.FileStorage(path, read_only=True))
    try:
        conn = db.open()
        state = dict(conn.root())
        conn.close()
        return state
    finally:
        db.close()


def test_recipe_backs_up_and_restores_through_bin_repozo(tmp_path):
    installed = os.environ['REPOZO_BIN']
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    (bin_dir / 'repozo').symlink_to(installed)
    datafs = tmp_path / 'var' / 'filestorage' / 'Data.fs'
    datafs.parent.mkdir(parents=True)
    backups = tmp_path / 'var' / 'backups'
    backups.mkdir()
    storage = {'datafs': str(datafs), 'backup_location': str(backups)}

    commit(str(datafs), 'night', 1)
    assert not backup_main(str(bin_dir), storage, keep=2, full=False,
                           verbose=False, backup_method=config.STANDARD_BACKUP)
    commit(str(datafs), 'night', 2)
    commit(str(datafs), 'notes', 'é' * 1000)
    assert not backup_main(str(bin_dir), storage, keep=2, full=False,
                           verbose=False, backup_method=config.STANDARD_BACKUP)
    names = sorted(os.listdir(backups))
    assert [n for n in names if n.endswith('.fsz')], names
    assert [n for n in names if n.endswith('.deltafsz')], names

    restored = tmp_path / 'restore' / 'Data.fs'
    storage['datafs'] = str(restored)
    assert not restore_main(str(bin_dir), storage, verbose=False)
    assert restored.read_bytes() == datafs.read_bytes()
    assert read(str(restored)) == {'night': 2, 'notes': 'é' * 1000}
