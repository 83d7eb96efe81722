#!/usr/bin/env bash
# Installs uplink as a systemd service on Raspberry Pi OS or Debian 12 (arm64, armhf, amd64),
# from a git checkout or from an unpacked `npm pack` tarball:
#
#   sudo scripts/install.sh
#
# What it does, each step safe to repeat (running it twice gives the same result; an upgrade
# keeps the config and the spool, and the app it replaced as /opt/uplink.prev):
#   - checks for Node.js >= 20.19, and says how to get it if it is missing or too old;
#   - builds dist/ in a checkout when it is missing or older than src/;
#   - installs the app to /opt/uplink with production dependencies only, replacing an older one;
#   - creates the system user uplink (group dialout, for serial ports) with systemd-sysusers;
#   - writes /etc/uplink/uplink.yaml from the example only if there is none (never overwrites);
#   - has the USB serial drivers (usbserial, cdc_acm) loaded at boot (/etc/modules-load.d/uplink.conf)
#     and loads them now, so that adapters plugged in while the service runs may be opened;
#   - installs /etc/systemd/system/uplink.service, enables it, and starts (or restarts) it; when
#     the new app does not start (no READY=1), it puts the previous one back and starts that.
#
# From a prebuilt tarball (scripts/pack-arm64.sh), it needs neither compilers nor the internet.
#
# Options:
#   --root DIR       install into DIR as into the root of another system (an SD card image, or a
#                    test): every path is under DIR, the user is added to DIR/etc/passwd
#                    (systemd-sysusers --root), the unit is enabled offline (systemctl --root),
#                    and nothing is started. Adding the user needs root; as another user, add
#                    --no-user.
#   --no-user        do not add the user uplink, and leave file ownership as it is (to install
#                    into a directory without root; the unit still runs as User=uplink)
#   --no-systemctl   do not run systemctl at all (install the unit file only)
#   --no-build       use dist/ as it is; fail if it is missing
#   --no-apt         never apt-get the build tools (make, g++, python3) that native modules need
#   --rollback       put /opt/uplink.prev (the app the last upgrade replaced) back in place, keep
#                    the replaced one as /opt/uplink.prev, and restart the service
set -euo pipefail

ROOT=""
SYSTEMCTL=1
BUILD=1
APT=1
ADD_USER=1
ROLLBACK=0

say() { printf 'uplink install: %s\n' "$*"; }
die() { printf 'uplink install: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case "$1" in
    --root) [ $# -ge 2 ] || { usage >&2; exit 2; }; ROOT="$2"; shift 2 ;;
    --root=*) ROOT="${1#--root=}"; shift ;;
    --no-systemctl) SYSTEMCTL=0; shift ;;
    --no-build) BUILD=0; shift ;;
    --no-apt) APT=0; shift ;;
    --no-user) ADD_USER=0; shift ;;
    --rollback) ROLLBACK=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) printf 'uplink install: unknown option %s\n\n' "$1" >&2; usage >&2; exit 2 ;;
  esac
done

# --- Node.js -------------------------------------------------------------------------------
NODE_HELP="Install Node.js 20.19 or newer system-wide, then run this again:
  - Debian 13 / Raspberry Pi OS 13:  sudo apt-get install nodejs npm
  - Debian 12 / Raspberry Pi OS 12 (their nodejs is 18): NodeSource's packages,
      curl -fsSL https://deb.nodesource.com/setup_22.x | sudo -E bash - && sudo apt-get install -y nodejs
  - or the official binaries from https://nodejs.org/en/download (linux-arm64, linux-armv7l, linux-x64)
    unpacked under /usr/local.
A Node.js under a home directory (nvm) will not do: the service runs as its own user."
# NODE is the node as found on PATH, and goes into ExecStart as it is: /usr/local/bin/node is often
# a link into a versioned directory, which a Node.js upgrade replaces and links anew. NODE_REAL,
# the file it resolves to, is only checked (it must be where the service can see it).
NODE=$(command -v node || true)
[ -n "$NODE" ] || die "Node.js is not installed. $NODE_HELP"
case "$NODE" in
  /*) ;;
  *) NODE="$(cd "$(dirname "$NODE")" && pwd)/$(basename "$NODE")" ;; # a relative PATH entry
esac
NODE_REAL=$(readlink -f "$NODE")
NODE_VERSION=$("$NODE" -p 'process.versions.node' 2>/dev/null || echo unknown)
case "$NODE_VERSION" in
  # 20.19: the first 20.x whose require() loads ES modules (the Node-RED nodes are loaded so).
  [0-9]*) node_major=${NODE_VERSION%%.*}; node_minor=${NODE_VERSION#*.}; node_minor=${node_minor%%.*}
    { [ "$node_major" -gt 20 ] || { [ "$node_major" -eq 20 ] && [ "$node_minor" -ge 19 ]; }; } ||
      die "Node.js $NODE_VERSION ($NODE) is too old: uplink needs 20.19 or newer. $NODE_HELP" ;;
  *) die "cannot run $NODE. $NODE_HELP" ;;
esac
for path in "$NODE" "$NODE_REAL"; do
  case "$path" in
    /home/*|/root/*) die "Node.js is at $path, in a home directory the service cannot see (ProtectHome=yes). $NODE_HELP" ;;
  esac
done
# systemd refuses an executable name with a quote, a backslash or a control character, and would
# split one with a space.
case "$NODE" in
  *[[:space:][:cntrl:]\"\'\\]*) die "the path of Node.js, '$NODE', has a space, a quote or a backslash, which systemd does not take in ExecStart=: link it from a plain path (ln -s \"$NODE_REAL\" /usr/local/bin/node) and put that first on PATH" ;;
esac
NPM=$(command -v npm || true)
[ -n "$NPM" ] || die "npm is missing (Debian packages it apart: apt-get install npm). $NODE_HELP"
if [ "$NODE_REAL" = "$NODE" ]; then say "Node.js $NODE_VERSION at $NODE"; else say "Node.js $NODE_VERSION at $NODE ($NODE_REAL)"; fi

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -n "$ROOT" ]; then
  mkdir -p "$ROOT"
  ROOT=$(cd "$ROOT" && pwd)
  [ "$ROOT" != / ] || ROOT=""
fi
IS_ROOT=0
[ "$(id -u)" -ne 0 ] || IS_ROOT=1
[ -n "$ROOT" ] || [ "$IS_ROOT" = 1 ] || die "run as root: sudo $0"
[ "$IS_ROOT" = 1 ] || [ "$ADD_USER" = 0 ] || die "adding the user uplink to $ROOT/etc/passwd needs root: run as root, or add --no-user"

APP="$ROOT/opt/uplink"
ETC="$ROOT/etc/uplink"
STATE="$ROOT/var/lib/uplink"
UNIT_DIR="$ROOT/etc/systemd/system"
BIN_DIR="$ROOT/usr/local/bin"
SYSUSERS_DIR="$ROOT/usr/local/lib/sysusers.d"
MODULES_LOAD="$ROOT/etc/modules-load.d/uplink.conf"

# The unit from $APP's systemd/uplink.service, with ExecStart= on the node found on PATH. Escaped
# twice: for systemd (its specifiers start with %; in the executable name $ is taken as it is, and
# the characters it refuses were refused above), then for the sed replacement (\, &, # the
# delimiter, and / for good measure).
write_unit() {
  mkdir -p "$UNIT_DIR"
  local unit_node sed_node
  unit_node=$(printf '%s' "$NODE" | sed -e 's/%/%%/g')
  sed_node=$(printf '%s' "$unit_node" | sed -e 's/[\/&#\\]/\\&/g')
  sed "s#^ExecStart=/usr/bin/node #ExecStart=$sed_node #" "$APP/systemd/uplink.service" > "$UNIT_DIR/.uplink.service.new"
  grep -qF "ExecStart=$unit_node /opt/uplink/dist/cli.js " "$UNIT_DIR/.uplink.service.new" ||
    die "could not write ExecStart= for $NODE into $UNIT_DIR/uplink.service"
  chmod 0644 "$UNIT_DIR/.uplink.service.new"
  mv "$UNIT_DIR/.uplink.service.new" "$UNIT_DIR/uplink.service"
}

# (Re)starts the service under a running systemd. With Type=notify, systemctl returns once the
# gateway sent READY=1, and fails when it exited or timed out (TimeoutStartSec) before that.
start_service() {
  if systemctl is-active --quiet uplink.service; then
    systemctl restart uplink.service && echo "restarted uplink.service"
  else
    systemctl start uplink.service && echo "started uplink.service"
  fi
}

# What the gateway wrote to stdout and stderr since $1 (journald names those lines after the
# executable, node), without systemd's own lines about the unit.
journal_since() {
  journalctl _SYSTEMD_UNIT=uplink.service SYSLOG_IDENTIFIER="$(basename "$NODE")" --since "@$1" -n 20 -o cat --no-pager 2>/dev/null || true
}

# --- rollback ------------------------------------------------------------------------------
if [ "$ROLLBACK" = 1 ]; then
  [ -d "$APP.prev" ] || die "there is no $APP.prev to roll back to (it is kept by an upgrade)"
  PREV_VERSION=$("$NODE" "$APP.prev/dist/cli.js" --version) || die "the app in $APP.prev does not run: $NODE $APP.prev/dist/cli.js --version"
  CUR_VERSION=$("$NODE" "$APP/dist/cli.js" --version 2>/dev/null || echo unknown)
  rm -rf "$APP.swap"
  mv "$APP" "$APP.swap"
  mv "$APP.prev" "$APP"
  mv "$APP.swap" "$APP.prev"
  write_unit
  say "rolled back $APP to uplink $PREV_VERSION; uplink $CUR_VERSION is now $APP.prev"
  if [ "$SYSTEMCTL" = 1 ] && [ -z "$ROOT" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    START=$(start_service 2>&1) || die "uplink.service did not start after the rollback: $START"
    say "$START"
  fi
  exit 0
fi

# Native modules (better-sqlite3, unix-dgram) compile when no prebuilt binary fits.
need_build_tools() {
  local missing=()
  command -v make >/dev/null || missing+=(make)
  command -v g++ >/dev/null || missing+=(g++)
  command -v python3 >/dev/null || missing+=(python3)
  [ "${#missing[@]}" -gt 0 ] || return 0
  if [ "$APT" = 1 ] && [ -z "$ROOT" ] && command -v apt-get >/dev/null; then
    say "installing build tools for the native modules: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends build-essential python3
  else
    die "native modules need ${missing[*]}: apt-get install build-essential python3"
  fi
}

# In a checkout owned by someone else, build as that user, so the checkout stays theirs.
OWNER=$(stat -c %U "$SRC")
as_owner() {
  if [ "$IS_ROOT" = 1 ] && [ "$OWNER" != root ] && command -v runuser >/dev/null; then
    runuser -u "$OWNER" -- env HOME="$(getent passwd "$OWNER" | cut -d: -f6)" "$@"
  else
    "$@"
  fi
}

# --- dist/ ---------------------------------------------------------------------------------
if [ -d "$SRC/src" ] && [ "$BUILD" = 1 ]; then
  if [ ! -f "$SRC/node_modules/.package-lock.json" ] || [ "$SRC/package-lock.json" -nt "$SRC/node_modules/.package-lock.json" ]; then
    need_build_tools
    say "installing the build dependencies in $SRC (npm ci)"
    (cd "$SRC" && as_owner "$NPM" ci --no-audit --no-fund)
  fi
  if [ ! -f "$SRC/dist/cli.js" ] || [ -n "$(find "$SRC/src" "$SRC/package.json" -newer "$SRC/dist/cli.js" -print -quit)" ]; then
    say "building dist/ (npm run build)"
    (cd "$SRC" && as_owner "$NPM" run build)
  fi
fi
[ -f "$SRC/dist/cli.js" ] || die "$SRC/dist/cli.js is missing: run 'npm ci && npm run build' in $SRC (or drop --no-build)"

# --- the app, staged next to /opt/uplink and swapped in whole --------------------------------
mkdir -p "$ROOT/opt"
STAGE=$(mktemp -d "$ROOT/opt/.uplink.new.XXXXXX")
PACK=$(mktemp -d)
trap 'rm -rf "$STAGE" "$PACK"' EXIT
# npm pack takes exactly the files a package ships (package.json "files"): dist, schema, systemd, scripts, README.
TARBALL=$(cd "$SRC" && "$NPM" pack --loglevel=error --pack-destination "$PACK" | tail -n 1)
tar -xzf "$PACK/$TARBALL" -C "$STAGE" --strip-components=1 --no-same-owner
# A checkout has a lock file; an unpacked `npm pack` tarball has none (npm never packs it).
[ ! -f "$SRC/package-lock.json" ] || cp "$SRC/package-lock.json" "$STAGE/"
chmod 0755 "$STAGE" "$STAGE/dist/cli.js"

if [ -f "$SRC/node_modules/.package-lock.json" ] && [ -d "$SRC/node_modules/better-sqlite3/build" ]; then
  # The checkout's modules were built here for this Node: copy them and drop the development ones.
  say "production dependencies: from $SRC/node_modules (npm prune --omit=dev)"
  # Its contents: node_modules may be a link (a git worktree sharing one), which must not be copied as such.
  mkdir "$STAGE/node_modules"
  cp -a "$SRC/node_modules/." "$STAGE/node_modules/"
  (cd "$STAGE" && "$NPM" prune --omit=dev --no-audit --no-fund >/dev/null)
elif [ -f "$STAGE/package-lock.json" ]; then
  need_build_tools
  say "production dependencies: npm ci --omit=dev"
  (cd "$STAGE" && "$NPM" ci --omit=dev --no-audit --no-fund)
else
  need_build_tools
  say "production dependencies: npm install --omit=dev (no package-lock.json: the newest versions package.json allows)"
  (cd "$STAGE" && "$NPM" install --omit=dev --no-audit --no-fund)
fi
# Loads both native modules for real: better-sqlite3 loads its binding only when a database is
# opened (so `cli.js --version` proves nothing), unix-dgram when it is required. CommonJS: the
# package itself is "type": "module", and require() resolves from $STAGE.
probe_native() {
  (cd "$STAGE" && "$NODE" --input-type=commonjs -e "new (require('better-sqlite3'))(':memory:').close(); require('unix-dgram')" 2>&1)
}
PROBE_OK=1
PROBE=$(probe_native) || PROBE_OK=0
if [ "$PROBE_OK" = 0 ] && [ -f "$SRC/PREBUILT" ]; then
  # A tarball of scripts/pack.sh, made for a box without compilers: name what it was built for.
  die "the native modules of this package do not load with Node.js $NODE_VERSION ($NODE); nothing was changed. This package was built for $(head -n 1 "$SRC/PREBUILT"); this machine is $(uname -m) with Node.js $NODE_VERSION (abi $("$NODE" -p process.versions.modules)): use a package built for it (scripts/pack-arm64.sh --node VERSION), or install from a checkout.
$(printf '%s\n' "$PROBE" | head -n 5)"
elif [ "$PROBE_OK" = 0 ]; then
  # Modules built for another Node version (or another machine): build them again for this one.
  say "the native modules do not load with Node.js $NODE_VERSION; rebuilding them (npm rebuild)"
  need_build_tools
  REBUILD_FAILED=""
  REBUILD=$(cd "$STAGE" && "$NPM" rebuild 2>&1) || REBUILD_FAILED=1
  PROBE=$(probe_native) || die "the native modules (better-sqlite3 for the spool, unix-dgram for systemd notify) do not load with Node.js $NODE_VERSION ($NODE), even after npm rebuild${REBUILD_FAILED:+, which failed}; nothing was changed. Install the build tools (apt-get install build-essential python3) and run this again.
$(printf '%s\n' "$PROBE" | head -n 5)${REBUILD_FAILED:+
npm rebuild: $(printf '%s\n' "$REBUILD" | tail -n 5)}"
fi
VERSION=$("$NODE" "$STAGE/dist/cli.js" --version) || die "the staged app does not run: $NODE $STAGE/dist/cli.js --version"

# An upgrade must not swap in a version that refuses the config in use.
if [ -f "$ETC/uplink.yaml" ]; then
  if ! CHECK=$("$NODE" "$STAGE/dist/cli.js" check-config --config "$ETC/uplink.yaml" 2>&1); then
    if [ -z "$ROOT" ]; then
      die "uplink $VERSION does not accept $ETC/uplink.yaml; nothing was changed. Fix it and run this again:
$CHECK"
    fi
    # Under --root, the files the config names are on the target system, not here.
    say "note: check-config of $ETC/uplink.yaml failed here (its files are on the target system): $CHECK"
  fi
fi

[ "$IS_ROOT" = 0 ] || chown -R 0:0 "$STAGE"
UPGRADED=0
if [ -d "$APP" ]; then
  # The replaced app stays as $APP.prev, for --rollback (and for the automatic one below).
  OLD_VERSION=$("$NODE" "$APP/dist/cli.js" --version 2>/dev/null || echo unknown)
  rm -rf "$APP.prev"
  mv "$APP" "$APP.prev"
  mv "$STAGE" "$APP"
  UPGRADED=1
  say "upgraded $APP to uplink $VERSION (uplink $OLD_VERSION kept as $APP.prev)"
else
  mv "$STAGE" "$APP"
  say "installed uplink $VERSION to $APP"
fi
mkdir -p "$BIN_DIR"
ln -sfn /opt/uplink/dist/cli.js "$BIN_DIR/uplink"

# --- the user ------------------------------------------------------------------------------
install -D -m 0644 "$APP/systemd/uplink.sysusers" "$SYSUSERS_DIR/uplink.conf"
if [ "$ADD_USER" = 0 ]; then
  say "user uplink not added (--no-user)"
elif command -v systemd-sysusers >/dev/null; then
  if [ -n "$ROOT" ]; then systemd-sysusers --root="$ROOT" "$SYSUSERS_DIR/uplink.conf"; else systemd-sysusers "$SYSUSERS_DIR/uplink.conf"; fi
elif [ -z "$ROOT" ]; then
  getent passwd uplink >/dev/null ||
    useradd --system --user-group --home-dir /var/lib/uplink --no-create-home --shell /usr/sbin/nologin --comment "uplink edge gateway" uplink
  usermod -a -G dialout uplink
else
  die "systemd-sysusers is needed to add the user under --root"
fi
UID_=""
GID_=""
if [ "$ADD_USER" = 1 ]; then
  # Numbers from the target's own files: under --root, the host's names mean nothing.
  UID_=$(awk -F: '$1 == "uplink" { print $3 }' "$ROOT/etc/passwd")
  GID_=$(awk -F: '$1 == "uplink" { print $3 }' "$ROOT/etc/group")
  [ -n "$UID_" ] && [ -n "$GID_" ] || die "the user uplink was not created in $ROOT/etc/passwd"
fi
own() { [ "$IS_ROOT" = 0 ] || [ "$ADD_USER" = 0 ] || chown "$@"; }

# --- config and spool ----------------------------------------------------------------------
install -d -m 0750 "$ETC"
own "0:$GID_" "$ETC"
if [ -e "$ETC/uplink.yaml" ]; then
  say "kept $ETC/uplink.yaml"
else
  install -m 0640 "$APP/systemd/uplink.example.yaml" "$ETC/uplink.yaml"
  own "0:$GID_" "$ETC/uplink.yaml"
  say "wrote $ETC/uplink.yaml from the example: edit it (upstream, routes), then: systemctl restart uplink"
fi
install -d -m 0750 "$STATE"
own "$UID_:$GID_" "$STATE"

# --- USB serial drivers ----------------------------------------------------------------------
# The unit's DeviceAllow=char-ttyUSB / char-ttyACM are looked up in /proc/devices when it starts,
# and exist only once these drivers are loaded (see systemd/uplink.service): load them at every
# boot, and now, before the unit (re)starts. The file is ours: it is replaced on every install.
install -D -m 0644 "$APP/systemd/uplink.modules-load.conf" "$MODULES_LOAD"
if [ -z "$ROOT" ] && [ "$IS_ROOT" = 1 ]; then
  if ! command -v modprobe >/dev/null; then
    say "note: no modprobe here, so usbserial and cdc_acm are not loaded now (at boot they are: $MODULES_LOAD)"
  elif MODPROBE=$(modprobe -a usbserial cdc_acm 2>&1); then
    say "loaded the USB serial drivers (usbserial, cdc_acm); at boot: $MODULES_LOAD"
  else
    say "note: modprobe -a usbserial cdc_acm failed, fine for a kernel with them built in: ${MODPROBE:-no message}"
  fi
fi

# --- the unit ------------------------------------------------------------------------------
write_unit
if [ "$SYSTEMCTL" = 0 ]; then
  say "unit installed, not enabled (--no-systemctl): systemctl daemon-reload && systemctl enable --now uplink"
elif [ -n "$ROOT" ] || [ ! -d /run/systemd/system ]; then
  # No running systemd to talk to (an image, a container): enable by the files alone.
  systemctl --root="${ROOT:-/}" enable uplink.service >/dev/null 2>&1 || die "systemctl --root=${ROOT:-/} enable uplink.service failed"
  say "unit enabled (offline); it starts at the next boot"
else
  systemctl daemon-reload
  systemctl enable uplink.service
  SINCE=$(date +%s)
  if ! START=$(start_service 2>&1); then
    [ "$UPGRADED" = 1 ] || die "uplink.service did not start: $START
$(journal_since "$SINCE")"
    # The new app did not get as far as READY=1 (Type=notify): put the previous one back, so that
    # a bad build costs a failed start, not the box.
    JOURNAL=$(journal_since "$SINCE")
    rm -rf "$APP.failed"
    mv "$APP" "$APP.failed"
    mv "$APP.prev" "$APP"
    write_unit
    systemctl daemon-reload
    if START_OLD=$(start_service 2>&1); then
      rm -rf "$APP.failed"
      die "uplink $VERSION did not start, so uplink $OLD_VERSION was put back in $APP and runs again. Nothing else was changed.
$START
What the new one logged:
$JOURNAL"
    fi
    die "uplink $VERSION did not start, and uplink $OLD_VERSION, put back in $APP, did not start either ($START_OLD); the new one is in $APP.failed. See journalctl -u uplink. The new one logged:
$JOURNAL"
  fi
  say "$START"
  say "see it with: uplink status   journalctl -u uplink -f"
fi
