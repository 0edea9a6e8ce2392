/**
 * Where nginx sends requests, with the real binary on the rendered config: least-connections balance
 * (pain point 5: production-stack#915, vllm#40279), failover to a healthy replica and recovery after
 * failTimeout (pain points 3 and 11), and no retry once a response has begun.
 */
import * as http from "http";
import { describe, expect, it } from "vitest";
import { performance } from "perf_hooks";
import {
    Nginx,
    freePort,
    metricValue,
    receivedIds,
    renderGuideConfig,
    oursConfig,
    renderOurs,
    request,
    scrape,
    sleep,
    startStandIn,
    stream,
    tokenEvents,
} from "../support";
import { useTestFleet } from "./testFleet";
import { BALANCER_HEALTH_PATH, renderNginxConfig } from "../../components/nginx/render";

const { standIns, nginx, adopt } = useTestFleet();

function count(values: Array<string | undefined>): Record<string, number> {
    const out: Record<string, number> = {};
    for (const v of values) {
        out[String(v)] = (out[String(v)] ?? 0) + 1;
    }
    return out;
}

describe("least_conn balance (pain point 5: production-stack#915, vllm#40279)", () => {
    it("spreads concurrent long streams evenly across the replicas", async () => {
        const rs = await standIns(3, ["--itl-ms", "50"]);
        const port = await freePort();
        const lb = await nginx(renderOurs(rs.map((r) => r.port), port), port);
        const handles = [];
        for (let i = 0; i < 12; i += 1) {
            handles.push(stream(`${lb.url}/v1/completions`, { model: "m", prompt: `p${i}`, max_tokens: 40, stream: true }, { agent: false }));
            await sleep(20);
        }
        await Promise.all(handles.map((h) => h.firstEvent));
        const running = await Promise.all(rs.map(async (r) => metricValue(await scrape(r), "vllm:num_requests_running")));
        expect(running).toEqual([4, 4, 4]);
        const results = await Promise.all(handles.map((h) => h.result));
        expect(results.every((r) => r.done)).toBe(true);
        expect(count(results.map((r) => r.replica))).toEqual({ r0: 4, r1: 4, r2: 4 });
    });

    it("sends short requests to the replica with the fewest in flight, not round robin: a long stream's replica gets no new work", async () => {
        const rs = await standIns(2, ["--itl-ms", "20"]);
        const port = await freePort();
        const lb = await nginx(renderOurs(rs.map((r) => r.port), port), port);
        const long = stream(`${lb.url}/v1/completions`, { model: "m", prompt: "long", max_tokens: 100, stream: true }, { agent: false });
        await long.firstEvent;
        const shorts: Array<string | undefined> = [];
        for (let i = 0; i < 10; i += 1) {
            shorts.push((await request(`${lb.url}/v1/completions`, { body: { model: "m", prompt: "s", max_tokens: 2 } })).headers["x-replica-id"] as string | undefined);
        }
        const longResult = await long.result;
        expect(shorts.every((r) => r !== longResult.replica)).toBe(true);
    });
});

/**
 * Opens keep-alive connections to nginx until it has one served by each of two workers (the
 * `x-nginx-worker` header added by the harness tells which), and returns an agent per worker.
 */
async function agentsOnTwoWorkers(lb: Nginx): Promise<[http.Agent, http.Agent]> {
    const byWorker = new Map<string, http.Agent>();
    const spare: http.Agent[] = [];
    for (let round = 0; round < 20 && byWorker.size < 2; round += 1) {
        // Open a few connections at once: the kernel wakes whichever worker is free.
        const agents = Array.from({ length: 4 }, () => new http.Agent({ keepAlive: true, maxSockets: 1 }));
        const workers = await Promise.all(agents.map(async (agent) => (await request(`${lb.url}${BALANCER_HEALTH_PATH}`, { agent })).headers["x-nginx-worker"] as string));
        agents.forEach((agent, i) => {
            if (!byWorker.has(workers[i]!)) {
                byWorker.set(workers[i]!, agent);
            } else {
                spare.push(agent);
            }
        });
    }
    spare.forEach((a) => a.destroy());
    if (byWorker.size < 2) {
        throw new Error("could not get connections served by two different nginx workers");
    }
    return [...byWorker.values()].slice(0, 2) as [http.Agent, http.Agent];
}

/** Starts one long stream through each of two workers, one after the other; returns their replicas. */
async function twoStreamsThroughTwoWorkers(conf: (ports: number[], port: number) => string): Promise<Array<string | undefined>> {
    const rs = await standIns(2, ["--itl-ms", "20"]);
    const port = await freePort();
    // The images run `worker_processes auto` (one per core); two are enough to show the effect.
    const lb = await nginx(conf(rs.map((r) => r.port), port), port, { workers: 2, workerHeader: true });
    const [first, second] = await agentsOnTwoWorkers(lb);
    const a = stream(`${lb.url}/v1/completions`, { model: "m", prompt: "a", max_tokens: 50, stream: true }, { agent: first });
    await a.firstEvent;
    const b = stream(`${lb.url}/v1/completions`, { model: "m", prompt: "b", max_tokens: 50, stream: true }, { agent: second });
    const results = await Promise.all([a.result, b.result]);
    first.destroy();
    second.destroy();
    return results.map((r) => r.replica);
}

describe("least_conn across nginx workers", () => {
    // Counted per worker, as nginx's least_conn does in an upstream without a shared `zone`, two streams
    // that enter through different workers (the images run `worker_processes auto`, one per core) both
    // go to the first replica while the other idles: least_conn degrades towards per-worker round robin
    // (pain point 5). Our balancer counts requests in flight in shared memory (lua_shared_dict).
    it("sends two concurrent streams that enter through different workers to different replicas", async () => {
        const replicasUsed = await twoStreamsThroughTwoWorkers((ports, port) => renderOurs(ports, port));
        expect(new Set(replicasUsed).size).toBe(2);
    });

    it("contrast: the guide's least_conn, counted per worker (no zone), sends both to one replica", async () => {
        // With a health endpoint of its own, so that finding two workers sends nothing to the replicas.
        const guide = (ports: number[], port: number) => renderGuideConfig(ports, port).replace("    location / {", '    location = /nginx-health { return 200 "ok\\n"; }\n    location / {');
        const replicasUsed = await twoStreamsThroughTwoWorkers(guide);
        expect(new Set(replicasUsed).size).toBe(1);
    });
});

describe("failover (pain points 3 and 11)", () => {
    it("loses no request to a replica whose port is closed, and tries it again after failTimeout", async () => {
        const [alive] = await standIns(1, ["--itl-ms", "2"]);
        const downPort = await freePort(); // nothing listens here yet: a replica still loading
        const port = await freePort();
        const lb = await nginx(renderOurs([alive!.port, downPort], port, { maxFails: 1, failTimeoutSeconds: 2 }), port);
        const first: Array<string | undefined> = [];
        for (let i = 0; i < 20; i += 1) {
            const r = await request(`${lb.url}/v1/completions`, { body: { model: "m", prompt: "x", max_tokens: 2 } });
            expect(r.status).toBe(200);
            first.push(r.headers["x-replica-id"] as string | undefined);
        }
        expect(count(first)).toEqual({ r0: 20 });
        expect(lb.errorLog()).toMatch(/connect\(\) failed \(111: Connection refused\)/);

        const late = await startStandIn({ replicaId: "late", port: downPort, args: ["--served-model-name", "m", "--itl-ms", "2"] });
        adopt(late);
        const t0 = performance.now();
        let recoveredAfter = Infinity;
        const statuses: number[] = [];
        while (performance.now() - t0 < 6000) {
            const r = await request(`${lb.url}/v1/completions`, { body: { model: "m", prompt: "x", max_tokens: 2 } });
            statuses.push(r.status);
            if (r.headers["x-replica-id"] === "late") {
                recoveredAfter = performance.now() - t0;
                break;
            }
            await sleep(50);
        }
        expect(statuses.every((s) => s === 200)).toBe(true);
        expect(recoveredAfter).toBeLessThan(2000 + 1500);
    });

    it("counts the failure of a request's last attempt too: a lone replica whose port is closed reaches maxFails", async () => {
        const downPort = await freePort();
        const port = await freePort();
        const lb = await nginx(renderOurs([downPort], port, { maxFails: 3, failTimeoutSeconds: 30, healthCheckIntervalSeconds: 0 }), port);
        for (let i = 0; i < 4; i += 1) {
            expect((await request(`${lb.url}/v1/completions`, { body: { model: "m", prompt: "x", max_tokens: 2 } })).status).toBe(502);
        }
        // Each request had one attempt, its last: nginx never asked the balancer for another peer.
        expect(lb.errorLog()).toMatch(/vllm-nginx: vllm0 \(127\.0\.0\.1:\d+\) failed 3 time\(s\): skipped for 30s/);
    });

    it("contrast: the guide's fail_timeout=10000s keeps a replica that failed 3 times out for hours (pain point 11)", async () => {
        const [alive] = await standIns(1, ["--itl-ms", "2"]);
        const downPort = await freePort();
        const port = await freePort();
        const lb = await nginx(renderGuideConfig([alive!.port, downPort], port), port);
        for (let i = 0; i < 10; i += 1) {
            expect((await request(`${lb.url}/v1/completions`, { body: { model: "m", prompt: "x", max_tokens: 2 } })).status).toBe(200);
        }
        const late = await startStandIn({ replicaId: "late", port: downPort, args: ["--served-model-name", "m", "--itl-ms", "2"] });
        adopt(late);
        const served: Array<string | undefined> = [];
        const t0 = performance.now();
        while (performance.now() - t0 < 3500) {
            served.push((await request(`${lb.url}/v1/completions`, { body: { model: "m", prompt: "x", max_tokens: 2 } })).headers["x-replica-id"] as string | undefined);
            await sleep(50);
        }
        expect(served.length).toBeGreaterThan(20);
        expect(served.includes("late")).toBe(false);
    });
});

describe("no retry once a response has begun", () => {
    it("ends a stream cut by a dying replica with an error the client sees, without resending it elsewhere, while other streams finish", async () => {
        const rs = await standIns(2, ["--itl-ms", "50"]);
        const port = await freePort();
        const lb = await nginx(renderOurs(rs.map((r) => r.port), port), port);
        const ids = ["s0", "s1", "s2", "s3"];
        const handles = [];
        for (const id of ids) {
            handles.push(stream(`${lb.url}/v1/completions`, { model: "m", prompt: id, max_tokens: 60, stream: true }, { agent: false, headers: { "x-request-id": id } }));
            await sleep(20);
        }
        await Promise.all(handles.map((h) => h.firstEvent));
        await sleep(200);
        const victim = rs[0]!;
        const survivor = rs[1]!;
        await victim.kill(); // SIGKILL, mid-stream
        const results = await Promise.all(handles.map((h) => h.result));
        const cut = results.filter((r) => r.replica === victim.replicaId);
        const kept = results.filter((r) => r.replica === survivor.replicaId);
        expect(cut).toHaveLength(2);
        expect(kept).toHaveLength(2);
        for (const r of cut) {
            expect(r.status).toBe(200);
            expect(r.done).toBe(false); // truncated: no [DONE]
            expect(r.complete).toBe(false); // and the HTTP response did not end cleanly
            expect(tokenEvents(r).length).toBeLessThan(60);
        }
        for (const r of kept) {
            expect(r.done).toBe(true);
            expect(tokenEvents(r)).toHaveLength(60);
        }
        // The survivor saw its own two streams and nothing else: no duplicate generation.
        const keptIds = ids.filter((_, i) => results[i]!.replica === survivor.replicaId);
        expect((await receivedIds(survivor)).sort()).toEqual(keptIds.sort());
        expect(lb.errorLog()).toMatch(/upstream prematurely closed connection/);
        // New requests go to the survivor.
        for (let i = 0; i < 3; i += 1) {
            const r = await request(`${lb.url}/v1/completions`, { body: { model: "m", prompt: "after", max_tokens: 2 } });
            expect(r.status).toBe(200);
            expect(r.headers["x-replica-id"]).toBe(survivor.replicaId);
        }
    });
});

describe("reload without a replica (pain point 4: GIE#549, kserve#5496)", () => {
    it("lets the removed replica's in-flight streams finish, sends new requests elsewhere, and serves the new config id", async () => {
        const rs = await standIns(2, ["--itl-ms", "50"]);
        const port = await freePort();
        const before = renderOurs(rs.map((r) => r.port), port);
        const lb = await nginx(before, port);
        const handles = [0, 1, 2, 3].map((i) => stream(`${lb.url}/v1/completions`, { model: "m", prompt: `p${i}`, max_tokens: 40, stream: true }, { agent: false }));
        await Promise.all(handles.map((h) => h.firstEvent));
        // Stop routing to r1 first (the program does this before it stops the replica).
        const after = renderNginxConfig(oursConfig([rs[0]!.port], port));
        lb.reload(after.text);
        const t0 = performance.now();
        while (!(await request(`${lb.url}${BALANCER_HEALTH_PATH}`, { agent: false })).text.startsWith(`ok ${after.id} `)) {
            expect(performance.now() - t0).toBeLessThan(5000);
            await sleep(20);
        }
        const fresh: Array<string | undefined> = [];
        for (let i = 0; i < 6; i += 1) {
            fresh.push((await request(`${lb.url}/v1/completions`, { agent: false, body: { model: "m", prompt: "new", max_tokens: 1 } })).headers["x-replica-id"] as string | undefined);
        }
        expect(count(fresh)).toEqual({ r0: 6 });
        const results = await Promise.all(handles.map((h) => h.result));
        expect(count(results.map((r) => r.replica))).toEqual({ r0: 2, r1: 2 });
        for (const r of results) {
            expect(r.done).toBe(true); // the reload cut nothing
            expect(tokenEvents(r)).toHaveLength(40);
        }
    });
});
