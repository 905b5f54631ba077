#!/usr/bin/env bash
# Git sources benchmark (docs/git.md): what a fetch costs as people's
# repositories are, measured as the whole user-visible operation, alternating
# in one run on one loop-mounted journaled ext4 image.
#
#   1. A repository on this machine (source.repo is a path), the PHP-shaped
#      tree of fixtures/php-tree.py in one commit:
#        first deploy            vs  git clone --no-local (which checks out)
#        one-file deploy         its `git fetch` pass, from `history --json`
#   2. The same tree (one commit) served by a real `git daemon`:
#        first deploy (its fetch and checkout)  vs  git clone
#        one-file deploy         its `git fetch` pass
#   3. A long history served by the same `git daemon`: the same tree, then
#      --commits small commits, with --big large random files added early and
#      deleted soon after (they stay in the history):
#        first deploy, source.depth 0 and 1   (time, size of the cache)
#        git clone --depth 1, git clone       (time, size of .git)
#
# Usage: benches/git.sh [--runs N] [--files N] [--commits N] [--big N] [--no-loop]
# Needs python3, git (with git-daemon), and root for the loop mount.
set -euo pipefail

RUNS=5
FILES=30000
COMMITS=3000
BIG=4
USE_LOOP=1
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS=$2; shift 2 ;;
        --files) FILES=$2; shift 2 ;;
        --commits) COMMITS=$2; shift 2 ;;
        --big) BIG=$2; shift 2 ;;
        --no-loop) USE_LOOP=0; shift ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done

REPO=$(cd "$(dirname "$0")/.." && pwd)
say() { printf '%s\n' "$*" >&2; }
[ -n "${ROOTSWAP_BIN:-}" ] || (cd "$REPO" && cargo build --release -q --bin rootswap)
BIN=${ROOTSWAP_BIN:-${CARGO_TARGET_DIR:-$REPO/target}/release/rootswap}
DAEMON=$(git --exec-path)/git-daemon
[ -x "$DAEMON" ] || { say "git-daemon is missing"; exit 2; }

SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/rootswap-git-bench.XXXXXX")
W=$SCRATCH
DPID=
cleanup() {
    [ -z "$DPID" ] || kill "$DPID" 2>/dev/null || true
    if [ "$USE_LOOP" = 1 ] && mountpoint -q "$SCRATCH/mnt" 2>/dev/null; then
        umount "$SCRATCH/mnt"
    fi
    rm -rf "$SCRATCH"
}
trap cleanup EXIT
if [ "$USE_LOOP" = 1 ]; then
    [ "$(id -u)" = 0 ] || { say "the loop mount needs root; pass --no-loop"; exit 2; }
    truncate -s 8G "$SCRATCH/ext4.img"
    mkfs.ext4 -q -F "$SCRATCH/ext4.img"
    mkdir "$SCRATCH/mnt"
    mount -o loop "$SCRATCH/ext4.img" "$SCRATCH/mnt"
    W=$SCRATCH/mnt
fi

now() { date +%s.%N; }
elapsed() { python3 -c "print(f'{$2 - $1:.3f}')"; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
mib() { du -sk "$1" | awk '{printf "%.1f", $1/1024}'; }
g() { git -C "$1" -c gc.auto=0 -c user.name=bench -c user.email=bench@localhost "${@:2}"; }
config() { # $1 webroot, $2 repo, $3 depth
    cat <<YAML
webroot: $1
source:
  repo: $2
  branch: main
  depth: $3
snapshots:
  keep: 1
drain: 0s
hooks:
  after_checkout: []
YAML
}

say "generating $FILES files"
python3 "$REPO/fixtures/php-tree.py" "$W/repo" --files "$FILES" >/dev/null
g "$W/repo" init -q -b main
g "$W/repo" add -A
g "$W/repo" commit -qm "the site"
g "$W/repo" gc -q
ENTRIES=$(g "$W/repo" ls-tree -r -t HEAD | wc -l)
say "the tree has $ENTRIES entries"

# 1. A repository on this machine.
mkdir -p "$W/inc"
config "$W/inc" "$W/repo" 0 >"$W/inc.yaml"
"$BIN" -c "$W/inc.yaml" deploy >/dev/null 2>&1
step_ms() { # $1 config, $2 step or pass name: its time in the last deploy, from the history
    "$BIN" -c "$1" history --json | python3 -c '
import json, sys
r = json.load(sys.stdin)[-1]
def walk(steps):
    for s in steps:
        yield s
        yield from walk(s.get("passes", []))
print(next(s["ms"] for s in walk(r["steps"]) if s["step"] == sys.argv[1]))' "$2"
}
declare -a L_FIRST L_CLONE L_ONE L_FETCH
for i in $(seq 1 "$RUNS"); do
    sync
    mkdir -p "$W/first"
    config "$W/first" "$W/repo" 0 >"$W/first.yaml"
    t0=$(now); "$BIN" -c "$W/first.yaml" deploy >/dev/null 2>&1; t1=$(now)
    L_FIRST+=("$(elapsed "$t0" "$t1")")
    rm -rf "$W/first"; sync
    t0=$(now); git clone -q --no-local "$W/repo" "$W/clone"; t1=$(now)
    L_CLONE+=("$(elapsed "$t0" "$t1")")
    rm -rf "$W/clone"; sync
    f=$(g "$W/repo" ls-files | grep '\.php$' | sed -n "${i}p")
    printf '\n// change %s\n' "$i" >>"$W/repo/$f"
    g "$W/repo" commit -qam "one file"
    t0=$(now); "$BIN" -c "$W/inc.yaml" deploy >/dev/null 2>&1; t1=$(now)
    L_ONE+=("$(elapsed "$t0" "$t1")")
    L_FETCH+=("$(step_ms "$W/inc.yaml" "git fetch")")
    say "run $i: first deploy ${L_FIRST[-1]} s, git clone --no-local ${L_CLONE[-1]} s, one-file deploy ${L_ONE[-1]} s (fetch ${L_FETCH[-1]} ms)"
done

# 2. The same tree over git://.
g "$W/repo" clone -q --bare "$W/repo" "$W/served/one.git"
g "$W/repo" clone -q --bare "$W/repo" "$W/served/site.git"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$DAEMON" --export-all --reuseaddr --listen=127.0.0.1 --port="$PORT" --base-path="$W/served" >/dev/null 2>&1 &
DPID=$!
for _ in $(seq 50); do git ls-remote "git://127.0.0.1:$PORT/one.git" >/dev/null 2>&1 && break; sleep 0.1; done
ONE=git://127.0.0.1:$PORT/one.git
mkdir -p "$W/rinc"
config "$W/rinc" "$ONE" 0 >"$W/rinc.yaml"
"$BIN" -c "$W/rinc.yaml" deploy >/dev/null 2>&1
declare -a R_FIRST R_FETCH R_CHECKOUT R_CLONE R_ONE R_ONEFETCH
for i in $(seq 1 "$RUNS"); do
    rm -rf "$W/r"; mkdir -p "$W/r"; sync
    config "$W/r" "$ONE" 0 >"$W/r.yaml"
    t0=$(now); "$BIN" -c "$W/r.yaml" deploy >/dev/null 2>&1; t1=$(now)
    R_FIRST+=("$(elapsed "$t0" "$t1")")
    R_FETCH+=("$(step_ms "$W/r.yaml" "git fetch")"); R_CHECKOUT+=("$(step_ms "$W/r.yaml" checkout)")
    rm -rf "$W/r" "$W/c"; sync
    t0=$(now); git clone -q "$ONE" "$W/c"; t1=$(now)
    R_CLONE+=("$(elapsed "$t0" "$t1")")
    f=$(g "$W/c" ls-files | grep '\.php$' | sed -n "$((i + 100))p")
    printf '\n// change %s\n' "$i" >>"$W/c/$f"
    g "$W/c" commit -qam "one file"
    g "$W/c" push -q "$W/served/one.git" HEAD:main
    rm -rf "$W/c"; sync
    t0=$(now); "$BIN" -c "$W/rinc.yaml" deploy >/dev/null 2>&1; t1=$(now)
    R_ONE+=("$(elapsed "$t0" "$t1")")
    R_ONEFETCH+=("$(step_ms "$W/rinc.yaml" "git fetch")")
    say "run $i: first deploy ${R_FIRST[-1]} s (fetch ${R_FETCH[-1]} ms, checkout ${R_CHECKOUT[-1]} ms), git clone ${R_CLONE[-1]} s, one-file deploy ${R_ONE[-1]} s (fetch ${R_ONEFETCH[-1]} ms)"
done
rm -rf "$W/r" "$W/rinc"

# 3. A long history over git://.
say "writing $COMMITS commits and $BIG large files deleted since"
python3 - "$W/served/site.git" "$COMMITS" "$BIG" <<'PY'
import os, subprocess, sys
repo, commits, big = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
files = [f for f in subprocess.run(["git", "--git-dir", repo, "ls-tree", "-r", "--name-only", "main"],
         capture_output=True, text=True, check=True).stdout.split("\n") if f.endswith(".php")]
p = subprocess.Popen(["git", "--git-dir", repo, "fast-import", "--quiet"], stdin=subprocess.PIPE)
w = p.stdin.write
def commit(n, body):
    msg = f"change {n}\n".encode()
    w(b"commit refs/heads/main\n")
    w(f"committer bench <bench@localhost> {1500000000 + n * 3600} +0000\n".encode())
    w(b"data %d\n%s" % (len(msg), msg))
    if n == 0:
        w(b"from refs/heads/main^0\n")
    w(body)
for n in range(commits):
    body = b""
    if n == 10:
        for b in range(big):
            data = os.urandom(16 << 20)
            body += b"M 100644 inline media/video-%d.mp4\ndata %d\n" % (b, len(data)) + data + b"\n"
    elif n == 20:
        body = b"D media\n"
    else:
        for k in range(3):
            data = (f"<?php\n// revision {n}\nreturn {n * 3 + k};\n" + "x" * 600 + "\n").encode()
            body += b"M 100644 inline %s\ndata %d\n" % (files[(n * 3 + k) % len(files)].encode(), len(data)) + data + b"\n"
    commit(n, body)
p.stdin.close()
sys.exit(p.wait())
PY
git --git-dir "$W/served/site.git" repack -adq
URL=git://127.0.0.1:$PORT/site.git
say "served: $(git --git-dir "$W/served/site.git" rev-list --count main) commits, $(mib "$W/served/site.git") MiB"

declare -a D0 D1 C1 CF S_D0 S_D1 S_C1 S_CF
for i in $(seq 1 "$RUNS"); do
    for depth in 0 1; do
        rm -rf "$W/d"; mkdir -p "$W/d"; sync
        config "$W/d" "$URL" "$depth" >"$W/d.yaml"
        t0=$(now); "$BIN" -c "$W/d.yaml" deploy >/dev/null 2>&1; t1=$(now)
        if [ "$depth" = 0 ]; then D0+=("$(elapsed "$t0" "$t1")"); S_D0+=("$(mib "$W/d/.rootswap/repo.git")")
        else D1+=("$(elapsed "$t0" "$t1")"); S_D1+=("$(mib "$W/d/.rootswap/repo.git")"); fi
    done
    rm -rf "$W/c"; sync
    t0=$(now); git clone -q --depth 1 "$URL" "$W/c"; t1=$(now)
    C1+=("$(elapsed "$t0" "$t1")"); S_C1+=("$(mib "$W/c/.git")")
    rm -rf "$W/c"; sync
    t0=$(now); git clone -q "$URL" "$W/c"; t1=$(now)
    CF+=("$(elapsed "$t0" "$t1")"); S_CF+=("$(mib "$W/c/.git")")
    say "run $i: depth 0 ${D0[-1]} s, depth 1 ${D1[-1]} s, git clone --depth 1 ${C1[-1]} s, git clone ${CF[-1]} s"
done
rm -rf "$W/d" "$W/c"

cat <<EOF

medians of $RUNS runs, $ENTRIES-entry tree, $(nproc) cores, $( [ "$USE_LOOP" = 1 ] && echo "loop-mounted ext4" || echo "\$TMPDIR")

| local repository | median |
|---|---|
| rootswap first deploy | $(median "${L_FIRST[@]}") s |
| git clone --no-local (with checkout) | $(median "${L_CLONE[@]}") s |
| rootswap one-file deploy | $(median "${L_ONE[@]}") s |
| its git fetch pass | $(median "${L_FETCH[@]}") ms |

| the same tree over git:// | median |
|---|---|
| rootswap first deploy | $(median "${R_FIRST[@]}") s |
| its git fetch pass | $(median "${R_FETCH[@]}") ms |
| its checkout | $(median "${R_CHECKOUT[@]}") ms |
| git clone (with checkout) | $(median "${R_CLONE[@]}") s |
| rootswap one-file deploy | $(median "${R_ONE[@]}") s |
| its git fetch pass | $(median "${R_ONEFETCH[@]}") ms |

| long history ($COMMITS commits, $BIG x 16 MiB deleted) | time | size |
|---|---|---|
| rootswap first deploy, depth 0 | $(median "${D0[@]}") s | $(median "${S_D0[@]}") MiB |
| rootswap first deploy, depth 1 | $(median "${D1[@]}") s | $(median "${S_D1[@]}") MiB |
| git clone --depth 1 | $(median "${C1[@]}") s | $(median "${S_C1[@]}") MiB |
| git clone | $(median "${CF[@]}") s | $(median "${S_CF[@]}") MiB |
EOF
