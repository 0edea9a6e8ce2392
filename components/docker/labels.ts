import type * as docker from "@pulumi/docker";

/**
 * The labels every container of the fleet carries. They let `docker ps --filter` find a stack's
 * containers, and let policies (`policy/`) read what a container is without knowing the program.
 */
export const LABELS = {
    /** The stack name. */
    stack: "vllm-nginx.stack",
    /** `replica`, `balancer`, `relay` (the relay's egress), `gate` (the relay's end on another host), `prometheus`, `nginx-exporter` or `grafana`. */
    role: "vllm-nginx.role",
    /** A replica's name (`vllm0`). */
    replica: "vllm-nginx.replica",
    /** The host a replica runs on (`local` on a single engine). */
    host: "vllm-nginx.host",
    /** A replica's GPU ids, comma-separated (absent on the CPU backend). */
    gpus: "vllm-nginx.gpus",
    /** The model a replica serves. */
    model: "vllm-nginx.model",
    /** How long a deploy waits for a replica's /health, in seconds. */
    startupTimeout: "vllm-nginx.startup-timeout",
    /** Whether the balancer checks client keys (`on` or `off`). */
    clientKeys: "vllm-nginx.client-keys",
    /** Whether the balancer terminates TLS (`on` or `off`). */
    tls: "vllm-nginx.tls",
    /** A digest of everything a replica's container is created from (see `replicaSpec`). */
    spec: "vllm-nginx.spec",
} as const;

/** `{label, value}` pairs as the docker provider takes them, skipping unset values. */
export function labelList(values: Partial<Record<keyof typeof LABELS, string | undefined>>): docker.types.input.ContainerLabel[] {
    return Object.entries(values)
        .filter((entry): entry is [keyof typeof LABELS, string] => entry[1] !== undefined)
        .map(([key, value]) => ({ label: LABELS[key], value }));
}
