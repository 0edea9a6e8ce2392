/**
 * The balancer's front door as nginx config: client keys checked before any replica is chosen, limits per
 * key, TLS, and the limits that keep hostile input cheap. Pure code, in snippets that `renderTemplate`
 * places at http level, in the public server, and in the location that proxies; none of it touches the
 * upstream or how a replica is picked.
 *
 * Only names and limits are rendered here. The keys themselves, the replicas' own key and the TLS pair
 * are files the edge install writes into the balancer's container (see `renderEdgeSecrets` and
 * `scripts/edge.sh`); the config includes them by path.
 */
import type { ClientKeySettings, EdgeSettings, PlainHttp, TlsMode } from "../config/settings";

/** Where the edge install keeps the key maps and the TLS pair in the balancer's container (root only). */
export const EDGE_DIR = "/etc/nginx/vllm-nginx/edge";

/** The port nginx serves HTTPS on inside its container; the balancer's host port maps to it when TLS is on. */
export const EDGE_TLS_CONTAINER_PORT = 443;

/** The request header that tells a replica which client key a request came with (never the key). */
export const CLIENT_NAME_HEADER = "X-Client-Name";

/** Files the edge install writes into `dir`, as the config includes them. */
export const EDGE_FILES = {
    /** `map` entries: one case-sensitive regex per client key, to the key's name. */
    clientKeys: "client-keys.map",
    /** `map` entry: the Authorization header replicas get (their own key), or none. */
    replicaAuthorization: "replica-authorization.map",
    certificate: "tls.crt",
    privateKey: "tls.key",
} as const;

/** Paths that answer without a client key: the probes of the replicas' health and the balancer's own. */
export const KEY_FREE_PATHS = ["/health", "/ping", "/version", "/nginx-health"] as const;

/**
 * The paths the balancer forwards to a replica, as `$uri` matches them (exact, or `~` a regex): vLLM's
 * OpenAI-compatible and pooling APIs and the probes. nginx answers every other path 404 itself, so vLLM's
 * operator endpoints (on with `VLLM_SERVER_DEV_MODE` or the profiler, never guarded by `--api-key`), its
 * runtime LoRA loading, its docs and any route a later vLLM adds never reach a replica through the balancer.
 * `/metrics` joins them with `exposeMetrics`.
 */
export const FORWARDED_PATHS = [
    "/v1/models",
    "/v1/completions",
    "/v1/chat/completions",
    "/v1/responses",
    "~^/v1/responses/[^/]+(/cancel)?$",
    "/v1/embeddings",
    "/v1/audio/transcriptions",
    "/v1/audio/translations",
    "/v1/score",
    "/v1/rerank",
    "/v2/rerank",
    "/rerank",
    "/score",
    "/classify",
    "/pooling",
    "/tokenize",
    "/detokenize",
    "/invocations",
    ...KEY_FREE_PATHS,
] as const;

/** vLLM's metrics, under the whole prefix it mounts them at: forwarded only with `exposeMetrics`. */
const METRICS_PATHS = "~^/metrics(/.*)?$";

/**
 * The name a request carrying the replicas' own key (`apiKey`) gets when there are no client keys: nginx
 * then checks that key itself, on every forwarded path, as it checks client keys.
 */
export const API_KEY_CLIENT = "api-key";

/**
 * What of the traffic without a key still reaches a replica (the probes' paths, CORS preflights) may do,
 * per client address, when nginx checks keys: so that a stranger cannot keep the replicas busy.
 */
export const ANONYMOUS_LIMITS = { rps: 10, burst: 20, concurrent: 16 } as const;

/**
 * How long a client may take to send its request headers, or pause between two reads of its body, before
 * nginx drops it (slowloris). nginx's default is 60 s.
 */
export const CLIENT_TIMEOUT_SECONDS = 10;

/** Request headers: 4 buffers of 16k for long lines (nginx's default is 8k), so large keys still fit. */
const LARGE_HEADER_BUFFERS = "4 16k";

/** Mozilla's "intermediate" TLS 1.2 suites with forward secrecy (TLS 1.3 suites are OpenSSL's own). */
const TLS_CIPHERS = [
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
].join(":");

/** TLS as rendered: where HTTPS listens, and what plain HTTP does. */
export interface EdgeTls {
    mode: Exclude<TlsMode, "off">;
    /** nginx `listen` address of HTTPS, e.g. `"443"` or `"127.0.0.1:18443"`. */
    listen: string;
    /** Plain HTTP (the balancer's plain listener) redirects to HTTPS, or serves only the health endpoint. */
    http: PlainHttp;
    /** The port clients reach HTTPS on (the balancer's host port), for the redirect's `Location`. */
    publicPort: number;
}

/** What the front door is rendered from: client names and limits (no key), TLS, and what the public port serves. */
export interface EdgeConfig {
    clients: ClientKeySettings[];
    /**
     * The replicas check a key of their own (`apiKey`). Without client keys nginx then checks that key
     * itself, on every forwarded path but the key-free ones. Defaults to false.
     */
    replicaKey?: boolean;
    /** Pass `/metrics` to a replica instead of answering 404. */
    exposeMetrics: boolean;
    /** Undefined: plain HTTP on the balancer's listener. */
    tls?: EdgeTls;
    /** Where the edge install writes its files. Defaults to `EDGE_DIR`. */
    dir?: string;
}

/** The front door without keys, TLS or metrics: what a config rendered without `edge` gets. */
export const OPEN_EDGE: EdgeConfig = { clients: [], exposeMetrics: false };

/**
 * The edge config of a fleet from its settings: HTTPS on the container's TLS port when TLS is on.
 *
 * @param publicPort the host port the balancer is published on (`lbPort`).
 */
export function edgeConfig(settings: EdgeSettings, publicPort: number): EdgeConfig {
    const { mode, http } = settings.tls;
    return {
        clients: settings.clients,
        replicaKey: settings.replicaKey,
        exposeMetrics: settings.exposeMetrics,
        tls: mode === "off" ? undefined : { mode, http, listen: String(EDGE_TLS_CONTAINER_PORT), publicPort },
    };
}

const json = (status: number, type: string, message: string) => `'{"error": {"message": "${message}", "type": "${type}", "param": null, "code": ${status}}}'`;

/** The answer to a plain HTTP request that carries a key, with TLS on and plain HTTP redirected. */
export const PLAIN_KEY_REFUSAL = "a key sent over plain HTTP is refused, not redirected: use https, and replace a key that crossed the network in clear text";

/** vLLM's (FastAPI's) answer to a path it has no route for. */
const NOT_FOUND = `'{"detail": "Not Found"}'`;

/** A zone and variable name part for a rate: `5r/s` -> `5rs`. */
const rateId = (rate: string) => rate.replace("/", "");

/** nginx's form of a rate: whole requests per second, else per minute. */
export function nginxRate(rps: number): string {
    return Number.isInteger(rps) ? `${rps}r/s` : `${Math.round(rps * 60)}r/m`;
}

interface LimitClass {
    /** Variable and zone name. */
    id: string;
    names: string[];
}

/** Keys with the same rate and burst share a zone (each key has its own state in it); the same for concurrency. */
function rateClasses(clients: ClientKeySettings[]): Array<LimitClass & { rate: string; burst: number }> {
    const classes = new Map<string, LimitClass & { rate: string; burst: number }>();
    for (const c of clients.filter((c) => c.rps !== undefined)) {
        const rate = nginxRate(c.rps!);
        const id = `vllm_rate_${rateId(rate)}_b${c.burst ?? 0}`;
        const cls = classes.get(id) ?? { id, rate, burst: c.burst ?? 0, names: [] };
        cls.names.push(c.name);
        classes.set(id, cls);
    }
    return [...classes.values()];
}

function concurrencyClasses(clients: ClientKeySettings[]): Array<LimitClass & { concurrent: number }> {
    const classes = new Map<string, LimitClass & { concurrent: number }>();
    for (const c of clients.filter((c) => c.concurrent !== undefined)) {
        const id = `vllm_conn_${c.concurrent}`;
        const cls = classes.get(id) ?? { id, concurrent: c.concurrent!, names: [] };
        cls.names.push(c.name);
        classes.set(id, cls);
    }
    return [...classes.values()];
}

/** Seconds a limited client should wait: one request's worth of its rate. */
function retryAfter(c: ClientKeySettings): number {
    return c.rps !== undefined && c.rps < 1 ? Math.ceil(1 / c.rps) : 1;
}

const dirOf = (edge: EdgeConfig) => edge.dir ?? EDGE_DIR;

/** Whether nginx checks a key: the clients' own, or without those the replicas' `apiKey`. */
const checksKeys = (edge: EdgeConfig) => edge.clients.length > 0 || edge.replicaKey === true;

/** The file with the Authorization replicas take (their own key), when nginx checks keys. */
export function replicaAuthorizationFile(edge: EdgeConfig): string | undefined {
    return checksKeys(edge) ? `${dirOf(edge)}/${EDGE_FILES.replicaAuthorization}` : undefined;
}

/** A `map` entry for a path as `FORWARDED_PATHS` writes it. */
const pathEntry = (p: string) => (p.startsWith("~") ? `    "${p}" 1;` : `    ${p} 1;`);

/** The access log's field for the client key's name. */
export const EDGE_LOG_FIELDS = "client=$vllm_client";

/** http-level maps and zones: the client's name from its key, what is refused, and the limit zones. */
export function edgeHttpLines(edge: EdgeConfig): string[] {
    const dir = dirOf(edge);
    const keyed = checksKeys(edge);
    const lines = [
        "# The front door (components/edge): checked before any replica is chosen.",
        "# Dot segments and encoded dots or slashes in a path: nginx resolves them and a replica does not, so",
        "# what nginx checked would not be what the replica serves (a way around the refused paths).",
        "map $request_uri $vllm_bad_path {",
        "    default 0;",
        '    "~*^[^?]*%2[ef]" 1;',
        '    "~^[^?]*/\\.\\.?(/|\\?|$)" 1;',
        "}",
        "# The paths forwarded to a replica; nginx answers any other 404 itself.",
        "map $uri $vllm_forwarded {",
        "    default 0;",
        ...[...FORWARDED_PATHS, ...(edge.exposeMetrics ? [METRICS_PATHS] : [])].map(pathEntry),
        "}",
        "",
    ];
    if (!keyed) {
        return [...lines, "# No client keys and no replicas' key: nginx checks none.", 'map $http_authorization $vllm_client { default ""; }', ""];
    }
    lines.push(
        edge.clients.length > 0
            ? `# Client keys (${edge.clients.map((c) => c.name).join(", ")}): the name of the key a request carries as`
            : `# No client keys: the replicas' own key (apiKey), checked here on every path, is named ${API_KEY_CLIENT}; as`,
        "# `Authorization: Bearer <key>`, else empty. The keys are in a file of their own, installed as a secret.",
        "map $http_authorization $vllm_client {",
        '    default "";',
        `    include ${dir}/${EDGE_FILES.clientKeys};`,
        "}",
        "map $uri $vllm_key_free {",
        "    default 0;",
        ...KEY_FREE_PATHS.map((p) => `    ${p} 1;`),
        "}",
        "# A request needs a key unless its path is key-free or it is a CORS preflight (as vLLM's own check).",
        'map "$request_method:$vllm_key_free:$vllm_client" $vllm_unauthorized {',
        "    default 0;",
        '    "~^OPTIONS:" 0;',
        '    "~^[^:]*:0:$" 1;',
        "}",
        "# What replicas get as Authorization: their own key (apiKey) or nothing, never the client's key.",
        "map $vllm_client $vllm_replica_authorization {",
        `    include ${dir}/${EDGE_FILES.replicaAuthorization};`,
        "}",
    );
    for (const cls of rateClasses(edge.clients)) {
        lines.push(
            `# ${cls.rate}, burst ${cls.burst}: ${cls.names.join(", ")}`,
            `map $vllm_client $${cls.id} {`,
            '    default "";',
            ...cls.names.map((n) => `    ${n} ${n};`),
            "}",
            `limit_req_zone $${cls.id} zone=${cls.id}:1m rate=${cls.rate};`,
        );
    }
    for (const cls of concurrencyClasses(edge.clients)) {
        lines.push(
            `# ${cls.concurrent} at once: ${cls.names.join(", ")}`,
            `map $vllm_client $${cls.id} {`,
            '    default "";',
            ...cls.names.map((n) => `    ${n} ${n};`),
            "}",
            `limit_conn_zone $${cls.id} zone=${cls.id}:1m;`,
        );
    }
    const slow = edge.clients.filter((c) => retryAfter(c) > 1);
    lines.push(
        `# Without a key, only the probes' paths and CORS preflights pass; what of them reaches a replica is limited`,
        `# per address (${nginxRate(ANONYMOUS_LIMITS.rps)}, burst ${ANONYMOUS_LIMITS.burst}, ${ANONYMOUS_LIMITS.concurrent} at once). The balancer's own /nginx-health is not.`,
        "map $uri $vllm_own_health {",
        "    default 0;",
        "    /nginx-health 1;",
        "}",
        'map "$vllm_client:$vllm_own_health" $vllm_anonymous {',
        '    default "";',
        '    ":0" $binary_remote_addr;',
        "}",
        `limit_req_zone $vllm_anonymous zone=vllm_anonymous:10m rate=${nginxRate(ANONYMOUS_LIMITS.rps)};`,
        "limit_conn_zone $vllm_anonymous zone=vllm_anonymous_conn:10m;",
        'map "$vllm_client:$limit_conn_status" $vllm_limited_message {',
        '    "~^:" "too many requests without a client key from this address";',
        '    "~:REJECTED$" "too many requests in flight for this client key ($vllm_client)";',
        '    default "too many requests per second for this client key ($vllm_client)";',
        "}",
        ...(slow.length > 0 ? ["map $vllm_client $vllm_retry_after {", "    default 1;", ...slow.map((c) => `    ${c.name} ${retryAfter(c)};`), "}"] : []),
    );
    return [...lines, ""];
}

/** The public server's `listen` (and TLS) lines. */
export function edgeListenLines(edge: EdgeConfig, plainListen: string): string[] {
    if (!edge.tls) {
        return [`    listen ${plainListen};`];
    }
    const dir = dirOf(edge);
    return [
        // `listen ... http2` is what nginx 1.22 (Debian 12) reads; 1.25.1+ warns and takes it all the same.
        `    listen ${edge.tls.listen} ssl http2;`,
        `    ssl_certificate ${dir}/${EDGE_FILES.certificate};`,
        `    ssl_certificate_key ${dir}/${EDGE_FILES.privateKey};`,
        "    ssl_protocols TLSv1.2 TLSv1.3;",
        `    ssl_ciphers ${TLS_CIPHERS};`,
        "    ssl_prefer_server_ciphers off;",
        "    ssl_session_cache shared:vllm_tls:10m;",
        "    ssl_session_timeout 1d;",
        "    ssl_session_tickets off;",
    ];
}

/**
 * The public server's checks, limits and refusals, in the order nginx applies them: a bad path (400) and a
 * missing or wrong key (401) at the server's rewrite phase, before a location or a replica is chosen; then
 * the limits (429) of the key, or per address of what passes without one, before the request is proxied.
 */
export function edgeServerLines(edge: EdgeConfig): string[] {
    const keyed = checksKeys(edge);
    const lines = [
        "    # The front door (components/edge).",
        "    default_type application/json;",
        // Slow clients (headers or body trickled) are dropped; they cost a connection, never a replica.
        `    client_header_timeout ${CLIENT_TIMEOUT_SECONDS}s;`,
        `    client_body_timeout ${CLIENT_TIMEOUT_SECONDS}s;`,
        `    large_client_header_buffers ${LARGE_HEADER_BUFFERS};`,
        "    reset_timedout_connection on;",
        "    if ($vllm_bad_path) {",
        `        return 400 ${json(400, "BadRequestError", "invalid path: dot segments and encoded dots or slashes are refused")};`,
        "    }",
    ];
    if (keyed) {
        lines.push(
            // vLLM's own answer to a missing or wrong key, word for word.
            "    if ($vllm_unauthorized) {",
            `        return 401 '{"error": "Unauthorized"}';`,
            "    }",
        );
    }
    if (keyed) {
        lines.push(
            "    limit_req_status 429;",
            "    limit_conn_status 429;",
            "    limit_req_log_level warn;",
            "    limit_conn_log_level warn;",
            `    limit_req zone=vllm_anonymous burst=${ANONYMOUS_LIMITS.burst} nodelay;`,
            `    limit_conn vllm_anonymous_conn ${ANONYMOUS_LIMITS.concurrent};`,
            ...rateClasses(edge.clients).map((cls) => `    limit_req zone=${cls.id}${cls.burst > 0 ? ` burst=${cls.burst}` : ""} nodelay;`),
            ...concurrencyClasses(edge.clients).map((cls) => `    limit_conn ${cls.id} ${cls.concurrent};`),
            "    error_page 429 @vllm_limited;",
        );
    }
    lines.push(
        // After the key check, so that a stranger learns nothing of which paths exist; the answer is FastAPI's.
        "    if ($vllm_forwarded = 0) {",
        `        return 404 ${NOT_FOUND};`,
        "    }",
        "    error_page 413 @vllm_too_large;",
        "",
    );
    if (keyed) {
        const retry = edge.clients.some((c) => retryAfter(c) > 1) ? "$vllm_retry_after" : "1";
        lines.push(
            "    location @vllm_limited {",
            `        add_header Retry-After ${retry} always;`,
            `        return 429 ${json(429, "RateLimitError", "$vllm_limited_message")};`,
            "    }",
        );
    }
    lines.push("    location @vllm_too_large {", `        return 413 ${json(413, "BadRequestError", "request body too large")};`, "    }", "");
    return lines;
}

/** Lines of the location that proxies: the client's name for the replica, and the replicas' own key in place of the client's. */
export function edgeProxyLines(edge: EdgeConfig): string[] {
    return [
        // Always set, so that a client cannot send the header itself (empty: not sent).
        `        proxy_set_header ${CLIENT_NAME_HEADER} $vllm_client;`,
        ...(checksKeys(edge) ? ["        proxy_set_header Authorization $vllm_replica_authorization;"] : []),
    ];
}

/**
 * With TLS on, the plain listener's server: the health endpoint (Docker's probe and the rollout scripts
 * read it there), and for everything else a redirect to HTTPS or a refusal. Empty with TLS off.
 *
 * @param health the health endpoint's `location` lines, as the public server has them.
 */
export function edgePlainServerLines(edge: EdgeConfig, plainListen: string, accessLog: string, health: string[]): string[] {
    if (!edge.tls) {
        return [];
    }
    const port = edge.tls.publicPort === 443 ? "" : `:${edge.tls.publicPort}`;
    const other =
        edge.tls.http === "redirect"
            ? [
                  "    location / {",
                  // A key on plain HTTP has crossed the network in clear text already; a client that followed the
                  // redirect would send it so on every request. It is refused, and the client learns why.
                  "        if ($http_authorization) {",
                  `            return 400 ${json(400, "BadRequestError", PLAIN_KEY_REFUSAL)};`,
                  "        }",
                  `        return 308 https://$host${port}$request_uri;`,
                  "    }",
              ]
            : ["    location / {", "        default_type application/json;", `        return 400 ${json(400, "BadRequestError", "plain HTTP is off: use https")};`, "    }"];
    return [
        `# Plain HTTP (${edge.tls.http === "redirect" ? "redirected to HTTPS" : "not published"}): the health endpoint for probes and the rollout scripts.`,
        "server {",
        `    listen ${plainListen};`,
        "    server_tokens off;",
        `    access_log ${accessLog};`,
        `    client_header_timeout ${CLIENT_TIMEOUT_SECONDS}s;`,
        ...health,
        ...other,
        "}",
        "",
    ];
}
