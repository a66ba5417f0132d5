#!/usr/bin/env bash
# Refuses to release a tag that is not the version the sources carry: the
# release workflow runs it first. Usage: scripts/release-check.sh vX.Y.Z
# Checks that Cargo.toml's version, the chart's version and appVersion and the
# Dockerfile's default VERSION all equal the tag without its "v", and that the
# chart's image tag defaults to appVersion. Prints `version=X.Y.Z` (a line for
# $GITHUB_OUTPUT).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
die() { printf 'release-check: %s\n' "$*" >&2; exit 1; }

tag=${1:-}
[[ $tag =~ ^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]] ||
  die "the tag must be v followed by a semantic version (e.g. v1.2.3), not '$tag'"
version=${tag#v}

first() { sed -n "$1" "$2" | head -n1; }
declare -A found=(
  [Cargo.toml version]=$(first 's/^version = "\(.*\)"$/\1/p' Cargo.toml)
  [Chart.yaml version]=$(first 's/^version: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' charts/runnerpool-operator/Chart.yaml)
  [Chart.yaml appVersion]=$(first 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' charts/runnerpool-operator/Chart.yaml)
  [Dockerfile ARG VERSION]=$(first 's/^ARG VERSION=\(.*\)$/\1/p' Dockerfile)
)
wrong=()
for what in "${!found[@]}"; do
  [[ ${found[$what]} == "$version" ]] || wrong+=("$what is '${found[$what]}'")
done
image_tag=$(first 's/^  tag: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' charts/runnerpool-operator/values.yaml)
[[ -z $image_tag ]] || wrong+=("values.yaml image.tag is '$image_tag' (leave it empty: it defaults to appVersion)")
if ((${#wrong[@]})); then
  die "tag $tag does not match the sources: $(IFS=';'; echo "${wrong[*]}" | sed 's/;/; /g'). Bump them together, commit, then tag."
fi
echo "version=$version"
