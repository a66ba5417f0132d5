#!/usr/bin/env bash
# The local demo: builds what is missing, starts the local control plane, then
# runs the operator with a GitHub fake and a sample RunnerPool, simulating
# jobs. No cluster or GitHub account needed. `scripts/demo.sh SECONDS` runs longer.
# Exits non-zero when the demo did not work (no runner online, no job served,
# leftovers after the pool's deletion); `make test` runs `scripts/demo.sh 15`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

tests/cluster/cluster.sh build >&2
dir="$root/target/demo-cluster"
cleanup() { tests/cluster/cluster.sh down "$dir" >/dev/null 2>&1 || true; }
trap cleanup EXIT
trap 'exit 130' INT TERM   # so the EXIT trap stops the cluster on Ctrl-C too
kubeconfig=$(tests/cluster/cluster.sh up "$dir")
cargo build --quiet --bin runnerpool-operator --example demo
cargo run --quiet --example demo -- "$kubeconfig" "$(tests/cluster/cluster.sh bin-dir)/kubectl" \
  "$root/target/debug/runnerpool-operator" "${1:-45}"
