import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import { lifecycle } from "../docker/lifecycle";
import type { RestartPolicy } from "../config";
import { BALANCER_STATUS_PORT } from "../nginx/paths";
import { BALANCER_STATUS_PATH } from "../nginx/render";

/** The balancer's internal listener (not published on the host), on the fleet's network. */
export const BALANCER_INTERNAL_ADDRESS = `nginx-lb:${BALANCER_STATUS_PORT}`;
/** What the balancer serves stub_status at, on its internal listener. */
export const BALANCER_STUB_STATUS_URL = `http://${BALANCER_INTERNAL_ADDRESS}${BALANCER_STATUS_PATH}`;
/** The port the exporter serves `/metrics` on, in both images. */
export const EXPORTER_PORT = 9113;
/** The network alias Prometheus reaches the exporter by. */
export const EXPORTER_ALIAS = "nginx-exporter";

/**
 * The arguments after the image's exporter entrypoint. The double-dash form is read by Debian's 0.11
 * (Go's flag package) and upstream 1.x (kingpin) alike.
 */
export function exporterCommand(scrapeUri: string): string[] {
    return [`--nginx.scrape-uri=${scrapeUri}`, `--web.listen-address=:${EXPORTER_PORT}`];
}

export interface NginxExporterArgs {
    /** Prefix of the container's name (the stack name). */
    prefix: string;
    /** The exporter image (an image ID): upstream `nginx/nginx-prometheus-exporter` or `images/nginx-exporter`. */
    image: pulumi.Input<string>;
    /** The stack's network, where the balancer is reached as `nginx-lb`. */
    networkName: pulumi.Input<string>;
    /** URL of nginx's stub_status. Defaults to {@link BALANCER_STUB_STATUS_URL}. */
    scrapeUri?: string;
    /** Docker restart policy. Defaults to `unless-stopped`. */
    restartPolicy?: RestartPolicy;
    /** Resources to create first (the balancer, so that its status listener answers). Defaults to none. */
    startAfter?: pulumi.Input<pulumi.Resource>[];
}

/**
 * The nginx exporter as a sidecar on the stack's network: it reads the balancer's stub_status on each
 * scrape and serves it as Prometheus metrics (`nginx_up`, `nginx_connections_*`,
 * `nginx_http_requests_total`). Not published on the host. No healthcheck: the upstream image has no
 * shell; Prometheus's `up{job="nginx"}` tells whether it answers.
 */
export class NginxExporter extends pulumi.ComponentResource {
    readonly containerName: pulumi.Output<string>;
    /** `host:port` Prometheus scrapes, on the stack's network. */
    readonly address: pulumi.Output<string>;
    readonly container: docker.Container;

    constructor(name: string, args: NginxExporterArgs, opts?: pulumi.ComponentResourceOptions) {
        super("vllm-nginx:monitoring:NginxExporter", name, {}, opts);

        this.container = new docker.Container(
            `${name}-container`,
            {
                name: `${args.prefix}-nginx-exporter`,
                image: args.image,
                command: exporterCommand(args.scrapeUri ?? BALANCER_STUB_STATUS_URL),
                networksAdvanced: [{ name: args.networkName, aliases: [EXPORTER_ALIAS] }],
                // No healthcheck: the upstream image has no shell to run one.
                ...lifecycle({ prefix: args.prefix, role: "nginx-exporter", restartPolicy: args.restartPolicy ?? "unless-stopped", stopGraceSeconds: 10 }),
            },
            { parent: this, dependsOn: args.startAfter },
        );
        this.containerName = this.container.name;
        this.address = pulumi.output(`${EXPORTER_ALIAS}:${EXPORTER_PORT}`);

        this.registerOutputs({ containerName: this.containerName, address: this.address });
    }
}
