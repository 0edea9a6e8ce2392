/**
 * `models`: several model groups behind one endpoint. Each group has what a fleet of one model has with
 * the top-level keys: the model, the names clients send, its replicas (GPU entries or CPU replicas, per
 * host), its flags, environment and image, its balancing, rollout and startup settings, and its LoRA
 * adapters. Pure code: reads raw values, reports every problem by its key (`models[1].gpus`), and hands
 * planning typed inputs.
 */
import * as path from "path";
import type { Backend, GroupPlacementInputs, HostInputs } from "../planning";
import { checkHeaderName, readMaxUnavailable, readThreadsBind } from "./fields";
import { DEFAULTS } from "./keys";
import { ConfigReader } from "./reader";
import { BALANCERS, type AdapterSettings, type Balancer, type ModelGroupSettings, type ServeSettings } from "./settings";

export type { AdapterSettings, ModelGroupSettings } from "./settings";

/**
 * What a group's replicas serve. For the one group of a stack without `models`, exactly the top-level
 * keys' settings (fields added only when set), so that its spec, and its containers, stay as they were.
 */
export function groupServe(group: ModelGroupSettings): ServeSettings {
    const names = group.servedModelNames;
    return {
        model: group.model,
        servedModelName: names.length === 0 ? undefined : names.length === 1 ? names[0] : names,
        vllmArgs: group.vllmArgs,
        ...(Object.keys(group.env).length > 0 ? { env: group.env } : {}),
        ...(group.adapters.length > 0 ? { lora: { folders: adapterFolders(group.adapters) } } : {}),
    };
}

/**
 * The host folders a group's replicas mount for its adapters that come from a path: each one's parent
 * folder, so that another adapter in a folder already mounted is added without replacing a container.
 * Sorted, and without a folder inside another one.
 */
export function adapterFolders(adapters: AdapterSettings[]): string[] {
    const folders = [...new Set(adapters.filter((a) => a.source.startsWith("/")).map((a) => path.posix.dirname(a.source.replace(/\/+$/, ""))))].sort();
    return folders.filter((folder) => !folders.some((other) => other !== folder && (other === "/" || folder.startsWith(`${other}/`))));
}

/** The names clients send for a group's model: its served names, else its model id. */
export function servedNames(group: Pick<ModelGroupSettings, "model" | "servedModelNames">): string[] {
    return group.servedModelNames.length > 0 ? group.servedModelNames : [group.model];
}

export const GROUP_FIELDS = [
    "name",
    "model",
    "servedModelName",
    "gpus",
    "replicas",
    "cpuThreadsBind",
    "hosts",
    "vllmArgs",
    "env",
    "vllmImage",
    "balancer",
    "sessionHeader",
    "loadBound",
    "rollout",
    "startupTimeout",
    "adapters",
] as const;

/** Top-level keys that a stack with `models` sets per group instead. */
export const PER_GROUP_KEYS = ["model", "servedModelName", "gpus", "vllmArgs", "balancer", "sessionHeader", "loadBound", "startupTimeout"] as const;

const GROUP_HOST_FIELDS = ["name", "gpus", "replicas", "cpuThreadsBind", "spareGpus", "spareReplicas", "spareCpuThreadsBind"];
const GROUP_ROLLOUT_FIELDS = ["maxUnavailable", "spareGpus", "spareReplicas", "spareCpuThreadsBind"];
const EXAMPLE = '[{"name": "chat", "model": "meta-llama/Llama-3.1-8B-Instruct", "gpus": ["0,1"]}, {"name": "embed", "model": "BAAI/bge-m3", "gpus": ["2"], "balancer": "least_conn"}]';

export interface GroupContext {
    backend: Backend;
    /** The stack's hosts by name, when it has `hosts`; undefined for the one implicit host. */
    hosts?: string[];
    /** The implicit host's name (`local`), for a stack without `hosts`. */
    localHost: string;
    /** The fleet-wide defaults a group's balancing starts from. */
    defaults: { method: Balancer; sessionHeader: string; loadBound: number; maxUnavailable: number | string; startupTimeoutSeconds: number };
}

/**
 * Reads `models` from `read` (problems under `models[i].field`). Returns the groups and each group's entries
 * per host for planning; undefined when `models` is unset.
 */
export function readModelGroups(read: ConfigReader, context: GroupContext): { groups: ModelGroupSettings[]; placement: GroupPlacementInputs[] } | undefined {
    if (!read.has("models")) {
        return undefined;
    }
    const value = read.value("models");
    if (!Array.isArray(value) || value.length === 0 || !value.every((g) => typeof g === "object" && g !== null && !Array.isArray(g))) {
        read.problem("models", value, `a list of model groups, each {name, model, servedModelName?, gpus (gpu) or replicas (cpu) or hosts, vllmArgs?, env?, vllmImage?, balancer?, sessionHeader?, loadBound?, rollout?, startupTimeout?, adapters?}, e.g. ${EXAMPLE}`);
        return { groups: [], placement: [] };
    }
    const groups: ModelGroupSettings[] = [];
    const placement: GroupPlacementInputs[] = [];
    (value as Record<string, unknown>[]).forEach((entry, index) => {
        const at = `models[${index}]`;
        const sub = new ConfigReader(entry);
        for (const field of Object.keys(entry).filter((f) => !(GROUP_FIELDS as readonly string[]).includes(f))) {
            read.problem(`${at}.${field}`, entry[field], `not a field of a model group; its fields are ${GROUP_FIELDS.join(", ")}`);
        }
        const name = sub.string("name");
        if (name === undefined || !/^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$/.test(name)) {
            read.problem(`${at}.name`, entry.name, 'a name of lowercase letters, digits and dashes (at most 32), e.g. "chat": its replicas are named after it');
        }
        const model = sub.string("model");
        if (model === undefined || model === "") {
            read.problem(`${at}.model`, entry.model, 'required: the Hugging Face model id the group serves, e.g. "meta-llama/Llama-3.1-8B-Instruct"');
        }
        const served = entry.servedModelName;
        const servedModelNames = served === undefined ? [] : typeof served === "string" && served !== "" ? [served] : Array.isArray(served) && served.length > 0 && served.every((n) => typeof n === "string" && n !== "") ? (served as string[]) : undefined;
        if (servedModelNames === undefined) {
            read.problem(`${at}.servedModelName`, served, 'a name, or a list of names, clients send as `model`, e.g. "llama" or ["llama", "gpt-4o"]');
        }
        const rollout = readGroupRollout(read, entry.rollout, at, context);
        const keys = (prefix: string) => ({
            gpus: `${prefix}.gpus`,
            replicas: `${prefix}.replicas`,
            cpuThreadsBind: `${prefix}.cpuThreadsBind`,
            spareGpus: `${prefix}.spareGpus`,
            spareReplicas: `${prefix}.spareReplicas`,
            spareCpuThreadsBind: `${prefix}.spareCpuThreadsBind`,
        });
        const hostEntries: HostInputs[] = [];
        if (context.hosts === undefined) {
            if (entry.hosts !== undefined) {
                read.problem(`${at}.hosts`, entry.hosts, "only for a stack with hosts: without it, a group sets gpus (gpu) or replicas (cpu)");
            }
            hostEntries.push({
                name: context.localHost,
                balancer: true,
                gpus: sub.stringList("gpus"),
                replicas: context.backend === "cpu" ? sub.integer("replicas", DEFAULTS.replicas, 0, 64) : 0,
                cpuThreadsBind: readThreadsBind(read, `${at}.cpuThreadsBind`, entry.cpuThreadsBind),
                spareGpus: rollout.spareGpus,
                spareReplicas: rollout.spareReplicas,
                spareCpuThreadsBind: rollout.spareCpuThreadsBind,
                keys: { ...keys(at), spareGpus: `${at}.rollout.spareGpus`, spareReplicas: `${at}.rollout.spareReplicas`, spareCpuThreadsBind: `${at}.rollout.spareCpuThreadsBind` },
            });
        } else {
            for (const field of ["gpus", "replicas", "cpuThreadsBind"].filter((f) => entry[f] !== undefined)) {
                read.problem(`${at}.${field}`, entry[field], `set per host in ${at}.hosts, as [{"name": "<a host of hosts>", "${field}": ...}]`);
            }
            hostEntries.push(...readGroupHosts(read, entry.hosts, at, context, context.hosts, keys));
        }
        const adapters = readAdapters(read, entry.adapters, at);
        const balancer = {
            method: sub.oneOf("balancer", BALANCERS, context.defaults.method),
            sessionHeader: checkHeaderName(read, `${at}.sessionHeader`, sub.string("sessionHeader", context.defaults.sessionHeader) ?? context.defaults.sessionHeader, context.defaults.sessionHeader),
            loadBound: sub.number("loadBound", context.defaults.loadBound, 1, 100),
        };
        const group: ModelGroupSettings = {
            name: name ?? `group${index}`,
            model: model ?? "",
            servedModelNames: servedModelNames ?? [],
            vllmArgs: sub.stringList("vllmArgs") ?? [],
            env: readEnv(read, entry.env, at),
            vllmImage: sub.string("vllmImage"),
            balancer,
            maxUnavailable: rollout.maxUnavailable,
            startupTimeoutSeconds: sub.has("startupTimeout") ? sub.duration("startupTimeout", DEFAULTS.startupTimeout, 10, { wholeSeconds: true }) : context.defaults.startupTimeoutSeconds,
            adapters,
        };
        const loraFlag = group.vllmArgs.find((arg) => arg === "--lora-modules" || arg.startsWith("--lora-modules="));
        if (adapters.length > 0 && loraFlag !== undefined) {
            read.problem(`${at}.vllmArgs`, loraFlag, `no --lora-modules: the balancer keeps each replica's adapters equal to ${at}.adapters, and would unload the others`);
        }
        for (const problem of sub.problems) {
            if (!["name", "model", "cpuThreadsBind", "sessionHeader"].includes(problem.key ?? "")) {
                read.problem(`${at}.${problem.key}`, problem.value, problem.allowed);
            }
        }
        const configured = hostEntries.reduce((n, h) => n + (context.backend === "gpu" ? (h.gpus?.length ?? 0) : h.replicas), 0);
        if (configured === 0) {
            read.problem(at, entry.name ?? index, `a group with at least one replica: ${context.backend === "gpu" ? "gpus" : "replicas"}${context.hosts ? ` in ${at}.hosts` : ""}`);
        }
        groups.push(group);
        placement.push({ name: group.name, hosts: hostEntries });
    });
    checkNames(read, groups);
    return { groups, placement };
}

/** Across groups: one name per group (and per replica name), one group per served name, no adapter named like a model or like another adapter. */
function checkNames(read: ConfigReader, groups: ModelGroupSettings[]): void {
    const byName = new Map<string, number>();
    const owner = new Map<string, string>();
    groups.forEach((group, index) => {
        const earlier = byName.get(group.name);
        if (earlier !== undefined) {
            read.problem(`models[${index}].name`, group.name, `a name no other group has: models[${earlier}] is "${group.name}" too`);
        } else {
            byName.set(group.name, index);
        }
        for (const name of servedNames(group)) {
            const other = owner.get(name);
            if (other !== undefined) {
                read.problem(`models[${index}].servedModelName`, name, `a name no other group serves: ${other} serves "${name}"`);
            } else {
                owner.set(name, `models[${index}] (${group.name})`);
            }
        }
    });
    groups.forEach((group, index) => {
        group.adapters.forEach((adapter, a) => {
            const other = owner.get(adapter.name);
            if (other !== undefined) {
                read.problem(`models[${index}].adapters[${a}].name`, adapter.name, `a name no model or other adapter has: ${other} serves "${adapter.name}"`);
            } else {
                owner.set(adapter.name, `models[${index}].adapters[${a}]`);
            }
        });
    });
}

function readGroupRollout(read: ConfigReader, value: unknown, at: string, context: GroupContext) {
    const result = { maxUnavailable: context.defaults.maxUnavailable, spareGpus: undefined as string[] | undefined, spareReplicas: 0, spareCpuThreadsBind: undefined as string[] | undefined };
    if (value === undefined) {
        return result;
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
        read.problem(`${at}.rollout`, value, 'an object {maxUnavailable?, spareGpus?, spareReplicas?, spareCpuThreadsBind?}, e.g. {"maxUnavailable": 1}');
        return result;
    }
    const fields = value as Record<string, unknown>;
    for (const field of Object.keys(fields).filter((f) => !GROUP_ROLLOUT_FIELDS.includes(f))) {
        read.problem(`${at}.rollout.${field}`, fields[field], `not a field of rollout; its fields are ${GROUP_ROLLOUT_FIELDS.join(", ")}`);
    }
    if (context.hosts !== undefined) {
        for (const field of ["spareGpus", "spareReplicas", "spareCpuThreadsBind"].filter((f) => fields[f] !== undefined)) {
            read.problem(`${at}.rollout.${field}`, fields[field], `set per host in ${at}.hosts with hosts`);
        }
    }
    const r = new ConfigReader(fields);
    result.maxUnavailable = readMaxUnavailable(read, `${at}.rollout.maxUnavailable`, fields.maxUnavailable, context.defaults.maxUnavailable);
    result.spareGpus = r.stringList("spareGpus");
    result.spareReplicas = r.integer("spareReplicas", 0, 0, 64);
    result.spareCpuThreadsBind = r.stringList("spareCpuThreadsBind");
    for (const problem of r.problems) {
        read.problem(`${at}.rollout.${problem.key}`, problem.value, problem.allowed);
    }
    return result;
}

function readGroupHosts(read: ConfigReader, value: unknown, at: string, context: GroupContext, hostNames: string[], keys: (prefix: string) => HostInputs["keys"]): HostInputs[] {
    if (!Array.isArray(value) || value.length === 0 || !value.every((h) => typeof h === "object" && h !== null && !Array.isArray(h))) {
        read.problem(`${at}.hosts`, value, `the group's replicas per host, e.g. [{"name": "${hostNames[0] ?? "gpu-a"}", "gpus": ["0"]}]: each name one of hosts (${hostNames.map((n) => `"${n}"`).join(", ")})`);
        return [];
    }
    const seen = new Set<string>();
    return (value as Record<string, unknown>[]).flatMap((entry, i) => {
        const here = `${at}.hosts[${i}]`;
        for (const field of Object.keys(entry).filter((f) => !GROUP_HOST_FIELDS.includes(f))) {
            read.problem(`${here}.${field}`, entry[field], `not a field of a group's host entry; its fields are ${GROUP_HOST_FIELDS.join(", ")}`);
        }
        const name = typeof entry.name === "string" ? entry.name : undefined;
        if (name === undefined || !hostNames.includes(name)) {
            read.problem(`${here}.name`, entry.name, `the name of one of hosts: ${hostNames.map((n) => `"${n}"`).join(", ")}`);
            return [];
        }
        if (seen.has(name)) {
            read.problem(`${here}.name`, name, `a host listed once per group: "${name}" is listed before`);
            return [];
        }
        seen.add(name);
        const sub = new ConfigReader(entry);
        const inputs: HostInputs = {
            name,
            balancer: false,
            gpus: sub.stringList("gpus"),
            replicas: context.backend === "cpu" ? sub.integer("replicas", DEFAULTS.replicas, 0, 64) : 0,
            cpuThreadsBind: readThreadsBind(read, `${here}.cpuThreadsBind`, entry.cpuThreadsBind),
            spareGpus: sub.stringList("spareGpus"),
            spareReplicas: sub.integer("spareReplicas", 0, 0, 64),
            spareCpuThreadsBind: sub.stringList("spareCpuThreadsBind"),
            keys: keys(here),
        };
        for (const problem of sub.problems.filter((p) => p.key !== "name" && p.key !== "cpuThreadsBind")) {
            read.problem(`${here}.${problem.key}`, problem.value, problem.allowed);
        }
        return [inputs];
    });
}

function readAdapters(read: ConfigReader, value: unknown, at: string): AdapterSettings[] {
    if (value === undefined) {
        return [];
    }
    const shape = 'a list of LoRA adapters, each {name, source}: the name clients send, and a Hugging Face repo id or a path on the host, e.g. [{"name": "sql", "source": "org/sql-lora"}]';
    if (!Array.isArray(value)) {
        read.problem(`${at}.adapters`, value, shape);
        return [];
    }
    return (value as unknown[]).flatMap((entry, i) => {
        const a = entry as Record<string, unknown>;
        if (typeof entry !== "object" || entry === null || typeof a.name !== "string" || typeof a.source !== "string" || Object.keys(a).some((k) => k !== "name" && k !== "source")) {
            read.problem(`${at}.adapters[${i}]`, entry, shape);
            return [];
        }
        if (!/^[A-Za-z0-9][A-Za-z0-9_.:-]*$/.test(a.name)) {
            read.problem(`${at}.adapters[${i}].name`, a.name, 'a name of letters, digits, "_", ".", ":" and "-", e.g. "sql-lora"');
            return [];
        }
        if (a.source === "" || /\s/.test(a.source)) {
            read.problem(`${at}.adapters[${i}].source`, a.source, 'a Hugging Face repo id ("org/name") or an absolute path on the host ("/srv/adapters/sql")');
            return [];
        }
        return [{ name: a.name, source: a.source }];
    });
}

function readEnv(read: ConfigReader, value: unknown, at: string): Record<string, string> {
    if (value === undefined) {
        return {};
    }
    if (typeof value !== "object" || value === null || Array.isArray(value) || !Object.entries(value).every(([k, v]) => /^[A-Za-z_][A-Za-z0-9_]*$/.test(k) && (typeof v === "string" || typeof v === "number" || typeof v === "boolean"))) {
        read.problem(`${at}.env`, value, 'an object of environment variables (names of letters, digits and "_"), e.g. {"VLLM_ATTENTION_BACKEND": "FLASHINFER"}');
        return {};
    }
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, String(v)]));
}

