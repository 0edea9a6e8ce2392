/**
 * Raw stack config to fleet settings: every key read, defaulted and validated at preview time, before any
 * resource is created. Pure code: no Pulumi runtime is needed to call it.
 */
import * as os from "os";
import * as path from "path";
import { BACKENDS, LOCAL_HOST, planPlacement } from "../planning";
import { defaultSubnet } from "../planning/subnet";
import { CONFIG_KEYS, DEFAULTS } from "./keys";
import { ConfigReader, FleetConfigError, type RawConfig } from "./reader";
import { DURATION_FORMS, parseDurationSeconds } from "./units";
import { BALANCERS, RESTART_POLICIES, type FleetSettings, type VllmBuildSpec } from "./settings";

/**
 * Validates raw stack config and applies every default. Throws {@link FleetConfigError} listing every
 * problem found; returns settings that the components can use without further checks.
 *
 * @param stack the stack name, used as the prefix of every name on the Docker host.
 * @param dockerHost the `docker:host` config: the engine address of the `local` host, when set.
 */
export function parseFleetConfig(raw: RawConfig, stack: string, dockerHost?: string): FleetSettings {
    const read = new ConfigReader(raw);

    for (const key of Object.keys(raw)) {
        if (!(CONFIG_KEYS as readonly string[]).includes(key)) {
            read.problem(key, raw[key], `not a known key; known keys are ${CONFIG_KEYS.join(", ")}`);
        }
    }
    if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(stack)) {
        read.problem(undefined, stack, "must be usable in Docker names: letters, digits, '_', '.', '-', starting with a letter or digit");
    }

    const model = read.string("model");
    if (model === undefined) {
        read.problem("model", undefined, 'required: the Hugging Face model id to serve, e.g. "meta-llama/Llama-2-7b-chat-hf"');
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
    const placement = planPlacement({
        backend,
        gpus: read.stringList("gpus"),
        replicas: backend === "cpu" ? read.integer("replicas", DEFAULTS.replicas, 1, 64) : DEFAULTS.replicas,
        cpuThreadsBind: readThreadsBind(read),
        spareGpus: rollout.spareGpus,
        spareReplicas: rollout.spareReplicas,
        spareCpuThreadsBind: rollout.spareCpuThreadsBind,
        lbPort,
        replicaPortBase,
        networkSubnet,
    });
    // A key whose value could not be read at all was reported already; what planning made of its
    // fallback would only repeat that.
    for (const problem of placement.problems) {
        if (problem.key === undefined || !read.reported(problem.key)) {
            read.problems.push(problem);
        }
    }

    const settings: FleetSettings = {
        prefix: stack,
        serve: {
            model: model ?? "",
            servedModelName: read.string("servedModelName"),
            vllmArgs: read.stringList("vllmArgs") ?? [],
        },
        replica: {
            backend,
            cpuKvCacheSpace: read.integer("cpuKvCacheSpace", DEFAULTS.cpuKvCacheSpace, 1, 4096),
            hfCacheDir: expandHome(read.string("hfCacheDir", DEFAULTS.hfCacheDir)),
            shmSizeBytes: read.size("shmSize", DEFAULTS.shmSize),
            ipcHost: read.boolean("ipcHost", DEFAULTS.ipcHost),
            portBind: read.ipv4("replicaPortBind", DEFAULTS.replicaPortBind),
            startupTimeoutSeconds: read.duration("startupTimeout", DEFAULTS.startupTimeout, 10),
            stopGraceSeconds: read.duration("stopGracePeriod", DEFAULTS.stopGracePeriod, 0),
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
            method: read.oneOf("balancer", BALANCERS, DEFAULTS.balancer),
            sessionHeader: readHeaderName(read, "sessionHeader", DEFAULTS.sessionHeader),
            loadBound: read.number("loadBound", DEFAULTS.loadBound, 1, 100),
            healthCheckIntervalSeconds: readHealthInterval(read),
            maxFails: read.integer("maxFails", DEFAULTS.maxFails, 0, 1000),
            failTimeoutSeconds: read.duration("failTimeout", DEFAULTS.failTimeout, 1),
            readTimeoutSeconds: read.duration("readTimeout", DEFAULTS.readTimeout, 1),
            connectTimeoutSeconds: read.duration("connectTimeout", DEFAULTS.connectTimeout, 1),
            maxBodyBytes: read.size("maxBodySize", DEFAULTS.maxBodySize),
            port: lbPort,
            bind: read.ipv4("lbBind", DEFAULTS.lbBind),
        },
        network: { subnet: networkSubnet },
        placement: placement.placement,
        rollout: { maxUnavailable: rollout.maxUnavailable },
        engines: { [LOCAL_HOST]: dockerHost },
    };

    if (read.problems.length > 0) {
        throw new FleetConfigError(read.problems);
    }
    return settings;
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
    let maxUnavailable: number | string = DEFAULTS.maxUnavailable;
    const raw = sub.value("maxUnavailable");
    if (typeof raw === "string" && /^\s*\d+\s*%\s*$/.test(raw)) {
        const percent = Number(raw.replace("%", "").trim());
        if (percent < 1 || percent > 100) {
            read.problem("rollout.maxUnavailable", raw, "a whole number of replicas (at least 1) or a percentage from 1% to 100%");
        } else {
            maxUnavailable = `${percent}%`;
        }
    } else {
        maxUnavailable = sub.integer("maxUnavailable", DEFAULTS.maxUnavailable, 1, 1024);
    }
    const result = {
        maxUnavailable,
        spareGpus: sub.stringList("spareGpus"),
        spareReplicas: sub.integer("spareReplicas", 0, 0, 64),
        spareCpuThreadsBind: sub.stringList("spareCpuThreadsBind"),
    };
    for (const problem of sub.problems) {
        read.problem(`rollout.${problem.key}`, problem.value, problem.key === "maxUnavailable" ? "a whole number of replicas (at least 1) or a percentage from 1% to 100%" : problem.allowed);
    }
    return result;
}

/** `cpuThreadsBind`: "auto" or a list of core ranges; a value of another shape is reported here. */
function readThreadsBind(read: ConfigReader): "auto" | string[] {
    const bind = read.value("cpuThreadsBind");
    if (bind === undefined || bind === DEFAULTS.cpuThreadsBind) {
        return "auto";
    }
    const ranges = Array.isArray(bind) && bind.every((v) => typeof v === "string" || typeof v === "number") ? bind.map(String) : undefined;
    if (ranges === undefined) {
        read.problem("cpuThreadsBind", bind, '"auto" or a list of core ranges, one per replica, e.g. ["0-3", "4-7"]');
        return "auto";
    }
    return ranges;
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
        dockerfile: (spec.dockerfile as string | undefined) ?? DEFAULTS.vllmBuildDockerfile,
        target: (spec.target as string | undefined) ?? DEFAULTS.vllmBuildTarget,
        args: Object.fromEntries(Object.entries((spec.args as Record<string, unknown> | undefined) ?? {}).map(([k, v]) => [k, String(v)])),
    };
}

/** An HTTP header name as nginx exposes it in `$http_*`: letters, digits and dashes. */
function readHeaderName(read: ConfigReader, key: string, fallback: string): string {
    const name = read.string(key, fallback);
    if (!/^[A-Za-z0-9][A-Za-z0-9-]*$/.test(name)) {
        read.problem(key, name, 'an HTTP header name of letters, digits and dashes, e.g. "x-user-id"');
        return fallback;
    }
    return name.toLowerCase();
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
