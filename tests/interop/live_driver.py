"""Backups back to back while a live writer runs: the driver that
test_live.py (Data.fs) and test_live_blobs.py (Data.fs and blobs) share.

The writer is a subprocess that logs each commit to a JSON-lines file.
Each backup runs with its own fake clock (REPOZO_TEST_NOW), one second
after the previous one, into one repository per option set in turn; when
the writer has stopped, each repository gets one final backup.
"""
import datetime
import subprocess
import time
from dataclasses import dataclass, field

import pytest


@dataclass
class BackupRun:
    repo: str              # key of the option sets
    now: str               # REPOZO_TEST_NOW, and the -D to recover it
    proc: subprocess.CompletedProcess
    start: float           # time.time() around the run
    end: float
    log_bytes: int         # size of the writer's log when the run started
    final: bool = False    # made after the writer stopped
    options: list = field(default_factory=list)

    def label(self):
        return '%s%s backup %s (%s)' % (
            'final ' if self.final else '', self.repo, self.now,
            ' '.join(self.options) or 'no options')


def fmt_now(t):
    return t.strftime('%Y-%m-%d-%H-%M-%S')


def wait_for_first_commit(log_path, writer, errpath):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if log_path.exists() and log_path.stat().st_size > 0:
            return
        if writer.poll() is not None:
            break
        time.sleep(0.05)
    pytest.fail('the writer did not commit (exit %s)\n%s'
                % (writer.poll(), errpath.read_text(errors='replace')))


def back_up_while_writing(writer, log_path, errpath, rs_tool, option_sets,
                          args_for, clock_start, gap, backups):
    """Back up while `writer` runs, then once more per repository.

    `args_for(key)` gives the command line of the repository `key` without
    its options; each run is appended to `backups`. The writer is killed if
    anything fails meanwhile.
    """
    try:
        wait_for_first_commit(log_path, writer, errpath)
        clock = [clock_start]

        def backup(key, final=False):
            now = fmt_now(clock[0])
            clock[0] += datetime.timedelta(seconds=1)
            log_bytes = log_path.stat().st_size
            start = time.time()
            proc = rs_tool.run(args_for(key) + option_sets[key], now=now)
            end = time.time()
            backups.append(BackupRun(key, now, proc, start, end, log_bytes,
                                     final, option_sets[key]))
            return end - start

        keys = list(option_sets)
        i = 0
        while writer.poll() is None:
            took = backup(keys[i % len(keys)])
            i += 1
            if took < gap:
                time.sleep(gap - took)
        writer.wait(timeout=60)
        # The writer packed and closed the database: one more backup of
        # each repository, which must hold the writer's last state.
        for key in keys:
            backup(key, final=True)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
