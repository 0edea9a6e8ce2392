# Functions the rollout commands share. They run where `pulumi up` runs (POSIX sh), and reach each
# Docker engine the way the provider does: DOCKER_HOST set to the engine's address, or the default.
#
# Environment: LB_ENGINE (the balancer's engine address, empty for the default), LB_CONTAINER,
# ROTATION_SH (the script run inside the balancer's container).
set -eu

# on_engine ADDRESS docker-args...: docker against that engine ("" or "-": the default one), with its TLS
# material when it has some (engine-tls.sh).
on_engine() {
    target=$1
    shift
    with_engine "$target" docker "$@"
}

lb() { on_engine "${LB_ENGINE:-}" "$@"; }

# rotation OP [NAME]: changes nginx's rotation in the balancer's container (see rotation.sh). Only
# `install` reads stdin (the template); the others get none, so that a `while read` loop around them
# keeps its lines (`docker exec -i` would read them all, and the loop would end after its first).
rotation() {
    if [ "$1" = install ]; then
        lb exec -i "$LB_CONTAINER" sh -c "$ROTATION_SH" rotation.sh "$@"
    else
        lb exec "$LB_CONTAINER" sh -c "$ROTATION_SH" rotation.sh "$@" </dev/null
    fi
}

# fetch ADDRESS PATH: GET a replica's endpoint from inside the balancer's container, as nginx reaches it.
fetch() { lb exec "$LB_CONTAINER" curl -fsS --noproxy '*' -m 3 "http://$1$2" 2>/dev/null; }

# rotation_line: the balancer's own account of its rotation, "in=a,b out=c".
rotation_line() { fetch 127.0.0.1 /nginx-health | sed -n 's/^ok [^ ]* \(in=[^ ]* out=[^ ]*\)$/\1/p'; }

# adapters_loaded: "NAME a,b" per replica of a group with LoRA, the adapters the balancer has loaded on it
# ("-" for none), from its routing status (ROUTING_STATUS, ADDRESS/PATH): one flat JSON object per replica.
adapters_loaded() {
    fetch "${ROUTING_STATUS%%/*}" "/${ROUTING_STATUS#*/}" | tr '}' '\n' | awk '
        match($0, /"adapters":"[^"]*"/) {
            list = substr($0, RSTART + 12, RLENGTH - 13)
            if (match($0, /"name":"[^"]*"/)) print substr($0, RSTART + 8, RLENGTH - 9), (list == "" ? "-" : list)
        }'
}

# in_rotation NAME [LINE]: whether nginx serves NAME now (or in LINE, a rotation_line read before).
in_rotation() { printf '%s\n' "${2-$(rotation_line)}" | grep -Eq "in=([^ ]*,)?$1(,[^ ]*)? "; }

# now: the clock in whole seconds. A deadline of now + N is passed once now is past it (-gt), so that at
# least N seconds have gone by, wherever in its first second the wait began.
now() { date +%s; }

# in_flight ADDRESS: requests running plus waiting, from the replica's /metrics (empty when it does not answer).
in_flight() {
    fetch "$1" /metrics | awk '/^vllm:num_requests_(running|waiting)[{ ]/ { n += $NF; seen = 1 } END { if (seen) printf "%d\n", n }'
}

# balancer_connections ADDRESS: the balancer's open TCP connections to ADDRESS (IPv4 host:port), read from
# its /proc/net/tcp. Every request nginx sent there and that has not ended holds one, whatever the
# balancing mode, from before the replica's engine counts it (chat template, tokenisation, media fetch) to
# its last byte; idle keep-alive ones close within 4 s (UPSTREAM_IDLE_SECONDS). Empty when it cannot tell.
balancer_connections() {
    want=$(printf '%s\n' "$1" | awk -F'[.:]' 'NF == 5 { printf "%02X%02X%02X%02X:%04X\n", $4, $3, $2, $1, $5 }')
    [ -n "$want" ] || return 0
    table=$(lb exec "$LB_CONTAINER" cat /proc/net/tcp 2>/dev/null) || return 0
    [ -n "$table" ] || return 0
    # Fields: sl, local_address, rem_address, st (01 established, 02 SYN sent).
    printf '%s\n' "$table" | awk -v want="$want" '$3 == want && ($4 == "01" || $4 == "02") { n++ } END { print n + 0 }'
}

# drain NAME ADDRESS GRACE: waits until the replica, out of rotation, has finished what it serves: no
# running and no waiting request on its engine, and no connection the balancer still has open to it, in
# two readings a second apart, or GRACE seconds have passed. Either count alone does: vLLM exports no
# gauges with --disable-log-stats, and a balancer's count misses clients that reach the replica directly.
drain() {
    name=$1 address=$2 grace=$3
    deadline=$(( $(now) + grace ))
    zeros=0
    while :; do
        engine=$(in_flight "$address" || true)
        sent=$(balancer_connections "$address" || true)
        if [ -z "$engine" ] && [ -z "$sent" ]; then
            echo "$name: not answering /metrics, nothing left to drain"
            return 0
        fi
        n=$(( ${engine:-0} > ${sent:-0} ? ${engine:-0} : ${sent:-0} ))
        if [ "$n" -eq 0 ]; then
            zeros=$((zeros + 1))
            if [ "$zeros" -ge 2 ]; then
                echo "$name: drained (no running or waiting request, no open connection from the balancer)"
                return 0
            fi
        else
            zeros=0
        fi
        if [ "$(now)" -gt "$deadline" ]; then
            echo "$name: grace period of ${grace}s reached with $n request(s) still running or waiting; they end when it stops" >&2
            return 0
        fi
        sleep 1
    done
}

# inspect_container ENGINE CONTAINER FORMAT: what docker inspect prints; nothing for a container that does
# not exist. Any other failure (an engine, or an ssh connection to it, that drops a call) is tried again, 5
# times a second apart, and then fails the script with docker's answer: it is never read as "missing".
inspect_container() {
    inspect_tries=0
    errors=$(mktemp)
    while :; do
        if answer=$(on_engine "$1" inspect -f "$3" "$2" 2>"$errors"); then
            rm -f "$errors"
            printf '%s\n' "$answer"
            return 0
        fi
        case $(cat "$errors") in
        *"No such object"* | *"No such container"*)
            rm -f "$errors"
            return 0
            ;;
        esac
        inspect_tries=$((inspect_tries + 1))
        if [ "$inspect_tries" -ge 5 ]; then
            echo "docker inspect $2 on ${1:--} failed $inspect_tries times: $(cat "$errors")" >&2
            rm -f "$errors"
            exit 1
        fi
        sleep 1
    done
}

# state ENGINE CONTAINER: "status restarting restarts exit-code", or "missing".
state() {
    found=$(inspect_container "$1" "$2" '{{.State.Status}} {{.State.Restarting}} {{.RestartCount}} {{.State.ExitCode}}')
    echo "${found:-missing}"
}

# read_state ENGINE CONTAINER: sets status, restarting, restarts and code from `state`. The engine's answer
# is read outside the here-document, so that a failure of the engine stops the script.
read_state() {
    found=$(state "$1" "$2")
    read -r status restarting restarts code <<STATE
$found
STATE
}

# spec ENGINE CONTAINER: the spec label of the running container, empty when there is none.
spec() { inspect_container "$1" "$2" '{{index .Config.Labels "vllm-nginx.spec"}}'; }

# failed NAME CONTAINER ENGINE REASON: says why a replica did not come up, with the end of its log.
failed() {
    {
        echo "replica $1 (container $2) did not become healthy: $4."
        echo "Last 30 lines of its log:"
        on_engine "$3" logs --tail 30 "$2" 2>&1 | sed 's/^/    /' || true
        echo "nginx does not route to $1; replicas not yet replaced keep serving on their previous settings."
        echo "Fix the settings and run \`pulumi up\` again to finish the rollout."
    } >&2
    exit 1
}

# wait_healthy NAME CONTAINER ENGINE ADDRESS TIMEOUT: until /health answers 200 through the balancer's
# network; fails early when the container exits or restarts over and over (a bad flag, out of memory).
wait_healthy() {
    name=$1 container=$2 engine=$3 address=$4 timeout=$5
    deadline=$(( $(now) + timeout ))
    first=""
    while :; do
        if fetch "$address" /health >/dev/null; then
            return 0
        fi
        read_state "$engine" "$container"
        case $status in
        missing) failed "$name" "$container" "$engine" "its container does not exist" ;;
        exited | dead)
            [ "$restarting" = "true" ] || failed "$name" "$container" "$engine" "it exited with code $code" ;;
        esac
        [ -n "$first" ] || first=$restarts
        if [ $((restarts - first)) -ge 2 ]; then
            failed "$name" "$container" "$engine" "it keeps exiting (exit code $code, restarted $restarts times)"
        fi
        if [ "$(now)" -gt "$deadline" ]; then
            failed "$name" "$container" "$engine" "/health did not answer within ${timeout}s (startupTimeout)"
        fi
        sleep 1
    done
}

# retry TRIES MESSAGE command...: runs the command every 0.2 s until it succeeds, at most TRIES times;
# then fails with MESSAGE.
retry() {
    tries=$1 message=$2
    shift 2
    n=0
    until "$@"; do
        n=$((n + 1))
        if [ "$n" -ge "$tries" ]; then
            echo "$message" >&2
            exit 1
        fi
        sleep 0.2
    done
}

# rotation_is NAME in|out: whether the balancer reports NAME in rotation, or out of it.
rotation_is() {
    if [ "$2" = in ]; then in_rotation "$1"; else ! in_rotation "$1"; fi
}

# settle NAME in|out: until the balancer reports NAME in rotation (or out of it), within 30 s.
settle() { retry 150 "nginx in $LB_CONTAINER did not report $1 $2 of rotation within 30s" rotation_is "$1" "$2"; }
