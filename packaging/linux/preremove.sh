#!/bin/sh
# @NAME@ package: stop and disable the service on removal (not on upgrade).
# deb: $1 = remove | upgrade; rpm: $1 = 0 (erase) or 1 (upgrade).
set -e
case "$1" in
  remove|0)
    if [ -d /run/systemd/system ]; then
      systemctl disable --now @NAME@.service >/dev/null 2>&1 || true
      if [ -f /usr/lib/systemd/system/@NAME@-authority.service ]; then
        systemctl disable --now @NAME@-authority.service >/dev/null 2>&1 || true
      fi
    fi
    ;;
esac
exit 0
