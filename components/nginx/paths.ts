/** The port nginx listens on inside its container; the balancer's host port maps to it. */
export const BALANCER_CONTAINER_PORT = 80;

/** Where the rendered config lives in the container (the image ships a bootstrap config there). */
export const BALANCER_CONFIG_PATH = "/etc/nginx/conf.d/vllm-nginx.conf";
