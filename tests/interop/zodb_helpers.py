"""Write and read a small but realistic ZODB FileStorage (Data.fs) with ZODB.

The database layout (everything reachable from the root):

    root['counter']  int, bumped by every transaction
    root['tree']     BTrees.OOBTree.OOBTree: 'item-NNNNN' -> PersistentMapping
                     {'n': int, 'name': str, 'payload': str (~50-250 bytes)}
    root['big']      PersistentMapping: 'big-NN' -> PersistentMapping
                     {'text': str of ~20 KB}
    root['log']      PersistentList of short str

``Model`` keeps a plain-Python copy of what was committed so that a
recovered file can be checked object by object.  All randomness comes from a
seeded ``random.Random``, so a scenario is reproducible.
"""
import copy
import random
import string

import transaction
import ZODB
import ZODB.FileStorage
from BTrees.OOBTree import OOBTree
from persistent.list import PersistentList
from persistent.mapping import PersistentMapping

BIG_SIZE = 20 * 1024


def _text(rng, n):
    # Mostly-incompressible-ish text so that -z still has real work to do.
    alphabet = string.ascii_letters + string.digits + ' '
    return ''.join(rng.choice(alphabet) for _ in range(n))


class Model:
    """Drives a FileStorage at ``path`` and remembers the expected content."""

    def __init__(self, path, seed=1):
        self.path = str(path)
        self.rng = random.Random(seed)
        self.counter = 0
        self.items = {}      # key -> dict(n, name, payload)
        self.big = {}        # key -> text
        self.log = []
        self.next_item = 0
        self.next_big = 0

    # -- low level -------------------------------------------------------
    def _open(self):
        storage = ZODB.FileStorage.FileStorage(self.path)
        return ZODB.DB(storage)

    def _new_item(self):
        key = 'item-%05d' % self.next_item
        self.next_item += 1
        value = {
            'n': self.next_item,
            'name': key.upper(),
            'payload': _text(self.rng, self.rng.randint(50, 250)),
        }
        return key, value

    def _new_big(self):
        key = 'big-%02d' % self.next_big
        self.next_big += 1
        return key, _text(self.rng, BIG_SIZE)

    def _bump(self, root, note):
        self.counter += 1
        root['counter'] = self.counter
        self.log.append(note)
        root['log'].append(note)

    # -- scenario operations (each opens and closes the DB) ---------------
    def create(self, n_items=300, n_big=6):
        """Create the database: several transactions, a few hundred objects."""
        db = self._open()
        try:
            with db.transaction('create root') as conn:
                root = conn.root()
                root['tree'] = OOBTree()
                root['big'] = PersistentMapping()
                root['log'] = PersistentList()
                self._bump(root, 'create')
            # Items in batches of 100, one transaction each.
            for start in range(0, n_items, 100):
                with db.transaction('items %d' % start) as conn:
                    root = conn.root()
                    for _ in range(min(100, n_items - start)):
                        key, value = self._new_item()
                        root['tree'][key] = PersistentMapping(value)
                        self.items[key] = value
                    self._bump(root, 'items %d' % start)
            with db.transaction('big strings') as conn:
                root = conn.root()
                for _ in range(n_big):
                    key, text = self._new_big()
                    root['big'][key] = PersistentMapping({'text': text})
                    self.big[key] = text
                self._bump(root, 'big')
        finally:
            db.close()

    def mutate(self, n_txn=3, n_add=15, n_modify=15, n_delete=0,
               n_big_modify=1, n_big_add=0):
        """Commit a few transactions that add, modify and delete objects."""
        db = self._open()
        try:
            for t in range(n_txn):
                with db.transaction('mutate %d' % t) as conn:
                    root = conn.root()
                    tree = root['tree']
                    for _ in range(n_add):
                        key, value = self._new_item()
                        tree[key] = PersistentMapping(value)
                        self.items[key] = value
                    keys = sorted(self.items)
                    for key in self.rng.sample(keys, min(n_modify, len(keys))):
                        payload = _text(self.rng, self.rng.randint(50, 250))
                        tree[key]['payload'] = payload
                        tree[key]['n'] += 1000
                        self.items[key]['payload'] = payload
                        self.items[key]['n'] += 1000
                    keys = sorted(self.items)
                    for key in self.rng.sample(keys, min(n_delete, len(keys))):
                        del tree[key]
                        del self.items[key]
                    bkeys = sorted(self.big)
                    for key in self.rng.sample(bkeys,
                                               min(n_big_modify, len(bkeys))):
                        text = _text(self.rng, BIG_SIZE)
                        root['big'][key]['text'] = text
                        self.big[key] = text
                    for _ in range(n_big_add):
                        key, text = self._new_big()
                        root['big'][key] = PersistentMapping({'text': text})
                        self.big[key] = text
                    self._bump(root, 'mutate %d' % t)
        finally:
            db.close()

    def pack(self):
        """Pack the storage (drops old revisions and unreachable objects)."""
        db = self._open()
        try:
            db.pack()
        finally:
            db.close()

    def expected(self):
        """A deep copy of the state that was committed so far."""
        return {
            'counter': self.counter,
            'items': copy.deepcopy(self.items),
            'big': dict(self.big),
            'log': list(self.log),
        }


def read_state(path):
    """Open ``path`` read-only with ZODB and return (state, used_index).

    ``used_index`` is FileStorage's ``_used_index`` marker: 1 if the
    ``path.index`` file was found sane and used, 0 if ZODB had to scan the
    whole file.  The state has the same shape as ``Model.expected()``.
    """
    storage = ZODB.FileStorage.FileStorage(str(path), read_only=True)
    used_index = storage._used_index
    db = ZODB.DB(storage)
    try:
        conn = db.open(transaction_manager=transaction.TransactionManager())
        try:
            root = conn.root()
            state = {
                'counter': root['counter'],
                'items': {k: {'n': v['n'], 'name': v['name'],
                              'payload': v['payload']}
                          for k, v in root['tree'].items()},
                'big': {k: v['text'] for k, v in root['big'].items()},
                'log': list(root['log']),
            }
        finally:
            conn.close()
    finally:
        db.close()
    return state, used_index
