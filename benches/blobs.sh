#!/usr/bin/env bash
# benches/blobs.sh: time our repozo --blob-dir against collective.recipe.backup's way.
#
#   benches/blobs.sh [--files 100000] [--bytes 5G] [--nightly N] [--runs 3]
#                    [--work DIR] [--python PATH] [--bin PATH] [--seed N]
#
# What it does
#   1. Uses --bin (default: target/release/repozo after cargo build --release),
#      copied into the work dir first, so a rebuild during the run changes
#      nothing; it must know --blob-dir. Finds a Python with ZODB 6.4 as
#      compare.sh does (--python, scripts/venv.sh, target/venv). Installs
#      rsync and GNU time with apt-get when they are missing.
#   2. Prepares, once, in the work dir (default target/blobbench), each step
#      cached by a stamp holding files/bytes/nightly/seed, the md5 of
#      benches/genblobs.py and the ZODB version:
#        s0/  Data.fs + blobstorage/ written by ZODB (benches/genblobs.py gen):
#             --files blob files (bushy layout) of about --bytes in all:
#             FILES - FILES/11 blobs, FILES/11 of them rewritten once; sizes
#             log-uniform 1 KB..200 KB plus enough 1-8 MiB ones to reach
#             --bytes; random bytes; transactions of 200 blobs
#        s1/  s0 + --nightly new blobs (default FILES/200: 500 of 100,000)
#        s2/  s1 packed (DB.pack, pack_keep_old=False): the old revisions of
#             the rewritten blobs are gone
#      s1 and s2 share the blob files of s0 through hard links (ZODB never
#      writes a committed blob file; a pack only unlinks), their Data.fs are
#      copies. Generation time is measured and reported.
#   3. Four scenarios; in each, the commands run alternately (a, b, c, a,
#      b, c, ...) --runs times each, every run from the same starting state,
#      after a `sync` and with the source read once before the scenario (warm
#      page cache; caches are not dropped). Only the command is timed,
#      with /usr/bin/time -f '%e %M' (wall time, peak RSS). Ours runs with
#      REPOZO_TEST_NOW fixed (T1 < T2 < T3 < T4), Python repozo through a
#      wrapper that fixes its clock the same way. The first run of each
#      backup command is kept as the starting state of the next scenario.
#      "recipe" = what collective.recipe.backup 6 runs for blobs after
#      repozo (copyblobs.backup_blobs with timestamps: rsync of the blob
#      directory, without a trailing slash, into blobstorage.<timestamp>,
#      with --link-dest to the previous one when there is one; or with
#      archive_blob, `tar cf DEST -C SRC .`; restore: rsync -a --delete).
#
# Rows (source, state before, command)
#   1 first backup     s0, empty:   ours -B -r REPO -f Data.fs --blob-dir B
#                                   rsync -a B BK/blobstorage.T1 (+ && sync)
#                                   tar cf BK/blobstorage.T1.tar -C B . (+ sync)
#                                   python repozo -B (the Data.fs part)
#   2 nightly          s1, after 1: ours -B --blob-dir (an incremental)
#                                   rsync -a --delete --link-dest=../blobstorage.T1
#                                     B BK/blobstorage.T2
#                                   python repozo -B (the Data.fs part)
#   3 full after pack  s2, after 2: ours -B -F --blob-dir
#                                   rsync -a --delete --link-dest=../blobstorage.T2
#                                   python repozo -B -F (the Data.fs part)
#                                   (bytes added: files with one link after
#                                   the run, i.e. not shared with the state
#                                   before; and du -sb of REPO/blobs)
#   4 restore          from 3:      ours -R -r REPO -o out/Data.fs --blob-dir out/blobstorage
#                                   cp -a B out/ && sync; cp -a B out/
#                                   rsync -a --delete BK/blobstorage.T3/blobstorage out/ && sync
#                                   python repozo -R (the Data.fs part)
#   ours' restored Data.fs and blob files are compared with s2 (cmp, diff -r)
#   after its first run.
#
# Numbers: each cell is the median wall time of --runs runs (mean of the two
# middle ones for an even count), with the fastest and slowest; peak RSS is
# the largest of the runs (MB = KiB/1024; of the whole shell for "&& sync"
# rows). Results: stdout and $WORK/results.md, with the CPU (lscpu), the
# disk (findmnt, and dd-measured write rates) and the generation time.
set -euo pipefail

FILES=100000
BYTES=
NIGHTLY=
RUNS=3
WORK=
PYTHON=
BIN=
SEED=1

usage() { sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --files) FILES="$2"; shift 2 ;;
        --files=*) FILES="${1#*=}"; shift ;;
        --bytes) BYTES="$2"; shift 2 ;;
        --bytes=*) BYTES="${1#*=}"; shift ;;
        --nightly) NIGHTLY="$2"; shift 2 ;;
        --nightly=*) NIGHTLY="${1#*=}"; shift ;;
        --runs) RUNS="$2"; shift 2 ;;
        --runs=*) RUNS="${1#*=}"; shift ;;
        --work) WORK="$2"; shift 2 ;;
        --work=*) WORK="${1#*=}"; shift ;;
        --python) PYTHON="$2"; shift 2 ;;
        --python=*) PYTHON="${1#*=}"; shift ;;
        --bin) BIN="$2"; shift 2 ;;
        --bin=*) BIN="${1#*=}"; shift ;;
        --seed) SEED="$2"; shift 2 ;;
        --seed=*) SEED="${1#*=}"; shift ;;
        -h|--help) usage 0 ;;
        *) echo "blobs.sh: unknown argument: $1" >&2; usage 2 >&2 ;;
    esac
done
posint() { case "$2" in ''|*[!0-9]*|0) echo "blobs.sh: $1 must be a positive integer" >&2; exit 2 ;; esac; }
posint --files "$FILES"
posint --runs "$RUNS"
# Default: 50 KB a file (5 GB for 100,000); 5G = 5*10^9, 5Gi = 5*2^30.
BYTES="$(numfmt --from=auto "${BYTES:-$((FILES * 50000))}")"
posint --bytes "$BYTES"
NIGHTLY="${NIGHTLY:-$(( FILES / 200 > 0 ? FILES / 200 : 1 ))}"
posint --nightly "$NIGHTLY"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
WORK="${WORK:-$ROOT/target/blobbench}"
mkdir -p "$WORK"
WORK="$(cd "$WORK" && pwd)"
RUN="$WORK/run"
BASE="$RUN/base"
BK="$BASE/bk"
RES="$WORK/results"
GEN="$ROOT/benches/genblobs.py"
S0="$WORK/s0"
S1="$WORK/s1"
S2="$WORK/s2"
T1=2024-01-01-00-00-00
T2=2024-01-02-00-00-00
T3=2024-01-03-00-00-00
T4=2024-01-04-00-00-00

say() { echo "blobs.sh: $*" >&2; }
die() { say "$*"; exit 1; }

# ------------------------------------------------------------------ tools
if [ -z "$BIN" ]; then
    say "building (cargo build --release)"
    cargo build --release --quiet
    BIN="$ROOT/target/release/repozo"
fi
[ -x "$BIN" ] || die "no executable $BIN"
"$BIN" -h 2>&1 | grep -q -- '--blob-dir' || die "$BIN has no --blob-dir option"
mkdir -p "$WORK/bin"
cp "$BIN" "$WORK/bin/repozo"
BIN_MD5="$(md5sum "$BIN" | cut -d' ' -f1)"
BIN_FROM="$BIN"
BIN="$WORK/bin/repozo"

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
"$PYTHON" -c 'import ZODB.scripts.repozo, BTrees' || die "$PYTHON cannot import ZODB.scripts.repozo"
ZODB_VERSION="$("$PYTHON" -c 'from importlib.metadata import version; print(version("ZODB"))')"

need=()
[ -x /usr/bin/time ] || need+=(time)
command -v rsync >/dev/null || need+=(rsync)
if [ ${#need[@]} -gt 0 ]; then
    say "installing ${need[*]}"
    apt-get update -qq >&2 && apt-get install -y -qq "${need[@]}" >&2
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

# ------------------------------------------------------------------ data
GEN_MD5="$(md5sum "$GEN" | cut -d' ' -f1)"
STAMP="files=$FILES bytes=$BYTES nightly=$NIGHTLY seed=$SEED gen=$GEN_MD5 zodb=$ZODB_VERSION"
done_step() { [ -f "$WORK/.done-$1" ] && [ "$(cat "$WORK/.done-$1")" = "$STAMP" ]; }
mark_step() { echo "$STAMP" >"$WORK/.done-$1"; }
secs_since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'; }

# tidy DIR: what a closed FileStorage leaves besides Data.fs and its index.
tidy() { rm -f "$1/Data.fs.lock" "$1/Data.fs.tmp"; }

if ! done_step s0; then
    say "stamp changed or missing: generating s0 ($FILES files, $BYTES bytes)"
    rm -f "$WORK"/.done-*
    rm -rf "$S0" "$S1" "$S2" "$RUN" "$WORK/gen.log"
    t0=$(date +%s.%N)
    line="$("$PYTHON" "$GEN" gen "$S0" --files "$FILES" --bytes "$BYTES" --seed "$SEED")"
    tg="$(secs_since "$t0")"
    t1=$(date +%s.%N); sync; ts="$(secs_since "$t1")"
    tidy "$S0"
    echo "s0: $line; sync after it ${ts} s" | tee -a "$WORK/gen.log" >&2
    mark_step s0
fi
# copy_state FROM TO: hard links to the blob files, copies of Data.fs*.
copy_state() {
    rm -rf "$2"
    mkdir -p "$2"
    cp -al "$1/blobstorage" "$2/"
    cp -p "$1/Data.fs" "$1/Data.fs.index" "$2/"
}
if ! done_step s1; then
    say "s1 = s0 + $NIGHTLY new blobs"
    rm -f "$WORK/.done-s2"
    copy_state "$S0" "$S1"
    line="$("$PYTHON" "$GEN" add "$S1" --count "$NIGHTLY" --seed $((SEED + 1000)))"
    tidy "$S1"; sync
    echo "s1: $line" | tee -a "$WORK/gen.log" >&2
    mark_step s1
fi
if ! done_step s2; then
    say "s2 = s1 packed"
    copy_state "$S1" "$S2"
    line="$("$PYTHON" "$GEN" pack "$S2")"
    tidy "$S2"; sync
    echo "s2 (pack): $line" | tee -a "$WORK/gen.log" >&2
    mark_step s2
fi

# blob_stats DIR: "files bytes dirs" of a blob directory (.blob files only).
blob_stats() {
    local f b d
    read -r f b < <(find "$1" -type f -name '*.blob' -printf '%s\n' | awk '{n++; s+=$1} END{printf "%d %.0f\n", n, s}')
    d="$(find "$1" -type d | wc -l)"
    echo "$f $b $d"
}
read -r S0_FILES S0_BYTES S0_DIRS < <(blob_stats "$S0/blobstorage")
read -r S1_FILES S1_BYTES S1_DIRS < <(blob_stats "$S1/blobstorage")
read -r S2_FILES S2_BYTES S2_DIRS < <(blob_stats "$S2/blobstorage")

# ------------------------------------------------------------------ runs
rm -rf "$RES" "$RUN"
mkdir -p "$RES" "$BK"
: >"$RES/notes"
note() { echo "- $*" >>"$RES/notes"; say "NOTE: $*"; }

# warm DIR...: read every file once (untimed), so all tools start warm.
warm() { find "$@" -type f -exec cat {} + >/dev/null; }

# timed ROW CMD...: one run, after a sync; appends "secs kib" (or FAIL) to
# $RES/ROW.x.
timed() {
    local row="$1"; shift
    sync
    if /usr/bin/time -f '%e %M' -o "$RUN/time" "$@" >"$RUN/stdout" 2>"$RUN/stderr"; then
        tail -n 1 "$RUN/time" >>"$RES/$row.x"
    else
        echo FAIL >>"$RES/$row.x"
        note "$row failed ($*): $(tail -n 3 "$RUN/stderr" | tr '\n' ' ')"
    fi
}
# ours NOW / py NOW: the command words of our binary / Python repozo with the
# clock fixed at NOW, in the array CMD.
ours() { CMD=(env "REPOZO_TEST_NOW=$1" "$BIN"); }
py() { CMD=(env "REPOZO_TEST_NOW=$1" "$PYTHON" "$PYREPOZO"); }

# copy_repo FROM TO: our repository as it was: hard links to the pool
# (never rewritten), copies of everything else (.dat, manifests, ...).
copy_repo() {
    rm -rf "$2"
    mkdir -p "$2"
    local e
    for e in "$1"/* "$1"/.[!.]*; do
        [ -e "$e" ] || continue
        if [ "$(basename "$e")" = blobs ]; then cp -al "$e" "$2/"; else cp -a "$e" "$2/"; fi
    done
}
# new_bytes DIR: "files bytes" of regular files with one link under DIR.
new_bytes() { find "$1" -type f -links 1 -printf '%s\n' | awk '{n++; s+=$1} END{printf "%d %.0f\n", n, s}'; }
dusb() { du -sb "$1" | cut -f1; }

ROWS=()
declare -A LABEL SCEN
row() { ROWS+=("$1"); SCEN[$1]="$2"; LABEL[$1]="$3"; }

# 1. First backup of s0.
say "scenario 1: first backup ($S0_FILES blob files, $S0_BYTES bytes)"
row b1_ours 1 "ours: \`-B -r REPO -f Data.fs --blob-dir B\`"
row b1_rsync 1 "recipe: \`rsync -a B BK/blobstorage.T1\`"
row b1_rsync_sync 1 "recipe: \`rsync -a B BK/blobstorage.T1 && sync\`"
row b1_tar 1 "recipe (archive_blob): \`tar cf BK/blobstorage.T1.tar -C B .\`"
row b1_tar_sync 1 "recipe (archive_blob): \`tar cf ... && sync\`"
row b1_py 1 "Python repozo \`-B\` (Data.fs only)"
warm "$S0"
for ((i = 1; i <= RUNS; i++)); do
    rm -rf "$RUN/repo"; mkdir -p "$RUN/repo"
    ours "$T1"; timed b1_ours "${CMD[@]}" -B -r "$RUN/repo" -f "$S0/Data.fs" --blob-dir "$S0/blobstorage"
    if [ "$i" = 1 ]; then
        echo "$(dusb "$RUN/repo") $(dusb "$RUN/repo/blobs")" >"$RES/b1_ours.size"
        mv "$RUN/repo" "$BASE/ours1"
    else rm -rf "$RUN/repo"; fi

    rm -rf "$RUN/bk1"; mkdir -p "$RUN/bk1"
    timed b1_rsync rsync -a "$S0/blobstorage" "$RUN/bk1/blobstorage.$T1"
    if [ "$i" = 1 ]; then mv "$RUN/bk1/blobstorage.$T1" "$BK/"; fi
    rm -rf "$RUN/bk1"; mkdir -p "$RUN/bk1"
    timed b1_rsync_sync bash -c 'rsync -a "$1" "$2" && sync' - "$S0/blobstorage" "$RUN/bk1/blobstorage.$T1"
    rm -rf "$RUN/bk1"; mkdir -p "$RUN/bk1"
    timed b1_tar tar cf "$RUN/bk1/blobstorage.$T1.tar" -C "$S0/blobstorage" .
    if [ "$i" = 1 ]; then stat -c %s "$RUN/bk1/blobstorage.$T1.tar" >"$RES/b1_tar.size"; fi
    rm -rf "$RUN/bk1"; mkdir -p "$RUN/bk1"
    timed b1_tar_sync bash -c 'tar cf "$1" -C "$2" . && sync' - "$RUN/bk1/blobstorage.$T1.tar" "$S0/blobstorage"
    rm -rf "$RUN/bk1"

    rm -rf "$RUN/pyrepo"; mkdir -p "$RUN/pyrepo"
    py "$T1"; timed b1_py "${CMD[@]}" -B -r "$RUN/pyrepo" -f "$S0/Data.fs"
    if [ "$i" = 1 ]; then mv "$RUN/pyrepo" "$BASE/py1"; else rm -rf "$RUN/pyrepo"; fi
done
[ -d "$BASE/ours1" ] && [ -d "$BK/blobstorage.$T1" ] && [ -d "$BASE/py1" ] ||
    die "scenario 1 left no starting state for scenario 2 (see $RES/notes)"

# 2. Nightly: s1 = s0 + NIGHTLY blobs.
say "scenario 2: nightly after $NIGHTLY new blobs"
row b2_ours 2 "ours: \`-B -r REPO -f Data.fs --blob-dir B\` (incremental)"
row b2_rsync 2 "recipe: \`rsync -a --delete --link-dest=../blobstorage.T1 B BK/blobstorage.T2\`"
row b2_py 2 "Python repozo \`-B\` (Data.fs only, incremental)"
warm "$S1"
for ((i = 1; i <= RUNS; i++)); do
    copy_repo "$BASE/ours1" "$RUN/repo"
    before="$(dusb "$RUN/repo/blobs")"
    ours "$T2"; timed b2_ours "${CMD[@]}" -B -r "$RUN/repo" -f "$S1/Data.fs" --blob-dir "$S1/blobstorage"
    echo "$(new_bytes "$RUN/repo/blobs") $before $(dusb "$RUN/repo/blobs")" >>"$RES/b2_ours.added"
    ls "$RUN/repo" | grep -q "^$T2\.deltafs" || note "b2: ours wrote no $T2.deltafs (not an incremental?): $(ls "$RUN/repo" | tr '\n' ' ')"
    if [ "$i" = 1 ]; then mv "$RUN/repo" "$BASE/ours2"; else rm -rf "$RUN/repo"; fi

    d="$BK/blobstorage.$T2.r$i"
    timed b2_rsync rsync -a --delete "--link-dest=../blobstorage.$T1" "$S1/blobstorage" "$d"
    new_bytes "$d" >>"$RES/b2_rsync.added"
    if [ "$i" = 1 ]; then mv "$d" "$BK/blobstorage.$T2"; else rm -rf "$d"; fi

    rm -rf "$RUN/pyrepo"; cp -a "$BASE/py1" "$RUN/pyrepo"
    py "$T2"; timed b2_py "${CMD[@]}" -B -r "$RUN/pyrepo" -f "$S1/Data.fs"
    if [ "$i" = 1 ]; then mv "$RUN/pyrepo" "$BASE/py2"; else rm -rf "$RUN/pyrepo"; fi
done
[ -d "$BASE/ours2" ] && [ -d "$BK/blobstorage.$T2" ] && [ -d "$BASE/py2" ] ||
    die "scenario 2 left no starting state for scenario 3 (see $RES/notes)"

# 3. Full backup after a pack: s2 = s1 packed.
say "scenario 3: full backup after a pack"
row b3_ours 3 "ours: \`-B -F -r REPO -f Data.fs --blob-dir B\`"
row b3_rsync 3 "recipe: \`rsync -a --delete --link-dest=../blobstorage.T2 B BK/blobstorage.T3\`"
row b3_py 3 "Python repozo \`-B -F\` (Data.fs only)"
warm "$S2"
for ((i = 1; i <= RUNS; i++)); do
    copy_repo "$BASE/ours2" "$RUN/repo"
    before="$(dusb "$RUN/repo/blobs")"
    ours "$T3"; timed b3_ours "${CMD[@]}" -B -F -r "$RUN/repo" -f "$S2/Data.fs" --blob-dir "$S2/blobstorage"
    echo "$(new_bytes "$RUN/repo/blobs") $before $(dusb "$RUN/repo/blobs")" >>"$RES/b3_ours.added"
    if [ "$i" = 1 ]; then mv "$RUN/repo" "$BASE/ours3"; else rm -rf "$RUN/repo"; fi

    d="$BK/blobstorage.$T3.r$i"
    timed b3_rsync rsync -a --delete "--link-dest=../blobstorage.$T2" "$S2/blobstorage" "$d"
    new_bytes "$d" >>"$RES/b3_rsync.added"
    if [ "$i" = 1 ]; then mv "$d" "$BK/blobstorage.$T3"; else rm -rf "$d"; fi

    rm -rf "$RUN/pyrepo"; cp -a "$BASE/py2" "$RUN/pyrepo"
    py "$T3"; timed b3_py "${CMD[@]}" -B -F -r "$RUN/pyrepo" -f "$S2/Data.fs"
    if [ "$i" = 1 ]; then mv "$RUN/pyrepo" "$BASE/py3"; else rm -rf "$RUN/pyrepo"; fi
done
[ -d "$BASE/ours3" ] && [ -d "$BK/blobstorage.$T3" ] && [ -d "$BASE/py3" ] ||
    die "scenario 3 left no starting state for scenario 4 (see $RES/notes)"

# 4. Restore the state of scenario 3.
say "scenario 4: restore"
row r_ours 4 "ours: \`-R -r REPO -o out/Data.fs --blob-dir out/blobstorage\`"
row r_cp_sync 4 "\`cp -a B out/ && sync\`"
row r_cp 4 "\`cp -a B out/\` (no sync)"
row r_rsync 4 "recipe: \`rsync -a --delete BK/blobstorage.T3/blobstorage out/ && sync\`"
row r_py 4 "Python repozo \`-R -o out/Data.fs\` (Data.fs only)"
warm "$BASE/ours3" "$BK/blobstorage.$T3" "$S2"
for ((i = 1; i <= RUNS; i++)); do
    rm -rf "$RUN/out"; mkdir -p "$RUN/out"
    ours "$T4"; timed r_ours "${CMD[@]}" -R -r "$BASE/ours3" -o "$RUN/out/Data.fs" --blob-dir "$RUN/out/blobstorage"
    if [ "$i" = 1 ]; then
        cmp -s "$RUN/out/Data.fs" "$S2/Data.fs" || note "restore: ours' Data.fs differs from s2/Data.fs"
        if diff -rq -x tmp "$S2/blobstorage" "$RUN/out/blobstorage" >"$RUN/diff" 2>&1; then
            note "restore: ours' blob directory equals s2's (diff -r, tmp/ left out)"
        else
            note "restore: ours' blob directory differs from s2's: $(head -n 5 "$RUN/diff" | tr '\n' ' ')"
        fi
    fi
    rm -rf "$RUN/out"; mkdir -p "$RUN/out"
    timed r_cp_sync bash -c 'cp -a "$1" "$2/" && sync' - "$S2/blobstorage" "$RUN/out"
    rm -rf "$RUN/out"; mkdir -p "$RUN/out"
    timed r_cp cp -a "$S2/blobstorage" "$RUN/out/"
    rm -rf "$RUN/out"; mkdir -p "$RUN/out"
    timed r_rsync bash -c 'rsync -a --delete "$1" "$2/" && sync' - "$BK/blobstorage.$T3/blobstorage" "$RUN/out"
    rm -rf "$RUN/out"; mkdir -p "$RUN/out"
    py "$T4"; timed r_py "${CMD[@]}" -R -r "$BASE/py3" -o "$RUN/out/Data.fs"
    rm -rf "$RUN/out"
done

# ------------------------------------------------------------------ machine
DD_TMP="$WORK/dd.tmp"
DD_SYNC="$(dd if=/dev/zero of="$DD_TMP" bs=1M count=2048 conv=fdatasync 2>&1 | tail -n 1)"
rm -f "$DD_TMP"
DD_DIRECT="$(dd if=/dev/zero of="$DD_TMP" bs=1M count=2048 oflag=direct 2>&1 | tail -n 1)"
rm -f "$DD_TMP"
CPU="$(lscpu | sed -n 's/^Model name: *//p' | head -n 1)"
DISK="$(findmnt -no SOURCE,FSTYPE --target "$WORK")"

# ------------------------------------------------------------------ report
# stats FILE: "median min max" of column 1, or FAIL
stats() {
    if grep -q FAIL "$1"; then echo "FAIL - -"; return; fi
    cut -d' ' -f1 "$1" | sort -g | awk '{a[NR]=$1} END {
        if (NR % 2) m = a[(NR + 1) / 2]; else m = (a[NR / 2] + a[NR / 2 + 1]) / 2
        printf "%.2f %.2f %.2f\n", m, a[1], a[NR] }'
}
median() { stats "$1" | cut -d' ' -f1; }
peak_mb() { grep -v FAIL "$1" | cut -d' ' -f2 | sort -g | tail -n 1 | awk '{printf "%.0f", $1 / 1024}'; }
ratio() {
    case "$1$2" in *FAIL*) echo "n/a"; return ;; esac
    awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1f", a / b; else printf ">%.0f", a / 0.01 }'
}
mb() { awk -v b="$1" 'BEGIN{printf "%.1f", b / 1e6}'; }
# added FILE: median of "files bytes ..." lines by bytes
added() { sort -k2,2n "$1" | awk '{l[NR]=$0} END{print l[int((NR + 1) / 2)]}'; }

{
    echo "### Blob backups: $S0_FILES blob files, $(mb "$S0_BYTES") MB ($RUNS runs each)"
    echo
    echo "\`benches/blobs.sh --files $FILES --bytes $BYTES --nightly $NIGHTLY --runs $RUNS --seed $SEED\`," \
        "$(date -u +%Y-%m-%d); binary $BIN_FROM (md5 $BIN_MD5)."
    echo
    echo "- CPU: $CPU, $(nproc) cores, $(free -g | awk '/^Mem:/{print $2}') GiB RAM; ZODB $ZODB_VERSION, $("$PYTHON" -V 2>&1), $(rsync --version | head -n 1 | sed 's/  */ /g'), $(tar --version | head -n 1)"
    echo "- disk: \`$DISK\` (findmnt of the work dir); dd 2 GiB, conv=fdatasync: $DD_SYNC; oflag=direct: $DD_DIRECT"
    echo "- warm page cache: caches were not dropped; every source was read once before its scenario, and a \`sync\` ran before every timed command."
    echo "- blob stores (bushy layout; .blob files, bytes, directories):" \
        "s0 $S0_FILES files, $S0_BYTES bytes, $S0_DIRS dirs;" \
        "s1 (+$NIGHTLY) $S1_FILES, $S1_BYTES, $S1_DIRS;" \
        "s2 (packed) $S2_FILES, $S2_BYTES, $S2_DIRS"
    echo "- generation (ZODB, benches/genblobs.py): $(tr '\n' ';' <"$WORK/gen.log" | sed 's/;$//; s/;/; /g')"
    echo
    echo "| scenario | command | median s | min-max s | peak RSS MB |"
    echo "|---|---|---:|---:|---:|"
    names=([1]="1 first backup" [2]="2 nightly +$NIGHTLY" [3]="3 full after pack" [4]="4 restore")
    for r in "${ROWS[@]}"; do
        read -r m lo hi < <(stats "$RES/$r.x")
        echo "| ${names[${SCEN[$r]}]} | ${LABEL[$r]} | $m | $lo-$hi | $(peak_mb "$RES/$r.x") |"
    done
    echo
    o2="$(median "$RES/b2_ours.x")"; r2="$(median "$RES/b2_rsync.x")"
    o3="$(median "$RES/b3_ours.x")"; r3="$(median "$RES/b3_rsync.x")"
    read -r a2f a2b _ < <(added "$RES/b2_ours.added")
    read -r a3f a3b a3before a3after < <(added "$RES/b3_ours.added")
    read -r n2f n2b < <(added "$RES/b2_rsync.added")
    read -r n3f n3b < <(added "$RES/b3_rsync.added")
    echo "- first backup: ours wrote $(mb "$(cut -d' ' -f1 "$RES/b1_ours.size")") MB in all" \
        "($(mb "$(cut -d' ' -f2 "$RES/b1_ours.size")") MB in REPO/blobs); the tar is $(mb "$(cat "$RES/b1_tar.size")") MB;" \
        "ours $(ratio "$(median "$RES/b1_rsync.x")" "$(median "$RES/b1_ours.x")")x rsync's speed," \
        "$(ratio "$(median "$RES/b1_rsync_sync.x")" "$(median "$RES/b1_ours.x")")x rsync && sync's."
    echo "- nightly: rsync median / ours median = $(ratio "$r2" "$o2") (goal: 20);" \
        "ours added $a2f files, $(mb "$a2b") MB to the pool; rsync copied $n2f files, $(mb "$n2b") MB" \
        "(new blobs in s1: $((S1_FILES - S0_FILES)) files, $(mb $((S1_BYTES - S0_BYTES))) MB)."
    echo "- full after pack: ours added $a3f files, $a3b bytes to REPO/blobs" \
        "(du -sb $a3before -> $a3after), $(awk -v a="$a3b" -v b="$S2_BYTES" 'BEGIN{printf "%.2f", 100 * a / b}')% of s2's $S2_BYTES blob bytes (goal: under 5%);" \
        "rsync copied $n3f files, $n3b bytes; rsync median / ours median = $(ratio "$r3" "$o3")."
    rs="$(median "$RES/r_ours.x")"
    echo "- restore: $(mb "$S2_BYTES") MB of blobs; ours $(awk -v b="$S2_BYTES" -v s="$rs" 'BEGIN{ if (s > 0) printf "%.0f", b / 1e6 / s; else print "n/a" }') MB/s," \
        "cp -a && sync $(awk -v b="$S2_BYTES" -v s="$(median "$RES/r_cp_sync.x")" 'BEGIN{ if (s > 0) printf "%.0f", b / 1e6 / s; else print "n/a" }') MB/s," \
        "cp -a $(awk -v b="$S2_BYTES" -v s="$(median "$RES/r_cp.x")" 'BEGIN{ if (s > 0) printf "%.0f", b / 1e6 / s; else print "n/a" }') MB/s" \
        "(the disk's copy rate), rsync && sync $(awk -v b="$S2_BYTES" -v s="$(median "$RES/r_rsync.x")" 'BEGIN{ if (s > 0) printf "%.0f", b / 1e6 / s; else print "n/a" }') MB/s."
    if [ -s "$RES/notes" ]; then
        echo
        echo "Notes:"
        echo
        cat "$RES/notes"
    fi
} | tee "$WORK/results.md"
