# Versions of the local control plane (sourced by cluster.sh and gen-modules.sh).
# Change a version here, run ./gen-modules.sh, commit the regenerated go.mod/go.sum.
KUBERNETES_VERSION=v1.36.3
ETCD_VERSION=v3.6.16
KWOK_VERSION=v0.8.0
HELM_VERSION=v3.21.4
# Bump when the way the binaries are built changes (flags, tags), so the cache key moves.
RIG_BUILD_REVISION=2
