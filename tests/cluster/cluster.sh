#!/usr/bin/env bash
# A real, local Kubernetes control plane on loopback for tests, the demo and
# benchmarks: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and
# kwok (fake nodes and pod lifecycle, no kubelet). See tests/cluster/README.md.
#
#   cluster.sh build       build every missing binary into the cache; prints the bin dir
#   cluster.sh bin-dir     print the directory holding kubectl, helm, kwok, ...
#   cluster.sh up DIR      start a cluster in DIR (idempotent); prints DIR/kubeconfig
#   cluster.sh down DIR    stop the cluster in DIR by pid (safe to call twice)
#   cluster.sh status DIR  exit 0 when DIR holds a healthy cluster started by this script
#   cluster.sh restart-apiserver DIR  restart kube-apiserver of DIR (same ports); prints DIR/kubeconfig
#
# Stdout carries only the answer (a path); progress goes to stderr.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.sh
. "$here/versions.sh"
# shellcheck source=go-build.sh
. "$here/go-build.sh"

cache_root=${RUNNERPOOL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/runnerpool-operator}
version_key="k8s-${KUBERNETES_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}_helm-${HELM_VERSION}_r${RIG_BUILD_REVISION}"
bin_dir=$cache_root/bin/$version_key

log() { printf 'cluster.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------------------
# build
# ---------------------------------------------------------------------------

k8s_bins=(kube-apiserver kube-controller-manager kube-scheduler kubectl)

missing() { # name... ; true when any is missing from bin_dir
  local b
  for b in "$@"; do [[ -x $bin_dir/$b ]] || return 0; done
  return 1
}

build_group() { # group-name names... -- build command is chosen by group
  local group=$1
  shift
  missing "$@" || return 0
  use_local_go "the control plane"
  local tmp start
  tmp=$(mktemp -d "$cache_root/tmp.$group.XXXXXX")
  start=$(date +%s)
  log "building $group ($*) ..."
  case $group in
    kubernetes)
      local major=${KUBERNETES_VERSION#v} ld=""
      major=${major%%.*}
      local minor=${KUBERNETES_VERSION#v*.}
      minor=${minor%%.*}
      # /version must report the real version (helm and clients check it);
      # the build date is the release's date from the module proxy.
      local k v date
      date=$(cd "$here/go/kubernetes" && GOTOOLCHAIN=local GOFLAGS=-mod=readonly \
        go list -m -f '{{with .Time}}{{.UTC.Format "2006-01-02T15:04:05Z"}}{{end}}' k8s.io/kubernetes) || true
      for k in gitVersion=$KUBERNETES_VERSION gitMajor=$major gitMinor=$minor gitCommit= \
        gitTreeState=clean buildDate=${date:-1970-01-01T00:00:00Z}; do
        for v in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
          ld+=" -X $v.$k"
        done
      done
      go_build kubernetes "$tmp" "$ld" "${@/#/k8s.io/kubernetes/cmd/}"
      ;;
    etcd)
      go_build etcd "$tmp" "" go.etcd.io/etcd/server/v3
      # go names a .../server/v3 main package "server"
      local f
      for f in server v3; do [[ -x $tmp/$f ]] && mv "$tmp/$f" "$tmp/etcd"; done
      ;;
    kwok)
      go_build kwok "$tmp" "-X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=$KUBERNETES_VERSION" \
        sigs.k8s.io/kwok/cmd/kwok
      ;;
    helm)
      local hmajor=${KUBERNETES_VERSION#v} hminor=${KUBERNETES_VERSION#v*.}
      hmajor=${hmajor%%.*} hminor=${hminor%%.*}
      go_build helm "$tmp" "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION \
        -X helm.sh/helm/v3/internal/version.gitTreeState=clean \
        -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=$hmajor -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$hminor \
        -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=$hmajor -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$hminor" \
        helm.sh/helm/v3/cmd/helm
      ;;
  esac
  local b
  for b in "$@"; do
    [[ -x $tmp/$b ]] || die "build of $group produced no $b"
    mv -f "$tmp/$b" "$bin_dir/$b"
  done
  rm -rf "$tmp"
  log "built $group in $(($(date +%s) - start))s"
}

cmd_build() {
  mkdir -p "$bin_dir"
  if missing "${k8s_bins[@]}" etcd kwok helm; then
    # One build at a time per cache (parallel test binaries may all call build).
    exec 9>"$cache_root/build.lock"
    flock 9
    build_group kubernetes "${k8s_bins[@]}"
    build_group etcd etcd
    build_group kwok kwok
    build_group helm helm
    exec 9>&-
  fi
  echo "$bin_dir"
}

# ---------------------------------------------------------------------------
# up / down / status
# ---------------------------------------------------------------------------
# Layout of a cluster directory (nothing else in DIR is touched):
#   DIR/kubeconfig          admin kubeconfig (system:masters), printed by `up`
#   DIR/rig/pki/            CA, serving and client certificates, SA keys
#   DIR/rig/etcd/           etcd data
#   DIR/rig/run/NAME.pid    pid of each component; DIR/rig/run/ports
#   DIR/rig/logs/NAME.log   each component's output
#   DIR/rig/*.kubeconfig    per-component kubeconfigs
components=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)
service_cidr=10.96.0.0/16
service_ip=10.96.0.1
node_count=${RUNNERPOOL_CLUSTER_NODES:-3}
ready_timeout=${RUNNERPOOL_CLUSTER_TIMEOUT:-120}

abs_dir() { # DIR -> absolute path (created)
  [[ -n ${1:-} ]] || die "a cluster directory is needed (cluster.sh $cmd DIR)"
  mkdir -p "$1"
  (cd "$1" && pwd)
}

set_dir() {
  dir=$(abs_dir "$1")
  rig=$dir/rig
  pki=$rig/pki
  run=$rig/run
  logs=$rig/logs
  kubeconfig=$dir/kubeconfig
}

# pid of component NAME when it is running and is the process we started.
live_pid() {
  local f=$run/$1.pid pid
  [[ -f $f ]] || return 1
  pid=$(<"$f")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ -r /proc/$pid/cmdline ]] || return 1
  # Guard against pid reuse: the command line names our binary and our dir.
  local cmdline
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ $cmdline == *"/$1 "* && $cmdline == *"$rig"* ]] || return 1
  # A zombie is not running.
  [[ $(awk '/^State:/ {print $2}' "/proc/$pid/status" 2>/dev/null) != Z ]] || return 1
  echo "$pid"
}

kubectl_admin() { "$bin_dir/kubectl" --kubeconfig "$kubeconfig" --request-timeout=5s "$@"; }

# What the running cluster was started from: a cluster made by another
# version of this script, its kwok stages or its binaries is not reused.
rig_fingerprint() {
  cat "$here/cluster.sh" "$here/kwok/kwok.yaml" "$here/versions.sh" | sha256sum | cut -c1-16
}

healthy() {
  local c
  [[ -f $kubeconfig && -x $bin_dir/kubectl ]] || return 1
  if [[ $(cat "$run/fingerprint" 2>/dev/null) != "$(rig_fingerprint)" ]]; then
    [[ -f $run/kube-apiserver.pid ]] && log "the cluster in $dir was started by another version of the rig"
    return 1
  fi
  for c in "${components[@]}"; do live_pid "$c" >/dev/null || return 1; done
  [[ $(kubectl_admin get --raw /readyz 2>/dev/null) == ok ]]
}

cmd_status() {
  set_dir "${1:-}"
  if healthy; then
    log "cluster in $dir is healthy"
    echo "$kubeconfig"
  else
    log "no healthy cluster in $dir"
    return 1
  fi
}

# --- ports -----------------------------------------------------------------
port_in_use() {
  # Listening sockets (any address) and sockets still in TIME_WAIT etc.
  [[ -n $(ss -Htan "( sport = :$1 )" 2>/dev/null) ]]
}

reserved_port() { # a port handed to a cluster that is not down yet
  local f=$cache_root/ports/$1 owner
  [[ -f $f ]] || return 1
  owner=$(<"$f")
  # The reservation is stale when no process of its cluster is left (it was
  # stopped with `down`, or killed, or the machine restarted).
  local pf pid
  for pf in "$owner"/rig/run/*.pid; do
    [[ -f $pf ]] || continue
    pid=$(<"$pf")
    [[ $pid =~ ^[0-9]+$ && -d /proc/$pid ]] && return 0
  done
  # Still being started: `up` holds the directory's lock (ports are picked
  # before the first process runs).
  if [[ -f $owner/rig/lock ]] && ! flock -n "$owner/rig/lock" true 2>/dev/null; then
    return 0
  fi
  rm -f "$f"
  return 1
}

# Ports come from below the kernel's ephemeral range, so an outgoing
# connection cannot take one between the check and the bind.
port_range() {
  local lo=32768
  [[ -r /proc/sys/net/ipv4/ip_local_port_range ]] && read -r lo _ </proc/sys/net/ipv4/ip_local_port_range
  if ((lo > 12000)); then
    echo "10000 $((lo - 10000))"
  else # an unusual ephemeral range: take ports above it
    echo "61000 4000"
  fi
}

pick_ports() { # count -> free ports on 127.0.0.1, reserved for $dir
  local n=$1 p tries=0 base span
  read -r base span < <(port_range)
  picked=()
  mkdir -p "$cache_root/ports"
  # Sweep reservations of clusters that vanished without `down`.
  local f
  for f in "$cache_root"/ports/*; do
    [[ -f $f ]] && { reserved_port "${f##*/}" || true; }
  done
  while ((${#picked[@]} < n)); do
    ((tries++ < 1000)) || die "no free port found"
    p=$((base + (RANDOM * 32768 + RANDOM) % span))
    [[ " ${picked[*]} " == *" $p "* ]] && continue
    port_in_use "$p" && continue
    reserved_port "$p" && continue
    picked+=("$p")
  done
  for p in "${picked[@]}"; do echo "$dir" >"$cache_root/ports/$p"; done
}

release_ports() {
  local p f
  [[ -f $run/ports ]] || return 0
  for p in $(<"$run/ports"); do
    f=$cache_root/ports/$p
    [[ -f $f && $(<"$f") == "$dir" ]] && rm -f "$f"
  done
  return 0
}

# --- certificates ----------------------------------------------------------
new_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# issue NAME SUBJECT EXTENSIONS: a certificate signed by the rig's CA
issue() {
  local name=$1 subj=$2 ext=$3
  new_key "$pki/$name.key"
  openssl req -new -key "$pki/$name.key" -subj "$subj" -out "$pki/$name.csr" 2>/dev/null
  printf '%s\n' "$ext" >"$pki/$name.ext"
  openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
    -CAcreateserial -days 30 -sha256 -extfile "$pki/$name.ext" -out "$pki/$name.crt" 2>/dev/null
  rm -f "$pki/$name.csr" "$pki/$name.ext"
}

make_pki() {
  mkdir -p "$pki"
  chmod 700 "$pki"
  new_key "$pki/ca.key"
  openssl req -x509 -new -key "$pki/ca.key" -subj "/CN=runnerpool-test-ca" -days 30 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -addext "subjectKeyIdentifier=hash" -out "$pki/ca.crt" 2>/dev/null
  local client="basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
  issue apiserver "/CN=kube-apiserver" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost,IP:$service_ip,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  issue admin "/O=system:masters/CN=runnerpool-test-admin" "$client"
  issue controller-manager "/CN=system:kube-controller-manager" "$client"
  issue scheduler "/CN=system:kube-scheduler" "$client"
  issue kwok "/O=system:masters/CN=kwok" "$client"
  # The API server's client certificate towards "kubelets" (kwok has none).
  issue apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "$client"
  # Service-account token signing key pair.
  new_key "$pki/sa.key"
  openssl pkey -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
  rm -f "$pki/ca.srl"
}

write_kubeconfig() { # file user-cert-name server
  local b64="base64 -w0"
  cat >"$1" <<KC
apiVersion: v1
kind: Config
clusters:
- name: runnerpool-test
  cluster:
    server: $3
    certificate-authority-data: $($b64 <"$pki/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $($b64 <"$pki/$2.crt")
    client-key-data: $($b64 <"$pki/$2.key")
contexts:
- name: runnerpool-test
  context:
    cluster: runnerpool-test
    user: $2
    namespace: default
current-context: runnerpool-test
KC
  chmod 600 "$1"
}

# --- processes -------------------------------------------------------------
# start NAME ARGS...: runs $bin_dir/NAME in its own session, detached from the
# caller (no inherited stdio, no inherited lock fd), and records its pid.
start() {
  local name=$1
  shift
  : >"$logs/$name.log"
  setsid nohup "$bin_dir/$name" "$@" </dev/null >>"$logs/$name.log" 2>&1 9>&- &
  echo $! >"$run/$name.pid"
}

wait_for() { # description timeout-seconds command...
  local what=$1 timeout=$2 deadline
  shift 2
  deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      log "timed out after ${timeout}s waiting for $what"
      return 1
    fi
    check_alive || return 1
    sleep 0.1
  done
}

check_alive() { # every component started so far is still running
  local c
  for c in "${components[@]}"; do
    [[ -f $run/$c.pid ]] || continue
    if ! live_pid "$c" >/dev/null; then
      log "$c exited; last lines of $logs/$c.log:"
      tail -n 25 "$logs/$c.log" >&2 || true
      return 1
    fi
  done
}

tcp_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
readyz_ok() { [[ $(kubectl_admin get --raw /readyz 2>/dev/null) == ok ]]; }
default_sa() { kubectl_admin -n default get serviceaccount default -o name; }
# Ready, and schedulable: the node lifecycle controller has lifted the
# not-ready taint that admission puts on every new node.
nodes_ready() {
  local ready
  ready=$(kubectl_admin get nodes -l runnerpool.dev/rig-node=true \
    -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}/{.spec.taints}{"\n"}{end}' | grep -c '^True/$')
  ((ready == node_count))
}

node_manifest() {
  local i
  for ((i = 1; i <= node_count; i++)); do
    cat <<NODE
---
apiVersion: v1
kind: Node
metadata:
  name: rig-node-$i
  annotations:
    kwok.x-k8s.io/node: fake
  labels:
    runnerpool.dev/rig-node: "true"
    type: kwok
    kubernetes.io/hostname: rig-node-$i
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    node.kubernetes.io/instance-type: rig-4cpu-16gi
    topology.kubernetes.io/zone: rig-zone-$(((i - 1) % 2 + 1))
spec: {}
status:
  allocatable:
    cpu: 3800m
    memory: 15Gi
    ephemeral-storage: 95Gi
    pods: "110"
  capacity:
    cpu: "4"
    memory: 16Gi
    ephemeral-storage: 100Gi
    pods: "110"
NODE
  done
}

cmd_up() {
  set_dir "${1:-}"
  cmd_build >/dev/null
  mkdir -p "$rig"
  # One `up` at a time for a directory: concurrent test binaries share it.
  exec 9>"$rig/lock"
  flock 9
  if healthy; then
    log "cluster in $dir is already up"
    echo "$kubeconfig"
    return 0
  fi
  local t0=$SECONDS attempt
  rm -rf "$rig"/logs.attempt*
  for attempt in 1 2 3; do
    if start_cluster; then
      exec 9>&-
      log "cluster ready in $((SECONDS - t0))s: kubectl --kubeconfig $kubeconfig"
      echo "$kubeconfig"
      return 0
    fi
    stop_all
    # Keep the failed attempt's logs for debugging.
    rm -rf "$rig/logs.attempt$attempt"
    mv "$logs" "$rig/logs.attempt$attempt" 2>/dev/null || true
    log "attempt $attempt failed (logs in $rig/logs.attempt$attempt)"
  done
  die "could not start a cluster in $dir"
}

# kube-apiserver of $dir on etcd port $1, serving on port $2.
start_apiserver() {
  start kube-apiserver \
    --etcd-servers="http://127.0.0.1:$1" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$2" \
    --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
    --client-ca-file="$pki/ca.crt" \
    --kubelet-client-certificate="$pki/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$pki/apiserver-kubelet-client.key" \
    --authorization-mode=Node,RBAC \
    --enable-admission-plugins=NodeRestriction \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$pki/sa.pub" \
    --service-account-signing-key-file="$pki/sa.key" \
    --service-cluster-ip-range="$service_cidr" \
    --allow-privileged=true \
    --endpoint-reconciler-type=none \
    --profiling=false \
    --v=1
}

# Stops kube-apiserver (TERM) and starts it again on the same ports, as a
# control-plane upgrade or a crash of the API server would: clients see
# refused connections, then their watches are re-established.
cmd_restart_apiserver() {
  set_dir "${1:-}"
  healthy || die "no healthy cluster in $dir"
  local ports pid t0=$SECONDS
  read -r -a ports <"$run/ports"
  if pid=$(live_pid kube-apiserver); then
    kill -TERM "$pid" 2>/dev/null || true
    while live_pid kube-apiserver >/dev/null; do sleep 0.1; done
  fi
  start_apiserver "${ports[0]}" "${ports[2]}"
  wait_for "kube-apiserver /readyz" "$ready_timeout" readyz_ok || die "kube-apiserver did not come back"
  log "kube-apiserver restarted in $((SECONDS - t0))s"
  echo "$kubeconfig"
}

# One attempt at a fresh cluster in $dir; returns non-zero on failure.
start_cluster() {
  local t0=$SECONDS
  # Leftovers of an earlier cluster in DIR (crashed, or half started): clear them.
  stop_all
  rm -rf "$pki" "$rig/etcd" "$logs" "$run" "$rig"/*.kubeconfig "$kubeconfig"
  mkdir -p "$pki" "$run" "$logs"
  make_pki || { log "certificates could not be made"; return 1; }

  # Ports: chosen free at start, reserved in the cache until `down`.
  exec 8>"$cache_root/ports.lock"
  flock 8
  pick_ports 3
  local etcd_port=${picked[0]} etcd_peer_port=${picked[1]} api_port=${picked[2]}
  echo "${picked[*]}" >"$run/ports"
  exec 8>&-
  rig_fingerprint >"$run/fingerprint"
  local server=https://127.0.0.1:$api_port
  write_kubeconfig "$kubeconfig" admin "$server"
  write_kubeconfig "$rig/controller-manager.kubeconfig" controller-manager "$server"
  write_kubeconfig "$rig/scheduler.kubeconfig" scheduler "$server"
  write_kubeconfig "$rig/kwok.kubeconfig" kwok "$server"
  log "starting etcd on 127.0.0.1:$etcd_port"
  start etcd --name=rig --data-dir="$rig/etcd" \
    --listen-client-urls="http://127.0.0.1:$etcd_port" --advertise-client-urls="http://127.0.0.1:$etcd_port" \
    --listen-peer-urls="http://127.0.0.1:$etcd_peer_port" --initial-advertise-peer-urls="http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster="rig=http://127.0.0.1:$etcd_peer_port" --initial-cluster-state=new \
    --unsafe-no-fsync --snapshot-count=10000 --quota-backend-bytes=2147483648 \
    --log-level=warn --logger=zap --log-outputs=stderr
  wait_for "etcd" 30 tcp_open "$etcd_port" || return 1

  log "starting kube-apiserver on $server"
  start_apiserver "$etcd_port" "$api_port"
  wait_for "kube-apiserver /readyz" "$ready_timeout" readyz_ok || return 1
  log "kube-apiserver ready after $((SECONDS - t0))s"

  start kube-controller-manager \
    --kubeconfig="$rig/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$rig/controller-manager.kubeconfig" \
    --authorization-kubeconfig="$rig/controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port=0 \
    --leader-elect=false \
    --controllers="$kcm_controllers" \
    --service-account-private-key-file="$pki/sa.key" \
    --root-ca-file="$pki/ca.crt" \
    --cluster-signing-cert-file="$pki/ca.crt" --cluster-signing-key-file="$pki/ca.key" \
    --service-cluster-ip-range="$service_cidr" \
    --use-service-account-credentials=true \
    --node-monitor-period=1s --node-monitor-grace-period=90s \
    --profiling=false \
    --v=1
  start kube-scheduler \
    --kubeconfig="$rig/scheduler.kubeconfig" \
    --authentication-kubeconfig="$rig/scheduler.kubeconfig" \
    --authorization-kubeconfig="$rig/scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port=0 \
    --leader-elect=false \
    --profiling=false \
    --v=1
  start kwok \
    --kubeconfig="$rig/kwok.kubeconfig" \
    --config="$here/kwok/kwok.yaml" \
    --manage-all-nodes=false \
    --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --node-ip=127.0.0.1 \
    --node-lease-duration-seconds=40 \
    --v=INFO

  # create, not apply: a Node's status is kept on create (as a kubelet registers).
  node_manifest | kubectl_admin create -f - >&2 || { log "could not create the fake nodes"; return 1; }
  wait_for "the default ServiceAccount" "$ready_timeout" default_sa || return 1
  wait_for "$node_count Ready, untainted fake nodes" "$ready_timeout" nodes_ready || return 1
  # A last look: every component still running after the checks.
  check_alive
}

# Controllers of kube-controller-manager the rig runs. Node lifecycle watches
# the Leases kwok renews (and lifts the not-ready taint new nodes get); IPAM,
# routes, cloud and attach/detach controllers are off: fake nodes need none of
# them. The ephemeral-volume and PV binder controllers run, so runner pods
# with volume claims (containerMode kubernetes, cache volumes) bind to PVs a
# test creates and get scheduled.
kcm_controllers=$(
  IFS=,
  a=(
    garbage-collector-controller namespace-controller
    serviceaccount-controller serviceaccount-token-controller root-ca-certificate-publisher-controller
    deployment-controller replicaset-controller statefulset-controller daemonset-controller
    job-controller cronjob-controller ttl-after-finished-controller
    replicationcontroller-controller disruption-controller pod-garbage-collector-controller
    endpoints-controller endpointslice-controller endpointslice-mirroring-controller
    resourcequota-controller horizontal-pod-autoscaler-controller
    certificatesigningrequest-signing-controller certificatesigningrequest-approving-controller
    certificatesigningrequest-cleaner-controller
    node-lifecycle-controller taint-eviction-controller
    ephemeral-volume-controller persistentvolume-binder-controller
  )
  echo "${a[*]}"
)

stop_all() { # stop every component of $dir by pid, newest first
  local i c pid deadline
  for ((i = ${#components[@]} - 1; i >= 0; i--)); do
    c=${components[i]}
    if pid=$(live_pid "$c"); then
      kill -TERM "$pid" 2>/dev/null || true
      deadline=$((SECONDS + 10))
      while [[ -d /proc/$pid ]] && live_pid "$c" >/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
      if live_pid "$c" >/dev/null; then
        log "$c (pid $pid) did not stop on TERM; killing it"
        kill -KILL "$pid" 2>/dev/null || true
        while live_pid "$c" >/dev/null; do sleep 0.1; done
      fi
    fi
    rm -f "$run/$c.pid"
  done
  release_ports
  rm -f "$run/ports"
}

cmd_down() {
  set_dir "${1:-}"
  [[ -d $rig ]] || { log "nothing to stop in $dir"; return 0; }
  stop_all
  rm -rf "$rig/etcd"
  log "cluster in $dir stopped"
}

# ---------------------------------------------------------------------------
main() {
  local cmd=${1:-}
  shift || true
  case $cmd in
    build) cmd_build ;;
    bin-dir) echo "$bin_dir" ;;
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    status) cmd_status "$@" ;;
    restart-apiserver) cmd_restart_apiserver "$@" ;;
    *) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
  esac
}
# `exit` right after main: bash never reads past this line, even if the file
# is edited while a long build runs.
main "$@"
exit $?
