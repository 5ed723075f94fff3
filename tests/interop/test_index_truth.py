"""Every .index our backups write is the index ZODB builds by scanning the
same bytes, also when the backup is full because Data.fs changed under the
repository: restored from an older backup and written on, or packed and
grown again (issue 16, A: such full backups carried the repository's index
of the old bytes)."""
import os
import shutil

import ZODB.FileStorage
from ZODB.fsIndex import fsIndex

from zodb_helpers import Model, read_state


def zodb_scan(path, tmp_path):
    """(pos, {oid: offset}) as ZODB finds them scanning ``path`` whole."""
    copy = tmp_path / 'scan.fs'
    shutil.copyfile(path, copy)
    for ext in ('.index', '.lock', '.tmp'):
        if os.path.exists(str(copy) + ext):
            os.remove(str(copy) + ext)
    fs = ZODB.FileStorage.FileStorage(str(copy), read_only=True)
    try:
        assert fs._used_index == 0
        return fs._pos, dict(fs._index.items())
    finally:
        fs.close()


def check_newest_backup(tools, repo, data, tmp_path, now, what):
    """Recover the newest state and compare its installed index to a scan."""
    out = tmp_path / 'out.fs'
    for f in (out, tmp_path / 'out.fs.index'):
        if f.exists():
            f.unlink()
    tools['rs'].run(['-R', '-r', repo, '-o', out], now=now, check=True,
                    what=what)
    with open(data, 'rb') as a, open(out, 'rb') as b:
        want = a.read()
        got = b.read()
    assert want.startswith(got), what
    saved = fsIndex.load(str(out) + '.index')
    pos, index = zodb_scan(out, tmp_path)
    assert saved['pos'] == pos, what
    assert dict(saved['index'].items()) == index, (
        '%s: our .index differs from ZODB\'s scan' % what)
    state, used = read_state(out)
    assert used == 1, what
    return state


def test_full_backup_after_restore_and_new_commits(tools, tmp_path):
    repo = tmp_path / 'repo'
    repo.mkdir()
    data = tmp_path / 'Data.fs'
    m = Model(data, seed=7)
    m.create(n_items=60, n_big=2)
    rs = tools['rs']
    rs.run(['-B', '-r', repo, '-f', data], now='2024-01-01-00-00-00',
           check=True)
    m.mutate(n_txn=4)
    rs.run(['-B', '-r', repo, '-f', data], now='2024-01-02-00-00-00',
           check=True)
    # The bad day: back to day 1, then the site writes on.
    rs.run(['-R', '-r', repo, '-o', data, '-D', '2024-01-01-12-00-00'],
           now='2024-01-03-00-00-00', check=True)
    m2 = Model(data, seed=99)
    m2.next_item = 10000
    m2.items, m2.big, m2.counter, m2.log = {}, {}, 0, []
    db = m2._open()
    db.close()
    for day, opts in ((4, []), (5, []), (6, ['-Q']), (7, ['-z'])):
        grow(data, 3 + day)
        now = '2024-01-%02d-00-00-00' % day
        rs.run(['-B', '-r', repo, '-f', data] + opts, now=now, check=True)
        check_newest_backup(tools, repo, data, tmp_path, now,
                            'after restore, day %d %s' % (day, opts))


def test_full_backup_after_pack_and_regrowth(tools, tmp_path):
    repo = tmp_path / 'repo'
    repo.mkdir()
    data = tmp_path / 'Data.fs'
    m = Model(data, seed=3)
    m.create(n_items=80, n_big=3)
    m.mutate(n_txn=6, n_delete=10)
    rs = tools['rs']
    rs.run(['-B', '-r', repo, '-f', data], now='2024-01-01-00-00-00',
           check=True)
    size = os.path.getsize(data)
    m.pack()
    day = 2
    while os.path.getsize(data) <= size:
        m.mutate(n_txn=2)
    for opts in ([], ['-Q'], []):
        m.mutate(n_txn=1)
        now = '2024-01-%02d-00-00-00' % day
        rs.run(['-B', '-r', repo, '-f', data] + opts, now=now, check=True)
        state = check_newest_backup(tools, repo, data, tmp_path, now,
                                    'after a pack, %s' % opts)
        assert state == m.expected()
        day += 1


def grow(path, n_txn):
    """Commit ``n_txn`` small transactions touching the root counter and a
    few new objects."""
    import transaction
    from persistent.mapping import PersistentMapping
    db = ZODB.DB(ZODB.FileStorage.FileStorage(str(path)))
    try:
        for i in range(n_txn):
            with db.transaction('grow %d' % i) as conn:
                root = conn.root()
                root['counter'] = root['counter'] + 1
                root.setdefault('extra', PersistentMapping())
                root['extra']['x%d' % root['counter']] = PersistentMapping(
                    {'n': i, 'text': 'y' * (50 + 17 * i)})
    finally:
        db.close()
    transaction.abort()
