#!/bin/sh
# @NAME@ package: create the unprivileged system account the service runs as.
set -e
if ! getent passwd @NAME@ >/dev/null 2>&1; then
  if command -v useradd >/dev/null 2>&1; then
    useradd --system --user-group --no-create-home --home-dir /var/lib/@NAME@ \
      --shell /usr/sbin/nologin --comment "@DISPLAY@" @NAME@
  else
    adduser --system --group --no-create-home --home /var/lib/@NAME@ @NAME@
  fi
fi
exit 0
