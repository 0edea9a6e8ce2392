/**
 * The stack config contract: every key, its default, and the validation that runs at preview time,
 * before any resource is created. Pure code: no Pulumi runtime is needed to call it.
 */
import type * as pulumi from "@pulumi/pulumi";
import * as os from "os";
import * as path from "path";
import { DURATION_FORMS, SIZE_FORMS, parseDurationSeconds, parseSizeBytes } from "./units";
import { ReplicaPlan, planReplicas } from "./placement";

/** The config namespace, which is the project name in `Pulumi.yaml`. */
export const CONFIG_NAMESPACE = "vllm-nginx";

export type Backend = "gpu" | "cpu";
export const BACKENDS: readonly Backend[] = ["gpu", "cpu"];

export type Balancer = "least_conn" | "round_robin" | "random_two_least_conn";
export const BALANCERS: readonly Balancer[] = ["least_conn", "round_robin", "random_two_least_conn"];

/** How to build the vLLM image from a vLLM checkout, as the guide does with `docker build`. */
export interface VllmBuildSpec {
    /** Path of the checkout (the build context), relative to the project folder or absolute. */
    context: string;
    /** Dockerfile path, relative to `context`. Defaults to `docker/Dockerfile`. */
    dockerfile: string;
    /** Build target. Defaults to `vllm-openai`. */
    target?: string;
    /** Extra build args (`CUDA_VERSION`, `max_jobs`, ...). Proxy args are added from `httpProxy`/`httpsProxy`. */
    args: Record<string, string>;
}

export interface ProxySettings {
    httpProxy?: string;
    httpsProxy?: string;
    noProxy?: string;
}

/** The validated, fully defaulted fleet settings that the components are built from. */
export interface FleetSettings {
    /** Prefix of every container, network, volume and image name, so several stacks can share a host. */
    prefix: string;
    model: string;
    servedModelName?: string;
    backend: Backend;
    replicas: ReplicaPlan[];
    /** GiB of KV cache for each CPU replica (`VLLM_CPU_KVCACHE_SPACE`). */
    cpuKvCacheSpace: number;
    vllmImage?: string;
    vllmBuild?: VllmBuildSpec;
    proxy: ProxySettings;
    hfCacheDir: string;
    vllmArgs: string[];
    lbPort: number;
    lbBind: string;
    replicaPortBase: number;
    replicaPortBind: string;
    balancer: Balancer;
    maxFails: number;
    failTimeoutSeconds: number;
    readTimeoutSeconds: number;
    connectTimeoutSeconds: number;
    maxBodyBytes: number;
    nginxBaseImage: string;
    shmSizeBytes: number;
    ipcHost: boolean;
    startupTimeoutSeconds: number;
    stopGraceSeconds: number;
    warmFirstReplica: boolean;
    networkSubnet: string;
    restartPolicy: RestartPolicy;
}

export type RestartPolicy = "no" | "on-failure" | "always" | "unless-stopped";
export const RESTART_POLICIES: readonly RestartPolicy[] = ["no", "on-failure", "always", "unless-stopped"];

/** Defaults, applied here and declared again (and checked against these) in `Pulumi.yaml`. */
export const DEFAULTS = {
    backend: "gpu" as Backend,
    replicas: 1,
    cpuKvCacheSpace: 4,
    cpuThreadsBind: "auto",
    gpuImage: "vllm/vllm-openai:v0.11.0",
    cpuImage: "public.ecr.aws/q9t5s3a7/vllm-cpu-release-repo:v0.11.0",
    vllmBuildDockerfile: "docker/Dockerfile",
    vllmBuildTarget: "vllm-openai",
    hfCacheDir: "~/.cache/huggingface",
    lbPort: 8000,
    lbBind: "0.0.0.0",
    replicaPortBase: 8081,
    replicaPortBind: "127.0.0.1",
    balancer: "least_conn" as Balancer,
    maxFails: 3,
    failTimeout: "30s",
    readTimeout: "3600s",
    connectTimeout: "5s",
    maxBodySize: "100m",
    nginxBaseImage: "nginx:1.28.0",
    shmSize: "10.24gb",
    ipcHost: true,
    startupTimeout: "30m",
    stopGracePeriod: "120s",
    warmFirstReplica: true,
    restartPolicy: "unless-stopped" as RestartPolicy,
} as const;

/** Raw config values by key (without namespace), as read from the stack. */
export type RawConfig = Record<string, unknown>;

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
    "replicaPortBase",
    "replicaPortBind",
    "balancer",
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
] as const;

/**
 * Keys read as secrets and never as plain values. Not declared in `Pulumi.yaml`: the CLI requires
 * every declared secret to be set, and these are optional.
 */
export const SECRET_CONFIG_KEYS: readonly string[] = ["hfToken", "apiKey"];

/** Secrets of the fleet, as secret outputs so they stay encrypted in state. */
export interface FleetSecrets {
    /** Hugging Face token for gated models (`HF_TOKEN`). */
    hfToken?: pulumi.Output<string>;
    /** Key clients must send as `Authorization: Bearer <key>` (`VLLM_API_KEY`). */
    apiKey?: pulumi.Output<string>;
}

/** One problem with one key: what was given and what is allowed. */
export interface ConfigProblem {
    key: string;
    value: unknown;
    allowed: string;
}

/** Thrown with every problem found, so a user fixes them all in one go. */
export class FleetConfigError extends Error {
    constructor(readonly problems: ConfigProblem[]) {
        super(
            `invalid stack config (${problems.length} problem${problems.length === 1 ? "" : "s"}):\n` +
                problems.map((p) => `  - ${CONFIG_NAMESPACE}:${p.key} = ${show(p.value)}: ${p.allowed}`).join("\n"),
        );
        this.name = "FleetConfigError";
    }
}

function show(value: unknown): string {
    return value === undefined ? "(not set)" : JSON.stringify(value);
}

/** Collects problems while reading keys, so validation reports all of them at once. */
export class ConfigReader {
    readonly problems: ConfigProblem[] = [];

    constructor(private readonly raw: RawConfig) {}

    /** Whether a key is set: `Pulumi.yaml` declares "" and [] as the defaults of optional keys. */
    has(key: string): boolean {
        const value = this.raw[key];
        return value !== undefined && value !== null && value !== "" && !(Array.isArray(value) && value.length === 0);
    }

    value(key: string): unknown {
        return this.has(key) ? this.raw[key] : undefined;
    }

    problem(key: string, value: unknown, allowed: string): void {
        this.problems.push({ key, value, allowed });
    }

    string(key: string, fallback: string): string;
    string(key: string): string | undefined;
    string(key: string, fallback?: string): string | undefined {
        const value = this.value(key);
        if (value === undefined) {
            return fallback;
        }
        if (typeof value !== "string" && typeof value !== "number") {
            this.problem(key, value, "a string");
            return fallback;
        }
        return String(value);
    }

    oneOf<T extends string>(key: string, allowed: readonly T[], fallback: T): T {
        const value = this.string(key, fallback);
        if (!(allowed as readonly string[]).includes(value)) {
            this.problem(key, value, `one of ${allowed.map((a) => `"${a}"`).join(", ")}`);
            return fallback;
        }
        return value as T;
    }

    integer(key: string, fallback: number, min: number, max: number): number {
        const value = this.value(key);
        if (value === undefined) {
            return fallback;
        }
        const number = typeof value === "number" ? value : typeof value === "string" && /^-?\d+$/.test(value.trim()) ? Number(value) : NaN;
        if (!Number.isInteger(number) || number < min || number > max) {
            this.problem(key, value, `a whole number from ${min} to ${max}`);
            return fallback;
        }
        return number;
    }

    boolean(key: string, fallback: boolean): boolean {
        const value = this.value(key);
        if (value === undefined) {
            return fallback;
        }
        if (value === true || value === "true") {
            return true;
        }
        if (value === false || value === "false") {
            return false;
        }
        this.problem(key, value, "true or false");
        return fallback;
    }

    duration(key: string, fallback: string, minSeconds = 0): number {
        const text = this.string(key, fallback);
        const seconds = parseDurationSeconds(text);
        if (seconds === undefined || seconds < minSeconds) {
            this.problem(key, text, `a duration of at least ${minSeconds}s: ${DURATION_FORMS}`);
            return parseDurationSeconds(fallback)!;
        }
        return seconds;
    }

    size(key: string, fallback: string): number {
        const text = this.string(key, fallback);
        const bytes = parseSizeBytes(text);
        if (bytes === undefined || bytes <= 0) {
            this.problem(key, text, `a size: ${SIZE_FORMS}`);
            return parseSizeBytes(fallback)!;
        }
        return bytes;
    }

    stringList(key: string): string[] | undefined {
        const value = this.value(key);
        if (value === undefined) {
            return undefined;
        }
        if (!Array.isArray(value) || !value.every((v) => typeof v === "string" || typeof v === "number")) {
            this.problem(key, value, "a list of strings");
            return undefined;
        }
        return value.map(String);
    }

    ipv4(key: string, fallback: string): string {
        const text = this.string(key, fallback);
        if (!isIpv4(text)) {
            this.problem(key, text, 'an IPv4 address, e.g. "127.0.0.1" or "0.0.0.0"');
            return fallback;
        }
        return text;
    }
}

export function isIpv4(text: string): boolean {
    const parts = text.split(".");
    return parts.length === 4 && parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255);
}

/**
 * Validates raw stack config and applies every default. Throws {@link FleetConfigError} listing every
 * problem found; returns settings that the components can use without further checks.
 *
 * @param stack the stack name, used as the prefix of every name on the Docker host.
 */
export function parseFleetConfig(raw: RawConfig, stack: string): FleetSettings {
    const read = new ConfigReader(raw);

    for (const key of Object.keys(raw)) {
        if (!(CONFIG_KEYS as readonly string[]).includes(key)) {
            read.problem(key, raw[key], `not a known key; known keys are ${CONFIG_KEYS.join(", ")}`);
        }
    }

    const model = read.string("model");
    if (model === undefined) {
        read.problem("model", undefined, 'required: the Hugging Face model id to serve, e.g. "meta-llama/Llama-2-7b-chat-hf"');
    }

    const backend = read.oneOf("backend", BACKENDS, DEFAULTS.backend);
    const vllmImage = read.string("vllmImage");
    const vllmBuild = readVllmBuild(read);
    if (vllmImage !== undefined && read.has("vllmBuild")) {
        read.problem("vllmBuild", read.value("vllmBuild"), "not allowed together with vllmImage: set one of vllmImage (pull) or vllmBuild (build)");
    }

    const lbPort = read.integer("lbPort", DEFAULTS.lbPort, 1, 65535);
    const replicaPortBase = read.integer("replicaPortBase", DEFAULTS.replicaPortBase, 1, 65535);
    const networkSubnet = read.string("networkSubnet", defaultSubnet(stack));

    const replicas = planReplicas(read, backend, { lbPort, replicaPortBase, networkSubnet });

    const settings: FleetSettings = {
        prefix: stack,
        model: model ?? "",
        servedModelName: read.string("servedModelName"),
        backend,
        replicas,
        cpuKvCacheSpace: read.integer("cpuKvCacheSpace", DEFAULTS.cpuKvCacheSpace, 1, 4096),
        vllmImage: vllmImage ?? (vllmBuild ? undefined : backend === "gpu" ? DEFAULTS.gpuImage : DEFAULTS.cpuImage),
        vllmBuild,
        proxy: {
            httpProxy: read.string("httpProxy"),
            httpsProxy: read.string("httpsProxy"),
            noProxy: read.string("noProxy"),
        },
        hfCacheDir: expandHome(read.string("hfCacheDir", DEFAULTS.hfCacheDir)),
        vllmArgs: read.stringList("vllmArgs") ?? [],
        lbPort,
        lbBind: read.ipv4("lbBind", DEFAULTS.lbBind),
        replicaPortBase,
        replicaPortBind: read.ipv4("replicaPortBind", DEFAULTS.replicaPortBind),
        balancer: read.oneOf("balancer", BALANCERS, DEFAULTS.balancer),
        maxFails: read.integer("maxFails", DEFAULTS.maxFails, 0, 1000),
        failTimeoutSeconds: read.duration("failTimeout", DEFAULTS.failTimeout, 1),
        readTimeoutSeconds: read.duration("readTimeout", DEFAULTS.readTimeout, 1),
        connectTimeoutSeconds: read.duration("connectTimeout", DEFAULTS.connectTimeout, 1),
        maxBodyBytes: read.size("maxBodySize", DEFAULTS.maxBodySize),
        nginxBaseImage: read.string("nginxBaseImage", DEFAULTS.nginxBaseImage),
        shmSizeBytes: read.size("shmSize", DEFAULTS.shmSize),
        ipcHost: read.boolean("ipcHost", DEFAULTS.ipcHost),
        startupTimeoutSeconds: read.duration("startupTimeout", DEFAULTS.startupTimeout, 10),
        stopGraceSeconds: read.duration("stopGracePeriod", DEFAULTS.stopGracePeriod, 0),
        warmFirstReplica: read.boolean("warmFirstReplica", DEFAULTS.warmFirstReplica),
        networkSubnet,
        restartPolicy: read.oneOf("restartPolicy", RESTART_POLICIES, DEFAULTS.restartPolicy),
    };

    if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(stack)) {
        read.problem("(stack name)", stack, "a stack name usable in Docker names: letters, digits, '_', '.', '-'");
    }
    if (read.problems.length > 0) {
        throw new FleetConfigError(read.problems);
    }
    return settings;
}

function readVllmBuild(read: ConfigReader): VllmBuildSpec | undefined {
    const value = read.value("vllmBuild");
    if (value === undefined) {
        return undefined;
    }
    const allowed = 'an object {context, dockerfile?, target?, args?}, e.g. {"context": "../vllm", "dockerfile": "docker/Dockerfile"}';
    if (typeof value !== "object" || Array.isArray(value) || value === null) {
        read.problem("vllmBuild", value, allowed);
        return undefined;
    }
    const spec = value as Record<string, unknown>;
    const unknownFields = Object.keys(spec).filter((k) => !["context", "dockerfile", "target", "args"].includes(k));
    const argsOk =
        spec.args === undefined ||
        (typeof spec.args === "object" && spec.args !== null && !Array.isArray(spec.args) && Object.values(spec.args).every((v) => typeof v === "string" || typeof v === "number"));
    if (
        typeof spec.context !== "string" ||
        spec.context === "" ||
        (spec.dockerfile !== undefined && typeof spec.dockerfile !== "string") ||
        (spec.target !== undefined && typeof spec.target !== "string") ||
        !argsOk ||
        unknownFields.length > 0
    ) {
        read.problem("vllmBuild", value, allowed);
        return undefined;
    }
    return {
        context: spec.context,
        dockerfile: (spec.dockerfile as string | undefined) ?? DEFAULTS.vllmBuildDockerfile,
        target: (spec.target as string | undefined) ?? DEFAULTS.vllmBuildTarget,
        args: Object.fromEntries(Object.entries((spec.args as Record<string, unknown> | undefined) ?? {}).map(([k, v]) => [k, String(v)])),
    };
}

/**
 * A /24 for the stack's network, derived from the stack name so that stacks on one host get different
 * subnets. Replicas get fixed addresses in it, so nginx never has to resolve a replica's name.
 */
export function defaultSubnet(stack: string): string {
    let hash = 2166136261;
    for (const char of stack) {
        hash = Math.imul(hash ^ char.charCodeAt(0), 16777619) >>> 0;
    }
    return `172.29.${hash % 256}.0/24`;
}

function expandHome(dir: string): string {
    if (dir === "~") {
        return os.homedir();
    }
    return dir.startsWith("~/") ? path.join(os.homedir(), dir.slice(2)) : dir;
}
