import * as command from "@pulumi/command";
import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import type { BalancerSettings, ReplicaSettings } from "../config";
import { labelList } from "../docker/labels";
import { lifecycle } from "../docker/lifecycle";
import { engineEnvironment } from "../docker/providers";
import { envList } from "../docker/proxy";
import { applyTransform, type Transform } from "../transform";
import { BALANCER_HEALTH_PROBE, INSTALL_CONFIG_SCRIPT } from "./control";
import { BALANCER_CONTAINER_PORT } from "./paths";
import type { RenderedConfig } from "./render";

export interface NginxBalancerArgs {
    /** Prefix of the container's name (the stack name). */
    prefix: string;
    /** The balancer image (an image ID, see `NginxImage`). */
    image: pulumi.Input<string>;
    /** The network the replicas are on. */
    networkName: pulumi.Input<string>;
    /** Where the balancer is published on its host: `port` (default 8000) on `bind` (default `0.0.0.0`). */
    publish: Pick<BalancerSettings, "port" | "bind">;
    /** The rendered nginx config (see `renderNginxConfig`). */
    config: pulumi.Input<RenderedConfig>;
    /** Resources that must be ready before the config that routes to them is installed (the replicas). */
    upstreamDependencies: pulumi.Input<pulumi.Resource>[];
    /** Proxy variables for the container's environment. Defaults to none. */
    proxyEnv?: Record<string, string>;
    /** How the container stops and restarts: `stopGraceSeconds` (default 120) and `restartPolicy` (default `unless-stopped`). */
    lifecycle: Pick<ReplicaSettings, "stopGraceSeconds" | "restartPolicy">;
    /** The Docker engine the container runs on; the config is installed through the same engine. Defaults to the default provider. */
    provider?: docker.Provider;
    /** Adjusts the children it creates. */
    transform?: { container?: Transform<docker.ContainerArgs> };
}

/**
 * The nginx balancer: a long-lived container whose config is replaced and reloaded in place on every
 * change, so that changing the replica list or the balancing settings never restarts it.
 */
export class NginxBalancer extends pulumi.ComponentResource {
    readonly containerName: pulumi.Output<string>;
    /** The id of the rendered config, known once the install command has seen nginx serve it. */
    readonly configId: pulumi.Output<string>;
    readonly container: docker.Container;
    readonly installConfig: command.local.Command;

    constructor(name: string, args: NginxBalancerArgs, opts?: pulumi.ComponentResourceOptions) {
        super("vllm-nginx:balancer:NginxBalancer", name, {}, opts);
        const childOpts = { parent: this, provider: args.provider };
        const config = pulumi.output(args.config);

        this.container = new docker.Container(
            ...applyTransform(
                args.transform?.container,
                `${name}-container`,
                {
                    name: `${args.prefix}-nginx-lb`,
                    image: args.image,
                    envs: envList(args.proxyEnv ?? {}),
                    networksAdvanced: [{ name: args.networkName, aliases: ["nginx-lb"] }],
                    ports: [{ internal: BALANCER_CONTAINER_PORT, external: args.publish.port, ip: args.publish.bind }],
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
                        extraLabels: labelList({ clientKeys: "0", tls: "off" }),
                    }),
                },
                childOpts,
            ),
        );
        this.containerName = this.container.name;

        const engine = args.provider ? engineEnvironment(args.provider) : pulumi.output({});
        this.installConfig = new command.local.Command(
            `${name}-config`,
            {
                create: INSTALL_CONFIG_SCRIPT,
                update: INSTALL_CONFIG_SCRIPT,
                stdin: config.text,
                environment: pulumi.all([engine, this.container.name, config.id]).apply(([env, container, id]) => ({ ...env, CONTAINER: container, CONFIG_ID: id })),
                // A new container starts from the image's bootstrap config: install the config again.
                triggers: [this.container.id],
            },
            { parent: this, dependsOn: [this.container, ...args.upstreamDependencies] },
        );
        this.configId = pulumi.all([config.id, this.installConfig.stdout]).apply(([id]) => id);

        this.registerOutputs({ containerName: this.containerName, configId: this.configId });
    }
}
