#!/usr/bin/env bash
# Installs GitHub's OpenAPI description (the npm package @octokit/openapi,
# version pinned in package.json / package-lock.json beside this script) into
# a cache directory outside the repository, and prints the directory holding
# the description files. Skips the install when that version is already there.
#
#   cache root: ${RUNNERPOOL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/runnerpool-operator}
#   installed:  <cache root>/openapi/node_modules/@octokit/openapi/generated
#
# The fake's OpenAPI test reads the same path (or $RUNNERPOOL_OPENAPI_DIR).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache_root=${RUNNERPOOL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/runnerpool-operator}
dest="$cache_root/openapi"
generated="$dest/node_modules/@octokit/openapi/generated"

want=$(node -e 'process.stdout.write(require(process.argv[1]).dependencies["@octokit/openapi"])' "$here/package.json")
have=""
if [[ -f "$dest/node_modules/@octokit/openapi/package.json" ]]; then
  have=$(node -e 'process.stdout.write(require(process.argv[1]).version)' "$dest/node_modules/@octokit/openapi/package.json" 2>/dev/null || true)
fi
if [[ "$have" == "$want" && -f "$generated/api.github.com.json" && -f "$dest/.complete" ]]; then
  echo "$generated"
  exit 0
fi

command -v npm >/dev/null || { echo "install.sh: npm is required to install @octokit/openapi" >&2; exit 1; }
mkdir -p "$cache_root"
staging=$(mktemp -d "$cache_root/openapi.staging.XXXXXX")
trap 'rm -rf "$staging"' EXIT
cp "$here/package.json" "$here/package-lock.json" "$staging/"
echo "installing @octokit/openapi@$want into $dest" >&2
(cd "$staging" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >&2)
touch "$staging/.complete"
rm -rf "$dest"
mv "$staging" "$dest"
trap - EXIT
echo "$generated"
