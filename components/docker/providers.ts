import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";

/** A Docker engine as the resources on it, and the commands acting on them, both need it. */
export interface Engine {
    /** The provider the engine's resources are created with. */
    provider: docker.Provider;
    /**
     * The engine's address for the docker CLI (`DOCKER_HOST`), empty for the default engine. Known when the
     * program creates the provider; else read from the provider.
     */
    address: pulumi.Input<string>;
    /** TLS material of a `tcp://` engine, by its address, as a secret. */
    tls?: pulumi.Output<Record<string, EngineTls>>;
}

/** TLS material for a `tcp://` engine: PEM text. */
export interface EngineTls {
    ca: string;
    cert: string;
    key: string;
}

/**
 * `ENGINE_TLS` for a command that acts on these engines: the TLS material of those that need it, by
 * address, as a secret (the command's environment is then encrypted in state); empty when none does.
 */
export function tlsEnvironment(engines: Array<Engine | undefined>): pulumi.Output<Record<string, string>> {
    const material = engines.flatMap((engine) => (engine?.tls ? [engine.tls] : []));
    if (material.length === 0) {
        return pulumi.output<Record<string, string>>({});
    }
    return pulumi.secret(pulumi.all(material).apply((maps): Record<string, string> => ({ ENGINE_TLS: JSON.stringify(Object.assign({}, ...maps)) })));
}

/** An engine for a provider made elsewhere: its address is read from the provider's `host`. */
export function engineOf(provider: docker.Provider): Engine {
    return { provider, address: provider.host.apply((host) => host ?? "") };
}

/** A provider for the engine at `address` (unset: `DOCKER_HOST`, else the local socket), its address known. */
export function newEngine(name: string, address: string | undefined, opts: pulumi.CustomResourceOptions): Engine {
    return { provider: new docker.Provider(name, { host: address }, opts), address: address ?? process.env.DOCKER_HOST ?? "" };
}
