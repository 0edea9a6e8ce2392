/**
 * Two model groups behind one endpoint, deployed by the real Pulumi engine on the real Docker engine, the
 * stand-in in place of vLLM: the groups of `Pulumi.e2e.yaml`, a chat group of two replicas with a LoRA
 * adapter (cache_aware), and a small model's group of one with room for one more (least_conn). Through the front door (TLS, client keys): every name listed, each
 * model's requests only on its group's replicas (read from the replicas' own counters), an unknown model
 * answered by nginx alone, one group rolled under load on both (on its spare slot) with the other's
 * containers untouched, an adapter added and removed by `pulumi up` with no container replaced, and a key
 * limited to one model.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { request, requireDocker, waitFor } from "../support";
import { BASE_IMAGE, E2eStack, balancerCertificate, docker, leftovers, removeLeftovers } from "./harness";
import OpenAI from "openai";
import { ALICE_KEY, API_KEY, BOB_KEY, SteadyLoad, openaiClient, type Front, type LoadCounts } from "./load";

const STACK = "grp";

const report: string[] = [];
function note(line: string): void {
    report.push(line);
    console.log(`[e2e:groups] ${line}`);
}
const describeCounts = (step: string, c: LoadCounts) => `${step}: sent ${c.sent}, completed ${c.completed}, failed ${c.failed}, cut ${c.cut}, error events ${c.errored}`;

describe("e2e: two model groups behind one endpoint", () => {
    let stack: E2eStack;
    let outputs: Record<string, any>;
    let front: Front;
    let destroyed = false;

    /** Requests each replica finished, by replica name, from its own /metrics (its published port). */
    async function served(): Promise<Record<string, number>> {
        const counts: Record<string, number> = {};
        for (const r of outputs.replicas as Array<{ name: string; url: string }>) {
            const text = (await request(`${r.url}/metrics`, { agent: false })).text;
            counts[r.name] = text
                .split("\n")
                .filter((l) => l.startsWith("vllm:request_success_total{"))
                .reduce((sum, l) => sum + Number(l.split(" ").at(-1)), 0);
        }
        return counts;
    }
    const ids = async () => Object.fromEntries(await Promise.all((outputs.replicas as Array<{ name: string; container: string }>).map(async (r) => [r.name, (await docker(["inspect", "-f", "{{.Id}}", r.container])).trim()])));
    const chat = (model: string, key = ALICE_KEY) =>
        request(`${front.url}/v1/chat/completions`, { agent: false, ca: front.ca, headers: { authorization: `Bearer ${key}` }, body: { model, messages: [{ role: "user", content: "hello" }], max_tokens: 3 } });

    beforeAll(async () => {
        requireDocker(BASE_IMAGE);
        await removeLeftovers(STACK);
        stack = new E2eStack(STACK, "e2e");
        await stack.init();
        await stack.setConfig("apiKey", API_KEY, true);
        // The two groups of Pulumi.e2e.yaml as they are; ports, network and folders of this stack's own.
        stack.editConfig((c) => {
            delete c.monitoring;
            expect((c.models as Array<{ name: string }>).map((g) => g.name)).toEqual(["chat", "small"]);
            c.lbPort = "38000";
            c.replicaPortBase = "38081";
            c.tls = { mode: "self-signed", http: "redirect", httpPort: "38080" };
            c.networkSubnet = "172.29.60.0/24";
            c.hfCacheDir = "/tmp/vllm-nginx-e2e-grp/hf-cache";
            c.stopGracePeriod = "20s";
        });
    });

    afterAll(async () => {
        if (stack && !destroyed) {
            await stack.pulumi(["destroy", "--yes", "--skip-preview"]).catch((error) => console.error(String(error)));
        }
        await removeLeftovers(STACK);
        console.log(`\n[e2e:groups] summary\n${report.map((l) => `  ${l}`).join("\n")}`);
    });

    it("deploys both groups; /v1/models lists every model and the adapter, with its parent", async () => {
        const { seconds } = await stack.up();
        note(`pulumi up (create, 2 + 1 replicas in two groups): ${seconds.toFixed(1)}s`);
        outputs = await stack.outputs();
        front = { url: outputs.endpoint, headers: { authorization: `Bearer ${ALICE_KEY}` }, ca: await balancerCertificate(outputs.balancerContainer) };
        expect(outputs.models).toEqual(["tiny-chat", "tiny-sql", "tiny-small"]);
        expect(outputs.replicas.map((r: { name: string; group: string }) => `${r.name}:${r.group}`)).toEqual(["vllm0:chat", "vllm1:chat", "small-vllm0:small"]);
        // The official openai client's list: OpenAI's format, each adapter with its model as parent.
        const cards = [];
        for await (const card of openaiClient(front, ALICE_KEY).models.list()) {
            cards.push(card as OpenAI.Models.Model & { parent: string | null });
        }
        expect(cards.map((c) => [c.id, c.parent])).toEqual([
            ["tiny-chat", null],
            ["tiny-sql", "tiny-chat"],
            ["tiny-small", null],
        ]);
    });

    it("sends each model's streamed chats only to its group's replicas, read from the replicas' own counters; an unknown model reaches none", async () => {
        const client = openaiClient(front, ALICE_KEY);
        /** One streamed chat with the openai client: the text of its chunks, and the model it answered as. */
        const streamed = async (model: string) => {
            const chunks = await client.chat.completions.create({ model, messages: [{ role: "user", content: "hello" }], max_tokens: 3, stream: true });
            let text = "";
            let answered = "";
            for await (const chunk of chunks) {
                text += chunk.choices[0]?.delta?.content ?? "";
                answered = chunk.model;
            }
            return { text, answered };
        };
        const before = await served();
        for (let i = 0; i < 4; i += 1) {
            for (const model of ["tiny-chat", "tiny-sql"]) {
                const r = await streamed(model);
                expect(r.answered).toBe(model);
                expect(r.text.length).toBeGreaterThan(0);
            }
        }
        for (let i = 0; i < 3; i += 1) {
            expect((await streamed("tiny-small")).answered).toBe("tiny-small");
        }
        const after = await served();
        const moved = Object.fromEntries(Object.keys(after).map((name) => [name, after[name]! - before[name]!]));
        note(`streamed chats per replica (openai client): ${JSON.stringify(moved)}`);
        expect(moved["vllm0"]! + moved["vllm1"]!).toBe(8);
        expect(moved["small-vllm0"]).toBe(3);
        const unknown = await client.chat.completions.create({ model: "gpt-4o", messages: [{ role: "user", content: "hello" }], stream: true }).catch((error: unknown) => error);
        expect(unknown).toBeInstanceOf(OpenAI.NotFoundError);
        expect((unknown as InstanceType<typeof OpenAI.NotFoundError>).error).toEqual({ message: "The model `gpt-4o` does not exist. Valid aliases: tiny-chat, tiny-small.", type: "NotFoundError", param: "model", code: 404 });
        expect(await served()).toEqual(after);
    });

    it("rolls a vllmArgs change of the small group under load on both groups: nothing fails, the chat group's containers are untouched", async () => {
        const chatIds = await ids();
        const loads = { chat: new SteadyLoad(front, "tiny-chat", 2, 30, 180), small: new SteadyLoad(front, "tiny-small", 2, 30, 180) };
        loads.chat.start();
        loads.small.start();
        stack.editConfig((c) => {
            const small = (c.models as Array<Record<string, unknown>>)[1]!;
            small.vllmArgs = [...(small.vllmArgs as string[]), "--max-num-seqs", "32"];
        });
        const { seconds, output } = await stack.up();
        const counts = { chat: await loads.chat.stop(), small: await loads.small.stop() };
        outputs = await stack.outputs();
        note(`pulumi up (small group's vllmArgs): ${seconds.toFixed(1)}s; ${describeCounts("chat", counts.chat)}; ${describeCounts("small", counts.small)}`);
        expect(output).toContain("model group small: rollout of 1 replica: small-vllm1 starts on spare capacity");
        expect(output).not.toContain("model group chat: rollout");
        for (const c of [counts.chat, counts.small]) {
            expect(c.failed, c.errors.join("\n")).toBe(0);
            expect(c.cut).toBe(0);
            expect(c.completed).toBeGreaterThan(0);
        }
        const now = await ids();
        expect(Object.keys(now)).toEqual(["vllm0", "vllm1", "small-vllm1"]);
        expect(now["vllm0"]).toBe(chatIds["vllm0"]);
        expect(now["vllm1"]).toBe(chatIds["vllm1"]);
    });

    it("adds an adapter with pulumi up: it serves within a minute with no container replaced; removed, it is an unknown model", async () => {
        const before = await ids();
        const adapters = (list: string[]) => stack.editConfig((c) => ((c.models as Array<Record<string, unknown>>)[0]!.adapters = list.map((name) => ({ name, source: `standin/${name}-lora` }))));
        adapters(["tiny-sql", "tiny-law"]);
        const started = performance.now();
        const added = await stack.up();
        const upSeconds = (performance.now() - started) / 1000;
        const answer = await waitFor("tiny-law to answer through the front door", 60_000, async () => {
            const r = await chat("tiny-law");
            return r.status === 200 ? r : undefined;
        }, 250);
        const servedAfter = (performance.now() - started) / 1000;
        note(`adapter added: pulumi up ${upSeconds.toFixed(1)}s, first answer ${servedAfter.toFixed(1)}s after the up began`);
        expect(servedAfter).toBeLessThan(60);
        expect(answer.json.model).toBe("tiny-law");
        expect(added.output).not.toContain("rollout of");
        expect(added.output).toContain("adapters loaded on the 2 replica(s) of groups with LoRA");
        const list = await request(`${front.url}/v1/models`, { agent: false, ca: front.ca, headers: front.headers });
        expect((list.json.data as Array<{ id: string }>).map((c) => c.id)).toContain("tiny-law");
        // Every chat replica has it loaded, as each lists it itself.
        for (const r of (outputs.replicas as Array<{ name: string; url: string; group: string }>).filter((r) => r.group === "chat")) {
            await waitFor(`${r.name} to list tiny-law`, 30_000, async () => {
                const own = await request(`${r.url}/v1/models`, { agent: false, headers: { authorization: `Bearer ${API_KEY}` } });
                return (own.json?.data as Array<{ id: string }> | undefined)?.some((c) => c.id === "tiny-law");
            }, 250);
        }
        adapters(["tiny-sql"]);
        const removed = await stack.up();
        note(`adapter removed: pulumi up ${removed.seconds.toFixed(1)}s`);
        const gone = await chat("tiny-law");
        expect(gone.status).toBe(404);
        expect(gone.json).toEqual({ error: { message: "The model `tiny-law` does not exist. Valid aliases: tiny-chat, tiny-small.", type: "NotFoundError", param: "model", code: 404 } });
        expect((await chat("tiny-sql")).status).toBe(200);
        expect(await ids()).toEqual(before);
    });

    it("limits a client key to one model with a reload: 403 for the other, no container replaced", async () => {
        const before = await ids();
        stack.editConfig((c) => ((c.clientKeys as Array<Record<string, unknown>>)[1]!.models = ["tiny-small"]));
        await stack.up();
        // bob is limited to 2 requests a second, one at a time.
        const denied = await openaiClient(front, BOB_KEY).chat.completions.create({ model: "tiny-chat", messages: [{ role: "user", content: "hello" }], max_tokens: 3 }).catch((error: unknown) => error);
        expect(denied).toBeInstanceOf(OpenAI.PermissionDeniedError);
        expect((denied as InstanceType<typeof OpenAI.PermissionDeniedError>).status).toBe(403);
        await new Promise((resolve) => setTimeout(resolve, 1000));
        expect((await chat("tiny-small", BOB_KEY)).status).toBe(200);
        expect((await chat("tiny-chat")).status).toBe(200);
        expect(await ids()).toEqual(before);
    });

    it("destroys everything", async () => {
        await stack.pulumi(["destroy", "--yes", "--skip-preview"]);
        destroyed = true;
        expect(await leftovers(STACK)).toEqual([]);
    });
});
