import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import type { ImageSettings, ProxySettings } from "../config";
import type { HostPlan } from "../planning";
import { runScript, stepRunner, type ScriptRunner } from "../rollout/local";
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
 * host is created with (behind a check, on every run, that the engine answers, which names the host when it does not),
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
            const answers = engineAnswers({ host: args.host.name, address, material, parent: this });
            const provider = new docker.Provider(
                `${name}-docker-${args.host.name}`,
                {
                    // Configured once the engine answered, on this run.
                    host: answers.apply(() => args.engineAddress) as pulumi.Output<string>,
                    caMaterial: tls?.apply((t) => t.ca),
                    certMaterial: tls?.apply((t) => t.cert),
                    keyMaterial: tls?.apply((t) => t.key),
                },
                { parent: this },
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

/**
 * The check that a host's engine answers (`engine.sh`), on every `up` before the host's provider is
 * configured (not in a preview, which may run where the engines cannot be reached): an engine that cannot be reached fails the run with the host's name, the
 * address and docker's answer, not the provider's. A step of the program, not a resource (a command
 * would run on its creation only). Resolves with the address once the engine answered.
 */
export function engineAnswers(
    { host, address, material, parent }: { host: string; address: string; material?: pulumi.Output<Record<string, EngineTls>>; parent?: pulumi.Resource },
    run?: ScriptRunner,
): pulumi.Output<string> {
    const runner = stepRunner(run);
    const environment = tlsEnvironment([{ address, tls: material } as Engine]).apply((env) => ({ ...env, ROLLOUT_SH: rolloutScript("engine"), HOST: host, ENGINE: address }));
    return pulumi.unsecret(
        environment.apply(async (env) => {
            // Not in a preview: a preview runs where the engines may not be reachable (a pull request's runner).
            if (runner && !pulumi.runtime.isDryRun()) {
                const said = await checkEngine(env, runner).catch(async (error: Error) => {
                    // Said once on its own: the failure reaches the engine wrapped in every property that waits for the host.
                    await pulumi.log.error(error.message, parent);
                    throw error;
                });
                await pulumi.log.info(said.trim(), parent);
            }
            return address;
        }),
    );
}

/** Runs `engine.sh` with its environment and resolves with what it said; fails with its message alone (a RunError), which names the host. */
export async function checkEngine(environment: Record<string, string>, run: ScriptRunner = runScript): Promise<string> {
    try {
        return await run(runRolloutScript("engine"), environment);
    } catch (error) {
        throw new pulumi.RunError((error as Error).message);
    }
}
