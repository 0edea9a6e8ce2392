/**
 * Shell scripts that run against the balancer's container with `docker exec`: nginx is changed by
 * replacing files and reloading, never by restarting it.
 */
import { BALANCER_CONFIG_PATH, BALANCER_CONTAINER_PORT } from "./paths";
import { BALANCER_HEALTH_PATH } from "./render";

const HEALTH_URL = `http://127.0.0.1:${BALANCER_CONTAINER_PORT}${BALANCER_HEALTH_PATH}`;

/** Probes the balancer's own health endpoint, which answers whether or not any replica is up. */
export const BALANCER_HEALTH_PROBE = `curl -fsS --noproxy '*' -o /dev/null ${HEALTH_URL} || wget -q --no-proxy -O /dev/null ${HEALTH_URL}`;

/**
 * Installs a rendered config into the running balancer and reloads it; nginx's reload starts new workers
 * on the new config and lets the old ones finish their requests, so no stream is cut. `nginx -t` checks
 * the new file first and the previous one is put back if it fails. Returns once the health endpoint
 * serves the new config id, so that anything ordered after this (stopping a removed replica) happens
 * only when nginx no longer routes to it.
 */
export const INSTALL_CONFIG_SCRIPT = `set -eu
docker exec -i "$CONTAINER" sh -eu -c '
f=${BALANCER_CONFIG_PATH}
cat > "$f.next"
cp "$f" "$f.prev"
mv "$f.next" "$f"
if ! out=$(nginx -t 2>&1); then
  mv "$f.prev" "$f"
  echo "nginx rejected the rendered config; the previous one stays:" >&2
  echo "$out" >&2
  exit 1
fi
nginx -s reload
'
tries=0
until docker exec "$CONTAINER" sh -c "curl -fsS --noproxy '*' ${HEALTH_URL} 2>/dev/null || wget -q --no-proxy -O - ${HEALTH_URL}" | grep -q "$CONFIG_ID"; do
  tries=$((tries + 1))
  if [ "$tries" -ge 150 ]; then
    echo "nginx in $CONTAINER did not serve config $CONFIG_ID within 30s of the reload" >&2
    exit 1
  fi
  sleep 0.2
done
echo "nginx in $CONTAINER serves config $CONFIG_ID"
`;

