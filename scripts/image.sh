#!/usr/bin/env bash
# Builds the operator's image as an OCI image archive without a container
# daemon: a static release binary (glibc linked statically) and the CA bundle
# in one deterministic layer, with the entrypoint, command, user and labels of
# the Dockerfile's final stage. Prints the archive's path:
#   target/image/runnerpool-operator-VERSION-linux-ARCH.oci.tar
# Load it with `docker load`, `podman load` or `skopeo copy oci-archive:...`.
# IMAGE (default: the chart's image.repository) names it; SOURCE_DATE_EPOCH
# (default: the last commit's time) dates it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
log() { printf 'image.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
[[ -n $version ]] || die "no version in Cargo.toml"
image=${IMAGE:-$(sed -n 's/^  repository: *//p' charts/runnerpool-operator/values.yaml | head -n1)}
[[ -n $image ]] || die "no image.repository in charts/runnerpool-operator/values.yaml"
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)
ca_bundle=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
[[ -s $ca_bundle ]] || die "no CA bundle at $ca_bundle (install ca-certificates, or set CA_BUNDLE)"

triple=$(rustc -vV | sed -n 's/^host: //p')
case $triple in
  x86_64-unknown-linux-gnu) arch=amd64 ;;
  aarch64-unknown-linux-gnu) arch=arm64 ;;
  *) die "unsupported build host $triple (linux-gnu on x86_64 or aarch64)" ;;
esac

# --- the Dockerfile's final stage: LABEL, USER, ENTRYPOINT, CMD --------------
final_stage() { # the lines after the last FROM, continuation lines joined
  awk '/^FROM /{n=NR} {l[NR]=$0} END{for(i=n+1;i<=NR;i++) print l[i]}' Dockerfile |
    sed -e ':a' -e '/\\$/N; s/\\\n/ /; ta' | grep -v '^[[:space:]]*\(#\|$\)'
}
json_string() { # JSON string literal of $1
  local s=${1//\\/\\\\}
  s=${s//\"/\\\"}
  printf '"%s"' "$s"
}
user="" entrypoint="" cmd="" labels=()
while IFS= read -r line; do
  case $line in
    USER\ *) user=${line#USER } ;;
    ENTRYPOINT\ \[*) entrypoint=${line#ENTRYPOINT } ;;
    CMD\ \[*) cmd=${line#CMD } ;;
    LABEL\ *=\"*\") # one key="value" per LABEL line
      kv=${line#LABEL }
      key=${kv%%=*} value=${kv#*=}
      value=${value#\"} value=${value%\"}
      labels+=("$(json_string "$key"):$(json_string "${value//\$\{VERSION\}/$version}")")
      ;;
    LABEL\ *) die "Dockerfile: write LABEL as one key=\"value\" per line: $line" ;;
    ENTRYPOINT\ * | CMD\ *) die "Dockerfile: ENTRYPOINT and CMD must be JSON arrays: $line" ;;
  esac
done < <(final_stage)
[[ -n $user && -n $entrypoint && ${#labels[@]} -gt 0 ]] || die "Dockerfile: the final stage needs USER, ENTRYPOINT and LABELs"
labels_json=$(IFS=,; echo "{${labels[*]}}")

# --- the binary ---------------------------------------------------------------
# Its own target dir: no lock shared with a running `cargo test`, and the
# static build's flags never invalidate the normal builds.
build_dir=$root/target/image-build
# Run from a test, cargo's variables (CARGO_MANIFEST_DIR, ...) would be seen by
# build scripts that watch them (ring's does) and rebuild everything: drop them.
for var in $(compgen -e); do
  case $var in
    CARGO | CARGO_MANIFEST_* | CARGO_PKG_* | CARGO_CRATE_NAME | CARGO_BIN_* | CARGO_PRIMARY_PACKAGE | \
      CARGO_TARGET_TMPDIR | CARGO_RUSTC_CURRENT_DIR) unset "$var" ;;
  esac
done
log "building the static release binary for $triple ..."
CARGO_TARGET_DIR=$build_dir RUSTFLAGS='-C target-feature=+crt-static' \
  cargo build --quiet --release --locked --target "$triple" --bin runnerpool-operator
binary=$build_dir/$triple/release/runnerpool-operator
"$binary" --version >/dev/null || die "the built binary does not run"

# --- the OCI layout ------------------------------------------------------------
out_dir=$root/target/image
work=$(mktemp -d "$root/target/image-work.XXXXXX")
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs layout=$work/layout
mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc/ssl/certs" "$layout/blobs/sha256"
install -m 0755 "$binary" "$rootfs/usr/local/bin/runnerpool-operator"
install -m 0644 "$ca_bundle" "$rootfs/etc/ssl/certs/ca-certificates.crt"

# Same bytes for the same inputs: sorted names, fixed owner, mode and time.
det_tar() { # archive dir paths...
  local archive=$1 dir=$2
  shift 2
  tar --create --file "$archive" --directory "$dir" --format=ustar --sort=name \
    --owner=0 --group=0 --numeric-owner --mode='u+rwX,go+rX,go-w' --mtime="@$epoch" "$@"
}
blob() { # file media-type -> a descriptor; moves the file into the layout
  local digest size
  digest=$(sha256sum "$1" | cut -d' ' -f1)
  size=$(stat -c %s "$1")
  mv "$1" "$layout/blobs/sha256/$digest"
  printf '{"mediaType":"%s","digest":"sha256:%s","size":%s}' "$2" "$digest" "$size"
}

det_tar "$work/layer.tar" "$rootfs" etc usr
diff_id=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
gzip -n -9 "$work/layer.tar"
layer=$(blob "$work/layer.tar.gz" application/vnd.oci.image.layer.v1.tar+gzip)

config_json=$(printf '{"created":"%s","architecture":"%s","os":"linux","config":{"User":%s,"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Entrypoint":%s,"Cmd":%s,"Labels":%s},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created":"%s","created_by":"scripts/image.sh"}]}' \
  "$created" "$arch" "$(json_string "$user")" "$entrypoint" "${cmd:-null}" "$labels_json" "$diff_id" "$created")
printf '%s' "$config_json" >"$work/config.json"
config=$(blob "$work/config.json" application/vnd.oci.image.config.v1+json)

printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":%s,"layers":[%s],"annotations":{"org.opencontainers.image.created":"%s"}}' \
  "$config" "$layer" "$created" >"$work/manifest.json"
manifest=$(blob "$work/manifest.json" application/vnd.oci.image.manifest.v1+json)

ref="$image:$version"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[%s]}' \
  "${manifest%\}},\"platform\":{\"architecture\":\"$arch\",\"os\":\"linux\"},\"annotations\":{\"io.containerd.image.name\":$(json_string "$ref"),\"org.opencontainers.image.ref.name\":$(json_string "$version")}}" \
  >"$layout/index.json"
printf '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"

mkdir -p "$out_dir"
archive=$out_dir/runnerpool-operator-$version-linux-$arch.oci.tar
det_tar "$work/archive.tar" "$layout" oci-layout index.json blobs
mv -f "$work/archive.tar" "$archive"
log "$ref (linux/$arch): $archive, $(($(stat -c %s "$archive") / 1024)) KiB"
echo "$archive"
