#!/usr/bin/env bash
# Renders deploy/runnerpool-operator.yaml from charts/runnerpool-operator with
# its default values (tests/chart.rs checks the committed file is current).
# Uses the control-plane rig's helm, built by `tests/cluster/cluster.sh build`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
helm="$(tests/cluster/cluster.sh bin-dir)/helm"
{
  echo "# Rendered by scripts/render-manifests.sh from charts/runnerpool-operator. Do not edit."
  "$helm" template runnerpool-operator charts/runnerpool-operator \
    --namespace runnerpool-system
} > deploy/runnerpool-operator.yaml
