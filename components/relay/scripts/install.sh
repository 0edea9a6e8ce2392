# Installs one end of the relay (see components/relay/render.ts): the certificates of its peers, then its
# stream config, and reloads its nginx. Runs where `pulumi up` runs, on every change of the end, of a peer's
# container (a new one has a new key) or of the config. Only certificates cross: each key stays in its
# container.
#
# Environment: RELAY_ENGINE and RELAY_CONTAINER (this end), RELAY_CONFIG (its stream config), RELAY_PEERS
# (space-separated FILE|ENGINE|CONTAINER: the peer whose certificate goes into peers/FILE; ENGINE "-" for
# the default engine), RELAY_DIR, RELAY_CONFIG_FILE, and ENGINE_TLS for engine-tls.sh.

# certificate ENGINE CONTAINER: the end's certificate, once its first start has made it.
certificate() { on_engine "$1" exec "$2" cat "$RELAY_DIR/self.crt" 2>/dev/null; }
has_certificate() { certificate "$1" "$2" >/dev/null; }

# put FILE: stdin into FILE in this end's container, whole or not at all.
put() { on_engine "$RELAY_ENGINE" exec -i "$RELAY_CONTAINER" sh -c 'cat >"$1.new" && mv "$1.new" "$1"' put "$1"; }

retry 150 "relay $RELAY_CONTAINER: its key and certificate were not made within 30s of its start" has_certificate "$RELAY_ENGINE" "$RELAY_CONTAINER"
for peer in $RELAY_PEERS; do
    file=${peer%%|*}
    rest=${peer#*|}
    engine=${rest%%|*}
    container=${rest#*|}
    retry 150 "relay $RELAY_CONTAINER: cannot read the certificate of $container (engine ${engine}) within 30s" has_certificate "$engine" "$container"
    certificate "$engine" "$container" | put "$RELAY_DIR/peers/$file"
done
printf '%s' "$RELAY_CONFIG" | put "$RELAY_CONFIG_FILE"
# A container just started may not have written nginx's pid yet.
reloaded() { on_engine "$RELAY_ENGINE" exec "$RELAY_CONTAINER" sh -c 'test -s /run/nginx.pid && nginx -s reload' 2>/dev/null; }
if ! on_engine "$RELAY_ENGINE" exec "$RELAY_CONTAINER" nginx -t -q; then
    echo "relay $RELAY_CONTAINER: nginx refused the rendered stream config (above)" >&2
    exit 1
fi
retry 150 "relay $RELAY_CONTAINER: nginx did not reload within 30s" reloaded
echo "relay $RELAY_CONTAINER: $(printf '%s\n' "$RELAY_CONFIG" | grep -c '^server {') listener(s), $(set -- $RELAY_PEERS; echo $#) peer certificate(s)"
