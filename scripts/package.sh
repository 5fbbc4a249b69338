#!/usr/bin/env bash
# Builds every package of a brand into dist/: .deb and .rpm for linux/amd64
# and linux/arm64 (goreleaser + nfpm), archives and checksums for all
# platforms, and the .msi for windows/amd64 (wixl). Installs goreleaser and
# wixl when missing (Go module proxy and Debian packages only).
#   BRAND (default initech), BRAND_DISPLAY, BRAND_VENDOR, VERSION (default
#   from git), AUTHORITY_KEY, COMMAND_KEY, RELEASE_KEY, DEFAULT_HUB
# Usage: [VAR=…] scripts/package.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=local CGO_ENABLED=0
export PATH="$PATH:$(go env GOPATH)/bin"
export BRAND=${BRAND:-initech}
case $BRAND in *[!a-z0-9-]*|"") echo "package.sh: BRAND=$BRAND: use lower-case letters, digits and '-'" >&2; exit 2;; esac
title="$(tr '[:lower:]' '[:upper:]' <<<"${BRAND:0:1}")${BRAND:1}"
export BRAND_VENDOR=${BRAND_VENDOR:-$title}
export BRAND_DISPLAY=${BRAND_DISPLAY:-"$BRAND_VENDOR Agent"}
if [ -z "${VERSION:-}" ]; then
  VERSION=$(git describe --tags --always 2>/dev/null || true)
  case $VERSION in v[0-9]*) ;; *) VERSION=v0.0.0 ;; esac
fi
export VERSION

need_apt=()
command -v goreleaser >/dev/null || { echo "installing goreleaser v2.16.0 (takes a few minutes)"; go install github.com/goreleaser/goreleaser/v2@v2.16.0; }
command -v wixl >/dev/null || need_apt+=(wixl)
command -v msiinfo >/dev/null || need_apt+=(msitools)
command -v rpm >/dev/null || need_apt+=(rpm)
if ((${#need_apt[@]})); then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
  else
    echo "package.sh: missing ${need_apt[*]}: install them (apt-get install ${need_apt[*]})" >&2; exit 1
  fi
fi

# 1. The brand's systemd unit (rendered by the agent itself, the same
#    renderer `install` uses) and package scripts.
prep=build/packaging/$BRAND
rm -rf "$prep" && mkdir -p "$prep"
BRAND=$BRAND VERSION=$VERSION scripts/build.sh "$prep/bin" >/dev/null
"$prep/bin/$BRAND-agent" install --print-unit > "$prep/$BRAND-agent.service"
echo "installed by the $BRAND-agent package: the package manager owns the service" > "$prep/packaged"
for s in preinstall postinstall preremove postremove; do
  sed -e "s/@NAME@/$BRAND-agent/g" -e "s/@DISPLAY@/$BRAND_DISPLAY/g" "packaging/linux/$s.sh" > "$prep/$s.sh"
  chmod 0755 "$prep/$s.sh"
done

# 2. goreleaser: binaries, archives, checksums, deb and rpm.
goreleaser release --snapshot --clean --skip=publish,sign --config goreleaser.yaml

# 3. The MSI for windows/amd64 with wixl (GoReleaser OSS has no MSI).
guid() { # a stable GUID per brand and purpose
  local h; h=$(printf '%s/%s' "$BRAND" "$1" | sha256sum | cut -c1-32)
  echo "${h:0:8}-${h:8:4}-4${h:13:3}-8${h:17:3}-${h:20:12}" | tr '[:lower:]' '[:upper:]'
}
exe=$(ls dist/agent_windows_amd64*/"$BRAND-agent.exe")
msiversion=$(sed -E 's/^v//; s/[-+].*$//' <<<"$VERSION")
sed -e "s/@NAME@/$BRAND-agent/g" -e "s/@DISPLAY@/$BRAND_DISPLAY/g" -e "s/@VENDOR@/$BRAND_VENDOR/g" \
    -e "s/@UPGRADECODE@/$(guid upgrade)/g" -e "s/@COMPONENTGUID@/$(guid component)/g" \
    packaging/windows/agent.wxs > "$prep/agent.wxs"
wixl -a x64 -D Version="$msiversion" -D Binary="$(realpath --relative-to=. "$exe")" \
  -o "dist/$BRAND-agent_${VERSION#v}_windows_amd64.msi" "$prep/agent.wxs"
(cd dist && sha256sum "$BRAND-agent_${VERSION#v}_windows_amd64.msi" >> checksums.txt)
echo "packages in dist/:"
ls -1 dist/*.deb dist/*.rpm dist/*.msi
