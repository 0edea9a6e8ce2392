/**
 * Model groups (`models`) as config reads them and placement plans them: pure code, no Pulumi. Every
 * problem is listed with its key at once, before anything is created.
 */
import { describe, expect, it } from "vitest";
import { decodeConfigValue } from "../../components/config/decode";
import { adapterFolders, groupServe, readModelGroups, servedNames, type GroupContext } from "../../components/config/groups";
import { parseFleetConfig } from "../../components/config/parse";
import { ConfigReader } from "../../components/config/reader";
import { LOCAL_HOST, TOP_LEVEL_KEYS, planPlacement, type Backend, type HostInputs } from "../../components/planning";
import { fleetSpec } from "../../components/rollout/spec";
import { vllmServeArgs } from "../../components/vllm/serve";
import { stackConfig } from "./mockStack";

const DEFAULTS: GroupContext["defaults"] = { method: "least_conn", sessionHeader: "x-user-id", loadBound: 1.25, maxUnavailable: 1, startupTimeoutSeconds: 1800 };

function read(models: unknown, backend: Backend = "gpu", hosts?: string[]) {
    const reader = new ConfigReader({ models });
    const result = readModelGroups(reader, { backend, hosts, localHost: LOCAL_HOST, defaults: DEFAULTS });
    return { result, problems: reader.problems.map((p) => `${p.key}: ${p.allowed}`) };
}

/** Plans the groups on the implicit host (or on `hosts`), as parseFleetConfig will. */
function plan(models: unknown, backend: Backend = "gpu", hosts?: HostInputs[]) {
    const { result, problems } = read(models, backend, hosts?.map((h) => h.name));
    const implicit: HostInputs = { name: LOCAL_HOST, balancer: true, replicas: 0, cpuThreadsBind: "auto", spareReplicas: 0, keys: TOP_LEVEL_KEYS };
    const placed = planPlacement({ backend, hosts: hosts ?? [implicit], groups: result!.placement, lbPort: 8000, replicaPortBase: 8100, replicaPortBind: "127.0.0.1", networkSubnet: "172.29.20.0/24" });
    return { groups: result!.groups, slots: placed.placement.slots, replicas: placed.placement.replicas, problems: [...problems, ...placed.problems.map((p) => `${p.key}: ${p.allowed}`)] };
}

const CHAT = { name: "chat", model: "Qwen/Qwen2.5-32B-Instruct", servedModelName: "llama", gpus: ["0,1"], balancer: "cache_aware" };
const EMBED = { name: "embed", model: "BAAI/bge-m3", gpus: ["2"] };
const SMALL = { name: "small", model: "Qwen/Qwen3-1.7B", gpus: ["3"], adapters: [{ name: "sql", source: "org/sql-lora" }, { name: "support", source: "/srv/adapters/support" }] };

describe("model groups: config", () => {
    it("reads the README's example: a tensor-parallel chat model, an embedding model, a small model with two adapters", () => {
        const { groups, slots, replicas, problems } = plan([CHAT, EMBED, SMALL]);
        expect(problems).toEqual([]);
        expect(groups.map((g) => [g.name, servedNames(g), g.balancer.method, g.adapters.map((a) => a.name)])).toEqual([
            ["chat", ["llama"], "cache_aware", []],
            ["embed", ["BAAI/bge-m3"], "least_conn", []],
            ["small", ["Qwen/Qwen3-1.7B"], "least_conn", ["sql", "support"]],
        ]);
        expect(replicas).toBe(3);
        // The first group's replicas keep the guide's names, addresses and ports; each other group's start 32 further on.
        expect(slots.map((s) => [s.name, s.group, s.gpuIds.join(","), s.tensorParallelSize, s.ip, s.hostPort])).toEqual([
            ["vllm0", "chat", "0,1", 2, "172.29.20.10", 8100],
            ["embed-vllm0", "embed", "2", 1, "172.29.20.42", 8132],
            ["small-vllm0", "small", "3", 1, "172.29.20.74", 8164],
        ]);
    });

    it("keeps a group's replicas where they are when an earlier group scales", () => {
        const before = plan([CHAT, EMBED]).slots.filter((s) => s.group === "embed");
        const after = plan([{ ...CHAT, gpus: ["0,1", "4,5"] }, EMBED]).slots.filter((s) => s.group === "embed");
        expect(after).toEqual(before);
    });

    it("lists every problem with its key: a GPU given to two groups, two groups serving one name, an adapter named like a model, a group without replicas", () => {
        const { problems } = plan([
            CHAT,
            { ...EMBED, gpus: ["1"] },
            { name: "twin", model: "other/model", servedModelName: ["llama", "twin"], gpus: ["5"] },
            { ...SMALL, adapters: [{ name: "twin", source: "org/a" }] },
            { name: "empty", model: "x/y", gpus: [] },
        ]);
        expect(problems).toEqual([
            'models[4]: a group with at least one replica: gpus',
            'models[2].servedModelName: a name no other group serves: models[0] (chat) serves "llama"',
            'models[3].adapters[0].name: a name no model or other adapter has: models[2] (twin) serves "twin"',
            "models[1].gpus: each GPU may appear once: GPU 1 is in models[0].gpus entry 0 and entry 0",
            'models[4].gpus: required on the gpu backend: a list with one entry per replica, each a GPU ID ("0") or a group ("0,1"), e.g. ["0", "1"]',
        ]);
    });

    it("refuses what is not a group: unknown fields, bad names, twice the same name, a bad adapter, env, balancer and rollout", () => {
        const { problems } = read([
            { name: "Chat!", model: "m", gpus: ["0"], color: "blue" },
            { name: "b", model: "m2", gpus: ["1"], balancer: "fastest", env: { "BAD-NAME": "1" }, rollout: { maxUnavailable: "0%" }, adapters: [{ name: "a" }] },
            { name: "b", gpus: ["2"] },
        ]);
        expect(problems).toEqual([
            "models[0].color: not a field of a model group; its fields are name, model, servedModelName, gpus, replicas, cpuThreadsBind, hosts, vllmArgs, env, vllmImage, balancer, sessionHeader, loadBound, rollout, startupTimeout, adapters",
            'models[0].name: a name of lowercase letters, digits and dashes (at most 32), e.g. "chat": its replicas are named after it',
            "models[1].rollout.maxUnavailable: a whole number of replicas (at least 1) or a percentage from 1% to 100%",
            'models[1].adapters[0]: a list of LoRA adapters, each {name, source}: the name clients send, and a Hugging Face repo id or a path on the host, e.g. [{"name": "sql", "source": "org/sql-lora"}]',
            'models[1].env: an object of environment variables (names of letters, digits and "_"), e.g. {"VLLM_ATTENTION_BACKEND": "FLASHINFER"}',
            'models[1].balancer: one of "least_conn", "round_robin", "random_two_least_conn", "cache_aware"',
            'models[2].model: required: the Hugging Face model id the group serves, e.g. "meta-llama/Llama-3.1-8B-Instruct"',
            'models[2].name: a name no other group has: models[1] is "b" too',
        ]);
        expect(read("chat").problems[0]).toMatch(/^models: a list of model groups, each \{name, model/);
    });

    it("on a stack with hosts, places each group per host; a host not in hosts is refused", () => {
        const host = (name: string, balancer: boolean): HostInputs => ({ name, balancer, address: balancer ? undefined : "10.0.0.12", replicas: 0, cpuThreadsBind: "auto", spareReplicas: 0, keys: TOP_LEVEL_KEYS });
        const hosts = [host("gpu-a", true), host("gpu-b", false)];
        const { slots, problems } = plan(
            [
                { name: "chat", model: "m", hosts: [{ name: "gpu-a", gpus: ["0"] }, { name: "gpu-b", gpus: ["0"] }] },
                { name: "embed", model: "e", hosts: [{ name: "gpu-b", gpus: ["1"] }] },
            ],
            "gpu",
            hosts,
        );
        expect(problems).toEqual([]);
        expect(slots.map((s) => [s.name, s.group, s.upstream])).toEqual([
            ["gpu-a-vllm0", "chat", "172.29.20.10:8000"],
            ["gpu-b-vllm0", "chat", "172.29.20.9:11000"],
            ["gpu-b-embed-vllm0", "embed", "172.29.20.9:11032"],
        ]);
        expect(read([{ name: "chat", model: "m", hosts: [{ name: "gpu-c", gpus: ["0"] }] }], "gpu", ["gpu-a", "gpu-b"]).problems).toEqual(['models[0].hosts[0].name: the name of one of hosts: "gpu-a", "gpu-b"', "models[0]: a group with at least one replica: gpus in models[0].hosts"]);
        expect(read([{ name: "chat", model: "m", gpus: ["0"] }], "gpu", ["gpu-a"]).problems).toEqual([
            'models[0].gpus: set per host in models[0].hosts, as [{"name": "<a host of hosts>", "gpus": ...}]',
            'models[0].hosts: the group\'s replicas per host, e.g. [{"name": "gpu-a", "gpus": ["0"]}]: each name one of hosts ("gpu-a")',
            "models[0]: a group with at least one replica: gpus in models[0].hosts",
        ]);
    });

    it("on the cpu backend, counts replicas per group, and core ranges may not overlap across groups", () => {
        const { slots, problems } = plan(
            [
                { name: "a", model: "m", replicas: 2, cpuThreadsBind: ["0-1", "2-3"] },
                { name: "b", model: "n", replicas: 1, cpuThreadsBind: ["3-4"] },
            ],
            "cpu",
        );
        expect(slots.map((s) => [s.name, s.cpuSet])).toEqual([
            ["vllm0", "0-1"],
            ["vllm1", "2-3"],
            ["b-vllm0", "3-4"],
        ]);
        expect(problems).toEqual(['models[1].cpuThreadsBind: ranges must not overlap: core 3 is in models[0].cpuThreadsBind entry 1 ("2-3") and entry 0 ("3-4")']);
    });
});

describe("model groups: a stack's one model moved into a one-group list", () => {
    const parse = (overrides: Record<string, unknown>) => {
        const config = stackConfig("dev", overrides);
        const raw = Object.fromEntries(Object.entries(config).filter(([k]) => k.startsWith("vllm-nginx:")).map(([k, v]) => [k.slice("vllm-nginx:".length), decodeConfigValue(v)]));
        return parseFleetConfig(raw, "dev");
    };
    const legacy = parse({});
    const grouped = parse({
        model: "",
        replicas: "1",
        vllmArgs: [],
        models: [{ name: "qwen", model: legacy.serve.model, replicas: 2, vllmArgs: legacy.serve.vllmArgs }],
    });

    it("keeps the spec, the slots and the command line: no replica rolls or is replaced", () => {
        expect(fleetSpec(grouped)).toBe(fleetSpec(legacy));
        expect(grouped.placement.slots.map((s) => ({ ...s, group: "" }))).toEqual(legacy.placement.slots.map((s) => ({ ...s, group: "" })));
        expect(vllmServeArgs(groupServe(grouped.groups[0]), grouped.placement.slots[0])).toEqual(vllmServeArgs(legacy.serve, legacy.placement.slots[0]));
    });

    it("refuses the top-level keys of the one model beside models, each naming where it goes", () => {
        expect(() => parse({ models: [{ name: "qwen", model: "m", replicas: 1 }] })).toThrow(
            [
                "invalid stack config (3 problems):",
                '  - vllm-nginx:model = "Qwen/Qwen2.5-0.5B-Instruct": set per model group with models: models[].model',
                '  - vllm-nginx:vllmArgs = ["--max-model-len","4096","--dtype","bfloat16"]: set per model group with models: models[].vllmArgs',
                '  - vllm-nginx:replicas = "2": set per model group with models: models[].replicas',
            ].join("\n"),
        );
    });
});

describe("client keys limited to models", () => {
    const parse = (models: unknown) =>
        parseFleetConfig({ model: "m", servedModelName: "llama", backend: "cpu", replicas: 1 }, "dev", undefined, {
            values: { clientKeys: [{ name: "alice", key: "alice-key-0123456789abcdef", models }] },
        });

    it("takes the names the endpoint serves, and refuses others and other shapes, naming the key", () => {
        expect(parse(["llama"]).edge.clients[0].models).toEqual(["llama"]);
        expect(() => parse(["gpt-4o"])).toThrow('vllm-nginx:clientKeys[0].models = "gpt-4o": a name the endpoint serves: "llama"');
        expect(() => parse("llama")).toThrow("vllm-nginx:clientKeys[0].models = \"llama\": a list of the names this key may use as model");
    });
});

describe("LoRA adapters: loaded at run time, not part of what a replica is created from", () => {
    const spec = (adapters: unknown[]) => {
        const settings = parseFleetConfig({ model: "", backend: "cpu", models: [{ name: "small", model: "m", replicas: 2, adapters }] }, "dev");
        return { spec: fleetSpec(settings, "", settings.groups[0]), serve: groupServe(settings.groups[0]) };
    };
    const SQL = { name: "sql", source: "/srv/adapters/sql" };

    it("adds or removes an adapter without changing the group's spec, but for its first, its last, and a folder not mounted yet", () => {
        const one = spec([SQL]);
        expect(spec([SQL, { name: "chat", source: "/srv/adapters/chat" }]).spec).toBe(one.spec);
        expect(spec([SQL, { name: "hub", source: "org/hub-lora" }]).spec).toBe(one.spec);
        expect(spec([{ name: "renamed", source: "/srv/adapters/other" }]).spec).toBe(one.spec);
        // The first turns LoRA on (--enable-lora), the last off; a path in another folder is a new mount.
        expect(spec([]).spec).not.toBe(one.spec);
        expect(spec([SQL, { name: "x", source: "/data/x" }]).spec).not.toBe(one.spec);
        expect(vllmServeArgs(one.serve, { tensorParallelSize: 1 })).toEqual(["m", "--host", "0.0.0.0", "--port", "8000", "--enable-lora"]);
    });

    it("mounts each path adapter's folder once, and none for a hub adapter", () => {
        expect(adapterFolders([SQL, { name: "b", source: "/srv/adapters/b/" }, { name: "c", source: "/srv/c" }, { name: "hub", source: "org/x" }])).toEqual(["/srv"]);
        expect(adapterFolders([SQL, { name: "d", source: "/data/d" }])).toEqual(["/data", "/srv/adapters"]);
        expect(adapterFolders([{ name: "hub", source: "org/x" }])).toEqual([]);
    });

    it("refuses --lora-modules beside adapters, which the balancer would unload", () => {
        const { problems } = read([{ name: "small", model: "m", gpus: ["0"], vllmArgs: ["--lora-modules", "x=/a/x"], adapters: [SQL] }]);
        expect(problems).toEqual(["models[0].vllmArgs: no --lora-modules: the balancer keeps each replica's adapters equal to models[0].adapters, and would unload the others"]);
    });
});
