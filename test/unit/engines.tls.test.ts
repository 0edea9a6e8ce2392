/**
 * `tcp://` engines with TLS: the secret hostTls is checked without being shown, and the commands reach such
 * an engine with its material written to a private folder for the docker CLI, never on a command line.
 */
import { execFile } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { afterEach, describe, expect, it } from "vitest";
import { checkHostTls } from "../../components/config/stack";
import { ENGINE_TLS_SCRIPT } from "../../components/rollout/scripts";

const HOSTS = [{ name: "gpu-a" }, { name: "gpu-b" }];
const PEM = { ca: "-----BEGIN CERTIFICATE-----\nca\n", cert: "-----BEGIN CERTIFICATE-----\ncert\n", key: "-----BEGIN PRIVATE KEY-----\nkey-material-never-shown\n" };

describe("hostTls", () => {
    it("accepts material by host name, and nothing when unset", () => {
        expect(checkHostTls(JSON.stringify({ "gpu-b": PEM }), HOSTS)).toEqual([]);
        expect(checkHostTls(undefined, HOSTS)).toEqual([]);
    });

    it("reports a host that is not listed, a wrong shape or JSON, without showing the secret", () => {
        const problems = [
            ...checkHostTls(JSON.stringify({ "gpu-z": PEM }), HOSTS),
            ...checkHostTls(JSON.stringify({ "gpu-a": { ca: "x", key: "key-material-never-shown" } }), HOSTS),
            ...checkHostTls("not json", HOSTS),
        ];
        expect(problems.map((p) => `${p.key} = ${String(p.value)}: ${p.allowed}`)).toEqual([
            'hostTls = (secret, for host "gpu-z"): material for hosts of hosts only: "gpu-a", "gpu-b"',
            expect.stringMatching(/^hostTls = \(secret, for host "gpu-a"\): a JSON object of \{"ca", "cert", "key"\}/),
            expect.stringMatching(/^hostTls = \(secret, not shown\): a JSON object/),
        ]);
        expect(JSON.stringify(problems)).not.toContain("key-material-never-shown");
    });
});

describe("with_engine", () => {
    const dirs: string[] = [];
    afterEach(() => dirs.splice(0).forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

    /** Runs `with_engine ADDRESS docker-env` with a fake docker that prints what the CLI would use. */
    function run(address: string, tls: Record<string, unknown> | undefined): Promise<string> {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vllm-nginx-tls-test-"));
        dirs.push(dir);
        fs.writeFileSync(path.join(dir, "docker"), '#!/bin/sh\necho "host=$DOCKER_HOST verify=${DOCKER_TLS_VERIFY:-} certs=${DOCKER_CERT_PATH:-}"\n[ -n "${DOCKER_CERT_PATH:-}" ] && cat "$DOCKER_CERT_PATH/ca.pem" "$DOCKER_CERT_PATH/key.pem" && stat -c %a "$DOCKER_CERT_PATH/key.pem"\nexit 0\n', { mode: 0o755 });
        const env = { ...process.env, PATH: `${dir}:${process.env.PATH}`, ...(tls ? { ENGINE_TLS: JSON.stringify(tls) } : {}) };
        return new Promise((resolve, reject) =>
            execFile("sh", ["-c", `${ENGINE_TLS_SCRIPT}\nwith_engine "$1" docker info`, "sh", address], { env, encoding: "utf8" }, (error, stdout, stderr) => (error ? reject(new Error(stderr)) : resolve(stdout))),
        );
    }

    it("hands the docker CLI an engine's TLS material as DOCKER_CERT_PATH, readable by its owner only", async () => {
        const out = await run("tcp://gpu-b:2376", { "tcp://gpu-b:2376": PEM });
        expect(out).toMatch(/^host=tcp:\/\/gpu-b:2376 verify=1 certs=\/.*vllm-nginx-tls-/);
        expect(out).toContain("-----BEGIN CERTIFICATE-----\nca\n-----BEGIN PRIVATE KEY-----\nkey-material-never-shown\n600");
    });

    it("uses no TLS for an engine without material, and the default engine for an empty address", async () => {
        expect(await run("ssh://ops@gpu-a", { "tcp://gpu-b:2376": PEM })).toBe("host=ssh://ops@gpu-a verify= certs=\n");
        expect(await run("ssh://ops@gpu-a", undefined)).toBe("host=ssh://ops@gpu-a verify= certs=\n");
        expect(await run("", undefined)).toMatch(/^host=\S* verify= certs=\n$/);
    });
});
