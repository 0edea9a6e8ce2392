# One step of a rollout: before the replicas of this batch are replaced, wait until every replica of the
# batches before it runs its new settings and is back in rotation, then take the ones of this batch that
# change out of rotation and let their requests finish. Replicas that do not change, or do not exist yet,
# pass at once.
# Environment: BATCH and EARLIER, one replica per line: "NAME CONTAINER ENGINE SPEC ADDRESS" (ENGINE "-"
# for the default engine); STARTUP_TIMEOUT, GRACE, and common.sh's.
changing=$(echo "$BATCH" | while read -r name container engine want address; do
    [ -n "$name" ] || continue
    have=$(spec "$engine" "$container")
    if [ -n "$have" ] && [ "$have" != "$want" ]; then
        echo "$name $container $engine $address"
    fi
done)
if [ -z "$changing" ]; then
    echo "nothing to replace in this batch"
    exit 0
fi

deadline=$(( $(now) + STARTUP_TIMEOUT + GRACE + 120 ))
echo "$EARLIER" | while read -r name container engine want address; do
    [ -n "$name" ] || continue
    while :; do
        have=$(spec "$engine" "$container")
        if [ "$have" = "$want" ] && in_rotation "$name"; then
            break
        fi
        read_state "$engine" "$container"
        if [ "$have" = "$want" ] && { [ "$status" = exited ] || [ "$status" = dead ] || [ "$restarting" = true ]; }; then
            echo "the rollout stops: $name, replaced before this batch, is not running ($status, exit code $code)" >&2
            exit 1
        fi
        if [ "$(now)" -gt "$deadline" ]; then
            echo "the rollout stops: $name is not back in rotation with its new settings" >&2
            exit 1
        fi
        sleep 1
    done
done

echo "$changing" | while read -r name container engine address; do
    rotation retire "$name" >/dev/null
    settle "$name" out
    echo "$name left nginx's rotation"
done
echo "$changing" | while read -r name container engine address; do
    drain "$name" "$address" "$GRACE"
done
