/** The port nginx listens on inside its container; the balancer's host port maps to it. */
export const BALANCER_CONTAINER_PORT = 80;

/** The internal listener with nginx's counters (`/nginx-status`): not published, reached on the fleet's network. */
export const BALANCER_STATUS_PORT = 8081;
