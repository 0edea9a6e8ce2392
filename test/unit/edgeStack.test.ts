/**
 * The front door of the whole program under Pulumi's mocks: secrets read from stack config as secret
 * outputs, handed to the edge install only as its stdin (a secret input, encrypted in state) and never in
 * a plain input; the ports, labels and endpoint that TLS and keys change.
 */
import * as pulumi from "@pulumi/pulumi";
import { beforeAll, describe, expect, it } from "vitest";
import { readStackConfig } from "../../components/config";
import { makeCertificate } from "../support/tls";
import { RecordedResource, ofType, runProgram, stackConfig } from "./mockStack";

const ALICE = "alice-key-0123456789+/=";
const BOB = "bob-key-abcdefghijklmnop";
const REPLICA = "replica-key-0123456789";
const pair = makeCertificate();
const CLIENT_KEYS = [
    { name: "alice", key: ALICE, rps: 5, concurrent: 2 },
    { name: "bob", key: BOB },
];
const SECRETS = ["vllm-nginx:clientKeys", "vllm-nginx:apiKey", "vllm-nginx:tlsCertificate", "vllm-nginx:tlsKey"];
const SECRET_TEXTS = [ALICE, BOB, REPLICA, ...pair.privateKey.split("\n").filter((l) => l.length > 20 && !l.startsWith("-----"))];

describe("the front door of the dev stack under mocks: keys, a provided pair, a redirect", () => {
    let resources: RecordedResource[];
    let outputs: Record<string, unknown>;
    const container = (name: string) => ofType(resources, "docker:index/container:Container").find((c) => c.inputs.name === name)!;
    const labels = (c: RecordedResource) => Object.fromEntries((c.inputs.labels as Array<{ label: string; value: string }>).map((l) => [l.label, l.value]));
    beforeAll(async () => {
        ({ resources, outputs } = await runProgram(
            "dev",
            { clientKeys: CLIENT_KEYS, apiKey: REPLICA, tls: { mode: "provided", http: "redirect", httpPort: "8080" }, tlsCertificate: pair.certificate, tlsKey: pair.privateKey },
            SECRETS,
        ));
    });

    it("reads names and limits in plain, for the rendered config", () => {
        const { settings } = readStackConfig();
        expect(settings.edge.clients).toEqual([
            { name: "alice", rps: 5, burst: 5, concurrent: 2 },
            { name: "bob", rps: undefined, burst: undefined, concurrent: undefined },
        ]);
    });

    it("hands the keys, the replicas' key and the TLS pair to the edge install only as a secret stdin, on the balancer's container", () => {
        const edge = ofType(resources, "command:local:Command").find((c) => c.name === "fleet-lb-edge")!;
        expect(edge.secretInputs).toContain("stdin");
        // Alice's key as a regex (its "+" escaped), the others as they are.
        for (const text of ["alice-key-0123456789\\+/=", BOB, `Bearer ${REPLICA}`, pair.certificate.trim(), pair.privateKey.trim()]) {
            expect(edge.inputs.stdin).toContain(text);
        }
        const { stdin: _stdin, ...plain } = edge.inputs;
        for (const text of SECRET_TEXTS) {
            expect(JSON.stringify(plain)).not.toContain(text);
        }
        expect(edge.inputs.environment).toMatchObject({ LB_CONTAINER: "dev-nginx-lb", LB_ENGINE: "", TLS_MODE: "provided", TLS_NAMES: "" });
        expect(edge.inputs.triggers).toEqual(["fleet-lb-container-id"]);
        expect(edge.dependsOn).toContain("fleet-lb-container");
    });

    it("installs the config that includes the key maps after them, and renders no secret into it", () => {
        const config = ofType(resources, "command:local:Command").find((c) => c.name === "fleet-lb-config")!;
        expect(config.dependsOn).toContain("fleet-lb-edge");
        expect(config.inputs.stdin).toContain("include /etc/nginx/vllm-nginx/edge/client-keys.map;");
        expect(config.inputs.stdin).toMatch(/listen 443 ssl( http2)?;/);
        for (const text of SECRET_TEXTS) {
            expect(config.inputs.stdin).not.toContain(text);
            expect(JSON.stringify(outputs)).not.toContain(text);
        }
        // Only the replicas hold a key of their own (VLLM_API_KEY, a secret input); no container holds a client key or the TLS key.
        for (const c of ofType(resources, "docker:index/container:Container")) {
            for (const text of SECRET_TEXTS.filter((t) => t !== REPLICA)) {
                expect(JSON.stringify(c.inputs), c.name).not.toContain(text);
            }
            if (JSON.stringify(c.inputs.envs ?? []).includes(REPLICA)) {
                expect(c.name).toMatch(/^fleet-vllm\d-container$/);
                expect(c.secretInputs, c.name).toContain("envs");
            }
        }
    });

    it("publishes HTTPS on lbPort and the redirect on tls.httpPort, labels keys and TLS on, and names the https endpoint", () => {
        const lb = container("dev-nginx-lb");
        expect(lb.inputs.ports).toEqual([
            { internal: 443, external: 8000, ip: "0.0.0.0" },
            { internal: 80, external: 8080, ip: "0.0.0.0" },
        ]);
        expect(labels(lb)).toMatchObject({ "vllm-nginx.client-keys": "on", "vllm-nginx.tls": "on" });
        expect(outputs.endpoint).toBe("https://127.0.0.1:8000");
        expect(outputs.openaiBaseUrl).toBe("https://127.0.0.1:8000/v1");
    });

    it("gives a balancer without keys or TLS an empty bundle and its labels off", async () => {
        const { resources: plainResources } = await runProgram("dev");
        const edge = ofType(plainResources, "command:local:Command").find((c) => c.name === "fleet-lb-edge")!;
        expect(edge.inputs.stdin).toBe("#vllm-nginx-edge 1\n#file client-keys.map\n#file replica-authorization.map\ndefault \"\";\n#end\n");
        expect(edge.inputs.environment.TLS_MODE).toBe("off");
        const lb = ofType(plainResources, "docker:index/container:Container").find((c) => c.inputs.name === "dev-nginx-lb")!;
        expect(labels(lb)).toMatchObject({ "vllm-nginx.client-keys": "off", "vllm-nginx.tls": "off" });
    });

    it("leaves the replicas' spec digest alone when only the balancer's secrets change", () => {
        pulumi.runtime.setAllConfig(stackConfig("dev", { clientKeys: CLIENT_KEYS, apiKey: REPLICA, tls: "provided", tlsCertificate: pair.certificate, tlsKey: pair.privateKey }), SECRETS);
        const digest = readStackConfig().secrets.digest;
        pulumi.runtime.setAllConfig(stackConfig("dev", { clientKeys: [CLIENT_KEYS[1]], apiKey: REPLICA, tls: "provided", tlsCertificate: pair.certificate, tlsKey: pair.privateKey }), SECRETS);
        expect(readStackConfig().secrets.digest).toBe(digest);
        pulumi.runtime.setAllConfig(stackConfig("dev", { clientKeys: CLIENT_KEYS, apiKey: "another-replica-key-0123", tls: "provided", tlsCertificate: pair.certificate, tlsKey: pair.privateKey }), SECRETS);
        expect(readStackConfig().secrets.digest).not.toBe(digest);
    });

    it("refuses client keys or a TLS key stored in plain text in the stack file, without showing them", () => {
        pulumi.runtime.setAllConfig(stackConfig("dev", { clientKeys: CLIENT_KEYS, tls: "provided", tlsCertificate: pair.certificate, tlsKey: pair.privateKey }), ["vllm-nginx:tlsCertificate"]);
        let message = "";
        try {
            readStackConfig();
        } catch (error) {
            message = (error as Error).message;
        }
        expect(message).toContain("vllm-nginx:clientKeys = (secret): stored in plain text in the stack file");
        expect(message).toContain("vllm-nginx:tlsKey = (secret): stored in plain text in the stack file");
        for (const text of SECRET_TEXTS) {
            expect(message).not.toContain(text);
        }
    });
});
