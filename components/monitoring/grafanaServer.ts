import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import { labelList } from "../docker/labels";
import { lifecycle } from "../docker/lifecycle";
import type { RestartPolicy } from "../config";
import { renderDashboard } from "./dashboard";
import { GRAFANA_FILES, renderDashboardProvider, renderGrafanaDatasource } from "./grafanaProvisioning";
import { DEFAULT_INTERVAL_SECONDS, PROMETHEUS_PORT } from "./prometheusConfig";
import { PROMETHEUS_ALIAS } from "./prometheusServer";

/** The port Grafana listens on inside its container. */
export const GRAFANA_PORT = 3000;

/** Grafana's own health endpoint, probed with the image's busybox wget. */
export const GRAFANA_HEALTH_PROBE = `wget -q -O /dev/null http://127.0.0.1:${GRAFANA_PORT}/api/health`;

export interface GrafanaServerArgs {
    /** Prefix of the container's and the volume's names, and the dashboard's title (the stack name). */
    prefix: string;
    /** The Grafana image (an image ID), e.g. pulled from `grafana/grafana:11.6.14`. */
    image: pulumi.Input<string>;
    /** The stack's network, where Prometheus is reached as `prometheus`. */
    networkName: pulumi.Input<string>;
    /** Prometheus's URL as Grafana's server reaches it. Defaults to `http://prometheus:9090`. */
    prometheusUrl?: string;
    /** Host port. Defaults to 3000. */
    port?: number;
    /** Host address the port is published on. Defaults to `127.0.0.1`. */
    bind?: string;
    /** Docker restart policy. Defaults to `unless-stopped`. */
    restartPolicy?: RestartPolicy;
}

/**
 * Grafana with the stack's Prometheus as its data source and the fleet dashboard, both provisioned as
 * files (Grafana reads provisioning at start, so they are part of the container: a new dashboard
 * replaces the container, while users, preferences and sessions stay on its volume). Anonymous
 * visitors may view, and nobody can log in: no admin account is created (Grafana's first one is
 * admin/admin), and the login form and basic auth are off. The port is on the loopback by default.
 */
export class GrafanaServer extends pulumi.ComponentResource {
    readonly containerName: pulumi.Output<string>;
    /** `http://<bind>:<port>` as reached from the Docker host. */
    readonly url: pulumi.Output<string>;
    readonly container: docker.Container;
    readonly volume: docker.Volume;

    constructor(name: string, args: GrafanaServerArgs, opts?: pulumi.ComponentResourceOptions) {
        super("vllm-nginx:monitoring:GrafanaServer", name, {}, opts);
        const port = args.port ?? GRAFANA_PORT;
        const bind = args.bind ?? "127.0.0.1";

        this.volume = new docker.Volume(`${name}-data`, { name: `${args.prefix}-grafana-data`, labels: labelList({ stack: args.prefix, role: "grafana" }) }, { parent: this });

        this.container = new docker.Container(
            `${name}-container`,
            {
                name: `${args.prefix}-grafana`,
                image: args.image,
                envs: [
                    "GF_AUTH_ANONYMOUS_ENABLED=true",
                    "GF_AUTH_ANONYMOUS_ORG_ROLE=Viewer",
                    "GF_SECURITY_DISABLE_INITIAL_ADMIN_CREATION=true",
                    "GF_AUTH_DISABLE_LOGIN_FORM=true",
                    "GF_AUTH_BASIC_ENABLED=false",
                    `GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH=${GRAFANA_FILES.dashboard}`,
                    "GF_ANALYTICS_REPORTING_ENABLED=false",
                    "GF_ANALYTICS_CHECK_FOR_UPDATES=false",
                    "GF_ANALYTICS_CHECK_FOR_PLUGIN_UPDATES=false",
                ],
                uploads: [
                    {
                        file: GRAFANA_FILES.datasource,
                        content: renderGrafanaDatasource({
                            prometheusUrl: args.prometheusUrl ?? `http://${PROMETHEUS_ALIAS}:${PROMETHEUS_PORT}`,
                            scrapeIntervalSeconds: DEFAULT_INTERVAL_SECONDS,
                        }),
                    },
                    { file: GRAFANA_FILES.provider, content: renderDashboardProvider() },
                    { file: GRAFANA_FILES.dashboard, content: renderDashboard({ stack: args.prefix }) },
                ],
                networksAdvanced: [{ name: args.networkName, aliases: ["grafana"] }],
                ports: [{ internal: GRAFANA_PORT, external: port, ip: bind }],
                volumes: [{ volumeName: this.volume.name, containerPath: "/var/lib/grafana" }],
                ...lifecycle({
                    prefix: args.prefix,
                    role: "grafana",
                    healthProbe: GRAFANA_HEALTH_PROBE,
                    // Database migrations on first start.
                    startPeriodSeconds: 120,
                    waitSeconds: 180,
                    restartPolicy: args.restartPolicy ?? "unless-stopped",
                    stopGraceSeconds: 20,
                }),
            },
            { parent: this },
        );
        this.containerName = this.container.name;
        this.url = pulumi.output(`http://${bind === "0.0.0.0" ? "127.0.0.1" : bind}:${port}`);

        this.registerOutputs({ containerName: this.containerName, url: this.url });
    }
}
