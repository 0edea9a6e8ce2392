import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import type { Backend, FleetSecrets, RestartPolicy } from "./config";
import { ReplicaPlan, VLLM_PORT } from "./placement";
import { lifecycle } from "./lifecycle";
import { envList } from "./proxy";

/** Where the Hugging Face cache is mounted in the container, as in vLLM's docs. */
export const HF_CACHE_PATH = "/root/.cache/huggingface";
/** vLLM's compile cache (torch.compile artifacts), shared by the replicas through a volume. */
export const VLLM_CACHE_PATH = "/root/.cache/vllm";

export interface VllmReplicaArgs {
    /** Prefix of the container's name (the stack name). */
    prefix: string;
    plan: ReplicaPlan;
    backend: Backend;
    /** The image to run (an image ID). */
    image: pulumi.Input<string>;
    model: string;
    servedModelName?: string;
    /** Extra `vllm serve` flags, after the ones the program sets. */
    vllmArgs: string[];
    networkName: pulumi.Input<string>;
    /** Host folder of the Hugging Face cache. */
    hfCacheDir: string;
    /** Docker volume for vLLM's compile cache. */
    compileCacheVolume: pulumi.Input<string>;
    /** `HF_TOKEN` and `VLLM_API_KEY`; the environment is kept secret in state when either is set. */
    secrets: FleetSecrets;
    /** Proxy variables for the container's environment. */
    proxyEnv: Record<string, string>;
    /** GiB of KV cache on the CPU backend. */
    cpuKvCacheSpace: number;
    /** Host address the replica's port is published on. */
    portBind: string;
    shmSizeBytes: number;
    ipcHost: boolean;
    /** How long the deploy waits for `/health` to answer before failing, in seconds. */
    startupTimeoutSeconds: number;
    /** How long a stopping replica may take to finish its in-flight requests, in seconds. */
    stopGraceSeconds: number;
    restartPolicy: RestartPolicy;
    /** Resources that must be ready before this replica starts (replica 0, so the model downloads once). */
    startAfter?: pulumi.Input<pulumi.Resource>[];
}

/**
 * Probes vLLM's `/health` from inside the container, with curl where the image has it and Python (which
 * every vLLM image has) otherwise. Proxies are bypassed: the probe talks to the loopback.
 */
export const REPLICA_HEALTH_PROBE =
    `curl -fsS --noproxy '*' -o /dev/null http://127.0.0.1:${VLLM_PORT}/health || ` +
    `python3 -c "import urllib.request as r; r.build_opener(r.ProxyHandler({})).open('http://127.0.0.1:${VLLM_PORT}/health', timeout=4)"`;

/**
 * One vLLM server in its own container, as the guide's `docker run ... vllm --model ...`: its GPUs (or
 * cores), the HF cache, a published port on the loopback, a fixed address on the stack's network, and a
 * deploy that returns only once `/health` answers.
 */
export class VllmReplica extends pulumi.ComponentResource {
    readonly containerName: pulumi.Output<string>;
    readonly container: docker.Container;

    constructor(name: string, args: VllmReplicaArgs, opts?: pulumi.ComponentResourceOptions) {
        super("vllm-nginx:replica:VllmReplica", name, {}, opts);

        const { plan } = args;
        const gpu = args.backend === "gpu";

        this.container = new docker.Container(
            `${name}-container`,
            {
                name: `${args.prefix}-${plan.alias}`,
                image: args.image,
                command: vllmServeArgs(args),
                envs: replicaEnv(args),
                ipcMode: args.ipcHost ? "host" : undefined,
                shmSize: Math.ceil(args.shmSizeBytes / (1024 * 1024)),
                deviceRequests: gpu ? [{ driver: "nvidia", deviceIds: plan.gpuIds, capabilities: ["gpu"] }] : undefined,
                cpuSet: plan.cpuSet,
                // vLLM's CPU backend binds OpenMP threads to cores and reads NUMA policy (vLLM's CPU docs).
                capabilities: gpu ? undefined : { adds: ["SYS_NICE"] },
                securityOpts: gpu ? undefined : ["seccomp=unconfined"],
                volumes: [
                    { hostPath: args.hfCacheDir, containerPath: HF_CACHE_PATH },
                    { volumeName: args.compileCacheVolume, containerPath: VLLM_CACHE_PATH },
                ],
                networksAdvanced: [{ name: args.networkName, aliases: [plan.alias], ipv4Address: plan.ip }],
                ports: [{ internal: VLLM_PORT, external: plan.hostPort, ip: args.portBind }],
                // SIGTERM, then stopGraceSeconds to finish in-flight requests, then SIGKILL.
                ...lifecycle({
                    prefix: args.prefix,
                    role: "replica",
                    healthProbe: REPLICA_HEALTH_PROBE,
                    probeTimeoutSeconds: 5,
                    // Loading a model takes minutes; failed probes until then do not count.
                    startPeriodSeconds: args.startupTimeoutSeconds,
                    waitSeconds: args.startupTimeoutSeconds,
                    restartPolicy: args.restartPolicy,
                    stopGraceSeconds: args.stopGraceSeconds,
                    extraLabels: [{ label: "vllm-nginx.replica", value: plan.alias }],
                }),
            },
            { parent: this, dependsOn: args.startAfter },
        );
        this.containerName = this.container.name;

        this.registerOutputs({ containerName: this.containerName });
    }
}

/** The arguments after the image's `vllm serve` entrypoint: the model first, then flags. */
export function vllmServeArgs(args: Pick<VllmReplicaArgs, "model" | "servedModelName" | "plan" | "vllmArgs">): string[] {
    return [
        args.model,
        "--host",
        "0.0.0.0",
        "--port",
        String(VLLM_PORT),
        ...(args.servedModelName ? ["--served-model-name", args.servedModelName] : []),
        ...(args.plan.tensorParallelSize > 1 ? ["--tensor-parallel-size", String(args.plan.tensorParallelSize)] : []),
        ...args.vllmArgs,
    ];
}

/** The container's environment; secret when it carries the HF token or the API key. */
export function replicaEnv(
    args: Pick<VllmReplicaArgs, "backend" | "plan" | "cpuKvCacheSpace" | "proxyEnv" | "secrets">,
): pulumi.Input<string[]> {
    const plain = [
        ...(args.backend === "gpu"
            ? // Docker and CUDA number GPUs differently unless told to use PCI order (vllm#28132).
              ["CUDA_DEVICE_ORDER=PCI_BUS_ID"]
            : [`VLLM_CPU_KVCACHE_SPACE=${args.cpuKvCacheSpace}`, `VLLM_CPU_OMP_THREADS_BIND=${args.plan.threadsBind ?? "auto"}`]),
        ...envList(args.proxyEnv),
    ];
    const secretVars = Object.entries({ HF_TOKEN: args.secrets.hfToken, VLLM_API_KEY: args.secrets.apiKey }).filter(
        (entry): entry is [string, pulumi.Output<string>] => entry[1] !== undefined,
    );
    if (secretVars.length === 0) {
        return plain;
    }
    return pulumi.secret(pulumi.all(secretVars.map(([name, value]) => pulumi.interpolate`${name}=${value}`)).apply((vars) => [...plain, ...vars]));
}
