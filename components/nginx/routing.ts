/**
 * How the balancer picks a replica: the upstream block and the Lua directives around it. Every
 * balancing mode runs through one programmable balancer (`images/nginx/lua/vllm_nginx/routing.lua`,
 * on Debian's libnginx-mod-http-lua), which alone among what Debian's nginx can load offers both a
 * load-bounded hash and active health checks. Pure code, rendered into the `conf.d` file by `render.ts`.
 */
import type { Balancer } from "../config";
import { nginxSeconds } from "../config/units";

/**
 * A balancing method the renderer knows: the configurable ones, and `consistent_hash`, nginx's own
 * `hash $key consistent` on the cache-aware key with no load bound and no health checks, rendered
 * only as a baseline for the benchmark.
 */
export type RoutingMethod = Balancer | "consistent_hash";

/** Where the balancer image installs the Lua sources (`images/nginx/Dockerfile`). */
export const IMAGE_LUA_PATH = "/usr/share/vllm-nginx/lua";

/** The path replicas answer health checks on, as vLLM's `/health` (503 once the engine died). */
export const HEALTH_PATH = "/health";

/**
 * How long an active probe waits for the answer to `/health` once connected: longer than the interval,
 * since vLLM answers it on the event loop that also renders chat templates and tokenizes, and a busy
 * replica is not a dead one (the Lua balancer counts such probes apart, and never overlaps them).
 */
export const HEALTH_TIMEOUT_MS = 3000;

/** Status of the programmable balancer: JSON with each replica's rotation, health and load. */
export const ROUTING_STATUS_PATH = "/nginx-routing";

/** The shared memory of the balancer: in-flight counts, failures, health, for every worker. */
const SHARED_DICT = "vllm_routing";

/** A name a group serves, as `/v1/models` lists it: a model's served name, or an adapter's (with its `parent`). */
export interface ServedName {
    id: string;
    /** The model (or adapter source) behind the name. */
    root: string;
    /** For an adapter: the served name of its base model. */
    parent?: string;
}

/**
 * A model group, as the balancer routes to it: the names it serves (requests whose body's `model` is
 * one of them go to its replicas) and its own balancing.
 */
export interface RoutingGroup {
    name: string;
    served: ServedName[];
    method: Balancer;
    sessionHeader: string;
    loadBound: number;
    /**
     * LoRA on: the balancer keeps each replica's loaded adapters equal to the group's (`served` entries with
     * a `parent`), through vLLM's runtime endpoints, and sends an adapter's requests to replicas that have it.
     */
    lora?: boolean;
}

export interface RoutingConfig {
    method: RoutingMethod;
    /** Header that carries a session key (cache_aware). */
    sessionHeader: string;
    /** cache_aware: a replica above loadBound x the mean in-flight load is skipped for the next on the ring. */
    loadBound: number;
    /** Seconds between active /health probes of every replica; 0 turns them off. */
    healthCheckIntervalSeconds: number;
    maxFails: number;
    failTimeoutSeconds: number;
    /** Folder holding `vllm_nginx/routing.lua`. Defaults to where the image installs it. */
    luaPath?: string;
    upstreams: Array<{ name: string; address: string; weight?: number; group?: string }>;
    /**
     * Model groups: requests are routed by their body's `model` to the group that serves it, each group
     * balanced by its own method among its replicas (`upstreams[].group`). Unset: one group, every
     * replica, no routing by model (the replicas answer an unknown model themselves).
     */
    groups?: RoutingGroup[];
    /**
     * The models each client key may use, by key name (the edge's `$vllm_client`): another model gets 403.
     * Needs `groups` (the names every group serves). Keys without a list may use every model.
     */
    clientModels?: Record<string, string[]>;
    /**
     * The edge's file with the Authorization replicas take (their `apiKey`), read by nginx's master for the
     * adapters' runtime endpoints. Unset: replicas check no key.
     */
    replicaAuthorizationFile?: string;
}

const q = (text: string) => JSON.stringify(text);

/** Whether a method runs through the Lua balancer (every configurable one does). */
export function usesLuaBalancer(method: RoutingMethod): boolean {
    return method !== "consistent_hash";
}

/** Whether a method needs the routing key, read in the access phase from a header or the body. */
export function needsRoutingKey(method: RoutingMethod): boolean {
    return method === "cache_aware" || method === "consistent_hash";
}

/** Whether requests are routed by model, which reads every POST's body in the access phase. */
export function routesByModel(config: Pick<RoutingConfig, "groups">): boolean {
    return config.groups !== undefined;
}

function luaGroup(group: RoutingGroup): string[] {
    const served = group.served.map((n) => `{ id = ${q(n.id)}, root = ${q(n.root)}${n.parent === undefined ? "" : `, parent = ${q(n.parent)}`} }`);
    return [
        `            { name = ${q(group.name)}, method = ${q(group.method)}, session_header = ${q(group.sessionHeader)}, load_bound = ${group.loadBound},${group.lora ? " lora = true," : ""}`,
        `              models = { ${served.join(", ")} } },`,
    ];
}

/**
 * http-level directives: where the Lua sources are, the shared memory, and each worker's start: its
 * replicas (with the rotation's `{{down:NAME}}` placeholder, "" when in rotation), its ring, and the
 * health-check timer.
 */
export function routingHttpDirectives(config: RoutingConfig): string[] {
    const health = Math.max(0, config.healthCheckIntervalSeconds);
    return [
        `lua_package_path ${q(`${config.luaPath ?? IMAGE_LUA_PATH}/?.lua;;`)};`,
        `lua_shared_dict ${SHARED_DICT} 10m;`,
        // cache_aware keys' homes (about 100 bytes each): a dict of their own, so that when it is full
        // its least recently used keys make room, never the counts.
        `lua_shared_dict ${SHARED_DICT}_keys 20m;`,
        // The replicas' key, for the adapters' upkeep: nginx's master reads it (as root) at every (re)load.
        ...((config.groups ?? []).some((g) => g.lora)
            ? [`init_by_lua_block { require("vllm_nginx.routing").init({ replica_authorization_file = ${config.replicaAuthorizationFile === undefined ? "nil" : q(config.replicaAuthorizationFile)} }) }`]
            : []),
        "init_worker_by_lua_block {",
        '    require("vllm_nginx.routing").start({',
        `        method = ${q(config.method)},`,
        `        session_header = ${q(config.sessionHeader)},`,
        `        load_bound = ${config.loadBound},`,
        `        max_fails = ${config.maxFails},`,
        `        fail_timeout = ${config.failTimeoutSeconds},`,
        `        health_interval = ${usesLuaBalancer(config.method) ? health : 0},`,
        `        health_timeout_ms = ${HEALTH_TIMEOUT_MS},`,
        `        health_path = ${q(HEALTH_PATH)},`,
        "        peers = {",
        ...config.upstreams.map((u) => `            { name = ${q(u.name)}, address = ${q(u.address)}, out = "{{down:${u.name}}}"${u.group === undefined ? "" : `, group = ${q(u.group)}`} },`),
        "        },",
        ...(config.groups ? ["        groups = {", ...config.groups.flatMap(luaGroup), "        },"] : []),
        ...(config.clientModels && Object.keys(config.clientModels).length > 0
            ? ["        client_models = {", ...Object.entries(config.clientModels).map(([client, models]) => `            [${q(client)}] = { ${models.map(q).join(", ")} },`), "        },"]
            : []),
        "    })",
        "}",
    ];
}

/** The upstream of replicas: nginx's `server` lines (with the rotation's placeholders) and the balancer. */
export function upstreamBlock(config: RoutingConfig, keepalive: { connections: number; idleSeconds: number }): string[] {
    const servers = config.upstreams.map((u) => {
        const weight = u.weight !== undefined && u.weight !== 1 ? ` weight=${u.weight}` : "";
        return `    server ${u.address}${weight} max_fails=${config.maxFails} fail_timeout=${nginxSeconds(config.failTimeoutSeconds)}{{down:${u.name}}};  # ${u.name}{{note:${u.name}}}`;
    });
    const method = usesLuaBalancer(config.method)
        ? [
              // The Lua balancer picks among the replicas in rotation that pass /health; the server lines
              // above it stay for nginx's bookkeeping and are marked down with the rotation as well.
              `    # ${config.method}, ${config.healthCheckIntervalSeconds > 0 ? `active /health checks every ${config.healthCheckIntervalSeconds}s` : "no active health checks"}: ${ROUTING_STATUS_PATH} on the status listener`,
              '    balancer_by_lua_block { require("vllm_nginx.routing").balance() }',
          ]
        : ["    hash $vllm_route_key consistent;"];
    return [
        "upstream vllm_backend {",
        // Shared by all workers: nginx's own peer state, as the Lua balancer's counts are in its shared dict.
        "    zone vllm_backend 1m;",
        ...servers,
        ...method,
        // Must follow the balancing method; keeps connections to the replicas open between requests.
        `    keepalive ${keepalive.connections};`,
        `    keepalive_timeout ${keepalive.idleSeconds}s;`,
        "}",
    ];
}

/**
 * Directives of the location that proxies to the replicas. The key is read in the access phase, which
 * nginx runs after `allow`/`deny`, `auth_request` and the `limit_*` modules, so a request refused there
 * is never read or routed.
 */
export function routingLocationDirectives(config: RoutingConfig): string[] {
    const key = needsRoutingKey(config.method) || routesByModel(config) || (config.groups ?? []).some((g) => needsRoutingKey(g.method))
        ? [
              '        set $vllm_route_key "";',
              '        set $vllm_route_source "";',
              '        access_by_lua_block { require("vllm_nginx.routing").access() }',
          ]
        : [];
    const log = usesLuaBalancer(config.method) ? ['        log_by_lua_block { require("vllm_nginx.routing").log() }'] : [];
    return [...key, ...log];
}

/** The status location for the internal listener. */
export function routingStatusLocation(config: RoutingConfig): string[] {
    if (!usesLuaBalancer(config.method)) {
        return [];
    }
    return [`    location = ${ROUTING_STATUS_PATH} {`, '        default_type application/json;', '        content_by_lua_block { require("vllm_nginx.routing").status() }', "    }"];
}
