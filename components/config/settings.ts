/**
 * The validated, fully defaulted settings the components are built from, grouped by what they configure.
 * `parseFleetConfig` fills every field from stack config; the defaults named here are the ones it applies.
 */
import type * as pulumi from "@pulumi/pulumi";
import type { MonitoringSettings } from "../monitoring/settings";
import type { Backend, Placement } from "../planning";

export type Balancer = "least_conn" | "round_robin" | "random_two_least_conn" | "cache_aware";
export const BALANCERS: readonly Balancer[] = ["least_conn", "round_robin", "random_two_least_conn", "cache_aware"];

export type RestartPolicy = "no" | "on-failure" | "always" | "unless-stopped";
export const RESTART_POLICIES: readonly RestartPolicy[] = ["no", "on-failure", "always", "unless-stopped"];

/** A LoRA adapter of a group: the name clients send, and a Hugging Face repo id or a path on the host. */
export interface AdapterSettings {
    name: string;
    source: string;
}

/** One model group, fully defaulted (its replicas are in the placement's slots of the same `group`). */
export interface ModelGroupSettings {
    /** Lowercase letters, digits and dashes: in its replicas' names (`embed-vllm0`) and metric labels. */
    name: string;
    /** Hugging Face model id, the first argument of `vllm serve`. */
    model: string;
    /** `--served-model-name`, one or more; empty: the model id is the one name. */
    servedModelNames: string[];
    /** Extra `vllm serve` flags. */
    vllmArgs: string[];
    /** Extra environment of its replicas. */
    env: Record<string, string>;
    /** Its own image, else the fleet's. */
    vllmImage?: string;
    balancer: { method: Balancer; sessionHeader: string; loadBound: number };
    /** `rollout.maxUnavailable` of the group: a count or a percentage. */
    maxUnavailable: number | string;
    startupTimeoutSeconds: number;
    adapters: AdapterSettings[];
}

/** What every replica serves, as `vllm serve MODEL [flags]`. */
export interface ServeSettings {
    /** Hugging Face model id, the first argument of `vllm serve`. Required. */
    model: string;
    /** `--served-model-name`: the name (or names) clients send as `model`. Defaults to the model id (flag not passed). */
    servedModelName?: string | string[];
    /** Extra `vllm serve` flags, after the ones the program sets. Defaults to none. */
    vllmArgs: string[];
    /** Extra environment of the replicas (a model group's `env`). Defaults to none. */
    env?: Record<string, string>;
    /**
     * LoRA on (a group with adapters): `--enable-lora`, vLLM's runtime adapter endpoints allowed, and the host
     * folders of adapters that come from a path, mounted read-only. Which adapters are loaded is not part of
     * it: the balancer keeps them loaded on running replicas, so adding or removing one replaces no container.
     * Defaults to off.
     */
    lora?: { folders: string[] };
}

/** How every replica container runs. */
export interface ReplicaSettings {
    /** `gpu` (a device request per replica) or `cpu` (vLLM's CPU backend). Defaults to `gpu`. */
    backend: Backend;
    /** GiB of KV cache per CPU replica (`VLLM_CPU_KVCACHE_SPACE`). Defaults to 4. */
    cpuKvCacheSpace: number;
    /** Host folder of the Hugging Face cache, mounted at `/root/.cache/huggingface`. Defaults to `~/.cache/huggingface`. */
    hfCacheDir: string;
    /** Shared memory of each replica, in bytes (`--shm-size`). Defaults to 10.24gb, as the guide. */
    shmSizeBytes: number;
    /** Share the host's IPC namespace (`--ipc host`). Defaults to true. */
    ipcHost: boolean;
    /** Host address the replica ports are published on, on the balancer's host (other hosts publish on their own address). Defaults to `127.0.0.1`. */
    portBind: string;
    /** How long a deploy waits for a replica's `/health`, in seconds. Defaults to 1800 (30m). */
    startupTimeoutSeconds: number;
    /** How long a replica leaving rotation may take to finish its requests, in seconds. Defaults to 120. */
    stopGraceSeconds: number;
    /** Docker restart policy. Defaults to `unless-stopped`. */
    restartPolicy: RestartPolicy;
    /** Start replica 0 first and the others once it is healthy, so the model downloads once. Defaults to true. */
    warmFirstReplica: boolean;
}

/** How to build the vLLM image from a vLLM checkout, as the guide does with `docker build`. */
export interface VllmBuildSpec {
    /** Path of the checkout (the build context), relative to the project folder or absolute. */
    context: string;
    /** Dockerfile path, relative to `context`. Defaults to `docker/Dockerfile`. */
    dockerfile: string;
    /** Build target. Defaults to `vllm-openai`. */
    target?: string;
    /** Extra build args (`CUDA_VERSION`, `max_jobs`, ...). Proxy args are added from the proxy settings. */
    args: Record<string, string>;
}

/** The images the fleet runs. */
export interface ImageSettings {
    /**
     * The vLLM image to pull. Defaults to `vllm/vllm-openai:v0.32.0` (gpu) or the CPU release image (cpu)
     * when `vllmBuild` is unset. Exactly one of `vllmImage` and `vllmBuild` is set.
     */
    vllmImage?: string;
    /** Build the vLLM image from a checkout instead. */
    vllmBuild?: VllmBuildSpec;
    /** Base of the balancer image. A Debian 12 image; defaults to `debian:12.12-slim`. */
    nginxBaseImage: string;
}

/** Proxy variables for image builds (build args) and containers (environment). Each defaults to unset. */
export interface ProxySettings {
    httpProxy?: string;
    httpsProxy?: string;
    /** `no_proxy`; localhost and 127.0.0.1 are always added. */
    noProxy?: string;
}

/** The nginx balancer in front of the replicas. */
export interface BalancerSettings {
    /** Balancing method. Defaults to `least_conn`. */
    method: Balancer;
    /**
     * `cache_aware`: the request header whose value keys a session (a conversation, a user); requests
     * without it are keyed by their leading content. Defaults to `x-user-id`.
     */
    sessionHeader: string;
    /**
     * `cache_aware`: a replica whose requests in flight would exceed `loadBound` x the mean is skipped for
     * the next one on the ring. At least 1. Defaults to 1.25.
     */
    loadBound: number;
    /** Seconds between active `/health` probes of every replica; two failures take it out of service, two passes bring it back. Defaults to 1. */
    healthCheckIntervalSeconds: number;
    /** Failed attempts within `failTimeoutSeconds` that take a replica out for `failTimeoutSeconds`. Defaults to 3. */
    maxFails: number;
    /** Defaults to 30. */
    failTimeoutSeconds: number;
    /** Longest silence from a replica before nginx gives up on a request (and for sends). Defaults to 3600. */
    readTimeoutSeconds: number;
    /** Longest wait for a connection to a replica before the next one is tried. Defaults to 5. */
    connectTimeoutSeconds: number;
    /** Largest request body accepted, in bytes. Defaults to 100m. */
    maxBodyBytes: number;
    /** Host port of the balancer. Defaults to 8000. */
    port: number;
    /** Host address the balancer is published on. Defaults to `0.0.0.0`. */
    bind: string;
    /**
     * nginx worker processes: a fixed number, not one per host CPU (Debian's `auto`; GPU hosts often have
     * 100+), each with room for 16384 connections. Defaults to 2.
     */
    workers: number;
}

/** One client key the balancer accepts, without the key itself (that stays a secret output). */
export interface ClientKeySettings {
    /** Written to the access log and sent to the replica as `X-Client-Name`; the key never is. */
    name: string;
    /** Requests per second this key may make; unset: no rate limit. */
    rps?: number;
    /** Requests above `rps` answered at once before 429s start. Defaults to `rps` rounded up when `rps` is set. */
    burst?: number;
    /** Requests of this key in flight at once (streams count until they end); unset: no limit. */
    concurrent?: number;
    /** The models (and adapters) this key may use, by the names clients send; unset: every one. Others get 403. */
    models?: string[];
}

export type TlsMode = "off" | "self-signed" | "provided";
export const TLS_MODES: readonly TlsMode[] = ["off", "self-signed", "provided"];

export type PlainHttp = "off" | "redirect";
export const PLAIN_HTTP: readonly PlainHttp[] = ["off", "redirect"];

/** TLS at the balancer. */
export interface TlsSettings {
    /** `off`, `self-signed` (a pair made in the balancer's container, for dev) or `provided` (`tlsCertificate` and `tlsKey`). Defaults to `off`. */
    mode: TlsMode;
    /** With TLS on: plain HTTP is `off` (not published) or `redirect`ed to HTTPS. Defaults to `off`. */
    http: PlainHttp;
    /** Host port of plain HTTP when `http` is `redirect`. Defaults to 80. */
    httpPort: number;
    /** Names and addresses of the self-signed certificate. Defaults to `localhost` and `127.0.0.1`. */
    hosts: string[];
}

/** What the balancer checks before any replica is chosen. */
export interface EdgeSettings {
    /** Client keys by name, with their limits; none: nginx checks no key (replicas may still check `apiKey`). */
    clients: ClientKeySettings[];
    /** The replicas check `apiKey`. Without client keys, the balancer then checks that key itself, on every forwarded path. */
    replicaKey: boolean;
    tls: TlsSettings;
    /** Serve a replica's `/metrics` through the balancer's public port. Defaults to false. */
    exposeMetrics: boolean;
}

/** How replicas are replaced when their settings change. */
export interface RolloutSettings {
    /** At most this many replicas out of rotation at once: a count, or a percentage such as `"25%"`. Defaults to 1. */
    maxUnavailable: number | string;
}

/** The stack's Docker network. */
export interface NetworkSettings {
    /** IPv4 subnet in CIDR form. Defaults to a /24 in 172.29.0.0/16 derived from the stack name. */
    subnet: string;
}

/** Everything the fleet is built from. */
export interface FleetSettings {
    /** Prefix of every container, network, volume and image name (the stack name), so stacks can share a host. */
    prefix: string;
    /** What the first model group's replicas serve (the one group's, for a stack without `models`). */
    serve: ServeSettings;
    /** The model groups, in order; a stack without `models` has one, `default`, from the top-level keys. */
    groups: ModelGroupSettings[];
    replica: ReplicaSettings;
    images: ImageSettings;
    proxy: ProxySettings;
    balancer: BalancerSettings;
    network: NetworkSettings;
    /** Every slot a replica can run in (configured entries, then spares) and how the balancer reaches it. */
    placement: Placement;
    rollout: RolloutSettings;
    /** Prometheus, the nginx exporter and Grafana. Off unless the stack turns them on. */
    monitoring: MonitoringSettings;
    /** Client keys, limits, TLS and what the public port refuses. */
    edge: EdgeSettings;
    /**
     * The Docker engine address of each host by host name: for `local`, the `docker:host` config when set,
     * else unset (the provider then uses `DOCKER_HOST` or the local socket).
     */
    engines: Record<string, string | undefined>;
}

/** Secrets of the fleet, as secret outputs so they stay encrypted in state. */
export interface FleetSecrets {
    /** Hugging Face token for gated models (`HF_TOKEN`). */
    hfToken?: pulumi.Output<string>;
    /** TLS material of `tcp://` engines, by host name (`hostTls`): which hosts have some is known, the material is secret. */
    hostTls?: Record<string, pulumi.Output<{ ca: string; cert: string; key: string }>>;
    /**
     * Key every replica checks (`VLLM_API_KEY`). Without client keys, clients send it; with them, the
     * balancer sends it to the replicas in place of the client's key.
     */
    apiKey?: pulumi.Output<string>;
    /** `clientKeys` as JSON text: a list of `{name, key, rps?, burst?, concurrent?, models?}`. */
    clientKeys?: pulumi.Output<string>;
    /** PEM certificate chain of the balancer (`tls.mode` `provided`). */
    tlsCertificate?: pulumi.Output<string>;
    /** PEM private key of `tlsCertificate`. */
    tlsKey?: pulumi.Output<string>;
    /**
     * A digest of the replicas' secret values (`hfToken`, `apiKey`), known before anything is created, so
     * that a change of one counts as a change of the replicas' settings when a rollout is planned. The
     * balancer's secrets are not in it: a new client key or certificate is a reload, not a rollout.
     * Defaults to none.
     */
    digest?: string;
}
