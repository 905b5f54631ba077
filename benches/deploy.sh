#!/usr/bin/env bash
# Whole-deploy benchmark: what a user waits for.
#
# On the ~30,000-file PHP-shaped tree of fixtures/php-tree.py, committed to a
# local Git repository, it times, alternating in one run on one filesystem:
#   cp -a ROOT          (a full copy of the same tree: the yardstick)
#   rootswap deploy     of a one-file commit, incremental snapshot
#   rootswap deploy     of a one-file commit, snapshots.incremental: false
# and once a commit that changes 1 % of the files, then prints medians,
# ratios, the step breakdown (from `history --json`) and, where strace
# exists, the syscalls one deploy makes per entry of ROOT.
#
# Usage: benches/deploy.sh [--runs N] [--files N] [--no-loop] [--image-size SIZE]
#   --runs N      runs of each (default 7; the docs report >= 5)
#   --files N     files in the generated tree (default 30000)
#   --no-loop     work in $TMPDIR instead of a loop-mounted journaled ext4
#                 image (needed when not root). The root filesystem of the
#                 machines this project is built on has no journal; there,
#                 creating files right after deleting many is several times
#                 slower, which a benchmark would measure instead of rootswap.
#
# Needs python3, git, and root for the loop mount.
set -euo pipefail

RUNS=7
FILES=30000
USE_LOOP=1
IMAGE_SIZE=4G
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS=$2; shift 2 ;;
        --files) FILES=$2; shift 2 ;;
        --no-loop) USE_LOOP=0; shift ;;
        --image-size) IMAGE_SIZE=$2; shift 2 ;;
        -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done

REPO=$(cd "$(dirname "$0")/.." && pwd)
say() { printf '%s\n' "$*" >&2; }
say "building rootswap (release)"
[ -n "${ROOTSWAP_BIN:-}" ] || (cd "$REPO" && cargo build --release -q --bin rootswap)
BIN=${ROOTSWAP_BIN:-${CARGO_TARGET_DIR:-$REPO/target}/release/rootswap}

SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/rootswap-deploy-bench.XXXXXX")
W=$SCRATCH
cleanup() {
    if [ "$USE_LOOP" = 1 ] && mountpoint -q "$SCRATCH/mnt" 2>/dev/null; then
        umount "$SCRATCH/mnt"
    fi
    rm -rf "$SCRATCH"
}
trap cleanup EXIT
if [ "$USE_LOOP" = 1 ]; then
    if [ "$(id -u)" != 0 ]; then
        say "the loop-mounted image needs root; run as root or pass --no-loop"
        exit 2
    fi
    truncate -s "$IMAGE_SIZE" "$SCRATCH/ext4.img"
    mkfs.ext4 -q -F "$SCRATCH/ext4.img"
    mkdir "$SCRATCH/mnt"
    mount -o loop "$SCRATCH/ext4.img" "$SCRATCH/mnt"
    W=$SCRATCH/mnt
    say "working on a journaled ext4 image at $W"
fi

say "generating $FILES files and committing them"
python3 "$REPO/fixtures/php-tree.py" "$W/repo" --files "$FILES" >/dev/null
g() { git -C "$W/repo" -c user.name=bench -c user.email=bench@localhost "$@"; }
g init -q -b main
g add -A
g commit -qm "the site"
commit_change() { # $1: how many files to change
    g ls-files | grep '\.php$' | sed -n "1,${1}p" | while read -r f; do
        printf '\n// change %s\n' "$RANDOM$RANDOM" >>"$W/repo/$f"
    done
    g commit -qam "change $1 files"
}

for mode in inc full; do
    incremental=true
    [ "$mode" = full ] && incremental=false
    mkdir -p "$W/$mode"
    cat >"$W/$mode.yaml" <<YAML
webroot: $W/$mode
source:
  repo: $W/repo
  branch: main
snapshots:
  keep: 1
  incremental: $incremental
drain: 0s
hooks:
  after_checkout: []
YAML
    "$BIN" -c "$W/$mode.yaml" deploy >/dev/null 2>&1
    commit_change 1
    "$BIN" -c "$W/$mode.yaml" deploy >/dev/null 2>&1
done
ENTRIES=$(find "$W/inc/ROOT" | wc -l)
say "ROOT has $ENTRIES entries"

now() { date +%s.%N; }
elapsed() { python3 -c "print(f'{$2 - $1:.4f}')"; }
declare -a T_CP T_INC T_FULL
for i in $(seq 1 "$RUNS"); do
    sync
    t0=$(now); cp -a "$W/inc/ROOT" "$W/cp-$i"; t1=$(now)
    T_CP+=("$(elapsed "$t0" "$t1")")
    commit_change 1
    t0=$(now); "$BIN" -c "$W/inc.yaml" deploy >/dev/null 2>&1; t1=$(now)
    T_INC+=("$(elapsed "$t0" "$t1")")
    commit_change 1
    t0=$(now); "$BIN" -c "$W/full.yaml" deploy >/dev/null 2>&1; t1=$(now)
    T_FULL+=("$(elapsed "$t0" "$t1")")
    rm -rf "$W/cp-$i"
    say "run $i: cp -a ${T_CP[-1]}s, incremental ${T_INC[-1]}s, full ${T_FULL[-1]}s"
done

# Copy-back passes of a one-file commit and of a commit changing 1 % of the files.
passes_ms() {
    "$BIN" -c "$W/inc.yaml" history --json | python3 -c '
import json, sys
r = json.load(sys.stdin)[-1]
def walk(steps):
    for s in steps:
        yield s
        yield from walk(s.get("passes", []))
print(sum(s["ms"] for s in walk(r["steps"]) if s["step"].startswith(("copy-back", "catch-up", "scan ROOT"))))'
}
commit_change 1
"$BIN" -c "$W/inc.yaml" deploy >/dev/null 2>&1
ONE_PASSES=$(passes_ms)
commit_change $((FILES / 100))
t0=$(now); "$BIN" -c "$W/inc.yaml" deploy >/dev/null 2>&1; t1=$(now)
PCT_DEPLOY=$(elapsed "$t0" "$t1")
PCT_PASSES=$(passes_ms)

STEPS=$("$BIN" -c "$W/inc.yaml" history --json | python3 -c '
import json, sys
rs = json.load(sys.stdin)
for r in rs[-(2 + '"$RUNS"'):-2][-1:]:
    print(", ".join(str(s["step"]) + " " + str(s["ms"]) + " ms" for s in r["steps"]))')

STRACE=""
if command -v strace >/dev/null; then
    for mode in inc full; do
        commit_change 1
        strace -f -c -o "$SCRATCH/strace-$mode.txt" "$BIN" -c "$W/$mode.yaml" deploy >/dev/null 2>&1
        STRACE+=$(python3 - "$SCRATCH/strace-$mode.txt" "$ENTRIES" "$mode" <<'PY'
import sys
path, entries, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
calls = {}
for line in open(path):
    parts = line.split()
    if len(parts) >= 5 and parts[-1].isidentifier() and parts[3].isdigit():
        calls[parts[-1]] = int(parts[3])
stat = sum(calls.get(k, 0) for k in ("newfstatat", "statx", "fstat", "lstat", "stat"))
print(f"| {mode} | {stat:,} | {stat / entries:.2f} | {calls.get('getdents64', 0):,} | {calls.get('openat', 0):,} | {calls.get('inotify_add_watch', 0):,} |")
PY
)$'\n'
    done
fi

python3 - "$ENTRIES" "$PCT_DEPLOY" "$ONE_PASSES" "$PCT_PASSES" "${T_CP[*]}" "${T_INC[*]}" "${T_FULL[*]}" <<'PY'
import statistics, sys
entries, pct_deploy, one_p, pct_p = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
cp, inc, full = ([float(x) for x in a.split()] for a in sys.argv[5:8])
m = statistics.median
print(f"ROOT: {entries:,} entries; {len(cp)} alternating runs; medians")
print()
print("| operation | median | vs cp -a |")
print("|---|---|---|")
print(f"| cp -a ROOT | {m(cp):.3f} s | 1.00x |")
print(f"| rootswap deploy, one-file commit, incremental snapshot | {m(inc):.3f} s | {m(inc)/m(cp):.2f}x |")
print(f"| rootswap deploy, one-file commit, incremental: false | {m(full):.3f} s | {m(full)/m(cp):.2f}x |")
print(f"| rootswap deploy, 1 % of the files changed, incremental | {pct_deploy:.3f} s | {pct_deploy/m(cp):.2f}x |")
print()
ratio = pct_p / one_p if one_p else float('nan')
print(f"copy-back, catch-up and ROOT look passes: one-file commit {one_p} ms, 1 % commit {pct_p} ms ({ratio:.2f}x)")
PY
echo
echo "Steps of the last incremental run: $STEPS"
if [ -n "$STRACE" ]; then
    echo
    echo "| one-file deploy | stat-family calls | per entry of ROOT | getdents64 | openat | inotify_add_watch |"
    echo "|---|---|---|---|---|---|"
    printf '%s' "$STRACE"
fi
