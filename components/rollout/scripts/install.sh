# Installs the rendered config template into the balancer's container (stdin) and reloads nginx; on a
# new container, the replicas that already answer /health join the rotation at once. Returns once
# nginx serves the template's id.
# Environment: CONFIG_ID and common.sh's.
# A new container answers within a second; Docker's healthcheck would say so only after its first interval.
tries=0
until fetch 127.0.0.1 /nginx-health >/dev/null; do
    tries=$((tries + 1))
    if [ "$tries" -ge 300 ]; then
        echo "nginx in $LB_CONTAINER did not answer /nginx-health within 60s of its start" >&2
        exit 1
    fi
    sleep 0.2
done
rotation install >/dev/null
tries=0
until fetch 127.0.0.1 /nginx-health | grep -q "^ok $CONFIG_ID "; do
    tries=$((tries + 1))
    if [ "$tries" -ge 150 ]; then
        echo "nginx in $LB_CONTAINER did not serve config $CONFIG_ID within 30s of the reload" >&2
        exit 1
    fi
    sleep 0.2
done
echo "nginx in $LB_CONTAINER serves config $CONFIG_ID ($(rotation_line))"
