#!/bin/sh
# @NAME@ package: stop and disable the service on removal (not on upgrade).
# deb: $1 = remove | upgrade; rpm: $1 = 0 (erase) or 1 (upgrade).
set -e
case "$1" in
  remove|0)
    if [ -d /run/systemd/system ]; then
      systemctl disable --now @NAME@.service >/dev/null 2>&1 || true
    fi
    ;;
esac
exit 0
