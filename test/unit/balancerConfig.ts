import type { BalancerConfig } from "../../components/nginx/render";

/** The guide's topology (two GPU replicas on the stack's network) with the program's defaults, for rendering tests. */
export const GUIDE_TOPOLOGY: BalancerConfig = {
    upstreams: [
        { name: "vllm0", address: "172.29.20.10:8000" },
        { name: "vllm1", address: "172.29.20.11:8000" },
    ],
    method: "least_conn",
    sessionHeader: "x-user-id",
    loadBound: 1.25,
    healthCheckIntervalSeconds: 1,
    maxFails: 3,
    failTimeoutSeconds: 30,
    readTimeoutSeconds: 3600,
    connectTimeoutSeconds: 5,
    maxBodyBytes: 100 * 1024 * 1024,
    listen: "80",
    statusListen: "8081",
    stack: "gpu",
};
