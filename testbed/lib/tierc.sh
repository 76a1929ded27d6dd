# shellcheck shell=bash disable=SC2034 # the variables are used by the scripts that source this
# Tier c (a real single node: containerd, CNI, kubelet, kube-proxy, CoreDNS), shared by
# testbed/{up,down,import-images,check-tier-c}. Sourced after lib/common.sh, never executed.
# Background: TESTBED.md §6; what differs from it is said where it happens.

# Network plan (TESTBED.md §6.4). The node's address is the gateway of the pod subnet on our own
# bridge cni0, made by testbed/up before anything starts: the API server, the kubelet and
# NodePorts listen there, pods reach it through the bridge, and the host reaches it as a local
# address. Nothing listens on eth0 and nothing routes the two CIDRs to it.
NODE_NAME=k8s-testbed-node
NODE_POD_CIDR=10.244.0.0/24
NODE_IP=10.244.0.1
CNI_BRIDGE=cni0
SVC_SINK=kube-svc0
KUBERNETES_SVC_IP=10.96.0.1
CLUSTER_DNS_IP=10.96.0.10
CLUSTER_DOMAIN=cluster.local
UPLINK=eth0

# Ports of the node's components (fixed, like the control plane's, so leftovers are found).
KUBELET_PORT=16250
KUBELET_HEALTHZ_PORT=16248
KUBE_PROXY_HEALTHZ_PORT=16256
KUBE_PROXY_METRICS_PORT=16249

# containerd: our own config, root, state and socket, so that it never meets another containerd
# on the machine. Its content store lives under the state directory: `down` removes every image,
# `up` imports the testbed's own again (TESTBED.md §6.3: re-import at every start).
RUN_DIR=${TESTBED_RUN_DIR:-/run/k8s-testbed}
CONTAINERD_DIR=$STATE_DIR/containerd
CONTAINERD_CONFIG=$CONTAINERD_DIR/config.toml
CONTAINERD_ROOT=$CONTAINERD_DIR/root
CONTAINERD_STATE=$RUN_DIR/containerd
CONTAINERD_SOCK=$CONTAINERD_STATE/containerd.sock
KUBELET_ROOT=$STATE_DIR/kubelet
CNI_CONF_DIR=$STATE_DIR/cni/net.d
CNI_IPAM_DIR=$STATE_DIR/cni/networks
CNI_NETWORK=k8s-testbed-pods
# libcni keeps a result cache here whatever the runtime's config says (containerd 1.6 has no
# setting for it); down removes our network's entries.
CNI_CACHE_DIR=/var/lib/cni
CNI_BIN_DIR=/usr/lib/cni

# Images made locally (scripts/lib/oci_image.py, the writer scripts/images uses too), imported at every `up`. The pause image must carry the
# exact name of containerd's sandbox_image (kubelet >= 1.35 has no --pod-infra-container-image).
SANDBOX_IMAGE=registry.k8s.io/pause:3.10
COREDNS_IMAGE=localhost/k8s-testbed/coredns:$COREDNS_VERSION
BUSYBOX_IMAGE=localhost/k8s-testbed/busybox:1.35.0
IMAGE_CACHE_DIR=$CACHE_ROOT/tierc-images
# The one image writer of the repository (also behind scripts/images).
OCI_IMAGE=$TESTBED_DIR/../scripts/lib/oci_image.py

# Comment carried by every iptables rule of the egress guard (also tier a/b's).
GUARD_COMMENT=k8s-testbed

# Debian packages of the node (TESTBED.md §6.1).
TIERC_PACKAGES=(containerd runc containernetworking-plugins busybox-static iptables conntrack)

# Sysctls the node changes (we, the bridge plugin, the kubelet); up saves their old values and
# down puts them back.
TIERC_SYSCTLS=(net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables fs.inotify.max_user_instances
    vm.overcommit_memory vm.panic_on_oom
    kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes)

# ctr_k8s ARGS...: ctr against the testbed's containerd, in the CRI namespace k8s.io.
ctr_k8s() { ctr --address "$CONTAINERD_SOCK" --namespace k8s.io "$@"; }

# containerd_alive: true when our containerd answers on its socket.
containerd_alive() { [[ -S $CONTAINERD_SOCK ]] && timeout 5 ctr --address "$CONTAINERD_SOCK" version >/dev/null 2>&1; }

# install_tierc_packages: apt-get the node's Debian packages when one is missing (a fresh
# machine may have no package lists yet: update once and retry).
install_tierc_packages() {
    local missing=() p
    for p in "${TIERC_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep 'install ok installed' >/dev/null || missing+=("$p")
    done
    ((${#missing[@]})) || return 0
    log "installing ${missing[*]} (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2 ||
        { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2; } ||
        die "could not install ${missing[*]}; run: apt-get update && apt-get install -y ${missing[*]}"
}

# build_images BIN: makes the archives of the pause, CoreDNS and busybox images (unless the cache
# has them for exactly these inputs) and prints their paths, one a line.
build_images() {
    local bin=$1 key dir work a
    command -v gcc >/dev/null || die "gcc not found (it builds the pause image); install it with: apt-get install -y gcc libc6-dev"
    # Key: every input that changes an image. Binaries by size and mtime (hashing 60 MB of
    # CoreDNS at every start would cost more than the cache saves).
    key=$({
        cat "$TESTBED_DIR/images/pause.c" "$OCI_IMAGE" "$TESTBED_DIR/lib/tierc.sh"
        stat -c '%n %s %Y' "$bin/coredns" /bin/busybox
        gcc --version | head -1
    } | sha256sum | cut -c1-12)
    dir=$IMAGE_CACHE_DIR/$key
    if [[ ! -f $dir/done ]]; then
        log "building the node's images (pause, coredns, busybox) into $dir"
        rm -rf "$IMAGE_CACHE_DIR"
        mkdir -p "$dir"
        work=$(mktemp -d)
        # pause: the static C pause of testbed/images/pause.c, as PID 1 of every sandbox.
        mkdir -p "$work/pause"
        gcc -Os -static -s -Wall -Wextra -Werror -o "$work/pause/pause" "$TESTBED_DIR/images/pause.c"
        python3 "$OCI_IMAGE" build --rootfs "$work/pause" --ref "$SANDBOX_IMAGE" --out "$dir/pause.tar" --entrypoint '["/pause"]' >/dev/null
        # CoreDNS: the static binary of testbed/build; its Corefile comes from a ConfigMap.
        mkdir -p "$work/coredns/etc/coredns" "$work/coredns/tmp"
        cp "$bin/coredns" "$work/coredns/coredns"
        python3 "$OCI_IMAGE" build --rootfs "$work/coredns" --ref "$COREDNS_IMAGE" --out "$dir/coredns.tar" \
            --entrypoint '["/coredns"]' --cmd '["-conf","/etc/coredns/Corefile"]' >/dev/null
        # busybox: Debian's busybox-static with one symlink per applet, for tests and the
        # self-check (sh, httpd, nc, wget, nslookup, ...).
        mkdir -p "$work/busybox/bin" "$work/busybox/etc" "$work/busybox/tmp" "$work/busybox/root"
        chmod 1777 "$work/busybox/tmp"
        cp /bin/busybox "$work/busybox/bin/busybox"
        for a in $(/bin/busybox --list); do
            [[ $a == busybox ]] || ln -s busybox "$work/busybox/bin/$a"
        done
        printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$work/busybox/etc/passwd"
        printf 'root:x:0:\nnobody:x:65534:\n' >"$work/busybox/etc/group"
        printf 'hosts: files dns\n' >"$work/busybox/etc/nsswitch.conf"
        python3 "$OCI_IMAGE" build --rootfs "$work/busybox" --ref "$BUSYBOX_IMAGE" --out "$dir/busybox.tar" --entrypoint '["/bin/sh"]' >/dev/null
        rm -rf "$work"
        touch "$dir/done"
    fi
    for a in pause coredns busybox; do printf '%s\n' "$dir/$a.tar"; done
}

# ---------------------------------------------------------------------------------------------
# Teardown (TESTBED.md §6.10), used by testbed/down. Every step is a no-op when its object is
# absent, so down stays fast for tiers a/b and cleans the leftovers of a crashed tier c run
# even when the state directory is gone. `say` comes from down.

# exe_of PID: the binary PID runs (empty when the process is gone).
exe_of() { readlink "/proc/$1/exe" 2>/dev/null || true; }

# our_shims: PIDs of containerd-shim-runc-v2 processes serving our containerd (their command line
# names our socket), e.g. after containerd itself was killed.
our_shims() {
    local exe pid cmd
    # find matches the exe links without a fork per process.
    while read -r exe; do
        pid=${exe#/proc/}
        pid=${pid%/exe}
        cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || continue
        [[ $cmd == *"-address $CONTAINERD_SOCK "* ]] && printf '%s\n' "$pid"
    done < <(find /proc -mindepth 2 -maxdepth 2 -name exe -lname '*/containerd-shim*' 2>/dev/null)
    return 0
}

# cgroup_mounts: every mounted cgroup hierarchy (v1 ones and the v2 one).
cgroup_mounts() { awk '$3 == "cgroup" || $3 == "cgroup2" {print $2}' /proc/mounts; }

# kill_kubepods: SIGKILL every process left in a kubepods cgroup (pod processes whose shim or
# runtime is gone); they were started by our kubelet, nothing else lives there.
kill_kubepods() {
    local m n=0 pid
    for m in $(cgroup_mounts); do
        [[ -d $m/kubepods ]] || continue
        while read -r pid; do
            [[ -n $pid ]] || continue
            kill -KILL "$pid" 2>/dev/null && n=$((n + 1))
        done < <(find "$m/kubepods" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u)
    done
    ((n == 0)) || say "killed $n leftover pod processes"
}

# remove_kubepods_cgroups: rmdir the kubepods trees depth-first in every hierarchy (a cgroup can
# only be removed once it has no children and no processes).
remove_kubepods_cgroups() {
    local m try left
    for ((try = 0; try < 50; try++)); do
        left=0
        for m in $(cgroup_mounts); do
            [[ -d $m/kubepods ]] || continue
            find "$m/kubepods" -depth -type d -exec rmdir {} + 2>/dev/null || true
            [[ -d $m/kubepods ]] && left=1
        done
        ((left)) || return 0
        kill_kubepods
        sleep 0.1
    done
    say "warning: kubepods cgroups still present: $(for m in $(cgroup_mounts); do [[ -d $m/kubepods ]] && printf '%s ' "$m/kubepods"; done)"
    return 1
}

# mounts_under DIR...: mount points at or below the DIRs, deepest first.
mounts_under() {
    local d
    for d in "$@"; do
        findmnt -rn -o TARGET | awk -v d="$d" '$0 == d || index($0, d "/") == 1'
    done | sort -ru
}

# unmount_under DIR...: unmount everything at or below the DIRs (container rootfs overlays,
# sandbox shm, netns bind mounts, kubelet volumes); fails when something stays mounted, because
# an `rm -rf` through a bind mount would delete the files it shows.
unmount_under() {
    local m try
    for ((try = 0; try < 3; try++)); do
        while read -r m; do
            [[ -n $m ]] || continue
            umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
        done < <(mounts_under "$@")
        [[ -z $(mounts_under "$@") ]] && return 0
    done
    say "still mounted: $(mounts_under "$@" | tr '\n' ' ')"
    return 1
}

# workloads_down: every container and sandbox of namespace k8s.io goes, then containerd (by
# PIDFILE's PID, checked against our config), then what a crash could leave behind.
workloads_down() {
    local pidfile=$1 id pid i
    if command -v ctr >/dev/null && containerd_alive; then
        mapfile -t ids < <(ctr_k8s tasks ls -q 2>/dev/null)
        if ((${#ids[@]})); then
            say "killing ${#ids[@]} containerd tasks"
            for id in "${ids[@]}"; do ctr_k8s tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true; done
            for id in "${ids[@]}"; do
                for ((i = 0; i < 50; i++)); do
                    ctr_k8s tasks delete "$id" >/dev/null 2>&1 && break
                    ctr_k8s tasks ls -q 2>/dev/null | grep -x "$id" >/dev/null || break
                    sleep 0.1
                done
            done
        fi
        mapfile -t ids < <(ctr_k8s containers ls -q 2>/dev/null)
        if ((${#ids[@]})); then
            say "removing ${#ids[@]} containers"
            ctr_k8s containers delete "${ids[@]}" >/dev/null 2>&1 || true
        fi
    fi
    if [[ -f $pidfile ]]; then
        pid=$(cat "$pidfile")
        stop "$pid" containerd our_containerd
    fi
    # Leftover containerd on our socket (PID file lost).
    if [[ -S $CONTAINERD_SOCK ]]; then
        for pid in $(ss -Hxlp src "$CONTAINERD_SOCK" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u); do
            stop "$pid" "leftover containerd" our_containerd
        done
    fi
    kill_kubepods
    for pid in $(our_shims); do
        say "killing leftover containerd shim (pid $pid)"
        kill -KILL "$pid" 2>/dev/null || true
    done
}

# our_containerd PID: true if PID is a containerd started with our config file.
our_containerd() {
    [[ $(exe_of "$1") == */containerd ]] || return 1
    tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -F -- "--config $CONTAINERD_CONFIG" >/dev/null
}

# network_down: netns, links, iptables chains and rules, IPAM state, conntrack entries.
network_down() {
    local link t ipt chain rule rules chains jumps
    # Pod network namespaces: containerd keeps them under its state dir
    # (netns_mounts_under_state_dir); unmount_under removes them with the rest. Host ends of veth
    # pairs still attached to our bridge (their netns held by a stuck process) go explicitly.
    if [[ -d /sys/class/net/$CNI_BRIDGE ]]; then
        for link in "/sys/class/net/$CNI_BRIDGE/brif"/*; do
            [[ -e $link ]] || continue
            ip link del "${link##*/}" 2>/dev/null || true
        done
    fi
    for link in "$CNI_BRIDGE" "$SVC_SINK"; do
        if [[ -d /sys/class/net/$link ]]; then
            ip link del "$link" && say "removed link $link"
        fi
    done
    # libcni's result cache: our network's entries, and the loopback entries of the same
    # sandboxes (containerd names its loopback network cni-loopback); others' stay.
    local f id
    for f in "$CNI_CACHE_DIR/results/$CNI_NETWORK"-*; do
        [[ -e $f ]] || continue
        id=${f#"$CNI_CACHE_DIR/results/$CNI_NETWORK"-}
        id=${id%-*}
        rm -f "$f" "$CNI_CACHE_DIR/results/cni-loopback-$id-lo"
    done
    rm -rf "$CNI_CACHE_DIR/networks/$CNI_NETWORK"
    for ipt in iptables ip6tables; do
        command -v "$ipt" >/dev/null || continue
        for t in filter nat mangle; do
            rules=$("$ipt" -w -t "$t" -S 2>/dev/null) || continue
            grep -qE -- "KUBE-|CNI-|--comment \"?$GUARD_COMMENT\"? " <<<"$rules" || continue
            # Every rule of a built-in chain that jumps to a KUBE-*/CNI-* chain or carries our
            # comment, then the (then unreferenced) KUBE-*/CNI-* chains. `iptables -S` prints
            # rules as "-A CHAIN ..." with iptables-restore's quoting, so one restore per table
            # does it all: ":CHAIN" flushes a chain, "-D ..." deletes a rule, "-X" the chain
            # (one call instead of one per rule and chain: kube-proxy makes dozens).
            jumps=$(grep -E -- "-j (KUBE-|CNI-)|--comment \"?$GUARD_COMMENT\"? " <<<"$rules" | grep -vE '^-A (KUBE-|CNI-)' || true)
            chains=$(awk '$1 == "-N" && $2 ~ /^(KUBE-|CNI-)/ {print $2}' <<<"$rules")
            if ! {
                printf '*%s\n' "$t"
                for chain in $chains; do printf ':%s - [0:0]\n' "$chain"; done
                if [[ -n $jumps ]]; then
                    while read -r rule; do printf -- '-D %s\n' "${rule#-A }"; done <<<"$jumps"
                fi
                for chain in $chains; do printf -- '-X %s\n' "$chain"; done
                printf 'COMMIT\n'
            } | "$ipt-restore" -w --noflush 2>/dev/null; then
                say "warning: $ipt-restore could not remove the KUBE-*/CNI-* chains or guard rules of table $t; left: $("$ipt" -w -t "$t" -S | grep -cE -- "KUBE-|CNI-|$GUARD_COMMENT") rules"
                continue
            fi
            while read -r rule; do
                if [[ $rule == *"$GUARD_COMMENT"* ]]; then say "removed $ipt -t $t rule: $rule"; fi
            done <<<"$jumps"
            if [[ -n $chains ]]; then say "removed $(wc -w <<<"$chains") KUBE-*/CNI-* chains of $ipt -t $t"; fi
        done
    done
    # Stale conntrack entries would send a new run's DNS (UDP to 10.96.0.10) to an old pod IP.
    if command -v conntrack >/dev/null; then
        conntrack -D -d "${SERVICE_CIDR%/*}" --mask-dst 255.255.0.0 >/dev/null 2>&1 || true
        conntrack -D -s "${POD_CIDR%/*}" --mask-src 255.255.0.0 >/dev/null 2>&1 || true
        conntrack -D -d "${POD_CIDR%/*}" --mask-dst 255.255.0.0 >/dev/null 2>&1 || true
    fi
}

# restore_sysctls FILE: puts back the values up saved ("key value" lines).
restore_sysctls() {
    local k v
    [[ -f $1 ]] || return 0
    while read -r k v; do
        [[ -n $k ]] || continue
        sysctl -qw "$k=$v" >/dev/null 2>&1 || say "warning: could not restore $k=$v"
    done <"$1"
}
