/**
 * The check each host's engine passes before its provider is configured, on every up
 * (`components/rollout/scripts/engine.sh`, run by `engineAnswers`), run with the real docker CLI: against the local engine, and
 * against addresses where nothing answers, over TCP and over ssh as a user names a GPU box.
 */
import { execFile, execFileSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { beforeAll, describe, expect, it } from "vitest";
import { REPO } from "../unit/mockStack";
import { freePort, requireDocker } from "../support";

const SCRIPTS = path.join(REPO, "components/rollout/scripts");
const SCRIPT = ["engine-tls.sh", "common.sh", "engine.sh"].map((f) => fs.readFileSync(path.join(SCRIPTS, f), "utf8")).join("\n");

function check(host: string, engine: string): Promise<{ code: number; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
        execFile("sh", ["-c", SCRIPT], { env: { ...process.env, HOST: host, ENGINE: engine, DOCKER_HOST: "" }, encoding: "utf8", timeout: 60_000 }, (error, stdout, stderr) =>
            resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
        );
    });
}

describe("the engine check before a host's resources", () => {
    beforeAll(() => {
        requireDocker();
        try {
            execFileSync("ssh", ["-V"], { stdio: "ignore" });
        } catch {
            throw new Error("these tests need the ssh client for ssh:// engines: apt-get install -y openssh-client");
        }
    });

    it("passes on an engine that answers, naming the host and the engine's version", async () => {
        const r = await check("local", "");
        expect(r.code, r.stderr).toBe(0);
        expect(r.stdout).toMatch(/^host local: Docker engine \S+ answers at the default address\n$/);
    });

    it("fails on a TCP address where no engine answers, naming the host, the address, what was tried and docker's answer", async () => {
        const address = `tcp://127.0.0.1:${await freePort()}`;
        const r = await check("gpu-b", address);
        expect(r.code).toBe(1);
        expect(r.stdout).toBe("");
        expect(r.stderr).toContain(`host gpu-b: its Docker engine does not answer at ${address} (tried: docker version, with DOCKER_HOST=${address}):`);
        expect(r.stderr).toMatch(/^ {4}.*(Cannot connect to the Docker daemon|connection refused)/im);
    });

    it("fails on an ssh address where nothing listens, the same way, with ssh's answer", async () => {
        const address = `ssh://gpu@127.0.0.1:${await freePort()}`;
        const r = await check("gpu-c", address);
        expect(r.code).toBe(1);
        expect(r.stderr).toContain(`host gpu-c: its Docker engine does not answer at ${address} (tried: docker version, with DOCKER_HOST=${address}):`);
        expect(r.stderr).toMatch(/^ {4}.*(connection refused|ssh)/im);
    });
});
