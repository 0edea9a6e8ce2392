/**
 * The cache-aware mode with the real nginx and its Lua balancer, in front of stand-ins that model vLLM's
 * prefix cache: one key per session or conversation (header, else leading content, also for bodies in
 * a temp file), the load bound, streaming, replicas out of rotation, and what a new replica takes over.
 */
import { execFile } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { describe, expect, it } from "vitest";
import { renderNginxConfig } from "../../components/nginx/render";
import { freePort, gaps, metricValue, oursConfig, renderOurs, request, scrape, stream, tokenEvents, type StandIn } from "../support";
import { useTestFleet } from "./testFleet";

const { standIns, nginx } = useTestFleet();

/** The replica (x-replica-id) that served a chat request. */
async function chat(url: string, messages: Array<{ role: string; content: string }>, headers: Record<string, string> = {}): Promise<string> {
    const r = await request(`${url}/v1/chat/completions`, { body: { model: "m", messages, max_tokens: 2 }, headers });
    expect(r.status, r.text).toBe(200);
    return r.headers["x-replica-id"] as string;
}

/** Every user's first message opens with the same long preamble, as production-stack's multi-round QA. */
const PREAMBLE = `Hi, here's some system prompt: ${"hi ".repeat(700)}`;
const firstMessage = (user: number) => `${PREAMBLE}For user ${user}, here are some other context: ${"hi ".repeat(50)}Question 1?`;

async function hitsAndQueries(rs: StandIn[]): Promise<{ hits: number; queries: number }> {
    const texts = await Promise.all(rs.map(scrape));
    return {
        hits: texts.reduce((n, t) => n + metricValue(t, "vllm:prefix_cache_hits_total"), 0),
        queries: texts.reduce((n, t) => n + metricValue(t, "vllm:prefix_cache_queries_total"), 0),
    };
}

describe("cache_aware: one replica per session or conversation", () => {
    it("keeps every turn of a conversation on one replica, by session header or by leading content, and its prefix hits the cache", async () => {
        const rs = await standIns(3, ["--itl-ms", "1", "--time-scale", "0.1"]);
        const port = await freePort();
        const lb = await nginx(renderOurs(rs.map((r) => r.port), port, { method: "cache_aware" }), port);
        const byHeader: Record<string, Set<string>> = {};
        const byContent: Record<string, Set<string>> = {};
        for (let user = 0; user < 12; user += 1) {
            const history = [{ role: "user", content: firstMessage(user) }];
            for (let turn = 0; turn < 3; turn += 1) {
                (byContent[user] ??= new Set()).add(await chat(lb.url, history));
                (byHeader[user] ??= new Set()).add(await chat(lb.url, [{ role: "user", content: `turn ${turn} of session ${user}` }], { "x-user-id": `session-${user}` }));
                history.push({ role: "assistant", content: "The quick" }, { role: "user", content: `Question ${turn + 2}?` });
            }
        }
        for (let user = 0; user < 12; user += 1) {
            expect(byContent[user]!.size, `conversation ${user} stayed on one replica`).toBe(1);
            expect(byHeader[user]!.size, `session ${user} stayed on one replica`).toBe(1);
        }
        // A preamble shared by every user does not put every conversation on one replica.
        const used = new Set(Object.values(byContent).map((s) => [...s][0]));
        expect(used.size).toBeGreaterThanOrEqual(2);
        // Turns after the first find their conversation's prefix cached: the preamble and the user's context.
        const { hits, queries } = await hitsAndQueries(rs);
        expect(hits / queries).toBeGreaterThan(0.5);
    });

    it("keeps users who share a document (a system prompt carrying at most one replica's share of the traffic) on its replica, and splits an application-wide system prompt by user", async () => {
        const rs = await standIns(3, ["--itl-ms", "1", "--time-scale", "0"]);
        const port = await freePort();
        const lb = await nginx(renderOurs(rs.map((r) => r.port), port, { method: "cache_aware" }), port);
        const documents = Array.from({ length: 6 }, (_, g) => `Answer questions about document ${g}: ${"text ".repeat(300)}`);
        const byDocument: Record<number, string[]> = {};
        for (let round = 0; round < 8; round += 1) {
            for (let g = 0; g < documents.length; g += 1) {
                const replica = await chat(lb.url, [{ role: "system", content: documents[g]! }, { role: "user", content: `question ${round} from user ${g * 10 + round}` }]);
                (byDocument[g] ??= []).push(replica);
            }
        }
        // Once the balancer has counted 20 requests to know each document's share (1/6, under 1/3):
        for (const replicas of Object.values(byDocument)) {
            expect(new Set(replicas.slice(-4)).size).toBe(1);
        }
        expect(new Set(Object.values(byDocument).map((r) => r[r.length - 1])).size).toBeGreaterThanOrEqual(2);
        // One system prompt for everyone: once it carries more than a third of the traffic, each
        // conversation is keyed by its opening message, and they spread out.
        const app = "You are a helpful assistant. ".repeat(40);
        const byUser: Record<number, string[]> = {};
        for (let turn = 0; turn < 5; turn += 1) {
            for (let user = 0; user < 12; user += 1) {
                const history = [{ role: "system", content: app }, { role: "user", content: `I am user ${user}` }, ...(turn > 0 ? [{ role: "assistant", content: "Hello" }, { role: "user", content: `turn ${turn}` }] : [])];
                (byUser[user] ??= []).push(await chat(lb.url, history));
            }
        }
        for (const replicas of Object.values(byUser)) {
            expect(new Set(replicas.slice(-3)).size).toBe(1);
        }
        expect(new Set(Object.values(byUser).map((r) => r[r.length - 1])).size).toBeGreaterThanOrEqual(2);
    });

    it("routes a body too large for memory (in nginx's temp file) by its key, as a small one", async () => {
        const rs = await standIns(3, ["--itl-ms", "1", "--time-scale", "0", "--max-model-len", "2000000", "--kv-cache-tokens", "2100000"]);
        const port = await freePort();
        const lb = await nginx(renderOurs(rs.map((r) => r.port), port, { method: "cache_aware" }), port);
        const served: Record<number, Set<string>> = {};
        for (let conversation = 0; conversation < 6; conversation += 1) {
            // 1.5 MB: above client_body_buffer_size (1m), so nginx buffers it to a file.
            const big = [{ role: "user", content: `${conversation} ${"long document ".repeat(110_000)}` }];
            for (let turn = 0; turn < 2; turn += 1) {
                (served[conversation] ??= new Set()).add(await chat(lb.url, turn === 0 ? big : [...big, { role: "assistant", content: "ok" }, { role: "user", content: "more" }]));
            }
        }
        expect(lb.errorLog()).toMatch(/client request body is buffered to a temporary file/);
        for (const set of Object.values(served)) {
            expect(set.size).toBe(1);
        }
        expect(new Set(Object.values(served).map((s) => [...s][0])).size).toBeGreaterThanOrEqual(2);
    });

    it("keys a huge body without a session header by its first 64 KB: the worker does not stop serving others while it arrives (one worker, a 67 MB chat body)", async () => {
        const rs = await standIns(2, ["--itl-ms", "1", "--time-scale", "0"]);
        const port = await freePort();
        const lb = await nginx(renderOurs(rs.map((r) => r.port), port, { method: "cache_aware", maxBodyBytes: 200 * 1024 * 1024 }), port, { workers: 1 });
        // A long conversation: two million short turns, which a JSON decoder must build one by one. Written
        // before the probes start, and sent by curl, so that this process's event loop only measures.
        const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "vllm-nginx-huge-")), "body.json");
        const turns = Array.from({ length: 2_000_000 }, (_, i) => ({ role: i % 2 ? "assistant" : "user", content: "ok" }));
        fs.writeFileSync(file, JSON.stringify({ model: "m", max_tokens: 1, messages: [{ role: "system", content: "You summarise." }, ...turns] }));
        // How long the one worker takes to answer its own health endpoint, every 20 ms, while the body is keyed.
        const latencies: number[] = [];
        let polling = true;
        const poll = (async () => {
            while (polling) {
                const started = Date.now();
                await request(`${lb.url}/nginx-health`, { agent: false });
                latencies.push(Date.now() - started);
                await new Promise((r) => setTimeout(r, 20));
            }
        })();
        const status = await new Promise<string>((resolve, reject) =>
            execFile("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "content-type: application/json", "--data-binary", `@${file}`, `${lb.url}/v1/chat/completions`], (error, stdout) =>
                error ? reject(error) : resolve(stdout),
            ),
        );
        polling = false;
        await poll;
        const size = fs.statSync(file).size;
        fs.rmSync(path.dirname(file), { recursive: true, force: true });
        const slowest = Math.max(...latencies);
        console.log(`a ${(size / 1e6).toFixed(0)} MB keyless chat body: answered ${status}; the worker's /nginx-health took up to ${slowest} ms meanwhile (${latencies.length} probes)`);
        // Keying the whole document in Lua (reading it back, then decoding it) held the worker for about 0.7 s here.
        expect(slowest).toBeLessThan(250);
        expect(lb.errorLog()).toMatch(/client request body is buffered to a temporary file/);
    }, 180_000);

    it("streams tokens as they are generated", async () => {
        const rs = await standIns(2, ["--itl-ms", "40"]);
        const port = await freePort();
        const lb = await nginx(renderOurs(rs.map((r) => r.port), port, { method: "cache_aware" }), port);
        const r = await stream(`${lb.url}/v1/chat/completions`, { model: "m", messages: [{ role: "user", content: "stream please" }], max_tokens: 12, stream: true }, { headers: { "x-user-id": "s" } }).result;
        expect(r.done).toBe(true);
        const tokens = tokenEvents(r);
        expect(tokens).toHaveLength(12);
        // One token per ~40 ms step as it is produced, not a burst at the end. (The median: on a busy
        // machine two tokens can arrive in one read now and then.)
        const sorted = gaps(tokens).sort((a, b) => a - b);
        expect(sorted[Math.floor(sorted.length / 2)]).toBeGreaterThan(20);
    });

    it("sends nothing to a replica out of rotation, whatever its keys", async () => {
        const rs = await standIns(3, ["--itl-ms", "1"]);
        const port = await freePort();
        const config = oursConfig(rs.map((r) => r.port), port, { method: "cache_aware" });
        config.upstreams[1]!.state = "down";
        const lb = await nginx(renderNginxConfig(config).text, port);
        const served = new Set<string>();
        for (let i = 0; i < 40; i += 1) {
            served.add(await chat(lb.url, [{ role: "user", content: `hello ${i}` }], i % 2 ? { "x-user-id": `u${i}` } : {}));
        }
        expect([...served].sort()).toEqual(["r0", "r2"]);
    });
});

describe("cache_aware: the load bound", () => {
    /** Nine concurrent streams of one session; how many each replica runs once all have started. */
    async function oneHotSession(method: "cache_aware" | "consistent_hash"): Promise<number[]> {
        const rs = await standIns(3, ["--itl-ms", "30"]);
        const port = await freePort();
        const lb = await nginx(renderOurs(rs.map((r) => r.port), port, { method }), port);
        const handles = Array.from({ length: 9 }, (_, i) =>
            stream(`${lb.url}/v1/chat/completions`, { model: "m", messages: [{ role: "user", content: `agent step ${i}` }], max_tokens: 30, stream: true }, { agent: false, headers: { "x-user-id": "hot" } }),
        );
        await Promise.all(handles.map((h) => h.firstEvent));
        const running = await Promise.all(rs.map(async (r) => metricValue(await scrape(r), "vllm:num_requests_running")));
        const results = await Promise.all(handles.map((h) => h.result));
        expect(results.every((r) => r.done)).toBe(true);
        return running;
    }

    it("spreads one hot session over the replicas, none above ceil(1.25 x the mean)", async () => {
        const running = await oneHotSession("cache_aware");
        expect(running.reduce((a, b) => a + b, 0)).toBe(9);
        expect(Math.max(...running)).toBeLessThanOrEqual(Math.ceil(1.25 * 3));
    });

    it("contrast: nginx's hash ... consistent on the same key, without a bound, puts all nine on one replica", async () => {
        const running = await oneHotSession("consistent_hash");
        expect([...running].sort()).toEqual([0, 0, 9]);
    });
});

describe("cache_aware: a new replica", () => {
    it("takes over about its share of the keys (1/4 of them going from 3 replicas to 4), and nothing else moves", async () => {
        const rs = await standIns(4, ["--itl-ms", "1"]);
        const port = await freePort();
        const three = renderOurs(rs.slice(0, 3).map((r) => r.port), port, { method: "cache_aware" });
        const lb = await nginx(three, port);
        const sessions = Array.from({ length: 80 }, (_, i) => `session-${i}`);
        const before: string[] = [];
        for (const s of sessions) {
            before.push(await chat(lb.url, [{ role: "user", content: "hi" }], { "x-user-id": s }));
        }
        const four = renderNginxConfig(oursConfig(rs.map((r) => r.port), port, { method: "cache_aware" }));
        lb.reload(four.text);
        await expect.poll(async () => (await request(`${lb.url}/nginx-health`)).text, { timeout: 5000 }).toContain(four.id);
        const after: string[] = [];
        for (const s of sessions) {
            after.push(await chat(lb.url, [{ role: "user", content: "hi" }], { "x-user-id": s }));
        }
        const moved = sessions.filter((_, i) => before[i] !== after[i]);
        expect(moved.every((s) => after[sessions.indexOf(s)] === "r3"), "keys move only to the new replica").toBe(true);
        expect(moved.length / sessions.length).toBeGreaterThan(0.1);
        expect(moved.length / sessions.length).toBeLessThan(0.375);
    });
});
