"""Shared fixtures for the repozo interop suite.

Two tools are compared on real files:

* ``py``: ZODB's own repozo (ZODB.scripts.repozo from the ZODB installed in
  the Python running pytest), run through ``py_repozo.py`` which fakes the
  clock from ``REPOZO_TEST_NOW``.
* ``rs``: our binary, ``$REPOZO_BIN`` or ``<repo root>/target/debug/repozo``.
  It must exist: if it does not, every test that needs it fails (it is never
  skipped).
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
PY_WRAPPER = HERE / 'py_repozo.py'

# Generous: a single repozo run on these small databases takes well under a
# second; this only stops a hung process from hanging the whole suite.
RUN_TIMEOUT = 120


def rs_bin_path():
    env = os.environ.get('REPOZO_BIN')
    if env:
        # Absolute, because some runs use another working directory.
        return Path(os.path.abspath(env))
    return REPO_ROOT / 'target' / 'debug' / 'repozo'


class Tool:
    """One repozo implementation that can be run as a subprocess."""

    def __init__(self, name, argv0):
        self.name = name
        self.argv0 = list(argv0)

    def __repr__(self):
        return 'Tool(%s: %s)' % (self.name, ' '.join(self.argv0))

    def run(self, args, now=None, cwd=None, check=False, what=None):
        """Run the tool with ``args`` (list of str).

        ``now`` (YYYY-MM-DD-hh-mm-ss) is passed as REPOZO_TEST_NOW.  With
        ``check`` a non-zero exit fails the test with the tool's stderr.
        Returns the CompletedProcess (stdout/stderr as bytes).
        """
        env = dict(os.environ)
        env.pop('REPOZO_TEST_NOW', None)
        if now is not None:
            env['REPOZO_TEST_NOW'] = now
        args = [str(a) for a in args]
        proc = subprocess.run(self.argv0 + args, capture_output=True,
                              env=env, cwd=cwd, timeout=RUN_TIMEOUT)
        proc.tool = self.name
        proc.now = now
        if check and proc.returncode != 0:
            pytest.fail('%s repozo %s failed (exit %d)%s\nstderr:\n%s'
                        % (self.name, ' '.join(args), proc.returncode,
                           ' while ' + what if what else '',
                           describe_output(proc)))
        return proc


def describe_output(proc):
    """Human readable summary of a CompletedProcess for assertion messages."""
    err = proc.stderr.decode('utf-8', 'replace')
    if len(err) > 4000:
        err = err[:1000] + '\n[...]\n' + err[-3000:]
    out = proc.stdout
    if len(out) > 500:
        out_s = '<%d bytes>' % len(out)
    else:
        out_s = out.decode('utf-8', 'replace')
    return ('[%s] exit=%s REPOZO_TEST_NOW=%s\n  args: %s\n  stderr: %s\n'
            '  stdout: %s' % (getattr(proc, 'tool', '?'), proc.returncode,
                              getattr(proc, 'now', None),
                              ' '.join(str(a) for a in proc.args),
                              err.rstrip() or '<empty>',
                              out_s.rstrip() or '<empty>'))


# The four kinds of repository the suites recover from: kind -> (the tool
# that makes the backups, its backup options).
KINDS = {
    'rs': ('rs', []),
    'rs-z': ('rs', ['-z']),
    'py': ('py', []),
    'py-z': ('py', ['-z']),
}


def fmt_now(t):
    """A datetime as REPOZO_TEST_NOW and backup names spell it."""
    return t.strftime('%Y-%m-%d-%H-%M-%S')


def read(path):
    with open(path, 'rb') as f:
        return f.read()


def write(path, data):
    with open(path, 'wb') as f:
        f.write(data)


class Workdirs:
    """For a scenario with ``base`` (a directory), ``repos`` (kind ->
    repository) and a counter ``_n``: fresh numbered directories."""

    def workdir(self, name):
        """A new empty directory."""
        self._n += 1
        d = os.path.join(self.base, 'work', '%03d-%s' % (self._n, name))
        os.makedirs(d)
        return d

    def copy_repo(self, kind):
        """A copy of the repository of ``kind``, to damage."""
        self._n += 1
        dest = os.path.join(self.base, 'copies', '%03d-%s' % (self._n, kind))
        shutil.copytree(self.repos[kind], dest)
        return dest


@pytest.fixture(scope='session')
def py_tool():
    return Tool('python', [sys.executable, str(PY_WRAPPER)])


@pytest.fixture(scope='session')
def rs_tool():
    path = rs_bin_path()
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(
            'repozo binary under test not found or not executable: %s\n'
            'Build it with `cargo build` or point REPOZO_BIN at it.' % path,
            pytrace=False)
    return Tool('rust', [str(path)])


@pytest.fixture(scope='session')
def tools(py_tool, rs_tool):
    return {'py': py_tool, 'rs': rs_tool}
