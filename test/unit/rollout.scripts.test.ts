/**
 * The rollout commands' shell functions (`components/rollout/scripts/common.sh`) run with sh against a
 * stand-in for the docker CLI that answers as a replica would: the drain's grace limit, and the early
 * failure of a replica that exits or keeps restarting. The e2e tier runs them against real engines.
 */
import { execFile } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { afterEach, describe, expect, it } from "vitest";
import { REPO } from "./mockStack";

const COMMON = ["engine-tls.sh", "common.sh"].map((f) => fs.readFileSync(path.join(REPO, "components/rollout/scripts", f), "utf8")).join("\n");
const dirs: string[] = [];
afterEach(() => dirs.splice(0).forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

/**
 * Runs `script` after common.sh with a fake `docker` on PATH: `exec ... curl .../metrics` prints `metrics`,
 * `/health` fails, `inspect` prints `state` (each call may take the next line of a list), `logs` prints
 * two lines.
 */
function run(
    script: string,
    fake: { metrics?: string; states?: string[]; docker?: (dir: string) => string },
    env: Record<string, string> | ((dir: string) => Record<string, string>) = {},
): Promise<{ code: number; out: string; seconds: number; dir: string }> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vllm-nginx-scripts-"));
    dirs.push(dir);
    fs.writeFileSync(path.join(dir, "metrics"), fake.metrics ?? "");
    fs.writeFileSync(path.join(dir, "states"), (fake.states ?? []).join("\n") + "\n");
    fs.writeFileSync(
        path.join(dir, "docker"),
        fake.docker?.(dir) ??
            `#!/bin/sh
case "$*" in
  *"/metrics"*) cat "${dir}/metrics" ;;
  *"/health"*) exit 7 ;;
  inspect*) line=$(head -n 1 "${dir}/states"); [ "$(wc -l < "${dir}/states")" -gt 1 ] && sed -i 1d "${dir}/states"; echo "$line" ;;
  logs*) echo "replica: error: argument --max-model-len: invalid value"; echo "replica: exiting" ;;
  *) exit 0 ;;
esac
`,
        { mode: 0o755 },
    );
    const started = Date.now();
    const extra = typeof env === "function" ? env(dir) : env;
    return new Promise((resolve) => {
        execFile("sh", ["-c", `${COMMON}\n${script}`], { env: { ...process.env, PATH: `${dir}:${process.env.PATH}`, LB_CONTAINER: "lb", LB_ENGINE: "", ...extra }, encoding: "utf8" }, (error, stdout, stderr) =>
            resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, out: stdout + stderr, seconds: (Date.now() - started) / 1000, dir }),
        );
    });
}

const BUSY = 'vllm:num_requests_running{engine="0",model_name="m"} 2.0\nvllm:num_requests_waiting{engine="0",model_name="m"} 1.0\n';
const IDLE = 'vllm:num_requests_running{engine="0",model_name="m"} 0.0\nvllm:num_requests_waiting{engine="0",model_name="m"} 0.0\n';

describe("drain", () => {
    it("counts running and waiting requests from the replica's /metrics", async () => {
        expect((await run('in_flight 10.0.0.1:8000', { metrics: BUSY })).out.trim()).toBe("3");
    });

    it("returns once the replica reports nothing running or waiting in two readings a second apart", async () => {
        const r = await run("drain vllm1 10.0.0.1:8000 30", { metrics: IDLE });
        expect(r.out).toContain("vllm1: drained (no running or waiting request, no open connection from the balancer)");
        expect(r.seconds).toBeLessThan(5);
    });

    it("gives up at the grace limit, saying how many requests the stop will end", async () => {
        const r = await run("drain vllm1 10.0.0.1:8000 2", { metrics: BUSY });
        expect(r.code).toBe(0);
        expect(r.out).toContain("vllm1: grace period of 2s reached with 3 request(s) still running or waiting; they end when it stops");
        // The scripts count in whole seconds (date +%s), and a deadline passes once the clock is past it.
        expect(r.seconds).toBeGreaterThanOrEqual(2);
        expect(r.seconds).toBeLessThan(6);
    });

    it("has nothing to wait for when the replica does not answer", async () => {
        expect((await run("drain vllm1 10.0.0.1:8000 30", { metrics: "" })).out).toContain("not answering /metrics, nothing left to drain");
    });
});

describe("drain counts what the balancer sent, not only what the replica's engine reports", () => {
    /** /proc/net/tcp of the balancer's container with `open` ESTABLISHED connections to 10.0.0.1:8000 (0100000A:1F40), and one closing. */
    const tcp = (open: number) =>
        [
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
            ...Array.from({ length: open }, (_, i) => `   ${i}: 0200000A:${(40000 + i).toString(16).toUpperCase()} 0100000A:1F40 01 00000000:00000000 00:00000000 00000000     0        0 ${100 + i}`),
            "   9: 0200000A:9C50 0100000A:1F40 06 00000000:00000000 03:00000000 00000000     0        0 0",
            "  10: 0200000A:9C51 0200000A:1F40 01 00000000:00000000 00:00000000 00000000     0        0 200",
        ].join("\n");
    const balancer = (open: number) => (dir: string) => `#!/bin/sh
case "$*" in
  *"/metrics"*) cat "${dir}/metrics" ;;
  *"/proc/net/tcp"*) printf '%s\\n' '${tcp(open).split("\n").join("' '")}' ;;
esac
`;

    it("waits for the requests the balancer still has open when the replica exports no vllm: gauges (--disable-log-stats)", async () => {
        const r = await run("drain vllm1 10.0.0.1:8000 2", { metrics: "process_cpu_seconds_total 1.0\n", docker: balancer(2) });
        expect(r.code, r.out).toBe(0);
        expect(r.out).toContain("vllm1: grace period of 2s reached with 2 request(s) still running or waiting; they end when it stops");
    });

    it("waits for requests the engine does not count yet (pre-processing), which hold a connection from the balancer", async () => {
        const r = await run("drain vllm1 10.0.0.1:8000 2", { metrics: IDLE, docker: balancer(1) });
        expect(r.out).toContain("vllm1: grace period of 2s reached with 1 request(s) still running or waiting");
    });

    it("is drained when neither the engine nor the balancer has anything open", async () => {
        const r = await run("drain vllm1 10.0.0.1:8000 30", { metrics: "process_cpu_seconds_total 1.0\n", docker: balancer(0) });
        expect(r.out).toContain("vllm1: drained (no running or waiting request, no open connection from the balancer)");
        expect(r.seconds).toBeLessThan(5);
    });
});

describe("wait_healthy", () => {
    it("fails at once when the container exited, naming the replica, with the end of its log", async () => {
        const r = await run("wait_healthy vllm0 e2e-vllm0 - 10.0.0.1:8000 60", { states: ["exited false 0 2"] });
        expect(r.code).toBe(1);
        expect(r.out).toContain("replica vllm0 (container e2e-vllm0) did not become healthy: it exited with code 2.");
        expect(r.out).toContain("    replica: error: argument --max-model-len: invalid value");
        expect(r.out).toContain("Fix the settings and run `pulumi up` again to finish the rollout.");
        expect(r.seconds).toBeLessThan(3);
    });

    it("fails when the container keeps restarting (a crash loop under a restart policy)", async () => {
        const r = await run("wait_healthy vllm0 e2e-vllm0 - 10.0.0.1:8000 60", { states: ["running false 0 0", "restarting true 1 2", "restarting true 2 2"] });
        expect(r.code).toBe(1);
        expect(r.out).toContain("it keeps exiting (exit code 2, restarted 2 times)");
    });

    it("waits for a replica that is still loading, until the startup timeout", async () => {
        const r = await run("wait_healthy vllm0 e2e-vllm0 - 10.0.0.1:8000 2", { states: ["running false 0 0"] });
        expect(r.code).toBe(1);
        expect(r.out).toContain("/health did not answer within 2s (startupTimeout)");
        expect(r.seconds).toBeGreaterThanOrEqual(2);
    });
});

describe("a docker call that fails for another reason than a missing container", () => {
    /** A fake docker whose `inspect` fails with `error` for its first `failures` calls, then prints `state`. */
    const flaky = (failures: number, error: string, state = "running false 0 0") => (dir: string) => `#!/bin/sh
case "$*" in
  *"/health"*) exit 7 ;;
  inspect*)
    n=$(cat "${dir}/inspects" 2>/dev/null || echo 0); echo $((n + 1)) >"${dir}/inspects"
    if [ "$n" -lt ${failures} ]; then echo "${error}" >&2; exit 1; fi
    case "$*" in *vllm-nginx.spec*) echo spec-a ;; *) echo "${state}" ;; esac ;;
esac
`;
    const SSH_DROPPED = "error during connect: Get \"http://docker.example.com/v1.41/containers/x/json\": command [ssh -- gpu-b docker system dial-stdio] has exited with exit status 255";

    it("is retried by wait_healthy, which then waits on as for a replica still loading", async () => {
        const r = await run("wait_healthy vllm0 e2e-vllm0 ssh://gpu-b 10.0.0.1:8000 3", { docker: flaky(2, SSH_DROPPED) });
        expect(r.code).toBe(1);
        expect(r.out).not.toContain("its container does not exist");
        expect(r.out).toContain("/health did not answer within 3s (startupTimeout)");
    });

    it("still names a container that does not exist as missing", async () => {
        const r = await run("wait_healthy vllm0 e2e-vllm0 - 10.0.0.1:8000 60", { docker: flaky(100, "Error: No such object: e2e-vllm0") });
        expect(r.code).toBe(1);
        expect(r.out).toContain("its container does not exist");
    });

    it("fails, naming the engine's answer, when the engine does not answer for long, rather than reading the container as missing", async () => {
        const r = await run("state ssh://gpu-b e2e-vllm0", { docker: flaky(100, SSH_DROPPED) });
        expect(r.code).toBe(1);
        expect(r.out).toContain("docker inspect e2e-vllm0 on ssh://gpu-b failed 5 times");
        expect(r.out).toContain("dial-stdio] has exited with exit status 255");
        expect(r.out).not.toContain("missing");
    }, 20_000);

    it("gives spec the same retries: a gate never takes a replica it could not read for one that does not exist", async () => {
        expect((await run("spec ssh://gpu-b e2e-vllm0", { docker: flaky(2, SSH_DROPPED) })).out.trim()).toBe("spec-a");
        expect((await run("spec - e2e-vllm0", { docker: flaky(100, "Error: No such object: e2e-vllm0") })).out.trim()).toBe("");
        const down = await run('have=$(spec ssh://gpu-b e2e-vllm0); echo "have=$have"', { docker: flaky(100, SSH_DROPPED) });
        expect(down.code).toBe(1);
        expect(down.out).not.toContain("have=");
    }, 20_000);
});

describe("replicas and the balancer on different engines", () => {
    it("asks the replica's engine about its container, whatever engine the balancer's calls went to meanwhile", async () => {
        // Only the replica's engine has the container; the balancer's engine answers /health probes (failing).
        const r = await run(
            "wait_healthy hostb-vllm0 mh-hostb-vllm0 ssh://hostb 10.0.0.12:8081 2",
            {
                docker: () => `#!/bin/sh
case "$*" in
  *"/health"*) exit 7 ;;
  inspect*) if [ "$DOCKER_HOST" = ssh://hostb ]; then echo "running false 0 0"; else echo "Error: No such object: mh-hostb-vllm0" >&2; exit 1; fi ;;
  logs*) echo "logs from $DOCKER_HOST" ;;
esac
`,
            },
            { LB_ENGINE: "ssh://hosta" },
        );
        expect(r.out).not.toContain("its container does not exist");
        expect(r.out).toContain("/health did not answer within 2s (startupTimeout)");
        expect(r.out).toContain("logs from ssh://hostb");
    });
});

describe("member.sh retire", () => {
    const MEMBER = fs.readFileSync(path.join(REPO, "components/rollout/scripts/member.sh"), "utf8");

    it("drains a replica whose engine dropped a call, rather than taking it for gone", async () => {
        const r = await run(
            `set -- retire\n${MEMBER}`,
            {
                metrics: IDLE,
                docker: (dir) => `#!/bin/sh
case "$*" in
  *"/nginx-health"*) echo "ok abc in=vllm0 out=vllm1" ;;
  *"/metrics"*) cat "${dir}/metrics" ;;
  inspect*)
    n=$(cat "${dir}/inspects" 2>/dev/null || echo 0); echo $((n + 1)) >"${dir}/inspects"
    if [ "$n" -lt 2 ]; then echo "error during connect: ssh: connection reset" >&2; exit 1; fi
    echo c0ffee ;;
esac
`,
            },
            { NAME: "vllm1", CONTAINER: "s-vllm1", CONTAINER_ID: "c0ffee", ENGINE: "ssh://gpu-b", ADDRESS: "10.0.0.11:8000", GRACE: "30", ROTATION_SH: "true" },
        );
        expect(r.code, r.out).toBe(0);
        expect(r.out).toContain("vllm1: drained (no running or waiting request, no open connection from the balancer)");
    });
});

describe("engines reached over TCP with TLS", () => {
    it("gives each docker call the engine's material, and leaves none of it behind (the client key is root on that engine)", async () => {
        const material = { ca: "CA", cert: "CERT", key: "KEY" };
        const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "vllm-nginx-tmpdir-"));
        dirs.push(tmp);
        const r = await run(
            "for i in 1 2 3 4 5; do fetch 10.0.0.1:8000 /health || true; done; rotation_line; echo calls done",
            // Each call logs the engine and whether the key is in place while it runs.
            { docker: (dir) => `#!/bin/sh\necho "$DOCKER_HOST $DOCKER_TLS_VERIFY $(cat "$DOCKER_CERT_PATH/key.pem")" >>"${dir}/calls"\nexit 7\n` },
            { ENGINE_TLS: JSON.stringify({ "tcp://lb:2376": material }), LB_ENGINE: "tcp://lb:2376", TMPDIR: tmp },
        );
        expect(r.out).toContain("calls done");
        expect(fs.readFileSync(path.join(r.dir, "calls"), "utf8").trim().split("\n")).toEqual(Array(6).fill("tcp://lb:2376 1 KEY"));
        expect(fs.readdirSync(tmp)).toEqual([]);
    });
});

describe("gate.sh", () => {
    const GATE = fs.readFileSync(path.join(REPO, "components/rollout/scripts/gate.sh"), "utf8");

    it("takes every changing replica of a batch out of rotation, not only the first (docker exec -i reads stdin)", async () => {
        const r = await run(
            GATE,
            {
                metrics: IDLE,
                docker: (dir) => `#!/bin/sh
echo "$*" >>"${dir}/calls"
case "$*" in
  *"/nginx-health"*) echo "ok abc in=vllm2 out=vllm0,vllm1" ;;
  *"/metrics"*) cat "${dir}/metrics" ;;
  *"vllm-nginx.spec"*) echo old ;;
  "exec -i"*) cat >/dev/null ;;
esac
`,
            },
            {
                BATCH: "vllm0 s-vllm0 - new 10.0.0.10:8000\nvllm1 s-vllm1 - new 10.0.0.11:8000",
                EARLIER: "",
                STARTUP_TIMEOUT: "60",
                GRACE: "30",
                ROTATION_SH: "true",
            },
        );
        expect(r.code, r.out).toBe(0);
        const retired = fs.readFileSync(path.join(r.dir, "calls"), "utf8").split("\n").filter((l) => l.includes("rotation.sh retire"));
        expect(retired.map((l) => l.split(" ").pop())).toEqual(["vllm0", "vllm1"]);
        expect(r.out).toContain("vllm0 left nginx's rotation");
        expect(r.out).toContain("vllm1 left nginx's rotation");
        expect(r.out).toContain("vllm0: drained");
        expect(r.out).toContain("vllm1: drained");
    });
});

describe("reconcile (the end of every `pulumi up`)", () => {
    const RECONCILE = fs.readFileSync(path.join(REPO, "components/rollout/scripts/reconcile.sh"), "utf8");
    /**
     * A balancer whose rotation is in the file `rotation` (an admit adds the name), and three replicas:
     * vllm0 and vllm1 run the spec "new" and vllm1 serves /health; vllm2 runs "old".
     */
    const fleet = (rotation: string) => (dir: string) => {
        fs.writeFileSync(path.join(dir, "rotation"), `${rotation}\n`);
        return `#!/bin/sh
echo "$*" >>"${dir}/calls"
case "$*" in
  *"/nginx-health"*) cat "${dir}/rotation" ;;
  *"rotation.sh admit "*) n=\${*##* }; sed -i "s/in=\\([^ ]*\\) /in=\\1,$n /; s/in=, /in=/" "${dir}/rotation" ;;
  *"10.0.0.11:8000/health"*) exit 0 ;;
  *"/health"*) exit 7 ;;
  *"vllm-nginx.spec"*s-vllm2*) echo old ;;
  *"vllm-nginx.spec"*) echo new ;;
  *"rotation.sh retire "*) n=\${*##* }; sed -i "s/in=\\(.*\\)\\b$n,\\?/in=\\1/; s/,* out=/ out=$n,/; s/out=,/out=/" "${dir}/rotation" ;;
  inspect*s-vllm2) echo "exited false 0 137" ;;
  inspect*) echo "running false 0 0" ;;
esac
`;
    };
    const MEMBERS = ["vllm0 s-vllm0 - new 10.0.0.10:8000", "vllm1 s-vllm1 - new 10.0.0.11:8000", "vllm2 s-vllm2 - new 10.0.0.12:8000"].join("\n");
    const admitted = (dir: string) =>
        fs
            .readFileSync(path.join(dir, "calls"), "utf8")
            .split("\n")
            .filter((l) => l.includes("rotation.sh admit"))
            .map((l) => l.split(" ").pop());

    it("brings back a replica that runs its deployed settings and serves /health (an `up` stopped after its gate retired it)", async () => {
        const r = await run(RECONCILE, { docker: fleet("ok abc in=vllm0 out=vllm1,vllm2") }, { MEMBERS, ROTATION_SH: "true" });
        expect(r.code, r.out).toBe(0);
        expect(admitted(r.dir)).toEqual(["vllm1"]);
        expect(r.out).toContain("vllm1 was out of nginx's rotation though it runs its deployed settings and serves /health: it is back in");
        expect(fs.readFileSync(path.join(r.dir, "rotation"), "utf8")).toContain("in=vllm0,vllm1 ");
    });

    it("leaves out, with a warning, a replica whose /health does not answer, and one that runs other settings", async () => {
        const r = await run(RECONCILE, { docker: fleet("ok abc in=vllm1 out=vllm0,vllm2") }, { MEMBERS, ROTATION_SH: "true" });
        expect(r.code, r.out).toBe(0);
        expect(admitted(r.dir)).toEqual([]);
        expect(r.out).toContain("warning: vllm0 is out of nginx's rotation: its /health does not answer.");
        expect(r.out).toContain("warning: vllm2 is out of nginx's rotation and does not run the settings this deployment declares (container s-vllm2: old)");
    });

    it("changes nothing when every replica in rotation runs", async () => {
        const members = MEMBERS.split("\n").slice(0, 2).join("\n");
        const r = await run(RECONCILE, { docker: fleet("ok abc in=vllm0,vllm1 out=") }, { MEMBERS: members, ROTATION_SH: "true" });
        expect(r.code, r.out).toBe(0);
        expect(r.out).toBe("");
        expect(fs.readFileSync(path.join(r.dir, "calls"), "utf8")).not.toMatch(/rotation\.sh/);
    });

    it("takes out of rotation a replica whose container is gone or stopped", async () => {
        const r = await run(RECONCILE, { docker: fleet("ok abc in=vllm0,vllm1,vllm2 out=") }, { MEMBERS, ROTATION_SH: "true" });
        expect(r.code, r.out).toBe(0);
        expect(r.out).toContain("warning: vllm2 was in nginx's rotation, but its container s-vllm2 is exited: it left the rotation");
        expect(fs.readFileSync(path.join(r.dir, "calls"), "utf8").split("\n").filter((l) => l.includes("rotation.sh retire"))).toHaveLength(1);
    });

    /** The balancer of `fleet`, whose routing status (the Lua balancer's JSON) lists what `status` holds, one line per reading. */
    const withStatus = (rotation: string, statuses: string[]) => (dir: string) => {
        fs.writeFileSync(path.join(dir, "status"), statuses.join("\n") + "\n");
        return fleet(rotation)(dir).replace(
            'case "$*" in\n',
            `case "$*" in\n  *"/nginx-routing"*) head -n 1 "${dir}/status"; [ "$(wc -l < "${dir}/status")" -gt 1 ] && sed -i 1d "${dir}/status" ;;\n`,
        );
    };
    const status = (adapters: Record<string, string | undefined>) =>
        JSON.stringify({
            method: "cache_aware",
            replicas: Object.entries(adapters).map(([name, list]) => ({ in_flight: 0, name, group: "chat", healthy: true, ...(list === undefined ? {} : { adapters: list }), in_rotation: true })),
            groups: [{ name: "chat", method: "cache_aware" }],
        });
    const ADAPTERS = "vllm0 lora-a,lora-b\nvllm1 lora-a,lora-b";

    it("waits until the balancer has loaded each replica's adapters, on every replica in rotation", async () => {
        const members = MEMBERS.split("\n").slice(0, 2).join("\n");
        const readings = [status({ vllm0: "lora-a", vllm1: undefined }), status({ vllm0: "lora-a,lora-b", vllm1: "" }), status({ vllm0: "lora-a,lora-b", vllm1: "lora-a,lora-b" })];
        const r = await run(RECONCILE, { docker: withStatus("ok abc in=vllm0,vllm1 out=", readings) }, { MEMBERS: members, ROTATION_SH: "true", ADAPTERS, ROUTING_STATUS: "127.0.0.1:8081/nginx-routing" });
        expect(r.code, r.out).toBe(0);
        expect(r.out.trim()).toBe("adapters loaded on the 2 replica(s) of groups with LoRA");
        expect(fs.readFileSync(path.join(r.dir, "calls"), "utf8").split("\n").filter((l) => l.includes("127.0.0.1:8081/nginx-routing"))).toHaveLength(3);
    });

    it("warns, naming each replica and what it lacks, when the adapters are not loaded in time; a replica out of rotation is not waited for", async () => {
        const members = MEMBERS.split("\n").slice(0, 2).join("\n");
        const r = await run(RECONCILE, { docker: withStatus("ok abc in=vllm1 out=vllm0", [status({ vllm0: undefined, vllm1: "lora-a" })]) }, {
            MEMBERS: members,
            ROTATION_SH: "true",
            ADAPTERS,
            ADAPTERS_TIMEOUT: "1",
            ROUTING_STATUS: "127.0.0.1:8081/nginx-routing",
        });
        expect(r.code, r.out).toBe(0);
        expect(r.out).toContain("warning: the balancer has not loaded every adapter within 1s: vllm1 (has lora-a, wants lora-a,lora-b). Its log says why (docker logs lb)");
        expect(r.out).not.toContain("vllm0 (has");
    });

    it("fails, naming the balancer, when it does not answer", async () => {
        const r = await run(RECONCILE, { docker: () => "#!/bin/sh\nexit 1\n" }, { MEMBERS, ROTATION_SH: "true" });
        expect(r.code).toBe(1);
        expect(r.out).toContain("nginx in lb does not answer /nginx-health: the rotation was not checked");
    });
});
