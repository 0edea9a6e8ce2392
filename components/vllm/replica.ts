import * as command from "@pulumi/command";
import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import { createHash } from "crypto";
import type { FleetSecrets, ReplicaSettings, ServeSettings } from "../config";
import { LABELS, labelList } from "../docker/labels";
import { lifecycle } from "../docker/lifecycle";
import type { Engine } from "../docker/providers";
import { VLLM_PORT, type ReplicaPlan } from "../planning";
import { rolloutScript, runRolloutScript } from "../rollout/scripts";
import { rotationEnvironment, type RotationTarget } from "../rollout/target";
import { applyTransform, type Transform } from "../transform";
import { HF_CACHE_PATH, REPLICA_HEALTH_PROBE, VLLM_CACHE_PATH, adapterMounts, loraEnv, replicaEnv, vllmServeArgs } from "./serve";

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
    /**
     * The balancer whose rotation the replica joins once `/health` answers, and leaves (drained of its
     * requests, up to `runtime.stopGraceSeconds`) before its container stops. Without one, the container's
     * own deploy waits for `/health`.
     */
    rotation?: RotationTarget;
    /** The Docker engine it runs on, and the address commands reach it at. Defaults to the default provider and engine. */
    engine?: Engine;
    /** Resources that must be ready before this replica starts (replica 0, so the model downloads once; its rollout step). */
    startAfter?: pulumi.Input<pulumi.Resource>[];
    /** Adjusts the children it creates (labels, extra mounts, ...). */
    transform?: { container?: Transform<docker.ContainerArgs> };
}

/**
 * One vLLM server in its own container, as the guide's `docker run ... vllm --model ...`: its GPUs (or
 * cores), the HF cache, a published port on the loopback, a fixed address on the stack's network, and a
 * deploy that returns only once `/health` answers and the balancer routes to it.
 */
export class VllmReplica extends pulumi.ComponentResource {
    readonly containerName: pulumi.Output<string>;
    readonly container: docker.Container;
    /** A digest of everything the container is created from: when it changes, the replica is replaced. */
    readonly spec: pulumi.Output<string>;
    /** The replica's place in the balancer's rotation: admitted when healthy, drained before it stops. */
    readonly member?: command.local.Command;

    constructor(name: string, args: VllmReplicaArgs, opts?: pulumi.ComponentResourceOptions) {
        super("vllm-nginx:replica:VllmReplica", name, {}, opts);

        const [containerName, containerArgs, containerOpts] = replicaContainer(name, args, { parent: this, provider: args.engine?.provider, dependsOn: args.startAfter });
        this.spec = replicaSpec(containerArgs);
        this.container = new docker.Container(
            containerName,
            {
                ...containerArgs,
                // A list of known labels and one whose value is known once the image is: policies read the others at preview.
                labels: [...(containerArgs.labels as docker.types.input.ContainerLabel[]), { label: LABELS.spec, value: this.spec }],
                // With a balancer, the rotation command waits for /health, and fails fast on a crash loop.
                wait: args.rotation === undefined,
            },
            containerOpts,
        );
        this.containerName = this.container.name;

        if (args.rotation) {
            const engine = args.engine?.address ?? "";
            // The replica's engine too: its state and its log are read there.
            this.member = new command.local.Command(
                `${name}-rotation`,
                {
                    create: runRolloutScript("member", "admit"),
                    delete: runRolloutScript("member", "retire"),
                    environment: pulumi
                        .all([rotationEnvironment(args.rotation, [args.engine]), this.container.name, this.container.id, engine])
                        .apply(([rotation, container, id, address]) => ({
                            ...rotation,
                            ROLLOUT_SH: rolloutScript("member"),
                            NAME: args.plan.name,
                            CONTAINER: container,
                            CONTAINER_ID: id,
                            ENGINE: address,
                            ADDRESS: args.plan.upstream,
                            STARTUP_TIMEOUT: String(args.runtime.startupTimeoutSeconds),
                            GRACE: String(args.runtime.stopGraceSeconds),
                        })),
                    // A new container is a new member: the old one's is retired (drained) first.
                    triggers: [this.container.id],
                },
                { parent: this, dependsOn: [this.container, args.rotation.installed] },
            );
        }

        this.registerOutputs({ containerName: this.containerName, spec: this.spec });
    }
}

/** The container a replica runs (name, args and options, after the transform), without its spec label. */
export function replicaContainer(
    name: string,
    args: VllmReplicaArgs,
    opts: pulumi.CustomResourceOptions = {},
): [string, docker.ContainerArgs, pulumi.CustomResourceOptions] {
    const { plan, runtime } = args;
    const gpu = runtime.backend === "gpu";
    return applyTransform(
        args.transform?.container,
        `${name}-container`,
        {
            name: `${args.prefix}-${plan.name}`,
            image: args.image,
            command: vllmServeArgs(args.serve, plan),
            // vLLM forks its engine and workers, and at shutdown kills those that linger. As the container's
            // PID 1 it never reaps them: Docker then cannot stop the container ("PID N is zombie and can not
            // be killed. Use the --init option"), and the rollout waits for it forever. Docker's init reaps
            // them, and hands vLLM the SIGTERM.
            init: true,
            envs: replicaEnv(runtime, plan, args.proxyEnv ?? {}, args.secrets ?? {}, { ...loraEnv(args.serve), ...args.serve.env }),
            ipcMode: runtime.ipcHost ? "host" : undefined,
            shmSize: Math.ceil(runtime.shmSizeBytes / (1024 * 1024)),
            deviceRequests: gpu ? [{ driver: "nvidia", deviceIds: plan.gpuIds, capabilities: ["gpu"] }] : undefined,
            cpuSet: plan.cpuSet,
            // vLLM's CPU backend binds OpenMP threads to cores and reads NUMA policy (vLLM's CPU docs).
            // Named as Docker reports them (CAP_...), so a refresh finds no difference.
            capabilities: gpu ? undefined : { adds: ["CAP_SYS_NICE"] },
            securityOpts: gpu ? undefined : ["seccomp=unconfined"],
            volumes: [
                { hostPath: runtime.hfCacheDir, containerPath: HF_CACHE_PATH },
                { volumeName: args.compileCacheVolume, containerPath: VLLM_CACHE_PATH },
                ...adapterMounts(args.serve),
            ],
            networksAdvanced: [{ name: args.networkName, aliases: [plan.name], ipv4Address: plan.ip }],
            // A replica of another host publishes nothing: its host's gate reaches it (components/relay).
            ports: plan.publish === undefined ? undefined : [{ internal: VLLM_PORT, external: plan.hostPort, ip: plan.publish }],
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
        opts,
    );
}

/**
 * A digest of a container's args: the replica's spec. It is a label of the container, so the rollout
 * tells a running replica that must be replaced from one that already runs what is deployed.
 */
export function replicaSpec(containerArgs: docker.ContainerArgs): pulumi.Output<string> {
    return pulumi.unsecret(pulumi.output(containerArgs)).apply((resolved) => createHash("sha256").update(stableJson(resolved)).digest("hex").slice(0, 16));
}

function stableJson(value: unknown): string {
    if (Array.isArray(value)) {
        return `[${value.map(stableJson).join(",")}]`;
    }
    if (value !== null && typeof value === "object") {
        return `{${Object.keys(value)
            .sort()
            .filter((key) => (value as Record<string, unknown>)[key] !== undefined)
            .map((key) => `${JSON.stringify(key)}:${stableJson((value as Record<string, unknown>)[key])}`)
            .join(",")}}`;
    }
    return JSON.stringify(value);
}
