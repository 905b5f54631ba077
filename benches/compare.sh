#!/usr/bin/env bash
# Side-by-side comparison of tree copiers on a PHP-shaped tree, in one run,
# alternating, on the same tree and filesystem, with the page cache warm:
#   cp -a, rsync -a, tar | tar, fs_extra::dir::copy, xcp, rootswap (full copy,
#   incremental snapshot after 1 file and after 1 % of files changed),
#   and rm -rf vs rootswap's removal; plus the floor (creating the same
#   directories, empty files and links, with the same threads).
# Prints a Markdown table: median of N runs, files/s, MB/s, peak RSS, ratios.
#
# Usage: benches/compare.sh [--runs N] [--tree DIR] [--files N] [--image-size SIZE] [--no-loop] [--keep]
#   --runs N        runs per tool (default 5, at least 5 for docs/performance.md)
#   --tree DIR      copy DIR into the test filesystem and use it instead of the
#                   generated tree (fixtures/php-tree.py, 30,000 files)
#   --no-loop       do not make a loop-mounted ext4 image; work in $TMPDIR
#                   (needed when not root; on an ext4 without journal this
#                   measures ext4's recently-deleted-inode check, see
#                   docs/performance.md#why-a-loop-mounted-image)
#   --keep          leave the image mounted at the end (for strace runs)
#
# Needs: root for the loop mount (otherwise use --no-loop), python3, and it
# installs what is missing: rsync and GNU time (apt-get), xcp (cargo install).
set -euo pipefail

RUNS=5
TREE=""
FILES=30000
IMAGE_SIZE=6G
USE_LOOP=1
KEEP=0
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS=$2; shift 2 ;;
        --tree) TREE=$2; shift 2 ;;
        --files) FILES=$2; shift 2 ;;
        --image-size) IMAGE_SIZE=$2; shift 2 ;;
        --no-loop) USE_LOOP=0; shift ;;
        --keep) KEEP=1; shift ;;
        -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done

REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
say() { printf '%s\n' "$*" >&2; }

# --- tools ---------------------------------------------------------------
need_apt=()
command -v rsync >/dev/null || need_apt+=(rsync)
[ -x /usr/bin/time ] || need_apt+=(time)
if [ ${#need_apt[@]} -gt 0 ]; then
    say "installing ${need_apt[*]}"
    apt-get update -qq && apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
if ! command -v xcp >/dev/null; then
    say "installing xcp (cargo install xcp)"
    cargo install xcp --locked -q || say "xcp could not be installed: its row is skipped"
fi
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
say "building the engine (release)"
cargo build --release -q --example engine --example fs_extra_copy
ENGINE=$TARGET/release/examples/engine
FS_EXTRA=$TARGET/release/examples/fs_extra_copy

# --- filesystem ----------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/rootswap-compare.XXXXXX")
MNT=$WORK/mnt
mkdir -p "$MNT"
cleanup() {
    if [ "$KEEP" = 0 ]; then
        if mountpoint -q "$MNT"; then umount "$MNT"; fi
        rm -rf "$WORK"
    else
        say "kept $MNT"
    fi
}
trap cleanup EXIT
FS_DESC="directory on $(df -T "$WORK" | awk 'NR==2{print $2}') ($WORK)"
if [ "$USE_LOOP" = 1 ]; then
    truncate -s "$IMAGE_SIZE" "$WORK/ext4.img"
    mkfs.ext4 -q -F "$WORK/ext4.img"
    if mount -o loop "$WORK/ext4.img" "$MNT" 2>/dev/null; then
        FS_DESC="loop-mounted ext4 image with journal ($IMAGE_SIZE, mkfs.ext4 defaults)"
    else
        say "cannot loop-mount (not root?): using a plain directory; see --no-loop"
    fi
fi

SRC=$MNT/src
if [ -n "$TREE" ]; then
    cp -a "$TREE" "$SRC"
    TREE_DESC="$TREE"
else
    python3 fixtures/php-tree.py "$SRC" --files "$FILES" >&2
    TREE_DESC="fixtures/php-tree.py --files $FILES"
fi
ENTRIES=$(find "$SRC" -mindepth 1 | wc -l)
NFILES=$(find "$SRC" -type f | wc -l)
NDIRS=$(find "$SRC" -mindepth 1 -type d | wc -l)
NLINKS=$(find "$SRC" -type l | wc -l)
BYTES=$(find "$SRC" -type f -printf '%s\n' | awk '{s+=$1} END{print s}')
mapfile -t ALL_FILES < <(cd "$SRC" && find . -type f -name '*.php' | sort)
warm() { find "$SRC" -type f -print0 | xargs -0 cat > /dev/null; }
warm

# --- runners -------------------------------------------------------------
# run NAME CMD...: times CMD (wall, ns) and its peak RSS; appends to results.
RESULTS=$WORK/results.txt
: > "$RESULTS"
run() {
    local name=$1; shift
    sync
    local t0 t1
    t0=$(date +%s%N)
    /usr/bin/time -f '%M %U %S' -o "$WORK/rss" "$@" > /dev/null 2> "$WORK/err" || { say "$name failed:"; cat "$WORK/err" >&2; exit 1; }
    t1=$(date +%s%N)
    echo "$name $(( t1 - t0 )) $(tail -1 "$WORK/rss")" >> "$RESULTS"
}
copy_cmd() { # sets CMD to the command copying SRC to $2 with tool $1
    local tool=$1 dst=$2
    case "$tool" in
        cp) CMD=(cp -a "$SRC" "$dst") ;;
        rsync) CMD=(rsync -a "$SRC/" "$dst/") ;;
        tar) CMD=(sh -c 'mkdir "$1" && tar -C "$2" -cf - . | tar -C "$1" -xf -' sh "$dst" "$SRC") ;;
        fs_extra) CMD=("$FS_EXTRA" "$SRC" "$dst") ;;
        xcp) CMD=(xcp -r "$SRC" "$dst") ;;
        rootswap) CMD=("$ENGINE" copy "$SRC" "$dst") ;;
    esac
}
TOOLS=(cp rsync tar fs_extra rootswap)
command -v xcp >/dev/null && TOOLS=(cp rsync tar fs_extra xcp rootswap)
export ROOTSWAP_QUIET=1

# The snapshot that incremental runs bring up to date.
INC=$MNT/inc
"$ENGINE" copy "$SRC" "$INC"
change_files() { # N: rewrite N php files of SRC (new content and mtime)
    local n=$1 step i=0 k=0
    step=$(( ${#ALL_FILES[@]} / n )); [ "$step" -ge 1 ] || step=1
    while [ $k -lt "$n" ] && [ $i -lt ${#ALL_FILES[@]} ]; do
        printf '<?php // changed %s %s\n' "$RANDOM" "$(date +%s%N)" >> "$SRC/${ALL_FILES[$i]}"
        i=$(( i + step )); k=$(( k + 1 ))
    done
}
ONE_PCT=$(( NFILES / 100 ))

for r in $(seq 1 "$RUNS"); do
    say "round $r/$RUNS"
    # Rotate the order every round so that no tool always runs first or last.
    n=${#TOOLS[@]}
    order=()
    for i in $(seq 0 $(( n - 1 ))); do order+=("${TOOLS[$(( (i + r) % n ))]}"); done
    for tool in "${order[@]}"; do
        copy_cmd "$tool" "$MNT/out-$tool-$r"
        run "$tool" "${CMD[@]}"
    done
    # The floor: the same directories, empty files and links, nothing else.
    run "floor" "$ENGINE" floor "$SRC" "$MNT/floor-$r"
    rm -rf "$MNT/floor-$r"
    change_files 1
    run "rootswap-incremental-1-file" "$ENGINE" sync "$SRC" "$INC"
    change_files "$ONE_PCT"
    run "rootswap-incremental-1pct" "$ENGINE" sync "$SRC" "$INC"
    # Removal: half the copies with rm -rf, half with the engine, alternating.
    k=0
    for tool in "${order[@]}"; do
        if [ $(( (k + r) % 2 )) = 0 ]; then
            run "rm-rf" rm -rf "$MNT/out-$tool-$r"
        else
            run "rootswap-remove" "$ENGINE" remove "$MNT/out-$tool-$r"
        fi
        k=$(( k + 1 ))
    done
done

# --- table ---------------------------------------------------------------
python3 - "$RESULTS" "$ENTRIES" "$BYTES" "$RUNS" <<'PY' > "$WORK/table.md"
import statistics, sys
path, entries, nbytes, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rows = {}
cpu = {}
for line in open(path):
    name, ns, rss, user, system = line.split()
    rows.setdefault(name, []).append((int(ns) / 1e9, int(rss)))
    cpu.setdefault(name, []).append(float(user) + float(system))
def med(name): return statistics.median(t for t, _ in rows[name])
labels = {
    "cp": "`cp -a`", "rsync": "`rsync -a`", "tar": "`tar -cf - . \\| tar -xf -`",
    "fs_extra": "`fs_extra::dir::copy`", "xcp": "`xcp -r`", "rootswap": "**rootswap copy_tree**",
    "rootswap-incremental-1-file": "**rootswap incremental, 1 file changed**",
    "rootswap-incremental-1pct": "**rootswap incremental, 1 % of files changed**",
    "rm-rf": "`rm -rf`", "rootswap-remove": "**rootswap remove_tree**",
    "floor": "floor: same dirs, empty files, links",
}
base = med("rootswap")
cp = med("cp")
print("| operation | runs | median s | min s | max s | CPU s (user+sys, median) | entries/s | MB/s | peak RSS MiB | time vs rootswap copy | speed-up vs `cp -a` |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for name in ["cp", "rsync", "tar", "fs_extra", "xcp", "rootswap", "floor", "rootswap-incremental-1-file", "rootswap-incremental-1pct"]:
    if name not in rows: continue
    ts = [t for t, _ in rows[name]]; m = med(name)
    rss = max(r for _, r in rows[name]) / 1024
    print(f"| {labels[name]} | {len(ts)} | {m:.3f} | {min(ts):.3f} | {max(ts):.3f} | {statistics.median(cpu[name]):.2f} | {entries / m:,.0f} | {nbytes / 1e6 / m:,.0f} | {rss:.1f} | {m / base:.2f}x | {cp / m:.1f}x |")
rm = med("rm-rf"); rs = med("rootswap-remove")
for name in ["rm-rf", "rootswap-remove"]:
    ts = [t for t, _ in rows[name]]; m = med(name)
    rss = max(r for _, r in rows[name]) / 1024
    print(f"| {labels[name]} | {len(ts)} | {m:.3f} | {min(ts):.3f} | {max(ts):.3f} | {statistics.median(cpu[name]):.2f} | {entries / m:,.0f} | | {rss:.1f} | | {rm / m:.1f}x vs `rm -rf` |")
print()
print(f"Targets: full copy {cp / base:.2f}x faster than `cp -a` (goal 2x); "
      f"incremental after 1 file {cp / med('rootswap-incremental-1-file'):.0f}x faster (goal 10x); "
      f"removal {rm / rs:.2f}x faster than `rm -rf` (goal 1.5x); "
      f"peak RSS {max(r for n in rows if n.startswith('rootswap') for _, r in rows[n]) / 1024:.1f} MiB (goal < 64).")
PY

{
    echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(free -g | awk '/Mem:/{print $2}') GiB RAM, Linux $(uname -r)"
    echo "Filesystem: $FS_DESC; page cache warm; one run, tools alternating, $RUNS runs each."
    echo "Tree: $TREE_DESC: $ENTRIES entries ($NFILES files, $NDIRS directories, $NLINKS symlinks), $(( BYTES / 1048576 )) MiB."
    echo "Load average when done: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine inflates wall times; the CPU column is less sensitive to it)"
    echo "Versions: $(cp --version | head -1); $(rsync --version | head -1 | awk '{print $1, $3}'); $(tar --version | head -1); $(command -v xcp >/dev/null && xcp --version 2>/dev/null | head -1)"
    echo
    cat "$WORK/table.md"
}
