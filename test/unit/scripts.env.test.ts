import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { afterAll, describe, expect, it } from "vitest";
import { REPO } from "./mockStack";

/**
 * `scripts/*` are user commands. On a machine where CI's toolchain (`.ci/pulumi-toolchain`) is missing or
 * still being built, they say only what concerns the user; where it is complete, they use it.
 */
describe("the user scripts and CI's Pulumi toolchain", () => {
    const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "vllm-nginx-scripts-"));
    afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

    /** PATH without any `pulumi`, and the toolchain cache at `cache`. */
    function run(script: string, args: string[], cache: string) {
        const pathDirs = (process.env.PATH ?? "").split(":").filter((dir) => dir && !fs.existsSync(path.join(dir, "pulumi")));
        const env: NodeJS.ProcessEnv = { ...process.env, PATH: pathDirs.join(":"), VLLM_NGINX_TOOLCHAIN_CACHE: cache };
        delete env.PULUMI_TOOLCHAIN_DIR;
        delete env.PULUMI_HOME;
        return spawnSync(path.join(REPO, "scripts", script), args, { encoding: "utf8", env, cwd: scratch });
    }

    /** A toolchain cache holding a directory at the pinned key, complete (`.complete`) or not, whose `pulumi` logs its arguments. */
    function toolchainCache(name: string, complete: boolean): { cache: string; calls: string } {
        const versions = spawnSync("bash", ["-c", `VLLM_NGINX_TOOLCHAIN_CACHE=${path.join(scratch, name)} && . .ci/versions.sh && echo "$VLLM_NGINX_TOOLCHAIN_DIR_DEFAULT"`], { cwd: REPO, encoding: "utf8" });
        const dir = versions.stdout.trim();
        const calls = path.join(scratch, `${name}.calls`);
        fs.mkdirSync(path.join(dir, "bin"), { recursive: true });
        fs.writeFileSync(path.join(dir, "bin", "pulumi"), `#!/bin/sh\necho "$PULUMI_HOME $*" >>${calls}\nexit 3\n`, { mode: 0o755 });
        if (complete) {
            fs.writeFileSync(path.join(dir, ".complete"), "");
        }
        return { cache: path.join(scratch, name), calls };
    }

    it.each([["deploy"], ["preview"]])("scripts/%s without a toolchain says only that the Pulumi CLI is missing, and how to get it", (script) => {
        const { cache } = toolchainCache(`partial-${script}`, false);
        const result = run(script, ["dev"], cache);
        expect(result.status).toBe(2);
        expect(result.stderr).toBe("pulumi not found: install the Pulumi CLI (https://www.pulumi.com/docs/install/) or run .ci/pulumi-toolchain\n");
    });

    it("scripts/status without a toolchain prints its usage and nothing on stderr", () => {
        const { cache } = toolchainCache("partial-status", false);
        const result = run("status", ["--help"], cache);
        expect(result.stderr).toBe("");
        expect(result.stdout).toMatch(/^usage: scripts\/status <stack>/);
        expect(result.status).toBe(0);
    });

    it("scripts/status without a toolchain and without --outputs names the missing CLI, not CI's build", () => {
        const { cache } = toolchainCache("partial-status-stack", false);
        const result = run("status", ["dev"], cache);
        expect(result.status).toBe(2);
        expect(result.stderr).not.toContain("env.sh");
        expect(result.stderr).not.toContain("toolchain in");
        expect(result.stdout + result.stderr).toContain("the Pulumi CLI was not found");
    });

    it("scripts/status uses a complete toolchain, with its own PULUMI_HOME", () => {
        const { cache, calls } = toolchainCache("complete", true);
        const result = run("status", ["dev"], cache);
        expect(result.status).toBe(2);
        const logged = fs.readFileSync(calls, "utf8");
        expect(logged).toMatch(new RegExp(`^${cache}/pulumi-[^ ]+/home stack output --json --stack dev --non-interactive\\n$`));
    });
});
