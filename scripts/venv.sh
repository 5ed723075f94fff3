#!/usr/bin/env bash
# Create (once) the Python virtualenv used by the interop tests and print its
# python.
#
#   scripts/venv.sh            -> venv in target/venv (relative to the repo root)
#   REPOZO_VENV=dir scripts/venv.sh
#
# Idempotent: an existing venv that already has ZODB 6.4, pytest and
# collective.recipe.backup 6.0.0 (whose cleanup the blob tests run) is left
# alone and nothing is downloaded.  All progress goes to stderr; the last (and
# only) line on stdout is the path of the venv's python, e.g.
#
#   PY="$(scripts/venv.sh | tail -n 1)"
#   REPOZO_BIN=target/debug/repozo "$PY" -m pytest tests/interop -q
set -euo pipefail

ZODB_VERSION=6.4
CRB_VERSION=6.0.0

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${REPOZO_VENV:-target/venv}"
case "$venv" in
    /*) ;;
    *) venv="$root/$venv" ;;
esac
py="$venv/bin/python"

have_deps() {
    "$py" - "$ZODB_VERSION" "$CRB_VERSION" >/dev/null 2>&1 <<'PYEOF'
import sys
from importlib.metadata import version
import ZODB, pytest  # noqa: F401  (importable, not just installed)
import collective.recipe.backup.repozorunner  # noqa: F401
sys.exit(0 if (version('ZODB'), version('collective.recipe.backup'))
         == (sys.argv[1], sys.argv[2]) else 1)
PYEOF
}

if [ ! -x "$py" ] || ! "$py" -c 'import sys' >/dev/null 2>&1; then
    echo "venv.sh: creating virtualenv in $venv" >&2
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv" >&2
fi

if ! have_deps; then
    echo "venv.sh: installing ZODB==$ZODB_VERSION, pytest and" \
        "collective.recipe.backup==$CRB_VERSION into $venv" >&2
    if ! "$py" -m pip --version >/dev/null 2>&1; then
        "$py" -m ensurepip --upgrade >&2
    fi
    "$py" -m pip install --disable-pip-version-check --quiet \
        "ZODB==$ZODB_VERSION" pytest \
        "collective.recipe.backup==$CRB_VERSION" >&2
    if ! have_deps; then
        echo "venv.sh: ZODB $ZODB_VERSION, pytest or collective.recipe.backup" \
            "$CRB_VERSION still not importable from $py" >&2
        exit 1
    fi
fi

echo "$py"
