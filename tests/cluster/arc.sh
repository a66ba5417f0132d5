#!/usr/bin/env bash
# actions-runner-controller (ARC: legacy RunnerDeployment mode and scale-set
# mode), built from the pinned wrapper module go/arc with the rig's flags, for
# `make bench-vs-arc`. Never part of `make test`. See README.md.
#
#   arc.sh build          build the manager, githubwebhookserver and
#                         githubrunnerscalesetlistener if missing; prints their dir
#   arc.sh crd-dir        print the directory of ARC's CRDs (config/crd/bases in the
#                         module: both modes' CRDs)
#   arc.sh serving-cert DIR   write a self-signed tls.crt/tls.key for 127.0.0.1 into DIR
#
# Stdout carries only the answer (a path); progress goes to stderr.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tool-versions.sh
. "$here/tool-versions.sh"
# shellcheck source=go-build.sh
. "$here/go-build.sh"

cache_root=${RUNNERPOOL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/runnerpool-operator}
bin_dir=$cache_root/bin/arc-${ARC_VERSION}_r$ARC_BUILD_REVISION
module=github.com/actions/actions-runner-controller

log() { printf 'arc.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# The manager runs either mode (`--auto-scaling-runner-set-only` for scale
# sets); the webhook server serves legacy mode, the listener scale-set mode.
binaries=(manager githubwebhookserver githubrunnerscalesetlistener)

built() {
  local b
  for b in "${binaries[@]}"; do [[ -x $bin_dir/$b ]] || return 1; done
}

build() {
  if built; then
    echo "$bin_dir"
    return 0
  fi
  mkdir -p "$cache_root"
  # One build at a time per cache, shared with cluster.sh and tools.sh.
  exec 9>"$cache_root/build.lock"
  flock 9
  if ! built; then
    use_local_go "actions-runner-controller"
    local tmp start=$SECONDS
    tmp=$(mktemp -d "$cache_root/tmp.arc.XXXXXX")
    log "building actions-runner-controller $ARC_VERSION (${binaries[*]}) ..."
    go_build arc "$tmp" "-X $module/build.Version=$ARC_VERSION" "$module" \
      "$module/cmd/githubwebhookserver" "$module/cmd/githubrunnerscalesetlistener"
    # go names the module's root main package after the module's last element.
    mv -f "$tmp/actions-runner-controller" "$tmp/manager"
    local b
    for b in "${binaries[@]}"; do
      [[ -x $tmp/$b ]] || die "the build of ARC produced no $b"
    done
    mkdir -p "$bin_dir"
    for b in "${binaries[@]}"; do mv -f "$tmp/$b" "$bin_dir/"; done
    rm -rf "$tmp"
    log "built ARC in $((SECONDS - start))s"
  fi
  exec 9>&-
  echo "$bin_dir"
}

crd_dir() {
  use_local_go "actions-runner-controller"
  local dir
  dir=$(cd "$here/go/arc" && GOTOOLCHAIN=local GOFLAGS=-mod=readonly go list -m -f '{{.Dir}}' "$module")
  [[ -d $dir/config/crd/bases ]] || die "no config/crd/bases in $dir"
  echo "$dir/config/crd/bases"
}

# controller-runtime always serves its admission webhooks (nothing calls them
# here) and refuses to start without a certificate.
serving_cert() {
  local dir=$1
  mkdir -p "$dir"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 \
    -keyout "$dir/tls.key" -out "$dir/tls.crt" 2>/dev/null || die "openssl could not make a certificate"
  echo "$dir"
}

case ${1:-} in
  build) build ;;
  crd-dir) crd_dir ;;
  serving-cert) [[ $# == 2 ]] || die "usage: arc.sh serving-cert DIR"; serving_cert "$2" ;;
  *) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
