/**
 * Active health checks, in every balancing mode, with the real nginx: a replica whose engine died but
 * whose server still answers (vLLM with VLLM_KEEP_ALIVE_ON_ENGINE_DEATH: /health 503, requests 500)
 * leaves service within 5 s, and comes back once its /health passes again. nginx's max_fails alone
 * never notices it: the server accepts every connection.
 */
import { describe, expect, it } from "vitest";
import { performance } from "perf_hooks";
import { BALANCERS } from "../../components/config/settings";
import { freePort, renderOurs, request, sleep, startStandIn, type StandIn } from "../support";
import { useTestFleet } from "./testFleet";

const { nginx, adopt } = useTestFleet();

/** Stand-ins r0, r1, ... that stay up after their engine dies, answering /health 503, as vLLM with VLLM_KEEP_ALIVE_ON_ENGINE_DEATH. */
async function standIns(n: number): Promise<StandIn[]> {
    return Promise.all(
        Array.from({ length: n }, async (_, i) =>
            adopt(await startStandIn({ replicaId: `r${i}`, args: ["--served-model-name", "m", "--itl-ms", "1", "--disable-uvicorn-access-log"], env: { VLLM_KEEP_ALIVE_ON_ENGINE_DEATH: "1" } })),
        ),
    );
}

interface Sample {
    at: number;
    status: number;
    replica: string | undefined;
}

/** Sends requests one after the other (a different conversation each) until `until` says stop. */
async function drive(url: string, samples: Sample[], until: () => boolean): Promise<void> {
    for (let i = 0; !until(); i += 1) {
        const r = await request(`${url}/v1/chat/completions`, {
            body: { model: "m", messages: [{ role: "user", content: `question ${i}` }], max_tokens: 1 },
            headers: { "x-user-id": `user-${i % 12}` },
            timeoutMs: 10_000,
        }).catch(() => ({ status: 0, headers: {} as Record<string, unknown> }));
        samples.push({ at: performance.now(), status: r.status, replica: r.headers["x-replica-id"] as string | undefined });
        await sleep(20);
    }
}

describe("active health checks (a dead engine behind a live server)", () => {
    for (const method of BALANCERS) {
        it(`${method}: takes a replica whose /health fails out within 5 s, and back once it passes`, async () => {
            const rs = await standIns(3);
            const port = await freePort();
            const lb = await nginx(renderOurs(rs.map((r) => r.port), port, { method }), port);
            const victim = rs[1]!;
            const samples: Sample[] = [];
            let stop = false;
            const driving = drive(lb.url, samples, () => stop);
            await sleep(1500);
            expect(new Set(samples.map((s) => s.replica)).has(victim.replicaId), "the victim served before").toBe(true);

            // Kill its engine: the server stays up, /health answers 503, generations 500.
            const kill = await request(`${victim.url}/standin/kill-engine`, { method: "POST" });
            expect(kill.status).toBe(200);
            const killedAt = performance.now();
            expect((await request(`${victim.url}/health`)).status).toBe(503);
            await sleep(6000);
            expect((await request(`${victim.url}/health`)).status, "the dead engine's server is still up").toBe(503);
            const afterKill = samples.filter((s) => s.at > killedAt);
            const toDead = afterKill.filter((s) => s.replica === victim.replicaId);
            const lastToDead = toDead.length > 0 ? toDead[toDead.length - 1]!.at - killedAt : 0;
            console.log(`${method}: ${toDead.length} of ${afterKill.length} requests reached the dead replica, the last ${Math.round(lastToDead)} ms after its engine died`);
            expect(toDead.every((s) => s.status === 500)).toBe(true);
            expect(lastToDead).toBeLessThan(5000);
            expect(afterKill.filter((s) => s.at - killedAt > 5000).every((s) => s.status === 200)).toBe(true);
            expect(lb.errorLog()).toMatch(/vllm0|vllm1|vllm2/);
            expect(lb.errorLog()).toMatch(/vllm1 \(127\.0\.0\.1:\d+\) fails \/health \(status 503\): no new requests until it passes again/);

            // A restarted server on the same address passes /health again and gets requests again.
            await victim.kill();
            const revived = adopt(await startStandIn({ replicaId: "revived", port: victim.port, args: ["--served-model-name", "m", "--itl-ms", "1", "--disable-uvicorn-access-log"] }));
            const revivedAt = performance.now();
            await sleep(5000);
            stop = true;
            await driving;
            const back = samples.filter((s) => s.at > revivedAt && s.replica === revived.replicaId);
            expect(back.length, "the revived replica serves again").toBeGreaterThan(0);
            expect(back[0]!.at - revivedAt).toBeLessThan(5000);
            expect(samples.filter((s) => s.at > revivedAt).every((s) => s.status === 200)).toBe(true);
        });
    }

    it("keeps a busy replica in service: its event loop busy 4 s of every 6 s (long prompts to render and tokenize) answers /health late, not never", async () => {
        const rs = await standIns(3);
        const port = await freePort();
        const lb = await nginx(renderOurs(rs.map((r) => r.port), port), port);
        const busy = rs[1]!;
        const samples: Sample[] = [];
        let stop = false;
        const driving = drive(lb.url, samples, () => stop);
        const started = performance.now();
        let blocks = 0;
        while (performance.now() - started < 18_000) {
            expect((await request(`${busy.url}/standin/block-loop?ms=4000`, { method: "POST" })).status).toBe(200);
            blocks += 1;
            await sleep(6000);
        }
        const servedMeanwhile = samples.filter((s) => s.replica === busy.replicaId).length;
        stop = true;
        await driving;
        console.log(`busy replica: ${blocks} blocks of 4 s, ${servedMeanwhile} of ${samples.length} requests served by it`);
        expect(lb.errorLog()).not.toMatch(/vllm1 \(127\.0\.0\.1:\d+\) fails \/health/);
        expect(servedMeanwhile).toBeGreaterThan(0);
        expect(samples.every((s) => s.status === 200)).toBe(true);
    }, 60_000);

    it("takes out a replica whose /health gets no answer at all (a loop blocked for good), after three late probes", async () => {
        const rs = await standIns(3);
        const port = await freePort();
        const lb = await nginx(renderOurs(rs.map((r) => r.port), port), port);
        const blockedAt = performance.now();
        await request(`${rs[1]!.url}/standin/block-loop?ms=20000`, { method: "POST" });
        const pattern = /vllm1 \(127\.0\.0\.1:\d+\) fails \/health \(no answer within 3000 ms, 3 times in a row\)/;
        while (!pattern.test(lb.errorLog()) && performance.now() - blockedAt < 18_000) {
            await sleep(200);
        }
        const seconds = (performance.now() - blockedAt) / 1000;
        console.log(`a replica that never answers /health: out of service after ${seconds.toFixed(1)} s`);
        expect(lb.errorLog()).toMatch(pattern);
    }, 60_000);

    it("contrast: nginx's max_fails alone keeps sending the dead replica its share (the server accepts every connection)", async () => {
        const rs = await standIns(3);
        const port = await freePort();
        // No health checks: the Lua balancer's least_conn with only the passive failures nginx counts.
        const lb = await nginx(renderOurs(rs.map((r) => r.port), port, { healthCheckIntervalSeconds: 0 }), port);
        await request(`${rs[1]!.url}/standin/kill-engine`, { method: "POST" });
        const killedAt = performance.now();
        const samples: Sample[] = [];
        let stop = false;
        const driving = drive(lb.url, samples, () => stop);
        await sleep(6000);
        stop = true;
        await driving;
        const late = samples.filter((s) => s.at - killedAt > 5000);
        expect(late.some((s) => s.replica === "r1" && s.status === 500)).toBe(true);
    });
});
