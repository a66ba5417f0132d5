#!/usr/bin/env bash
# Lint tools the test suite runs, built from pinned Go modules (go/actionlint,
# go/kube-score) with the same flags as the control plane. See README.md.
#
#   tools.sh build        build every missing tool into the cache
#   tools.sh path NAME    print the path of NAME (actionlint, kube-score), built if missing
#
# Stdout carries only the answer (a path); progress goes to stderr.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tool-versions.sh
. "$here/tool-versions.sh"
# shellcheck source=go-build.sh
. "$here/go-build.sh"

cache_root=${RUNNERPOOL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/runnerpool-operator}
tools=(actionlint kube-score)

log() { printf 'tools.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

version_of() {
  case $1 in
    actionlint) echo "$ACTIONLINT_VERSION" ;;
    kube-score) echo "$KUBE_SCORE_VERSION" ;;
    *) die "unknown tool $1 (known: ${tools[*]})" ;;
  esac
}

# One directory per tool and version: bumping one never rebuilds another.
tool_path() { echo "$cache_root/bin/$1-$(version_of "$1")_r$TOOLS_BUILD_REVISION/$1"; }

build_tool() {
  local name=$1 path version
  path=$(tool_path "$name")
  version=$(version_of "$name")
  [[ -x $path ]] && return 0
  mkdir -p "$cache_root"
  # One build at a time per cache, shared with cluster.sh's lock.
  exec 9>"$cache_root/build.lock"
  flock 9
  if [[ ! -x $path ]]; then
    use_local_go "$name"
    local tmp start=$SECONDS
    tmp=$(mktemp -d "$cache_root/tmp.$name.XXXXXX")
    log "building $name $version ..."
    case $name in
      actionlint)
        go_build actionlint "$tmp" "-X github.com/rhysd/actionlint.version=$version" \
          github.com/rhysd/actionlint/cmd/actionlint
        ;;
      kube-score)
        go_build kube-score "$tmp" "-X main.version=$version" github.com/zegl/kube-score/cmd/kube-score
        ;;
    esac
    [[ -x $tmp/$name ]] || die "the build of $name produced no binary"
    mkdir -p "${path%/*}"
    mv -f "$tmp/$name" "$path"
    rm -rf "$tmp"
    log "built $name in $((SECONDS - start))s"
  fi
  exec 9>&-
}

main() {
  local cmd=${1:-}
  shift || true
  case $cmd in
    build) for t in "${tools[@]}"; do build_tool "$t"; done ;;
    path)
      [[ $# == 1 ]] || die "usage: tools.sh path NAME"
      build_tool "$1"
      tool_path "$1"
      ;;
    *) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
  esac
}
main "$@"
exit $?
