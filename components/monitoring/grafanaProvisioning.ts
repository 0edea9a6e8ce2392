/**
 * The files Grafana provisions at start: the Prometheus data source, a dashboard provider, and the
 * dashboard itself. Pure code.
 */
import { DATASOURCE_UID } from "./dashboard";
import { toYaml } from "./yaml";

/** Where each file goes in the Grafana container (the image's default provisioning folder). */
export const GRAFANA_FILES = {
    datasource: "/etc/grafana/provisioning/datasources/vllm-nginx.yaml",
    provider: "/etc/grafana/provisioning/dashboards/vllm-nginx.yaml",
    /** Outside the data volume (`/var/lib/grafana`), so that the volume never hides a new version. */
    dashboard: "/etc/grafana/dashboards/vllm-nginx/fleet.json",
} as const;

/** The data source: the stack's Prometheus, by its alias on the stack's network. */
export function renderGrafanaDatasource(args: { prometheusUrl: string; scrapeIntervalSeconds: number }): string {
    return [
        "# Provisioned by vllm-nginx: the stack's Prometheus.",
        toYaml({
            apiVersion: 1,
            datasources: [
                {
                    name: "Prometheus (vllm-nginx)",
                    uid: DATASOURCE_UID,
                    type: "prometheus",
                    access: "proxy",
                    url: args.prometheusUrl,
                    isDefault: true,
                    editable: false,
                    // Lets Grafana pick rate windows and steps that match the scrape interval.
                    jsonData: { timeInterval: `${args.scrapeIntervalSeconds}s` },
                },
            ],
        }),
    ].join("\n");
}

/** The dashboard provider: read-only dashboards from the folder of {@link GRAFANA_FILES.dashboard}. */
export function renderDashboardProvider(): string {
    return [
        "# Provisioned by vllm-nginx: the fleet dashboard, read-only in the UI.",
        toYaml({
            apiVersion: 1,
            providers: [
                {
                    name: "vllm-nginx",
                    folder: "vllm-nginx",
                    type: "file",
                    disableDeletion: true,
                    allowUiUpdates: false,
                    updateIntervalSeconds: 30,
                    options: { path: GRAFANA_FILES.dashboard.slice(0, GRAFANA_FILES.dashboard.lastIndexOf("/")) },
                },
            ],
        }),
    ].join("\n");
}
