# How every Go binary of the rig is built (sourced by cluster.sh and tools.sh):
# pinned modules, no cgo, reproducible paths, stripped.
#   go_build MODULE-DIR OUT-DIR LDFLAGS PACKAGE...   (MODULE-DIR under tests/cluster/go/)

use_local_go() { # puts a Go toolchain on PATH, or fails with a clear message
  if ! command -v go >/dev/null && [[ -x /usr/local/go/bin/go ]]; then
    PATH=/usr/local/go/bin:$PATH
  fi
  command -v go >/dev/null || { printf '%s: error: go is needed to build %s (none on PATH)\n' "${0##*/}" "$1" >&2; exit 1; }
}

go_build() {
  local mod=$1 out=$2 ldflags=$3
  shift 3
  (
    cd "$(dirname "${BASH_SOURCE[0]}")/go/$mod"
    export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false"
    go build -trimpath -tags=notest,grpcnotrace -ldflags="-s -w $ldflags" -o "$out/" "$@"
  )
}
