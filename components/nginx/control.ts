/** How Docker checks the balancer's health. */
import { BALANCER_CONTAINER_PORT } from "./paths";
import { BALANCER_HEALTH_PATH } from "./render";

const HEALTH_URL = `http://127.0.0.1:${BALANCER_CONTAINER_PORT}${BALANCER_HEALTH_PATH}`;

/** Probes the balancer's own health endpoint, which answers whether or not any replica is up. */
export const BALANCER_HEALTH_PROBE = `curl -fsS --noproxy '*' -o /dev/null ${HEALTH_URL} || wget -q --no-proxy -O /dev/null ${HEALTH_URL}`;
