import type * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";

/**
 * The environment that points the docker CLI at the engine `provider` manages, for commands that run
 * `docker exec` against the same engine as the containers they act on. Empty when the provider uses the
 * default engine.
 */
export function engineEnvironment(provider: docker.Provider): pulumi.Output<Record<string, string>> {
    return provider.host.apply((host): Record<string, string> => (host ? { DOCKER_HOST: host } : {}));
}
