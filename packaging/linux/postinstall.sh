#!/bin/sh
# @NAME@ package: state directory, then enable the service. The agent
# idles until a ticket is given (`@NAME@ install --ticket FILE`, or a ticket
# dropped at /var/lib/@NAME@/enrollment.ticket, owner @NAME@, mode 0600);
# the hub starts once its directory is initialised (its unit's condition).
# deb: $1 = configure [old-version]; rpm: $1 = 1 (install) or 2 (upgrade).
set -e
install -d -m 0700 -o @NAME@ -g @NAME@ /var/lib/@NAME@
upgrade=0
case "$1" in
  configure) [ -n "$2" ] && upgrade=1 ;;
  2) upgrade=1 ;;
esac
# The hub's package also has the authority's unit and directory.
authority=
if [ -f /usr/lib/systemd/system/@NAME@-authority.service ]; then
  install -d -m 0700 -o @NAME@ -g @NAME@ /var/lib/@NAME@-authority
  authority=@NAME@-authority.service
fi
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || true
  if [ "$upgrade" = 1 ]; then
    # Upgrade: restart into the new binary; identity and state are kept.
    systemctl try-restart @NAME@.service $authority >/dev/null 2>&1 || true
  else
    systemctl enable --now @NAME@.service >/dev/null 2>&1 || true
    [ -z "$authority" ] || systemctl enable --now "$authority" >/dev/null 2>&1 || true
  fi
fi
exit 0
