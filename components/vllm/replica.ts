import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import type { FleetSecrets, ReplicaSettings, ServeSettings } from "../config";
import { labelList } from "../docker/labels";
import { lifecycle } from "../docker/lifecycle";
import { VLLM_PORT, type ReplicaPlan } from "../planning";
import { applyTransform, type Transform } from "../transform";
import { HF_CACHE_PATH, REPLICA_HEALTH_PROBE, VLLM_CACHE_PATH, replicaEnv, vllmServeArgs } from "./serve";

export interface VllmReplicaArgs {
    /** Prefix of the container's name (the stack name). */
    prefix: string;
    /** Where the replica runs: its GPUs or cores, host port and address (see `planPlacement`). */
    plan: ReplicaPlan;
    /** What it serves: the model, `--served-model-name`, extra flags. */
    serve: ServeSettings;
    /** How it runs: backend, caches, shm, IPC, timeouts, restart policy (each with the default `parseFleetConfig` applies). */
    runtime: ReplicaSettings;
    /** The image to run (an image ID, see `VllmImage`). */
    image: pulumi.Input<string>;
    /** The network the balancer reaches the replica on. */
    networkName: pulumi.Input<string>;
    /** Docker volume for vLLM's compile cache, shared by the replicas of a host. */
    compileCacheVolume: pulumi.Input<string>;
    /** `HF_TOKEN` and `VLLM_API_KEY`; the environment is kept secret in state when either is set. Defaults to none. */
    secrets?: FleetSecrets;
    /** Proxy variables for the container's environment. Defaults to none. */
    proxyEnv?: Record<string, string>;
    /** Resources that must be ready before this replica starts (replica 0, so the model downloads once). */
    startAfter?: pulumi.Input<pulumi.Resource>[];
    /** Adjusts the children it creates (labels, extra mounts, ...). */
    transform?: { container?: Transform<docker.ContainerArgs> };
}

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

        const { plan, runtime } = args;
        const gpu = runtime.backend === "gpu";

        this.container = new docker.Container(
            ...applyTransform(
                args.transform?.container,
                `${name}-container`,
                {
                    name: `${args.prefix}-${plan.name}`,
                    image: args.image,
                    command: vllmServeArgs(args.serve, plan),
                    envs: replicaEnv(runtime, plan, args.proxyEnv ?? {}, args.secrets ?? {}),
                    ipcMode: runtime.ipcHost ? "host" : undefined,
                    shmSize: Math.ceil(runtime.shmSizeBytes / (1024 * 1024)),
                    deviceRequests: gpu ? [{ driver: "nvidia", deviceIds: plan.gpuIds, capabilities: ["gpu"] }] : undefined,
                    cpuSet: plan.cpuSet,
                    // vLLM's CPU backend binds OpenMP threads to cores and reads NUMA policy (vLLM's CPU docs).
                    capabilities: gpu ? undefined : { adds: ["SYS_NICE"] },
                    securityOpts: gpu ? undefined : ["seccomp=unconfined"],
                    volumes: [
                        { hostPath: runtime.hfCacheDir, containerPath: HF_CACHE_PATH },
                        { volumeName: args.compileCacheVolume, containerPath: VLLM_CACHE_PATH },
                    ],
                    networksAdvanced: [{ name: args.networkName, aliases: [plan.name], ipv4Address: plan.ip }],
                    ports: [{ internal: VLLM_PORT, external: plan.hostPort, ip: runtime.portBind }],
                    // SIGTERM, then stopGraceSeconds, then SIGKILL.
                    ...lifecycle({
                        prefix: args.prefix,
                        role: "replica",
                        healthProbe: REPLICA_HEALTH_PROBE,
                        probeTimeoutSeconds: 5,
                        // Loading a model takes minutes; failed probes until then do not count.
                        startPeriodSeconds: runtime.startupTimeoutSeconds,
                        waitSeconds: runtime.startupTimeoutSeconds,
                        restartPolicy: runtime.restartPolicy,
                        stopGraceSeconds: runtime.stopGraceSeconds,
                        extraLabels: labelList({
                            replica: plan.name,
                            host: plan.host,
                            gpus: gpu ? plan.gpuIds.join(",") : undefined,
                            model: args.serve.model,
                            startupTimeout: String(runtime.startupTimeoutSeconds),
                        }),
                    }),
                },
                { parent: this, dependsOn: args.startAfter },
            ),
        );
        this.containerName = this.container.name;

        this.registerOutputs({ containerName: this.containerName });
    }
}
