#!/usr/bin/env bash
# benches/compare.sh: time our repozo against ZODB's Python repozo.
#
#   benches/compare.sh [--size 2G] [--runs 3] [--work DIR] [--python PATH] [--seed N] [--only REGEX]
#
# What it does
#   1. cargo build --release (target/release/repozo) and the genfs example.
#   2. Finds a Python with ZODB 6.4: --python, else scripts/venv.sh (last
#      stdout line), else target/venv (created with python3 -m venv + pip).
#   3. Prepares, once, in the work dir (default target/bench), each step
#      cached by a stamp holding size/seed/genfs.rs's md5, so a rerun (or a
#      restart after an interruption) reuses what is there:
#        Data.fs      genfs --size SIZE --seed SEED, checked with fstest
#        Data-a1.fs   Data.fs + genfs --append 100M (100 MB of new txns)
#        Data-a2.fs   Data-a1.fs + genfs --append 100M, checked with fstest
#        saved/Data.fs.index  made by opening Data.fs read-write with ZODB's
#                     FileStorage and closing it (current for Data.fs, stale
#                     by 100/200 MB for Data-a1.fs/Data-a2.fs, as the index
#                     of a live storage is after its last restart)
#        base/*       repositories made by Python repozo (the reference):
#                     full (Data.fs @T1), full_incr (+ Data-a1 @T2),
#                     full_2incr (+ Data-a2 @T3), gz_full (-z Data.fs @T1),
#                     gz_incr (+ -z Data-a1 @T2); and ours_gz_full,
#                     ours_gz_incr: the same two written by our binary
#                     (remade on every run, as they depend on it)
#   4. For each row (with --only, each row whose whole name matches the
#      extended regular expression, e.g. 'standby.*|rollback.*'; the reference
#      floors always run), runs Python repozo and ours alternately (py, ours, py,
#      ours, ...) --runs times each. Before every run the repository is reset
#      to the same base state at $WORK/run/repo (hard links to the base's
#      data files, fresh copies of the .dat files, which repozo appends to)
#      and the source's Data.fs.index is reset, then everything is synced
#      (the previous run's deleted output, the reset); after it, per-run
#      outputs are deleted and the base is checked to be untouched. Wall time and peak
#      RSS come from /usr/bin/time -f '%e %M'.
#   The clock is fixed: Python repozo runs through a wrapper that replaces
#   ZODB.scripts.repozo.gen_filedate with the time in REPOZO_TEST_NOW
#   (YYYY-MM-DD-hh-mm-ss), which our binary reads itself. Successive backups
#   of a scenario use T1 < T2 < T3; recover/verify run at T4.
#
# Rows (source file, its index, repository before the timed run, command)
#   full, no index       Data.fs, no Data.fs.index, empty repo: -B
#                        (both must scan the whole file to build the index)
#   full, current index  Data.fs + current Data.fs.index, empty repo: -B
#   full -z              Data.fs + current index, empty repo: -B -z
#                        (compressed .fsz sizes are printed below the table)
#   incr +100MB default  Data-a1.fs + stale index, repo=full: -B
#                        (md5 of the repo, the whole source and its prefix)
#   incr +100MB -Q       Data-a2.fs + stale index, repo=full+incr: -B -Q
#                        (md5 of only the last .dat range, then copy 100 MB)
#   incr +100MB -Q -z    Data-a2.fs + stale index, repo=gz_full+gz_incr: -BQz
#   nothing changed      Data-a1.fs + stale index, repo=full+incr: -B
#                        (default mode: full md5 of repo and source, no copy)
#   recover full+2 incr  repo=full_2incr: -R -o out.fs (output checked with cmp)
#   recover -w           same, -R -w -o out.fs
#   recover .fsz         repo=gz_full: -R -o out.fs (gunzip)
#   verify               repo=full_2incr: -V
#   verify .fsz repo     repo=gz_incr: -V
#   verify -Q .fsz repo  repo=gz_incr: -V -Q
#   the last three again on ours_gz_full / ours_gz_incr (written by ours)
#   In-place recover (-R -o FILE onto an existing FILE; Python deletes FILE
#   and recovers in full, ours appends or truncates in place). FILE is
#   $WORK/run/standby.fs; before every run (untimed) it is brought to the
#   start state (a copy once, then truncated, or the missing tail appended),
#   fsync'd (as a standby recovered last night is on disk: else our fsync
#   would write the reset's dirty pages), and FILE.index is the repo's index
#   of the start state. Both outputs must equal the expected file (cmp) and
#   ours must keep FILE's inode (a full recover by ours is "wrong output").
#   standby +100MB -Q    FILE = Data-a1.fs + its index, repo=full_2incr:
#                        -R -Q -o FILE (md5 of the last range FILE keeps,
#                        append the second increment; expect Data-a2.fs)
#   standby +100MB default  same, -R -o FILE (md5 of every range FILE
#                        keeps, 2.25 GB at 2G; compared with md5sum below)
#   rollback by one increment  FILE = Data-a2.fs + its index,
#                        repo=full_2incr: -R -o FILE -D T2 (md5 of the
#                        ranges kept, truncate; expect Data-a1.fs)
#   rollback by one increment, -Q  same with -Q (md5 of the last range kept)
#   -B -Q, nothing changed, -V -Q, -R on a repository of MANY (env, default
#                        20000) files: one full backup and MANY-1 one-
#                        transaction increments (every step must be linear
#                        in the number of files)
#   Floors (the machine's own limits, measured first, before the rows):
#   md5sum and openssl dgst -md5 of Data.fs, md5sum of the files -V reads
#   (full_2incr's), cp Data.fs X, cp Data.fs X && sync X, the same for
#   Data-a2.fs (the bytes recover writes), dd oflag=direct bs=1M of Data.fs.
#   Each row with a floor is compared with it: -V with md5sum of the same
#   files, recover with cp + sync of the same bytes, a full backup with the
#   larger of md5sum Data.fs and cp + sync Data.fs (issue 15's goals). These
#   row floors are timed again right after each of our runs of the row
#   (paired_floor), and the row is compared with those: a virtual disk's
#   speed drifts too much for a floor timed minutes earlier.
#
# Numbers: each cell is the median wall time of --runs runs (the mean of the
# two middle ones for an even count); "ratio" is python median / ours median,
# so > 1 means ours is faster (">N" when ours took < 0.01 s); "ours/floor"
# is ours median / the row's floor median, so 1 is the machine's limit; a run whose
# result differs from Python's (.dat lines, recovered bytes, a change where
# nothing should change) is marked "(wrong output)", its ratio n/a, and the
# difference is listed under "Notes"; .index files that are not
# byte-identical are only noted. A "Goals" list under the tables gives the
# in-place rows against the goals of issue 12 (-Q and rollback ratios, the
# default mode's time over md5sum Data.fs's, peak RSS). Peak
# RSS is the largest of the runs' maximum resident set sizes (MB =
# KiB/1024). Everything runs warm: the files fit in the page cache of a
# 24 GiB machine and both tools read the same files in turn. Results: stdout
# and $WORK/results.md.
set -euo pipefail

SIZE=2G
RUNS=3
WORK=
PYTHON=
SEED=1
ONLY=
APPEND=100M

usage() { sed -n '2,4p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --size) SIZE="$2"; shift 2 ;;
        --size=*) SIZE="${1#*=}"; shift ;;
        --runs) RUNS="$2"; shift 2 ;;
        --runs=*) RUNS="${1#*=}"; shift ;;
        --work) WORK="$2"; shift 2 ;;
        --work=*) WORK="${1#*=}"; shift ;;
        --python) PYTHON="$2"; shift 2 ;;
        --python=*) PYTHON="${1#*=}"; shift ;;
        --seed) SEED="$2"; shift 2 ;;
        --seed=*) SEED="${1#*=}"; shift ;;
        --only) ONLY="$2"; shift 2 ;;
        --only=*) ONLY="${1#*=}"; shift ;;
        -h|--help) usage 0 ;;
        *) echo "compare.sh: unknown argument: $1" >&2; usage 2 >&2 ;;
    esac
done
case "$RUNS" in ''|*[!0-9]*|0) echo "compare.sh: --runs must be a positive integer" >&2; exit 2 ;; esac

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
WORK="${WORK:-$ROOT/target/bench}"
mkdir -p "$WORK"
WORK="$(cd "$WORK" && pwd)"
RUN="$WORK/run"
REPO="$RUN/repo"
RES="$WORK/results"
BIN="$ROOT/target/release/repozo"
GENFS="$ROOT/target/release/examples/genfs"
T1=2024-01-01-00-00-00
T2=2024-01-01-01-00-00
T3=2024-01-01-02-00-00
T4=2024-01-01-03-00-00
# After the last of the MANY files (one a second from 2024-01-01).
TM=2024-01-02-00-00-00

say() { echo "compare.sh: $*" >&2; }
die() { say "$*"; exit 1; }

# ------------------------------------------------------------------ tools
say "building (cargo build --release, genfs example)"
cargo build --release --quiet
cargo build --release --quiet --example genfs
[ -x "$BIN" ] || die "no $BIN after cargo build"
[ -x "$GENFS" ] || die "no $GENFS after cargo build"

if [ -z "$PYTHON" ]; then
    if [ -x "$ROOT/scripts/venv.sh" ]; then
        PYTHON="$("$ROOT/scripts/venv.sh" | tail -n 1)"
    else
        PYTHON="$ROOT/target/venv/bin/python"
        if ! "$PYTHON" -c 'import ZODB' >/dev/null 2>&1; then
            say "creating target/venv with ZODB 6.4"
            python3 -m venv "$ROOT/target/venv" >&2
            "$PYTHON" -m pip install --quiet --disable-pip-version-check 'ZODB==6.4' >&2
        fi
    fi
fi
"$PYTHON" -c 'import ZODB.scripts.repozo' || die "$PYTHON cannot import ZODB.scripts.repozo"
ZODB_VERSION="$("$PYTHON" -c 'from importlib.metadata import version; print(version("ZODB"))')"

if [ ! -x /usr/bin/time ]; then
    say "installing GNU time"
    apt-get update -qq >&2 && apt-get install -y -qq time >&2
fi

PYREPOZO="$WORK/pyrepozo.py"
cat >"$PYREPOZO" <<'PYEOF'
# Python repozo with the clock fixed by REPOZO_TEST_NOW=YYYY-MM-DD-hh-mm-ss.
import os
import sys

from ZODB.scripts import repozo

now = os.environ.get('REPOZO_TEST_NOW')
if now:
    fixed = tuple(int(x) for x in now.split('-'))
    assert len(fixed) == 6, now
    repozo.gen_filedate = lambda options: fixed
sys.exit(repozo.main(sys.argv[1:]))
PYEOF

py_repozo() { "$PYTHON" "$PYREPOZO" "$@"; }

# ------------------------------------------------------------------ data
GENFS_MD5="$(md5sum "$ROOT/examples/genfs.rs" | cut -d' ' -f1)"
STAMP="size=$SIZE seed=$SEED append=$APPEND genfs=$GENFS_MD5 zodb=$ZODB_VERSION"
DATA="$WORK/Data.fs"
A1="$WORK/Data-a1.fs"
A2="$WORK/Data-a2.fs"
SAVED_INDEX="$WORK/saved/Data.fs.index"

# step NAME: true (and skip) when the step was done for this STAMP.
done_step() { [ -f "$WORK/.done-$1" ] && [ "$(cat "$WORK/.done-$1")" = "$STAMP" ]; }
mark_step() { echo "$STAMP" >"$WORK/.done-$1"; }

if ! done_step data; then
    say "stamp changed or missing: regenerating everything in $WORK"
    rm -f "$WORK"/.done-* "$DATA"* "$A1"* "$A2"*
    rm -rf "$WORK/saved" "$WORK/base" "$RUN"
    t0=$(date +%s.%N)
    "$GENFS" --out "$DATA" --size "$SIZE" --seed "$SEED" | tee "$WORK/genfs.log"
    t1=$(date +%s.%N)
    say "genfs: $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}') s"
    say "fstest Data.fs"
    "$PYTHON" -m ZODB.scripts.fstest "$DATA"
    mark_step data
fi
if ! done_step index; then
    say "creating Data.fs.index (FileStorage read-write open + close)"
    rm -f "$DATA.index"
    before="$(stat -c %s "$DATA")"
    "$PYTHON" - "$DATA" <<'PYEOF'
import sys
from ZODB.FileStorage import FileStorage
fs = FileStorage(sys.argv[1])
fs.close()
PYEOF
    rm -f "$DATA.lock" "$DATA.tmp"
    [ "$(stat -c %s "$DATA")" = "$before" ] || die "Data.fs changed size when opened read-write"
    mkdir -p "$WORK/saved"
    mv "$DATA.index" "$SAVED_INDEX"
    mark_step index
fi
if ! done_step a1; then
    say "Data-a1.fs = Data.fs + $APPEND"
    cp "$DATA" "$A1.tmp"
    "$GENFS" --out "$A1.tmp" --append "$APPEND" --seed $((SEED + 1000)) | tee -a "$WORK/genfs.log"
    mv "$A1.tmp" "$A1"
    mark_step a1
fi
if ! done_step a2; then
    say "Data-a2.fs = Data-a1.fs + $APPEND"
    cp "$A1" "$A2.tmp"
    "$GENFS" --out "$A2.tmp" --append "$APPEND" --seed $((SEED + 2000)) | tee -a "$WORK/genfs.log"
    say "fstest Data-a2.fs"
    "$PYTHON" -m ZODB.scripts.fstest "$A2.tmp"
    mv "$A2.tmp" "$A2"
    mark_step a2
fi

# Put SRC's index in place: "none" or "saved" (Data.fs's index; stale for a1/a2).
set_index() {
    rm -f "$1.index"
    if [ "$2" = saved ]; then cp "$SAVED_INDEX" "$1.index"; fi
}

# Build a base repository with Python repozo in $REPO (so that the paths in
# its .dat are those of the timed runs), then move it to base/NAME.
# make_base NAME FROM(-|base) -- backups as "NOW SRC ARGS..." words
make_base() {
    local name="$1" from="$2"; shift 2
    done_step "base-$name" && return 0
    say "base repository $name"
    rm -rf "$REPO" "$WORK/base/$name"
    mkdir -p "$RUN" "$WORK/base"
    if [ "$from" = - ]; then
        mkdir "$REPO"
    else
        # Hard links save disk; only the .dat is appended to, so copy it.
        cp -al "$WORK/base/$from" "$REPO"
        local f
        for f in "$REPO"/*.dat; do
            rm "$f"
            cp -p "$WORK/base/$from/$(basename "$f")" "$f"
        done
    fi
    local now="$1" src="$2"; shift 2
    set_index "$src" saved
    REPOZO_TEST_NOW="$now" ${BASE_TOOL:-py_repozo} -B -r "$REPO" -f "$src" "$@"
    rm -f "$src.index"
    mv "$REPO" "$WORK/base/$name"
    mark_step "base-$name"
}
make_base full - "$T1" "$DATA"
make_base full_incr full "$T2" "$A1"
make_base full_2incr full_incr "$T3" "$A2"
make_base gz_full - "$T1" "$DATA" -z
make_base gz_incr gz_full "$T2" "$A1" -z
# The same gzip'd repository written by our binary (gzip members that say
# their length, inflated on all cores): what a user has after switching.
# Rebuilt on every run, as it depends on the binary being measured.
rm -f "$WORK"/.done-base-ours_gz_*
BASE_TOOL="$BIN" make_base ours_gz_full - "$T1" "$DATA" -z
BASE_TOOL="$BIN" make_base ours_gz_incr ours_gz_full "$T2" "$A1" -z

# A repository of MANY files (default 20,000): a full backup and MANY-1
# increments of one small transaction each, split from a Data.fs that ZODB
# wrote with MANY+1 commits (Data-many.fs holds the first MANY, the source
# of "nothing changed"; Data-many-a.fs all of them, the source of -Q).
MANY="${MANY:-20000}"
MANYDATA="$WORK/Data-many.fs"
MANYDATA_A="$WORK/Data-many-a.fs"
if ! done_step "many-$MANY"; then
    say "base repository many: $MANY files"
    rm -rf "$WORK/base/many" "$MANYDATA"* "$MANYDATA_A"*
    mkdir -p "$WORK/base/many"
    "$PYTHON" - "$MANY" "$MANYDATA_A" "$MANYDATA" "$WORK/base/many" "$REPO" <<'PYEOF'
import datetime, hashlib, os, struct, sys
import ZODB, ZODB.FileStorage, transaction
from persistent.mapping import PersistentMapping
many, path_a, path, base, shown = int(sys.argv[1]), *sys.argv[2:]
db = ZODB.DB(ZODB.FileStorage.FileStorage(path_a))
conn = db.open()
root = conn.root()
root['n'] = 0
transaction.commit()
for i in range(many):
    root['n'] = i
    root['m%d' % (i % 50)] = PersistentMapping({'i': i})
    transaction.commit()
conn.close()
db.close()
for ext in ('.index', '.lock', '.tmp'):
    if os.path.exists(path_a + ext):
        os.remove(path_a + ext)
data = open(path_a, 'rb').read()
ends, pos = [], 4
while pos < len(data):
    tlen = struct.unpack('>Q', data[pos + 8:pos + 16])[0]
    pos += tlen + 8
    ends.append(pos)
# ZODB's first transaction (the root) and ours: more than MANY.
assert pos == len(data) and len(ends) > many, (pos, len(ends))
with open(path, 'wb') as f:
    f.write(data[:ends[many - 1]])
with open(path_a, 'wb') as f:
    f.write(data[:ends[many]])
t0 = datetime.datetime(2024, 1, 1)
lines, start = [], 0
for i in range(many):
    stem = (t0 + datetime.timedelta(seconds=i)).strftime('%Y-%m-%d-%H-%M-%S')
    name = stem + ('.fs' if i == 0 else '.deltafs')
    chunk = data[start:ends[i]]
    with open(os.path.join(base, name), 'wb') as f:
        f.write(chunk)
    lines.append('%s %d %d %s\n' % (os.path.join(shown, name), start,
                                     ends[i], hashlib.md5(chunk).hexdigest()))
    start = ends[i]
with open(os.path.join(base, '2024-01-01-00-00-00.dat'), 'w') as f:
    f.write(''.join(lines))
PYEOF
    mark_step "many-$MANY"
fi

# ------------------------------------------------------------------ runs
rm -rf "$RES" "$RUN"
mkdir -p "$RES" "$RUN"
: >"$RES/notes"
note() { echo "- $*" >>"$RES/notes"; say "NOTE: $*"; }

base_state() { (cd "$WORK/base" && find . -type f -printf '%p %s %T@\n' | sort); }
BASE_STATE="$(base_state)"

# Reset $REPO to base NAME (or an empty directory for "-").
reset_repo() {
    rm -rf "$REPO"
    if [ "$1" = - ]; then
        mkdir -p "$REPO"
    else
        cp -al "$WORK/base/$1" "$REPO"
        local f
        for f in "$REPO"/*.dat; do
            rm "$f"
            cp "$WORK/base/$1/$(basename "$f")" "$f"
        done
    fi
}

# What a backup left in the repository: names, .dat lines (md5 of the
# uncompressed data), and separately the .index files' md5.
repo_sig() { (cd "$REPO" && ls && cat ./*.dat 2>/dev/null) || true; }
index_sig() { (cd "$REPO" && md5sum ./*.index 2>/dev/null) || true; }

# timed TOOL ROW NOW -- ARGS...: one timed run; appends "secs kib" (or FAIL)
# to $RES/ROW.TOOL.
timed() {
    local tool="$1" row="$2" now="$3"; shift 3
    local cmd
    if [ "$tool" = py ] && [ ${#PY_INSTEAD[@]} -gt 0 ]; then
        cmd=("$PYTHON" "${PY_INSTEAD[@]}"); set --
    elif [ "$tool" = py ]; then cmd=("$PYTHON" "$PYREPOZO")
    else cmd=("$BIN"); fi
    if REPOZO_TEST_NOW="$now" /usr/bin/time -f '%e %M' -o "$RUN/time" \
        "${cmd[@]}" "$@" >"$RUN/stdout" 2>"$RUN/stderr"; then
        tail -n 1 "$RUN/time" >>"$RES/$row.$tool"
        return 0
    else
        echo FAIL >>"$RES/$row.$tool"
        note "$row: $tool failed ($*): $(tail -n 3 "$RUN/stderr" | tr '\n' ' ')"
        return 1
    fi
}

# median FILE: median of column 1 (FAIL if any run failed)
median() {
    if grep -q FAIL "$1"; then echo FAIL; return; fi
    cut -d' ' -f1 "$1" | sort -g | awk '{a[NR]=$1} END {
        if (NR == 0) { print "n/a"; exit }
        if (NR % 2) m = a[(NR + 1) / 2]; else m = (a[NR / 2] + a[NR / 2 + 1]) / 2
        printf "%.2f", m }'
}
peak_mb() {
    grep -v FAIL "$1" | cut -d' ' -f2 | sort -g | tail -n 1 | awk '{printf "%.0f", $1 / 1024}'
}
ratio() {
    case "$1$2" in *FAIL*|*n/a*) echo "n/a"; return ;; esac
    awk -v p="$1" -v o="$2" 'BEGIN { if (o > 0) printf "%.1f", p / o; else printf ">%.0f", p / 0.01 }'
}

ROWS=()
declare -A LABEL
# What the python column runs instead of Python repozo with the row's
# arguments (for a row Python repozo has no command for).
PY_INSTEAD=()

# bench ROW "label" BASE SRC IDX NOW CHECK -- ARGS...
#   BASE: base repository name or - (empty); SRC: source Data.fs or -;
#   IDX: none|saved (index put next to SRC); CHECK: backup | nochange |
#   recover:EXPECTED_FILE | gzsize | none.
# skip ROW: true when --only leaves the row out.
skip() { [ -n "$ONLY" ] && ! [[ "$1" =~ ^($ONLY)$ ]]; }
bench() {
    local row="$1" label="$2" base="$3" src="$4" idx="$5" now="$6" check="$7"; shift 8
    skip "$row" && return 0
    ROWS+=("$row"); LABEL[$row]="$label"
    say "row: $label"
    local i tool
    for ((i = 1; i <= RUNS; i++)); do
        for tool in py ours; do
            reset_repo "$base"
            [ "$src" = - ] || set_index "$src" "$idx"
            rm -f "$RUN/out.fs" "$RUN/out.fs.index" "$RUN/out.fs.part"
            # Neither tool pays for the other's leftovers: the discards of
            # the files just removed, dirty pages of the reset.
            sync
            local before_sig
            before_sig="$(repo_sig)"
            if timed "$tool" "$row" "$now" "$@"; then
                case "$check" in
                    backup|gzsize)
                        repo_sig >"$RES/$row.$tool.sig"
                        index_sig >"$RES/$row.$tool.isig"
                        if [ "$check" = gzsize ]; then
                            local z
                            z="$( (ls -t "$REPO"/*.fsz "$REPO"/*.deltafsz 2>/dev/null || true) | head -n 1)"
                            [ -n "$z" ] && echo "$(basename "$z") $(stat -c %s "$z")" >"$RES/$row.$tool.gz"
                        fi
                        ;;
                    nochange)
                        [ "$(repo_sig)" = "$before_sig" ] || { note "$row: $tool changed the repository"; touch "$RES/$row.$tool.bad"; }
                        ;;
                    recover_ours:*)
                        [ "$tool" = py ] || cmp -s "$RUN/out.fs" "${check#recover_ours:}" || {
                            note "$row: ours' output differs from $(basename "${check#recover_ours:}")"
                            touch "$RES/$row.ours.bad"
                        }
                        ;;
                    lines:*)
                        [ "$(wc -l <"$RUN/stdout")" = "${check#lines:}" ] || {
                            note "$row: $tool printed $(wc -l <"$RUN/stdout") lines, not ${check#lines:}"
                            touch "$RES/$row.$tool.bad"
                        }
                        ;;
                    recover:*)
                        cmp -s "$RUN/out.fs" "${check#recover:}" || {
                            note "$row: $tool's output differs from $(basename "${check#recover:}")"
                            touch "$RES/$row.$tool.bad"
                        }
                        ;;
                esac
            fi
            rm -rf "$REPO" "$RUN/out.fs" "$RUN/out.fs.index" "$RUN/out.fs.part"
            [ "$src" = - ] || rm -f "$src.index"
            [ "$(base_state)" = "$BASE_STATE" ] || die "$row: base repositories were modified by $tool; delete $WORK/.done-base-* and rerun"
            [ "$tool" != ours ] || paired_floor "$row"
        done
    done
    if [ -f "$RES/$row.py.sig" ] && [ -f "$RES/$row.ours.sig" ]; then
        cmp -s "$RES/$row.py.sig" "$RES/$row.ours.sig" || {
            note "$row: repository differs from Python's (file names or .dat lines): $(diff "$RES/$row.py.sig" "$RES/$row.ours.sig" | tr '\n' ' ' | cut -c1-300)"
            touch "$RES/$row.ours.bad"
        }
        cmp -s "$RES/$row.py.isig" "$RES/$row.ours.isig" ||
            note "$row: .index files are not byte-identical to Python's"
    fi
}

# In-place recover: -R -o $STANDBY onto an existing file.
STANDBY="$RUN/standby.fs"
# The file (Data.fs, Data-a1.fs or Data-a2.fs) whose bytes $STANDBY holds
# (checked by cmp after the run that made them), or empty when unknown.
STANDBY_HOLDS=
# Each of these is a prefix of the next (genfs --append on a copy).
chain_rank() {
    case "$1" in "$DATA") echo 0 ;; "$A1") echo 1 ;; "$A2") echo 2 ;; *) echo x ;; esac
}

# set_standby FILE: make $STANDBY hold FILE's bytes with one link, the
# cheapest way (truncate to a prefix, append a missing tail, or copy), then
# fsync it, so that no dirty page of the reset is left for the timed run.
set_standby() {
    local want="$1" have="$STANDBY_HOLDS" wlen hlen
    wlen="$(stat -c %s "$want")"
    rm -f "$STANDBY.part" "$STANDBY.lock" "$STANDBY.recovering" "$STANDBY.tmp"
    if [ -n "$have" ] && [ -f "$STANDBY" ] && [ "$(stat -c %h "$STANDBY")" = 1 ] &&
        [ "$(chain_rank "$have")" != x ] && [ "$(chain_rank "$want")" != x ] &&
        [ "$(stat -c %s "$STANDBY")" = "$(stat -c %s "$have")" ]; then
        hlen="$(stat -c %s "$STANDBY")"
        if [ "$(chain_rank "$have")" -lt "$(chain_rank "$want")" ]; then
            tail -c +$((hlen + 1)) "$want" >>"$STANDBY"
        elif [ "$hlen" != "$wlen" ]; then
            truncate -s "$wlen" "$STANDBY"
        fi
    else
        rm -f "$STANDBY"
        cp --reflink=never "$want" "$STANDBY"
    fi
    [ "$(stat -c %s "$STANDBY")" = "$wlen" ] || die "standby reset: $STANDBY is not $wlen bytes"
    sync "$STANDBY"
    STANDBY_HOLDS="$want"
}

# bench_inplace ROW "label" BASE START START_INDEX EXPECT EXPECT_INDEX NOW -- ARGS...
#   Before each run: repository reset to BASE, $STANDBY holds START's bytes
#   and $STANDBY.index is START_INDEX (a file of the base repository, or
#   -). After it, $STANDBY must hold EXPECT's bytes (cmp) and, for ours,
#   the same inode as before; $STANDBY.index is compared with EXPECT_INDEX
#   (only noted).
bench_inplace() {
    local row="$1" label="$2" base="$3" start="$4" sidx="$5" expect="$6" eidx="$7" now="$8"; shift 9
    skip "$row" && return 0
    ROWS+=("$row"); LABEL[$row]="$label"
    say "row: $label"
    local i tool ino
    for ((i = 1; i <= RUNS; i++)); do
        for tool in py ours; do
            reset_repo "$base"
            set_standby "$start"
            rm -f "$STANDBY.index"
            [ "$sidx" = - ] || cp "$WORK/base/$sidx" "$STANDBY.index"
            sync "$STANDBY.index" "$RUN"
            ino="$(stat -c %i "$STANDBY")"
            STANDBY_HOLDS=
            if timed "$tool" "$row" "$now" "$@"; then
                if cmp -s "$STANDBY" "$expect"; then
                    STANDBY_HOLDS="$expect"
                else
                    note "$row: $tool's output differs from $(basename "$expect")"
                    touch "$RES/$row.$tool.bad"
                fi
                if [ "$tool" = ours ] && [ "$(stat -c %i "$STANDBY" 2>/dev/null)" != "$ino" ]; then
                    note "$row: ours did not recover in place (new inode): $(grep -m1 'Recovering in full' "$RUN/stderr" || true)"
                    touch "$RES/$row.ours.bad"
                fi
                if [ "$eidx" = - ]; then
                    [ ! -e "$STANDBY.index" ] || note "$row: $tool left a $(basename "$STANDBY").index"
                elif ! cmp -s "$STANDBY.index" "$WORK/base/$eidx"; then
                    [ -f "$RES/$row.$tool.idxnote" ] ||
                        note "$row: $tool's $(basename "$STANDBY").index is not $eidx"
                    touch "$RES/$row.$tool.idxnote"
                fi
                local left
                for left in part recovering; do
                    [ ! -e "$STANDBY.$left" ] || note "$row: $tool left $(basename "$STANDBY").$left"
                done
            fi
            rm -rf "$REPO"
            [ "$(base_state)" = "$BASE_STATE" ] || die "$row: base repositories were modified by $tool; delete $WORK/.done-base-* and rerun"
        done
    done
}

# floor_refs ROW: the floors (ref names below) of a row, whose larger is
# its floor; nothing for a row without one.
floor_refs() {
    case "$1" in
        verify|verify_deep) echo md5v ;;
        recover|recover_w) echo cpsync2 ;;
        standby) echo md5 ;;
        full_noidx|full_idx) echo md5 cpsync ;;
    esac
}

# time_floor CMD: one timed run of a floor command into $RUN/time, after a
# sync, with no X left before or after it.
time_floor() {
    rm -f "$RUN/X"
    sync
    /usr/bin/time -f '%e %M' -o "$RUN/time" bash -c "$1" >/dev/null 2>"$RUN/stderr" ||
        die "floor command failed: $1"
    rm -f "$RUN/X"
}

# paired_floor ROW: time the row's floor right after each of our runs,
# into $RES/ROW.floor. A virtual disk's speed drifts by a third within
# minutes (docs/benchmarks.md), so a floor measured before all rows says
# little about a run ten minutes later; the pair shares the disk's mood.
# A full backup's floor is the larger of md5sum and cp + sync, per pair.
paired_floor() {
    local row="$1" r t worst=0 refs
    refs="$(floor_refs "$row")"
    [ -n "$refs" ] || return 0
    for r in $refs; do
        time_floor "${REF_CMD[$r]}"
        t="$(tail -n 1 "$RUN/time" | cut -d' ' -f1)"
        echo "$t ${REF_CMD[$r]}" >>"$RES/$row.floorparts"
        worst="$(awk -v a="$worst" -v b="$t" 'BEGIN { print (b > a) ? b : a }')"
    done
    echo "$worst" >>"$RES/$row.floor"
}

# Floors: the machine's own limits, measured before the rows.
REFS=()
declare -A REF_CMD
ref() {
    local row="$1" label="$2"; shift 2
    REFS+=("$row"); LABEL[$row]="$label"; REF_CMD[$row]="$*"
    local i
    for ((i = 1; i <= RUNS; i++)); do
        time_floor "$*"
        tail -n 1 "$RUN/time" >>"$RES/$row.ref"
    done
    say "floor: $label: $(median "$RES/$row.ref") s"
}
CPU_MODEL="$(lscpu | sed -n 's/^Model name: *//p' | head -n 1)"
say "floors on $CPU_MODEL"
V_FILES="$(cd "$WORK/base/full_2incr" && ls ./*.fs ./*.deltafs | tr '\n' ' ')"
ref md5 "md5sum Data.fs" "md5sum '$DATA'"
ref openssl "openssl dgst -md5 Data.fs" "openssl dgst -md5 '$DATA'"
ref md5v "md5sum of the files -V reads (full + 2 incr)" "cd '$WORK/base/full_2incr' && md5sum $V_FILES"
ref cp "cp Data.fs X" "cp '$DATA' '$RUN/X'"
ref cpsync "cp Data.fs X && sync X" "cp '$DATA' '$RUN/X' && sync '$RUN/X'"
ref cpsync2 "cp Data-a2.fs X && sync X (the bytes recover writes)" "cp '$A2' '$RUN/X' && sync '$RUN/X'"
ref dd "dd if=Data.fs of=X bs=1M oflag=direct conv=fsync" "dd if='$DATA' of='$RUN/X' bs=1M oflag=direct conv=fsync status=none"

R=(-r "$REPO")
bench full_noidx "full backup, no Data.fs.index" - "$DATA" none "$T1" backup -- -B "${R[@]}" -f "$DATA"
bench full_idx "full backup, current Data.fs.index" - "$DATA" saved "$T1" backup -- -B "${R[@]}" -f "$DATA"
bench full_z "full backup -z" - "$DATA" saved "$T1" gzsize -- -B -z "${R[@]}" -f "$DATA"
bench incr "incremental +$APPEND, default mode" full "$A1" saved "$T2" backup -- -B "${R[@]}" -f "$A1"
bench incr_q "incremental +$APPEND, -Q" full_incr "$A2" saved "$T3" backup -- -B -Q "${R[@]}" -f "$A2"
bench incr_qz "incremental +$APPEND, -Q -z" gz_incr "$A2" saved "$T3" gzsize -- -B -Q -z "${R[@]}" -f "$A2"
bench nochange "nothing changed, default mode" full_incr "$A1" saved "$T3" nochange -- -B "${R[@]}" -f "$A1"
bench recover "recover full + 2 increments (-o)" full_2incr - none "$T4" "recover:$A2" -- -R "${R[@]}" -o "$RUN/out.fs"
bench recover_w "recover -w (full + 2 increments)" full_2incr - none "$T4" "recover:$A2" -- -R -w "${R[@]}" -o "$RUN/out.fs"
bench recover_z "recover from a .fsz" gz_full - none "$T4" "recover:$DATA" -- -R "${R[@]}" -o "$RUN/out.fs"
bench verify "verify (full + 2 increments)" full_2incr - none "$T4" none -- -V "${R[@]}"
# Python repozo has no --deep: its column is its plain -V (issue 13's goal
# is ours --deep within 1.3x of our plain -V).
PY_INSTEAD=("$PYREPOZO" -V "${R[@]}")
bench verify_deep "verify --deep (full + 2 increments; python: plain -V)" full_2incr - none "$T4" none -- -V --deep "${R[@]}"
PY_INSTEAD=()
bench verify_z "verify of a .fsz repo (full + 1 incr)" gz_incr - none "$T4" none -- -V "${R[@]}"
bench verify_qz "verify -Q of a .fsz repo (full + 1 incr)" gz_incr - none "$T4" none -- -V -Q "${R[@]}"
bench recover_oz "recover from a .fsz written by ours" ours_gz_full - none "$T4" "recover:$DATA" -- -R "${R[@]}" -o "$RUN/out.fs"
bench verify_oz "verify of a .fsz repo written by ours" ours_gz_incr - none "$T4" none -- -V "${R[@]}"
bench verify_qoz "verify -Q of a .fsz repo written by ours" ours_gz_incr - none "$T4" none -- -V -Q "${R[@]}"
# The index each state's recover installs: the repository's, of its last backup.
bench_inplace standby_q "standby +$APPEND in place, -R -Q" full_2incr "$A1" "full_incr/$T2.index" "$A2" "full_2incr/$T3.index" "$T4" -- -R -Q "${R[@]}" -o "$STANDBY"
bench_inplace standby "standby +$APPEND in place, default mode" full_2incr "$A1" "full_incr/$T2.index" "$A2" "full_2incr/$T3.index" "$T4" -- -R "${R[@]}" -o "$STANDBY"
bench_inplace rollback "rollback by one increment (-D T2), default mode" full_2incr "$A2" "full_2incr/$T3.index" "$A1" "full_incr/$T2.index" "$T4" -- -R "${R[@]}" -o "$STANDBY" -D "$T2"
bench_inplace rollback_q "rollback by one increment (-D T2), -Q" full_2incr "$A2" "full_2incr/$T3.index" "$A1" "full_incr/$T2.index" "$T4" -- -R -Q "${R[@]}" -o "$STANDBY" -D "$T2"
rm -f "$STANDBY"*
# Point in time (issue 17). The python column of --transactions is ZODB's
# own way to the same list: FileStorage's iterator over Data-a2.fs, printing
# each transaction's tid, user and description; that of --at is Python
# repozo recovering the whole chain (it cannot stop inside a file).
if ! skip transactions || ! skip at; then
    cat >"$WORK/fsiter.py" <<'PYEOF'
import sys
from ZODB.FileStorage import FileIterator
n = 0
for t in FileIterator(sys.argv[1]):
    sys.stdout.write('%s %r %r\n' % (t.tid.hex(), t.user, t.description))
    n += 1
PYEOF
    # The transaction in the middle of the last increment, and Data-a2.fs
    # up to its end.
    read -r AT_TID AT_END TXNS < <("$BIN" --transactions --json -r "$WORK/base/full_2incr" |
        "$PYTHON" -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin]
last = [r for r in rows if r["file"] == rows[-1]["file"]]
mid = last[len(last) // 2]
print(mid["tid"], mid["end"], len(rows))')
    head -c "$AT_END" "$A2" >"$WORK/at-expect.fs"
    PY_INSTEAD=("$WORK/fsiter.py" "$A2")
    bench transactions "--transactions --json, full + 2 increments ($TXNS transactions; python: FileIterator)" full_2incr - none "$T4" "lines:$TXNS" -- --transactions --json "${R[@]}"
    PY_INSTEAD=("$PYREPOZO" -R "${R[@]}" -o "$RUN/out.fs")
    bench at "recover --at-tid, middle of the last increment (python: whole chain)" full_2incr - none "$T4" "recover_ours:$WORK/at-expect.fs" -- -R "${R[@]}" -o "$RUN/out.fs" --at-tid "$AT_TID"
    PY_INSTEAD=()
fi
bench many_q "-B -Q, $MANY files, +1 transaction" many "$MANYDATA_A" none "$TM" backup -- -B -Q "${R[@]}" -f "$MANYDATA_A"
bench many_nochange "nothing changed, default mode, $MANY files" many "$MANYDATA" none "$TM" nochange -- -B "${R[@]}" -f "$MANYDATA"
bench many_verify "verify -Q, $MANY files" many - none "$TM" none -- -V -Q "${R[@]}"
bench many_recover "recover, $MANY files" many - none "$TM" "recover:$MANYDATA" -- -R "${R[@]}" -o "$RUN/out.fs"

# ------------------------------------------------------------------ report
DATA_BYTES="$(stat -c %s "$DATA")"
V_BYTES="$(cd "$WORK/base/full_2incr" && cat ./*.fs ./*.deltafs | wc -c)"
# floor_of ROW: the median seconds of the row's floor, or - when it has
# none: the floor timed beside the row's own runs where there is one.
floor_of() {
    local r refs worst=0
    if [ -s "$RES/$1.floor" ]; then median "$RES/$1.floor"; return; fi
    refs="$(floor_refs "$1")"
    if [ -z "$refs" ]; then echo -; return; fi
    for r in $refs; do
        worst="$(awk -v a="$worst" -v b="$(median "$RES/$r.ref")" 'BEGIN { print (b > a) ? b : a }')"
    done
    awk -v w="$worst" 'BEGIN { printf "%.2f", w }'
}
# over OURS FLOOR: ours / floor, or - where there is none.
over() {
    case "$1$2" in *FAIL*|*n/a*|-|*-) echo -; return ;; esac
    awk -v o="$1" -v f="$2" 'BEGIN { if (f > 0) printf "%.2f", o / f; else print "-" }'
}
{
    echo "### repozo benchmark: Data.fs $SIZE (seed $SEED, $DATA_BYTES bytes), $RUNS run(s) each"
    echo
    echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores," \
        "$(free -g | awk '/^Mem:/{print $2}') GiB RAM; ZODB $ZODB_VERSION, $("$PYTHON" -V 2>&1); $(date -u +%Y-%m-%d);" \
        "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (modified)');" \
        "$(df -T "$WORK" | awk 'NR == 2 { print $2 " on " $1 }')"
    echo
    echo "genfs: $(head -n 1 "$WORK/genfs.log" | sed 's/^genfs: //')"
    echo
    echo "Floors (the machine's own limits; CPU: $CPU_MODEL):"
    echo
    echo "| command | median s | MB/s | peak RSS MB |"
    echo "|---|---:|---:|---:|"
    for row in "${REFS[@]}"; do
        m="$(median "$RES/$row.ref")"
        case "$row" in md5v) b="$V_BYTES" ;; cpsync2) b="$(stat -c %s "$A2")" ;; *) b="$DATA_BYTES" ;; esac
        echo "| ${LABEL[$row]} | $m | $(awk -v b="$b" -v s="$m" 'BEGIN{ if (s > 0) printf "%.0f", b / 1e6 / s; else print "n/a" }') | $(peak_mb "$RES/$row.ref") |"
    done
    echo
    echo "| operation | python median s | ours median s | ratio python/ours | floor s | ours/floor | python peak RSS MB | ours peak RSS MB |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|"
    for row in "${ROWS[@]}"; do
        p="$(median "$RES/$row.py")"; o="$(median "$RES/$row.ours")"
        r="$(ratio "$p" "$o")"
        pm="$p"; om="$o"
        [ ! -f "$RES/$row.py.bad" ] || { pm="$p (wrong output)"; r="n/a"; }
        [ ! -f "$RES/$row.ours.bad" ] || { om="$o (wrong output)"; r="n/a"; }
        fl="$(floor_of "$row")"
        echo "| ${LABEL[$row]} | $pm | $om | $r | $fl | $(over "$o" "$fl") | $(peak_mb "$RES/$row.py") | $(peak_mb "$RES/$row.ours") |"
    done
    echo
    echo "Floors of the rows: -V and -V --deep, md5sum of the files -V reads;"
    echo "recover of the chain, cp + sync Data-a2.fs; full backups, the larger of"
    echo "md5sum Data.fs and cp + sync Data.fs (each pair's larger); standby default"
    echo "mode, md5sum Data.fs. All but standby's are timed again right after each of"
    echo "our runs of the row, and the floor column is the median of those, not of"
    echo "the floors above. The other rows have none: those that inflate or compress"
    echo "are held by zlib, not the disk, and the rest read or write too little."
    echo
    if [ -f "$RES/verify.ours" ] || [ -f "$RES/recover.ours" ] || [ -f "$RES/full_noidx.ours" ]; then
        echo "Goals of issue 15 (close to the floor):"
        echo
        goal15() { # ROW LIMIT WHAT
            local o p fl
            o="$(median "$RES/$1.ours")"; p="$(median "$RES/$1.py")"; fl="$(floor_of "$1")"
            echo "- ${LABEL[$1]}: ours $o s = $(over "$o" "$fl") x $3 ($fl s) (goal <= $2): $(awk -v o="$o" -v f="$fl" -v g="$2" 'BEGIN { print (f > 0 && o / f <= g) ? "met" : "not met" }'); python $p s (goal: ours <= python): $(awk -v o="$o" -v p="$p" 'BEGIN { print (o <= p) ? "met" : "not met" }')"
        }
        [ ! -f "$RES/verify.ours" ] || goal15 verify 1.1 "md5sum of the same files"
        [ ! -f "$RES/recover.ours" ] || goal15 recover 1.2 "cp + sync of the same bytes"
        [ ! -f "$RES/full_noidx.ours" ] || goal15 full_noidx 1.25 "max(md5sum, cp + sync) of Data.fs"
        echo
    fi
    goal_ratio() { # ROW GOAL: "python/ours ratio R (goal >= GOAL): met|not met"
        local p o r
        p="$(median "$RES/$1.py")"; o="$(median "$RES/$1.ours")"; r="$(ratio "$p" "$o")"
        if [ -f "$RES/$1.py.bad" ] || [ -f "$RES/$1.ours.bad" ]; then r=n/a; fi
        case "$r" in
            n/a) echo "ratio n/a (goal >= $2): not measured" ;;
            *) echo "ratio $r, $p s / $o s (goal >= $2): $(awk -v p="$p" -v o="$o" -v g="$2" 'BEGIN { print (o == 0 || p / o >= g) ? "met" : "not met" }')" ;;
        esac
    }
    if [ -f "$RES/standby_q.ours" ] && [ -f "$RES/standby.ours" ] && [ -f "$RES/rollback.ours" ] && [ -f "$RES/rollback_q.ours" ]; then
    echo "Goals of the in-place recover (issue 12):"
    echo
    echo "- standby +$APPEND, -Q: $(goal_ratio standby_q 20)"
    o="$(median "$RES/standby.ours")"; m="$(median "$RES/md5.ref")"
    if [ -f "$RES/standby.ours.bad" ]; then
        echo "- standby +$APPEND, default mode: ours n/a (wrong output), md5sum Data.fs $m s (goal <= 1.2 x md5sum): not measured"
    else
        echo "- standby +$APPEND, default mode: ours $o s = $(awk -v o="$o" -v m="$m" 'BEGIN { if (m > 0) printf "%.2f", o / m; else print "n/a" }') x md5sum Data.fs ($m s) (goal <= 1.2): $(awk -v o="$o" -v m="$m" 'BEGIN { print (m > 0 && o / m <= 1.2) ? "met" : "not met" }');" \
            "the ranges it checks are Data-a1.fs's $(stat -c %s "$A1") bytes, $(awk -v a="$(stat -c %s "$A1")" -v d="$DATA_BYTES" 'BEGIN { printf "%.1f", (a / d - 1) * 100 }')% more than md5sum reads; python/ours $(goal_ratio standby 1 | sed 's/ (goal.*//')"
    fi
    echo "- rollback by one increment, default mode: $(goal_ratio rollback 50)"
    echo "- rollback by one increment, -Q: $(goal_ratio rollback_q 50)"
    rss=""; rss_ok=met
    for row in standby_q standby rollback rollback_q; do
        pk="$(peak_mb "$RES/$row.py")"; ok="$(peak_mb "$RES/$row.ours")"
        rss="$rss${rss:+, }$row $ok/$pk"
        [ -n "$ok" ] && [ -n "$pk" ] && [ "$ok" -le "$pk" ] || rss_ok="not met"
    done
    echo "- peak RSS MB, ours/python: $rss (goal: ours <= python): $rss_ok"
    echo
    fi
    if [ -f "$RES/verify_deep.ours" ] && [ -f "$RES/verify.ours" ]; then
        o="$(median "$RES/verify_deep.ours")"; r="$(median "$RES/verify.ours")"
        echo "Goal of -V --deep (issue 13): ours $o s = $(awk -v o="$o" -v r="$r" 'BEGIN { if (r > 0) printf "%.2f", o / r; else print "n/a" }') x our plain -V ($r s) (goal <= 1.3): $(awk -v o="$o" -v r="$r" 'BEGIN { print (r > 0 && o / r <= 1.3) ? "met" : "not met" }')"
        echo
    fi
    if [ -f "$RES/transactions.ours" ] && [ -f "$RES/at.ours" ] && [ -f "$RES/recover.ours" ]; then
        echo "Goals of point in time (issue 17):"
        echo
        o="$(median "$RES/transactions.ours")"
        echo "- --transactions, warm: ours $o s (goal < 1 s): $(awk -v o="$o" 'BEGIN { print (o != "FAIL" && o < 1) ? "met" : "not met" }'); python/ours $(goal_ratio transactions 1 | sed 's/ (goal.*//')"
        o="$(median "$RES/at.ours")"; r="$(median "$RES/recover.ours")"
        echo "- --at-tid to the middle of the last increment: ours $o s = $(awk -v o="$o" -v r="$r" 'BEGIN { if (r > 0) printf "%.2f", o / r; else print "n/a" }') x our plain recover ($r s) (goal <= 1.1): $(awk -v o="$o" -v r="$r" 'BEGIN { print (r > 0 && o / r <= 1.1) ? "met" : "not met" }')"
        echo
    fi
    if ls "$RES"/*.gz >/dev/null 2>&1; then
        echo "Compressed sizes (-z):"
        echo
    fi
    for row in full_z incr_qz; do
        for tool in py ours; do
            if [ -f "$RES/$row.$tool.gz" ]; then
                read -r name bytes <"$RES/$row.$tool.gz"
                echo "- ${LABEL[$row]}, $tool: $name $bytes bytes"
            fi
        done
    done
    if [ -s "$RES/notes" ]; then
        echo
        echo "Notes:"
        echo
        cat "$RES/notes"
    fi
} | tee "$WORK/results.md"
rm -rf "$RUN"
