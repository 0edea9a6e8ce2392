/**
 * Model groups at the balancer, with the real nginx and its Lua balancer: requests routed by their body's
 * `model` to the group that serves it (a model or an adapter), each group balanced by its own method among
 * its own replicas; a model no group serves answered as vLLM answers it, by nginx, with no replica asked;
 * `GET /v1/models` listing every group's names, from the config for a group none of whose replicas answers.
 */
import * as http from "http";
import { describe, expect, it } from "vitest";
import { ROUTING_STATUS_PATH, type RoutingGroup } from "../../components/nginx/routing";
import { renderNginxConfig } from "../../components/nginx/render";
import { freePort, oursConfig, request, startEdgeBalancer, startStandIn, stream, tokenEvents, waitFor, type StandIn } from "../support";
import { useTestFleet } from "./testFleet";

const { adopt, nginx } = useTestFleet();

const GROUPS: RoutingGroup[] = [
    {
        name: "chat",
        method: "cache_aware",
        sessionHeader: "x-session-id",
        loadBound: 1.25,
        served: [
            { id: "chat", root: "org/chat-model" },
            { id: "lora-x", root: "/adapters/x", parent: "chat" },
        ],
    },
    { name: "small", method: "least_conn", sessionHeader: "x-session-id", loadBound: 1.25, served: [{ id: "small", root: "org/small-model" }] },
];

/** A least_conn group "base" of the model org/base with these adapters (name, path), LoRA kept by the balancer or not. */
function baseGroup(adapters: Array<[string, string]>, lora?: true): RoutingGroup {
    return {
        name: "base",
        method: "least_conn",
        sessionHeader: "x-session-id",
        loadBound: 1.25,
        ...(lora ? { lora } : {}),
        served: [{ id: "base", root: "org/base" }, ...adapters.map(([id, root]) => ({ id, root, parent: "base" }))],
    };
}

/** Requests a replica counted (vLLM's http_requests_total), but for the balancer's /v1/models listings. */
async function served(r: StandIn): Promise<number> {
    const text = (await request(`${r.url}/metrics`, { agent: false })).text;
    return text
        .split("\n")
        .filter((l) => l.startsWith("http_requests_total{") && !l.includes('handler="/v1/models"'))
        .reduce((sum, l) => sum + Number(l.split(" ").at(-1)), 0);
}

/** The Lua balancer's status (JSON), from the status listener (a unix socket in these tests). */
function routingStatus(statusListen: string): Promise<{ groups?: Array<{ name: string; method: string }>; replicas: Array<{ name: string; group?: string; in_flight: number }> }> {
    return new Promise((resolve, reject) =>
        http
            .get({ socketPath: statusListen.replace(/^unix:/, ""), path: ROUTING_STATUS_PATH }, (res) => {
                let text = "";
                res.on("data", (d) => (text += d));
                res.on("end", () => (res.statusCode === 200 ? resolve(JSON.parse(text)) : reject(new Error(`${ROUTING_STATUS_PATH}: ${res.statusCode} ${text}`))));
            })
            .on("error", reject),
    );
}

/** Two replicas of "chat" (with the adapter lora-x) and one of "small", behind one balancer. */
async function twoGroups() {
    const start = (replicaId: string, name: string, extra: string[] = []) =>
        startStandIn({ replicaId, model: name === "chat" ? "org/chat-model" : "org/small-model", args: ["--served-model-name", name, "--disable-uvicorn-access-log", "--itl-ms", "5", ...extra] }).then(adopt);
    const replicas = await Promise.all([start("c0", "chat", ["--enable-lora", "--lora-modules", "lora-x=/adapters/x"]), start("c1", "chat", ["--enable-lora", "--lora-modules", "lora-x=/adapters/x"]), start("s0", "small")]);
    const port = await freePort();
    const overrides = {
        groups: GROUPS,
        upstreams: replicas.map((r, i) => ({ name: `vllm${i}`, address: `127.0.0.1:${r.port}`, group: i < 2 ? "chat" : "small" })),
    };
    const config = oursConfig([], port, overrides);
    const lb = await nginx(renderNginxConfig(config).text, port);
    return { replicas, lb, config };
}

describe("model groups: one endpoint, routed by the body's model", () => {
    it("sends each model's requests (streamed chat, completions, tokenize, an adapter) only to its group's replicas", async () => {
        const { replicas, lb } = await twoGroups();
        const [c0, c1, s0] = replicas as [StandIn, StandIn, StandIn];
        const chats = Array.from({ length: 6 }, (_, i) => stream(`${lb.url}/v1/chat/completions`, { model: "chat", messages: [{ role: "user", content: `q${i}` }], max_tokens: 5, stream: true }, { agent: false }));
        const smalls = Array.from({ length: 4 }, (_, i) => stream(`${lb.url}/v1/completions`, { model: "small", prompt: `p${i}`, max_tokens: 5, stream: true }, { agent: false }));
        const chatResults = await Promise.all(chats.map((s) => s.result));
        const smallResults = await Promise.all(smalls.map((s) => s.result));
        for (const r of [...chatResults, ...smallResults]) {
            expect(r.done).toBe(true);
            expect(tokenEvents(r)).toHaveLength(5);
        }
        expect(new Set(chatResults.map((r) => r.replica))).toEqual(new Set(["c0", "c1"]));
        expect(new Set(smallResults.map((r) => r.replica))).toEqual(new Set(["s0"]));
        const adapter = await request(`${lb.url}/v1/completions`, { agent: false, body: { model: "lora-x", prompt: "hi", max_tokens: 2 } });
        expect(adapter.status).toBe(200);
        expect(adapter.json.model).toBe("lora-x");
        expect(["c0", "c1"]).toContain(adapter.headers["x-replica-id"]);
        const tokenize = await request(`${lb.url}/tokenize`, { agent: false, body: { model: "small", prompt: "hello" } });
        expect(tokenize.status).toBe(200);
        expect(tokenize.headers["x-replica-id"]).toBe("s0");
        // Read from the replicas' own counters: 6 chats and the adapter's request on c0 and c1, the rest on s0.
        expect((await served(c0)) + (await served(c1))).toBe(7);
        expect(await served(s0)).toBe(5);
    });

    it("answers a model no group serves as vLLM does (404, NotFoundError, param model), and no replica sees it", async () => {
        const { replicas, lb } = await twoGroups();
        const before = await Promise.all(replicas.map(served));
        for (const path of ["/v1/chat/completions", "/v1/completions", "/tokenize"]) {
            const r = await request(`${lb.url}${path}`, { agent: false, body: { model: "nope", prompt: "x", messages: [{ role: "user", content: "x" }], stream: true } });
            expect(r.status, path).toBe(404);
            expect(r.headers["content-type"]).toBe("application/json");
            expect(r.json).toEqual({ error: { message: "The model `nope` does not exist. Valid aliases: chat, small.", type: "NotFoundError", param: "model", code: 404 } });
        }
        expect(await Promise.all(replicas.map(served))).toEqual(before);
        // A request that names no model goes to the first group, as vLLM serves its first name then.
        const none = await request(`${lb.url}/v1/completions`, { agent: false, body: { prompt: "x", max_tokens: 1 } });
        expect(none.status).toBe(200);
        expect(["c0", "c1"]).toContain(none.headers["x-replica-id"]);
    });

    it("lists every group's models and adapters at GET /v1/models, from the config for a group whose replicas are all down", async () => {
        const { replicas, lb, config } = await twoGroups();
        const list = await request(`${lb.url}/v1/models`, { agent: false });
        expect(list.status).toBe(200);
        expect(list.json.object).toBe("list");
        const cards = list.json.data as Array<{ id: string; root: string; parent: string | null; object: string; max_model_len: number | null }>;
        expect(cards.map((c) => [c.id, c.root, c.parent])).toEqual([
            ["chat", "org/chat-model", null],
            ["lora-x", "/adapters/x", "chat"],
            ["small", "org/small-model", null],
        ]);
        // The replicas' own cards: vLLM's max_model_len for a model, none for an adapter.
        expect(cards.find((c) => c.id === "chat")!.max_model_len).toBeGreaterThan(0);
        await replicas[2]!.stop();
        const during = await request(`${lb.url}/v1/models`, { agent: false });
        expect(during.status).toBe(200);
        expect((during.json.data as Array<{ id: string; object: string }>).map((c) => [c.id, c.object])).toEqual([
            ["chat", "model"],
            ["lora-x", "model"],
            ["small", "model"],
        ]);
        // No replica stays counted in flight for the listings (nginx runs no log phase for their subrequests).
        expect((await routingStatus(config.statusListen)).replicas.map((r) => r.in_flight)).toEqual([0, 0, 0]);
    });

    it("limits a client key to its models: 403 with an error body for another, its /v1/models lists only its own; an unlimited key reaches every group", async () => {
        const { replicas } = await twoGroups();
        const alice = { name: "alice", key: "alice-key-0123456789abcdef", models: ["small"] };
        const bob = { name: "bob", key: "bob-key-0123456789abcdef0" };
        const b = await startEdgeBalancer({
            upstreamPorts: [],
            clients: [alice, bob],
            overrides: { groups: GROUPS, upstreams: replicas.map((r, i) => ({ name: `vllm${i}`, address: `127.0.0.1:${r.port}`, group: i < 2 ? "chat" : "small" })) },
        });
        try {
            const as = (key: string) => ({ authorization: `Bearer ${key}` });
            const before = await Promise.all(replicas.map(served));
            for (const model of ["chat", "lora-x", "nope"]) {
                const denied = await request(`${b.url}/v1/chat/completions`, { agent: false, headers: as(alice.key), body: { model, messages: [{ role: "user", content: "x" }], max_tokens: 1 } });
                expect(denied.status, model).toBe(403);
                expect(denied.json).toEqual({ error: { message: `This key may not use the model \`${model}\`.`, type: "PermissionDeniedError", param: "model", code: 403 } });
            }
            // A request naming no model is the first group's: not alice's either.
            expect((await request(`${b.url}/v1/completions`, { agent: false, headers: as(alice.key), body: { prompt: "x", max_tokens: 1 } })).status).toBe(403);
            expect(await Promise.all(replicas.map(served))).toEqual(before);
            const own = await request(`${b.url}/v1/completions`, { agent: false, headers: as(alice.key), body: { model: "small", prompt: "x", max_tokens: 1 } });
            expect(own.status).toBe(200);
            expect(own.headers["x-replica-id"]).toBe("s0");
            expect(((await request(`${b.url}/v1/models`, { agent: false, headers: as(alice.key) })).json.data as Array<{ id: string }>).map((c) => c.id)).toEqual(["small"]);
            expect(((await request(`${b.url}/v1/models`, { agent: false, headers: as(bob.key) })).json.data as Array<{ id: string }>).map((c) => c.id)).toEqual(["chat", "lora-x", "small"]);
            expect((await request(`${b.url}/v1/completions`, { agent: false, headers: as(bob.key), body: { model: "lora-x", prompt: "x", max_tokens: 1 } })).status).toBe(200);
        } finally {
            await b.nginx.stop();
        }
    });

    it("sends an adapter's requests to its home replica within the load bound, whatever the group's method", async () => {
        const lora = ["--enable-lora", "--max-loras", "1", "--lora-modules", "lora-a=/adapters/a", "lora-b=/adapters/b"];
        const replicas = await Promise.all(["a0", "a1", "a2"].map((id) => startStandIn({ replicaId: id, model: "org/base", args: ["--served-model-name", "base", "--disable-uvicorn-access-log", "--itl-ms", "1", ...lora] }).then(adopt)));
        const port = await freePort();
        const group = baseGroup([
            ["lora-a", "/adapters/a"],
            ["lora-b", "/adapters/b"],
        ]);
        const config = oursConfig([], port, { groups: [group, { ...GROUPS[1]!, served: [{ id: "none", root: "none" }] }], upstreams: replicas.map((r, i) => ({ name: `vllm${i}`, address: `127.0.0.1:${r.port}`, group: "base" })) });
        const lb = await nginx(renderNginxConfig(config).text, port);
        const landed = async (model: string) => {
            const seen = new Set<string>();
            for (let i = 0; i < 6; i += 1) {
                const r = await request(`${lb.url}/v1/completions`, { agent: false, body: { model, prompt: `p${i}`, max_tokens: 1 } });
                expect(r.status).toBe(200);
                seen.add(String(r.headers["x-replica-id"]));
            }
            return seen;
        };
        // One at a time, nothing else in flight: least_conn alone would take turns over the three.
        expect((await landed("base")).size).toBe(3);
        expect((await landed("lora-a")).size).toBe(1);
        expect((await landed("lora-b")).size).toBe(1);
    });

    it("keeps each replica's adapters equal to its group's at run time, with the replicas' key: added and removed by a reload, loaded again after a restart, none restarted", async () => {
        const KEY = "replica-key-0123456789abcdef";
        const lora = (replicaId: string, port?: number) =>
            startStandIn({
                replicaId,
                port,
                model: "org/base",
                args: ["--served-model-name", "base", "--disable-uvicorn-access-log", "--enable-lora", "--max-loras", "2"],
                env: { VLLM_ALLOW_RUNTIME_LORA_UPDATING: "True", VLLM_API_KEY: KEY },
            }).then(adopt);
        const replicas = await Promise.all([lora("r0"), lora("r1")]);
        const overrides = (adapters: Array<[string, string]>) => ({ groups: [baseGroup(adapters, true)], upstreams: replicas.map((r, i) => ({ name: `vllm${i}`, address: `127.0.0.1:${r.port}`, group: "base" })) });
        const b = await startEdgeBalancer({ upstreamPorts: [], replicaKey: KEY, overrides: overrides([["lora-a", "/adapters/a"]]) });
        const auth = { authorization: `Bearer ${KEY}` };
        /** The adapters a replica lists itself, as "name=path". */
        const adapters = async (r: StandIn) =>
            ((await request(`http://127.0.0.1:${r.port}/v1/models`, { agent: false, headers: auth })).json.data as Array<{ id: string; root: string; parent: string | null }>)
                .filter((c) => c.parent !== null)
                .map((c) => `${c.id}=${c.root}`)
                .join(",");
        const all = async (want: string) => waitFor(`every replica to list ${want || "no adapter"}`, 15_000, async () => (await Promise.all(replicas.map(adapters))).every((a) => a === want), 100);
        try {
            await all("lora-a=/adapters/a");
            const a = await request(`${b.url}/v1/completions`, { agent: false, headers: auth, body: { model: "lora-a", prompt: "hi", max_tokens: 2 } });
            expect(a.status).toBe(200);
            expect(a.json.model).toBe("lora-a");
            // Added and removed by a new config: loaded and unloaded, and the removed one is an unknown model.
            b.nginx.reload(renderNginxConfig({ ...b.config, ...overrides([["lora-b", "/adapters/b"]]) }).text);
            await all("lora-b=/adapters/b");
            const gone = await request(`${b.url}/v1/completions`, { agent: false, headers: auth, body: { model: "lora-a", prompt: "hi", max_tokens: 2 } });
            expect(gone.status).toBe(404);
            expect(gone.json.error.type).toBe("NotFoundError");
            const added = await request(`${b.url}/v1/completions`, { agent: false, headers: auth, body: { model: "lora-b", prompt: "hi", max_tokens: 2 } });
            expect(added.status).toBe(200);
            // A replica that restarts comes back with none loaded at run time: the balancer loads its adapters again.
            const [r0] = replicas as [StandIn, StandIn];
            await r0.kill();
            const again = await lora("r0", r0.port);
            replicas[0] = again;
            expect(await adapters(again)).toBe("");
            await all("lora-b=/adapters/b");
            // The front door never forwards vLLM's runtime endpoints, key or not.
            for (const path of ["/v1/load_lora_adapter", "/v1/unload_lora_adapter"]) {
                const refused = await request(`${b.url}${path}`, { agent: false, headers: auth, body: { lora_name: "evil", lora_path: "/etc" } });
                expect(refused.status, path).toBe(404);
            }
            expect(await adapters(replicas[1]!)).toBe("lora-b=/adapters/b");
        } finally {
            await b.stop();
        }
    });

    it("sends an adapter's requests only to the replicas that have it loaded, where its home on the ring may be another", async () => {
        const KEY = "replica-key-0123456789abcdef";
        const start = (replicaId: string, runtime: boolean) =>
            startStandIn({
                replicaId,
                model: "org/base",
                args: ["--served-model-name", "base", "--disable-uvicorn-access-log", "--enable-lora", "--max-loras", "4"],
                // Without runtime updating, vLLM has no load endpoint: the balancer cannot load the adapters there.
                env: { VLLM_API_KEY: KEY, ...(runtime ? { VLLM_ALLOW_RUNTIME_LORA_UPDATING: "1" } : {}) },
            }).then(adopt);
        const replicas = await Promise.all([start("r0", true), start("r1", false)]);
        const names = ["lora-a", "lora-b", "lora-c", "lora-d"];
        const group = baseGroup(names.map((id) => [id, `/adapters/${id}`]), true);
        const b = await startEdgeBalancer({ upstreamPorts: [], replicaKey: KEY, overrides: { groups: [group], upstreams: replicas.map((r, i) => ({ name: `vllm${i}`, address: `127.0.0.1:${r.port}`, group: "base" })) } });
        const auth = { authorization: `Bearer ${KEY}` };
        try {
            await waitFor("r0 to list the four adapters", 15_000, async () => ((await request(`${replicas[0]!.url}/v1/models`, { agent: false, headers: auth })).json.data as unknown[]).length === 5, 100);
            const landed = new Set<string>();
            for (const model of names) {
                for (let i = 0; i < 3; i += 1) {
                    const r = await request(`${b.url}/v1/completions`, { agent: false, headers: auth, body: { model, prompt: `p${i}`, max_tokens: 1 } });
                    expect(r.status, `${model}: ${r.text}`).toBe(200);
                    landed.add(String(r.headers["x-replica-id"]));
                }
            }
            expect([...landed]).toEqual(["r0"]);
            // The base model's requests still go to both.
            const base = new Set<string>();
            for (let i = 0; i < 4; i += 1) {
                base.add(String((await request(`${b.url}/v1/completions`, { agent: false, headers: auth, body: { model: "base", prompt: `p${i}`, max_tokens: 1 } })).headers["x-replica-id"]));
            }
            expect(base.size).toBe(2);
        } finally {
            await b.stop();
        }
    });

    it("balances each group by its own method: the status lists both, each replica under its group", async () => {
        const { lb, config } = await twoGroups();
        const routing = await routingStatus(config.statusListen);
        expect(routing.groups).toEqual([
            { name: "chat", method: "cache_aware" },
            { name: "small", method: "least_conn" },
        ]);
        expect(routing.replicas.map((r) => `${r.name}:${r.group}`)).toEqual(["vllm0:chat", "vllm1:chat", "vllm2:small"]);
        // cache_aware in the chat group: one conversation keeps its replica.
        const homes = new Set<string>();
        for (let i = 0; i < 4; i += 1) {
            const r = await request(`${lb.url}/v1/chat/completions`, { agent: false, body: { model: "chat", messages: [{ role: "system", content: "a long shared document" }, { role: "user", content: "first question" }], max_tokens: 1 } });
            homes.add(String(r.headers["x-replica-id"]));
        }
        expect(homes.size).toBe(1);
    });
});
