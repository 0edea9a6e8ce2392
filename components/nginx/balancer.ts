import * as command from "@pulumi/command";
import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import type { BalancerSettings, EdgeSettings, ReplicaSettings } from "../config";
import { labelList } from "../docker/labels";
import { lifecycle } from "../docker/lifecycle";
import type { Engine } from "../docker/providers";
import { envList } from "../docker/proxy";
import { rolloutScript, runRolloutScript } from "../rollout/scripts";
import { rotationEnvironment, type RotationTarget } from "../rollout/target";
import { EDGE_DIR } from "../edge/render";
import { OPEN_EDGE_SETTINGS, edgeInstallCommand, edgeLabels, edgePorts, edgeRenewCommand, emptyEdgeBundle } from "../edge/wiring";
import { afterEveryUp } from "../rollout/afterUp";
import { applyTransform, type Transform } from "../transform";
import { BALANCER_HEALTH_PROBE } from "./control";
import type { ConfigTemplate } from "./render";

export interface NginxBalancerArgs {
    /** Prefix of the container's name (the stack name). */
    prefix: string;
    /** The balancer image (an image ID, see `NginxImage`). */
    image: pulumi.Input<string>;
    /** The network the replicas are on. */
    networkName: pulumi.Input<string>;
    /** Where the balancer is published on its host: `port` (default 8000) on `bind` (default `0.0.0.0`). */
    publish: Pick<BalancerSettings, "port" | "bind">;
    /** The rendered config template (see `renderTemplate`); replicas join its rotation as they pass /health. */
    config: pulumi.Input<ConfigTemplate>;
    /**
     * The front door: its settings (ports, labels, the TLS mode) and its secret files as one secret text
     * (`edgeSecretBundle`), installed before the config that reads them. Defaults to no keys and no TLS.
     */
    edge?: { settings: EdgeSettings; bundle: pulumi.Input<string> };
    /** Proxy variables for the container's environment. Defaults to none. */
    proxyEnv?: Record<string, string>;
    /** How the container stops and restarts: `stopGraceSeconds` (default 120) and `restartPolicy` (default `unless-stopped`). */
    lifecycle: Pick<ReplicaSettings, "stopGraceSeconds" | "restartPolicy">;
    /** nginx worker processes (`lbWorkers`). Defaults to 2. */
    workers?: number;
    /** The Docker engine it runs on, and the address commands reach it at. Defaults to the default provider and engine. */
    engine?: Engine;
    /** Adjusts the children it creates. */
    transform?: { container?: Transform<docker.ContainerArgs> };
}

/**
 * The nginx balancer: a long-lived container whose config is replaced and reloaded in place on every
 * change, so that changing the replica list or the balancing settings never restarts it. Replicas enter
 * and leave its rotation through `rotation` (see `VllmReplica`), each with a reload.
 */
export class NginxBalancer extends pulumi.ComponentResource {
    readonly containerName: pulumi.Output<string>;
    /** The id of the config template, known once the install command has seen nginx serve it. */
    readonly configId: pulumi.Output<string>;
    readonly container: docker.Container;
    /** Installs the front door's secret files (client keys, the replicas' key, a TLS pair) and reloads. */
    readonly installEdge: command.local.Command;
    readonly installConfig: command.local.Command;
    /** What replicas need to join and leave this balancer's rotation. */
    readonly rotation: RotationTarget;
    /** What the certificate check at the end of this `up` said (a renewal, a warning); empty without TLS or in a preview. */
    readonly certificateChecked: pulumi.Output<string>;

    constructor(name: string, args: NginxBalancerArgs, opts?: pulumi.ComponentResourceOptions) {
        super("vllm-nginx:balancer:NginxBalancer", name, {}, opts);
        const childOpts = { parent: this, provider: args.engine?.provider };
        const config = pulumi.output(args.config);
        const edge = args.edge?.settings ?? OPEN_EDGE_SETTINGS;

        // The front door's files outlive a container replaced for a new image: a self-signed certificate
        // clients trust stays the same. The edge install writes them again all the same.
        const edgeFiles = new docker.Volume(`${name}-edge`, { name: `${args.prefix}-nginx-edge`, labels: labelList({ stack: args.prefix }) }, childOpts);

        this.container = new docker.Container(
            ...applyTransform(
                args.transform?.container,
                `${name}-container`,
                {
                    name: `${args.prefix}-nginx-lb`,
                    image: args.image,
                    command: nginxCommand(args.workers ?? 2),
                    envs: envList(args.proxyEnv ?? {}),
                    networksAdvanced: [{ name: args.networkName, aliases: ["nginx-lb"] }],
                    ports: edgePorts(edge, args.publish),
                    volumes: [{ volumeName: edgeFiles.name, containerPath: EDGE_DIR }],
                    // SIGQUIT is nginx's graceful shutdown: open requests are finished first.
                    stopSignal: "SIGQUIT",
                    ...lifecycle({
                        prefix: args.prefix,
                        role: "balancer",
                        healthProbe: BALANCER_HEALTH_PROBE,
                        probeTimeoutSeconds: 3,
                        startPeriodSeconds: 30,
                        waitSeconds: 120,
                        restartPolicy: args.lifecycle.restartPolicy,
                        stopGraceSeconds: args.lifecycle.stopGraceSeconds,
                        extraLabels: labelList(edgeLabels(edge)),
                    }),
                    // The config command waits for nginx to answer, sooner than Docker's first healthcheck: a new
                    // balancer (a new image) serves again within a second or two of its start.
                    wait: false,
                },
                childOpts,
            ),
        );
        this.containerName = this.container.name;

        const own: RotationTarget = { container: this.container.name, engine: args.engine, installed: this.container };
        // The key maps, the replicas' key and the TLS pair, before the config that includes them; again on a
        // new container, whose files start empty. A change of keys or certificate is a reload.
        const install = edgeInstallCommand(edge, rotationEnvironment(own));
        this.installEdge = new command.local.Command(
            `${name}-edge`,
            {
                create: install.create,
                update: install.create,
                stdin: pulumi.secret(args.edge?.bundle ?? emptyEdgeBundle()),
                environment: install.environment,
                triggers: [this.container.id],
            },
            { parent: this, dependsOn: [this.container], additionalSecretOutputs: ["stdout", "stderr"] },
        );
        this.installConfig = new command.local.Command(
            `${name}-config`,
            {
                create: runRolloutScript("install"),
                update: runRolloutScript("install"),
                stdin: config.template,
                environment: pulumi.all([rotationEnvironment(own), config.id]).apply(([rotation, id]) => ({ ...rotation, ROLLOUT_SH: rolloutScript("install"), CONFIG_ID: id })),
                // A new container starts from the image's bootstrap config: install the config again.
                triggers: [this.container.id],
            },
            { parent: this, dependsOn: [this.container, this.installEdge] },
        );
        this.configId = pulumi.all([config.id, this.installConfig.stdout]).apply(([id]) => id);
        this.rotation = { container: this.container.name, engine: args.engine, installed: this.installConfig };

        // Nothing else changes with time: at the end of every `up`, a self-signed pair near its end is renewed.
        const renew = edgeRenewCommand(edge, rotationEnvironment(own));
        this.certificateChecked = renew
            ? afterEveryUp({ what: "checking the balancer's TLS certificate", ...renew, after: [this.installEdge, this.installConfig], parent: this })
            : pulumi.output("");

        this.registerOutputs({ containerName: this.containerName, configId: this.configId, certificateChecked: this.certificateChecked });
    }
}

/**
 * The balancer container's command: nginx in the foreground with `workers` worker processes, a main-context
 * directive the image's nginx.conf leaves to it; nginx keeps it across reloads.
 */
export function nginxCommand(workers: number): string[] {
    return ["nginx", "-g", `daemon off; worker_processes ${workers};`];
}
