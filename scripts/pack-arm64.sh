#!/usr/bin/env bash
# The installable tarball for a 64-bit Raspberry Pi (Raspberry Pi OS 64-bit, Debian 12 arm64),
# made on this machine: scripts/pack.sh --arch arm64, with the same options (--node, --out,
# --cache, --keep). On the Pi, with Node.js 22 installed system-wide and no compiler or internet:
#
#   tar -xzf uplink-0.1.0-linux-arm64-node22.tgz && sudo uplink-0.1.0-linux-arm64-node22/scripts/install.sh
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/pack.sh" --arch arm64 "$@"
