/**
 * The fleet's Grafana dashboard, as data and as the JSON Grafana provisions. Panels read the recording
 * rules (`rules.ts`) where one exists, so the dashboard, the status command and the alerts agree on
 * what "TTFT p50" means. Pure code; {@link dashboardQueries} lists every query so a test can prove each
 * returns data from a real Prometheus.
 */
import { JOBS } from "./prometheusConfig";
import { NGINX } from "./metrics";
import { RULE_WINDOW } from "./rules";

/** Uid of the Prometheus data source the Grafana component provisions. */
export const DATASOURCE_UID = "vllm-nginx-prometheus";

/** Uid of the dashboard, stable so that links to it survive re-provisioning. */
export const DASHBOARD_UID = "vllm-nginx-fleet";

export interface PanelQuery {
    expr: string;
    /** Grafana legend template, e.g. `{{replica}} p50`. */
    legend: string;
}

export interface PanelSpec {
    title: string;
    description: string;
    kind: "stat" | "timeseries";
    /** Grafana unit id: `s`, `reqps`, `percentunit`, `short`, ... */
    unit: string;
    queries: PanelQuery[];
    /** Width in Grafana's 24-column grid. */
    width: number;
    height: number;
}

const VLLM_JOB = `job="${JOBS.vllm}"`;

/** Every panel, in reading order: the fleet at a glance, then per-replica detail, then the balancer. */
export const DASHBOARD_PANELS: PanelSpec[] = [
    stat("Replicas up", "Replicas whose /metrics answered the last scrape, of all the replicas Prometheus scrapes.", "short", [
        { expr: "fleet:vllm_replicas_up:sum", legend: "up" },
        { expr: "fleet:vllm_replicas:count", legend: "of" },
    ]),
    stat("Requests / s", "Requests finished per second over the fleet, in the last minute.", "reqps", [{ expr: "fleet:vllm_requests:rate1m", legend: "requests/s" }]),
    stat("TTFT p50", "Median time to first token over the fleet, in the last minute.", "s", [{ expr: "fleet:vllm_ttft_seconds:p50_1m", legend: "p50" }]),
    stat("Waiting", "Requests waiting for a seat in a batch, over the fleet.", "short", [{ expr: "fleet:vllm_requests_waiting:sum", legend: "waiting" }]),
    stat("KV cache, fullest replica", "KV-cache usage of the fullest replica; vLLM preempts when it runs out.", "percentunit", [
        { expr: "fleet:vllm_kv_cache_usage:max", legend: "max" },
    ]),
    stat("Balancer", "1 while the nginx exporter reads nginx's stub_status.", "short", [{ expr: `${NGINX.up}{job="${JOBS.nginx}"}`, legend: "nginx up" }]),
    timeseries("Requests per second", "Requests finished per second (any finish reason), per replica and in total.", "reqps", [
        { expr: "replica:vllm_requests:rate1m", legend: "{{replica}}" },
        { expr: "fleet:vllm_requests:rate1m", legend: "fleet" },
    ]),
    timeseries("Time to first token", "p50 and p99 of the time from arrival to the first generated token.", "s", [
        { expr: "replica:vllm_ttft_seconds:p50_1m", legend: "{{replica}} p50" },
        { expr: "replica:vllm_ttft_seconds:p99_1m", legend: "{{replica}} p99" },
        { expr: "fleet:vllm_ttft_seconds:p99_1m", legend: "fleet p99" },
    ]),
    timeseries("Inter-token latency", "p50 and p99 of the gap between two streamed outputs of one request.", "s", [
        { expr: "replica:vllm_itl_seconds:p50_1m", legend: "{{replica}} p50" },
        { expr: "replica:vllm_itl_seconds:p99_1m", legend: "{{replica}} p99" },
        { expr: "fleet:vllm_itl_seconds:p99_1m", legend: "fleet p99" },
    ]),
    timeseries("End-to-end latency", "p50 and p99 of the time from arrival to the last token, and p99 of the time spent waiting.", "s", [
        { expr: "replica:vllm_e2e_latency_seconds:p50_1m", legend: "{{replica}} p50" },
        { expr: "replica:vllm_e2e_latency_seconds:p99_1m", legend: "{{replica}} p99" },
        { expr: "replica:vllm_queue_time_seconds:p99_1m", legend: "{{replica}} queue p99" },
    ]),
    timeseries("Tokens per second", "Prompt (prefill) and generated tokens per second, per replica.", "short", [
        { expr: "replica:vllm_prompt_tokens:rate1m", legend: "{{replica}} prompt" },
        { expr: "replica:vllm_generation_tokens:rate1m", legend: "{{replica}} generated" },
    ]),
    timeseries("Running and waiting requests", "Requests in the running batch and requests waiting for it, per replica.", "short", [
        { expr: "replica:vllm_requests_running:sum", legend: "{{replica}} running" },
        { expr: "replica:vllm_requests_waiting:sum", legend: "{{replica}} waiting" },
    ]),
    timeseries("Requests per second per model group", "Requests finished per second by each model group's replicas (one series without model groups).", "reqps", [
        { expr: "sum by (group) (replica:vllm_requests:rate1m)", legend: "{{group}}" },
    ]),
    timeseries("Time to first token per model group", "The slowest replica's TTFT p99 in each model group.", "s", [{ expr: "max by (group) (replica:vllm_ttft_seconds:p99_1m)", legend: "{{group}} p99" }]),
    timeseries("KV-cache usage", "Share of each replica's KV cache in use (1 = full).", "percentunit", [{ expr: "replica:vllm_kv_cache_usage:max", legend: "{{replica}}" }]),
    timeseries("Prefix-cache hit rate", "Share of queried prompt tokens found in the prefix cache, per replica.", "percentunit", [
        { expr: "replica:vllm_prefix_cache_hit:ratio_rate1m", legend: "{{replica}}" },
    ]),
    timeseries("HTTP 5xx share", "Share of each replica's HTTP responses that are server errors.", "percentunit", [
        { expr: "replica:vllm_http_5xx:ratio_rate1m", legend: "{{replica}}" },
    ]),
    timeseries("Replica up", "1 while Prometheus can scrape the replica, 0 while it cannot (stopped, restarting, loading).", "short", [
        { expr: `up{${VLLM_JOB}}`, legend: "{{replica}}" },
    ]),
    timeseries("Balancer connections and requests", "nginx's open client connections, and the requests per second it accepts.", "short", [
        { expr: `${NGINX.connectionsActive}{job="${JOBS.nginx}"}`, legend: "active connections" },
        { expr: `rate(${NGINX.requests}{job="${JOBS.nginx}"}[${RULE_WINDOW}])`, legend: "requests/s" },
    ]),
];

/** One query of the dashboard with the panel it belongs to. */
export interface DashboardQuery extends PanelQuery {
    panel: string;
}

/** Every query the dashboard runs, for tests that check each one returns data. */
export function dashboardQueries(): DashboardQuery[] {
    return DASHBOARD_PANELS.flatMap((p) => p.queries.map((q) => ({ panel: p.title, ...q })));
}

export interface DashboardArgs {
    /** Shown as the dashboard's title. Defaults to `"vLLM fleet"`. */
    title?: string;
    /** The stack name, added to the title and as a tag. */
    stack: string;
}

/** Renders the dashboard's JSON model (Grafana 11 schema), pretty-printed for review. */
export function renderDashboard(args: DashboardArgs): string {
    const datasource = { type: "prometheus", uid: DATASOURCE_UID };
    let x = 0;
    let y = 0;
    let rowHeight = 0;
    const panels = DASHBOARD_PANELS.map((spec, index) => {
        if (x + spec.width > 24) {
            x = 0;
            y += rowHeight;
            rowHeight = 0;
        }
        const gridPos = { x, y, w: spec.width, h: spec.height };
        x += spec.width;
        rowHeight = Math.max(rowHeight, spec.height);
        return {
            id: index + 1,
            type: spec.kind,
            title: spec.title,
            description: spec.description,
            datasource,
            gridPos,
            fieldConfig: {
                defaults: {
                    unit: spec.unit,
                    ...(spec.unit === "percentunit" ? { min: 0, max: 1 } : {}),
                    ...(spec.kind === "timeseries" ? { custom: { lineWidth: 1, fillOpacity: 10, showPoints: "never", spanNulls: false } } : {}),
                },
                overrides: [],
            },
            options:
                spec.kind === "stat"
                    ? { reduceOptions: { calcs: ["lastNotNull"], fields: "", values: false }, colorMode: "value", graphMode: "area", textMode: "value_and_name" }
                    : { legend: { displayMode: "list", placement: "bottom", showLegend: true }, tooltip: { mode: "multi", sort: "desc" } },
            targets: spec.queries.map((q, i) => ({
                datasource,
                refId: String.fromCharCode(65 + i),
                expr: q.expr,
                legendFormat: q.legend,
                range: true,
                instant: false,
            })),
        };
    });
    const dashboard = {
        uid: DASHBOARD_UID,
        title: `${args.title ?? "vLLM fleet"} (${args.stack})`,
        description: "vLLM replicas behind the nginx balancer: load, latency, tokens, KV cache, errors. Provisioned by vllm-nginx.",
        tags: ["vllm-nginx", args.stack],
        timezone: "browser",
        editable: false,
        graphTooltip: 1,
        refresh: "10s",
        time: { from: "now-30m", to: "now" },
        schemaVersion: 39,
        version: 1,
        templating: { list: [] },
        annotations: { list: [] },
        panels,
    };
    return `${JSON.stringify(dashboard, null, 2)}\n`;
}

function stat(title: string, description: string, unit: string, queries: PanelQuery[]): PanelSpec {
    return { title, description, kind: "stat", unit, queries, width: 4, height: 4 };
}

function timeseries(title: string, description: string, unit: string, queries: PanelQuery[]): PanelSpec {
    return { title, description, kind: "timeseries", unit, queries, width: 12, height: 8 };
}
