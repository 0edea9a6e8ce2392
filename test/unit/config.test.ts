import { describe, expect, it } from "vitest";
import { FleetConfigError, RawConfig, parseFleetConfig } from "../../components/config";
import { DEFAULTS } from "../../components/config/keys";
import { defaultSubnet } from "../../components/planning/subnet";

const CPU: RawConfig = { model: "Qwen/Qwen2.5-0.5B-Instruct", backend: "cpu", replicas: "2" };
const GPU: RawConfig = { model: "meta-llama/Llama-2-7b-chat-hf", gpus: ["0", "1"] };

function problemsOf(raw: RawConfig): string {
    try {
        parseFleetConfig(raw, "test");
    } catch (error) {
        expect(error).toBeInstanceOf(FleetConfigError);
        return (error as Error).message;
    }
    throw new Error(`expected ${JSON.stringify(raw)} to be rejected`);
}

describe("bad input is rejected before anything is created, naming the key, the value and what is allowed", () => {
    // [case, config, key, value as shown, what is allowed]
    const table: [string, RawConfig, string, string, RegExp][] = [
        ["missing model", { gpus: ["0"] }, "model", "(not set)", /required: the Hugging Face model id/],
        ["gpu backend without gpus", { model: "m" }, "gpus", "(not set)", /required on the gpu backend/],
        ["empty gpus", { model: "m", gpus: [] }, "gpus", "(not set)", /required on the gpu backend/],
        ["a GPU used twice", { model: "m", gpus: ["0", "1,0"] }, "gpus", '["0","1,0"]', /each GPU may appear once: GPU 0 is in entry 0 and entry 1/],
        ["a non-numeric GPU id", { model: "m", gpus: ["0", "gpu1"] }, "gpus", '["0","gpu1"]', /GPU IDs are whole numbers/],
        ["gpus not a list", { model: "m", gpus: "0,1" }, "gpus", '"0,1"', /a list of strings/],
        ["gpus on the cpu backend", { ...CPU, gpus: ["0"] }, "gpus", '["0"]', /only for backend "gpu"/],
        ["cpuThreadsBind count differs from replicas", { ...CPU, cpuThreadsBind: ["0-3"] }, "cpuThreadsBind", '["0-3"]', /replicas is 2, cpuThreadsBind has 1/],
        ["overlapping core ranges", { ...CPU, cpuThreadsBind: ["0-3", "3-7"] }, "cpuThreadsBind", '["0-3","3-7"]', /must not overlap: core 3/],
        ["malformed core range", { ...CPU, cpuThreadsBind: ["0-3", "seven"] }, "cpuThreadsBind", '["0-3","seven"]', /core ranges look like "0-3"/],
        ["zero replicas", { ...CPU, replicas: "0" }, "replicas", '"0"', /a whole number from 1 to 64/],
        ["vllmImage and vllmBuild both set", { ...GPU, vllmImage: "vllm/vllm-openai:v0.11.0", vllmBuild: { context: "../vllm" } }, "vllmBuild", '{"context":"../vllm"}', /not allowed together with vllmImage/],
        ["vllmBuild without a context", { ...GPU, vllmBuild: { dockerfile: "docker/Dockerfile" } }, "vllmBuild", '{"dockerfile":"docker/Dockerfile"}', /an object \{context, dockerfile\?/],
        ["lbPort out of range", { ...GPU, lbPort: "70000" }, "lbPort", '"70000"', /a whole number from 1 to 65535/],
        ["lbPort not a number", { ...GPU, lbPort: "http" }, "lbPort", '"http"', /a whole number from 1 to 65535/],
        ["lbPort inside the replica port range", { ...GPU, lbPort: "8082" }, "lbPort", "8082", /outside the replica ports 8081-8082/],
        ["replica ports past 65535", { ...GPU, replicaPortBase: "65535" }, "replicaPortBase", "65535", /stay at or below 65535/],
        ["unknown balancer", { ...GPU, balancer: "fastest" }, "balancer", '"fastest"', /one of "least_conn", "round_robin", "random_two_least_conn", "cache_aware"/],
        ["a session header that is no header name", { ...GPU, balancer: "cache_aware", sessionHeader: "x user" }, "sessionHeader", '"x user"', /an HTTP header name of letters, digits and dashes/],
        ["a load bound below 1", { ...GPU, loadBound: "0.8" }, "loadBound", '"0.8"', /a number from 1 to 100/],
        ["a load bound that is no number", { ...GPU, loadBound: "tight" }, "loadBound", '"tight"', /a number from 1 to 100/],
        ["a health-check interval too short", { ...GPU, healthCheckInterval: "100ms" }, "healthCheckInterval", '"100ms"', /a duration from 200ms to 60s/],
        ["a health-check interval too long", { ...GPU, healthCheckInterval: "5m" }, "healthCheckInterval", '"5m"', /a duration from 200ms to 60s/],
        ["unknown backend", { ...GPU, backend: "tpu" }, "backend", '"tpu"', /one of "gpu", "cpu"/],
        ["malformed duration", { ...GPU, failTimeout: "ten seconds" }, "failTimeout", '"ten seconds"', /a duration of at least 1s/],
        ["duration with an unknown unit", { ...GPU, readTimeout: "1y" }, "readTimeout", '"1y"', /followed by ms, s, m, h or d/],
        ["malformed size", { ...GPU, shmSize: "lots" }, "shmSize", '"lots"', /a size: a number followed by b, k\/kb, m\/mb or g\/gb/],
        ["size with an unknown unit", { ...GPU, maxBodySize: "10tb" }, "maxBodySize", '"10tb"', /a size/],
        ["non-boolean flag", { ...GPU, ipcHost: "yes" }, "ipcHost", '"yes"', /true or false/],
        ["bad bind address", { ...GPU, replicaPortBind: "localhost" }, "replicaPortBind", '"localhost"', /an IPv4 address/],
        ["bad subnet", { ...GPU, networkSubnet: "10.0.0.0/8" }, "networkSubnet", '"10.0.0.0/8"', /prefix from \/16 to \/28/],
        ["subnet too small for the replicas", { model: "m", gpus: ["0", "1", "2", "3", "4", "5", "6", "7"], networkSubnet: "172.29.5.0/28" }, "networkSubnet", '"172.29.5.0/28"', /room for 8 replicas/],
        ["a misspelt key", { ...GPU, balancerr: "round_robin" }, "balancerr", '"round_robin"', /not a known key/],
        ["unknown restart policy", { ...GPU, restartPolicy: "sometimes" }, "restartPolicy", '"sometimes"', /one of "no", "on-failure"/],
    ];

    it.each(table)("%s", (_case, raw, key, shown, allowed) => {
        const message = problemsOf(raw);
        const line = message.split("\n").find((l) => l.includes(`vllm-nginx:${key} = ${shown}:`));
        expect(line, message).toBeDefined();
        expect(line).toMatch(allowed);
    });

    it("names the stack, not a key, when the stack name cannot be used in Docker names", () => {
        let message = "";
        try {
            parseFleetConfig(GPU, "my stack");
        } catch (error) {
            message = (error as Error).message;
        }
        expect(message).toContain('stack name "my stack": must be usable in Docker names');
        expect(message).not.toContain("vllm-nginx:(");
    });

    it("reports every problem at once", () => {
        const message = problemsOf({ gpus: ["0", "0"], balancer: "x", lbPort: "0" });
        expect(message).toMatch(/^invalid stack config \(4 problems\)/);
        for (const key of ["model", "gpus", "balancer", "lbPort"]) {
            expect(message).toContain(`vllm-nginx:${key} =`);
        }
    });
});

describe("defaults", () => {
    it("applies every documented default in code", () => {
        const s = parseFleetConfig(GPU, "prod");
        expect(s).toMatchObject({
            prefix: "prod",
            serve: { model: GPU.model, servedModelName: undefined, vllmArgs: [] },
            replica: {
                backend: "gpu",
                cpuKvCacheSpace: 4,
                shmSizeBytes: Math.floor(10.24 * 1024 ** 3),
                ipcHost: true,
                portBind: "127.0.0.1",
                startupTimeoutSeconds: 1800,
                stopGraceSeconds: 120,
                restartPolicy: "unless-stopped",
                warmFirstReplica: true,
            },
            images: { vllmImage: DEFAULTS.gpuImage, vllmBuild: undefined, nginxBaseImage: "debian:12.12-slim" },
            proxy: { httpProxy: undefined, httpsProxy: undefined, noProxy: undefined },
            balancer: {
                method: "least_conn",
                sessionHeader: "x-user-id",
                loadBound: 1.25,
                healthCheckIntervalSeconds: 1,
                maxFails: 3,
                failTimeoutSeconds: 30,
                readTimeoutSeconds: 3600,
                connectTimeoutSeconds: 5,
                maxBodyBytes: 100 * 1024 * 1024,
                port: 8000,
                bind: "0.0.0.0",
            },
            network: { subnet: defaultSubnet("prod") },
            engines: { local: undefined },
        });
        expect(s.placement.slots.map((r) => r.hostPort)).toEqual([8081, 8082]);
        expect(s.rollout).toEqual({ maxUnavailable: 1 });
        expect(s.replica.hfCacheDir).toMatch(/\/\.cache\/huggingface$/);
        expect(s.replica.hfCacheDir).not.toContain("~");
    });

    it("reads the cache-aware settings: header names in lower case (nginx's $http_* form), decimal load bounds, sub-second health intervals", () => {
        const b = parseFleetConfig({ ...GPU, balancer: "cache_aware", sessionHeader: "X-Session-ID", loadBound: "1.5", healthCheckInterval: "500ms" }, "t").balancer;
        expect(b).toMatchObject({ method: "cache_aware", sessionHeader: "x-session-id", loadBound: 1.5, healthCheckIntervalSeconds: 0.5 });
        expect(parseFleetConfig({ ...GPU, loadBound: 2 }, "t").balancer.loadBound).toBe(2);
    });

    it("takes the local engine's address from docker:host", () => {
        expect(parseFleetConfig(GPU, "prod", "ssh://ops@gpu-box").engines).toEqual({ local: "ssh://ops@gpu-box" });
    });

    it("uses the CPU image on the cpu backend and builds instead of pulling when vllmBuild is set", () => {
        expect(parseFleetConfig(CPU, "t").images.vllmImage).toBe(DEFAULTS.cpuImage);
        const built = parseFleetConfig({ ...GPU, vllmBuild: { context: "../vllm", args: { max_jobs: 8 } } }, "t").images;
        expect(built.vllmImage).toBeUndefined();
        expect(built.vllmBuild).toEqual({ context: "../vllm", dockerfile: "docker/Dockerfile", target: "vllm-openai", args: { max_jobs: "8" } });
    });

    it("derives different subnets for different stacks", () => {
        expect(defaultSubnet("dev")).not.toBe(defaultSubnet("prod"));
        expect(defaultSubnet("dev")).toMatch(/^172\.29\.\d{1,3}\.0\/24$/);
    });
});
