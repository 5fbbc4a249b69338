#!/usr/bin/env bash
# Runs the walk-through on loopback: hub + SaaS node + customer node + sample
# services, with the embedded defaults. Ctrl-C stops everything.
# Usage: scripts/demo.sh [--check] [--dir DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=local
exec go run ./internal/cmd/demo "$@"
