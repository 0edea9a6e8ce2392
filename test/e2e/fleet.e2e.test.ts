/**
 * The whole fleet, deployed for real: `pulumi up` against the Docker engine, the stand-in as the vLLM
 * image (built through the program's vllmBuild path, from a copy of its folder this test may change),
 * nginx on a local Debian base. One fleet of 3 replicas is changed under a steady streamed load, step by
 * step, and what a user would notice is counted at each step. The stand-ins behave as vLLM does by
 * default: they abort what they serve on SIGTERM and exit when their engine dies.
 */
import { X509Certificate } from "crypto";
import * as fs from "fs";
import * as http2 from "http2";
import * as os from "os";
import * as path from "path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PrometheusApi, idleCloseMs, request, requireDocker, sleep, stream, waitFor, type Response } from "../support";
import { dashboardQueries } from "../../components/monitoring/dashboard";
import { PLAIN_KEY_REFUSAL } from "../../components/edge/render";
import { execFile } from "child_process";
import { BASE_IMAGE, E2eStack, asOneModel, REPO, RotationSampler, balancerCertificate, docker, followLogs, leftovers, removeLeftovers, rotation } from "./harness";
import { ALICE_KEY, API_KEY, BOB_KEY, LoadCounts, SteadyLoad, chunks, streamCompletion, type Front } from "./load";

/** HTTPS, the public port. */
const LB_PORT = 18000;
/** Plain HTTP: redirected to HTTPS, and the health endpoint the rollout scripts and this test read. */
const HEALTH_PORT = 18080;
const PROMETHEUS = new PrometheusApi("http://127.0.0.1:19090");
const MODEL = "tiny-chat";
const SECRET = "hf_e2e_secret_value_never_in_state";
const BASE_ARGS = ["--load-seconds", "5", "--itl-ms", "20"];

/** Figures for the closing report, printed at the end whatever happens. */
const report: string[] = [];
function note(line: string): void {
    report.push(line);
    console.log(`[e2e] ${line}`);
}
function describeCounts(step: string, c: LoadCounts): string {
    return `${step}: sent ${c.sent}, completed ${c.completed}, failed ${c.failed}, cut ${c.cut}, error events ${c.errored}, by replica ${JSON.stringify(c.byReplica)}`;
}
function expectNothingLost(c: LoadCounts): void {
    expect(c.errors).toEqual([]);
    expect(c.failed).toBe(0);
    expect(c.cut).toBe(0);
    expect(c.errored).toBe(0);
}

interface ContainerState {
    id: string;
    startedAt: string;
    health: string;
    hostname: string;
    restarts: number;
    status: string;
}

async function inspect(name: string): Promise<ContainerState> {
    const [id, startedAt, health, hostname, restarts, status] = (
        await docker(["inspect", "-f", "{{.Id}} {{.State.StartedAt}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}} {{.Config.Hostname}} {{.RestartCount}} {{.State.Status}}", name])
    ).split(" ");
    return { id, startedAt, health, hostname, restarts: Number(restarts), status };
}

async function args(container: string): Promise<string[]> {
    return JSON.parse(await docker(["inspect", "-f", "{{json .Args}}", container])) as string[];
}

/** What clients send the balancer: alice's key, over HTTPS, trusting the balancer's self-signed certificate. */
let front: Front = { url: `https://127.0.0.1:${LB_PORT}`, headers: { authorization: `Bearer ${ALICE_KEY}` } };
const bearer = (key: string) => ({ authorization: `Bearer ${key}` });

/** A request through the front door (alice's key unless told otherwise). */
function call(pathname: string, headers: Record<string, string> = front.headers, body?: unknown): Promise<Response> {
    return request(`${front.url}${pathname}`, { headers, body, ca: front.ca, agent: false, timeoutMs: 30_000 });
}

/** A replica's own port (plain HTTP, the loopback), as the rollout scripts and operators reach it. */
function direct(url: string, body?: unknown): Promise<Response> {
    return request(url, { headers: { authorization: `Bearer ${API_KEY}` }, body, agent: false, timeoutMs: 10_000 });
}

/** One request over HTTP/2 through the front door; the protocol ALPN chose, and the answer. */
function http2Get(pathname: string, key: string): Promise<{ protocol: string | false; status: number; body: string }> {
    return new Promise((resolve, reject) => {
        const session = http2.connect(front.url, { ca: front.ca });
        session.on("error", reject);
        const req = session.request({ ":path": pathname, authorization: `Bearer ${key}` });
        let status = 0;
        let body = "";
        req.on("response", (headers) => (status = Number(headers[":status"])));
        req.on("data", (d: Buffer) => (body += d.toString()));
        req.on("end", () => {
            const protocol = session.alpnProtocol ?? false;
            session.close();
            resolve({ protocol, status, body });
        });
        req.on("error", reject);
        req.end();
    });
}

describe("e2e: one fleet of 3 replicas, changed under load, then destroyed", () => {
    let stack: E2eStack;
    let load: SteadyLoad | undefined;
    let destroyed = false;
    let context: string;
    let outputs: Record<string, any> = {};
    /** What the first `pulumi up` printed. */
    let upOutput = "";
    const replicaContainers = () => (outputs.replicas as Array<{ name: string; container: string; url: string }>).map((r) => r.container);

    /** `pulumi up` under load, sampling nginx's rotation every 200 ms; returns the load's counts and the sampler. */
    async function upUnderLoad(step: string, extra: string[] = [], expectFailure = false) {
        const sampler = new RotationSampler(HEALTH_PORT).start();
        load = new SteadyLoad(front, MODEL, 6, 100, 900);
        load.start();
        await sleep(2000);
        const started = Date.now();
        let error: Error | undefined;
        const output = await stack.up(extra).then(
            (r) => r.output,
            (e: Error) => ((error = e), e.message),
        );
        const seconds = (Date.now() - started) / 1000;
        await sleep(3000);
        const counts = await load.stop();
        load = undefined;
        sampler.stop();
        note(`pulumi up (${step}): ${seconds.toFixed(1)}s${error ? " (failed, as it should)" : ""}`);
        note(describeCounts(`  under load during ${step}`, counts));
        note(`  rotation sampled every 200 ms (${sampler.samples} samples): fewest in rotation ${sampler.fewest}; changes: ${sampler.changes.join(" | ")}`);
        if (expectFailure !== (error !== undefined)) {
            throw error ?? new Error(`pulumi up (${step}) succeeded but should have failed:\n${output}`);
        }
        outputs = await stack.outputs();
        return { counts, sampler, output, seconds };
    }

    beforeAll(async () => {
        requireDocker(BASE_IMAGE);
        await removeLeftovers();
        stack = new E2eStack();
        await stack.init();
        await stack.setConfig("hfToken", SECRET, true);
        await stack.setConfig("apiKey", API_KEY, true);
        // The replica image is built from a copy of the stand-in's folder, so a step can change its content.
        context = fs.mkdtempSync(path.join(os.tmpdir(), "vllm-nginx-e2e-standin-"));
        fs.cpSync(path.join(REPO, "test", "standin"), context, { recursive: true });
        stack.editConfig((c) => {
            asOneModel(c);
            c.replicas = "3";
            (c.vllmBuild as Record<string, unknown>).context = context;
        });
    });

    afterAll(async () => {
        await load?.stop();
        if (stack && !destroyed) {
            await stack.pulumi(["destroy", "--yes", "--skip-preview"]).catch((error) => console.error(String(error)));
        }
        await removeLeftovers();
        fs.rmSync(context, { recursive: true, force: true });
        console.log(`\n[e2e] summary\n${report.map((l) => `  ${l}`).join("\n")}`);
    });

    it("deploys 3 replicas and the balancer; `up` returns once every replica serves /health and is in nginx's rotation", async () => {
        const { seconds, output } = await stack.up();
        note(`pulumi up (create, 3 replicas, images built): ${seconds.toFixed(1)}s`);
        outputs = await stack.outputs();
        expect(outputs.endpoint).toBe(`https://127.0.0.1:${LB_PORT}`);
        front = { ...front, url: outputs.endpoint, ca: await balancerCertificate(outputs.balancerContainer) };
        upOutput = output;
        expect(replicaContainers()).toEqual(["e2e-vllm0", "e2e-vllm1", "e2e-vllm2"]);
        // No polling: in rotation the moment `up` returned.
        expect(await rotation(HEALTH_PORT)).toEqual({ id: outputs.configId, in: ["vllm0", "vllm1", "vllm2"], out: [] });
        for (const name of replicaContainers()) {
            const state = await inspect(name);
            expect(state.status, name).toBe("running");
            expect((await direct(`${outputs.replicas.find((r: any) => r.container === name).url}/health`)).status, name).toBe(200);
        }
        // Docker's own healthcheck of the balancer agrees within its first interval.
        await waitFor("the balancer's Docker healthcheck", 30_000, async () => ((await inspect(outputs.balancerContainer)).health === "healthy" ? true : undefined), 500);
        expect(output).toContain("serves /health and is in nginx's rotation");
        // nginx runs lbWorkers (2) workers with room for 16384 connections each, whatever this host's CPU count.
        const processes = await docker(["exec", outputs.balancerContainer, "sh", "-c", 'for p in /proc/[0-9]*; do tr "\\0" " " <"$p/cmdline"; echo; done']);
        expect(processes.split("\n").filter((l) => l.startsWith("nginx: worker process"))).toHaveLength(2);
        expect(await docker(["exec", outputs.balancerContainer, "nginx", "-T"])).toMatch(/^\s*worker_connections 16384;$/m);
    });

    it("built the replica image through vllmBuild with the proxy build args", async () => {
        const history = await docker(["history", "--no-trunc", "--format", "{{.CreatedBy}}", "vllm-nginx/e2e-vllm:latest"]);
        expect(history).toContain("http_proxy=http://proxy.invalid:3128");
        expect(history).toContain("no_proxy=deb.debian.org,security.debian.org,localhost,127.0.0.1");
        expect(await docker(["inspect", "-f", "{{json .Config.Env}}", "e2e-vllm0"])).toContain("HTTPS_PROXY=http://proxy.invalid:3128");
    });

    // nginx closes an idle upstream connection after 4 s (UPSTREAM_IDLE_SECONDS), before vLLM's uvicorn (5 s):
    // never the other way round, or a POST written on a connection the replica is closing becomes a 502.
    it("a replica in its image closes an idle keep-alive connection 5 s after its last answer, as uvicorn does: after nginx's 4 s", async () => {
        const closedAfter = await idleCloseMs(18081);
        note(`e2e-vllm0 closed an idle keep-alive connection ${closedAfter === undefined ? "never (15 s cap)" : `${(closedAfter / 1000).toFixed(2)} s`} after its answer`);
        expect(closedAfter).toBeGreaterThanOrEqual(4900);
        expect(closedAfter).toBeLessThan(7000);
    });

    it("keeps the HF token, the API key, the client keys and the TLS key out of the state, outputs, output, containers, logs and images, and hands each only where it belongs", async () => {
        // Requests with each key first, so that the logs have had the chance to show them.
        expect((await call("/v1/models")).status).toBe(200);
        expect((await call("/v1/models", bearer(BOB_KEY))).status).toBe(200);
        const state = stack.stateText();
        expect(state.length).toBeGreaterThan(1000);
        const places: Record<string, string> = {
            state,
            "pulumi stack export": await stack.exportState(),
            // Even shown: no output holds a secret.
            "pulumi stack output --json --show-secrets": JSON.stringify(await stack.outputs(true)),
            "the first pulumi up's output": upOutput,
            "the balancer's docker inspect": await docker(["inspect", "e2e-nginx-lb"]),
            "the balancer's log": await docker(["logs", "e2e-nginx-lb"]).catch((e: Error) => e.message),
            "the balancer image's history": await docker(["history", "--no-trunc", "vllm-nginx/e2e-nginx-lb:latest"]),
            "a replica's log": await docker(["logs", "e2e-vllm0"]).catch((e: Error) => e.message),
        };
        for (const [where, text] of Object.entries(places)) {
            for (const secret of [SECRET, API_KEY, ALICE_KEY, BOB_KEY, "PRIVATE KEY"]) {
                expect(text.includes(secret), `${secret.slice(0, 12)}... in ${where}`).toBe(false);
            }
        }
        expect(outputs.nginxConfig).toContain("include /etc/nginx/vllm-nginx/edge/client-keys.map;");
        // The replicas get their own key and the token; the balancer holds the client keys in files only root reads.
        const env = await docker(["inspect", "-f", "{{json .Config.Env}}", "e2e-vllm1"]);
        expect(env).toContain(`HF_TOKEN=${SECRET}`);
        expect(env).toContain(`VLLM_API_KEY=${API_KEY}`);
        expect(await docker(["exec", "e2e-nginx-lb", "stat", "-c", "%a %U %n", "/etc/nginx/vllm-nginx/edge", "/etc/nginx/vllm-nginx/edge/client-keys.map", "/etc/nginx/vllm-nginx/edge/tls.key"])).toBe(
            ["700 root /etc/nginx/vllm-nginx/edge", "600 root /etc/nginx/vllm-nginx/edge/client-keys.map", "600 root /etc/nginx/vllm-nginx/edge/tls.key"].join("\n"),
        );
        expect(await docker(["exec", "e2e-nginx-lb", "grep", "-c", "bearer", "/etc/nginx/vllm-nginx/edge/client-keys.map"])).toBe("2");
    });

    it("the front door: client keys before any replica, limits per key, HTTPS with HTTP/2, plain HTTP redirected, the operator paths refused", async () => {
        const unauthorized = await call("/v1/models", {});
        expect([unauthorized.status, unauthorized.json]).toEqual([401, { error: "Unauthorized" }]);
        expect((await call("/v1/models", bearer("wrong-key-0123456789"))).status).toBe(401);
        // The replicas' own key is not a client key: only the balancer sends it, in place of the client's.
        expect((await call("/v1/models", bearer(API_KEY))).status).toBe(401);
        expect((await call("/v1/models")).status).toBe(200);
        expect((await call("/nginx-health", {})).status).toBe(200);
        expect((await call("/metrics")).status).toBe(404);
        expect((await call("/reset_prefix_cache", front.headers, {})).status).toBe(404);
        expect(await http2Get("/v1/models", ALICE_KEY)).toMatchObject({ protocol: "h2", status: 200 });
        const plain = await request(`http://127.0.0.1:${HEALTH_PORT}/v1/models`, { agent: false });
        expect([plain.status, plain.headers.location]).toEqual([308, `https://127.0.0.1:${LB_PORT}/v1/models`]);
        // With a key, plain HTTP is refused, not redirected: a client that followed would send it in clear text.
        const plainWithKey = await request(`http://127.0.0.1:${HEALTH_PORT}/v1/models`, { headers: front.headers, agent: false });
        expect([plainWithKey.status, plainWithKey.headers.location, plainWithKey.json.error.message]).toEqual([400, undefined, PLAIN_KEY_REFUSAL]);
        // Paths the balancer does not forward, with a key: nginx's 404.
        for (const p of ["/v1/load_lora_adapter", "/load", "/openapi.json"]) {
            expect((await call(p)).status, p).toBe(404);
        }
        // bob: 2 a second with a burst of 2, one at a time. Ten at once: nginx answers what is over at once.
        const burst = await Promise.all(Array.from({ length: 10 }, () => call("/v1/models", bearer(BOB_KEY))));
        const limited = burst.filter((r) => r.status === 429);
        note(`front door: bob's 10 requests at once: ${burst.filter((r) => r.status === 200).length} served, ${limited.length} answered 429`);
        expect(limited.length).toBeGreaterThanOrEqual(5);
        expect(limited[0]!.headers["retry-after"]).toBeDefined();
        expect(limited[0]!.json.error.type).toBe("RateLimitError");
        expect(burst.filter((r) => r.status !== 200 && r.status !== 429)).toEqual([]);
        // One stream at a time: a second request while bob's stream runs is refused; alice is untouched.
        await sleep(1500);
        const long = stream(`${front.url}/v1/chat/completions`, { model: MODEL, stream: true, max_tokens: 100, messages: [{ role: "user", content: "long" }] }, { headers: bearer(BOB_KEY), ca: front.ca, agent: false });
        await long.firstEvent;
        await sleep(600);
        const second = await call("/v1/models", bearer(BOB_KEY));
        expect(second.status).toBe(429);
        expect(second.json.error.message).toContain("bob");
        expect((await call("/v1/models")).status).toBe(200);
        expect(await long.result).toMatchObject({ status: 200, done: true });
    });

    it("serves streamed and plain completions through the balancer, from every replica", async () => {
        const streamed = await streamCompletion(front, MODEL, 16);
        expect(streamed).toMatchObject({ status: 200, done: true });
        expect(chunks(streamed)).toBeGreaterThanOrEqual(16);
        const replicas = new Set<string>();
        for (let i = 0; i < 12; i++) {
            const plain = await call("/v1/completions", front.headers, { model: MODEL, prompt: "Hello", max_tokens: 8 });
            expect(plain.status).toBe(200);
            replicas.add(String(plain.headers["x-replica-id"]));
        }
        const hostnames = await Promise.all(replicaContainers().map(async (n) => (await inspect(n)).hostname));
        expect([...replicas].sort()).toEqual(hostnames.sort());
    });

    it("scales 3 → 4 → 3 under load: the removed replica leaves rotation and is drained before its SIGTERM, which then aborts nothing", async () => {
        const nginxBefore = await inspect("e2e-nginx-lb");
        const prometheusBefore = await inspect("e2e-prometheus");
        const samplesBefore = await PROMETHEUS.waitForValues('count_over_time(vllm:num_requests_running{replica="vllm0"}[15m])', 60_000);
        stack.editConfig((c) => (c.replicas = "4"));
        const up = await upUnderLoad("3 → 4 replicas");
        expectNothingLost(up.counts);
        expect(up.sampler.fewest).toBeGreaterThanOrEqual(3);
        expect(replicaContainers()).toHaveLength(4);
        expect(up.counts.byReplica[(await inspect("e2e-vllm3")).hostname], "the new replica received traffic").toBeGreaterThan(0);
        // Prometheus scrapes the new replica after a reload, not a restart, and keeps what it had.
        await waitFor("Prometheus to scrape vllm3", 60_000, async () => (await PROMETHEUS.targets())["vllm/vllm3"] === "up", 1000);
        const prometheusAfter = await inspect("e2e-prometheus");
        expect(prometheusAfter.startedAt, "Prometheus was not restarted").toBe(prometheusBefore.startedAt);
        const samplesAfter = await PROMETHEUS.query('count_over_time(vllm:num_requests_running{replica="vllm0"}[15m])');
        expect(samplesBefore[0]?.value ?? 0).toBeGreaterThan(0);
        expect(samplesAfter[0]!.value, "earlier samples kept").toBeGreaterThanOrEqual(samplesBefore[0]!.value);
        note(`  Prometheus: vllm3 scraped after the scale-up; vllm0's samples ${samplesBefore[0]!.value} before, ${samplesAfter[0]!.value} after; Prometheus not restarted`);

        stack.editConfig((c) => (c.replicas = "3"));
        const removedLogs = followLogs("e2e-vllm3");
        const down = await upUnderLoad("4 → 3 replicas");
        expectNothingLost(down.counts);
        expect(down.sampler.fewest).toBeGreaterThanOrEqual(3);
        expect(await docker(["ps", "-a", "--filter", "name=e2e-vllm3", "--format", "{{.Names}}"])).toBe("");
        // The removed replica's own account: what it was serving at SIGTERM (vLLM aborts it), and what
        // arrived after. The balancer drained it first, so both are 0.
        const stopLog = await removedLogs.done;
        const atStop = /SIGTERM received: shutting down \(grace 0s for (\d+) in-flight request\(s\)/.exec(stopLog);
        const afterStop = /Application shutdown complete\. (\d+) request\(s\) arrived after SIGTERM/.exec(stopLog);
        expect(atStop, stopLog).not.toBeNull();
        note(`  removed replica vllm3 at SIGTERM: ${atStop![1]} in flight (aborted by a vLLM-like SIGTERM); ${afterStop?.[1] ?? "?"} arrived after SIGTERM`);
        expect(Number(atStop![1])).toBe(0);
        expect(down.output).toMatch(/vllm3: drained/);

        const nginxAfter = await inspect("e2e-nginx-lb");
        expect(nginxAfter.id, "nginx was not replaced").toBe(nginxBefore.id);
        expect(nginxAfter.startedAt, "nginx was not restarted").toBe(nginxBefore.startedAt);
    });

    it("rolls a change of vllmArgs one replica at a time: nothing lost, never fewer than 2 of 3 in rotation, and every replica runs the new setting", async () => {
        stack.editConfig((c) => (c.vllmArgs = [...BASE_ARGS, "--max-num-seqs", "64"]));
        const preview = await stack.pulumi(["preview"]);
        expect(preview).toContain("rollout of 3 replicas: vllm0, vllm1, vllm2 are replaced in place, one at a time, in that order");
        const roll = await upUnderLoad("vllmArgs rollout");
        expectNothingLost(roll.counts);
        expect(roll.sampler.unanswered).toBe(0);
        expect(roll.sampler.fewest).toBe(2);
        expect(roll.sampler.changes.map((c) => c.replace(/^\S+ /, ""))).toEqual([
            "in=vllm0,vllm1,vllm2 out=",
            "in=vllm1,vllm2 out=vllm0",
            "in=vllm0,vllm1,vllm2 out=",
            "in=vllm0,vllm2 out=vllm1",
            "in=vllm0,vllm1,vllm2 out=",
            "in=vllm0,vllm1 out=vllm2",
            "in=vllm0,vllm1,vllm2 out=",
        ]);
        for (const container of replicaContainers()) {
            expect(await args(container), container).toEqual(expect.arrayContaining(["--max-num-seqs", "64"]));
        }
    });

    it("monitoring: Prometheus has every replica and nginx up, the recording rules have values, and every dashboard query returns data", async () => {
        const targets = await PROMETHEUS.targets();
        expect(targets).toMatchObject({ "vllm/vllm0": "up", "vllm/vllm1": "up", "vllm/vllm2": "up" });
        expect(Object.entries(targets).filter(([job]) => job.startsWith("nginx/")).map(([, health]) => health)).toEqual(["up"]);
        // Traffic in the last minute, for the rate windows.
        load = new SteadyLoad(front, MODEL, 6, 40, 60);
        load.start();
        await sleep(15_000);
        const empty: string[] = [];
        for (const q of dashboardQueries()) {
            const values = await PROMETHEUS.waitForValues(q.expr, 60_000).catch(() => []);
            if (values.length === 0) {
                empty.push(`${q.panel}: ${q.expr}`);
            }
        }
        for (const rule of ["replica:vllm_requests:rate1m", "fleet:vllm_requests:rate1m", "replica:vllm_ttft_seconds:p50_1m", "fleet:vllm_generation_tokens:rate1m"]) {
            expect((await PROMETHEUS.waitForValues(rule, 60_000)).length, rule).toBeGreaterThan(0);
        }
        expectNothingLost(await load.stop());
        load = undefined;
        note(`  monitoring: ${dashboardQueries().length} dashboard queries, ${dashboardQueries().length - empty.length} returned data`);
        expect(empty).toEqual([]);
        // The status command, on the running fleet.
        const outputsFile = path.join(stack.stateDir, "outputs.json");
        fs.writeFileSync(outputsFile, JSON.stringify(outputs));
        const caFile = path.join(stack.stateDir, "balancer.crt");
        fs.writeFileSync(caFile, front.ca!);
        const status = await new Promise<string>((resolve, reject) =>
            execFile(path.join(REPO, "scripts", "status"), ["e2e", "--outputs", outputsFile, "--ca", caFile], { encoding: "utf8" }, (error, stdout, stderr) => (error ? reject(new Error(`${error.message}\n${stdout}${stderr}`)) : resolve(stdout))),
        );
        note(`  scripts/status e2e:\n${status.replace(/^/gm, "      ")}`);
        for (const name of ["vllm0", "vllm1", "vllm2"]) {
            expect(status).toMatch(new RegExp(`^${name}\\s+in\\s+healthy`, "m"));
        }
    });

    it("monitoring: a graph of time to first token per replica, as Prometheus shows it (docs/prometheus-ttft.png)", async () => {
        const chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find((c) => fs.existsSync(c));
        if (!chromium) {
            throw new Error("the screenshot needs Debian's chromium: apt-get install -y chromium");
        }
        const file = path.join(REPO, "docs", "prometheus-ttft.png");
        fs.mkdirSync(path.dirname(file), { recursive: true });
        const expr = encodeURIComponent("replica:vllm_ttft_seconds:p50_1m");
        const url = `http://127.0.0.1:19090/graph?g0.expr=${expr}&g0.tab=0&g0.range_input=15m`;
        await new Promise<void>((resolve, reject) =>
            execFile(
                chromium,
                ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync", `--user-data-dir=${fs.mkdtempSync(path.join(os.tmpdir(), "chromium-"))}`, "--hide-scrollbars", "--window-size=1400,900", "--virtual-time-budget=15000", `--screenshot=${file}`, url],
                { timeout: 120_000 },
                (error, _out, stderr) => (error ? reject(new Error(`${error.message}\n${stderr}`)) : resolve()),
            ),
        );
        const png = fs.readFileSync(file);
        expect(png.subarray(1, 4).toString()).toBe("PNG");
        // A rendered graph page, not a blank or an error page: width 1400 in the header, and real content.
        expect(png.readUInt32BE(16)).toBe(1400);
        expect(png.length).toBeGreaterThan(30_000);
        note(`  screenshot of Prometheus's graph of TTFT p50 per replica: docs/prometheus-ttft.png (${png.length} bytes)`);
    });

    it("rolls a change of the replica image's content (its build context) the same way", async () => {
        const before = await docker(["image", "inspect", "-f", "{{.Id}}", "vllm-nginx/e2e-vllm:latest"]);
        fs.appendFileSync(path.join(context, "server.mjs"), "\n// a change to the image's content\n");
        const roll = await upUnderLoad("image content rollout");
        expectNothingLost(roll.counts);
        expect(roll.sampler.fewest).toBe(2);
        const after = await docker(["image", "inspect", "-f", "{{.Id}}", "vllm-nginx/e2e-vllm:latest"]);
        expect(after).not.toBe(before);
        for (const container of replicaContainers()) {
            expect(await docker(["inspect", "-f", "{{.Image}}", container]), container).toBe(after);
        }
    });

    it("stops a broken change at the first replica, naming it with the end of its log; the others keep serving; the fix finishes the rollout", async () => {
        stack.editConfig((c) => (c.vllmArgs = [...BASE_ARGS, "--max-model-len", "banana"]));
        const broken = await upUnderLoad("a flag that makes the replica exit", [], true);
        expect(broken.output).toContain("replica vllm0 (container e2e-vllm0) did not become healthy");
        expect(broken.output).toContain("argument --max-model-len: invalid value: 'banana'");
        expectNothingLost(broken.counts);
        expect(broken.sampler.fewest).toBeGreaterThanOrEqual(2);
        expect((await rotation(HEALTH_PORT))?.out).toEqual(["vllm0"]);
        for (const container of ["e2e-vllm1", "e2e-vllm2"]) {
            expect(await args(container), `${container} keeps its previous settings`).not.toContain("banana");
        }

        stack.editConfig((c) => (c.vllmArgs = [...BASE_ARGS, "--max-num-seqs", "32"]));
        const fixed = await upUnderLoad("the fix");
        expectNothingLost(fixed.counts);
        expect(fixed.sampler.fewest).toBeGreaterThanOrEqual(2);
        expect(await rotation(HEALTH_PORT)).toMatchObject({ in: ["vllm0", "vllm1", "vllm2"], out: [] });
        for (const container of replicaContainers()) {
            expect(await args(container), container).toEqual(expect.arrayContaining(["--max-num-seqs", "32"]));
        }
    });

    it("monitoring: a replica stopped by hand fires VllmReplicaDown within its `for` window", async () => {
        await docker(["stop", "-t", "0", "e2e-vllm2"]);
        const stoppedAt = Date.now();
        const firing = await waitFor("VllmReplicaDown to fire for vllm2", 90_000, async () => ((await PROMETHEUS.firing("VllmReplicaDown")).some((a) => a.replica === "vllm2") ? true : undefined), 1000);
        const after = (Date.now() - stoppedAt) / 1000;
        note(`  monitoring: VllmReplicaDown fired ${after.toFixed(1)}s after vllm2 was stopped by hand (for: 15s, scrape every 5s)`);
        expect(firing).toBe(true);
        expect(after).toBeGreaterThanOrEqual(15);
        expect(after).toBeLessThan(45);
        await docker(["start", "e2e-vllm2"]);
        await waitFor("vllm2 to serve again", 60_000, async () => ((await direct("http://127.0.0.1:18083/health").catch(() => ({ status: 0 }))).status === 200 ? true : undefined), 500);
        await waitFor("VllmReplicaDown to clear", 60_000, async () => ((await PROMETHEUS.firing("VllmReplicaDown")).length === 0 ? true : undefined), 1000);
    });

    it("restarts a replica whose engine died (it exits, as vLLM does); requests that begin after it went away succeed", async () => {
        const victim = await inspect("e2e-vllm1");
        const url = outputs.replicas.find((r: any) => r.name === "vllm1").url as string;
        load = new SteadyLoad(front, MODEL, 6, 100, 300);
        load.start();
        await sleep(3000);
        note(describeCounts("load before the engine died (3 s)", load.take()));
        await direct(`${url}/standin/kill-engine`, {});
        const diedAt = Date.now();
        await waitFor("e2e-vllm1 to exit and be restarted by Docker", 30_000, async () => (await inspect("e2e-vllm1")).restarts > victim.restarts, 200);
        const goneAfter = (Date.now() - diedAt) / 1000;
        const untilGone = load.take();
        note(`engine death: the server exited and Docker restarted it after ${goneAfter.toFixed(1)}s`);
        note(describeCounts("  from the engine's death until the process went away", untilGone));
        const back = await waitFor("e2e-vllm1 back in service", 60_000, async () => ((await direct(`${url}/health`).catch(() => ({ status: 0 }))).status === 200 ? true : undefined), 500);
        expect(back).toBe(true);
        const whileRestarting = load.take();
        note(describeCounts("  while it restarted", whileRestarting));
        await sleep(8000);
        const after = await load.stop();
        load = undefined;
        note(describeCounts("  after the restart", after));
        // Until the process went away, the dead engine's server answered: what it served ended with vLLM's
        // error event, and requests nginx sent it in that window got its 500. Once it is gone, nothing fails.
        note(`  the dead replica answered ${untilGone.failed} request(s) with an error and ended ${untilGone.errored} stream(s) with an error event before it exited`);
        expect(untilGone.cut).toBe(0);
        expectNothingLost(whileRestarting);
        expectNothingLost(after);
        expect(after.byReplica[victim.hostname], "the restarted replica serves again").toBeGreaterThan(0);
    });

    it("rolls with a spare replica: the new settings start on the spare first, capacity never drops below 3, and the first old replica retires", async () => {
        stack.editConfig((c) => {
            c.rollout = { spareReplicas: "1" };
            c.vllmArgs = [...BASE_ARGS, "--max-num-seqs", "48"];
        });
        const preview = await stack.pulumi(["preview"]);
        expect(preview).toContain("rollout of 3 replicas: vllm3 starts on spare capacity with the new settings and must pass /health first; then vllm1, vllm2 are replaced in place, one at a time");
        expect(preview).toContain("vllm0 is drained and removed at the end. At least 3 of 3 stay in rotation.");
        const roll = await upUnderLoad("rollout with a spare replica");
        expectNothingLost(roll.counts);
        expect(roll.sampler.unanswered).toBe(0);
        expect(roll.sampler.fewest).toBeGreaterThanOrEqual(3);
        expect(outputs.replicas.map((r: { name: string }) => r.name)).toEqual(["vllm1", "vllm2", "vllm3"]);
        expect(outputs.rollout.active).toEqual(["vllm1", "vllm2", "vllm3"]);
        for (const container of replicaContainers()) {
            expect(await args(container), container).toEqual(expect.arrayContaining(["--max-num-seqs", "48"]));
        }
        expect(await docker(["ps", "-a", "--filter", "name=e2e-vllm0$", "--format", "{{.Names}}"])).toBe("");
    });

    it("rolls 4 replicas two at a time (rollout.maxUnavailable 2): each batch leaves rotation together, no batch waits out the grace period, nothing lost", async () => {
        stack.editConfig((c) => {
            c.replicas = "4";
            c.rollout = { maxUnavailable: "2" };
        });
        expectNothingLost((await upUnderLoad("3 → 4 replicas, maxUnavailable 2")).counts);
        expect(outputs.replicas).toHaveLength(4);
        stack.editConfig((c) => (c.vllmArgs = [...BASE_ARGS, "--max-num-seqs", "40"]));
        const roll = await upUnderLoad("vllmArgs rollout, 4 replicas, maxUnavailable 2");
        expectNothingLost(roll.counts);
        expect(roll.sampler.unanswered).toBe(0);
        // Both replicas of a batch leave together: never more out at once, and never one left behind in rotation.
        expect(roll.sampler.fewest).toBe(2);
        expect(roll.sampler.changes.some((c) => /out=vllm\d,vllm\d$/.test(c)), roll.sampler.changes.join(" | ")).toBe(true);
        // Each batch drains in seconds: none reaches stopGracePeriod (40 s) with requests still on it.
        expect(roll.output).not.toContain("grace period of");
        expect(roll.seconds).toBeLessThan(2 * 40);
        for (const container of replicaContainers()) {
            expect(await args(container), container).toEqual(expect.arrayContaining(["--max-num-seqs", "40"]));
        }
        stack.editConfig((c) => {
            c.replicas = "3";
            delete c.rollout;
        });
        expectNothingLost((await upUnderLoad("4 → 3 replicas")).counts);
        expect(outputs.replicas).toHaveLength(3);
    });

    it("an up stopped by Ctrl-C after a replica left rotation, the change reverted, then a plain up: every replica serves again, nothing lost", async () => {
        let previous: unknown;
        stack.editConfig((c) => {
            previous = c.vllmArgs;
            c.vllmArgs = [...BASE_ARGS, "--max-num-seqs", "36"];
        });
        const sampler = new RotationSampler(HEALTH_PORT).start();
        load = new SteadyLoad(front, MODEL, 6, 100, 900);
        load.start();
        await sleep(2000);
        const stopped = await stack.upInterrupted(async () => ((await rotation(HEALTH_PORT))?.out.length ?? 0) > 0);
        note(`pulumi up interrupted by SIGINT once a replica left rotation: exit ${stopped.code}; rotation ${JSON.stringify(await rotation(HEALTH_PORT))}`);
        expect(stopped.interrupted).toBe(true);
        expect(stopped.code).not.toBe(0);
        stack.editConfig((c) => (c.vllmArgs = previous));
        const { output, seconds } = await stack.up();
        await sleep(3000);
        const counts = await load.stop();
        load = undefined;
        sampler.stop();
        outputs = await stack.outputs();
        note(`pulumi up after the revert: ${seconds.toFixed(1)}s`);
        note(describeCounts("  under load from the interrupted up to the end of the next", counts));
        note(`  rotation: fewest ${sampler.fewest}; ${sampler.changes.join(" | ")}`);
        expectNothingLost(counts);
        expect((await rotation(HEALTH_PORT))?.in).toEqual(outputs.replicas.map((r: { name: string }) => r.name));
        // The gate finished its drain before Pulumi stopped, and nothing replaced the replica: with the change
        // reverted its settings match, so only the reconciliation at the end of the up brings it back.
        expect(output).toContain("was out of nginx's rotation though it runs its deployed settings and serves /health: it is back in");
    });

    it("a replica paused while the balancer is replaced stays out, and the next plain up brings it back once it answers", async () => {
        const paused = replicaContainers()[0]!;
        const name = outputs.replicas.find((r: { container: string }) => r.container === paused).name as string;
        await docker(["pause", paused]);
        try {
            stack.editConfig((c) => (c.lbWorkers = "3"));
            await stack.up();
            expect((await rotation(HEALTH_PORT))?.out).toEqual([name]);
        } finally {
            await docker(["unpause", paused]);
        }
        const { output } = await stack.up(["--expect-no-changes"]);
        expect(output).toContain(`${name} was out of nginx's rotation though it runs its deployed settings and serves /health: it is back in`);
        expect((await rotation(HEALTH_PORT))?.in).toEqual(outputs.replicas.map((r: { name: string }) => r.name));
    });

    it("changes the balancing method with a reload: nothing lost, nginx not restarted", async () => {
        const nginxBefore = await inspect("e2e-nginx-lb");
        stack.editConfig((c) => (c.balancer = "round_robin"));
        const change = await upUnderLoad("least_conn → round_robin");
        expectNothingLost(change.counts);
        expect(change.sampler.fewest).toBe(3);
        const nginxAfter = await inspect("e2e-nginx-lb");
        expect(nginxAfter.startedAt, "nginx was not restarted").toBe(nginxBefore.startedAt);
        expect((await rotation(HEALTH_PORT))?.id).toBe(outputs.configId);
    });

    it("adds a client key with a reload: nothing lost, nginx not restarted, no replica replaced, the new key served at once", async () => {
        const nginxBefore = await inspect("e2e-nginx-lb");
        const replicasBefore = await Promise.all(replicaContainers().map(async (c) => (await inspect(c)).id));
        const carol = "e2e-carol-key-3b9e71c05d2a84";
        expect((await call("/v1/models", bearer(carol))).status).toBe(401);
        await stack.pulumi(["config", "set", "--path", "vllm-nginx:clientKeys[2].name", "carol"]);
        await stack.pulumi(["config", "set", "--path", "--secret", "vllm-nginx:clientKeys[2].key", carol]);
        const preview = await stack.pulumi(["preview"]);
        expect(preview).not.toMatch(/vllm\d-container/);
        const change = await upUnderLoad("a new client key");
        expectNothingLost(change.counts);
        expect(change.sampler.fewest).toBe(3);
        expect(change.output).not.toContain(carol);
        expect(stack.stateText()).not.toContain(carol);
        expect((await inspect("e2e-nginx-lb")).startedAt, "nginx was not restarted").toBe(nginxBefore.startedAt);
        expect(await Promise.all(replicaContainers().map(async (c) => (await inspect(c)).id))).toEqual(replicasBefore);
        expect((await call("/v1/models", bearer(carol))).status).toBe(200);
    });

    it("replaces the balancer for a new nginx image with a short outage, and every replica is back in rotation at once", async () => {
        // A base that differs from the one in use, so the balancer's image really changes.
        await new Promise<void>((resolve, reject) => {
            const build = execFile("docker", ["build", "-q", "-t", "vllm-nginx/debian:bookworm-e2e", "-"], { env: { ...process.env, DOCKER_BUILDKIT: "0" } }, (error) => (error ? reject(error) : resolve()));
            build.stdin!.end("FROM vllm-nginx/debian:bookworm\nLABEL vllm-nginx.e2e=new-nginx-base\n");
        });
        stack.editConfig((c) => (c.nginxBaseImage = "vllm-nginx/debian:bookworm-e2e"));
        let down = 0;
        let longest = 0;
        let since = 0;
        let polling = true;
        const started = Date.now();
        // Each change of what /nginx-health says, for the note: a gap's cause (no answer, the bootstrap
        // config, a replica missing) shows there. A loaded machine may take over a second to answer; 5 s
        // without an answer is no answer.
        const timeline: string[] = [];
        const poll = (async () => {
            while (polling) {
                const now = await rotation(HEALTH_PORT, "127.0.0.1", 5000);
                const said = now === undefined ? "no answer" : `in=${now.in.join(",")}`;
                if (timeline.at(-1)?.endsWith(` ${said}`) !== true) {
                    timeline.push(`${((Date.now() - started) / 1000).toFixed(1)}s ${said}`);
                }
                const ok = now?.in.length === 3;
                if (!ok && since === 0) {
                    since = Date.now();
                }
                if (ok && since !== 0) {
                    down += 1;
                    longest = Math.max(longest, Date.now() - since);
                    since = 0;
                }
                await sleep(50);
            }
        })();
        const { seconds } = await stack.up();
        await sleep(1000);
        polling = false;
        await poll;
        note(`pulumi up (new nginx image, the balancer container replaced): ${seconds.toFixed(1)}s; the balancer did not serve all replicas for ${(longest / 1000).toFixed(1)}s (${down} gap): ${timeline.join("; ")}`);
        expect(down, timeline.join("; ")).toBe(1);
        expect(longest).toBeLessThan(30_000);
        expect((await rotation(HEALTH_PORT))?.in).toEqual(outputs.replicas.map((r: { name: string }) => r.name));
        // The front door's files outlived the old container: the same self-signed certificate, every key.
        expect(await balancerCertificate(outputs.balancerContainer)).toBe(front.ca);
        expect((await call("/v1/models")).status).toBe(200);
        expect((await call("/v1/models", bearer("e2e-carol-key-3b9e71c05d2a84"))).status).toBe(200);
        await docker(["rmi", "vllm-nginx/debian:bookworm-e2e"]).catch(() => undefined);
    });

    it("reports no changes on a second `up` with nothing changed, which brings back a replica left out of rotation; refresh finds the containers as the program declared them", async () => {
        // What an `up` stopped after its gate took vllm1 out leaves behind (a Ctrl-C, an error elsewhere),
        // once the change is reverted; a balancer replaced while vllm1 was busy leaves the same.
        const rotationScript = fs.readFileSync(path.join(REPO, "components/rollout/scripts/rotation.sh"), "utf8");
        await docker(["exec", outputs.balancerContainer, "sh", "-c", rotationScript, "rotation.sh", "retire", "vllm1"]);
        await waitFor("nginx to report vllm1 out of rotation", 10_000, async () => (await rotation(HEALTH_PORT))?.out.join(",") === "vllm1", 200);
        // The self-signed pair of a balancer left alone for 355 days: 10 days left, its names unchanged.
        await docker([
            "exec",
            outputs.balancerContainer,
            "sh",
            "-c",
            'cd /etc/nginx/vllm-nginx/edge && names=$(sed "s/^self-signed //" tls.source) && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 10 -subj /CN=vllm-nginx -addext "subjectAltName=$names" -keyout tls.key -out tls.crt 2>/dev/null && nginx -s reload',
        ]);
        const ageing = await balancerCertificate(outputs.balancerContainer);
        expect(new X509Certificate(ageing).validTo).not.toBe(new X509Certificate(front.ca!).validTo);
        const { seconds, output } = await stack.up(["--expect-no-changes"]);
        note(`pulumi up (no change, vllm1 out of rotation before it): ${seconds.toFixed(1)}s`);
        expect(output).not.toMatch(/[1-9]\d* (to )?(create|update|replace|delete)/);
        expect(output).toContain("vllm1 was out of nginx's rotation though it runs its deployed settings and serves /health: it is back in");
        expect((await rotation(HEALTH_PORT))?.in).toEqual(outputs.replicas.map((r: { name: string }) => r.name));
        // ... and renews the certificate that was about to expire.
        expect(output).toContain("the self-signed certificate, which expired on");
        const renewed = new X509Certificate(await balancerCertificate(outputs.balancerContainer));
        expect((Date.parse(renewed.validTo) - Date.now()) / 86_400_000).toBeGreaterThan(360);
        const refresh = await stack.pulumi(["refresh", "--yes"]);
        // The stack's reference to itself reads the outputs the last update wrote; nothing else may change.
        const changed = refresh.split("\n").filter((l) => /^\s*[~+-]+\s+\S+:\S+\s+\S+\s+(updated|deleted|created)/.test(l) && !l.includes("StackReference"));
        expect(changed, refresh).toEqual([]);
    });

    it("moves the stack's one model into a one-group models list: the preview shows no change, so no container is replaced", async () => {
        const file = fs.readFileSync(stack.configFile, "utf8");
        try {
            stack.editConfig((c) => {
                c.models = [{ name: "default", model: c.model, servedModelName: c.servedModelName, replicas: Number(c.replicas), vllmArgs: c.vllmArgs }];
                for (const key of ["model", "servedModelName", "replicas", "vllmArgs"]) {
                    delete c[key];
                }
            });
            const preview = await stack.pulumi(["preview", "--expect-no-changes", "--diff"]);
            expect(preview).not.toMatch(/[1-9]\d* to (create|update|replace|delete)/);
            expect(preview).toMatch(/\d+ unchanged/);
        } finally {
            fs.writeFileSync(stack.configFile, file);
        }
    });

    it("destroys everything: no container, network or volume of the stack is left", async () => {
        const started = Date.now();
        await stack.pulumi(["destroy", "--yes", "--skip-preview"]);
        destroyed = true;
        note(`pulumi destroy: ${((Date.now() - started) / 1000).toFixed(1)}s`);
        expect(await leftovers()).toEqual([]);
    });
});
