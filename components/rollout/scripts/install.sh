# Installs the rendered config template into the balancer's container (stdin) and reloads nginx; on a
# new container, the replicas that already answer /health join the rotation at once. Returns once
# nginx serves the template's id.
# Environment: CONFIG_ID and common.sh's.
answers() { fetch 127.0.0.1 /nginx-health >/dev/null; }
serves() { fetch 127.0.0.1 /nginx-health | grep -q "^ok $CONFIG_ID "; }

# A new container answers within a second; Docker's healthcheck would say so only after its first interval.
retry 300 "nginx in $LB_CONTAINER did not answer /nginx-health within 60s of its start" answers
rotation install >/dev/null
retry 150 "nginx in $LB_CONTAINER did not serve config $CONFIG_ID within 30s of the reload" serves
echo "nginx in $LB_CONTAINER serves config $CONFIG_ID ($(rotation_line))"
