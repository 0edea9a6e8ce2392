/**
 * Conformance: the same wire-level checks (conformance.ts) against real vLLM 0.32.0 (its CPU build, in
 * Docker, serving the tiny model of make_model.py) and against the stand-in (test/standin/server.mjs)
 * started with the same flags. Prints `check | vLLM 0.32.0 | stand-in | same?` and holds the stand-in's
 * README to it: every difference found is a row of its "Differences from vLLM" table, with the reason,
 * and every row of that table is still a difference, so the table cannot drift either way.
 *
 * Three servers of each kind, each serving many checks and ended by its last one (2 cores: at most two
 * vLLM containers at a time): "plain" (no key; SIGTERM with the default --shutdown-timeout 0 at the end),
 * "keyed" (--api-key, --shutdown-timeout 12; SIGTERM drains at the end) and "death" (its engine is
 * killed). About 2 minutes on an idle 2-core machine, most of it vLLM starting.
 *
 * CONFORMANCE_TABLE_OUT=FILE also writes the table to FILE (test/vllm/conformance-before.txt is such a
 * table, of the stand-in as it was before it followed 0.32.0: STANDIN_SERVER=<that server.mjs>); the
 * suite prints it, when it is there, before its own.
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { performance } from "perf_hooks";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type StandIn, freePort, portOpen, request, requireVllmImage, sleep, startStandIn, startVllm, stopAll, type VllmServer, VLLM_TINY_MODEL } from "../support";
import { API_KEY, CHECKS, COMMON_ARGS, type Observations, ROLE_ARGS, type Role, type Row, type Target, compare, logObservations, readmeDifferences, renderTable } from "./conformance";

const README = path.resolve(__dirname, "../standin/README.md");
/** Where each server's log is left, to read when a row surprises. */
const LOGS = path.join(os.tmpdir(), "vllm-nginx-conformance");
const BEFORE = path.resolve(__dirname, "conformance-before.txt");
const ROLES: Role[] = ["plain", "keyed", "death"];

const containers: VllmServer[] = [];
const standIns: StandIn[] = [];

/** The stand-in with the same vLLM flags, plus its knobs: 1 s of "loading" (port closed) and the tiny model's pace (~2 ms a token). */
async function standInTarget(role: Role): Promise<Target> {
    const port = await freePort();
    const t0 = performance.now();
    // The environment of vLLM's image (test/vllm/Dockerfile): adapters loaded and unloaded at run time.
    const s = await startStandIn({
        model: VLLM_TINY_MODEL,
        port,
        replicaId: `conformance-${role}`,
        args: [...COMMON_ARGS, ...ROLE_ARGS[role], "--load-seconds", "1", "--itl-ms", "2"],
        env: { VLLM_ALLOW_RUNTIME_LORA_UPDATING: "True" },
        waitReady: false,
    });
    standIns.push(s);
    const startup = { refused: 0, answeredBefore: [] as number[] };
    const url = `http://127.0.0.1:${port}`;
    for (;;) {
        if (performance.now() - t0 > 30_000 || s.proc.exitCode !== null) {
            throw new Error(`the stand-in (${role}) did not become healthy:\n${s.output()}`);
        }
        if (!(await portOpen(port))) {
            startup.refused += 1;
        } else {
            const r = await request(`${url}/health`, { agent: false, timeoutMs: 2000 }).catch(() => undefined);
            if (r?.status === 200) {
                break;
            }
            if (r) {
                startup.answeredBefore.push(r.status);
            }
        }
        await sleep(100);
    }
    const waitExit = async (timeoutMs: number) => {
        const exited = await Promise.race([s.exited, sleep(timeoutMs).then(() => undefined)]);
        return exited === undefined ? undefined : (exited.code ?? -1);
    };
    return {
        url,
        apiKey: role === "keyed" ? API_KEY : undefined,
        startup,
        async stop() {
            const started = performance.now();
            s.proc.kill("SIGTERM");
            const code = await waitExit(60_000);
            return { code: code ?? null, ms: performance.now() - started };
        },
        async killEngine() {
            await request(`${url}/standin/kill-engine`, { method: "POST", agent: false });
        },
        waitExit,
        logs: async () => s.output(),
    };
}

function vllmTarget(v: VllmServer, role: Role): Target {
    return { url: v.url, apiKey: role === "keyed" ? API_KEY : undefined, startup: v.startup, stop: () => v.stop(), killEngine: () => v.killEngine(), waitExit: (ms) => v.waitExit(ms), logs: () => v.logs() };
}

function startVllmRole(role: Role): Promise<VllmServer> {
    const p = startVllm({ args: [...COMMON_ARGS, ...ROLE_ARGS[role]], label: "conformance" }).then((v) => {
        containers.push(v);
        return v;
    });
    p.catch(() => undefined); // awaited later; a failure fails the suite there
    return p;
}

/** Runs a role's checks in order; a check that throws is a row of its own, which fails the suite. Leaves the server's log in LOGS. */
async function runRole(role: Role, t: Target, into: Observations, kind: "vllm" | "standin"): Promise<void> {
    for (const check of CHECKS.filter((c) => c.role === role)) {
        try {
            Object.assign(into, await check.run(t));
        } catch (err) {
            into[`${check.name}: CHECK FAILED`] = err instanceof Error ? err.message : String(err);
        }
    }
    fs.mkdirSync(LOGS, { recursive: true });
    fs.writeFileSync(path.join(LOGS, `${kind}-${role}.log`), await t.logs());
}

describe("conformance: the stand-in against vLLM 0.32.0", () => {
    const suiteStarted = performance.now();
    const vllm: Observations = {};
    const standin: Observations = {};
    let rows: Row[] = [];

    beforeAll(async () => {
        await requireVllmImage();
        // vLLM's plain and keyed servers load together (~35-50 s on 2 cores); the stand-ins are checked meanwhile.
        const plainP = startVllmRole("plain");
        const keyedP = startVllmRole("keyed");
        for (const role of ROLES) {
            const t = await standInTarget(role);
            await runRole(role, t, standin, "standin");
            if (role === "plain") {
                Object.assign(standin, logObservations(await t.logs()));
            }
        }
        const plain = vllmTarget(await plainP, "plain");
        const keyed = vllmTarget(await keyedP, "keyed");
        await runRole("plain", plain, vllm, "vllm");
        Object.assign(vllm, logObservations(await plain.logs()));
        // The plain server has exited (its last check is SIGTERM): the third one loads while the keyed one drains.
        const deathP = startVllmRole("death");
        await runRole("keyed", keyed, vllm, "vllm");
        await runRole("death", vllmTarget(await deathP, "death"), vllm, "vllm");

        rows = compare(vllm, standin);
        const table = renderTable(rows);
        if (process.env.CONFORMANCE_TABLE_OUT) {
            fs.writeFileSync(process.env.CONFORMANCE_TABLE_OUT, `${table}\n`);
        }
        if (fs.existsSync(BEFORE)) {
            console.log(`\n[conformance] BEFORE: the stand-in at the start of this work vs vLLM 0.32.0 (${path.relative(process.cwd(), BEFORE)})\n${fs.readFileSync(BEFORE, "utf8")}`);
        }
        console.log(`\n[conformance] NOW: the stand-in (test/standin/server.mjs) vs vLLM 0.32.0\n${table}`);
        console.log(`\n[conformance] suite ran in ${((performance.now() - suiteStarted) / 1000).toFixed(0)} s; the servers' logs are in ${LOGS}`);
    });

    afterAll(async () => {
        await Promise.all(containers.map((c) => c.remove()));
        await stopAll(standIns);
        console.log(`[conformance] done in ${((performance.now() - suiteStarted) / 1000).toFixed(0)} s`);
    });

    it("ran every check against both servers", () => {
        const failed = rows.filter((r) => r.check.endsWith("CHECK FAILED"));
        expect(failed, failed.map((r) => `${r.check}: vLLM ${r.vllm}; stand-in ${r.standin}`).join("\n")).toEqual([]);
        for (const check of CHECKS) {
            expect(Object.keys(vllm).length, check.name).toBeGreaterThan(0);
        }
        // The lifecycle checks really observed something: the servers were alive until their last check.
        expect(vllm["SIGTERM default: exit"]).toMatch(/^code /);
        expect(standin["SIGTERM default: exit"]).toMatch(/^code /);
    });

    it('lists every difference in the "Differences from vLLM" table of test/standin/README.md', () => {
        const listed = new Set(readmeDifferences(fs.readFileSync(README, "utf8")));
        const unlisted = rows.filter((r) => !r.same && !listed.has(r.check));
        expect(unlisted.map((r) => `${r.check}\n    vLLM 0.32.0: ${r.vllm}\n    stand-in:    ${r.standin}`)).toEqual([]);
    });

    it("has no row in that table that is not a difference any more", () => {
        const byName = new Map(rows.map((r) => [r.check, r]));
        const stale = readmeDifferences(fs.readFileSync(README, "utf8")).filter((name) => byName.get(name)?.same !== false);
        expect(stale.map((name) => `${name}: ${byName.has(name) ? "now the same on both" : "no such check"}`)).toEqual([]);
    });
});
