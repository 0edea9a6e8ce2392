/**
 * The stack config contract: the namespace, every key, and the defaults (declared again in `Pulumi.yaml`,
 * and checked against these by a unit test).
 */
import type { Backend } from "../planning";
import type { Balancer, RestartPolicy } from "./settings";

/** The config namespace, which is the project name in `Pulumi.yaml`. */
export const CONFIG_NAMESPACE = "vllm-nginx";

/** Defaults, in the form a user writes them in stack config. */
export const DEFAULTS = {
    backend: "gpu" as Backend,
    replicas: 1,
    cpuKvCacheSpace: 4,
    cpuThreadsBind: "auto",
    gpuImage: "vllm/vllm-openai:v0.32.0",
    cpuImage: "public.ecr.aws/q9t5s3a7/vllm-cpu-release-repo:v0.32.0",
    vllmBuildDockerfile: "docker/Dockerfile",
    vllmBuildTarget: "vllm-openai",
    hfCacheDir: "~/.cache/huggingface",
    lbPort: 8000,
    lbBind: "0.0.0.0",
    lbWorkers: 2,
    replicaPortBase: 8081,
    replicaPortBind: "127.0.0.1",
    balancer: "least_conn" as Balancer,
    sessionHeader: "x-user-id",
    loadBound: 1.25,
    healthCheckInterval: "1s",
    maxFails: 3,
    failTimeout: "30s",
    readTimeout: "3600s",
    connectTimeout: "5s",
    maxBodySize: "100m",
    nginxBaseImage: "debian:12.12-slim",
    shmSize: "10.24gb",
    ipcHost: true,
    startupTimeout: "30m",
    stopGracePeriod: "120s",
    warmFirstReplica: true,
    restartPolicy: "unless-stopped" as RestartPolicy,
    maxUnavailable: 1,
    exposeMetrics: false,
    tlsMode: "off",
    tlsHttp: "off",
    tlsHttpPort: 80,
    tlsHosts: ["localhost", "127.0.0.1"],
} as const;

/** Every key the program reads; anything else under the namespace is reported as unknown. */
export const CONFIG_KEYS = [
    "model",
    "servedModelName",
    "backend",
    "gpus",
    "replicas",
    "cpuKvCacheSpace",
    "cpuThreadsBind",
    "vllmImage",
    "vllmBuild",
    "httpProxy",
    "httpsProxy",
    "noProxy",
    "hfCacheDir",
    "hfToken",
    "apiKey",
    "vllmArgs",
    "lbPort",
    "lbBind",
    "lbWorkers",
    "replicaPortBase",
    "replicaPortBind",
    "balancer",
    "sessionHeader",
    "loadBound",
    "healthCheckInterval",
    "maxFails",
    "failTimeout",
    "readTimeout",
    "connectTimeout",
    "maxBodySize",
    "nginxBaseImage",
    "shmSize",
    "ipcHost",
    "startupTimeout",
    "stopGracePeriod",
    "warmFirstReplica",
    "networkSubnet",
    "restartPolicy",
    "rollout",
    "monitoring",
    "hosts",
    "balancerHost",
    "hostTls",
    "clientKeys",
    "tls",
    "tlsCertificate",
    "tlsKey",
    "exposeMetrics",
    "models",
] as const;

/**
 * Keys read as secrets and never as plain values. Not declared in `Pulumi.yaml`: the CLI requires
 * every declared secret to be set, and these are optional.
 */
export const SECRET_CONFIG_KEYS: readonly string[] = ["hfToken", "apiKey", "hostTls", "clientKeys", "tlsCertificate", "tlsKey"];

/** The secrets the replicas are created from: a change of one rolls the replicas. The others are the balancer's, a reload. */
export const REPLICA_SECRET_KEYS: readonly string[] = ["hfToken", "apiKey"];

/**
 * Secret keys that must be stored encrypted: a plain value of one is a problem at preview. (`hfToken` and
 * `apiKey` predate this check; `tlsCertificate` is public matter.)
 */
export const ENCRYPTED_CONFIG_KEYS: readonly string[] = ["clientKeys", "tlsKey", "hostTls"];

/**
 * Whether a value counts as unset. `Pulumi.yaml` declares `""` and `[]` as the defaults of optional
 * keys (the CLI treats a declared key without a default as required).
 */
export function isUnset(value: unknown): boolean {
    return value === undefined || value === null || value === "" || (Array.isArray(value) && value.length === 0);
}
