import * as pulumi from "@pulumi/pulumi";
import * as path from "path";
import type { ProxySettings, VllmBuildSpec } from "../config";
import { pullOrBuild } from "../docker/build";
import { proxyVariables } from "../docker/proxy";

export interface VllmImageArgs {
    /** Prefix of the built image's name (the stack name). */
    prefix: string;
    /** A prebuilt image to pull, e.g. `vllm/vllm-openai:v0.32.0`. Exactly one of `image` and `build`. */
    image?: string;
    /** Build from a vLLM checkout, as the guide's `docker build -f docker/Dockerfile . --tag vllm`. */
    build?: VllmBuildSpec;
    /** Added as `http_proxy`/`https_proxy`/`no_proxy` build args. Defaults to none. */
    proxy?: ProxySettings;
}

/** The vLLM server image: pulled by tag, or built from a checkout on the Docker host. */
export class VllmImage extends pulumi.ComponentResource {
    /** What replica containers run: an image ID, so that a new image replaces them. */
    readonly imageRef: pulumi.Output<string>;

    constructor(name: string, args: VllmImageArgs, opts?: pulumi.ComponentResourceOptions) {
        super("vllm-nginx:image:VllmImage", name, {}, opts);

        this.imageRef = pullOrBuild(
            name,
            {
                pull: args.image,
                build: args.build && {
                    imageName: `vllm-nginx/${args.prefix}-vllm:latest`,
                    context: path.resolve(args.build.context),
                    dockerfile: args.build.dockerfile,
                    target: args.build.target,
                    args: { ...proxyVariables(args.proxy ?? {}), ...args.build.args },
                },
            },
            { parent: this },
        );

        this.registerOutputs({ imageRef: this.imageRef });
    }
}
