#!/usr/bin/env bash
# The whole test suite: what `make test` and CI run.
# Builds the local control plane when it is missing (cached outside the repo),
# installs the OpenAPI description the GitHub fake is checked against, starts
# one control plane for the suite, runs every Rust test and stops the cluster.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

tests/cluster/cluster.sh build
tests/fake-github/openapi/install.sh

cluster_dir=$(mktemp -d "${TMPDIR:-/tmp}/runnerpool-test-cluster.XXXXXX")
cleanup() { tests/cluster/cluster.sh down "$cluster_dir" >/dev/null 2>&1 || true; }
trap cleanup EXIT
tests/cluster/cluster.sh up "$cluster_dir" >/dev/null
export RUNNERPOOL_TEST_KUBECONFIG="$cluster_dir/kubeconfig"

cargo test --workspace --all-targets "$@"
