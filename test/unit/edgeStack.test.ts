/**
 * The front door's secrets under Pulumi's mocks: read from stack config as secret outputs, handed to the
 * edge install only as its stdin (a secret input, encrypted in state), and never in a plain input.
 */
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { beforeAll, describe, expect, it } from "vitest";
import { readStackConfig } from "../../components/config";
import { edgeInstallCommand, edgeSecretBundle } from "../../components/edge";
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

describe("the edge install's secrets", () => {
    let resources: RecordedResource[];
    let outputs: Record<string, unknown>;
    beforeAll(async () => {
        ({ resources, outputs } = await runProgram(
            "dev",
            { clientKeys: CLIENT_KEYS, apiKey: REPLICA, tls: "provided", tlsCertificate: pair.certificate, tlsKey: pair.privateKey },
            SECRETS,
            async () => {
                const { settings, secrets } = readStackConfig();
                const bundle = edgeSecretBundle(settings.edge, secrets);
                const install = edgeInstallCommand(settings.edge, { container: "dev-nginx-lb", engine: "" });
                new command.local.Command("edge", { create: install.create, update: install.create, stdin: bundle, environment: install.environment });
                return { clients: pulumi.output(settings.edge.clients), bundleIsSecret: pulumi.output(pulumi.isSecret(bundle)), spec: pulumi.output(secrets.digest) };
            },
        ));
    });

    it("reads names and limits in plain, for the rendered config", () => {
        expect(outputs.clients).toEqual([
            { name: "alice", rps: 5, burst: 5, concurrent: 2 },
            { name: "bob", rps: undefined, burst: undefined, concurrent: undefined },
        ]);
    });

    it("hands the keys, the replicas' key and the TLS pair to the install only as a secret stdin", () => {
        const [edge] = ofType(resources, "command:local:Command");
        expect(outputs.bundleIsSecret).toBe(true);
        expect(edge!.secretInputs).toContain("stdin");
        // Alice's key as a regex (its "+" escaped), the others as they are.
        for (const text of ["alice-key-0123456789\\+/=", BOB, `Bearer ${REPLICA}`, pair.certificate.trim(), pair.privateKey.trim()]) {
            expect(edge!.inputs.stdin).toContain(text);
        }
        const { stdin: _stdin, ...plain } = edge!.inputs;
        for (const text of SECRET_TEXTS) {
            expect(JSON.stringify(plain)).not.toContain(text);
        }
        expect(edge!.inputs.environment).toMatchObject({ LB_CONTAINER: "dev-nginx-lb", TLS_MODE: "provided", TLS_NAMES: "" });
    });

    it("leaves the replicas' spec digest alone when only the balancer's secrets change", () => {
        pulumi.runtime.setAllConfig(stackConfig("dev", { clientKeys: [CLIENT_KEYS[1]], apiKey: REPLICA, tls: "provided", tlsCertificate: pair.certificate, tlsKey: pair.privateKey }), SECRETS);
        expect(readStackConfig().secrets.digest).toBe(outputs.spec);
        pulumi.runtime.setAllConfig(stackConfig("dev", { clientKeys: CLIENT_KEYS, apiKey: "another-replica-key-0123", tls: "provided", tlsCertificate: pair.certificate, tlsKey: pair.privateKey }), SECRETS);
        expect(readStackConfig().secrets.digest).not.toBe(outputs.spec);
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
