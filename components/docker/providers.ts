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
}

/** An engine for a provider made elsewhere: its address is read from the provider's `host`. */
export function engineOf(provider: docker.Provider): Engine {
    return { provider, address: provider.host.apply((host) => host ?? "") };
}

/** A provider for the engine at `address` (unset: `DOCKER_HOST`, else the local socket), its address known. */
export function newEngine(name: string, address: string | undefined, opts: pulumi.CustomResourceOptions): Engine {
    return { provider: new docker.Provider(name, { host: address }, opts), address: address ?? process.env.DOCKER_HOST ?? "" };
}
