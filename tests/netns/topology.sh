#!/usr/bin/env bash
# Isolated multicast test topology built from Linux network namespaces.
#
#   topology.sh up PREFIX N     create PREFIX-hub (bridge br0) + PREFIX-n0..n{N-1}
#   topology.sh routed PREFIX NA NB NC
#                               three subnets a, b, c (a bridge each) joined by a
#                               router namespace PREFIX-r running smcroute (static
#                               multicast routes, see routed_conf); nodes
#                               PREFIX-n0.. (NA on a, then NB on b, NC on c)
#   topology.sh down PREFIX     delete every namespace named PREFIX-*
#   topology.sh list PREFIX     print the node lines of an existing topology
#   topology.sh selftest        build a 3-node topology, check multicast/unicast, tear down
#
# Needs root (or CAP_NET_ADMIN + CAP_SYS_ADMIN), iproute2 (ip, bridge).
#
# Safety: nothing here touches an interface of the namespace the script is run
# from.  Every link is created *inside* a namespace we created: the veth pair is
# created in PREFIX-hub with its peer placed directly into PREFIX-n<i>, and the
# bridge lives in PREFIX-hub.  The hub has no addresses and IPv6 disabled; it is
# a pure L2 switch.  Node interfaces are called ssm0 (never eth0).
#
# stdout of `up` / `list`: one line per node,
#   node <index> <netns> <ifname> <ifindex> <ipv4> <ipv6-linklocal> <ipv6-ula>
# e.g.
#   node 0 ssm123-n0 ssm0 2 10.158.0.1 fe80::58:ff:fe00:1 fd58::1
# Addresses are printed without prefix length (IPv4 is /24, IPv6 ULA /64).
# `routed` appends the subnet letter as a ninth field (a node of subnet a:
#   node 0 ssm123-n0 ssm0 2 10.0.1.2 fe80::58:ff:fe00:1 fd00:a::2 a)
# and prints one "router <netns> <conf>" line after the nodes.
# Everything else goes to stderr.

set -u -o pipefail

readonly IFNAME=ssm0
readonly BRIDGE=br0
readonly MAX_NODES=200
readonly WAIT_TIMEOUT_S=${SSM_NETNS_WAIT_TIMEOUT:-10} # seconds, integer
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SELF="$SCRIPT_DIR/$(basename "${BASH_SOURCE[0]}")"
readonly SCRIPT_DIR SELF

log() { printf 'topology: %s\n' "$*" >&2; }
die() { printf 'topology: error: %s\n' "$*" >&2; exit 1; }

usage() {
    cat >&2 <<'EOF'
usage:
  topology.sh up PREFIX N    create PREFIX-hub (bridge br0, snooping off) and
                             N node namespaces PREFIX-n0..PREFIX-n{N-1}; prints
                             "node <index> <netns> <ifname> <ifindex> <ipv4>
                             <ipv6-linklocal> <ipv6-ula>" per node on stdout
  topology.sh routed PREFIX NA NB NC
                             subnets a, b, c (10.0.1-3.0/24, fd00:a-c::/64; a
                             bridge each, snooping off) joined by the router
                             namespace PREFIX-r (forwarding on, smcroute with
                             static (*,G) routes for ff05::158 and 224.0.1.187
                             between all three); node lines as for `up` plus
                             the subnet letter, then "router <netns> <conf>"
  topology.sh down PREFIX    stop PREFIX's smcroute (by its pid file), delete
                             every namespace named PREFIX-* (missing ok)
  topology.sh list PREFIX    print the node lines of an existing topology
  topology.sh selftest       create a 3-node topology with a unique prefix,
                             run check_multicast.py inside it, tear it down
PREFIX: [a-z0-9]{1,10}   N: 1..200
EOF
}

validate_prefix() {
    [[ ${1-} =~ ^[a-z0-9]{1,10}$ ]] || die "invalid PREFIX '${1-}': must match [a-z0-9]{1,10}"
}

require_tools() {
    local t
    for t in ip bridge timeout; do
        command -v "$t" >/dev/null 2>&1 || die "required tool '$t' not found"
    done
    [[ $(id -u) -eq 0 ]] || die "must run as root (network namespaces)"
}

# All namespace names PREFIX-* that currently exist (one per line).
list_ns() {
    local prefix=$1 name
    ip netns list 2>/dev/null | while read -r name _; do
        [[ $name == "$prefix"-* ]] && printf '%s\n' "$name"
    done
}

# Node namespaces PREFIX-n<digits>, sorted by index.
list_node_ns() {
    local prefix=$1
    list_ns "$prefix" | grep -E "^${prefix}-n[0-9]+\$" | sort -V
}

# Where a routed topology keeps its smcroute config, pid file, socket, log.
router_dir() { printf '%s/ssm-topology-%s' "${TMPDIR:-/tmp}" "$1"; }

# Stops the smcroute of a routed topology by the pid it recorded.
stop_router() {
    local dir pid i
    dir=$(router_dir "$1")
    [[ -f $dir/smcrouted.pid ]] || { rm -rf "$dir"; return 0; }
    pid=$(<"$dir/smcrouted.pid")
    if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null
        for ((i = 0; i < 100; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.02
        done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
    fi
    rm -rf "$dir"
}

do_down() {
    local prefix=$1 ns pids rc=0
    local -a all
    stop_router "$prefix"
    mapfile -t all < <(list_ns "$prefix")
    for ns in "${all[@]}"; do
        [[ -n $ns ]] || continue
        pids=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')
        [[ -z $pids ]] || log "warning: processes still running in $ns (pids: $pids); the namespace stays alive until they exit"
        if ! ip netns delete "$ns" 2>/dev/null; then
            # raced with someone else deleting it?  only an error if it is still there
            if ip netns list | awk '{print $1}' | grep -qxF "$ns"; then
                log "failed to delete namespace $ns"
                rc=1
            fi
        fi
    done
    [[ ${#all[@]} -eq 0 ]] || log "deleted ${#all[@]} namespace(s) ${prefix}-*"
    return $rc
}

# Print the node line for one node namespace; fails if it is not complete.
node_line() {
    local idx=$1 ns=$2 ifindex v4 ll ula
    ifindex=$(ip -n "$ns" -o link show dev "$IFNAME" 2>/dev/null | awk -F: 'NR==1{print $1}')
    v4=$(ip -n "$ns" -o -4 addr show dev "$IFNAME" 2>/dev/null | awk '{split($4,a,"/"); print a[1]; exit}')
    ll=$(ip -n "$ns" -o -6 addr show dev "$IFNAME" scope link 2>/dev/null | awk '!/tentative/{split($4,a,"/"); print a[1]; exit}')
    ula=$(ip -n "$ns" -o -6 addr show dev "$IFNAME" scope global 2>/dev/null | awk '!/tentative/{split($4,a,"/"); print a[1]; exit}')
    [[ -n $ifindex && -n $v4 && -n $ll && -n $ula ]] || return 1
    printf 'node %s %s %s %s %s %s %s\n' "$idx" "$ns" "$IFNAME" "$ifindex" "$v4" "$ll" "$ula"
}

do_list() {
    local prefix=$1 ns idx rc=0
    local -a nodes
    mapfile -t nodes < <(list_node_ns "$prefix")
    if ip netns list | awk '{print $1}' | grep -qxF "${prefix}-hub"; then
        log "hub ${prefix}-hub present"
    else
        log "hub ${prefix}-hub missing"
        rc=1
    fi
    for ns in "${nodes[@]}"; do
        [[ -n $ns ]] || continue
        idx=${ns##*-n}
        node_line "$idx" "$ns" || { log "node $ns incomplete"; rc=1; }
    done
    [[ ${#nodes[@]} -gt 0 ]] || { log "no node namespaces ${prefix}-n*"; rc=1; }
    return $rc
}

# Run `ip` in a namespace; on failure report the command.
nip() {
    local ns=$1; shift
    local out
    if ! out=$(ip -n "$ns" "$@" 2>&1); then
        log "ip -n $ns $* failed: $out"
        return 1
    fi
}

nsysctl() {
    local ns=$1; shift
    local out
    if ! out=$(ip netns exec "$ns" sysctl -q -w "$@" 2>&1); then
        log "sysctl in $ns ($*) failed: $out"
        return 1
    fi
}

build() {
    local prefix=$1 n=$2 hub="$1-hub" i ns hubif mac
    ip netns add "$hub" || { log "cannot create namespace $hub"; return 1; }
    # The hub is a pure L2 switch: no IPv6 (so no link-local, DAD or MLD from it).
    nsysctl "$hub" net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 || return 1
    nip "$hub" link set lo up || return 1
    nip "$hub" link add "$BRIDGE" type bridge mcast_snooping 0 stp_state 0 forward_delay 0 || return 1
    nip "$hub" link set "$BRIDGE" up || return 1

    for ((i = 0; i < n; i++)); do
        ns="$prefix-n$i"
        hubif="v$prefix$i"
        # deterministic, locally administered unicast MAC -> deterministic link-local
        printf -v mac '02:58:00:00:%02x:%02x' $(((i + 1) >> 8)) $(((i + 1) & 255))
        ip netns add "$ns" || { log "cannot create namespace $ns"; return 1; }
        # DAD off before any interface exists or goes up: addresses are usable at once.
        nsysctl "$ns" net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 \
            net.ipv6.conf.all.dad_transmits=0 net.ipv6.conf.default.dad_transmits=0 \
            net.ipv6.conf.default.accept_ra=0 net.ipv6.conf.all.accept_ra=0 || return 1
        nip "$ns" link set lo up || return 1
        # veth created inside the hub, peer goes straight into the node namespace
        nip "$hub" link add "$hubif" type veth peer name "$IFNAME" netns "$ns" || return 1
        nip "$hub" link set "$hubif" master "$BRIDGE" || return 1
        nip "$hub" link set "$hubif" up || return 1
        nsysctl "$ns" "net.ipv6.conf.$IFNAME.accept_dad=0" "net.ipv6.conf.$IFNAME.dad_transmits=0" || return 1
        nip "$ns" link set "$IFNAME" address "$mac" multicast on || return 1
        nip "$ns" addr add "10.158.0.$((i + 1))/24" dev "$IFNAME" || return 1
        nip "$ns" addr add "fd58::$(printf %x $((i + 1)))/64" dev "$IFNAME" nodad || return 1
        nip "$ns" link set "$IFNAME" up || return 1
        # Multicast routes (measured with check_multicast.py, kernel 6.18):
        # IPv4: with IP_MULTICAST_IF set, 224.0.1.187 is sent without any route;
        #   a socket that does not set it gets ENETUNREACH (no default route in
        #   the namespace) unless 224.0.0.0/4 is routed -> add it.
        nip "$ns" route add 224.0.0.0/4 dev "$IFNAME" || return 1
        # IPv6: ff02::/ff05:: sends need SOME ff00::/8 route even with
        #   IPV6_MULTICAST_IF set (ENETUNREACH without).  The kernel installs
        #   "multicast ff00::/8 dev ssm0 table local" itself on link up; the copy
        #   in main is belt and braces (it alone is also sufficient).
        nip "$ns" -6 route add ff00::/8 dev "$IFNAME" table main || return 1
    done
}

# Bounded wait until every node has carrier, a usable (non-tentative) link-local
# address and its bridge port is forwarding.
wait_ready() {
    local prefix=$1 n=$2 hub="$1-hub" deadline i ns hubif pending
    deadline=$((${EPOCHREALTIME/[.,]/} + WAIT_TIMEOUT_S * 1000000))
    while :; do
        pending=""
        for ((i = 0; i < n; i++)); do
            ns="$prefix-n$i"
            hubif="v$prefix$i"
            if ! ip -n "$ns" -o link show dev "$IFNAME" 2>/dev/null | grep -q 'state UP'; then
                pending+=" $ns:carrier"; continue
            fi
            if ! ip -n "$ns" -o -6 addr show dev "$IFNAME" scope link 2>/dev/null | grep -v tentative | grep -q fe80::; then
                pending+=" $ns:linklocal"; continue
            fi
            if ! bridge -n "$hub" link show dev "$hubif" 2>/dev/null | grep -q 'state forwarding'; then
                pending+=" $hubif:port"; continue
            fi
        done
        [[ -z $pending ]] && return 0
        if ((${EPOCHREALTIME/[.,]/} >= deadline)); then
            log "timeout after ${WAIT_TIMEOUT_S}s waiting for:$pending"
            return 1
        fi
        sleep 0.05
    done
}

do_up() {
    local prefix=$1 n=$2 i out
    if ! [[ $n =~ ^[0-9]{1,4}$ ]] || ((10#$n < 1 || 10#$n > MAX_NODES)); then
        die "invalid N '$n': must be 1..$MAX_NODES"
    fi
    n=$((10#$n))
    local existing
    existing=$(list_ns "$prefix")
    if [[ -n $existing ]]; then
        log "removing existing namespaces for prefix $prefix"
        do_down "$prefix" || die "could not remove existing ${prefix}-* namespaces"
    fi
    local t0=${EPOCHREALTIME/[.,]/}
    # On any failure or interruption, remove whatever we created.
    trap 'log "interrupted; cleaning up"; do_down "$prefix" >/dev/null 2>&1; exit 130' INT TERM
    if ! build "$prefix" "$n" || ! wait_ready "$prefix" "$n"; then
        log "failed to bring up topology $prefix; cleaning up"
        do_down "$prefix"
        trap - INT TERM
        exit 1
    fi
    out=""
    for ((i = 0; i < n; i++)); do
        local line
        if ! line=$(node_line "$i" "$prefix-n$i"); then
            log "node $prefix-n$i incomplete after bring-up; cleaning up"
            do_down "$prefix"
            exit 1
        fi
        out+="$line"$'\n'
    done
    trap - INT TERM
    printf '%s' "$out"
    local ms=$(((${EPOCHREALTIME/[.,]/} - t0) / 1000))
    log "topology $prefix up: hub + $n node(s) in ${ms} ms"
}

# --- routed: three subnets and a multicast router ---------------------------
readonly SUBNETS=(a b c)

# The smcroute configuration of the router (the tested configuration that
# README.md quotes): static (*,G) routes for the SSM groups from every subnet
# to the two others. The router joins nothing: the routes are static, and
# the subnet bridges do not snoop, so no MLD/IGMP report is needed to reach
# it.
routed_conf() {
    cat <<'EOF'
# smcroute.conf: SSM across three routed subnets (a, b, c).
# Interfaces of the router, one per subnet; smcrouted runs with -N, so only
# these become multicast VIFs/MIFs. ttl-threshold 1: forward anything with
# a hop limit/TTL left (the sender sets it: ssm client --hops 4).
phyint ra enable ttl-threshold 1
phyint rb enable ttl-threshold 1
phyint rc enable ttl-threshold 1
# OCF All Nodes, site scope (ff05::158) and All CoAP Nodes IPv4 (224.0.1.187)
# from any source (*,G) on one subnet to the other two. The kernel asks
# smcrouted about a new source's first datagram and forwards it once the
# (S,G) entry is in; a fixed sender may get its own line instead:
#   mroute from ra source fd00:a::3 group ff05::158 to rb rc
mroute from ra group ff05::158 to rb rc
mroute from rb group ff05::158 to ra rc
mroute from rc group ff05::158 to ra rb
mroute from ra group 224.0.1.187 to rb rc
mroute from rb group 224.0.1.187 to ra rc
mroute from rc group 224.0.1.187 to ra rb
EOF
}

# One node: namespace PREFIX-n<i> on subnet s (number k = 1, 2, 3), host h.
build_routed_node() {
    local prefix=$1 i=$2 k=$3 h=$4 s=$5 ns hub hubif mac
    ns="$prefix-n$i"; hub="$prefix-h$s"; hubif="v$prefix$i"
    printf -v mac '02:58:00:00:%02x:%02x' $(((i + 1) >> 8)) $(((i + 1) & 255))
    ip netns add "$ns" || { log "cannot create namespace $ns"; return 1; }
    nsysctl "$ns" net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 \
        net.ipv6.conf.all.dad_transmits=0 net.ipv6.conf.default.dad_transmits=0 \
        net.ipv6.conf.default.accept_ra=0 net.ipv6.conf.all.accept_ra=0 || return 1
    nip "$ns" link set lo up || return 1
    nip "$hub" link add "$hubif" type veth peer name "$IFNAME" netns "$ns" || return 1
    nip "$hub" link set "$hubif" master "$BRIDGE" || return 1
    nip "$hub" link set "$hubif" up || return 1
    nsysctl "$ns" "net.ipv6.conf.$IFNAME.accept_dad=0" "net.ipv6.conf.$IFNAME.dad_transmits=0" || return 1
    nip "$ns" link set "$IFNAME" address "$mac" multicast on || return 1
    nip "$ns" addr add "10.0.$k.$h/24" dev "$IFNAME" || return 1
    nip "$ns" addr add "fd00:$s::$(printf %x "$h")/64" dev "$IFNAME" nodad || return 1
    nip "$ns" link set "$IFNAME" up || return 1
    # Unicast to the other subnets through the router; multicast sends as
    # in `up` (the sender pins the interface and sets the hop limit).
    nip "$ns" route add default via "10.0.$k.1" dev "$IFNAME" || return 1
    nip "$ns" -6 route add default via "fd00:$s::1" dev "$IFNAME" || return 1
    nip "$ns" route add 224.0.0.0/4 dev "$IFNAME" || return 1
    nip "$ns" -6 route add ff00::/8 dev "$IFNAME" table main || return 1
}

build_routed() {
    local prefix=$1 r="$1-r" k s hub i=0 j
    shift
    ip netns add "$r" || { log "cannot create namespace $r"; return 1; }
    nsysctl "$r" net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 \
        net.ipv6.conf.all.dad_transmits=0 net.ipv6.conf.default.dad_transmits=0 \
        net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 \
        net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 || return 1
    nip "$r" link set lo up || return 1
    for k in 1 2 3; do
        s=${SUBNETS[k - 1]}; hub="$prefix-h$s"
        ip netns add "$hub" || { log "cannot create namespace $hub"; return 1; }
        nsysctl "$hub" net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 || return 1
        nip "$hub" link set lo up || return 1
        nip "$hub" link add "$BRIDGE" type bridge mcast_snooping 0 stp_state 0 forward_delay 0 || return 1
        nip "$hub" link set "$BRIDGE" up || return 1
        # The router's port on this subnet: a veth made in the hub, its peer
        # "r<s>" straight into the router namespace.
        nip "$hub" link add "r$prefix$s" type veth peer name "r$s" netns "$r" || return 1
        nip "$hub" link set "r$prefix$s" master "$BRIDGE" || return 1
        nip "$hub" link set "r$prefix$s" up || return 1
        nsysctl "$r" "net.ipv6.conf.r$s.accept_dad=0" "net.ipv4.conf.r$s.rp_filter=0" || return 1
        nip "$r" link set "r$s" multicast on || return 1
        nip "$r" addr add "10.0.$k.1/24" dev "r$s" || return 1
        nip "$r" addr add "fd00:$s::1/64" dev "r$s" nodad || return 1
        nip "$r" link set "r$s" up || return 1
        for ((j = 0; j < $1; j++)); do
            build_routed_node "$prefix" "$i" "$k" "$((j + 2))" "$s" || return 1
            i=$((i + 1))
        done
        shift
    done
}

# Starts smcrouted in the router namespace (its pid recorded for `down`)
# and waits, bounded, until it has set up its interfaces.
start_router() {
    local prefix=$1 dir r="$1-r" deadline
    command -v smcrouted >/dev/null 2>&1 || { log "smcrouted not found (apt-get install smcroute)"; return 1; }
    dir=$(router_dir "$prefix")
    rm -rf "$dir"
    mkdir -p -m 0700 "$dir" || return 1
    routed_conf > "$dir/smcroute.conf"
    # Output to a log file: whoever runs us reads our stdout to its end.
    ip netns exec "$r" smcrouted -n -N -f "$dir/smcroute.conf" -P "$dir/smcrouted.pid.own" \
        -u "$dir/smcroute.sock" -l info >"$dir/smcrouted.log" 2>&1 </dev/null &
    echo $! > "$dir/smcrouted.pid"
    deadline=$((${EPOCHREALTIME/[.,]/} + WAIT_TIMEOUT_S * 1000000))
    until ip netns exec "$r" smcroutectl -u "$dir/smcroute.sock" show interfaces 2>/dev/null | grep -qw rc; do
        if ! kill -0 "$(<"$dir/smcrouted.pid")" 2>/dev/null; then
            log "smcrouted exited: $(tail -5 "$dir/smcrouted.log")"; return 1
        fi
        if ((${EPOCHREALTIME/[.,]/} >= deadline)); then
            log "timeout waiting for smcrouted: $(tail -5 "$dir/smcrouted.log")"; return 1
        fi
        sleep 0.05
    done
}

# Bounded wait until every node and every router port has carrier and a
# usable link-local address: smcrouted is started only then, because an
# interface that changes under it makes it renew that interface's VIF, and
# a route installed before was then seen not to forward to it.
wait_routed() {
    local prefix=$1 n=$2 deadline i s pending
    deadline=$((${EPOCHREALTIME/[.,]/} + WAIT_TIMEOUT_S * 1000000))
    while :; do
        pending=""
        for ((i = 0; i < n; i++)); do
            ip -n "$prefix-n$i" -o -6 addr show dev "$IFNAME" scope link 2>/dev/null | grep -v tentative | grep -q fe80:: ||
                pending+=" $prefix-n$i"
        done
        for s in "${SUBNETS[@]}"; do
            ip -n "$prefix-r" -o link show dev "r$s" 2>/dev/null | grep -q 'state UP' || { pending+=" r$s:carrier"; continue; }
            ip -n "$prefix-r" -o -6 addr show dev "r$s" scope link 2>/dev/null | grep -v tentative | grep -q fe80:: ||
                pending+=" r$s:linklocal"
            bridge -n "$prefix-h$s" link show dev "r$prefix$s" 2>/dev/null | grep -q 'state forwarding' ||
                pending+=" r$prefix$s:port"
        done
        [[ -z $pending ]] && return 0
        if ((${EPOCHREALTIME/[.,]/} >= deadline)); then
            log "timeout after ${WAIT_TIMEOUT_S}s waiting for:$pending"
            return 1
        fi
        sleep 0.05
    done
}

do_routed() {
    local prefix=$1 total=0 n i k s out line
    shift
    for n in "$@"; do
        [[ $n =~ ^[0-9]{1,2}$ ]] && ((10#$n >= 1 && 10#$n <= 50)) || die "invalid node count '$n': must be 1..50"
        total=$((total + 10#$n))
    done
    if [[ -n $(list_ns "$prefix") ]]; then
        log "removing existing namespaces for prefix $prefix"
        do_down "$prefix" || die "could not remove existing ${prefix}-* namespaces"
    fi
    local t0=${EPOCHREALTIME/[.,]/}
    trap 'log "interrupted; cleaning up"; do_down "$prefix" >/dev/null 2>&1; exit 130' INT TERM
    if ! build_routed "$prefix" "$@" || ! wait_routed "$prefix" "$total" || ! start_router "$prefix"; then
        log "failed to bring up routed topology $prefix; cleaning up"
        do_down "$prefix"
        trap - INT TERM
        exit 1
    fi
    out=""; i=0
    for k in 1 2 3; do
        s=${SUBNETS[k - 1]}
        for ((n = 0; n < 10#$1; n++)); do
            line=$(node_line "$i" "$prefix-n$i") || { log "node $prefix-n$i incomplete"; do_down "$prefix"; exit 1; }
            out+="$line $s"$'\n'
            i=$((i + 1))
        done
        shift
    done
    trap - INT TERM
    printf '%srouter %s %s\n' "$out" "$prefix-r" "$(router_dir "$prefix")/smcroute.conf"
    log "routed topology $prefix up: router + 3 subnets, $total node(s) in $(((${EPOCHREALTIME/[.,]/} - t0) / 1000)) ms"
}

do_selftest() {
    local prefix="st$$" passed=0 failed=0 before after topo line
    prefix=${prefix:0:10}
    [[ -f $SCRIPT_DIR/check_multicast.py ]] || die "missing $SCRIPT_DIR/check_multicast.py"
    command -v python3 >/dev/null 2>&1 || die "python3 not found"
    before=$(ip netns list | awk '{print $1}' | sort)

    ok() { printf 'PASS %s\n' "$*"; passed=$((passed + 1)); }
    ko() { printf 'FAIL %s\n' "$*"; failed=$((failed + 1)); }

    trap 'bash "$SELF" down "$prefix" >/dev/null 2>&1; echo "netns selftest: interrupted" >&2; exit 130' INT TERM
    if topo=$(bash "$SELF" up "$prefix" 3); then
        ok "up $prefix 3"
        if [[ $(grep -c '^node ' <<<"$topo") -eq 3 ]] &&
            awk 'NF!=8 || $1!="node" || $4!="ssm0" || $5!~/^[0-9]+$/ || $6!~/^10\.158\.0\./ || $7!~/^fe80::/ || $8!~/^fd58::/ {bad=1} END{exit bad}' <<<"$topo"; then
            ok "output format"
        else
            ko "output format: $topo"
        fi
        if [[ $(bash "$SELF" list "$prefix" 2>/dev/null) == "$topo" ]]; then ok "list matches up"; else ko "list matches up"; fi
        # check_multicast.py opens no sockets itself; it starts its listeners and
        # sender inside the node namespaces with `ip netns exec`.
        while IFS= read -r line; do
            [[ $line == EXIT\ * ]] || printf '%s\n' "$line"
            case $line in
            PASS\ *) passed=$((passed + 1)) ;;
            FAIL\ *) failed=$((failed + 1)) ;;
            "EXIT 0") ;;
            EXIT\ *) printf 'FAIL check_multicast.py exited with status %s\n' "${line#EXIT }"; failed=$((failed + 1)) ;;
            esac
        done < <(timeout 60 python3 "$SCRIPT_DIR/check_multicast.py" run <<<"$topo"; echo "EXIT $?")
    else
        ko "up $prefix 3"
    fi
    if bash "$SELF" down "$prefix"; then ok "down $prefix"; else ko "down $prefix"; fi
    trap - INT TERM
    after=$(ip netns list | awk '{print $1}' | sort)
    if [[ $before == "$after" ]]; then ok "no namespaces left behind"; else ko "namespaces differ after down: $(comm -13 <(echo "$before") <(echo "$after") | tr '\n' ' ')"; fi
    echo "netns selftest: $passed passed, $failed failed"
    [[ $failed -eq 0 && $passed -gt 0 ]]
}

main() {
    local cmd=${1-}
    ((BASH_VERSINFO[0] >= 5)) || die "bash >= 5 required (EPOCHREALTIME)"
    [[ $WAIT_TIMEOUT_S =~ ^[0-9]+$ ]] || die "SSM_NETNS_WAIT_TIMEOUT must be whole seconds"
    case $cmd in
    up)
        [[ $# -eq 3 ]] || { usage; exit 2; }
        validate_prefix "$2"; require_tools
        do_up "$2" "$3"
        ;;
    routed)
        [[ $# -eq 5 ]] || { usage; exit 2; }
        validate_prefix "$2"; require_tools
        do_routed "$2" "$3" "$4" "$5"
        ;;
    down)
        [[ $# -eq 2 ]] || { usage; exit 2; }
        validate_prefix "$2"; require_tools
        do_down "$2"
        ;;
    list)
        [[ $# -eq 2 ]] || { usage; exit 2; }
        validate_prefix "$2"; require_tools
        do_list "$2"
        ;;
    selftest)
        [[ $# -eq 1 ]] || { usage; exit 2; }
        require_tools
        do_selftest
        ;;
    -h | --help | help) usage ;;
    *) usage; exit 2 ;;
    esac
}

main "$@"
