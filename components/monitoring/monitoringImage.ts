import * as pulumi from "@pulumi/pulumi";
import * as path from "path";
import { pullOrBuild } from "../docker/build";
import type { ProxySettings } from "../config";
import { proxyVariables } from "../docker/proxy";

/** The Dockerfiles that build the monitoring images from Debian's packages, shipped with the program. */
export const MONITORING_IMAGE_CONTEXTS = {
    prometheus: path.join(__dirname, "..", "..", "images", "prometheus"),
    "nginx-exporter": path.join(__dirname, "..", "..", "images", "nginx-exporter"),
} as const;

export type BuildableMonitoringImage = keyof typeof MONITORING_IMAGE_CONTEXTS;

export interface MonitoringImageArgs {
    /** Prefix of the built image's name (the stack name). */
    prefix: string;
    /** Which image: names the built image and picks its Dockerfile. */
    kind: BuildableMonitoringImage | "grafana";
    /** An image to pull, e.g. `prom/prometheus:v3.13.2`. Exactly one of `image` and `baseImage`. */
    image?: string;
    /**
     * Build from `images/<kind>` on this Debian-based image (Debian's packages) instead of pulling.
     * Exactly one of `image` and `baseImage`; not for Grafana, which Debian does not package.
     */
    baseImage?: string;
    /** Proxy build args for the Debian build. Defaults to none. */
    proxy?: ProxySettings;
}

/** One monitoring image: pulled by tag, or built on the Docker host from Debian's packages. */
export class MonitoringImage extends pulumi.ComponentResource {
    /** What the container runs: an image ID, so that a new image replaces the container. */
    readonly imageRef: pulumi.Output<string>;

    constructor(name: string, args: MonitoringImageArgs, opts?: pulumi.ComponentResourceOptions) {
        super("vllm-nginx:monitoring:MonitoringImage", name, {}, opts);

        if (args.baseImage !== undefined && args.kind === "grafana") {
            throw new Error(`MonitoringImage ${name}: Grafana is pulled only (Debian does not package it)`);
        }
        this.imageRef = pullOrBuild(
            name,
            {
                pull: args.image,
                build:
                    args.baseImage === undefined || args.kind === "grafana"
                        ? undefined
                        : {
                              imageName: `vllm-nginx/${args.prefix}-${args.kind}:latest`,
                              context: MONITORING_IMAGE_CONTEXTS[args.kind],
                              dockerfile: "Dockerfile",
                              args: { ...proxyVariables(args.proxy ?? {}), BASE_IMAGE: args.baseImage },
                          },
            },
            { parent: this },
        );

        this.registerOutputs({ imageRef: this.imageRef });
    }
}
