import * as policySdk from "@pulumi/policy";

/**
 * What the policy SDK throws when a policy reads a value that is unknown during a preview. Its package
 * exports it but its type declarations leave it out.
 */
const { UnknownValueError } = policySdk as unknown as { UnknownValueError: new (...args: never[]) => Error };

/** The Docker labels the program puts on its containers; the rules read the fleet's shape from them. */
export const LABEL = {
    stack: "vllm-nginx.stack",
    /** `replica`, `balancer`, ... */
    role: "vllm-nginx.role",
    replica: "vllm-nginx.replica",
    /** The Docker host a replica runs on; `local` on a single engine. */
    host: "vllm-nginx.host",
    /** Comma-separated GPU ids of a replica; absent on CPU replicas. */
    gpus: "vllm-nginx.gpus",
    model: "vllm-nginx.model",
    /** Seconds `pulumi up` waits for a replica to become healthy. */
    startupTimeout: "vllm-nginx.startup-timeout",
    /** `on` when nginx checks client keys; absent or `off` when the balancer is open. */
    clientKeys: "vllm-nginx.client-keys",
    /** `on` or `off`. */
    tls: "vllm-nginx.tls",
} as const;

export const CONTAINER_TYPE = "docker:index/container:Container";
export const REMOTE_IMAGE_TYPE = "docker:index/remoteImage:RemoteImage";

/** The host a container runs on when it carries no host label and its provider names none. */
export const LOCAL_HOST = "local";

/** Properties of a resource as the policy SDK hands them over (unknown values throw when read). */
export type Props = Record<string, unknown>;

/**
 * Reads a value that may be unknown during a preview (an image ID that a build has not produced yet),
 * giving undefined instead of failing the whole policy for the resource.
 */
export function known<T>(read: () => T): T | undefined {
    try {
        return read();
    } catch (e) {
        if (e instanceof UnknownValueError) {
            return undefined;
        }
        throw e;
    }
}

/**
 * A container's labels as a map (the Docker provider keeps them as a list of `{label, value}`). A label
 * whose value is unknown during a preview (a replica's spec, a digest of its image) is left out.
 */
export function labelsOf(props: Props): Map<string, string> {
    const labels = new Map<string, string>();
    for (const entry of (props.labels ?? []) as { label?: string; value?: string }[]) {
        const label = known(() => entry?.label);
        const value = known(() => entry?.value);
        if (typeof label === "string" && value !== undefined) {
            labels.set(label, String(value));
        }
    }
    return labels;
}

export interface PublishedPort {
    internal?: number;
    external?: number;
    /** The host address the port is published on; Docker's default is every interface. */
    ip: string;
}

/** A container's published ports, with Docker's default address filled in. */
export function portsOf(props: Props): PublishedPort[] {
    return ((props.ports ?? []) as { internal?: number; external?: number; ip?: string }[]).map((port) => ({
        internal: port.internal,
        external: port.external,
        ip: port.ip === undefined || port.ip === "" ? "0.0.0.0" : port.ip,
    }));
}

/** True for addresses only this machine can reach: 127.0.0.0/8, ::1, localhost. */
export function isLoopback(address: string): boolean {
    const bare = address.trim().replace(/^\[(.*)\]$/, "$1").toLowerCase();
    return bare === "localhost" || bare === "::1" || /^127(\.\d{1,3}){3}$/.test(bare) || bare === "::ffff:127.0.0.1";
}

/** How a port reads in a message: `0.0.0.0:8081`. */
export function describePort(port: PublishedPort): string {
    const address = port.ip.includes(":") ? `[${port.ip}]` : port.ip;
    return `${address}:${port.external ?? port.internal ?? "?"}`;
}

/**
 * The GPUs a container is given: the `vllm-nginx.gpus` label, the device IDs of its device requests, and
 * Docker's `gpus` flag (`device=0,1`). `all` stands for a request of every GPU of the host
 * (`gpus: "all"`, or a device request with count -1 and no IDs).
 */
export function gpusOf(props: Props, labels: Map<string, string>): Set<string> {
    const ids = new Set<string>();
    const add = (list: string) =>
        list
            .split(",")
            .map((id) => id.trim())
            .filter((id) => id !== "")
            .forEach((id) => ids.add(id));
    const label = labels.get(LABEL.gpus);
    if (label !== undefined) {
        add(label);
    }
    for (const request of (props.deviceRequests ?? []) as { deviceIds?: string[]; count?: number }[]) {
        if (request.deviceIds && request.deviceIds.length > 0) {
            request.deviceIds.forEach((id) => add(String(id)));
        } else if (request.count === -1) {
            ids.add("all");
        }
    }
    const flag: unknown = props.gpus;
    if (typeof flag === "string" && flag !== "") {
        if (flag === "all") {
            ids.add("all");
        } else if (flag.startsWith("device=")) {
            add(flag.slice("device=".length).replace(/^"|"$/g, ""));
        }
    }
    return ids;
}
