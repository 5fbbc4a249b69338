#!/bin/sh
# @NAME@ package: purge removes the node's identity and state; plain
# removal keeps them so a reinstall comes back as the same node.
# deb: $1 = remove | purge | upgrade; rpm: $1 = 0 (erase) or 1 (upgrade).
set -e
if [ "$1" = purge ]; then
  rm -rf /var/lib/@NAME@ /var/lib/@NAME@-authority
  if getent passwd @NAME@ >/dev/null 2>&1; then
    userdel @NAME@ >/dev/null 2>&1 || true
  fi
fi
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0
