/**
 * Runs the program under Pulumi's mocks for one of the repo's stacks and records every resource the
 * program registers: its type, inputs and the resources it depends on. No engine, no Docker.
 */
import { createHash } from "crypto";
import * as fs from "fs";
import * as yaml from "js-yaml";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import { specialSecretSig, specialSigKey } from "@pulumi/pulumi/runtime/rpc";

export const REPO = path.resolve(__dirname, "..", "..");

export interface RecordedResource {
    type: string;
    name: string;
    inputs: Record<string, any>;
    /** Inputs that reached the engine as secrets (their values are unwrapped in `inputs`). */
    secretInputs: string[];
    dependsOn: string[];
    parent?: string;
    /** The name of the explicit provider the resource was registered with, if any. */
    provider?: string;
}

function stackFileValues(stack: string): Record<string, unknown> {
    const stackFile = path.join(REPO, `Pulumi.${stack}.yaml`);
    return fs.existsSync(stackFile) ? ((yaml.load(fs.readFileSync(stackFile, "utf8")) as { config?: Record<string, unknown> }).config ?? {}) : {};
}

/** `{secure: <ciphertext>}` parts of a stack file's value, in place of which the program gets a stand-in plain value. */
function isSecure(value: unknown): value is { secure: string } {
    return typeof value === "object" && value !== null && typeof (value as { secure?: unknown }).secure === "string" && Object.keys(value).length === 1;
}

/** A value with each encrypted part replaced by a stand-in (a bearer token derived from the ciphertext), as the CLI would decrypt it. */
function decryptStandIn(value: unknown): unknown {
    if (isSecure(value)) {
        return `mock-secret-${createHash("sha256").update(value.secure).digest("hex").slice(0, 24)}`;
    }
    if (Array.isArray(value)) {
        return value.map(decryptStandIn);
    }
    if (typeof value === "object" && value !== null) {
        return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, decryptStandIn(v)]));
    }
    return value;
}

/** The keys of a stack file with an encrypted part: the CLI hands them to the program as secrets. */
export function stackSecretKeys(stack: string): string[] {
    const hasSecure = (value: unknown): boolean =>
        isSecure(value) || (Array.isArray(value) ? value.some(hasSecure) : typeof value === "object" && value !== null && Object.values(value).some(hasSecure));
    return Object.entries(stackFileValues(stack))
        .filter(([, value]) => hasSecure(value))
        .map(([key]) => (key.includes(":") ? key : `vllm-nginx:${key}`));
}

/**
 * Stack config as the CLI hands it to the program: project defaults, then the stack file's values (an
 * encrypted part as a stand-in plain value; see `stackSecretKeys`).
 */
export function stackConfig(stack: string, overrides: Record<string, unknown> = {}): Record<string, string> {
    const project = yaml.load(fs.readFileSync(path.join(REPO, "Pulumi.yaml"), "utf8")) as { config: Record<string, { default?: unknown }> };
    const values = decryptStandIn(stackFileValues(stack)) as Record<string, unknown>;
    const config: Record<string, string> = {};
    const put = (key: string, value: unknown) => {
        config[key] = typeof value === "string" ? value : JSON.stringify(value);
    };
    for (const [key, decl] of Object.entries(project.config)) {
        if (decl.default !== undefined) {
            put(key, decl.default);
        }
    }
    for (const [key, value] of Object.entries({ ...values, ...overrides })) {
        put(key.includes(":") ? key : `vllm-nginx:${key}`, value);
    }
    return config;
}

/**
 * Sets up the mocks and config for `stack`, imports the program, and waits until every resource is
 * registered. Call once per test file: the Pulumi runtime is global to the process.
 */
export async function runProgram(
    stack: string,
    overrides: Record<string, unknown> = {},
    secretKeys: string[] = [],
    program: () => Promise<Record<string, unknown>> = async () => (await import("../../index")).default(),
    previousOutputs: Record<string, unknown> = {},
) {
    const resources: RecordedResource[] = [];

    // The secrets set here were never encrypted by a CLI: the check of the empty passphrase, which reads the
    // environment the CLI gives the program, is the pure checkEmptyPassphrase's (config.warnings.test.ts).
    delete process.env.PULUMI_CONFIG_PASSPHRASE;
    pulumi.runtime.setAllConfig(stackConfig(stack, overrides), [...secretKeys, ...stackSecretKeys(stack)]);
    await pulumi.runtime.setMocks(
        {
            newResource(args) {
                const record = resources.find((r) => r.name === args.name && r.type === args.type);
                if (record) {
                    for (const [key, value] of Object.entries(args.inputs)) {
                        if (isSecret(value)) {
                            record.secretInputs.push(key);
                        }
                        record.inputs[key] = unwrapSecrets(value);
                    }
                }
                const computed: Record<string, unknown> = {};
                if (args.type === "docker:index/remoteImage:RemoteImage") {
                    computed.imageId = `sha256:id-of-${args.inputs.name}`;
                }
                if (args.type === "command:local:Command") {
                    computed.stdout = "installed";
                }
                if (args.type === "pulumi:pulumi:StackReference") {
                    // The stack's own last deployment, as a stack reference to itself reads it.
                    computed.outputs = previousOutputs;
                    computed.secretOutputNames = [];
                }
                return { id: `${args.name}-id`, state: { ...args.inputs, ...computed } };
            },
            call(args) {
                return args.inputs;
            },
        },
        "vllm-nginx",
        stack,
        false,
        "organization",
    );

    // The mock monitor sees each registration's dependencies; the mocks API does not pass them on.
    const monitor = pulumi.runtime.getMonitor() as any;
    const register = monitor.registerResource.bind(monitor);
    monitor.registerResource = (req: any, callback: any) => {
        const record: RecordedResource = {
            type: req.getType(),
            name: req.getName(),
            inputs: {},
            secretInputs: [],
            dependsOn: req.getDependenciesList().map((urn: string) => urn.split("::").pop()),
            parent: req.getParent() ? req.getParent().split("::").pop() : undefined,
            // A provider reference is `<urn>::<id>`; the URN ends in the provider's name.
            provider: req.getProvider() ? req.getProvider().split("::").slice(-2, -1)[0] : undefined,
        };
        resources.push(record);
        return register(req, callback);
    };
    // Reads (a stack reference is one) go through their own call.
    const read = monitor.readResource.bind(monitor);
    monitor.readResource = (req: any, callback: any) => {
        resources.push({ type: req.getType(), name: req.getName(), inputs: req.getProperties()?.toJavaScript() ?? {}, secretInputs: [], dependsOn: [] });
        return read(req, callback);
    };

    const exported = await program();
    const outputs: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(exported)) {
        outputs[key] = await resolve(value as pulumi.Output<unknown>);
    }
    return { resources, outputs };
}

export function resolve<T>(output: pulumi.Output<T>): Promise<T> {
    return new Promise((done) => output.apply((value) => done(value)));
}

export function ofType(resources: RecordedResource[], type: string): RecordedResource[] {
    return resources.filter((r) => r.type === type);
}

function isSecret(value: unknown): boolean {
    return typeof value === "object" && value !== null && (value as Record<string, unknown>)[specialSigKey] === specialSecretSig;
}

function unwrapSecrets(value: unknown): any {
    if (isSecret(value)) {
        return unwrapSecrets((value as { value: unknown }).value);
    }
    if (Array.isArray(value)) {
        return value.map(unwrapSecrets);
    }
    if (typeof value === "object" && value !== null) {
        return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, unwrapSecrets(v)]));
    }
    return value;
}
