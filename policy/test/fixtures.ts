import type { PolicyResource, ResourceValidationArgs, ResourceValidationPolicy, StackValidationArgs, StackValidationPolicy } from "@pulumi/policy";
import * as policySdk from "@pulumi/policy";
import { CONTAINER_TYPE, REMOTE_IMAGE_TYPE } from "../labels";

/** A value the engine does not know yet during a preview (an image ID before its build). */
export const UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";

export interface SyntheticResource {
    type: string;
    name: string;
    props: Record<string, unknown>;
    providerHost?: string;
}

/** The proxy the policy server wraps properties in: reading an unknown value throws. Untyped in the SDK. */
const { unknownCheckingProxy } = policySdk as unknown as { unknownCheckingProxy: <T extends object>(props: T) => T };

const urn = (r: SyntheticResource) => `urn:pulumi:test::vllm-nginx::${r.type}::${r.name}`;

function labelList(labels: Record<string, string | undefined>) {
    return Object.entries(labels)
        .filter((entry): entry is [string, string] => entry[1] !== undefined)
        .map(([label, value]) => ({ label, value }));
}

/** A replica container as the program declares it, with the labels it carries. */
export function replica(
    name: string,
    opts: {
        ip?: string;
        port?: number;
        gpus?: string[];
        host?: string;
        model?: string;
        startupTimeout?: string;
        extraProps?: Record<string, unknown>;
        labelGpus?: boolean;
    } = {},
): SyntheticResource {
    const gpus = opts.gpus ?? [];
    return {
        type: CONTAINER_TYPE,
        name: `fleet-${name}-container`,
        props: {
            name: `test-${name}`,
            image: "sha256:0123",
            ports: [{ internal: 8000, external: opts.port ?? 8081, ...(opts.ip === undefined ? {} : { ip: opts.ip }) }],
            ...(gpus.length > 0 ? { deviceRequests: [{ driver: "nvidia", deviceIds: gpus, capabilities: ["gpu"] }] } : {}),
            labels: labelList({
                "vllm-nginx.stack": "test",
                "vllm-nginx.role": "replica",
                "vllm-nginx.replica": name,
                "vllm-nginx.host": opts.host,
                "vllm-nginx.gpus": gpus.length > 0 && opts.labelGpus !== false ? gpus.join(",") : undefined,
                "vllm-nginx.model": opts.model ?? "Qwen/Qwen2.5-0.5B-Instruct",
                "vllm-nginx.startup-timeout": opts.startupTimeout ?? "1800",
            }),
            ...opts.extraProps,
        },
    };
}

/** The nginx container. */
export function balancer(opts: { ip?: string; clientKeys?: boolean; tls?: "on" | "off"; port?: number } = {}): SyntheticResource {
    return {
        type: CONTAINER_TYPE,
        name: "fleet-lb-container",
        props: {
            name: "test-nginx-lb",
            image: "sha256:4567",
            ports: [{ internal: 80, external: opts.port ?? 8000, ...(opts.ip === undefined ? {} : { ip: opts.ip }) }],
            labels: labelList({
                "vllm-nginx.stack": "test",
                "vllm-nginx.role": "balancer",
                "vllm-nginx.client-keys": opts.clientKeys === undefined ? undefined : opts.clientKeys ? "on" : "off",
                "vllm-nginx.tls": opts.tls,
            }),
        },
    };
}

export function remoteImage(name: string, build?: Record<string, unknown>): SyntheticResource {
    return { type: REMOTE_IMAGE_TYPE, name: `img-${name}`, props: { name, keepLocally: true, ...(build ? { build } : {}) } };
}

function policyResource(r: SyntheticResource): PolicyResource {
    return {
        type: r.type,
        name: r.name,
        urn: urn(r),
        props: unknownCheckingProxy(r.props),
        opts: {} as PolicyResource["opts"],
        provider: r.providerHost === undefined ? undefined : { type: "pulumi:providers:docker", name: "remote", urn: "urn:provider", props: { host: r.providerHost } },
        dependencies: [],
        propertyDependencies: {},
        isType: () => false,
        asType: () => undefined,
    };
}

export interface Violation {
    message: string;
    urn?: string;
}

/** Runs a resource policy on one resource the way the policy server does, and returns its violations. */
export async function checkResource(policy: ResourceValidationPolicy, r: SyntheticResource, config: Record<string, unknown> = {}): Promise<Violation[]> {
    const violations: Violation[] = [];
    const args = {
        ...policyResource(r),
        stackTags: new Map<string, string>(),
        getConfig: () => config,
        notApplicable: () => {
            throw new Error("not applicable");
        },
    } as unknown as ResourceValidationArgs;
    const validations = Array.isArray(policy.validateResource) ? policy.validateResource : [policy.validateResource!];
    for (const validate of validations) {
        await validate(args, (message, u) => violations.push({ message, urn: u ?? args.urn }));
    }
    return violations;
}

/** Runs a stack policy on a whole stack, and returns its violations. */
export async function checkStack(policy: StackValidationPolicy, resources: SyntheticResource[]): Promise<Violation[]> {
    const violations: Violation[] = [];
    const args = {
        resources: resources.map(policyResource),
        stackTags: new Map<string, string>(),
        getConfig: () => ({}),
        notApplicable: () => {
            throw new Error("not applicable");
        },
    } as unknown as StackValidationArgs;
    await policy.validateStack(args, (message, u) => violations.push({ message, urn: u }));
    return violations;
}

export const urnOf = urn;
