#!/usr/bin/env bash
# The project's test command (the README's, and what .ci/run calls).
# Installs what the tests need on a fresh machine (Debian packages, as root),
# then runs gofmt, go vet, the race detector on the core packages and on a
# hub and nodes in one process, the fuzz seed corpora, the end-to-end tests
# with the real binaries built with the race detector (a real systemd,
# PostgreSQL and squid), and cross-compilation.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=local
export PATH="$PATH:/usr/local/go/bin:$(go env GOPATH)/bin"

# Debian packages the tests use; installed only when missing.
need=()
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v curl >/dev/null || need+=(curl)
command -v wixl >/dev/null || need+=(wixl)
command -v msiinfo >/dev/null || need+=(msitools)
command -v rpm >/dev/null || need+=(rpm)
command -v cpio >/dev/null || need+=(cpio)
command -v systemd-nspawn >/dev/null || need+=(systemd-container)   # systemd-box: a real systemd for the service tests
command -v squid >/dev/null || need+=(squid-openssl)                 # a real CONNECT proxy (and ssl-bump) for the egress tests
command -v iperf3 >/dev/null || need+=(iperf3)                       # the bench's throughput rows
[ -x /usr/lib/postgresql/15/bin/initdb ] || need+=(postgresql-15)    # the cluster tests' database
if ((${#need[@]})); then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
  else
    echo "test.sh: missing ${need[*]} (install them, or run as root)" >&2
  fi
fi

# goreleaser for the packaging tests (v2.16.0 is the newest that builds
# with this Go; building it takes a few minutes, once per machine).
command -v goreleaser >/dev/null || { echo "== installing goreleaser v2.16.0"; go install github.com/goreleaser/goreleaser/v2@v2.16.0; }

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then echo "gofmt needed: $unformatted" >&2; exit 1; fi
echo "== go vet"
go vet ./...
echo "== unit tests, fuzz seeds and the in-process hub + nodes (race detector)"
go test -race -count=1 -timeout 20m ./wire/... ./policy/... ./enroll/... ./portal/... ./hub/... ./agent/... ./internal/tstest/inproc/
echo "== end-to-end (binaries built with the race detector), CLI and repository tests"
E2E_RACE=1 go test -count=1 -timeout 50m $(go list ./internal/... ./cmd/... | grep -v '/internal/tstest/inproc$')
