#!/usr/bin/env bash
# Regenerates docs/dashboard.png, the README's screenshot of the dashboard:
# a throw-away site (a Git repository with a few commits, deployed by the
# real rootswap), `rootswap serve` on a loopback port of its own, and
# headless Chromium taking the picture. Nothing outside a temp dir is touched
# except docs/dashboard.png.
#
#   docs/screenshot.sh            # builds target/debug/rootswap first
#   ROOTSWAP=/usr/bin/rootswap docs/screenshot.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out="$PWD/docs/dashboard.png"

if [ -z "${ROOTSWAP:-}" ]; then
  cargo build --quiet
  ROOTSWAP="$PWD/target/debug/rootswap"
fi
CHROMIUM="${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}"
if [ -z "$CHROMIUM" ]; then
  echo "error: chromium is not installed (Debian: apt-get install chromium)" >&2
  exit 1
fi

tmp=$(mktemp -d)
serve_pid=""
cleanup() {
  if [ -n "$serve_pid" ]; then kill "$serve_pid" 2>/dev/null || true; wait "$serve_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$tmp/repo" "$tmp/webroot"
export GIT_AUTHOR_NAME="Ada Lovelace" GIT_AUTHOR_EMAIL=ada@example.invalid
export GIT_COMMITTER_NAME="Ada Lovelace" GIT_COMMITTER_EMAIL=ada@example.invalid
export GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1
git -C "$tmp/repo" init -q -b main
cat > "$tmp/rootswap.yaml" <<YAML
webroot: $tmp/webroot
source:
  repo: $tmp/repo
  branch: main
drain: 0s
snapshots:
  keep: 2
auto_deploy:
  enabled: false
hooks:
  # A build step that takes a varying while, so that the chart has something to show.
  after_checkout: ['sleep 0.\$(( \$(wc -c < index.php) % 7 ))']
trigger:
  listen: 127.0.0.1:$port
  token: screenshot-token
  public_status: true
YAML

subjects=("Initial site" "Add contact form" "Fix header on mobile" "Upgrade dependencies"
  "Cache the product list" "New pricing page" "Translate the footer" "Faster image thumbnails")
for i in "${!subjects[@]}"; do
  mkdir -p "$tmp/repo/lib"
  printf "<?php echo 'release %s';%*s\n" "$i" "$((i * 3))" "" > "$tmp/repo/index.php"
  printf "<?php // helper %s\n" "$i" > "$tmp/repo/lib/helper.php"
  git -C "$tmp/repo" add -A
  git -C "$tmp/repo" commit -q -m "${subjects[$i]}"
  "$ROOTSWAP" -c "$tmp/rootswap.yaml" deploy >/dev/null 2>&1
done
first=$(ls "$tmp/webroot" | grep '^ROOT_2' | head -n 1)
"$ROOTSWAP" -c "$tmp/rootswap.yaml" snapshots keep "$first" --as before-pricing >/dev/null

"$ROOTSWAP" -c "$tmp/rootswap.yaml" serve >"$tmp/serve.log" 2>&1 &
serve_pid=$!
for _ in $(seq 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
  sleep 0.1
done

"$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$tmp/chromium" --hide-scrollbars --window-size=1100,1760 \
  --virtual-time-budget=3000 --screenshot="$out" "http://127.0.0.1:$port/" >/dev/null 2>&1
test -s "$out"
echo "wrote $out"
