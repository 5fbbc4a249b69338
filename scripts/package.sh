#!/usr/bin/env bash
# Builds every package of a brand into dist/: .deb and .rpm of the agent and
# of the hub for linux/amd64 and linux/arm64 (goreleaser + nfpm), archives
# and checksums for all platforms, and the agent's .msi for windows/amd64
# (wixl). Installs goreleaser and wixl when missing (Go module proxy and
# Debian packages only).
#   BRAND (default initech), BRAND_DISPLAY, BRAND_VENDOR, BRAND_MAINTAINER
#   ("Name <email>", the packages' maintainer; default "<Vendor> Support
#   <support@<brand>.example>", with a warning), VERSION (default: derived
#   from git, see below), AUTHORITY_KEY, COMMAND_KEY, RELEASE_KEY, DEFAULT_HUB
#   SINGLE_TARGET=1 builds only the host platform's packages (no MSI), for
#   tests that install them.
# Versions from git: a tag at HEAD is the version (v1.4.0); N commits after
# tag v1.4.0 give v1.4.1-dev.N; no tag at all gives v0.0.1-dev.N with N the
# number of commits, so successive builds upgrade each other in order.
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
export BRAND_HUB_DISPLAY=${BRAND_HUB_DISPLAY:-"$BRAND_VENDOR Hub"}
if [ -z "${BRAND_MAINTAINER:-}" ]; then
  BRAND_MAINTAINER="$BRAND_VENDOR Support <support@$BRAND.example>"
  echo "package.sh: BRAND_MAINTAINER is not set; the packages name \"$BRAND_MAINTAINER\"" >&2
fi
case $BRAND_MAINTAINER in *"<"*@*">"*) ;; *) echo "package.sh: BRAND_MAINTAINER=$BRAND_MAINTAINER: want \"Name <email>\"" >&2; exit 2;; esac
export BRAND_MAINTAINER
derive_version() {
  local tag n
  if tag=$(git describe --tags --exact-match --match 'v[0-9]*' 2>/dev/null); then echo "$tag"; return; fi
  if tag=$(git describe --tags --abbrev=0 --match 'v[0-9]*' 2>/dev/null); then
    n=$(git rev-list --count "$tag..HEAD")
    IFS=. read -r ma mi pa <<<"${tag#v}"; pa=${pa%%-*}
    echo "v$ma.$mi.$((pa + 1))-dev.$n"; return
  fi
  n=$(git rev-list --count HEAD 2>/dev/null || echo 0)
  echo "v0.0.1-dev.$n"
}
VERSION=${VERSION:-$(derive_version)}
case $VERSION in v[0-9]*.[0-9]*.[0-9]*) ;; *) echo "package.sh: VERSION=$VERSION: want vMAJOR.MINOR.PATCH[-PRE]" >&2; exit 2;; esac
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
  sed -e "s/@NAME@/$BRAND-hub/g" -e "s/@DISPLAY@/$BRAND_HUB_DISPLAY/g" "packaging/linux/$s.sh" > "$prep/hub-$s.sh"
  chmod 0755 "$prep/$s.sh" "$prep/hub-$s.sh"
done
# The hub's own hardened unit.
sed -e "s/@NAME@/$BRAND-hub/g" -e "s/@DISPLAY@/$BRAND_HUB_DISPLAY/g" packaging/linux/hub.service > "$prep/$BRAND-hub.service"
sed -e "s/@NAME@/$BRAND-hub/g" -e "s/@DISPLAY@/$BRAND_HUB_DISPLAY/g" packaging/linux/hub-authority.service > "$prep/$BRAND-hub-authority.service"

# 2. goreleaser: binaries, archives, checksums, deb and rpm.
config=goreleaser.yaml
if [ "${SINGLE_TARGET:-}" = 1 ]; then
  config=$prep/goreleaser-single.yaml
  sed -e "s/^    goos: .*/    goos: [$(go env GOOS)]/" -e "s/^    goarch: .*/    goarch: [$(go env GOARCH)]/" goreleaser.yaml > "$config"
fi
goreleaser release --snapshot --clean --skip=publish,sign --config "$config"
if [ "${SINGLE_TARGET:-}" = 1 ]; then
  echo "packages in dist/ (host platform only):"
  ls -1 dist/*.deb dist/*.rpm
  exit 0
fi

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
