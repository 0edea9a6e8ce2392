/**
 * The whole fleet, deployed for real: `pulumi up` against the Docker engine, the stand-in as the vLLM
 * image (built through the program's vllmBuild path), nginx on a local Debian base. Changes are made
 * under a steady streamed load, and what a user would notice is counted at each step.
 */
import * as http from "http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { E2eStack, checkDockerPrerequisites, docker, followLogs, leftovers, removeLeftovers } from "./harness";
import { API_KEY, AUTH, LoadCounts, SteadyLoad, chunks, streamCompletion } from "./load";
import { sleep, waitFor } from "../support";

const LB_PORT = 18000;
const MODEL = "tiny-chat";
const SECRET = "hf_e2e_secret_value_never_in_state";

/** Figures for the closing report, printed at the end whatever happens. */
const report: string[] = [];
function note(line: string): void {
    report.push(line);
    console.log(`[e2e] ${line}`);
}
function describeCounts(step: string, c: LoadCounts): string {
    return `${step}: sent ${c.sent}, completed ${c.completed}, failed ${c.failed}, cut ${c.cut}, by replica ${JSON.stringify(c.byReplica)}`;
}

interface ContainerState {
    id: string;
    startedAt: string;
    health: string;
    hostname: string;
    restarts: number;
}

async function inspect(name: string): Promise<ContainerState> {
    const [id, startedAt, health, hostname, restarts] = (
        await docker(["inspect", "-f", "{{.Id}} {{.State.StartedAt}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}} {{.Config.Hostname}} {{.RestartCount}}", name])
    ).split(" ");
    return { id, startedAt, health, hostname, restarts: Number(restarts) };
}

function get(path: string, headers: http.OutgoingHttpHeaders = AUTH): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
    return new Promise((resolve, reject) => {
        http.get({ host: "127.0.0.1", port: LB_PORT, path, agent: false, headers }, (res) => {
            let body = "";
            res.on("data", (d) => (body += d));
            res.on("end", () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
        }).on("error", reject);
    });
}

function completion(): Promise<{ status: number; body: any; replica: string }> {
    return new Promise((resolve, reject) => {
        const payload = JSON.stringify({ model: MODEL, prompt: "Hello", max_tokens: 8 });
        const req = http.request(
            { host: "127.0.0.1", port: LB_PORT, path: "/v1/completions", method: "POST", agent: false, headers: { ...AUTH, "content-type": "application/json" } },
            (res) => {
                let body = "";
                res.on("data", (d) => (body += d));
                res.on("end", () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(body), replica: String(res.headers["x-replica-id"]) }));
            },
        );
        req.on("error", reject);
        req.end(payload);
    });
}

describe("e2e: pulumi up, change under load, crash, no-op up, destroy", () => {
    let stack: E2eStack;
    let load: SteadyLoad | undefined;
    let destroyed = false;

    beforeAll(async () => {
        checkDockerPrerequisites();
        await removeLeftovers();
        stack = new E2eStack();
        await stack.init();
        await stack.setConfig("hfToken", SECRET, true);
        await stack.setConfig("apiKey", API_KEY, true);
    });

    afterAll(async () => {
        await load?.stop();
        if (stack && !destroyed) {
            await stack.pulumi(["destroy", "--yes", "--skip-preview"]).catch((error) => console.error(String(error)));
        }
        await removeLeftovers();
        console.log(`\n[e2e] summary\n${report.map((l) => `  ${l}`).join("\n")}`);
    });

    it("deploys 2 healthy replicas and the balancer; `up` returns only when every replica is healthy", async () => {
        const { seconds } = await stack.up();
        note(`pulumi up (create, 2 replicas, images built): ${seconds.toFixed(1)}s`);

        // No polling: healthy the moment `up` returned.
        for (const name of ["e2e-vllm0", "e2e-vllm1", "e2e-nginx-lb"]) {
            expect((await inspect(name)).health, name).toBe("healthy");
        }
        const outputs = await stack.outputs();
        expect(outputs.endpoint).toBe(`http://127.0.0.1:${LB_PORT}`);
        expect((await get("/nginx-health")).body.trim()).toBe(`ok ${outputs.configId}`);
    });

    it("built the replica image through vllmBuild with the proxy build args", async () => {
        const history = await docker(["history", "--no-trunc", "--format", "{{.CreatedBy}}", "vllm-nginx/e2e-vllm:latest"]);
        expect(history).toContain("http_proxy=http://proxy.invalid:3128");
        expect(history).toContain("no_proxy=deb.debian.org,security.debian.org,localhost,127.0.0.1");
        const env = await docker(["inspect", "-f", "{{json .Config.Env}}", "e2e-vllm0"]);
        expect(env).toContain("HTTPS_PROXY=http://proxy.invalid:3128");
    });

    it("keeps the HF token and the API key out of the state in plain text, and hands them to the replicas", async () => {
        const state = stack.stateText();
        expect(state.length).toBeGreaterThan(1000);
        expect(state).not.toContain(SECRET);
        expect(state).not.toContain(API_KEY);
        const env = await docker(["inspect", "-f", "{{json .Config.Env}}", "e2e-vllm1"]);
        expect(env).toContain(`HF_TOKEN=${SECRET}`);
        expect(env).toContain(`VLLM_API_KEY=${API_KEY}`);
    });

    it("guards /v1 with the API key through the balancer, and leaves the balancer's health open", async () => {
        expect((await get("/v1/models", {})).status).toBe(401);
        expect((await get("/v1/models", { authorization: "Bearer wrong" })).status).toBe(401);
        expect((await get("/v1/models")).status).toBe(200);
        expect((await get("/nginx-health", {})).status).toBe(200);
    });

    it("serves a streamed and a plain completion through the balancer, from both replicas", async () => {
        const stream = await streamCompletion(LB_PORT, MODEL, 16);
        expect(stream).toMatchObject({ status: 200, done: true });
        expect(chunks(stream)).toBeGreaterThanOrEqual(16);

        const replicas = new Set<string>();
        for (let i = 0; i < 8; i++) {
            const plain = await completion();
            expect(plain.status).toBe(200);
            expect(plain.body.choices[0].text.length).toBeGreaterThan(0);
            replicas.add(plain.replica);
        }
        const hostnames = await Promise.all(["e2e-vllm0", "e2e-vllm1"].map(async (n) => (await inspect(n)).hostname));
        expect([...replicas].sort()).toEqual(hostnames.sort());
    });

    it("scales 2 → 3 → 2 and changes the balancer under streaming load: nothing failed, no stream cut, nginx reloaded in place", async () => {
        const nginxBefore = await inspect("e2e-nginx-lb");
        load = new SteadyLoad(LB_PORT, MODEL, 6, 100, 900);
        load.start();
        await sleep(3000);
        note(describeCounts("load before changes (3 s)", load.take()));

        await stack.setConfig("replicas", "3");
        const up3 = await stack.up();
        note(`pulumi up (2 → 3 replicas): ${up3.seconds.toFixed(1)}s`);
        await sleep(4000);
        const vllm2 = (await inspect("e2e-vllm2")).hostname;
        const during3 = load.take();
        note(describeCounts("during and after 2 → 3", during3));
        expect(during3.byReplica[vllm2], "the new replica received traffic").toBeGreaterThan(0);

        await stack.setConfig("replicas", "2");
        const removedLogs = followLogs("e2e-vllm2");
        const removedAddress = (await docker(["inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", "e2e-vllm2"])) + ":8000";
        const scaleDownStarted = new Date().toISOString();
        const up2 = await stack.up();
        note(`pulumi up (3 → 2 replicas): ${up2.seconds.toFixed(1)}s`);
        expect(await docker(["ps", "-a", "--filter", "name=e2e-vllm2", "--format", "{{.Names}}"])).toBe("");
        // The removed replica's own account of its stop: what it was serving at SIGTERM, that it finished
        // it, and that nginx sent it nothing new once it had been told to stop.
        const stopLog = await removedLogs.done;
        const atStop = /SIGTERM received: shutting down \(grace \d+s for (\d+) in-flight/.exec(stopLog);
        const afterStop = /Application shutdown complete\. (\d+) request\(s\) arrived after SIGTERM/.exec(stopLog);
        expect(atStop, stopLog).not.toBeNull();
        expect(afterStop, stopLog).not.toBeNull();
        note(`removed replica at SIGTERM: ${atStop![1]} in flight, all finished; ${afterStop![1]} arrived after SIGTERM`);
        expect(stopLog).not.toContain("shutdown timeout reached");
        expect(Number(afterStop![1])).toBe(0);
        // Had nginx still routed to it once it stopped, its error log would show refused connections to
        // it, and its access log attempts that went on to another replica.
        await sleep(2000);
        const nginxLog = await docker(["logs", "--since", scaleDownStarted, "e2e-nginx-lb"]);
        const triedAfterStop = nginxLog.split("\n").filter((l) => l.includes(removedAddress) && (l.includes("failed") || l.includes(`${removedAddress}, `)));
        note(`nginx lines about failed attempts on the removed replica (${removedAddress}) since the scale-down began: ${triedAfterStop.length}`);
        expect(triedAfterStop).toEqual([]);
        await sleep(2000);
        const during2 = load.take();
        note(describeCounts("during and after 3 → 2", during2));

        await stack.setConfig("balancer", "round_robin");
        const upRr = await stack.up();
        note(`pulumi up (balancer least_conn → round_robin): ${upRr.seconds.toFixed(1)}s`);
        await sleep(3000);
        const final = await load.stop();
        load = undefined;
        note(describeCounts("during and after the balancer change", final));

        for (const counts of [during3, during2, final]) {
            expect(counts.errors).toEqual([]);
            expect(counts.failed).toBe(0);
            expect(counts.cut).toBe(0);
        }
        const nginxAfter = await inspect("e2e-nginx-lb");
        expect(nginxAfter.id, "nginx was not replaced").toBe(nginxBefore.id);
        expect(nginxAfter.startedAt, "nginx was not restarted").toBe(nginxBefore.startedAt);
        expect((await get("/nginx-health")).body.trim()).toBe(`ok ${(await stack.outputs()).configId}`);
    });

    it("survives a replica crash: others serve what had not begun, and the replica is back in rotation once restarted", async () => {
        const victim = await inspect("e2e-vllm1");
        const pid = await docker(["inspect", "-f", "{{.State.Pid}}", "e2e-vllm1"]);
        load = new SteadyLoad(LB_PORT, MODEL, 6, 100, 300);
        load.start();
        await sleep(3000);
        note(describeCounts("load before the crash (3 s)", load.take()));

        // SIGKILL from the host, as a crash would: Docker restarts it (a `docker kill` would count as a manual stop).
        process.kill(Number(pid), "SIGKILL");
        const crashedAt = Date.now();
        const back = await waitFor(
            "e2e-vllm1 to be restarted and healthy",
            180_000,
            async () => {
                const state = await inspect("e2e-vllm1").catch(() => undefined);
                return state && state.restarts > victim.restarts && state.health === "healthy" ? state : undefined;
            },
            500,
        );
        note(`replica restarted by Docker and healthy after ${((Date.now() - crashedAt) / 1000).toFixed(1)}s (restart count ${back.restarts})`);
        const duringCrash = load.take();
        note(describeCounts("from the crash until healthy again", duringCrash));
        for (const error of duringCrash.errors) {
            note(`  ${error}`);
        }

        // Back in rotation once nginx's fail_timeout (5 s in the e2e stack) has passed.
        await sleep(8000);
        load.take();
        await sleep(6000);
        const after = await load.stop();
        load = undefined;
        note(describeCounts("after the restart", after));

        expect(duringCrash.failed, "requests that had not begun were served by the other replica").toBe(0);
        expect(duringCrash.cut, "only streams the crashed replica was serving are cut").toBeLessThanOrEqual(6);
        expect(after.failed + after.cut).toBe(0);
        expect(after.byReplica[back.hostname], "the restarted replica receives traffic again").toBeGreaterThan(0);
    });

    it("reports no changes on a second `up` with nothing changed", async () => {
        const { seconds, output } = await stack.up(["--expect-no-changes"]);
        note(`pulumi up (no change): ${seconds.toFixed(1)}s`);
        expect(output).not.toMatch(/[1-9]\d* (to )?(create|update|replace|delete)/);
    });

    it("destroys everything: no container, network or volume of the stack is left", async () => {
        const started = Date.now();
        await stack.pulumi(["destroy", "--yes", "--skip-preview"]);
        destroyed = true;
        note(`pulumi destroy: ${((Date.now() - started) / 1000).toFixed(1)}s`);
        expect(await leftovers()).toEqual([]);
    });
});
