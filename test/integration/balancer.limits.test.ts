/**
 * Limits and edge cases of the rendered config under the real nginx: read timeouts (pain point 2:
 * litellm#9551, vllm#2484), long prompts, the balancer's own health and status endpoints, starting
 * before the replicas (pain point 10), and every balancing method.
 */
import { describe, expect, it } from "vitest";
import { performance } from "perf_hooks";
import {
    freePort,
    nginxVersion,
    receivedIds,
    oursConfig,
    renderOurs,
    request,
    sleep,
    startStandIn,
    stream,
    tokenEvents,
} from "../support";
import { useTestFleet } from "./testFleet";
import { BALANCERS } from "../../components/config/settings";
import { BALANCER_HEALTH_PATH, BALANCER_STATUS_PATH, renderNginxConfig } from "../../components/nginx/render";

const { standIns, nginx, adopt } = useTestFleet();

describe("the real nginx binary", () => {
    it("is installed (CI: apt-get install -y nginx)", () => {
        expect(nginxVersion()).toMatch(/nginx version: nginx\/\d+\.\d+/);
    });
});

describe("read timeout (pain point 2: litellm#9551, vllm#2484)", () => {
    it("answers 504 when a replica is silent for longer than readTimeout, without resending the request to another replica", async () => {
        const rs = await standIns(2, ["--itl-ms", "10"]);
        const port = await freePort();
        const lb = await nginx(renderOurs(rs.map((r) => r.port), port, { readTimeoutSeconds: 2 }), port);
        const t0 = performance.now();
        const slow = await request(`${lb.url}/v1/completions`, { body: { model: "m", prompt: "x", max_tokens: 2 }, headers: { "x-standin-stall-ms": "3000", "x-request-id": "stalled" } });
        const took = performance.now() - t0;
        expect(slow.status).toBe(504);
        expect(took).toBeGreaterThan(1900);
        expect(took).toBeLessThan(2900);
        const seen = (await Promise.all(rs.map(receivedIds))).flat();
        expect(seen.filter((id) => id === "stalled")).toHaveLength(1); // a generation is never started twice
    });

    it("lets a replica silent for less than readTimeout answer, streamed or not", async () => {
        const rs = await standIns(1, ["--itl-ms", "10"]);
        const port = await freePort();
        const lb = await nginx(renderOurs(rs.map((r) => r.port), port, { readTimeoutSeconds: 2 }), port);
        const ok = await request(`${lb.url}/v1/completions`, { body: { model: "m", prompt: "x", max_tokens: 2 }, headers: { "x-standin-stall-ms": "1000" } });
        expect(ok.status).toBe(200);
        const streamed = await stream(`${lb.url}/v1/completions`, { model: "m", prompt: "x", max_tokens: 2, stream: true }, { headers: { "x-standin-stall-ms": "1000" } }).result;
        expect(streamed.done).toBe(true);
    });

    it("times the silence between reads, not the whole generation: a 4.5 s stream with a token every 1.5 s passes a 2 s timeout", async () => {
        const rs = await standIns(1);
        const port = await freePort();
        const lb = await nginx(renderOurs(rs.map((r) => r.port), port, { readTimeoutSeconds: 2 }), port);
        const r = await stream(`${lb.url}/v1/completions`, { model: "m", prompt: "x", max_tokens: 3, stream: true }, { headers: { "x-standin-itl-ms": "1500" } }).result;
        expect(r.done).toBe(true);
        expect(tokenEvents(r)).toHaveLength(3);
    });
});

describe("keep-alive connections to the replicas", () => {
    /**
     * Who closes an idle upstream connection first. vLLM's server (uvicorn) closes idle keep-alive
     * connections after 5 s (VLLM_HTTP_TIMEOUT_KEEP_ALIVE); the stand-in does the same. If nginx keeps
     * them longer, a request can be written on a connection at the moment the replica closes it; nginx
     * then gets a reset or an early close, and since a POST that was sent is never resent (no
     * `non_idempotent`), the client gets a 502. bench/keepalive-race.ts reproduces those 502s.
     */
    async function closedBy(conf: (ports: number[], port: number) => string): Promise<{ closed_by_client: number; closed_by_server: number }> {
        const rs = await standIns(1, ["--itl-ms", "1"]);
        const port = await freePort();
        const lb = await nginx(conf(rs.map((r) => r.port), port), port);
        // Counted from here: the harness's own readiness probe is a connection too.
        const before = (await request(`${rs[0]!.url}/standin/connections`, { agent: false })).json;
        expect((await request(`${lb.url}/v1/completions`, { body: { model: "m", prompt: "x", max_tokens: 1 } })).status).toBe(200);
        await sleep(5800); // past vLLM's 5 s
        const after = (await request(`${rs[0]!.url}/standin/connections`, { agent: false })).json;
        // The probe that read `before` was closed by the server (no keep-alive) after answering.
        return { closed_by_client: after.closed_by_client - before.closed_by_client, closed_by_server: after.closed_by_server - before.closed_by_server - 1 };
    }

    // An upstream keepalive_timeout longer than vLLM's 5 s lets the replica close idle connections that
    // nginx may be reusing at that very moment (sporadic 502s on POST: bench/keepalive-race.ts).
    it("closes idle connections before the replica does (vLLM closes them after 5 s)", async () => {
        const c = await closedBy((ports, port) => renderOurs(ports, port));
        expect(c).toMatchObject({ closed_by_client: 1, closed_by_server: 0 });
    });

    it("leaves the replica to close them with a longer keepalive_timeout (the race this avoids)", async () => {
        const c = await closedBy((ports, port) => renderOurs(ports, port).replace("keepalive_timeout 4s;", "keepalive_timeout 60s;"));
        expect(c).toMatchObject({ closed_by_client: 0, closed_by_server: 1 });
    });
});

describe("long prompts", () => {
    // A replica whose KV cache holds a 2M-token request, and whose simulated prefill takes no time.
    const HUGE_CONTEXT = ["--max-model-len", "2000000", "--kv-cache-tokens", "2100000", "--time-scale", "0"];

    it("passes a 5 MB prompt through to the replica intact", async () => {
        const rs = await standIns(1, HUGE_CONTEXT);
        const port = await freePort();
        const lb = await nginx(renderOurs(rs.map((r) => r.port), port), port);
        const prompt = "a".repeat(5 * 1024 * 1024);
        const r = await request(`${lb.url}/v1/completions`, { body: { model: "m", prompt, max_tokens: 1 } });
        expect(r.status).toBe(200);
        expect(r.json.usage.prompt_tokens).toBe(Math.ceil(prompt.length / 4)); // every byte arrived
        const chat = await request(`${lb.url}/v1/chat/completions`, { body: { model: "m", messages: [{ role: "user", content: prompt }], max_tokens: 1 } });
        expect(chat.status).toBe(200);
    });

    it("refuses a body over maxBodyBytes with 413 before it reaches a replica", async () => {
        const rs = await standIns(1, HUGE_CONTEXT);
        const port = await freePort();
        const lb = await nginx(renderOurs(rs.map((r) => r.port), port, { maxBodyBytes: 1024 * 1024 }), port);
        const r = await request(`${lb.url}/v1/completions`, { body: { model: "m", prompt: "a".repeat(2 * 1024 * 1024), max_tokens: 1 }, headers: { "x-request-id": "too-big" } });
        expect(r.status).toBe(413);
        expect(await receivedIds(rs[0]!)).toEqual([]);
    });
});

describe("the balancer without replicas (pain point 10)", () => {
    it("starts while no replica is running yet, answers its own health endpoint with the config id, and routes once a replica is up", async () => {
        const ports = [await freePort(), await freePort()];
        const port = await freePort();
        const rendered = renderNginxConfig(oursConfig(ports, port));
        const lb = await nginx(rendered.text, port); // nothing listens on either upstream port
        const health = await request(`${lb.url}${BALANCER_HEALTH_PATH}`);
        expect(health.status).toBe(200);
        expect(health.text).toBe(`ok ${rendered.id} in=vllm0,vllm1 out=\n`);
        const t0 = performance.now();
        const down = await request(`${lb.url}/v1/models`);
        expect(down.status).toBe(502);
        expect(performance.now() - t0).toBeLessThan(1000); // refused connections fail fast
        const late = await startStandIn({ replicaId: "late", port: ports[1], args: ["--served-model-name", "m"] });
        adopt(late);
        const up = await request(`${lb.url}/v1/models`);
        expect(up.status).toBe(200);
        expect(up.headers["x-replica-id"]).toBe("late");
        expect((await request(`${lb.url}${BALANCER_HEALTH_PATH}`)).status).toBe(200);
    });

    it("serves nginx's connection counters on its internal listener only, not on the public port", async () => {
        const port = await freePort();
        const statusPort = await freePort();
        const lb = await nginx(renderOurs([await freePort()], port, { statusListen: `127.0.0.1:${statusPort}` }), port);
        const status = await request(`http://127.0.0.1:${statusPort}${BALANCER_STATUS_PATH}`);
        expect(status.status).toBe(200);
        expect(status.text).toMatch(/^Active connections: \d+/);
        // On the public port the path is just another request for the replicas (here: none is up).
        expect((await request(`${lb.url}${BALANCER_STATUS_PATH}`)).text).not.toMatch(/Active connections/);
        expect((await request(`http://127.0.0.1:${statusPort}/v1/models`)).status).toBe(404);
    });
});

describe("every balancing method", () => {
    for (const balancer of BALANCERS) {
        it(`renders a config nginx accepts and that uses every replica: ${balancer}`, async () => {
            const rs = await standIns(3, ["--itl-ms", "1"]);
            const port = await freePort();
            const lb = await nginx(renderOurs(rs.map((r) => r.port), port, { method: balancer }), port);
            const seen = new Set<string>();
            // Thirty conversations: cache_aware keeps each on one replica, and spreads them.
            for (let i = 0; i < 30; i += 1) {
                const r = await request(`${lb.url}/v1/completions`, { body: { model: "m", prompt: `conversation ${i}`, max_tokens: 1 } });
                expect(r.status).toBe(200);
                seen.add(r.headers["x-replica-id"] as string);
            }
            expect([...seen].sort()).toEqual(["r0", "r1", "r2"]);
        });
    }
});
