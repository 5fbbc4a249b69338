#!/usr/bin/env bash
# The project's test command (the README's, and what .ci/run calls).
# Installs what the tests need on a fresh machine, then runs gofmt, go vet,
# the race detector on the core packages, the fuzz seed corpora, the
# end-to-end tests with the real binaries, and cross-compilation.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=local
export PATH="$PATH:/usr/local/go/bin:$(go env GOPATH)/bin"

# Debian packages the tests use; installed only when missing.
need=()
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v curl >/dev/null || need+=(curl)
if ((${#need[@]})); then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
  else
    echo "test.sh: missing ${need[*]} (install them, or run as root)" >&2
  fi
fi

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then echo "gofmt needed: $unformatted" >&2; exit 1; fi
echo "== go vet"
go vet ./...
echo "== unit tests (race detector) and fuzz seeds"
go test -race -count=1 -timeout 20m ./wire/... ./policy/... ./enroll/... ./portal/... ./hub/... ./agent/...
echo "== end-to-end, CLI and repository tests"
go test -count=1 -timeout 30m ./internal/... ./cmd/...
