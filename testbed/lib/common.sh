# shellcheck shell=bash disable=SC2034 # the variables are used by the scripts that source this
# Shared settings for testbed/{build,up,down,with-testbed}: pinned versions, the binary cache
# directory and the runtime state directory. Sourced, never executed.

# Pinned versions. The wrapper modules under testbed/gomod/ pin the full dependency graph; these
# names only select what `testbed/build --repin` asks for and name the cache directory.
K8S_VERSION=v1.36.3
ETCD_VERSION=v3.6.16
HELM3_VERSION=v3.22.0
HELM4_VERSION=v4.3.1
KWOK_VERSION=v0.8.0
COREDNS_VERSION=v1.14.7

TESTBED_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GOMOD_DIR="$TESTBED_DIR/gomod"

# Built binaries live outside the repository so that CI on the same machine reuses them.
CACHE_ROOT=${TESTBED_CACHE_ROOT:-/var/cache/k8s-testbed}
# Runtime state of a running testbed (certificates, kubeconfigs, logs, PIDs). etcd data lives on
# tmpfs under /dev/shm instead (see up).
STATE_DIR=${TESTBED_STATE_DIR:-/var/lib/k8s-testbed}
ETCD_DATA_DIR=/dev/shm/k8s-testbed-etcd

# Loopback ports; fixed so that a leftover of an earlier run is found and cleaned by `down`.
ETCD_CLIENT_PORT=23790
ETCD_PEER_PORT=23800
APISERVER_PORT=16443
KCM_PORT=16257
SCHEDULER_PORT=16259
KWOK_PORT=16080

# Service and pod CIDRs: clear of eth0's 192.0.2.0/24 and of the resolver 10.255.255.53
# (TESTBED.md §10.18). Nothing in tier a/b routes to them (no kube-proxy, no CNI): kwok only
# writes pod IPs into status, so no packet is ever sent to these ranges.
SERVICE_CIDR=10.96.0.0/16
POD_CIDR=10.244.0.0/16
KWOK_NODE_POD_CIDR=10.244.0.0/24
KWOK_NODE_NAME=kwok-node-0

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# go_version prints the Go toolchain version (e.g. go1.26.8); it is part of the cache key
# because a different compiler produces different binaries.
go_version() { GOTOOLCHAIN=local go env GOVERSION; }

# pins_hash prints a short hash of every committed wrapper go.mod/go.sum/tools.go, so that any
# change of pins gives a new cache directory instead of stale binaries.
pins_hash() {
    (cd "$GOMOD_DIR" && find . -type f \( -name go.mod -o -name go.sum -o -name tools.go \) -print0 \
        | LC_ALL=C sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-10
}

# bin_dir prints the versioned cache directory for the current pins and Go toolchain.
cache_key_dir() {
    printf '%s/k8s-%s-etcd-%s-helm-%s-%s-kwok-%s-coredns-%s-%s-%s' "$CACHE_ROOT" "$K8S_VERSION" "$ETCD_VERSION" \
        "$HELM3_VERSION" "$HELM4_VERSION" "$KWOK_VERSION" "$COREDNS_VERSION" "$(go_version)" "$(pins_hash)"
}
