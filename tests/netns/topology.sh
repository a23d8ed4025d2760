#!/usr/bin/env bash
# Isolated multicast test topology built from Linux network namespaces.
#
#   topology.sh up PREFIX N     create PREFIX-hub (bridge br0) + PREFIX-n0..n{N-1}
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
  topology.sh down PREFIX    delete every namespace named PREFIX-* (missing ok)
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

do_down() {
    local prefix=$1 ns pids rc=0
    local -a all
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
