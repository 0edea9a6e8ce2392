# Installs the balancer's front-door files into its container and reloads nginx (see edge.sh). Runs where
# `pulumi up` runs (POSIX sh), after the rollout scripts' functions (common.sh: `lb` reaches the
# balancer's engine, with its TLS material when it has some). The bundle, a secret, is read from stdin
# and handed straight to the container's stdin: it is never an argument, an environment variable or a
# file on this machine.
#
# Environment: EDGE_SH (edge.sh's text), TLS_MODE (off, provided or self-signed), TLS_NAMES (the
# self-signed certificate's names, e.g. "DNS:localhost,IP:127.0.0.1") and common.sh's.
answers() { lb exec "$LB_CONTAINER" true >/dev/null 2>&1; }
# A new container: its nginx may still be starting.
retry 300 "the balancer's container $LB_CONTAINER did not run within 60s of its start" answers
lb exec -i "$LB_CONTAINER" sh -c "$EDGE_SH" edge.sh install "$TLS_MODE" "${TLS_NAMES:-}"
