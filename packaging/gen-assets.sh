#!/bin/sh
# Writes the shell completions and the man page of a built rootswap binary.
# usage: packaging/gen-assets.sh BINARY OUTDIR
set -eu
bin=$1
out=$2
mkdir -p "$out"
"$bin" completions bash > "$out/rootswap.bash"
"$bin" completions zsh > "$out/_rootswap"
"$bin" completions fish > "$out/rootswap.fish"
"$bin" man > "$out/rootswap.1"
gzip -9n -f "$out/rootswap.1"
