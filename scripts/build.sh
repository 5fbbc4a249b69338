#!/usr/bin/env bash
# Builds the agent and the hub for the host platform (or GOOS/GOARCH) into
# OUTDIR, stamped from the environment:
#   VERSION        default: derived from git (or v0.0.0-dev)
#   BRAND          default: initech          → OUTDIR/$BRAND-agent, OUTDIR/$BRAND-hub
#   BRAND_DISPLAY  default: "<Brand> Agent"
#   BRAND_VENDOR   default: "<Brand>"
#   DEFAULT_HUB    default hub address baked into the agent (optional)
#   AUTHORITY_KEY, COMMAND_KEY, RELEASE_KEY   the vendor's public keys ("sigkey:…"), optional
# Usage: [VAR=…] scripts/build.sh OUTDIR
set -euo pipefail
out=${1:?usage: scripts/build.sh OUTDIR}
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=local CGO_ENABLED=${CGO_ENABLED:-0}
brand=${BRAND:-initech}
case $brand in *[!a-z0-9-]*|"") echo "build.sh: BRAND=$brand: use lower-case letters, digits and '-'" >&2; exit 2;; esac
if [ -z "${VERSION:-}" ]; then
  VERSION=$(git describe --tags --always --dirty 2>/dev/null || echo v0.0.0-dev)
  case $VERSION in v*) ;; *) VERSION=v0.0.0-dev+$VERSION ;; esac
fi
commit=$(git rev-parse HEAD 2>/dev/null || true)
date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
b=github.com/edgeportal/connect/internal/brand
i=github.com/edgeportal/connect/internal/buildinfo
ldflags="-s -w -X $i.version=$VERSION -X $i.commit=$commit -X $i.date=$date -X $b.name=$brand"
[ -n "${BRAND_DISPLAY:-}" ] && ldflags="$ldflags -X '$b.displayName=$BRAND_DISPLAY'"
[ -n "${BRAND_VENDOR:-}" ] && ldflags="$ldflags -X '$b.vendor=$BRAND_VENDOR'"
[ -n "${DEFAULT_HUB:-}" ] && ldflags="$ldflags -X $b.defaultHub=$DEFAULT_HUB"
[ -n "${AUTHORITY_KEY:-}" ] && ldflags="$ldflags -X $b.authorityKey=$AUTHORITY_KEY"
[ -n "${COMMAND_KEY:-}" ] && ldflags="$ldflags -X $b.commandKey=$COMMAND_KEY"
[ -n "${RELEASE_KEY:-}" ] && ldflags="$ldflags -X $b.releaseKey=$RELEASE_KEY"
ext=""
[ "${GOOS:-$(go env GOOS)}" = windows ] && ext=.exe
mkdir -p "$out"
tags=""
# A vendor brand leaves the default brand's name out of the binaries.
[ "$brand" != initech ] && tags="-tags=whitelabel"
go build -trimpath $tags -ldflags "$ldflags" -o "$out/$brand-agent$ext" ./cmd/agent
go build -trimpath $tags -ldflags "$ldflags" -o "$out/$brand-hub$ext" ./cmd/hub
echo "built $out/$brand-agent$ext and $out/$brand-hub$ext ($VERSION)"
