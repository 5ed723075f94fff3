"""Retention (issue 13): what our --prune and -B --keep-* leave behind is a
repository Python repozo still verifies and recovers, for every date kept.

A real ZODB database is backed up by our binary over six days (a full
backup each morning, an increment each evening, plain and -z), then pruned
with --keep-daily 2 --keep-weekly 1; Python repozo 6.4 then verifies the
newest chain and recovers each kept date to the bytes the database had.
"""
import os
import shutil

import pytest

from conftest import read
from zodb_helpers import Model


@pytest.mark.parametrize('gzip', [False, True], ids=['plain', 'gzip'])
def test_python_repozo_reads_what_retention_leaves(tmp_path, tools, gzip):
    data = tmp_path / 'Data.fs'
    repo = tmp_path / 'repo'
    repo.mkdir()
    model = Model(data, seed=7)
    model.create(n_items=120, n_big=2)
    z = ['-z'] if gzip else []
    states = {}
    # 2024-01-01 is a Monday: days 1-6 are one ISO week.
    for day in range(1, 7):
        for hour, full in ((2, True), (14, False)):
            model.mutate(n_txn=2, n_add=5, n_modify=5)
            now = '2024-01-%02d-%02d-00-00' % (day, hour)
            args = ['-B', '-r', repo, '-f', data] + z + (['-F'] if full else [])
            tools['rs'].run(args, now=now, check=True)
        states[day] = read(data)
    tools['rs'].run(['--prune', '-r', repo, '--keep-daily', '2',
                     '--keep-weekly', '1'], now='2024-01-07-00-00-00',
                    check=True)
    fulls = sorted(n for n in os.listdir(repo)
                   if n.endswith('.fs') or n.endswith('.fsz'))
    ext = '.fsz' if gzip else '.fs'
    assert fulls == ['2024-01-05-02-00-00' + ext, '2024-01-06-02-00-00' + ext]
    proc = tools['py'].run(['-V', '-r', repo], now='2024-01-07-00-00-00')
    assert proc.returncode == 0, proc.stderr
    for day in (5, 6):
        out = tmp_path / ('day%d.fs' % day)
        for who in ('py', 'rs'):
            if out.exists():
                out.unlink()
            tools[who].run(['-R', '-r', repo, '-o', out, '-D',
                            '2024-01-%02d-23-00-00' % day],
                           now='2024-01-07-00-00-00', check=True)
            assert read(out) == states[day], (who, day)
    # What was removed is gone for Python too.
    proc = tools['py'].run(['-R', '-r', repo, '-o', tmp_path / 'old.fs', '-D',
                            '2024-01-04-23-00-00'],
                           now='2024-01-07-00-00-00')
    assert proc.returncode != 0
