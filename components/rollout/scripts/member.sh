# One replica's place in nginx's rotation (a command whose life follows the replica's container).
#   member.sh admit   on create: waits until the new container serves /health, then nginx routes to it
#   member.sh retire  on delete: nginx stops routing to it, its requests finish (up to GRACE), then the
#                     container is stopped by the engine
# Environment: NAME, CONTAINER, CONTAINER_ID, ENGINE, ADDRESS, STARTUP_TIMEOUT, GRACE, and common.sh's.
case ${1:?admit or retire} in
admit)
    wait_healthy "$NAME" "$CONTAINER" "$ENGINE" "$ADDRESS" "$STARTUP_TIMEOUT"
    rotation admit "$NAME" >/dev/null
    settle "$NAME" in
    echo "$NAME serves /health and is in nginx's rotation"
    ;;
retire)
    # Empty only when the container is gone: a call the engine dropped is tried again, not read as gone
    # (which would stop the replica without draining it).
    live=$(inspect_container "$ENGINE" "$CONTAINER" '{{.Id}}')
    if [ -n "$live" ] && [ "$live" != "$CONTAINER_ID" ]; then
        echo "$NAME runs a newer container already: nothing to retire"
        exit 0
    fi
    if rotation retire "$NAME" >/dev/null; then
        settle "$NAME" out
    else
        echo "could not reach the balancer to take $NAME out of rotation" >&2
    fi
    if [ -n "$live" ]; then
        drain "$NAME" "$ADDRESS" "$GRACE"
    fi
    ;;
esac
