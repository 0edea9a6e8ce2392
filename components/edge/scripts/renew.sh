# Renews the balancer's self-signed certificate when it has under 30 days left, and warns of a provided
# one that has (edge.sh renew). Runs where `pulumi up` runs, at the end of every `up` (afterEveryUp):
# nothing else about a fleet left alone changes with time. After the rollout scripts' functions.
# Environment: EDGE_SH (edge.sh's text), TLS_NAMES (the self-signed certificate's names, empty for a
# provided pair) and common.sh's.
lb exec "$LB_CONTAINER" sh -c "$EDGE_SH" edge.sh renew "${TLS_NAMES:-}" </dev/null
