#!/usr/bin/env bash
# Prints the path of a Debian 12 (bookworm) amd64 root directory that boots under
# systemd-nspawn --boot, for the heavy tests (test/heavy/): made with debootstrap once, then
# reused from the cache. It has systemd, dbus, procps and socat, and no compiler, no Node.js and
# no uplink: a test copies it, puts Node.js in the copy and installs uplink as a user would.
#
#   scripts/debian-root.sh [--cache DIR]
#
# The root is rebuilt when the package list below changes (the stamp file in it records that
# list). Needs debootstrap and the Debian mirror (or a cache filled by an earlier run).
set -euo pipefail

CACHE=""
while [ $# -gt 0 ]; do
  case "$1" in
    --cache) [ $# -ge 2 ] || exit 2; CACHE="$2"; shift 2 ;;
    *) printf 'debian-root: unknown option %s\n' "$1" >&2; exit 2 ;;
  esac
done
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/cache.sh
. "$SRC/scripts/lib/cache.sh"
CACHE=$(uplink_cache_dir "$CACHE")

SUITE=bookworm
MIRROR=${UPLINK_DEBIAN_MIRROR:-http://deb.debian.org/debian}
PACKAGES=systemd,systemd-sysv,dbus,procps,socat
STAMP="$SUITE amd64 minbase $PACKAGES"
ROOT="$CACHE/roots/$SUITE-amd64"

if [ -f "$ROOT/.uplink-root" ] && [ "$(cat "$ROOT/.uplink-root")" = "$STAMP" ]; then
  printf '%s\n' "$ROOT"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "debian-root: debootstrap is missing: apt-get install debootstrap" >&2; exit 1; }
mkdir -p "$CACHE/roots"
TMP=$(mktemp -d "$CACHE/roots/.$SUITE-amd64.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
start=$SECONDS
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$TMP" "$MIRROR" > "$TMP.log" 2>&1 ||
  { tail -n 20 "$TMP.log" >&2; rm -f "$TMP.log"; exit 1; }
rm -f "$TMP.log"
# No login prompt on the console, nothing that fetches package lists on its own.
rm -f "$TMP/etc/systemd/system/getty.target.wants/"* "$TMP/etc/systemd/system/timers.target.wants/"*
apt_clean() { rm -rf "$TMP/var/cache/apt/archives/"*.deb "$TMP/var/lib/apt/lists/"*; }
apt_clean
# mktemp made it 0700: as the container's / that would keep every user but root out of everything.
chmod 0755 "$TMP"
printf '%s\n' "$STAMP" > "$TMP/.uplink-root"
rm -rf "$ROOT"
mv "$TMP" "$ROOT"
trap - EXIT
echo "debian-root: built $ROOT in $((SECONDS - start)) s" >&2
printf '%s\n' "$ROOT"
