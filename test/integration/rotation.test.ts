/**
 * Taking a replica out of rotation and back, with the script the balancer's container runs
 * (`components/rollout/scripts/rotation.sh`) driving the real nginx: a replica that leaves gets no new
 * request while the streams it serves finish; one that joins gets requests again; nothing is cut.
 */
import { execFile } from "child_process";
import * as fs from "fs";
import * as http from "http";
import * as os from "os";
import * as path from "path";
import { describe, expect, it } from "vitest";
import { BALANCER_ROTATION_PATH } from "../../components/nginx/paths";
import { renderTemplate } from "../../components/nginx/render";
import { REPO } from "../unit/mockStack";
import { freePort, oursConfig, renderOurs, request, requireNginx, sleep, stream, tokenEvents, waitFor, type Nginx } from "../support";
import { useTestFleet } from "./testFleet";

const ROTATION = path.join(REPO, "components/rollout/scripts/rotation.sh");
const COMMON = ["engine-tls.sh", "common.sh"].map((f) => fs.readFileSync(path.join(REPO, "components/rollout/scripts", f), "utf8")).join("\n");
const { standIns, nginx } = useTestFleet();

/** Runs rotation.sh against `lb`: its state in lb's prefix, nginx called with lb's prefix and config. */
function rotation(lb: Nginx, args: string[], input = ""): Promise<string> {
    const wrapper = path.join(lb.dir, "nginx-wrapper");
    if (!fs.existsSync(wrapper)) {
        fs.writeFileSync(wrapper, `#!/bin/sh\nexec ${requireNginx()} -p ${lb.dir}/ -c ${lb.dir}/nginx.conf -e ${lb.dir}/startup-error.log "$@"\n`, { mode: 0o755 });
    }
    const env = { ...process.env, ROTATION_DIR: path.join(lb.dir, "rotation"), ROTATION_LIVE: path.join(lb.dir, "conf.d", "vllm-nginx.conf"), ROTATION_NGINX: wrapper };
    return new Promise((resolve, reject) => {
        const child = execFile("sh", [ROTATION, ...args], { env, encoding: "utf8" }, (error, stdout, stderr) => (error ? reject(new Error(`${error.message}\n${stderr}`)) : resolve(stdout.trim())));
        child.stdin!.end(input);
    });
}

/**
 * The drain a replica's removal runs (common.sh's `drain`), reading the replica's real /metrics. The
 * balancer's container is this machine: `docker exec CONTAINER cmd...` runs `cmd...` here.
 */
function drain(name: string, address: string, graceSeconds: number): Promise<string> {
    const bin = fs.mkdtempSync(path.join(os.tmpdir(), "vllm-nginx-drain-"));
    fs.writeFileSync(path.join(bin, "docker"), '#!/bin/sh\n[ "$1" = exec ] || exit 1\nshift 2\nexec "$@"\n', { mode: 0o755 });
    const env = { ...process.env, PATH: `${bin}:${process.env.PATH}`, LB_CONTAINER: "lb", LB_ENGINE: "" };
    return new Promise((resolve, reject) => {
        execFile("sh", ["-c", `${COMMON}\ndrain ${name} ${address} ${graceSeconds}`], { env, encoding: "utf8" }, (error, stdout, stderr) => {
            fs.rmSync(bin, { recursive: true, force: true });
            return error ? reject(new Error(`${error.message}\n${stderr}`)) : resolve((stdout + stderr).trim());
        });
    });
}

/** The rotation's gauge, from the status listener (a unix socket in these tests). */
function rotationMetrics(statusListen: string): Promise<string> {
    return new Promise((resolve, reject) =>
        http
            .get({ socketPath: statusListen.replace(/^unix:/, ""), path: BALANCER_ROTATION_PATH }, (res) => {
                let text = "";
                res.on("data", (d) => (text += d));
                res.on("end", () => (res.statusCode === 200 ? resolve(text) : reject(new Error(`${BALANCER_ROTATION_PATH}: ${res.statusCode} ${text}`))));
            })
            .on("error", reject),
    );
}

async function healthLine(lb: Nginx): Promise<string> {
    return (await request(`${lb.url}/nginx-health`, { agent: false })).text.trim();
}

describe("rotation with the real nginx (pain point 4: GIE#549, kserve#5496)", () => {
    it("retires a replica: its streams finish, new requests go elsewhere; admits it again: it serves", async () => {
        const rs = await standIns(2, ["--itl-ms", "40"]);
        const port = await freePort();
        const config = oursConfig(rs.map((r) => r.port), port);
        const lb = await nginx(renderOurs(rs.map((r) => r.port), port), port);
        const { template, id } = renderTemplate(config);
        // A new container's first install: both replicas answer /health, so both join.
        expect(await rotation(lb, ["install"], template)).toBe("in=vllm0,vllm1 out=");
        await waitFor("the installed config", 5000, async () => (await healthLine(lb)) === `ok ${id} in=vllm0,vllm1 out=`);

        const streams = [0, 1, 2, 3].map((i) => stream(`${lb.url}/v1/completions`, { model: "m", prompt: `p${i}`, max_tokens: 40, stream: true }, { agent: false }));
        await Promise.all(streams.map((s) => s.firstEvent));
        expect(await rotation(lb, ["retire", "vllm1"])).toBe("in=vllm0 out=vllm1");
        await waitFor("nginx to report vllm1 out", 5000, async () => (await healthLine(lb)).endsWith("in=vllm0 out=vllm1"));
        // A new worker answered; an old one may not have closed its listening socket yet, and would still
        // accept a connection under the old config for a moment.
        await sleep(500);
        const during: string[] = [];
        for (let i = 0; i < 6; i += 1) {
            during.push(String((await request(`${lb.url}/v1/completions`, { agent: false, body: { model: "m", prompt: "new", max_tokens: 1 } })).headers["x-replica-id"]));
        }
        expect(during).toEqual(["r0", "r0", "r0", "r0", "r0", "r0"]);
        // What the VllmReplicaOutOfRotation alert reads.
        const gauge = await rotationMetrics(config.statusListen);
        expect(gauge).toContain("# TYPE vllm_nginx_replica_in_rotation gauge\n");
        expect(gauge.split("\n").filter((l) => l.startsWith("vllm_nginx_replica_in_rotation{"))).toEqual([
            'vllm_nginx_replica_in_rotation{replica="vllm0"} 1',
            'vllm_nginx_replica_in_rotation{replica="vllm1"} 0',
        ]);
        const finished = await Promise.all(streams.map((s) => s.result));
        expect(finished.map((r) => r.replica).sort()).toEqual(["r0", "r0", "r1", "r1"]);
        for (const r of finished) {
            expect(r.done, "the retired replica's streams finish: a reload cuts nothing").toBe(true);
            expect(tokenEvents(r)).toHaveLength(40);
        }

        expect(await rotation(lb, ["admit", "vllm1"])).toBe("in=vllm0,vllm1 out=");
        await waitFor("nginx to report vllm1 in", 5000, async () => (await healthLine(lb)).endsWith("in=vllm0,vllm1 out="));
        // Old workers may answer on the status listener for a moment after the reload.
        await waitFor("the rotation's gauge to report vllm1 in", 5000, async () => (await rotationMetrics(config.statusListen)).includes('vllm_nginx_replica_in_rotation{replica="vllm1"} 1\n'));
        const after = new Set<string>();
        for (let i = 0; i < 10 && after.size < 2; i += 1) {
            after.add(String((await request(`${lb.url}/v1/completions`, { agent: false, body: { model: "m", prompt: "again", max_tokens: 1 } })).headers["x-replica-id"]));
        }
        expect([...after].sort()).toEqual(["r0", "r1"]);
    });

    it("leaves a replica that does not answer /health out of a new balancer's rotation, and nginx never tries it", async () => {
        const [r0] = await standIns(1, ["--itl-ms", "1"]);
        const port = await freePort();
        const dead = await freePort();
        const lb = await nginx(renderOurs([r0!.port], port), port);
        const { template } = renderTemplate(oursConfig([r0!.port, dead], port));
        expect(await rotation(lb, ["install"], template)).toBe("in=vllm0 out=vllm1");
        await sleep(200);
        for (let i = 0; i < 5; i += 1) {
            expect((await request(`${lb.url}/v1/completions`, { agent: false, body: { model: "m", prompt: "x", max_tokens: 1 } })).status).toBe(200);
        }
        expect(lb.errorLog()).not.toContain(`127.0.0.1:${dead}`);
    });

    it("admits a replica whose /health is slow (its event loop busy for 3.5 s, as under load) to a new balancer's rotation at once", async () => {
        const rs = await standIns(3, ["--itl-ms", "1"]);
        const port = await freePort();
        const lb = await nginx(renderOurs(rs.map((r) => r.port), port), port);
        const { template } = renderTemplate(oursConfig(rs.map((r) => r.port), port));
        for (const r of rs.slice(1)) {
            expect((await request(`${r.url}/standin/block-loop?ms=3500`, { agent: false, method: "POST" })).status).toBe(200);
        }
        expect(await rotation(lb, ["install"], template)).toBe("in=vllm0,vllm1,vllm2 out=");
    });

    /**
     * Scale-down under streamed load with replicas that abort in-flight requests on SIGTERM, as vLLM
     * does by default: the order without the drain (out of rotation, then stopped) against the
     * program's (out of rotation, drained by its /metrics and the balancer's connections to it, then stopped), side by side.
     */
    const scaleDown = async (drained: boolean, replicaArgs: string[] = []) => {
        const rs = await standIns(2, ["--itl-ms", "40", ...replicaArgs]);
        const port = await freePort();
        const config = oursConfig(rs.map((r) => r.port), port);
        const lb = await nginx(renderOurs(rs.map((r) => r.port), port), port);
        await rotation(lb, ["install"], renderTemplate(config).template);
        const streams = Array.from({ length: 8 }, (_, i) => stream(`${lb.url}/v1/completions`, { model: "m", prompt: `p${i}`, max_tokens: 50, stream: true }, { agent: false }));
        await Promise.all(streams.map((s) => s.firstEvent));
        const inFlight = ((await request(`${rs[1]!.url}/metrics`, { agent: false })).text.match(/^vllm:num_requests_running\{[^}]*\} (\S+)$/m) ?? [])[1];
        await rotation(lb, ["retire", "vllm1"]);
        await waitFor("nginx to report vllm1 out", 5000, async () => (await healthLine(lb)).endsWith("in=vllm0 out=vllm1"));
        const drainSaid = drained ? await drain("vllm1", `127.0.0.1:${rs[1]!.port}`, 30) : "";
        await rs[1]!.stop();
        const results = await Promise.all(streams.map((s) => s.result));
        const onRemoved = results.filter((r) => r.replica === "r1");
        const cut = onRemoved.filter((r) => !r.done || tokenEvents(r).length !== 50).length;
        return { inFlight: Number(inFlight), onRemoved: onRemoved.length, cut, drainSaid };
    };

    it("scale-down with replicas that abort on SIGTERM: stopped after the reload cuts the removed replica's streams, drained first cuts none", async () => {
        const before = await scaleDown(false);
        const after = await scaleDown(true);
        console.log(`scale-down, replica aborting on SIGTERM: stopped after the reload: ${before.inFlight} in flight on the removed replica, ${before.cut} of ${before.onRemoved} cut; drained first: ${after.inFlight} in flight, ${after.cut} of ${after.onRemoved} cut (${after.drainSaid})`);
        expect(before.onRemoved).toBeGreaterThan(0);
        expect(before.cut, "the contrast: without the drain the abort reaches the clients").toBe(before.onRemoved);
        expect(after.onRemoved).toBeGreaterThan(0);
        expect(after.drainSaid).toContain("vllm1: drained (no running or waiting request, no open connection from the balancer)");
        expect(after.cut).toBe(0);
    });

    it("drains a replica that exports no vllm: gauges (--disable-log-stats) by the balancer's open connections to it: nothing cut", async () => {
        const r = await scaleDown(true, ["--disable-log-stats"]);
        console.log(`scale-down, replica with --disable-log-stats, drained first: ${r.cut} of ${r.onRemoved} cut (${r.drainSaid})`);
        expect(r.inFlight, "the replica exports no engine gauges").toBeNaN();
        expect(r.onRemoved).toBeGreaterThan(0);
        expect(r.drainSaid).toContain("vllm1: drained (no running or waiting request, no open connection from the balancer)");
        expect(r.cut).toBe(0);
    });
});
