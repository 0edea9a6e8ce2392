import type { PolicyResource, ReportViolation, ResourceValidationArgs, ResourceValidationPolicy, StackValidationArgs, StackValidationPolicy } from "@pulumi/policy";
import { imageBuildArgs, movingReason } from "./images";
import { CONTAINER_TYPE, LABEL, LOCAL_HOST, REMOTE_IMAGE_TYPE, describePort, gpusOf, isLoopback, known, labelsOf, portsOf } from "./labels";
import { DEFAULT_ASSUMPTIONS, StartupAssumptions, estimateFirstStart, formatDuration, formatParameters, parseSeconds } from "./startup";

/** The containers of a stack that carry a role label, with the labels read once. */
function fleetContainers(resources: PolicyResource[], role: string): { resource: PolicyResource; labels: Map<string, string> }[] {
    return resources
        .filter((r) => r.type === CONTAINER_TYPE)
        .map((resource) => ({ resource, labels: labelsOf(resource.props) }))
        .filter((c) => c.labels.get(LABEL.role) === role);
}

/** The environment variable vLLM reads its `--api-key` from. */
const API_KEY_ENV = "VLLM_API_KEY";

function checksKeys(labels: Map<string, string>): boolean {
    return labels.get(LABEL.clientKeys) === "on";
}

function replicaName(resource: PolicyResource | ResourceValidationArgs, labels: Map<string, string>): string {
    return labels.get(LABEL.replica) ?? resource.name;
}

/** Whether a replica requires vLLM's key (`VLLM_API_KEY` in its environment, which only the balancer sends). */
function requiresKey(props: Record<string, unknown>): boolean {
    return JSON.stringify(props.envs ?? []).includes(`"${API_KEY_ENV}=`);
}

/**
 * Replica ports on an address other hosts reach, without vLLM's key: anyone on the network then uses the
 * model around the balancer, its client keys and its limits. Client keys on the balancer do not guard them.
 */
export const noOpenReplicaPorts: StackValidationPolicy = {
    name: "no-open-replica-ports",
    description: "Replica ports are published on the loopback only, unless the replicas require a key that only the balancer sends (apiKey).",
    enforcementLevel: "mandatory",
    remediationSteps:
        'Publish replica ports on 127.0.0.1 (vllm-nginx:replicaPortBind, the default), or set vllm-nginx:apiKey (`pulumi config set --secret apiKey "$(openssl rand -hex 24)"`): the balancer sends it, clients never see it.',
    validateStack: (args: StackValidationArgs, reportViolation: ReportViolation) => {
        const balancers = fleetContainers(args.resources, "balancer");
        const keys = balancers.some((b) => checksKeys(b.labels)) ? "the balancer's client keys do not guard them" : balancers.length === 0 ? "there is no balancer" : "the balancer checks no client key";
        for (const { resource, labels } of fleetContainers(args.resources, "replica")) {
            const open = portsOf(resource.props).filter((port) => !isLoopback(port.ip));
            if (open.length > 0 && !requiresKey(resource.props)) {
                reportViolation(
                    `replica ${replicaName(resource, labels)} publishes ${open.map(describePort).join(", ")} beyond the loopback without a key of its own (${keys}): ` +
                        "anyone who reaches this host uses the model around the balancer. " +
                        "Publish replica ports on 127.0.0.1 (vllm-nginx:replicaPortBind) or set vllm-nginx:apiKey, which only the balancer sends.",
                    resource.urn,
                );
            }
        }
    },
};

/**
 * A rule on a balancer published beyond the loopback without TLS, for a balancer that checks client keys
 * (`keys: true`) or one that does not: `message` says what crosses the network, given the open ports.
 */
function clearTextBalancer(rule: Pick<ResourceValidationPolicy, "name" | "description" | "enforcementLevel" | "remediationSteps"> & { keys: boolean; message: (open: string) => string }): ResourceValidationPolicy {
    const { keys, message, ...policy } = rule;
    return {
        ...policy,
        validateResource: (args: ResourceValidationArgs, reportViolation: ReportViolation) => {
            if (args.type !== CONTAINER_TYPE) {
                return;
            }
            const labels = labelsOf(args.props);
            if (labels.get(LABEL.role) !== "balancer" || labels.get(LABEL.tls) === "on" || checksKeys(labels) !== keys) {
                return;
            }
            const open = portsOf(args.props).filter((port) => !isLoopback(port.ip));
            if (open.length > 0) {
                reportViolation(message(`${open.map(describePort).join(", ")} beyond the loopback without TLS (${LABEL.tls}=${labels.get(LABEL.tls) ?? "unset"})`));
            }
        },
    };
}

/**
 * The balancer on an address other hosts reach, without TLS and without client keys: prompts and
 * completions cross the network in clear text. Advisory: on a private network, or behind a TLS proxy of
 * the user's, that can be what they want.
 */
export const publicBalancerNeedsTls = clearTextBalancer({
    name: "public-balancer-needs-tls",
    description: "A balancer published beyond the loopback terminates TLS.",
    enforcementLevel: "advisory",
    remediationSteps: "Publish the balancer on 127.0.0.1 (vllm-nginx:lbBind) behind your own TLS proxy, or turn on TLS (vllm-nginx:tls).",
    keys: false,
    message: (open) =>
        `the balancer publishes ${open}: prompts and completions cross the network in clear text. ` +
        "Publish it on 127.0.0.1 (vllm-nginx:lbBind) behind a TLS proxy, or turn on TLS (vllm-nginx:tls).",
});

/**
 * The balancer checks client keys on an address other hosts reach, without TLS: every request carries a
 * key in clear text, and anyone on the path can take it and use the fleet under its name and limits.
 */
export const clientKeysNeedTls = clearTextBalancer({
    name: "client-keys-need-tls",
    description: "A balancer that checks client keys beyond the loopback terminates TLS.",
    enforcementLevel: "mandatory",
    remediationSteps: "Turn on TLS (vllm-nginx:tls, provided or self-signed), or publish the balancer on 127.0.0.1 (vllm-nginx:lbBind) behind your own TLS proxy.",
    keys: true,
    message: (open) =>
        `the balancer checks client keys (${LABEL.clientKeys}=on) on ${open}: every request carries its key in clear text, for anyone on the path to take. ` +
        "Turn on TLS (vllm-nginx:tls) or publish it on 127.0.0.1 (vllm-nginx:lbBind) behind a TLS proxy.",
});

/**
 * Images named by a moving tag (or none, which is `latest`): two deploys of one commit can then run
 * different code, and a replica replaced on one host differs from its peers.
 */
export const noMovingImageTags: ResourceValidationPolicy = {
    name: "no-moving-image-tags",
    description: "Images are referenced by a version tag or a digest, not by `latest` or no tag.",
    enforcementLevel: "advisory",
    remediationSteps: "Name a version tag (vllm/vllm-openai:v0.11.0, nginx:1.28.0) or a digest (@sha256:...).",
    validateResource: (args: ResourceValidationArgs, reportViolation: ReportViolation) => {
        const report = (what: string, reference: string) => {
            const reason = movingReason(reference);
            if (reason) {
                reportViolation(`${what} \`${reference}\` ${reason}: the image can change between two deploys of the same commit. Name a version tag or a digest.`);
            }
        };
        if (args.type === REMOTE_IMAGE_TYPE) {
            const build = args.props.build as { buildArgs?: Record<string, unknown> } | undefined;
            if (build) {
                // A built image's name is the tag it is given here, not a reference to something pulled.
                for (const [arg, reference] of imageBuildArgs(build.buildArgs)) {
                    report(`build arg ${arg}`, reference);
                }
            } else if (typeof args.props.name === "string") {
                report("image", args.props.name);
            }
        } else if (args.type === CONTAINER_TYPE) {
            // The program hands containers an image ID; a hand-written one may name an image directly.
            const image = known(() => args.props.image as unknown);
            if (typeof image === "string" && image !== "" && !image.startsWith("sha256:")) {
                report("container image", image);
            }
        }
    },
};

/**
 * One GPU given to two replicas on one host: both load the model into its memory, and the second fails
 * or starves the first. The program refuses such config; this keeps hand-edited programs honest.
 */
export const oneReplicaPerGpu: StackValidationPolicy = {
    name: "one-replica-per-gpu",
    description: "A GPU of a host is assigned to one replica at most.",
    enforcementLevel: "mandatory",
    remediationSteps: "List each GPU id once in vllm-nginx:gpus (per host).",
    validateStack: (args: StackValidationArgs, reportViolation: ReportViolation) => {
        // host -> gpu id -> containers using it
        const byHost = new Map<string, Map<string, { resource: PolicyResource; name: string }[]>>();
        for (const resource of args.resources.filter((r) => r.type === CONTAINER_TYPE)) {
            const labels = labelsOf(resource.props);
            const gpus = gpusOf(resource.props, labels);
            if (gpus.size === 0) {
                continue;
            }
            const host = labels.get(LABEL.host) ?? providerHost(resource) ?? LOCAL_HOST;
            const perGpu = byHost.get(host) ?? new Map<string, { resource: PolicyResource; name: string }[]>();
            byHost.set(host, perGpu);
            for (const gpu of gpus) {
                perGpu.set(gpu, [...(perGpu.get(gpu) ?? []), { resource, name: replicaName(resource, labels) }]);
            }
        }
        for (const [host, perGpu] of byHost) {
            const everyGpu = perGpu.get("all") ?? [];
            for (const [gpu, users] of perGpu) {
                const sharing = gpu === "all" ? users : [...users, ...everyGpu.filter((e) => !users.includes(e))];
                if (sharing.length < 2) {
                    continue;
                }
                const names = sharing.map((u) => u.name).join(", ");
                const which = gpu === "all" ? "every GPU" : `GPU ${gpu}`;
                for (const user of sharing) {
                    reportViolation(`${which} of host ${host} is assigned to ${sharing.length} replicas (${names}); each GPU may serve one replica.`, user.resource.urn);
                }
            }
        }
    },
};

/** The `host` of the docker provider that manages a container, when it is not the default one. */
function providerHost(resource: PolicyResource): string | undefined {
    const host = known(() => resource.provider?.props?.host as unknown);
    return typeof host === "string" && host !== "" ? host : undefined;
}

/**
 * A startup timeout shorter than a first start of the model on a host whose cache lacks it: the deploy
 * then fails while the weights are still downloading.
 */
export const startupTimeoutFitsModel: ResourceValidationPolicy = {
    name: "startup-timeout-fits-model",
    description: "A replica's startup timeout leaves time to download and load its model on a host with an empty cache.",
    enforcementLevel: "advisory",
    remediationSteps: "Raise vllm-nginx:startupTimeout, or fill the Hugging Face cache (hfCacheDir) before the deploy.",
    configSchema: {
        properties: {
            downloadMBps: { type: "number", default: DEFAULT_ASSUMPTIONS.downloadMBps, description: "Download rate of model weights, in MB/s." },
            loadSeconds: { type: "number", default: DEFAULT_ASSUMPTIONS.loadSeconds, description: "Seconds from downloaded weights to a healthy server." },
        },
    },
    validateResource: (args: ResourceValidationArgs, reportViolation: ReportViolation) => {
        if (args.type !== CONTAINER_TYPE) {
            return;
        }
        const labels = labelsOf(args.props);
        const model = labels.get(LABEL.model);
        if (labels.get(LABEL.role) !== "replica" || model === undefined) {
            return;
        }
        const timeout = parseSeconds(labels.get(LABEL.startupTimeout) ?? (args.props.waitTimeout as number | undefined));
        const config = args.getConfig<Partial<StartupAssumptions>>();
        const assumptions: StartupAssumptions = {
            downloadMBps: config.downloadMBps ?? DEFAULT_ASSUMPTIONS.downloadMBps,
            loadSeconds: config.loadSeconds ?? DEFAULT_ASSUMPTIONS.loadSeconds,
        };
        const estimate = estimateFirstStart(model, assumptions);
        if (timeout === undefined || estimate === undefined || timeout >= estimate.totalSeconds) {
            return;
        }
        reportViolation(
            `replica ${replicaName(args, labels)} waits ${formatDuration(timeout)} for ${model} to start, but a first start on a host without it in the cache takes about ` +
                `${formatDuration(estimate.totalSeconds)}: ${formatParameters(estimate.parameters)} parameters x 2 bytes = ${(estimate.bytes / 1e9).toFixed(1)} GB, ` +
                `${formatDuration(estimate.downloadSeconds)} to download at ${assumptions.downloadMBps} MB/s, plus ${formatDuration(estimate.loadSeconds)} to load. ` +
                `Raise vllm-nginx:startupTimeout to ${formatDuration(estimate.totalSeconds)} or more, or fill the Hugging Face cache first.`,
        );
    },
};

export const policies = [noOpenReplicaPorts, publicBalancerNeedsTls, clientKeysNeedTls, noMovingImageTags, oneReplicaPerGpu, startupTimeoutFitsModel];
