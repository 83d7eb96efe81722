# The native modules of uplink (better-sqlite3, unix-dgram) built for a given target: linux-x64 or
# linux-arm64 (cross-compiled with Debian's g++-aarch64-linux-gnu), against the headers of the
# official Node.js build of that version (node-gyp --nodedir). Each result is cached by package
# version, target and Node.js version, so a second run compiles nothing.
# Sourced, not run; needs scripts/lib/cache.sh.

# uplink_native_target ARCH: sets CROSS (the compiler prefix), RUN (how to run a target binary
# here: qemu-aarch64-static for arm64), EM_MACHINE (ELF e_machine) and SERIALPORT (the prebuilt
# binary of @serialport/bindings-cpp for the target).
uplink_native_target() {
  case "$1" in
    arm64) CROSS=aarch64-linux-gnu-; RUN=(qemu-aarch64-static -L /usr/aarch64-linux-gnu); EM_MACHINE=183
      SERIALPORT=linux-arm64/@serialport+bindings-cpp.armv8.glibc.node ;;
    x64) CROSS=""; RUN=(); EM_MACHINE=62; SERIALPORT=linux-x64/@serialport+bindings-cpp.glibc.node ;;
    *) echo "unknown target $1 (arm64 or x64)" >&2; return 1 ;;
  esac
}

# uplink_native_build NODE_MODULES ARCH NODE_VERSION NODE_DIR CACHE: replaces the binaries of
# better-sqlite3 and unix-dgram in NODE_MODULES with ones for ARCH and NODE_VERSION (NODE_DIR has
# include/node). Progress on stderr.
uplink_native_build() {
  local modules=$1 arch=$2 version=$3 nodedir=$4 cache=$5
  uplink_native_target "$arch" || return 1
  local gyp
  gyp=$(dirname "$(readlink -f "$(command -v npm)")")/../node_modules/node-gyp/bin/node-gyp.js
  [ -f "$gyp" ] || { echo "node-gyp (bundled with npm) not found at $gyp" >&2; return 1; }
  local pkg file dir pkg_version cached log t0
  for pkg in better-sqlite3:better_sqlite3.node unix-dgram:unix_dgram.node; do
    file=${pkg#*:}
    pkg=${pkg%%:*}
    dir="$modules/$pkg"
    [ -d "$dir" ] || { echo "$pkg is not in $modules" >&2; return 1; }
    pkg_version=$(node -p "require('$dir/package.json').version")
    cached="$cache/native/linux-$arch-node$version/$pkg@$pkg_version/$file"
    if [ ! -f "$cached" ]; then
      t0=$SECONDS
      echo "building $pkg $pkg_version for $arch against Node.js $version" >&2
      log=$(mktemp)
      if ! (cd "$dir" && CC=${CROSS}gcc CXX=${CROSS}g++ LINK=${CROSS}g++ AR=${CROSS}ar CC_host=gcc CXX_host=g++ \
          node "$gyp" rebuild --release --arch="$arch" --nodedir="$nodedir" -j 2 >"$log" 2>&1); then
        tail -n 30 "$log" >&2
        rm -f "$log"
        echo "compiling $pkg for $arch failed" >&2
        return 1
      fi
      rm -f "$log"
      [ "$(od -An -tu2 -j18 -N2 "$dir/build/Release/$file" | tr -d ' ')" = "$EM_MACHINE" ] ||
        { echo "$pkg: $file is not a binary for $arch" >&2; return 1; }
      mkdir -p "$(dirname "$cached")"
      cp "$dir/build/Release/$file" "$cached.tmp" && mv "$cached.tmp" "$cached"
      echo "$pkg built in $((SECONDS - t0)) s" >&2
    else
      echo "$pkg $pkg_version for $arch, Node.js $version: from $cached" >&2
    fi
    # Only the module itself: no objects, no test extension.
    rm -rf "$dir/build"
    mkdir -p "$dir/build/Release"
    cp "$cached" "$dir/build/Release/$file"
  done
}
