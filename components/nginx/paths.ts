/** The port nginx listens on inside its container; the balancer's host port maps to it. */
export const BALANCER_CONTAINER_PORT = 80;

/** The internal listener with nginx's counters (`/nginx-status`): not published, reached on the fleet's network. */
export const BALANCER_STATUS_PORT = 8081;

/** On the internal listener: each replica's place in the rotation, in Prometheus's text format. */
export const BALANCER_ROTATION_PATH = "/nginx-rotation";

/** 1 while the balancer sends the replica new requests, 0 while it is out of rotation (label `replica`). */
export const ROTATION_METRIC = "vllm_nginx_replica_in_rotation";
