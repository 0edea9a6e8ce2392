import { describe, expect, it, vi } from "vitest";
import { FleetConfigError, RawConfig, parseFleetConfig, type SecretConfig } from "../../components/config";
import { DEFAULTS } from "../../components/config/keys";
import { defaultSubnet } from "../../components/planning/subnet";
import { makeCertificate } from "../support/tls";

const CPU: RawConfig = { model: "Qwen/Qwen2.5-0.5B-Instruct", backend: "cpu", replicas: "2" };
const GPU: RawConfig = { model: "meta-llama/Llama-2-7b-chat-hf", gpus: ["0", "1"] };
const HOST_A = { name: "gpu-a", engine: "ssh://ops@gpu-a", gpus: ["0", "1"] };
const HOST_B = { name: "gpu-b", engine: "ssh://ops@gpu-b", address: "10.0.0.12", gpus: ["0", "1"] } as Record<string, unknown>;

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
        ["a cpuThreadsBind word vLLM does not know", { ...CPU, cpuThreadsBind: "all" }, "cpuThreadsBind", '"all"', /"auto", "nobind" or a list of core ranges/],
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
        ["malformed duration", { ...GPU, failTimeout: "ten seconds" }, "failTimeout", '"ten seconds"', /a whole number of seconds, at least 1s/],
        ["malformed duration of one that takes milliseconds", { ...GPU, readTimeout: "ten seconds" }, "readTimeout", '"ten seconds"', /a duration of at least 1s/],
        ["a fail timeout nginx cannot read (fail_timeout takes whole seconds)", { ...GPU, failTimeout: "1500ms" }, "failTimeout", '"1500ms"', /a whole number of seconds, at least 1s/],
        ["a stop grace period the rollout scripts cannot count", { ...GPU, stopGracePeriod: "2500ms" }, "stopGracePeriod", '"2500ms"', /a whole number of seconds, at least 0s/],
        ["a startup timeout the rollout scripts cannot count", { ...GPU, startupTimeout: "10500ms" }, "startupTimeout", '"10500ms"', /a whole number of seconds, at least 10s/],
        ["a tcp:// engine without TLS (the Docker API in clear text, with no authentication)", { model: "m", hosts: [HOST_A, { ...HOST_B, engine: "tcp://gpu-b:2375" }] }, "hosts[1].engine", '"tcp://gpu-b:2375"', /hostTls for "gpu-b": a tcp:\/\/ engine needs its TLS material/],
        ["duration with an unknown unit", { ...GPU, readTimeout: "1y" }, "readTimeout", '"1y"', /followed by ms, s, m, h or d/],
        ["malformed size", { ...GPU, shmSize: "lots" }, "shmSize", '"lots"', /a size: a number followed by b, k\/kb, m\/mb or g\/gb/],
        ["size with an unknown unit", { ...GPU, maxBodySize: "10tb" }, "maxBodySize", '"10tb"', /a size/],
        ["non-boolean flag", { ...GPU, ipcHost: "yes" }, "ipcHost", '"yes"', /true or false/],
        ["bad bind address", { ...GPU, replicaPortBind: "localhost" }, "replicaPortBind", '"localhost"', /an IPv4 address/],
        ["bad subnet", { ...GPU, networkSubnet: "10.0.0.0/8" }, "networkSubnet", '"10.0.0.0/8"', /prefix from \/16 to \/28/],
        ["subnet too small for the replicas", { model: "m", gpus: ["0", "1", "2", "3", "4", "5", "6", "7"], networkSubnet: "172.29.5.0/28" }, "networkSubnet", '"172.29.5.0/28"', /room for 8 replicas/],
        ["a misspelt key", { ...GPU, balancerr: "round_robin" }, "balancerr", '"round_robin"', /not a known key/],
        ["unknown restart policy", { ...GPU, restartPolicy: "sometimes" }, "restartPolicy", '"sometimes"', /one of "no", "on-failure"/],
        ["a GPU listed twice on one host", { model: "m", hosts: [HOST_A, { ...HOST_B, gpus: ["1", "1"] }] }, "hosts[1].gpus", '["1","1"]', /each GPU may appear once: GPU 1 is in entry 0 and entry 1/],
        ["two hosts with one name", { model: "m", hosts: [HOST_A, { ...HOST_B, name: "gpu-a" }] }, "hosts[1].name", '"gpu-a"', /a name no other host has: hosts\[0\] is "gpu-a" too/],
        ["a balancer host that is not listed", { model: "m", hosts: [HOST_A, HOST_B], balancerHost: "gpu-z" }, "balancerHost", '"gpu-z"', /the name of one of hosts: "gpu-a", "gpu-b"/],
        ["lbPort among the balancer host's replica ports", { model: "m", hosts: [HOST_A, HOST_B], lbPort: "8082" }, "lbPort", "8082", /outside the replica ports on host gpu-a 8081-8082/],
        ["top-level gpus with hosts", { model: "m", hosts: [HOST_A], gpus: ["0"] }, "gpus", '["0"]', /set per host with hosts/],
        ["a host without an address, other than the balancer's", { model: "m", hosts: [HOST_A, { ...HOST_B, address: undefined }] }, "hosts[1].address", "(not set)", /required for a host that does not run the balancer/],
        ["an engine that is not an address", { model: "m", hosts: [{ ...HOST_A, engine: "gpu-a" }] }, "hosts[0].engine", '"gpu-a"', /ssh:\/\/user@host/],
        ["a replica port published on every interface of a host", { model: "m", hosts: [HOST_A, { ...HOST_B, address: "0.0.0.0" }] }, "hosts[1].address", '"0.0.0.0"', /a reachable address, not 0.0.0.0/],
        ["hosts not a list", { model: "m", hosts: { name: "gpu-a" } }, "hosts", '{"name":"gpu-a"}', /a list of hosts/],
        ["no nginx worker", { ...GPU, lbWorkers: "0" }, "lbWorkers", '"0"', /a whole number from 1 to 64/],
        ["more nginx workers than a balancer needs", { ...GPU, lbWorkers: "200" }, "lbWorkers", '"200"', /a whole number from 1 to 64/],
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

describe("the front door's config: client keys, limits, TLS", () => {
    const ALICE = "alice-key-0123456789+/=";
    const BOB = "bob-key-abcdefghijklmnop";
    const pair = makeCertificate();
    const other = makeCertificate();

    function problemsWith(raw: RawConfig, secrets: SecretConfig): string {
        try {
            parseFleetConfig({ ...GPU, ...raw }, "test", undefined, secrets);
        } catch (error) {
            expect(error).toBeInstanceOf(FleetConfigError);
            return (error as Error).message;
        }
        throw new Error(`expected ${JSON.stringify(raw)} to be rejected`);
    }

    // [case, plain config, secret values, key, value as shown, what is allowed]
    const table: [string, RawConfig, RawConfig, string, string, RegExp][] = [
        ["clientKeys not a list", {}, { clientKeys: { name: "alice", key: ALICE } }, "clientKeys", "(secret)", /a list of \{name, key, rps\?, burst\?, concurrent\?, models\?\}/],
        ["an entry that is not an object", {}, { clientKeys: [ALICE] }, "clientKeys[0]", "(secret)", /a list of \{name, key/],
        // Pulumi.multihost.yaml's example keys, as anyone decrypts them with the empty passphrase.
        [
            "the multihost example's published key",
            {},
            { clientKeys: [{ name: "alice", key: ALICE }, { name: "team-a", key: "team-a-ztlWFdLz1GSautr9y4IMXzGEDHg8SqCP" }] },
            "clientKeys[1].key",
            "(secret)",
            /the example key of Pulumi.multihost.yaml, which anyone with this repository can decrypt .*pulumi config set --path --secret 'vllm-nginx:clientKeys\[1\].key'/,
        ],
        ["the multihost example's other key", {}, { clientKeys: [{ name: "batch", key: "batch-ouZS5mOSJsFFW6xxQdk2IzceOnMIlFB" }] }, "clientKeys[0].key", "(secret)", /the example key of Pulumi.multihost.yaml/],
        ["a name with a space", {}, { clientKeys: [{ name: "alice smith", key: ALICE }] }, "clientKeys[0].name", '"alice smith"', /a name of up to 64 letters, digits/],
        ["a name nginx reads as its own word", {}, { clientKeys: [{ name: "default", key: ALICE }] }, "clientKeys[0].name", '"default"', /a name other than default, hostnames, include, volatile/],
        ["two names that differ in case only", {}, { clientKeys: [{ name: "alice", key: ALICE }, { name: "Alice", key: BOB }] }, "clientKeys[1].name", '"Alice"', /names are unique \(letter case aside\): clientKeys\[0\]/],
        ["a key too short", {}, { clientKeys: [{ name: "alice", key: "short" }] }, "clientKeys[0].key", "(secret)", /required: a bearer token of 16 to 256 characters/],
        ["a key with a quote", {}, { clientKeys: [{ name: "alice", key: 'alice"key-0123456789' }] }, "clientKeys[0].key", "(secret)", /letters, digits and - \. _ ~ \+ \/ =/],
        ["a missing key", {}, { clientKeys: [{ name: "alice" }] }, "clientKeys[0].key", "(not set)", /required/],
        ["the same key twice", {}, { clientKeys: [{ name: "alice", key: ALICE }, { name: "bob", key: ALICE }] }, "clientKeys[1].key", "(secret)", /keys are unique: clientKeys\[0\] has the same key/],
        ["a misspelt field (which may hold the key)", {}, { clientKeys: [{ name: "alice", kye: ALICE }] }, "clientKeys[0].kye", "(secret)", /not a field of a client key; its fields are name, key, rps, burst, concurrent/],
        ["a rate of 0", {}, { clientKeys: [{ name: "alice", key: ALICE, rps: 0 }] }, "clientKeys[0].rps", "0", /above 0/],
        ["a rate nginx cannot count", {}, { clientKeys: [{ name: "alice", key: ALICE, rps: 0.33 }] }, "clientKeys[0].rps", "0.33", /a whole number per minute \(0\.5 is 30 a minute\)/],
        ["a rate that is not a number", {}, { clientKeys: [{ name: "alice", key: ALICE, rps: "fast" }] }, "clientKeys[0].rps", '"fast"', /requests per second/],
        ["a burst without a rate", {}, { clientKeys: [{ name: "alice", key: ALICE, burst: 5 }] }, "clientKeys[0].burst", "5", /only together with rps/],
        ["a negative burst", {}, { clientKeys: [{ name: "alice", key: ALICE, rps: 5, burst: -1 }] }, "clientKeys[0].burst", "-1", /a whole number from 0 to 1000000/],
        ["no request at once", {}, { clientKeys: [{ name: "alice", key: ALICE, concurrent: 0 }] }, "clientKeys[0].concurrent", "0", /a whole number from 1 to 1000000/],
        ["clientKeys in plain text in the stack file", {}, { clientKeys: [{ name: "alice", key: ALICE }] }, "clientKeys", "(secret)", /stored in plain text in the stack file: set it with `pulumi config set --secret/],
        ["a replica key the balancer cannot send", {}, { clientKeys: [{ name: "alice", key: ALICE }], apiKey: "has space" }, "apiKey", "(secret)", /the balancer checks it \(without clientKeys\) and sends it to the replicas: a bearer token/],
        ["a replica key the balancer cannot check", {}, { apiKey: "has space" }, "apiKey", "(secret)", /the balancer checks it \(without clientKeys\) and sends it to the replicas: a bearer token/],
        ["an unknown TLS mode", { tls: "on" }, {}, "tls.mode", '"on"', /one of "off", "self-signed", "provided"/],
        ["tls not an object", { tls: ["self-signed"] }, {}, "tls", '["self-signed"]', /an object \{mode, http\?, httpPort\?, hosts\?\}/],
        ["an unknown TLS field", { tls: { mode: "self-signed", redirect: true } }, {}, "tls.redirect", "true", /not a field of tls; its fields are mode, http, httpPort, hosts/],
        ["a redirect without TLS", { tls: { http: "redirect" } }, {}, "tls.http", '"redirect"', /only with tls.mode "self-signed" or "provided"/],
        ["an unknown plain HTTP choice", { tls: { mode: "self-signed", http: "upgrade" } }, {}, "tls.http", '"upgrade"', /one of "off", "redirect"/],
        ["a redirect port that is lbPort", { lbPort: "8443", tls: { mode: "self-signed", http: "redirect", httpPort: 8443 } }, {}, "tls.httpPort", "8443", /a port other than lbPort \(8443\)/],
        ["a redirect port without a redirect", { tls: { mode: "self-signed", httpPort: 8080 } }, {}, "tls.httpPort", "8080", /only with tls.http "redirect"/],
        ["a certificate name that is neither a host nor an address", { tls: { mode: "self-signed", hosts: ["localhost", "bad host"] } }, {}, "tls.hosts", '["localhost","bad host"]', /"bad host" is neither/],
        ["hosts with a provided certificate", { tls: { mode: "provided", hosts: ["localhost"] } }, { tlsCertificate: pair.certificate, tlsKey: pair.privateKey }, "tls.hosts", '["localhost"]', /only with tls.mode "self-signed"/],
        ["provided without a certificate", { tls: "provided" }, { tlsKey: pair.privateKey }, "tlsCertificate", "(not set)", /required with tls.mode "provided": the PEM certificate chain/],
        ["provided without a key", { tls: "provided" }, { tlsCertificate: pair.certificate }, "tlsKey", "(not set)", /required with tls.mode "provided": the PEM private key/],
        ["a certificate without TLS provided", { tls: "self-signed" }, { tlsCertificate: pair.certificate }, "tlsCertificate", "(secret)", /only with tls.mode "provided"/],
        ["a certificate that is not PEM", { tls: "provided" }, { tlsCertificate: "not a certificate", tlsKey: pair.privateKey }, "tlsCertificate", "(secret)", /a PEM certificate/],
        ["a key that is not PEM", { tls: "provided" }, { tlsCertificate: pair.certificate, tlsKey: "not a key" }, "tlsKey", "(secret)", /a PEM private key without a passphrase/],
        ["the key of another certificate", { tls: "provided" }, { tlsCertificate: pair.certificate, tlsKey: other.privateKey }, "tlsKey", "(secret)", /the private key of tlsCertificate \(CN=vllm-nginx test\); this key belongs to another certificate/],
        ["exposeMetrics not a boolean", { exposeMetrics: "yes" }, {}, "exposeMetrics", '"yes"', /true or false/],
    ];

    it.each(table)("%s", (what, raw, values, key, shown, allowed) => {
        const message = problemsWith(raw, { values, unencrypted: what.includes("plain text") ? ["clientKeys"] : [] });
        const line = message.split("\n").find((l) => l.includes(`vllm-nginx:${key} = ${shown}:`));
        expect(line, message).toBeDefined();
        expect(line).toMatch(allowed);
        // No problem ever shows a secret: not a key, not a line of a PEM.
        for (const secret of [ALICE, BOB, 'alice"key-0123456789', "has space", ...[pair, other].flatMap((p) => p.privateKey.split("\n").filter((l) => l.length > 20 && !l.startsWith("-----")))]) {
            expect(message).not.toContain(secret);
        }
    });

    it("refuses an expired certificate", () => {
        vi.useFakeTimers({ toFake: ["Date"] });
        try {
            vi.setSystemTime(Date.now() + 5 * 86400_000); // the test pair is valid for 2 days
            const message = problemsWith({ tls: "provided" }, { values: { tlsCertificate: pair.certificate, tlsKey: pair.privateKey } });
            expect(message).toMatch(/vllm-nginx:tlsCertificate = \(secret\): a certificate that has not expired; this one expired on /);
        } finally {
            vi.useRealTimers();
        }
    });

    it("reads names and limits, never keys, and applies the defaults", () => {
        const s = parseFleetConfig({ ...GPU, tls: "self-signed" }, "t", undefined, {
            values: { clientKeys: [{ name: "alice", key: ALICE, rps: 5, concurrent: 4 }, { name: "ci", key: BOB, rps: "0.5" }, { name: "ops", key: "ops-key-0123456789abcdef" }] },
        });
        expect(s.edge.clients).toEqual([
            { name: "alice", rps: 5, burst: 5, concurrent: 4 },
            { name: "ci", rps: 0.5, burst: 1, concurrent: undefined },
            { name: "ops", rps: undefined, burst: undefined, concurrent: undefined },
        ]);
        expect(JSON.stringify(s)).not.toContain(ALICE);
        expect(s.edge.tls).toEqual({ mode: "self-signed", http: "off", httpPort: 80, hosts: ["localhost", "127.0.0.1"] });
        expect(s.edge.exposeMetrics).toBe(false);
    });

    it("defaults to no keys, no TLS, /metrics refused", () => {
        expect(parseFleetConfig(GPU, "t").edge).toEqual({ clients: [], replicaKey: false, tls: { mode: "off", http: "off", httpPort: 80, hosts: ["localhost", "127.0.0.1"] }, exposeMetrics: false });
    });

    it("knows whether the replicas check apiKey, which the balancer then checks itself when there are no client keys", () => {
        expect(parseFleetConfig(GPU, "t", undefined, { values: { apiKey: "replica-key-0123456789" } }).edge.replicaKey).toBe(true);
    });

    it("accepts a provided pair that belongs together", () => {
        const s = parseFleetConfig({ ...GPU, tls: { mode: "provided", http: "redirect", httpPort: "8080" } }, "t", undefined, { values: { tlsCertificate: pair.certificate, tlsKey: pair.privateKey } });
        expect(s.edge.tls).toMatchObject({ mode: "provided", http: "redirect", httpPort: 8080 });
    });
});
