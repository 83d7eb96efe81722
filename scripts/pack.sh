#!/usr/bin/env bash
# Makes an installable tarball of uplink with its native modules built for a given machine, on
# this one (amd64, Debian 12), so that a box without compilers or internet installs it in one
# command. scripts/pack-arm64.sh makes the one for a 64-bit Raspberry Pi (Raspberry Pi OS 64-bit,
# Debian 12 arm64); the heavy tests make an x64 one for the Debian root they boot.
#
#   scripts/pack.sh --arch arm64 [--node 22.23.5] [--out DIR]
#   # on the target, with Node.js of the same major version installed system-wide:
#   tar -xzf uplink-0.1.0-linux-arm64-node22.tgz && sudo uplink-0.1.0-linux-arm64-node22/scripts/install.sh
#
# The tarball holds what `npm pack` ships (dist, schema, systemd, scripts, README), the lock file,
# a file PREBUILT saying what it was built for, and node_modules with production dependencies only:
#   - better-sqlite3 and unix-dgram compiled against the headers of the official Node.js build of
#     the npm package node-linux-ARCH (for arm64 with Debian's g++-aarch64-linux-gnu). better-sqlite3
#     is built for one Node.js ABI: a tarball for Node 22 does not load on Node 20, hence -node22
#     in its name. Built modules are cached (CACHE/native), so a second run compiles nothing;
#   - @serialport/bindings-cpp ships its own binary for each platform (N-API, any Node version).
# Then it loads all three with that Node.js (under qemu-aarch64-static for arm64: no binfmt_misc
# needed) and runs `uplink --version` and `check-config` on the example config.
#
# Needs: node, npm (and the npm registry, or a warm npm cache), make, python3, g++ (x64) or
# g++-aarch64-linux-gnu and qemu-user-static (arm64). dist/ must be built (npm run build).
#
# Options:
#   --arch ARCH      arm64 (default) or x64
#   --node VERSION   the Node.js version whose headers (ABI) the modules are built against, and
#                    which runs the check (default 22.23.5)
#   --out DIR        where the tarball goes (default: the current directory)
#   --cache DIR      keeps Node.js builds and compiled modules between runs (default
#                    $UPLINK_CI_CACHE, else /var/cache/uplink-ci when writable, else ~/.cache/uplink)
#   --keep           keep the staging directory and print its path
set -euo pipefail

ARCH=arm64
NODE_VERSION=22.23.5
OUT=$PWD
CACHE=""
KEEP=0

say() { printf 'uplink pack: %s\n' "$*" >&2; }
die() { printf 'uplink pack: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case "$1" in
    --arch) [ $# -ge 2 ] || { usage >&2; exit 2; }; ARCH="$2"; shift 2 ;;
    --node) [ $# -ge 2 ] || { usage >&2; exit 2; }; NODE_VERSION="$2"; shift 2 ;;
    --out) [ $# -ge 2 ] || { usage >&2; exit 2; }; OUT="$2"; shift 2 ;;
    --cache) [ $# -ge 2 ] || { usage >&2; exit 2; }; CACHE="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) printf 'uplink pack: unknown option %s\n\n' "$1" >&2; usage >&2; exit 2 ;;
  esac
done

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/cache.sh
. "$SRC/scripts/lib/cache.sh"
# shellcheck source=scripts/lib/native.sh
. "$SRC/scripts/lib/native.sh"
CACHE=$(uplink_cache_dir "$CACHE")
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

uplink_native_target "$ARCH" 2>/dev/null || die "--arch must be arm64 or x64, not $ARCH"
TOOLS=("${CROSS}gcc" "${CROSS}g++" ${RUN[@]+"${RUN[0]}"})
for tool in "${TOOLS[@]}" make python3 node npm; do
  command -v "$tool" >/dev/null || die "$tool is missing: apt-get install make python3 g++ (arm64: g++-aarch64-linux-gnu qemu-user-static), and Node.js with npm"
done
[ -f "$SRC/dist/cli.js" ] || die "$SRC/dist/cli.js is missing: npm run build"

# --- the target's Node.js: binary and headers -------------------------------------------------
TARGET_NODE_DIR=$(uplink_node_package "$CACHE" "linux-$ARCH" "$NODE_VERSION") || die "could not get node-linux-$ARCH@$NODE_VERSION from the npm registry"
TARGET_NODE="$TARGET_NODE_DIR/bin/node"
ABI=$(${RUN[@]+"${RUN[@]}"} "$TARGET_NODE" -p process.versions.modules) || die "the $ARCH Node.js does not run here${RUN[0]:+ under ${RUN[0]}}"
NODE_MAJOR=${NODE_VERSION%%.*}
VERSION=$(node -p "require('$SRC/package.json').version")
NAME="uplink-$VERSION-linux-$ARCH-node$NODE_MAJOR"

# --- the app, with production dependencies (JavaScript only so far) ---------------------------
WORK=$(mktemp -d)
[ "$KEEP" = 1 ] || trap 'rm -rf "$WORK"' EXIT
STAGE="$WORK/$NAME"
mkdir -p "$STAGE"
TARBALL=$(cd "$SRC" && npm pack --loglevel=error --pack-destination "$WORK" | tail -n 1)
tar -xzf "$WORK/$TARBALL" -C "$STAGE" --strip-components=1 --no-same-owner
rm -f "$WORK/$TARBALL"
cp "$SRC/package-lock.json" "$STAGE/"
start=$SECONDS
say "npm ci --omit=dev --ignore-scripts (the JavaScript of the production dependencies)"
(cd "$STAGE" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
say "dependencies in $((SECONDS - start)) s"

# --- native modules ------------------------------------------------------------------------
uplink_native_build "$STAGE/node_modules" "$ARCH" "$NODE_VERSION" "$TARGET_NODE_DIR" "$CACHE" || die "the native modules could not be built for $ARCH"
# serialport's own binaries: keep the target's (glibc) only; the others are dead weight there.
PREBUILDS="$STAGE/node_modules/@serialport/bindings-cpp/prebuilds"
[ -f "$PREBUILDS/$SERIALPORT" ] || die "@serialport/bindings-cpp has no prebuilt binary $SERIALPORT"
find "$PREBUILDS" -mindepth 1 -maxdepth 1 ! -name "linux-$ARCH" -exec rm -rf {} +
printf 'linux-%s node %s abi %s\n' "$ARCH" "$NODE_VERSION" "$ABI" > "$STAGE/PREBUILT"

# --- proof, under emulation: the modules load and the CLI runs ---------------------------------
say "checking${RUN[0]:+ under ${RUN[0]}}: native modules load, uplink --version, check-config"
(cd "$STAGE" && ${RUN[@]+"${RUN[@]}"} "$TARGET_NODE" --input-type=commonjs -e "
  const db = new (require('better-sqlite3'))(':memory:');
  if (db.prepare('select sqlite_version() v').get().v === undefined) process.exit(1);
  db.close();
  require('unix-dgram');
  require('node-gyp-build')(require('path').dirname(require.resolve('@serialport/bindings-cpp/package.json')));
  if (process.arch !== '$ARCH') process.exit(1);
") || die "the $ARCH native modules do not load with the $ARCH Node.js"
GOT=$(${RUN[@]+"${RUN[@]}"} "$TARGET_NODE" "$STAGE/dist/cli.js" --version) || die "uplink --version fails with the $ARCH Node.js"
[ "$GOT" = "$VERSION" ] || die "uplink --version says $GOT, not $VERSION"
${RUN[@]+"${RUN[@]}"} "$TARGET_NODE" "$STAGE/dist/cli.js" check-config --config "$STAGE/systemd/uplink.example.yaml" >/dev/null ||
  die "check-config of the example fails with the $ARCH Node.js"

tar -czf "$OUT/$NAME.tgz" -C "$WORK" --owner=0 --group=0 "$NAME"
say "wrote $OUT/$NAME.tgz ($(du -h "$OUT/$NAME.tgz" | cut -f1)) in $((SECONDS - start)) s"
[ "$KEEP" = 0 ] || say "staging directory kept: $STAGE"
printf '%s\n' "$OUT/$NAME.tgz"
