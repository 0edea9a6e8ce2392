/**
 * Raw stack config to fleet settings: every key read, defaulted and validated at preview time, before any
 * resource is created. Pure code: no Pulumi runtime is needed to call it.
 */
import * as os from "os";
import * as path from "path";
import { parseMonitoringSettings } from "../monitoring/settings";
import { BACKENDS, DEFAULT_GROUP, LOCAL_HOST, TOP_LEVEL_KEYS, planPlacement, type Backend, type HostInputs } from "../planning";
import { defaultSubnet, isLoopback } from "../planning/subnet";
import { readEdge, type SecretConfig } from "./edge";
import { CONFIG_KEYS, DEFAULTS } from "./keys";
import { ConfigReader, FleetConfigError, type RawConfig } from "./reader";
import { checkHeaderName, readMaxUnavailable, readThreadsBind } from "./fields";
import { groupServe, readModelGroups, servedNames } from "./groups";
import { DURATION_FORMS, parseDurationSeconds } from "./units";
import { BALANCERS, RESTART_POLICIES, type FleetSettings, type VllmBuildSpec } from "./settings";

/**
 * Validates raw stack config and applies every default. Throws {@link FleetConfigError} listing every
 * problem found; returns settings that the components can use without further checks.
 *
 * @param stack the stack name, used as the prefix of every name on the Docker host.
 * @param dockerHost the `docker:host` config: the engine address of the `local` host, when set.
 * @param secrets the secret keys' values, to be checked (and the public parts of them, such as client key
 *   names, read); the settings returned hold no secret.
 */
export function parseFleetConfig(raw: RawConfig, stack: string, dockerHost?: string, secrets: SecretConfig = {}): FleetSettings {
    const read = new ConfigReader(raw);

    for (const key of Object.keys(raw)) {
        if (!(CONFIG_KEYS as readonly string[]).includes(key)) {
            read.problem(key, raw[key], `not a known key; known keys are ${CONFIG_KEYS.join(", ")}`);
        }
    }
    if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(stack)) {
        read.problem(undefined, stack, "must be usable in Docker names: letters, digits, '_', '.', '-', starting with a letter or digit");
    }

    const grouped = read.has("models");
    const model = read.string("model");
    if (model === undefined && !grouped) {
        read.problem("model", undefined, 'required: the Hugging Face model id to serve, e.g. "meta-llama/Llama-2-7b-chat-hf" (or model groups in models)');
    }

    const backend = read.oneOf("backend", BACKENDS, DEFAULTS.backend);
    const vllmImage = read.string("vllmImage");
    const vllmBuild = readVllmBuild(read);
    if (vllmImage !== undefined && read.has("vllmBuild")) {
        read.problem("vllmBuild", read.value("vllmBuild"), "not allowed together with vllmImage: set one of vllmImage (pull) or vllmBuild (build)");
    }

    const lbPort = read.integer("lbPort", DEFAULTS.lbPort, 1, 65535);
    const replicaPortBase = read.integer("replicaPortBase", DEFAULTS.replicaPortBase, 1, 65535);
    const networkSubnet = read.string("networkSubnet", defaultSubnet(stack));
    const rollout = readRollout(read);
    const replicaPortBind = read.ipv4("replicaPortBind", DEFAULTS.replicaPortBind);
    const hosts = read.has("hosts")
        ? readHosts(read, backend, rollout, secrets.values?.hostTls)
        : [
              {
                  name: LOCAL_HOST,
                  balancer: true,
                  gpus: read.stringList("gpus"),
                  replicas: backend === "cpu" ? read.integer("replicas", DEFAULTS.replicas, 1, 64) : DEFAULTS.replicas,
                  cpuThreadsBind: readThreadsBind(read, "cpuThreadsBind", read.value("cpuThreadsBind")),
                  spareGpus: rollout.spareGpus,
                  spareReplicas: rollout.spareReplicas,
                  spareCpuThreadsBind: rollout.spareCpuThreadsBind,
                  keys: TOP_LEVEL_KEYS,
              },
          ];
    // The fleet-wide balancing and startup settings: a stack's one group's, and every model group's defaults.
    const balancing = {
        method: read.oneOf("balancer", BALANCERS, DEFAULTS.balancer),
        sessionHeader: readHeaderName(read, "sessionHeader", DEFAULTS.sessionHeader),
        loadBound: read.number("loadBound", DEFAULTS.loadBound, 1, 100),
    };
    // Whole seconds: the rollout scripts count in them.
    const startupTimeoutSeconds = read.duration("startupTimeout", DEFAULTS.startupTimeout, 10, { wholeSeconds: true });
    if (grouped) {
        refuseSingleModelKeys(read, rollout);
    }
    const modelGroups = readModelGroups(read, {
        backend,
        hosts: read.has("hosts") ? hosts.map((h) => h.name) : undefined,
        localHost: LOCAL_HOST,
        defaults: { ...balancing, maxUnavailable: rollout.maxUnavailable, startupTimeoutSeconds },
    });
    const placement = planPlacement({ backend, hosts, groups: modelGroups?.placement, lbPort, replicaPortBase, replicaPortBind, networkSubnet });
    const serve = { model: model ?? "", servedModelName: read.string("servedModelName"), vllmArgs: read.stringList("vllmArgs") ?? [] };
    const groups = modelGroups?.groups ?? [
        {
            name: DEFAULT_GROUP,
            model: serve.model,
            servedModelNames: serve.servedModelName === undefined ? [] : [serve.servedModelName],
            vllmArgs: serve.vllmArgs,
            env: {},
            balancer: balancing,
            maxUnavailable: rollout.maxUnavailable,
            startupTimeoutSeconds,
            adapters: [],
        },
    ];
    // A key whose value could not be read at all was reported already; what planning made of its
    // fallback would only repeat that.
    for (const problem of placement.problems) {
        if (problem.key === undefined || !read.reported(problem.key)) {
            read.problems.push(problem);
        }
    }

    const monitoring = parseMonitoringSettings(read.value("monitoring"), (value, allowed) => read.problem("monitoring", value, allowed));
    if (monitoring.prometheus) {
        // Monitoring runs on the balancer's host: its ports must not be one of that host's.
        const balancerHost = placement.placement.hosts.find((h) => h.balancer)?.name;
        const portsThere = placement.placement.slots.filter((slot) => slot.host === balancerHost).length;
        const taken = (port: number) => (port === lbPort ? "lbPort" : port >= replicaPortBase && port < replicaPortBase + portsThere ? "a replica port" : undefined);
        const fields: ("prometheusPort" | "grafanaPort")[] = monitoring.grafana ? ["prometheusPort", "grafanaPort"] : ["prometheusPort"];
        for (const field of fields) {
            const clash = taken(monitoring[field]);
            if (clash) {
                read.problem("monitoring", { [field]: monitoring[field] }, `${field}: a port other than ${clash}`);
            }
        }
    }

    const hostEngines = read.has("hosts") ? engineList(read) : [];
    const settings: FleetSettings = {
        prefix: stack,
        serve: groupServe(groups[0]),
        groups,
        replica: {
            backend,
            cpuKvCacheSpace: read.integer("cpuKvCacheSpace", DEFAULTS.cpuKvCacheSpace, 1, 4096),
            hfCacheDir: expandHome(read.string("hfCacheDir", DEFAULTS.hfCacheDir)),
            shmSizeBytes: read.size("shmSize", DEFAULTS.shmSize),
            ipcHost: read.boolean("ipcHost", DEFAULTS.ipcHost),
            portBind: replicaPortBind,
            startupTimeoutSeconds,
            stopGraceSeconds: read.duration("stopGracePeriod", DEFAULTS.stopGracePeriod, 0, { wholeSeconds: true }),
            restartPolicy: read.oneOf("restartPolicy", RESTART_POLICIES, DEFAULTS.restartPolicy),
            warmFirstReplica: read.boolean("warmFirstReplica", DEFAULTS.warmFirstReplica),
        },
        images: {
            vllmImage: vllmImage ?? (vllmBuild ? undefined : backend === "gpu" ? DEFAULTS.gpuImage : DEFAULTS.cpuImage),
            vllmBuild,
            nginxBaseImage: read.string("nginxBaseImage", DEFAULTS.nginxBaseImage),
        },
        proxy: {
            httpProxy: read.string("httpProxy"),
            httpsProxy: read.string("httpsProxy"),
            noProxy: read.string("noProxy"),
        },
        balancer: {
            ...balancing,
            healthCheckIntervalSeconds: readHealthInterval(read),
            maxFails: read.integer("maxFails", DEFAULTS.maxFails, 0, 1000),
            // Whole seconds: nginx's fail_timeout takes no milliseconds.
            failTimeoutSeconds: read.duration("failTimeout", DEFAULTS.failTimeout, 1, { wholeSeconds: true }),
            readTimeoutSeconds: read.duration("readTimeout", DEFAULTS.readTimeout, 1),
            connectTimeoutSeconds: read.duration("connectTimeout", DEFAULTS.connectTimeout, 1),
            maxBodyBytes: read.size("maxBodySize", DEFAULTS.maxBodySize),
            port: lbPort,
            bind: read.ipv4("lbBind", DEFAULTS.lbBind),
            workers: read.integer("lbWorkers", DEFAULTS.lbWorkers, 1, 64),
        },
        network: { subnet: networkSubnet },
        placement: placement.placement,
        rollout: { maxUnavailable: rollout.maxUnavailable },
        monitoring,
        edge: readEdge(read, secrets, lbPort),
        engines: read.has("hosts") ? Object.fromEntries(hostEngines) : { [LOCAL_HOST]: dockerHost },
    };

    requireReplicaKey(read, settings);
    checkClientModels(read, settings);
    if (read.problems.length > 0) {
        throw new FleetConfigError(read.problems);
    }
    return settings;
}

/** A client key's `models` names only what the endpoint serves: each group's models and adapters. */
function checkClientModels(read: ConfigReader, settings: FleetSettings): void {
    const served = settings.groups.flatMap((group) => [...servedNames(group), ...group.adapters.map((a) => a.name)]);
    settings.edge.clients.forEach((client, i) => {
        for (const model of (client.models ?? []).filter((m) => !served.includes(m))) {
            read.problem(`clientKeys[${i}].models`, model, `a name the endpoint serves: ${served.map((n) => `"${n}"`).join(", ")}`);
        }
    });
}

/**
 * With `models`, the keys of the one model a stack serves without them are set per group: set at the top
 * level too (other than Pulumi.yaml's defaults), they are refused, each with where it goes.
 */
function refuseSingleModelKeys(read: ConfigReader, rollout: { spareGpus?: string[]; spareReplicas: number; spareCpuThreadsBind?: string[] }): void {
    const unset = (value: unknown, defaultValue = "") =>
        value === undefined || value === null || ((typeof value === "string" || typeof value === "number") && String(value) === defaultValue) || (Array.isArray(value) && value.length === 0);
    const perGroup: [string, string][] = [
        ["model", "models[].model"],
        ["servedModelName", "models[].servedModelName"],
        ["gpus", "models[].gpus"],
        ["vllmArgs", "models[].vllmArgs"],
    ];
    for (const [key, where] of perGroup) {
        if (!unset(read.value(key))) {
            read.problem(key, read.value(key), `set per model group with models: ${where}`);
        }
    }
    if (!unset(read.value("replicas"), String(DEFAULTS.replicas))) {
        read.problem("replicas", read.value("replicas"), "set per model group with models: models[].replicas");
    }
    if (!unset(read.value("cpuThreadsBind"), DEFAULTS.cpuThreadsBind)) {
        read.problem("cpuThreadsBind", read.value("cpuThreadsBind"), "set per model group with models: models[].cpuThreadsBind");
    }
    if (!read.has("hosts") && (rollout.spareGpus !== undefined || rollout.spareReplicas > 0 || rollout.spareCpuThreadsBind !== undefined)) {
        read.problem("rollout", read.value("rollout"), "spare capacity is set per model group with models: models[].rollout.spareGpus, spareReplicas, spareCpuThreadsBind");
    }
    const hosts = read.value("hosts");
    if (Array.isArray(hosts)) {
        hosts.forEach((host: Record<string, unknown>, i) => {
            for (const field of ["gpus", "replicas", "cpuThreadsBind", "spareGpus", "spareReplicas", "spareCpuThreadsBind"].filter((f) => host?.[f] !== undefined)) {
                read.problem(`hosts[${i}].${field}`, host[field], `set per model group with models: models[].hosts, as [{"name": "${typeof host.name === "string" ? host.name : "<host>"}", "${field}": ...}]`);
            }
        });
    }
}

/**
 * A replica published beyond the loopback (`replicaPortBind` opened; replicas of other hosts publish nothing, the relay reaches them) is
 * reachable around the balancer, its keys and its limits: it must require `apiKey`, which only the
 * balancer sends it.
 */
function requireReplicaKey(read: ConfigReader, settings: FleetSettings): void {
    if (settings.edge.replicaKey) {
        return;
    }
    const open = settings.placement.slots.filter((slot) => slot.publish !== undefined && !isLoopback(slot.publish));
    if (open.length === 0) {
        return;
    }
    const where = open
        .slice(0, 3)
        .map((slot) => `${slot.name} on ${slot.publish}:${slot.hostPort}`)
        .join(", ");
    read.problem(
        "apiKey",
        undefined,
        `required when replicas publish beyond the loopback (${where}${open.length > 3 ? ", ..." : ""}): a key only the balancer sends them, ` +
            'so that nobody on that network uses them around it. Set it with `pulumi config set --secret apiKey "$(openssl rand -hex 24)"`',
    );
}

const ROLLOUT_FIELDS = ["maxUnavailable", "spareGpus", "spareReplicas", "spareCpuThreadsBind"];

/** `rollout`: {maxUnavailable, spareGpus (gpu), spareReplicas and spareCpuThreadsBind (cpu)}, each optional. */
function readRollout(read: ConfigReader): { maxUnavailable: number | string; spareGpus?: string[]; spareReplicas: number; spareCpuThreadsBind?: string[] } {
    const defaults = { maxUnavailable: DEFAULTS.maxUnavailable, spareReplicas: 0 };
    const value = read.value("rollout");
    if (value === undefined) {
        return defaults;
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
        read.problem("rollout", value, 'an object {maxUnavailable?, spareGpus?, spareReplicas?, spareCpuThreadsBind?}, e.g. {"maxUnavailable": 1, "spareGpus": ["4"]}');
        return defaults;
    }
    const fields = value as Record<string, unknown>;
    for (const field of Object.keys(fields).filter((f) => !ROLLOUT_FIELDS.includes(f))) {
        read.problem(`rollout.${field}`, fields[field], `not a field of rollout; its fields are ${ROLLOUT_FIELDS.join(", ")}`);
    }
    const sub = new ConfigReader(fields);
    const result = {
        maxUnavailable: readMaxUnavailable(read, "rollout.maxUnavailable", fields.maxUnavailable, DEFAULTS.maxUnavailable),
        spareGpus: sub.stringList("spareGpus"),
        spareReplicas: sub.integer("spareReplicas", 0, 0, 64),
        spareCpuThreadsBind: sub.stringList("spareCpuThreadsBind"),
    };
    for (const problem of sub.problems) {
        read.problem(`rollout.${problem.key}`, problem.value, problem.allowed);
    }
    return result;
}

const HOST_FIELDS = ["name", "engine", "address", "gpus", "replicas", "cpuThreadsBind", "spareGpus", "spareReplicas", "spareCpuThreadsBind"];

/** A Docker engine address: `ssh://[user@]host[:port]`, `tcp://host:port` or `unix:///path`. */
export function isEngineAddress(text: string): boolean {
    return /^ssh:\/\/([^@/\s]+@)?[A-Za-z0-9.-]+(:\d+)?$/.test(text) || /^tcp:\/\/[A-Za-z0-9.-]+:\d+$/.test(text) || /^unix:\/\/\/\S+$/.test(text);
}

function isHostAddress(text: string): boolean {
    return /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/.test(text);
}

/**
 * `hosts`: the Docker engines the fleet runs on, each with its replicas, and `balancerHost`, the one that
 * runs the balancer (the first by default). With hosts, the top-level replica keys are not used.
 */
function readHosts(read: ConfigReader, backend: Backend, rollout: { spareGpus?: string[]; spareReplicas: number; spareCpuThreadsBind?: string[] }, hostTls: unknown): HostInputs[] {
    const value = read.value("hosts");
    const shape = 'a list of hosts, each {name, engine, address?, gpus (gpu) or replicas and cpuThreadsBind? (cpu), spareGpus?, spareReplicas?, spareCpuThreadsBind?}, e.g. [{"name": "gpu-a", "engine": "ssh://ops@gpu-a", "address": "10.0.0.11", "gpus": ["0", "1"]}]';
    if (!Array.isArray(value) || value.length === 0 || !value.every((h) => typeof h === "object" && h !== null && !Array.isArray(h))) {
        read.problem("hosts", value, shape);
        return [];
    }
    // Pulumi.yaml's defaults reach the program as values; only a value other than the default was set.
    const defaults: Record<string, unknown> = { replicas: String(DEFAULTS.replicas), cpuThreadsBind: DEFAULTS.cpuThreadsBind };
    for (const key of ["gpus", "replicas", "cpuThreadsBind"]) {
        if (read.has(key) && String(read.value(key)) !== defaults[key]) {
            read.problem(key, read.value(key), "set per host with hosts: a host's replicas are in its entry of hosts");
        }
    }
    if (rollout.spareGpus !== undefined || rollout.spareReplicas > 0 || rollout.spareCpuThreadsBind !== undefined) {
        read.problem("rollout", read.value("rollout"), "spare capacity is set per host with hosts: spareGpus, spareReplicas, spareCpuThreadsBind in a host's entry");
    }
    const entries = value as Record<string, unknown>[];
    const names = entries.map((h) => (typeof h.name === "string" ? h.name : ""));
    const balancerHost = read.string("balancerHost", names[0] ?? "");
    if (read.has("balancerHost") && !names.includes(balancerHost)) {
        read.problem("balancerHost", balancerHost, `the name of one of hosts: ${names.filter(Boolean).map((n) => `"${n}"`).join(", ")}`);
    }
    return entries.map((entry, index) => {
        const at = (field: string) => `hosts[${index}].${field}`;
        const sub = new ConfigReader(entry);
        for (const field of Object.keys(entry).filter((f) => !HOST_FIELDS.includes(f))) {
            read.problem(at(field), entry[field], `not a field of a host; its fields are ${HOST_FIELDS.join(", ")}`);
        }
        const name = sub.string("name");
        if (name === undefined || !/^[a-z0-9][a-z0-9_.-]*$/.test(name)) {
            read.problem(at("name"), entry.name, 'a name usable in Docker names: lowercase letters, digits, "_", ".", "-", e.g. "gpu-a"');
        } else if (names.indexOf(name) !== index) {
            read.problem(at("name"), name, `a name no other host has: hosts[${names.indexOf(name)}] is "${name}" too`);
        }
        const engine = sub.string("engine");
        if (engine === undefined || !isEngineAddress(engine)) {
            read.problem(at("engine"), entry.engine, 'the Docker engine address, as DOCKER_HOST takes it: "ssh://user@host", "tcp://host:2376" (TLS material in the secret hostTls) or "unix:///var/run/docker.sock"');
        } else if (engine.startsWith("tcp://") && !(typeof hostTls === "object" && hostTls !== null && name !== undefined && name in hostTls)) {
            // Without TLS the Docker API is open to anyone who reaches the port (root on that host), and every
            // container create would send the replicas' secrets over it in clear text.
            read.problem(at("engine"), engine, `hostTls for "${name}": a tcp:// engine needs its TLS material (pulumi config set --secret hostTls ...), or use ssh://`);
        }
        const balancer = name !== undefined && name === balancerHost;
        const address = sub.string("address");
        if (address !== undefined && !isHostAddress(address)) {
            read.problem(at("address"), address, "an IPv4 address or a host name the balancer's host reaches this host at");
        } else if (address === undefined && !balancer) {
            read.problem(at("address"), undefined, "required for a host that does not run the balancer: the address the balancer's host reaches it at (its replicas publish their ports there)");
        } else if (address === "0.0.0.0") {
            read.problem(at("address"), address, "a reachable address, not 0.0.0.0: replica ports are published on it, and on nothing else");
        }
        const hostInputs: HostInputs = {
            name: name ?? `host${index}`,
            balancer,
            address,
            gpus: sub.stringList("gpus"),
            replicas: backend === "cpu" ? sub.integer("replicas", DEFAULTS.replicas, 1, 64) : DEFAULTS.replicas,
            cpuThreadsBind: readThreadsBind(read, at("cpuThreadsBind"), entry.cpuThreadsBind),
            spareGpus: sub.stringList("spareGpus"),
            spareReplicas: sub.integer("spareReplicas", 0, 0, 64),
            spareCpuThreadsBind: sub.stringList("spareCpuThreadsBind"),
            keys: {
                gpus: at("gpus"),
                replicas: at("replicas"),
                cpuThreadsBind: at("cpuThreadsBind"),
                spareGpus: at("spareGpus"),
                spareReplicas: at("spareReplicas"),
                spareCpuThreadsBind: at("spareCpuThreadsBind"),
            },
        };
        for (const problem of sub.problems) {
            if (problem.key !== "name" && problem.key !== "engine" && problem.key !== "address" && problem.key !== "cpuThreadsBind") {
                read.problem(at(problem.key!), problem.value, problem.allowed);
            }
        }
        return hostInputs;
    });
}

/** Each host's engine address, as written in `hosts`. */
function engineList(read: ConfigReader): [string, string | undefined][] {
    const value = read.value("hosts");
    if (!Array.isArray(value)) {
        return [];
    }
    return (value as Record<string, unknown>[]).map((h, i) => [typeof h.name === "string" ? h.name : `host${i}`, typeof h.engine === "string" ? h.engine : undefined]);
}

function readVllmBuild(read: ConfigReader): VllmBuildSpec | undefined {
    const value = read.value("vllmBuild");
    if (value === undefined) {
        return undefined;
    }
    const allowed = 'an object {context, dockerfile?, target?, args?}, e.g. {"context": "../vllm", "dockerfile": "docker/Dockerfile"}';
    if (typeof value !== "object" || Array.isArray(value) || value === null) {
        read.problem("vllmBuild", value, allowed);
        return undefined;
    }
    const spec = value as Record<string, unknown>;
    const unknownFields = Object.keys(spec).filter((k) => !["context", "dockerfile", "target", "args"].includes(k));
    const argsOk =
        spec.args === undefined ||
        (typeof spec.args === "object" && spec.args !== null && !Array.isArray(spec.args) && Object.values(spec.args).every((v) => typeof v === "string" || typeof v === "number"));
    if (
        typeof spec.context !== "string" ||
        spec.context === "" ||
        (spec.dockerfile !== undefined && typeof spec.dockerfile !== "string") ||
        (spec.target !== undefined && typeof spec.target !== "string") ||
        !argsOk ||
        unknownFields.length > 0
    ) {
        read.problem("vllmBuild", value, allowed);
        return undefined;
    }
    return {
        context: spec.context,
        dockerfile: spec.dockerfile ?? DEFAULTS.vllmBuildDockerfile,
        target: spec.target ?? DEFAULTS.vllmBuildTarget,
        args: Object.fromEntries(Object.entries((spec.args as Record<string, unknown> | undefined) ?? {}).map(([k, v]) => [k, String(v)])),
    };
}

/** An HTTP header name as nginx exposes it in `$http_*`: letters, digits and dashes. */
function readHeaderName(read: ConfigReader, key: string, fallback: string): string {
    return checkHeaderName(read, key, read.string(key, fallback) ?? fallback, fallback);
}

/** `healthCheckInterval`: from 200ms to 60s, so that a failing replica leaves within a few intervals. */
function readHealthInterval(read: ConfigReader): number {
    const text = read.string("healthCheckInterval", DEFAULTS.healthCheckInterval);
    const seconds = parseDurationSeconds(text);
    if (seconds === undefined || seconds < 0.2 || seconds > 60) {
        read.problem("healthCheckInterval", text, `a duration from 200ms to 60s: ${DURATION_FORMS}`);
        return parseDurationSeconds(DEFAULTS.healthCheckInterval)!;
    }
    return seconds;
}

function expandHome(dir: string): string {
    if (dir === "~") {
        return os.homedir();
    }
    return dir.startsWith("~/") ? path.join(os.homedir(), dir.slice(2)) : dir;
}
