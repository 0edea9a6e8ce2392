/**
 * The script that changes nginx's rotation inside the balancer's container, run here with sh on the
 * template the renderer makes, with a stand-in for the nginx binary: what it writes must be what the
 * renderer itself makes of the same rotation.
 */
import { execFile } from "child_process";
import * as fs from "fs";
import * as http from "http";
import * as os from "os";
import * as path from "path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { fillTemplate, renderTemplate, type BalancerConfig } from "../../components/nginx/render";
import { GUIDE_TOPOLOGY } from "./balancerConfig";
import { REPO } from "./mockStack";

const ROTATION = path.join(REPO, "components/rollout/scripts/rotation.sh");

let healthy: http.Server;
let healthyPort = 0;
beforeAll(async () => {
    healthy = http.createServer((_req, res) => res.end());
    await new Promise<void>((resolve) => healthy.listen(0, "127.0.0.1", resolve));
    healthyPort = (healthy.address() as { port: number }).port;
});
afterAll(() => healthy.close());

const dirs: string[] = [];
afterEach(() => dirs.splice(0).forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

function config(addresses: string[]): BalancerConfig {
    return { ...GUIDE_TOPOLOGY, stack: undefined, maxBodyBytes: 1024 * 1024, upstreams: addresses.map((address, i) => ({ name: `vllm${i}`, address })) };
}

/** A balancer's files in a folder, and a fake nginx that records what it was asked to do. */
function balancer(nginxFails = false) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vllm-nginx-rotation-"));
    dirs.push(dir);
    const fake = path.join(dir, "nginx");
    fs.writeFileSync(fake, `#!/bin/sh\necho "$*" >> "${dir}/calls"\n${nginxFails ? 'if [ "$1" = -t ]; then echo "emerg: bad config" >&2; exit 1; fi\n' : ""}exit 0\n`, { mode: 0o755 });
    const env = { ...process.env, ROTATION_DIR: path.join(dir, "state"), ROTATION_LIVE: path.join(dir, "live.conf"), ROTATION_NGINX: fake };
    return {
        // Not execFileSync: the /health server of this test must answer while the script runs.
        run: (args: string[], input?: string) =>
            new Promise<string>((resolve, reject) => {
                const child = execFile("sh", [ROTATION, ...args], { env, encoding: "utf8" }, (error, stdout, stderr) => (error ? reject(new Error(`${error.message}\n${stderr}`)) : resolve(stdout.trim())));
                child.stdin!.end(input ?? "");
            }),
        live: () => fs.readFileSync(path.join(dir, "live.conf"), "utf8"),
        calls: () => fs.readFileSync(path.join(dir, "calls"), "utf8").trim().split("\n"),
        dir,
    };
}

describe("rotation.sh, the balancer's rotation", () => {
    it("on a new container lets in the replicas that answer /health, and fills the template in as the renderer does", async () => {
        const { template } = renderTemplate(config([`127.0.0.1:${healthyPort}`, "127.0.0.1:1"]));
        const lb = balancer();
        expect(await lb.run(["install"], template)).toBe("in=vllm0 out=vllm1");
        expect(lb.live()).toBe(fillTemplate(template, { vllm0: "active", vllm1: "down" }));
        expect(lb.calls()).toEqual(["-t", "-s reload"]);
    });

    it("admits and retires replicas with a reload each, and keeps who is in across a new template", async () => {
        const { template } = renderTemplate(config(["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]));
        const lb = balancer();
        expect(await lb.run(["install"], template)).toBe("in= out=vllm0,vllm1,vllm2");
        expect(await lb.run(["admit", "vllm1"])).toBe("in=vllm1 out=vllm0,vllm2");
        expect(await lb.run(["admit", "vllm2"])).toBe("in=vllm1,vllm2 out=vllm0");
        expect(await lb.run(["admit", "vllm2"])).toBe("in=vllm1,vllm2 out=vllm0");
        expect(lb.live()).toBe(fillTemplate(template, { vllm0: "down", vllm1: "active", vllm2: "active" }));
        expect(await lb.run(["retire", "vllm1"])).toBe("in=vllm2 out=vllm0,vllm1");
        expect(await lb.run(["retire", "vllm2"])).toBe("in= out=vllm0,vllm1,vllm2");
        // A new template (a scale-down to two replicas): who is in stays in; the health line says so.
        const { template: smaller, id } = renderTemplate(config(["127.0.0.1:1", "127.0.0.1:2"]));
        expect(await lb.run(["install"], smaller)).toBe("in= out=vllm0,vllm1");
        expect(lb.live()).toContain(`return 200 "ok ${id} in= out=vllm0,vllm1\\n";`);
        expect(lb.calls().filter((c) => c === "-s reload")).toHaveLength(7);
    });

    it("keeps a replica in rotation that the new template leaves out until it is retired, then serves exactly the new template", async () => {
        const healthy = `127.0.0.1:${healthyPort}`;
        const before = renderTemplate(config([healthy, "127.0.0.1:2", "127.0.0.1:3"]));
        const lb = balancer();
        await lb.run(["install"], before.template);
        expect(await lb.run(["admit", "vllm1"])).toBe("in=vllm0,vllm1 out=vllm2");
        // vllm0 leaves the fleet (a spare took its place): the new template has vllm1, vllm2 and vllm3.
        const after = renderTemplate({
            ...config([]),
            upstreams: [
                { name: "vllm1", address: "127.0.0.1:2" },
                { name: "vllm2", address: "127.0.0.1:3" },
                { name: "vllm3", address: "127.0.0.1:4" },
            ],
        });
        expect(await lb.run(["install"], after.template)).toBe("in=vllm1,vllm0 out=vllm2,vllm3");
        expect(lb.live()).toContain(`    server ${healthy} max_fails=3 fail_timeout=30s;  # vllm0\n`);
        expect(lb.live()).toContain(`# vllm-nginx:replica vllm0 ${healthy}\n`);
        // The Lua balancer's peer too, in its list, after the new template's last peer.
        expect(lb.live()).toContain(`{ name = "vllm3", address = "127.0.0.1:4", out = " down" },\n            { name = "vllm0", address = "${healthy}", out = "" },\n        },`);
        expect(lb.live()).toContain(`return 200 "ok ${after.id} in=vllm1,vllm0 out=vllm2,vllm3\\n";`);
        expect(await lb.run(["admit", "vllm3"])).toBe("in=vllm1,vllm3,vllm0 out=vllm2");
        // Another config change meanwhile (a reload) keeps it in.
        expect(await lb.run(["install"], after.template)).toBe("in=vllm1,vllm3,vllm0 out=vllm2");
        expect(await lb.run(["retire", "vllm0"])).toBe("in=vllm1,vllm3 out=vllm2");
        expect(lb.live()).toBe(fillTemplate(after.template, { vllm1: "active", vllm2: "down", vllm3: "active" }));
    });

    it("lets a replica the new template leaves out go at once when it no longer answers /health", async () => {
        const lb = balancer();
        await lb.run(["install"], renderTemplate(config(["127.0.0.1:1", `127.0.0.1:${healthyPort}`])).template);
        expect(await lb.run(["admit", "vllm0"])).toBe("in=vllm0,vllm1 out=");
        const smaller = renderTemplate({ ...config([]), upstreams: [{ name: "vllm1", address: `127.0.0.1:${healthyPort}` }] });
        expect(await lb.run(["install"], smaller.template)).toBe("in=vllm1 out=");
        expect(lb.live()).not.toContain("vllm0");
    });

    it("fills in the Lua balancer's replica list as nginx's server lines, in every mode", async () => {
        for (const method of ["least_conn", "cache_aware"] as const) {
            const { template } = renderTemplate({ ...config(["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]), method });
            const lb = balancer();
            await lb.run(["install"], template);
            await lb.run(["admit", "vllm0"]);
            await lb.run(["admit", "vllm2"]);
            expect(await lb.run(["retire", "vllm2"])).toBe("in=vllm0 out=vllm1,vllm2");
            const live = lb.live();
            expect(live).toBe(fillTemplate(template, { vllm0: "active", vllm1: "down", vllm2: "down" }));
            expect(live).toContain('{ name = "vllm0", address = "127.0.0.1:1", out = "" },');
            expect(live).toContain('{ name = "vllm1", address = "127.0.0.1:2", out = " down" },');
            expect(live).toContain('{ name = "vllm2", address = "127.0.0.1:3", out = " down" },');
            expect(live).not.toContain("{{");
        }
    });

    it("keeps the previous config when nginx rejects the new one", async () => {
        const { template } = renderTemplate(config(["127.0.0.1:1"]));
        const lb = balancer();
        await lb.run(["install"], template);
        fs.writeFileSync(path.join(lb.dir, "nginx"), "#!/bin/sh\nif [ \"$1\" = -t ]; then echo 'emerg: bad config' >&2; exit 1; fi\n", { mode: 0o755 });
        const before = lb.live();
        await expect(lb.run(["admit", "vllm0"])).rejects.toThrow(/nginx rejected the rendered config; the previous one stays/);
        expect(lb.live()).toBe(before);
    });
});
