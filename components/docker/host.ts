import * as command from "@pulumi/command";
import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import type { ImageSettings, ProxySettings } from "../config";
import type { HostPlan } from "../planning";
import { rolloutScript, runRolloutScript } from "../rollout/scripts";
import type { Transform } from "../transform";
import { VllmImage } from "../vllm/image";
import { labelList } from "./labels";
import { FleetNetwork } from "./network";
import { engineOf, tlsEnvironment, type Engine, type EngineTls } from "./providers";

export interface FleetHostArgs {
    /** Prefix of every name on the host (the stack name). */
    prefix: string;
    host: HostPlan;
    /** The engine's address (`ssh://...`, `tcp://...`, `unix://...`); unset: `DOCKER_HOST`, else the local socket. */
    engineAddress?: string;
    /** TLS material for a `tcp://` engine, as a secret. Defaults to none. */
    tls?: pulumi.Input<EngineTls>;
    /** A provider made elsewhere for this host: used as it is, without the engine check in front of it. */
    provider?: docker.Provider;
    /** The stack network's subnet, the same on every host. */
    subnet: string;
    /** The vLLM image to pull or build here; unset on a host without replicas. */
    vllm?: Pick<ImageSettings, "vllmImage" | "vllmBuild">;
    /** Proxy build args. Defaults to none. */
    proxy?: ProxySettings;
    /** Adjusts the network it creates. */
    transform?: { network?: Transform<docker.NetworkArgs> };
}

/**
 * One Docker engine of the fleet and what every replica on it shares: the provider every resource on the
 * host is created with (behind a check that the engine answers, which names the host when it does not),
 * the stack's network, vLLM's compile cache, and the vLLM image, built or pulled on this host.
 */
export class FleetHost extends pulumi.ComponentResource {
    readonly engine: Engine;
    readonly networkName: pulumi.Output<string>;
    readonly compileCacheVolume: pulumi.Output<string>;
    /** The vLLM image ID on this host, when it has replicas. */
    readonly vllmImage?: pulumi.Output<string>;

    constructor(name: string, args: FleetHostArgs, opts?: pulumi.ComponentResourceOptions) {
        super("vllm-nginx:host:FleetHost", name, {}, opts);
        const tls = args.tls === undefined ? undefined : pulumi.secret(pulumi.output(args.tls));
        if (args.provider) {
            this.engine = engineOf(args.provider);
        } else {
            const address = args.engineAddress ?? process.env.DOCKER_HOST ?? "";
            const material = tls?.apply((t): Record<string, EngineTls> => ({ [address]: t }));
            const check = new command.local.Command(
                `${name}-engine`,
                {
                    create: runRolloutScript("engine"),
                    update: runRolloutScript("engine"),
                    environment: tlsEnvironment([{ address, tls: material } as Engine]).apply((env) => ({
                        ...env,
                        ROLLOUT_SH: rolloutScript("engine"),
                        HOST: args.host.name,
                        ENGINE: address,
                    })),
                },
                { parent: this },
            );
            const provider = new docker.Provider(
                `${name}-docker-${args.host.name}`,
                {
                    host: args.engineAddress,
                    caMaterial: tls?.apply((t) => t.ca),
                    certMaterial: tls?.apply((t) => t.cert),
                    keyMaterial: tls?.apply((t) => t.key),
                },
                { parent: this, dependsOn: [check] },
            );
            this.engine = { provider, address, tls: material };
        }
        const onHost = { parent: this, providers: { docker: this.engine.provider } };

        const network = new FleetNetwork(`${name}-net`, { prefix: args.prefix, subnet: args.subnet, transform: args.transform }, onHost);
        this.networkName = network.networkName;
        const cache = new docker.Volume(`${name}-vllm-cache`, { name: `${args.prefix}-vllm-compile-cache`, labels: labelList({ stack: args.prefix }) }, { parent: this, provider: this.engine.provider });
        this.compileCacheVolume = cache.name;
        if (args.vllm) {
            this.vllmImage = new VllmImage(`${name}-vllm-image`, { prefix: args.prefix, image: args.vllm.vllmImage, build: args.vllm.vllmBuild, proxy: args.proxy }, onHost).imageRef;
        }

        this.registerOutputs({ networkName: this.networkName, compileCacheVolume: this.compileCacheVolume });
    }
}
