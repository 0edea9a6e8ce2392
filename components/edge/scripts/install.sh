# Installs the balancer's front-door files into its container and reloads nginx (see edge.sh). Runs where
# `pulumi up` runs (POSIX sh). The bundle, a secret, is read from stdin and handed straight to the
# container's stdin: it is never an argument, an environment variable or a file on this machine.
#
# Environment: LB_CONTAINER (the balancer's container), LB_ENGINE (its engine's address; empty or "-"
# for the default engine), EDGE_SH (edge.sh's text), TLS_MODE (off, provided or self-signed) and
# TLS_NAMES (the self-signed certificate's names, e.g. "DNS:localhost,IP:127.0.0.1").
set -eu
if [ -n "${LB_ENGINE:-}" ] && [ "$LB_ENGINE" != "-" ]; then
    DOCKER_HOST=$LB_ENGINE
    export DOCKER_HOST
fi
exec docker exec -i "$LB_CONTAINER" sh -c "$EDGE_SH" edge.sh install "$TLS_MODE" "${TLS_NAMES:-}"
