#!/usr/bin/env bash
# Removes what scripts/install.sh installed: stops and disables uplink.service, removes the unit,
# /opt/uplink (and /opt/uplink.prev, the app an upgrade replaced), /usr/local/bin/uplink and /etc/modules-load.d/uplink.conf. Keeps the config
# (/etc/uplink), the spool (/var/lib/uplink), the user uplink that owns them, and local changes
# to the unit (/etc/systemd/system/uplink.service.d, from `systemctl edit uplink`), unless --purge.
#
#   sudo scripts/uninstall.sh [--purge]
#
# Options:
#   --purge          also delete /etc/uplink, /var/lib/uplink (readings not yet forwarded are
#                    lost), the user uplink and /etc/systemd/system/uplink.service.d
#   --root DIR       uninstall from DIR as from the root of another system (see install.sh)
#   --no-systemctl   do not run systemctl
set -euo pipefail

ROOT=""
SYSTEMCTL=1
PURGE=0

say() { printf 'uplink uninstall: %s\n' "$*"; }
die() { printf 'uplink uninstall: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case "$1" in
    --root) [ $# -ge 2 ] || { usage >&2; exit 2; }; ROOT="$2"; shift 2 ;;
    --root=*) ROOT="${1#--root=}"; shift ;;
    --no-systemctl) SYSTEMCTL=0; shift ;;
    --purge) PURGE=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) printf 'uplink uninstall: unknown option %s\n\n' "$1" >&2; usage >&2; exit 2 ;;
  esac
done

if [ -n "$ROOT" ]; then
  [ -d "$ROOT" ] || die "--root $ROOT is not a directory"
  ROOT=$(cd "$ROOT" && pwd)
  [ "$ROOT" != / ] || ROOT=""
fi
[ -n "$ROOT" ] || [ "$(id -u)" -eq 0 ] || die "run as root: sudo $0"

APP="$ROOT/opt/uplink"
ETC="$ROOT/etc/uplink"
STATE="$ROOT/var/lib/uplink"
UNIT="$ROOT/etc/systemd/system/uplink.service"
DROP_INS="$ROOT/etc/systemd/system/uplink.service.d"
MODULES_LOAD="$ROOT/etc/modules-load.d/uplink.conf"
LINK="$ROOT/usr/local/bin/uplink"
SYSUSERS="$ROOT/usr/local/lib/sysusers.d/uplink.conf"

if [ "$SYSTEMCTL" = 1 ] && [ -e "$UNIT" ]; then
  if [ -z "$ROOT" ] && [ -d /run/systemd/system ]; then
    systemctl disable --now uplink.service || say "could not stop or disable uplink.service; removing it anyway"
  else
    systemctl --root="${ROOT:-/}" disable uplink.service >/dev/null 2>&1 || say "systemctl --root could not disable uplink.service; removing its links by hand"
  fi
fi
rm -f "$UNIT"
# A link left by `systemctl enable` (or by an install with systemctl, removed without).
for wants in "$ROOT"/etc/systemd/system/*.wants/uplink.service; do
  if [ -L "$wants" ]; then rm -f "$wants"; fi
done
if [ "$SYSTEMCTL" = 1 ] && [ -z "$ROOT" ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl reset-failed uplink.service 2>/dev/null || true # nothing to reset is fine
fi
[ ! -L "$LINK" ] || rm -f "$LINK"
rm -rf "$APP" "$APP.prev" "$APP.failed"
# The drivers stay loaded until the next boot (other USB serial users may need them anyway).
rm -f "$MODULES_LOAD"
say "removed the unit, $APP (and $APP.prev), $LINK and $MODULES_LOAD"

if [ "$PURGE" = 0 ]; then
  if [ -d "$DROP_INS" ]; then
    say "kept $ETC (config), $STATE (the spool), the user uplink and $DROP_INS (systemctl edit); delete them with --purge"
  else
    say "kept $ETC (config), $STATE (the spool) and the user uplink; delete them with --purge"
  fi
  exit 0
fi
rm -rf "$ETC" "$STATE" "$DROP_INS"
if grep -q '^uplink:' "$ROOT/etc/passwd" 2>/dev/null; then
  if [ -n "$ROOT" ]; then userdel --root "$ROOT" uplink; else userdel uplink; fi
fi
if grep -q '^uplink:' "$ROOT/etc/group" 2>/dev/null; then
  if [ -n "$ROOT" ]; then groupdel --root "$ROOT" uplink; else groupdel uplink; fi
fi
rm -f "$SYSUSERS"
say "purged $ETC, $STATE, $DROP_INS and the user uplink"
