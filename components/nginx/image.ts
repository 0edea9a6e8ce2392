import * as pulumi from "@pulumi/pulumi";
import * as path from "path";
import type { ImageSettings, ProxySettings } from "../config";
import { buildLocalImage } from "../docker/build";
import { proxyVariables } from "../docker/proxy";

/** The Dockerfile and bootstrap config of the balancer image, shipped with the program. */
export const NGINX_IMAGE_CONTEXT = path.join(__dirname, "..", "..", "images", "nginx");

export interface NginxImageArgs {
    /** Prefix of the built image's name (the stack name). */
    prefix: string;
    /** `nginxBaseImage`: a Debian 12 (bookworm) image; Debian's nginx and Lua module are installed into it. Defaults to `debian:12.12-slim`. */
    base: ImageSettings["nginxBaseImage"];
    /** Proxy build args. Defaults to none. */
    proxy?: ProxySettings;
}

/** The balancer image: the guide's `Dockerfile.nginx` (default site removed), plus a bootstrap config. */
export class NginxImage extends pulumi.ComponentResource {
    /** The local image ID the balancer container runs. */
    readonly imageRef: pulumi.Output<string>;

    constructor(name: string, args: NginxImageArgs, opts?: pulumi.ComponentResourceOptions) {
        super("vllm-nginx:image:NginxImage", name, {}, opts);

        const built = buildLocalImage(
            `${name}-build`,
            {
                imageName: `vllm-nginx/${args.prefix}-nginx-lb:latest`,
                context: NGINX_IMAGE_CONTEXT,
                dockerfile: "Dockerfile",
                args: { ...proxyVariables(args.proxy ?? {}), NGINX_BASE_IMAGE: args.base },
            },
            { parent: this },
        );
        this.imageRef = built.imageId;

        this.registerOutputs({ imageRef: this.imageRef });
    }
}
