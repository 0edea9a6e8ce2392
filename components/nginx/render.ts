/**
 * Renders the nginx configuration that balances requests across the vLLM replicas. Pure code: the
 * program writes its output into the balancer container, and the integration tests run the real nginx
 * binary on the very same text.
 */
import { createHash } from "crypto";
import type { BalancerSettings } from "../config";
import { nginxSeconds } from "../config/units";
import { EDGE_LOG_FIELDS, OPEN_EDGE, edgeHttpLines, edgeListenLines, edgePlainServerLines, edgeProxyLines, edgeServerLines, replicaAuthorizationFile, type EdgeConfig } from "../edge/render";
import { BALANCER_ROTATION_PATH, ROTATION_METRIC } from "./paths";
import { routingHttpDirectives, routingLocationDirectives, routingStatusLocation, upstreamBlock, type RoutingGroup, type RoutingMethod } from "./routing";

/** Path of the balancer's own health endpoint; it answers even when every replica is down. */
export const BALANCER_HEALTH_PATH = "/nginx-health";

/** nginx's connection counters (stub_status), answered to clients on the loopback only. */
export const BALANCER_STATUS_PATH = "/nginx-status";

/** Whether nginx sends a replica new requests: `active` does; `draining` and `down` do not. */
export type UpstreamState = "active" | "draining" | "down";

export interface UpstreamServer {
    /** Replica name, written as a comment beside its address. */
    name: string;
    /** `host:port` nginx connects to. Addresses, not names, so nginx never waits on DNS to start. */
    address: string;
    /**
     * `draining`: leaving rotation, its requests in flight finish; `down`: out of rotation. Both render as
     * nginx's `down`, so new requests go elsewhere. Defaults to `active`.
     */
    state?: UpstreamState;
    /** Relative share of requests (nginx's `weight`). Defaults to 1. */
    weight?: number;
    /** The model group it serves, one of `BalancerConfig.groups`; unset without groups. */
    group?: string;
}

/** What the config is rendered from: the balancer's settings (but where it is published) and its replicas. */
export interface BalancerConfig extends Omit<BalancerSettings, "port" | "bind" | "method" | "workers"> {
    /** Balancing method: a configurable one, or the benchmark's `consistent_hash` baseline. */
    method: RoutingMethod;
    upstreams: UpstreamServer[];
    /** nginx `listen` parameter, e.g. `"80"` or `"127.0.0.1:18000"`. */
    listen: string;
    /**
     * `listen` of the internal server with nginx's counters (`/nginx-status`): a port the container does
     * not publish, so only containers on the fleet's network (the metrics exporter) reach it.
     */
    statusListen: string;
    /** Where access logs go, or `"off"`. Defaults to `/dev/stdout` (the container's log). */
    accessLog?: string;
    /** Written into the header comment only. */
    stack?: string;
    /**
     * Client keys and their limits, TLS, and what the public port refuses (see `components/edge`). With TLS,
     * the public server listens on `edge.tls.listen` and `listen` keeps the health endpoint for probes.
     * Defaults to no keys, no TLS, `/metrics` refused.
     */
    edge?: EdgeConfig;
    /** Folder of the Lua sources (`vllm_nginx/routing.lua`). Defaults to where the balancer image installs them. */
    luaPath?: string;
    /** Model groups, routed by the body's `model` (see `RoutingConfig.groups`). Unset: one group, no routing by model. */
    groups?: RoutingGroup[];
}

/** A rendered `conf.d` file and its id, a short content hash that the health endpoint serves. */
export interface RenderedConfig {
    text: string;
    id: string;
}

/**
 * The config with the rotation left open: `{{down:NAME}}` and `{{note:NAME}}` on each replica's server
 * line, `{{in}}` and `{{out}}` in the health endpoint's answer, `{{in:NAME}}` (1 or 0) in the rotation's
 * metrics, and one `# vllm-nginx:replica NAME
 * ADDRESS` line per replica. The balancer fills it in with the replicas in rotation
 * (`components/rollout/scripts/rotation.sh`), as `fillTemplate` does here.
 */
export interface ConfigTemplate {
    template: string;
    /** The id of the template: the same whichever replicas are in rotation. */
    id: string;
}

/** Idle keep-alive connections each nginx worker keeps open to the replicas. */
const UPSTREAM_KEEPALIVE = 32;

/**
 * How long nginx keeps an idle upstream connection: below vLLM's own 5 s (uvicorn's keep-alive,
 * `VLLM_HTTP_TIMEOUT_KEEP_ALIVE`), so nginx closes it first and never writes a request on a connection
 * the replica is closing; a POST written there is not resent and would fail with 502.
 */
const UPSTREAM_IDLE_SECONDS = 4;

const CONFIG_ID_PLACEHOLDER = "@CONFIG_ID@";

/**
 * Renders the `conf.d` file: the upstream of replicas and the server that proxies to it, with each
 * replica in or out of rotation as its `state` says. The text is meant to be read by reviewers; its
 * snapshot is in the unit tests.
 */
export function renderNginxConfig(config: BalancerConfig): RenderedConfig {
    const { template, id } = renderTemplate(config);
    return { text: fillTemplate(template, Object.fromEntries(config.upstreams.map((u) => [u.name, u.state ?? "active"]))), id };
}

/** Fills a template in: each replica's state, and the lists the health endpoint reports. */
export function fillTemplate(template: string, states: Record<string, UpstreamState>): string {
    let text = template;
    const names = Object.keys(states);
    for (const name of names) {
        const state = states[name];
        text = text
            .split(`{{in:${name}}}`)
            .join(state === "active" ? "1" : "0")
            .split(`{{down:${name}}}`)
            .join(state === "active" ? "" : " down")
            .split(`{{note:${name}}}`)
            .join(state === "active" ? "" : state === "draining" ? " (draining)" : " (out of rotation)");
    }
    // Every occurrence, as the balancer's sed does line by line: with TLS two servers report the rotation.
    return text
        .split("{{in}}")
        .join(names.filter((n) => states[n] === "active").join(","))
        .split("{{out}}")
        .join(names.filter((n) => states[n] !== "active").join(","));
}

/** Renders the template of the `conf.d` file (see `ConfigTemplate`). */
export function renderTemplate(config: BalancerConfig): ConfigTemplate {
    if (config.upstreams.length === 0) {
        throw new Error("renderNginxConfig: at least one upstream server is required");
    }
    for (const u of config.upstreams) {
        if (!/^[A-Za-z0-9_.-]+$/.test(u.name) || !/^[A-Za-z0-9_.:[\]-]+$/.test(u.address)) {
            throw new Error(`renderNginxConfig: replica names and addresses are plain words: ${JSON.stringify(u)}`);
        }
    }
    const accessLog = config.accessLog ?? "/dev/stdout";
    const accessLogLine = accessLog === "off" ? "off" : `${accessLog} vllm_nginx`;
    const edge = config.edge ?? OPEN_EDGE;
    const health = [
        `    location = ${BALANCER_HEALTH_PATH} {`,
        "        access_log off;",
        "        default_type text/plain;",
        `        return 200 "ok ${CONFIG_ID_PLACEHOLDER} in={{in}} out={{out}}\\n";`,
        "    }",
    ];

    const text = [
        `# vllm-nginx balancer${config.stack ? ` for stack "${config.stack}"` : ""}; config ${CONFIG_ID_PLACEHOLDER}.`,
        "# Rendered by the program: `pulumi up` replaces this file and reloads nginx.",
        ...config.upstreams.map((u) => `# vllm-nginx:replica ${u.name} ${u.address}`),
        "",
        "log_format vllm_nginx '$remote_addr [$time_local] \"$request\" $status $body_bytes_sent '",
        "                      'upstream=$upstream_addr upstream_status=$upstream_status '",
        "                      'request_time=$request_time upstream_connect=$upstream_connect_time '",
        "                      'upstream_header=$upstream_header_time '",
        `                      '${EDGE_LOG_FIELDS}';`,
        "",
        ...edgeHttpLines(edge),
        ...routingHttpDirectives({ ...config, clientModels: clientModels(edge), replicaAuthorizationFile: replicaAuthorizationFile(edge) }),
        "",
        ...upstreamBlock(config, { connections: UPSTREAM_KEEPALIVE, idleSeconds: UPSTREAM_IDLE_SECONDS }),
        "",
        "server {",
        ...edgeListenLines(edge, config.listen),
        "    server_tokens off;",
        `    access_log ${accessLogLine};`,
        `    client_max_body_size ${nginxBytes(config.maxBodyBytes)};`,
        "    client_body_buffer_size 1m;",
        ...edgeServerLines(edge),
        ...health,
        "",
        "    location / {",
        "        proxy_pass http://vllm_backend;",
        // HTTP/1.1 with an empty Connection header lets nginx reuse upstream connections.
        "        proxy_http_version 1.1;",
        '        proxy_set_header Connection "";',
        // Never the client's Host: vLLM before 0.22 rebuilt the URL from it and skipped its key check for
        // `Host: x?` (GHSA-94f4-hr76-p5j6). The replicas get the upstream's name, nginx's own default.
        "        proxy_set_header Host $proxy_host;",
        "        proxy_set_header X-Real-IP $remote_addr;",
        "        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "        proxy_set_header X-Forwarded-Proto $scheme;",
        "",
        // Streamed tokens go to the client as they arrive, not when a buffer fills.
        "        proxy_buffering off;",
        "        proxy_cache off;",
        `        proxy_connect_timeout ${nginxSeconds(config.connectTimeoutSeconds)};`,
        `        proxy_read_timeout ${nginxSeconds(config.readTimeoutSeconds)};`,
        `        proxy_send_timeout ${nginxSeconds(config.readTimeoutSeconds)};`,
        "",
        // Another replica is tried only when no request reached the first: POST is never resent once
        // sent (no `non_idempotent`), and nothing is retried after a response began.
        "        proxy_next_upstream error timeout;",
        `        proxy_next_upstream_tries ${config.upstreams.length};`,
        // When the client goes away, nginx closes the upstream connection, and vLLM aborts the request.
        "        proxy_ignore_client_abort off;",
        ...edgeProxyLines(edge),
        ...routingLocationDirectives(config),
        "    }",
        "}",
        "",
        ...edgePlainServerLines(edge, config.listen, accessLogLine, health),
        "# nginx's own counters, for the metrics exporter on the fleet's network; this port is not published.",
        "server {",
        `    listen ${config.statusListen};`,
        "    server_tokens off;",
        "    access_log off;",
        `    location = ${BALANCER_STATUS_PATH} {`,
        "        stub_status;",
        "    }",
        ...routingStatusLocation(config),
        ...rotationMetricsLocation(config.upstreams),
        "    location / {",
        "        return 404;",
        "    }",
        "}",
        "",
    ].join("\n");

    const id = configId(text);
    return { template: text.split(CONFIG_ID_PLACEHOLDER).join(id), id };
}

/** Each client key's `models`, by key name, for the Lua balancer (keys without a list are not named). */
function clientModels(edge: EdgeConfig): Record<string, string[]> | undefined {
    const limited = edge.clients.filter((c) => c.models !== undefined);
    return limited.length === 0 ? undefined : Object.fromEntries(limited.map((c) => [c.name, c.models!]));
}

/** A short content hash of the rendered config, served by the health endpoint to confirm a reload. */
function configId(text: string): string {
    return createHash("sha256").update(text).digest("hex").slice(0, 12);
}

function nginxBytes(bytes: number): string {
    if (bytes % (1024 * 1024) === 0) {
        return `${bytes / (1024 * 1024)}m`;
    }
    return bytes % 1024 === 0 ? `${bytes / 1024}k` : String(bytes);
}

/**
 * Each replica's place in the rotation as a Prometheus gauge, on the internal listener: what an alert
 * reads to find a replica that serves but stays out (a reconciliation that could not bring it back).
 */
function rotationMetricsLocation(upstreams: UpstreamServer[]): string[] {
    const text = [
        `# HELP ${ROTATION_METRIC} 1 while the balancer sends the replica new requests, 0 while it is out of rotation.`,
        `# TYPE ${ROTATION_METRIC} gauge`,
        ...upstreams.map((u) => `${ROTATION_METRIC}{replica="${u.name}"} {{in:${u.name}}}`),
    ];
    return [
        `    location = ${BALANCER_ROTATION_PATH} {`,
        '        default_type "text/plain; version=0.0.4";',
        `        return 200 '${text.join("\\n")}\\n';`,
        "    }",
    ];
}
