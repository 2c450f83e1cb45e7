#!/usr/bin/env bash
# Several "hosts" on this machine for multi-host MPI runs over a real (virtual) network:
# every host is a Linux network namespace with its own address and host name, joined to
# a bridge in the root namespace by a veth pair; MPI traffic between hosts is forced over
# TCP on those links (no shared memory between hosts).
#
#   tests/multihost/cluster.sh up 2 [--rate 1gbit]   # create hosts h1, h2 (root needed)
#   $HPCPROC_MH_DIR/mpiexec -n 4 -ppn 2 python prog.py  # 2 hosts x 2 ranks
#   tests/multihost/cluster.sh counters               # bytes through each host's link
#   tests/multihost/cluster.sh status                 # exit 0 when the hosts are up
#   tests/multihost/cluster.sh down                   # remove namespaces, links, bridge
#
# How it works: MPICH's Hydra starts its proxies through an ssh-compatible launcher; the
# generated `nslaunch HOST CMD` runs CMD inside namespace HOST with its own UTS namespace
# (so MPI_Get_processor_name and socket.gethostname differ per host) and `-localhost`
# makes the proxies connect back to the bridge address. The generated `mpiexec` wrapper
# adds those flags plus `MPIR_CVAR_CH4_NETMOD=ofi FI_PROVIDER=tcp FI_TCP_IFACE=mpi0`, so
# the ranks of different hosts talk through the veth links even though they share a
# kernel; `counters` reads the veth byte counters that prove it. `--rate` shapes both
# ends of every link with a token bucket filter (`tc ... tbf`; netem, and so added
# latency, is not available on every kernel).
#
# Environment: HPCPROC_MH_DIR (state: wrapper scripts, host list; default
# /tmp/hpcproc-multihost), HPCPROC_MH_PREFIX (namespace/link name prefix, default hpcmh),
# HPCPROC_MH_SUBNET (first three octets of the private test range, default 10.213.7),
# HPCPROC_MPIEXEC (the Hydra mpiexec to wrap; default: the one next to `python3` on PATH).
set -euo pipefail

DIR="${HPCPROC_MH_DIR:-/tmp/hpcproc-multihost}"
PREFIX="${HPCPROC_MH_PREFIX:-hpcmh}"
SUBNET="${HPCPROC_MH_SUBNET:-10.213.7}"
BRIDGE="${PREFIX}br"
BRIDGE_ADDR="$SUBNET.1"

log() { echo "cluster.sh: $*" >&2; }
die() { log "$*"; exit 1; }

hosts() { [ -s "$DIR/hosts" ] && tr ',' ' ' <"$DIR/hosts" || true; }

check_tools() {
    [ "$(id -u)" = 0 ] || die "network namespaces need root (uid $(id -u))"
    command -v ip >/dev/null || die "iproute2 (ip) is not installed"
    command -v unshare >/dev/null || die "unshare (util-linux) is not installed"
}

down() {
    local h i=0
    for h in $(hosts); do
        i=$((i + 1))
        ip netns pids "$h" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
        ip netns del "$h" 2>/dev/null || true
        ip link del "${PREFIX}v$i" 2>/dev/null || true
    done
    ip link del "$BRIDGE" 2>/dev/null || true
    rm -rf "$DIR"
}

shape() {  # shape DEV [NETNS] RATE
    local dev="$1" ns="$2" rate="$3"
    local tc=(tc)
    [ -n "$ns" ] && tc=(ip netns exec "$ns" tc)
    "${tc[@]}" qdisc replace dev "$dev" root tbf rate "$rate" burst 128kb latency 10ms \
        || die "tc tbf on $dev failed (kernel without sch_tbf?)"
}

up() {
    local n="${1:-2}" rate=""
    shift || true
    while [ $# -gt 0 ]; do
        case "$1" in
            --rate) rate="$2"; shift 2 ;;
            *) die "unknown option $1" ;;
        esac
    done
    [[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le 200 ] || die "host count must be 1..200"
    check_tools
    down
    mkdir -p "$DIR"
    ip link add "$BRIDGE" type bridge || die "cannot create a bridge (no CAP_NET_ADMIN?)"
    ip addr add "$BRIDGE_ADDR/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    local i h names=()
    for i in $(seq "$n"); do
        h="${PREFIX}$i"
        names+=("$h")
        echo "${names[*]}" | tr ' ' ',' >"$DIR/hosts"  # so that `down` cleans a partial set
        ip netns add "$h" || die "cannot create network namespace $h"
        ip link add "${PREFIX}v$i" type veth peer name mpi0 netns "$h" \
            || die "cannot create veth pair for $h"
        ip link set "${PREFIX}v$i" master "$BRIDGE" up
        ip -n "$h" addr add "$SUBNET.$((10 + i))/24" dev mpi0
        ip -n "$h" link set mpi0 up
        ip -n "$h" link set lo up
        if [ -n "$rate" ]; then
            shape "${PREFIX}v$i" "" "$rate"
            shape mpi0 "$h" "$rate"
        fi
    done
    echo "${rate:-unshaped}" >"$DIR/rate"
    write_launcher
    write_mpiexec
    for h in "${names[@]}"; do
        [[ "$(ip -n "$h" addr show mpi0)" == *"inet $SUBNET."* ]] || die "$h has no address"
    done
    log "up: hosts ${names[*]} on $BRIDGE ($BRIDGE_ADDR/24), links ${rate:-unshaped}"
    echo "HPCPROC_MH_DIR=$DIR"
}

write_launcher() {
    cat >"$DIR/nslaunch" <<'EOF'
#!/bin/sh
# ssh-compatible launcher for Hydra: nslaunch [ssh flags] HOST COMMAND...
while [ $# -gt 0 ]; do
    case "$1" in
        -[xqTnNtAaY]) shift ;;
        -[oplie]) shift 2 ;;
        *) break ;;
    esac
done
host="$1"; shift
exec ip netns exec "$host" unshare --uts sh -c "hostname $host && $*"
EOF
    chmod +x "$DIR/nslaunch"
}

write_mpiexec() {
    local mpiexec="${HPCPROC_MPIEXEC:-}"
    if [ -z "$mpiexec" ]; then
        mpiexec="$(dirname "$(command -v python3)")/mpiexec"
    fi
    [ -x "$mpiexec" ] || die "no Hydra mpiexec at $mpiexec (set HPCPROC_MPIEXEC)"
    cat >"$DIR/mpiexec" <<EOF
#!/bin/sh
# mpiexec across the namespace hosts; pass -n N -ppn K as usual.
exec "$mpiexec" -launcher ssh -launcher-exec "$DIR/nslaunch" -localhost $BRIDGE_ADDR \\
    -hosts $(cat "$DIR/hosts") \\
    -genv MPIR_CVAR_CH4_NETMOD ofi -genv FI_PROVIDER tcp -genv FI_TCP_IFACE mpi0 "\$@"
EOF
    chmod +x "$DIR/mpiexec"
}

counters() {  # host tx_bytes rx_bytes (as seen from the host's side of its link)
    local h
    for h in $(hosts); do
        echo "$h $(ip netns exec "$h" cat /sys/class/net/mpi0/statistics/tx_bytes) \
$(ip netns exec "$h" cat /sys/class/net/mpi0/statistics/rx_bytes)"
    done
}

status() {
    local h
    [ -x "$DIR/mpiexec" ] || { log "not up"; return 1; }
    for h in $(hosts); do
        ip netns exec "$h" true 2>/dev/null || { log "namespace $h missing"; return 1; }
    done
    echo "hosts $(cat "$DIR/hosts") links $(cat "$DIR/rate")"
}

case "${1:-}" in
    up) shift; up "$@" ;;
    down) down ;;
    status) status ;;
    counters) counters ;;
    *) die "usage: $0 up [N] [--rate 1gbit] | down | status | counters" ;;
esac
