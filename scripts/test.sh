#!/usr/bin/env bash
# The whole test suite: what `make test` and CI run.
# Builds the local control plane and the lint tools when they are missing
# (cached outside the repo), installs the OpenAPI description the GitHub fake
# is checked against, builds the image archive (scripts/image.sh), runs a
# short `make demo` (the README's first command must never break unseen),
# starts one control plane for the suite, runs every Rust test and stops the
# cluster.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

tests/cluster/cluster.sh build
tests/cluster/tools.sh build   # actionlint, kube-score
tests/fake-github/openapi/install.sh
# The image archive tests/image.rs inspects: its release build runs here, not
# inside the test run where it would compete with timing-sensitive tests.
image_start=$SECONDS
scripts/image.sh >/dev/null
echo "test.sh: image archive ready in $((SECONDS - image_start))s"

# The demo on its own cluster (target/demo-cluster, stopped by demo.sh), before
# the suite's cluster starts so the two never compete for the cores.
demo_start=$SECONDS
scripts/demo.sh 15
echo "test.sh: demo smoke run passed in $((SECONDS - demo_start))s"

cluster_dir=$(mktemp -d "${TMPDIR:-/tmp}/runnerpool-test-cluster.XXXXXX")
cleanup() { tests/cluster/cluster.sh down "$cluster_dir" >/dev/null 2>&1 || true; }
trap cleanup EXIT
tests/cluster/cluster.sh up "$cluster_dir" >/dev/null
export RUNNERPOOL_TEST_KUBECONFIG="$cluster_dir/kubeconfig"

log=$(mktemp "${TMPDIR:-/tmp}/runnerpool-test-log.XXXXXX")
status=0
cargo test --workspace --all-targets "$@" 2>&1 | tee "$log" || status=$?
# One closing line for the whole suite: the sum of every test binary's result.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i } }
     END { printf "\nsuite: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
rm -f "$log"
exit "$status"
