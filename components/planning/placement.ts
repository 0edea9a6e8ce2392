/**
 * Where each replica runs: its host, its GPUs (or CPU cores), its published port, its address on the
 * stack's network, and the address the balancer reaches it at (on another host, through the relay: see
 * components/relay). A pure function of typed settings: it
 * reads no config and reports each conflict by the key that causes it.
 */
import { Problems, type KeyProblem } from "./problems";
import { parseSubnet, subnetAddress } from "./subnet";

/** The container port vLLM listens on inside every replica. */
export const VLLM_PORT = 8000;

/** The name of the one Docker engine of a stack without `hosts`: the engine the provider talks to. */
export const LOCAL_HOST = "local";

export type Backend = "gpu" | "cpu";
export const BACKENDS: readonly Backend[] = ["gpu", "cpu"];

/** One vLLM server: a container with its GPUs or cores, published port and fixed address. */
/**
 * How a CPU replica's vLLM binds its OpenMP threads (VLLM_CPU_OMP_THREADS_BIND): "auto" (vLLM picks cores
 * of the host, the same ones in every replica), "nobind" (the kernel schedules them), or one core range
 * per replica (also the container's cpuset).
 */
export type ThreadsBind = "auto" | "nobind" | string[];

export interface ReplicaPlan {
    /**
     * Container alias and short name, as in the guide: `vllm0`, `vllm1`, ... (the first model group's);
     * another group's carry its name: `embed-vllm0`.
     */
    name: string;
    /** The model group the replica serves (see `PlacementInputs.groups`). */
    group: string;
    /** The host (Docker engine) the replica runs on. */
    host: string;
    /** GPU IDs handed to this replica (empty on the CPU backend). */
    gpuIds: string[];
    /** `--tensor-parallel-size`: the number of GPUs of this replica (1 on CPU). */
    tensorParallelSize: number;
    /** Cores for `VLLM_CPU_OMP_THREADS_BIND` and the container's cpuset (CPU backend, when bound). */
    cpuSet?: string;
    /** Value of `VLLM_CPU_OMP_THREADS_BIND` (CPU backend). */
    threadsBind?: string;
    /** Whether the slot is a spare (kept free for rollouts) rather than one of the configured entries. */
    spare: boolean;
    /** Host port publishing the replica's port 8000 (on the balancer's host); on another host, the slot's number from `replicaPortBase` on. */
    hostPort: number;
    /**
     * Host address the port is published on: `replicaPortBind`, on the balancer's host. Undefined on another
     * host, where the replica publishes nothing and the host's gate reaches it.
     */
    publish?: string;
    /** Fixed IPv4 address on the stack's network. */
    ip: string;
    /**
     * `host:port` the balancer connects to: the fixed address on the stack's network for a replica on the
     * balancer's host; for a replica on another host, the relay's egress port for it.
     */
    upstream: string;
    /** For a replica on another host: how the relay reaches it (mutual TLS between the egress and the host's gate). */
    relay?: RelayPlan;
}

/** How the relay reaches a replica of another host. */
export interface RelayPlan {
    /** The egress's port for this replica, on its fixed address on the balancer's host's network. */
    egressPort: number;
    /** `address:port` of the host's gate: the host's address and `replicaPortBase`. */
    gate: string;
    /** The gate's port on its host (`replicaPortBase`). */
    gatePort: number;
    /** `ip:8000` of the replica on its host's network, where the gate sends it. */
    replica: string;
}

/** Every slot a replica can run in, decided before any resource is created. */
export interface Placement {
    /** Host by host, the configured entries first (`gpus`, or `replicas` on the cpu backend), then the spares. */
    slots: ReplicaPlan[];
    /** How many replicas run: the number of configured entries. */
    replicas: number;
    /** The hosts, in order; one of them runs the balancer. */
    hosts: HostPlan[];
}

/** A Docker engine the fleet runs on. */
export interface HostPlan {
    name: string;
    /** Whether the balancer (and monitoring) runs here. */
    balancer: boolean;
    /** The address the balancer reaches this host's gate at (hosts other than the balancer's). */
    address?: string;
}

/** What one host runs, as typed settings; config parsing fills them. */
export interface HostInputs {
    name: string;
    /** Whether the balancer runs on this host. */
    balancer: boolean;
    /** The address the balancer reaches the host's gate at (required for a host other than the balancer's). */
    address?: string;
    /** gpu backend: one entry per replica, each a GPU id (`"0"`) or a group (`"0,1"`); undefined when unset. */
    gpus?: string[];
    /** cpu backend: the number of replicas. */
    replicas: number;
    /** cpu backend: `"auto"`, or one core range per replica (`"0-3"`). */
    cpuThreadsBind: ThreadsBind;
    /** gpu backend: entries kept free for rollouts, as in `gpus`. */
    spareGpus?: string[];
    /** cpu backend: room for this many more replicas during rollouts. */
    spareReplicas: number;
    /** cpu backend with bound cores: one range per spare replica. */
    spareCpuThreadsBind?: string[];
    /**
     * The config key of each field, for problems: `gpus`, `rollout.spareGpus`, ... for the one implicit host,
     * `hosts[1].gpus`, ... for a host of `hosts`.
     */
    keys: HostKeys;
}

export interface HostKeys {
    gpus: string;
    replicas: string;
    cpuThreadsBind: string;
    spareGpus: string;
    spareReplicas: string;
    spareCpuThreadsBind: string;
}

/** The keys of the one host of a stack without `hosts`. */
export const TOP_LEVEL_KEYS: HostKeys = {
    gpus: "gpus",
    replicas: "replicas",
    cpuThreadsBind: "cpuThreadsBind",
    spareGpus: "rollout.spareGpus",
    spareReplicas: "rollout.spareReplicas",
    spareCpuThreadsBind: "rollout.spareCpuThreadsBind",
};

/** A model group's replicas: its entries on each host it runs on. */
export interface GroupPlacementInputs {
    /** The group's name, which its slots carry (but the first group's, whose names are the guide's). */
    name: string;
    /** The group's entries (`gpus`, or `replicas` on the cpu backend, and spares), one per host it runs on, by host name. */
    hosts: HostInputs[];
}

/**
 * Slots of one model group on one host when there are several groups: group G's slots on a host take
 * addresses and ports from G x 32 on, so that one group's scaling moves no other group's replica.
 */
export const GROUP_SLOTS = 32;

/** The name of the one model group of a stack that serves its model with the top-level keys. */
export const DEFAULT_GROUP = "default";

/** The typed settings placement depends on; config parsing fills them. */
export interface PlacementInputs {
    backend: Backend;
    /**
     * The hosts; a stack without `hosts` has one, `local`, from the top-level keys. Without `groups`, each
     * host's entries are the replicas of the one group, `default`.
     */
    hosts: HostInputs[];
    /** Model groups, each with its entries per host (a host of `hosts`); the hosts' own entries are then unused. */
    groups?: GroupPlacementInputs[];
    lbPort: number;
    replicaPortBase: number;
    /** Host address replica ports are published on, on the balancer's host. */
    replicaPortBind: string;
    networkSubnet: string;
}

/** Replicas take fixed addresses from host .10 on; .1 is Docker's gateway, the upper half is Docker's. */
const FIRST_REPLICA_HOST = 10;
/** The relay's egress has a fixed address below the replicas' on the balancer's host (host .9). */
const EGRESS_HOST = 9;
/**
 * The egress's port for replica N of the hosts' entry H (in `hosts` order): 10000 + 1000 H + N, so that a
 * host's ports stay the same when another host scales.
 */
const EGRESS_PORT_BASE = 10000;
const EGRESS_PORTS_PER_HOST = 1000;

/** The relay's egress's fixed address on the balancer's host's network. */
export function egressAddress(networkSubnet: string): string {
    const subnet = parseSubnet(networkSubnet);
    return subnet ? subnetAddress(subnet, EGRESS_HOST) : "";
}

/** Plans every slot on every host. Problems name the key that causes them; the plan is complete only without any. */
export function planPlacement(inputs: PlacementInputs): { placement: Placement; problems: KeyProblem[] } {
    const problems = new Problems();
    const subnet = parseSubnet(inputs.networkSubnet);
    if (subnet === undefined) {
        problems.add("networkSubnet", inputs.networkSubnet, 'an IPv4 network in CIDR form with a prefix from /16 to /28, e.g. "172.29.10.0/24"');
    }
    const implicit = inputs.hosts.length === 1 && inputs.hosts[0].name === LOCAL_HOST;
    const slots: ReplicaPlan[] = [];
    let replicas = 0;
    const egress = egressAddress(inputs.networkSubnet);
    const groups = inputs.groups ?? [{ name: DEFAULT_GROUP, hosts: inputs.hosts }];
    const several = groups.length > 1;
    inputs.hosts.forEach((host, hostIndex) => {
        const where = implicit ? "" : ` on host ${host.name}`;
        // nginx reaches the replicas of its own host over the stack's network, the others through the relay.
        const remote = !host.balancer && host.address !== undefined;
        const egressBase = EGRESS_PORT_BASE + EGRESS_PORTS_PER_HOST * hostIndex;
        // A GPU (or core) of this host, and the entry that has it: across every group.
        const owners = new Map<string, { key: string; where: string }>();
        groups.forEach((group, groupIndex) => {
            const entries = group.hosts.find((h) => h.name === host.name);
            if (entries === undefined) {
                return;
            }
            const { configured, spare } = inputs.backend === "gpu" ? gpuGroups(entries, problems, owners) : cpuGroups(entries, problems, owners);
            const all = [...configured, ...spare];
            const count = all.length;
            replicas += configured.length;
            const offset = groupIndex * GROUP_SLOTS;
            const of = several ? ` of group ${group.name}` : "";
            if (several && count > GROUP_SLOTS) {
                problems.add(entries.keys.gpus, count, `at most ${GROUP_SLOTS} replicas (spares included) of one model group on one host, with several groups: group ${group.name} has ${count}${where}`);
            }
            const firstPort = inputs.replicaPortBase + offset;
            const lastPort = firstPort + count - 1;
            if (count > 0 && lastPort > 65535) {
                problems.add("replicaPortBase", inputs.replicaPortBase, `a port such that all ${count} replica ports${of}${where} (base${offset ? `+${offset}` : ""} to base+${offset + count - 1}) stay at or below 65535`);
            }
            if (host.balancer && count > 0 && inputs.lbPort >= firstPort && inputs.lbPort <= lastPort) {
                problems.add(
                    "lbPort",
                    inputs.lbPort,
                    `a port outside the replica ports${of}${where} ${firstPort}-${lastPort} (replicaPortBase${offset ? `+${offset}` : ""} to replicaPortBase+${offset + count - 1}, spares included)`,
                );
            }
            if (subnet !== undefined && count > 0 && FIRST_REPLICA_HOST + offset + count > subnet.size / 2) {
                problems.add("networkSubnet", inputs.networkSubnet, `a network with room for ${count} replicas${of}${where} from host .${FIRST_REPLICA_HOST + offset} on (a larger network)`);
            }
            if (remote && (offset + count > EGRESS_PORTS_PER_HOST || egressBase + offset + count - 1 > 65535)) {
                problems.add(
                    "hosts",
                    inputs.hosts.map((h) => h.name),
                    `at most ${EGRESS_PORTS_PER_HOST} replicas (spares included) on a host other than the balancer's, and at most ${Math.floor((65535 - EGRESS_PORT_BASE) / EGRESS_PORTS_PER_HOST)} hosts: ` +
                        `the relay gives each replica of another host a port of its own (host ${host.name} has ${offset + count}, and is entry ${hostIndex})`,
                );
            }
            all.forEach((entry, index) => {
                const slot = offset + index;
                const ip = subnet ? subnetAddress(subnet, FIRST_REPLICA_HOST + slot) : "";
                const hostPort = inputs.replicaPortBase + slot;
                const local = groupIndex === 0 ? `vllm${index}` : `${group.name}-vllm${index}`;
                slots.push({
                    name: implicit ? local : `${host.name}-${local}`,
                    group: group.name,
                    host: host.name,
                    gpuIds: entry.gpuIds,
                    tensorParallelSize: Math.max(1, entry.gpuIds.length),
                    cpuSet: entry.cpuSet,
                    threadsBind: entry.threadsBind,
                    spare: index >= configured.length,
                    hostPort,
                    publish: remote ? undefined : inputs.replicaPortBind,
                    ip,
                    upstream: remote ? `${egress}:${egressBase + slot}` : `${ip}:${VLLM_PORT}`,
                    relay: remote ? { egressPort: egressBase + slot, gate: `${host.address}:${inputs.replicaPortBase}`, gatePort: inputs.replicaPortBase, replica: `${ip}:${VLLM_PORT}` } : undefined,
                });
            });
        });
    });
    const hosts = inputs.hosts.map((h) => ({ name: h.name, balancer: h.balancer, address: h.address }));
    return { placement: { slots, replicas, hosts }, problems: problems.list };
}

interface ReplicaGroup {
    gpuIds: string[];
    cpuSet?: string;
    threadsBind?: string;
}

/** `gpus` (and `rollout.spareGpus`): one slot per entry; an entry is one GPU ID or a comma-separated group. */
function gpuGroups(inputs: HostInputs, problems: Problems, owners: Map<string, { key: string; where: string }>): { configured: ReplicaGroup[]; spare: ReplicaGroup[] } {
    const keys = inputs.keys;
    const entries = inputs.gpus;
    if (entries === undefined || entries.length === 0) {
        problems.add(keys.gpus, undefined, 'required on the gpu backend: a list with one entry per replica, each a GPU ID ("0") or a group ("0,1"), e.g. ["0", "1"]');
        return { configured: [], spare: [] };
    }
    if (inputs.spareReplicas > 0 || inputs.spareCpuThreadsBind !== undefined) {
        problems.add(keys.spareReplicas, inputs.spareReplicas, `only for backend "cpu"; on the gpu backend list spare GPUs in ${keys.spareGpus}`);
    }
    const parse = (key: string, list: string[], where: string) =>
        list.map((entry, index) => {
            const ids = entry.split(",").map((id) => id.trim());
            for (const id of ids) {
                const other = owners.get(id);
                if (!/^\d+$/.test(id)) {
                    problems.add(key, list, `GPU IDs are whole numbers ("0", "1", ...): entry ${index} ("${entry}") has "${id}"`);
                } else if (other !== undefined) {
                    // Within one group's entries, as always; across groups, the other entry's key too.
                    const elsewhere = other.key.startsWith("models[") && other.key.split(".")[0] !== key.split(".")[0] ? `${other.key} ` : "";
                    problems.add(key, list, `each GPU may appear once: GPU ${id} is in ${elsewhere}${other.where} and ${where} ${index}`);
                } else {
                    owners.set(id, { key, where: `${where} ${index}` });
                }
            }
            return { gpuIds: ids };
        });
    const configured = parse(keys.gpus, entries, "entry");
    const spare = parse(keys.spareGpus, inputs.spareGpus ?? [], "spare entry");
    return { configured, spare };
}

/** `replicas` and `cpuThreadsBind` (and their spares): one core range per slot, or "auto". */
function cpuGroups(inputs: HostInputs, problems: Problems, owners: Map<string, { key: string; where: string }>): { configured: ReplicaGroup[]; spare: ReplicaGroup[] } {
    const keys = inputs.keys;
    if (inputs.gpus !== undefined && inputs.gpus.length > 0) {
        problems.add(keys.gpus, inputs.gpus, `only for backend "gpu"; on the cpu backend set ${keys.replicas} (and optionally ${keys.cpuThreadsBind})`);
    }
    if (inputs.spareGpus !== undefined && inputs.spareGpus.length > 0) {
        problems.add(keys.spareGpus, inputs.spareGpus, `only for backend "gpu"; on the cpu backend set ${keys.spareReplicas}`);
    }
    const ranges = inputs.cpuThreadsBind;
    if (ranges === "auto" || ranges === "nobind") {
        if (inputs.spareCpuThreadsBind !== undefined) {
            problems.add(keys.spareCpuThreadsBind, inputs.spareCpuThreadsBind, `only when ${keys.cpuThreadsBind} is a list of core ranges; with "${ranges}", spare replicas bind the same way`);
        }
        const auto = (n: number) => Array.from({ length: n }, () => ({ gpuIds: [], threadsBind: ranges }));
        return { configured: auto(inputs.replicas), spare: auto(inputs.spareReplicas) };
    }
    const spareRanges = inputs.spareCpuThreadsBind ?? [];
    if (ranges.length !== inputs.replicas) {
        problems.add(keys.cpuThreadsBind, ranges, `one core range per replica: ${keys.replicas} is ${inputs.replicas}, ${keys.cpuThreadsBind} has ${ranges.length}`);
    }
    if (spareRanges.length !== inputs.spareReplicas) {
        problems.add(keys.spareCpuThreadsBind, inputs.spareCpuThreadsBind, `one core range per spare replica: ${keys.spareReplicas} is ${inputs.spareReplicas}, ${keys.spareCpuThreadsBind} has ${spareRanges.length}`);
    }
    const check = (key: string, list: string[], where: string) =>
        list.forEach((range, index) => {
            const cores = parseCpuList(range);
            if (cores === undefined) {
                problems.add(key, list, `core ranges look like "0-3" or "0-3,8-11": entry ${index} is "${range}"`);
                return;
            }
            const here = `${where} ${index} ("${range}")`;
            for (const core of cores) {
                const other = owners.get(`core ${core}`);
                if (other !== undefined && !(other.key === key && other.where === here)) {
                    const elsewhere = other.key !== key && other.key.startsWith("models[") ? `${other.key} ` : "";
                    problems.add(key, list, `ranges must not overlap: core ${core} is in ${elsewhere}${other.where} and ${here}`);
                    return;
                }
                owners.set(`core ${core}`, { key, where: here });
            }
        });
    check(keys.cpuThreadsBind, ranges, "entry");
    check(keys.spareCpuThreadsBind, spareRanges, "spare entry");
    const bound = (list: string[], n: number) => list.slice(0, n).map((range) => ({ gpuIds: [], cpuSet: range, threadsBind: range }));
    return { configured: bound(ranges, inputs.replicas), spare: bound(spareRanges, inputs.spareReplicas) };
}

/** Parses a cpuset list (`"0-3,8"`) into its cores; undefined when malformed. */
export function parseCpuList(text: string): number[] | undefined {
    const cores: number[] = [];
    for (const part of text.split(",")) {
        const match = /^\s*(\d+)(?:-(\d+))?\s*$/.exec(part);
        if (!match) {
            return undefined;
        }
        const first = Number(match[1]);
        const last = match[2] === undefined ? first : Number(match[2]);
        if (last < first) {
            return undefined;
        }
        for (let core = first; core <= last; core++) {
            cores.push(core);
        }
    }
    return cores;
}
