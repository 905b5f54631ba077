#!/usr/bin/env bash
# Shows that rootswap builds on a machine with only Rust and a C toolchain:
# no OpenSSL or zlib headers, no libssl.so/libcrypto.so/libz.so development
# links, no .pc files, no pkg-config. Run as root; nothing outside this script's
# private mount namespace is changed (overlayfs whiteouts hide the files).
#
#   packaging/clean-build-check.sh             # fresh target dir, dev build
#   packaging/clean-build-check.sh --release   # what `cargo run --release` builds
#
# See docs/building.md.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" != --inside ]; then
  [ "$(id -u)" = 0 ] || { echo "run as root (it mounts overlays in a private namespace)" >&2; exit 1; }
  exec unshare -m --propagation private "$0" --inside "$@"
fi
shift
arch=$(gcc -dumpmachine)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
hide() { # hide DIR NAME...: an overlay on DIR whose upper layer whites out NAMEs
  local dir=$1; shift
  local n; n=$(echo "$dir" | tr / _)
  mkdir -p "$work/$n/up" "$work/$n/work"
  for f in "$@"; do mkdir -p "$work/$n/up/$(dirname "$f")"; mknod "$work/$n/up/$f" c 0 0; done
  mount -t overlay overlay -o "lowerdir=$dir,upperdir=$work/$n/up,workdir=$work/$n/work" "$dir"
}
hide /usr/include openssl zlib.h zconf.h
hide "/usr/lib/$arch" libssl.so libcrypto.so libz.so libssl.a libcrypto.a libz.a \
  libgit2.so libssh2.so pkgconfig/openssl.pc pkgconfig/libssl.pc pkgconfig/libcrypto.pc pkgconfig/zlib.pc
if [ -e /usr/bin/pkg-config ]; then mount --bind /bin/false /usr/bin/pkg-config; fi
echo "hidden: /usr/include/{openssl,zlib.h}, /usr/lib/$arch/lib{ssl,crypto,z}.so, their .pc files, pkg-config"
{ ls /usr/include/openssl /usr/include/zlib.h "/usr/lib/$arch/libssl.so" "/usr/lib/$arch/libz.so" 2>&1 || true; } | sed 's/^/  /'
# A fresh target dir unless you pass one (CARGO_TARGET_DIR=...): every C
# library is then built from scratch, inside the namespace.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$work/target}"
cargo build --locked --bin rootswap "$@"
bin=$(find "$CARGO_TARGET_DIR" -maxdepth 2 -name rootswap -type f -perm -u+x | head -1)
echo "built $bin; dynamic libraries:"
ldd "$bin" | sed 's/^/  /'
if ldd "$bin" | grep -Eq 'libssl|libcrypto|libgit2|libssh2'; then
  echo "FAIL: linked against a system TLS/Git library" >&2; exit 1
fi
"$bin" --version
echo "OK: built without -dev packages"
