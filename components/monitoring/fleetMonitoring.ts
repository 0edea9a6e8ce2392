import * as pulumi from "@pulumi/pulumi";
import type { ProxySettings, RestartPolicy } from "../config";
import type { Engine } from "../docker/providers";
import { GrafanaServer } from "./grafanaServer";
import { MonitoringImage } from "./monitoringImage";
import { BALANCER_INTERNAL_ADDRESS, NginxExporter } from "./nginxExporter";
import { ReplicaTarget, renderPrometheusConfig } from "./prometheusConfig";
import { PrometheusServer } from "./prometheusServer";
import { AlertThresholds, renderRules } from "./rules";
import type { MonitoringSettings } from "./settings";

export interface FleetMonitoringArgs {
    /** Prefix of every container, volume and image name (the stack name). */
    prefix: string;
    /** Validated settings (see `parseMonitoringSettings`). Nothing is created when `prometheus` is false. */
    settings: MonitoringSettings;
    /** The stack's network: Prometheus reaches the replicas and the exporter there, the exporter the balancer. */
    networkName: pulumi.Input<string>;
    /** Every replica Prometheus scrapes, with its name, address and host. */
    replicas: ReplicaTarget[];
    /** Host name of the balancer, its `host` label. Defaults to `"local"`. */
    balancerHost?: string;
    /** URL of the balancer's stub_status, as the exporter reaches it. Defaults to `http://nginx-lb:8081/nginx-status`. */
    balancerStatusUrl?: string;
    /**
     * The replicas' resources (their containers): the Prometheus config that scrapes them is installed
     * once they are up, so a deploy does not report replicas down while they load. Defaults to none.
     */
    replicaDependencies?: pulumi.Input<pulumi.Resource>[];
    /** Resources the exporter starts after (the balancer and its config command). Defaults to none. */
    balancerDependencies?: pulumi.Input<pulumi.Resource>[];
    /** Proxy build args for images built from Debian's packages. Defaults to none. */
    proxy?: ProxySettings;
    /** The Docker engine monitoring runs on (the balancer's), and the address commands reach it at. Defaults to the default provider and engine. */
    engine?: Engine;
    /** Docker restart policy of every monitoring container. Defaults to `unless-stopped`. */
    restartPolicy?: RestartPolicy;
    /** Alert thresholds other than the defaults (see `DEFAULT_ALERT_THRESHOLDS`). */
    alertThresholds?: Partial<AlertThresholds>;
}

/**
 * Monitoring for one fleet, from its settings: Prometheus with the fleet's scrape config and rules, the
 * nginx exporter beside the balancer, and Grafana with the fleet's dashboard when asked for.
 */
export class FleetMonitoring extends pulumi.ComponentResource {
    /** Prometheus's URL from the Docker host, or undefined when Prometheus is off. */
    readonly prometheusUrl: pulumi.Output<string | undefined>;
    /** Grafana's URL from the Docker host, or undefined when Grafana is off. */
    readonly grafanaUrl: pulumi.Output<string | undefined>;
    /** Content id of the Prometheus config and rules in service, or undefined when Prometheus is off. */
    readonly prometheusConfigId: pulumi.Output<string | undefined>;
    readonly prometheus?: PrometheusServer;
    readonly exporter?: NginxExporter;
    readonly grafana?: GrafanaServer;

    constructor(name: string, args: FleetMonitoringArgs, opts?: pulumi.ComponentResourceOptions) {
        super("vllm-nginx:monitoring:FleetMonitoring", name, {}, opts);
        const s = args.settings;

        if (s.prometheus) {
            const image = (kind: "prometheus" | "nginx-exporter", pull: string | undefined) =>
                new MonitoringImage(
                    `${name}-${kind}-image`,
                    { prefix: args.prefix, kind, image: s.buildBaseImage === undefined ? pull : undefined, baseImage: s.buildBaseImage, proxy: args.proxy },
                    { parent: this },
                );
            const prometheusImage = image("prometheus", s.prometheusImage);
            const exporterImage = image("nginx-exporter", s.exporterImage);

            this.exporter = new NginxExporter(
                `${name}-exporter`,
                {
                    prefix: args.prefix,
                    image: exporterImage.imageRef,
                    networkName: args.networkName,
                    scrapeUri: args.balancerStatusUrl,
                    restartPolicy: args.restartPolicy,
                    startAfter: args.balancerDependencies,
                },
                { parent: this },
            );
            this.prometheus = new PrometheusServer(
                `${name}-prometheus`,
                {
                    prefix: args.prefix,
                    image: prometheusImage.imageRef,
                    networkName: args.networkName,
                    config: this.exporter.address.apply((exporter) =>
                        renderPrometheusConfig({ stack: args.prefix, replicas: args.replicas, balancerExporter: exporter, balancerRotation: BALANCER_INTERNAL_ADDRESS, balancerHost: args.balancerHost }),
                    ),
                    rules: renderRules(args.alertThresholds),
                    port: s.prometheusPort,
                    bind: s.bind,
                    retention: s.retention,
                    engine: args.engine,
                    restartPolicy: args.restartPolicy,
                    configDependencies: args.replicaDependencies,
                },
                { parent: this },
            );
            if (s.grafana) {
                const grafanaImage = new MonitoringImage(`${name}-grafana-image`, { prefix: args.prefix, kind: "grafana", image: s.grafanaImage }, { parent: this });
                this.grafana = new GrafanaServer(
                    `${name}-grafana`,
                    {
                        prefix: args.prefix,
                        image: grafanaImage.imageRef,
                        networkName: args.networkName,
                        port: s.grafanaPort,
                        bind: s.bind,
                        restartPolicy: args.restartPolicy,
                    },
                    { parent: this, dependsOn: [this.prometheus] },
                );
            }
        }

        this.prometheusUrl = this.prometheus ? this.prometheus.url.apply((u): string | undefined => u) : pulumi.output(undefined);
        this.grafanaUrl = this.grafana ? this.grafana.url.apply((u): string | undefined => u) : pulumi.output(undefined);
        this.prometheusConfigId = this.prometheus ? this.prometheus.configId.apply((id): string | undefined => id) : pulumi.output(undefined);

        this.registerOutputs({ prometheusUrl: this.prometheusUrl, grafanaUrl: this.grafanaUrl, prometheusConfigId: this.prometheusConfigId });
    }
}
