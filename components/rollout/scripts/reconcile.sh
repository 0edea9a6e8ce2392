# Brings the rotation back to what runs, at the end of every `pulumi up` (never in a preview): a replica
# that runs the settings this deployment declares and serves /health is in nginx's rotation. Two things
# leave one out that no resource change would bring back: an `up` that stopped after a gate took a batch
# out (a Ctrl-C, an error elsewhere), when the next `up` finds its settings unchanged; and a balancer
# replaced while a replica was busy or loading, which admits only those that answer at that moment.
# A replica that does not answer /health stays out, with a warning; the next `up` brings it back. One in
# rotation whose container is gone or stopped leaves it.
# Environment: MEMBERS (one "NAME CONTAINER ENGINE SPEC ADDRESS" per line) and common.sh's.
line=$(rotation_line)
if [ -z "$line" ]; then
    echo "nginx in $LB_CONTAINER does not answer /nginx-health: the rotation was not checked" >&2
    exit 1
fi
echo "$MEMBERS" | while read -r name container engine want address; do
    [ -n "$name" ] || continue
    if in_rotation "$name" "$line"; then
        # In rotation without a running container (removed or stopped by hand): it leaves. A replica that
        # runs but fails /health stays: the balancer's health checks send it nothing meanwhile.
        read_state "$engine" "$container"
        case $status in
        running | restarting) ;;
        *)
            rotation retire "$name" >/dev/null
            settle "$name" out
            echo "warning: $name was in nginx's rotation, but its container $container is $status: it left the rotation (\`pulumi up --refresh\` creates a removed container again)"
            ;;
        esac
        continue
    fi
    have=$(spec "$engine" "$container")
    if [ "$have" != "$want" ]; then
        echo "warning: $name is out of nginx's rotation and does not run the settings this deployment declares (container $container: ${have:-missing})"
    elif fetch "$address" /health >/dev/null; then
        rotation admit "$name" >/dev/null
        settle "$name" in
        echo "$name was out of nginx's rotation though it runs its deployed settings and serves /health: it is back in"
    else
        echo "warning: $name is out of nginx's rotation: its /health does not answer. The next \`pulumi up\` brings it back once it does (alert VllmReplicaOutOfRotation)"
    fi
done
# Adapters (ADAPTERS: one "NAME a,b" per replica of a group with LoRA): the balancer loads them on each
# replica it checks (routing.lua's lora_upkeep). The `up` returns once every one of those in rotation has
# its group's adapters, so that an adapter it added serves; after ADAPTERS_TIMEOUT seconds, a warning.
[ -n "${ADAPTERS:-}" ] || exit 0
deadline=$(( $(now) + ${ADAPTERS_TIMEOUT:-120} ))
while :; do
    line=$(rotation_line)
    loaded=$(adapters_loaded)
    missing=$(echo "$ADAPTERS" | while read -r name want; do
        [ -n "$name" ] && in_rotation "$name" "$line" || continue
        have=$(printf '%s\n' "$loaded" | awk -v n="$name" '$1 == n { print $2 }')
        [ "${have:--}" = "$want" ] || echo "$name (has ${have:-none}, wants $want)"
    done)
    if [ -z "$missing" ]; then
        echo "$ADAPTERS" | awk 'NF { n++ } END { printf "adapters loaded on the %d replica(s) of groups with LoRA\n", n }'
        exit 0
    fi
    if [ "$(now)" -gt "$deadline" ]; then
        echo "warning: the balancer has not loaded every adapter within ${ADAPTERS_TIMEOUT:-120}s: $(echo "$missing" | paste -sd ';' -). Its log says why (docker logs $LB_CONTAINER); it tries again every few seconds"
        exit 0
    fi
    sleep 1
done
