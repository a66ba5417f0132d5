# Versions of the lint tools the test suite builds from Go modules (sourced by
# tools.sh and gen-modules.sh). Change one here, run `./gen-modules.sh NAME`,
# commit the regenerated go/NAME/go.mod and go.sum.
ACTIONLINT_VERSION=v1.7.12
KUBE_SCORE_VERSION=v1.20.0
# Bump when the way the tools are built changes, so the cache keys move.
TOOLS_BUILD_REVISION=1
# actions-runner-controller, only for `make bench-vs-arc` (arc.sh; go/arc).
ARC_VERSION=v0.27.6
ARC_BUILD_REVISION=2
