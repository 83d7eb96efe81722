#!/usr/bin/env bash
# Builds a Debian 13 (trixie) root with RabbitMQ 4 (Debian's rabbitmq-server, Erlang 27) for the
# test peer test/peers/rabbitmq4.ts. This machine is Debian 12, whose RabbitMQ is 3.10; RabbitMQ 4's
# native AMQP 1.0 differs from the 3.x plugin in ways the gateway must handle, so the tests run a
# real 4.x node from this root (chroot). The root is a cache: built once, reused while its stamp
# matches, rebuilt from nothing when absent.
#
# usage: scripts/peers/debian13-rabbitmq.sh [ROOT]
#   ROOT defaults to ${UPLINK_PEER_CACHE:-/var/cache/uplink-peers}/debian13-rabbitmq
# Needs root (debootstrap, chroot), the debootstrap package and a reachable Debian mirror
# (UPLINK_DEBIAN_MIRROR, default http://deb.debian.org/debian). Prints the root's path.
set -euo pipefail

cache="${UPLINK_PEER_CACHE:-/var/cache/uplink-peers}"
root="${1:-$cache/debian13-rabbitmq}"
mirror="${UPLINK_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# Bump when the recipe below changes, so old roots are rebuilt instead of half-fitting.
stamp="debian13-rabbitmq v1"

ready() { [ -f "$root/.uplink-peer" ] && [ "$(cat "$root/.uplink-peer")" = "$stamp" ]; }

if ready; then echo "$root"; exit 0; fi
[ "$(id -u)" = 0 ] || { echo "debian13-rabbitmq: needs root (debootstrap, chroot)" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "debian13-rabbitmq: install debootstrap" >&2; exit 1; }

mkdir -p "$(dirname "$root")"
# Several test processes may ask for the root at once: one builds, the others wait for it.
exec 9>"$root.lock"
flock 9
if ready; then echo "$root"; exit 0; fi

work="$root.building"
rm -rf "$work" "$root"
mkdir -p "$work"
# The install runs inside a private mount namespace: /proc and /dev are mounted there only and vanish
# with it, so a failed build leaves no mount behind on the host.
unshare --mount --propagation private bash -euo pipefail -s "$work" "$mirror" <<'INNER'
work="$1"; mirror="$2"
debootstrap --variant=minbase --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
  trixie "$work" "$mirror" >&2
mount -t proc proc "$work/proc"
mount --rbind /dev "$work/dev"
# The package must not start a system-wide node: the tests run their own.
printf '#!/bin/sh\nexit 101\n' > "$work/usr/sbin/policy-rc.d"
chmod +x "$work/usr/sbin/policy-rc.d"
chroot "$work" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
  rabbitmq-server >&2
chroot "$work" apt-get clean
umount -R "$work/dev"
umount "$work/proc"
INNER
# Where each test node bind-mounts its private directory (config, certificates, data, logs).
mkdir -p "$work/peer"
version="$(chroot "$work" dpkg-query -W -f '${Version}' rabbitmq-server)"
echo "$version" > "$work/.rabbitmq-version"
echo "$stamp" > "$work/.uplink-peer"
mv "$work" "$root"
echo "$root"
