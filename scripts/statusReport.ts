/**
 * The pure parts of `scripts/status`: reading the stack's outputs, the balancer's health line, a
 * replica's `/metrics` text and Prometheus's answers, and turning them into one report, shown as a
 * table or as JSON. No I/O here; `status.ts` fetches and prints.
 */
import { VLLM } from "../components/monitoring/metrics";

/** The stack outputs the status command reads (`pulumi stack output --json`). */
export interface StackOutputs {
    endpoint: string;
    /** `url` is absent for a replica of another host: it publishes nothing, and the relay reaches it. */
    replicas: Array<{ name: string; container: string; url?: string; group?: string }>;
    configId?: string;
    prometheusUrl?: string;
}

/** Checks the outputs' shape and says which output is missing or wrong. */
export function parseStackOutputs(value: unknown): StackOutputs {
    const fail = (what: string): never => {
        throw new Error(`the stack's outputs ${what}; run \`pulumi up\` for the stack first (outputs: ${JSON.stringify(value)?.slice(0, 200)})`);
    };
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
        return fail("are not an object");
    }
    const o = value as Record<string, unknown>;
    if (typeof o.endpoint !== "string" || !/^https?:\/\//.test(o.endpoint)) {
        fail('have no "endpoint" URL');
    }
    const isReplica = (r: unknown) =>
        typeof r === "object" && r !== null && typeof (r as Record<string, unknown>).name === "string" && ["string", "undefined"].includes(typeof (r as Record<string, unknown>).url);
    if (!Array.isArray(o.replicas) || !o.replicas.every(isReplica)) {
        fail('have no "replicas" list of {name, container, url (absent for a replica of another host)}');
    }
    const optional = (key: string) => {
        const v = o[key];
        return typeof v === "string" && v !== "" ? v : undefined;
    };
    return {
        endpoint: (o.endpoint as string).replace(/\/$/, ""),
        replicas: (o.replicas as Array<Record<string, unknown>>).map((r) => ({
            name: r.name as string,
            container: typeof r.container === "string" ? r.container : "",
            url: typeof r.url === "string" ? r.url.replace(/\/$/, "") : undefined,
            ...(typeof r.group === "string" ? { group: r.group } : {}),
        })),
        configId: optional("configId"),
        prometheusUrl: optional("prometheusUrl")?.replace(/\/$/, ""),
    };
}

/** What `GET /nginx-health` says: `ok <configId> in=<names> out=<names>` (rotation absent on older configs). */
export interface BalancerHealth {
    configId: string;
    inRotation?: string[];
    outOfRotation?: string[];
}

export function parseNginxHealth(text: string): BalancerHealth | undefined {
    const match = /^ok (\S+)((?: (?:in|out)=\S*)*)\s*$/.exec(text.trim());
    if (!match) {
        return undefined;
    }
    const field = (name: string) => {
        const m = new RegExp(` ${name}=(\\S*)`).exec(match[2]);
        return m ? m[1].split(",").filter((n) => n !== "") : undefined;
    };
    return { configId: match[1], inRotation: field("in"), outOfRotation: field("out") };
}

export interface MetricSample {
    name: string;
    labels: Record<string, string>;
    value: number;
}

/** Parses Prometheus text exposition into samples (comments and malformed lines are skipped). */
export function parseMetricsText(text: string): MetricSample[] {
    const samples: MetricSample[] = [];
    for (const line of text.split("\n")) {
        if (line.startsWith("#") || line.trim() === "") {
            continue;
        }
        const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?\s*$/.exec(line);
        if (!match) {
            continue;
        }
        const labels: Record<string, string> = {};
        for (const m of (match[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
            labels[m[1]] = m[2].replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c));
        }
        const value = parseValue(match[3]);
        if (Number.isNaN(value) && match[3] !== "NaN") {
            continue;
        }
        samples.push({ name: match[1], labels, value });
    }
    return samples;
}

function parseValue(text: string): number {
    if (text === "+Inf") {
        return Infinity;
    }
    if (text === "-Inf") {
        return -Infinity;
    }
    return Number(text);
}

/**
 * The q-quantile of a cumulative histogram, interpolated within its bucket as Prometheus's
 * `histogram_quantile` does. NaN without observations.
 */
export function histogramQuantile(q: number, buckets: Array<{ le: number; count: number }>): number {
    const sorted = [...buckets].sort((a, b) => a.le - b.le);
    const total = sorted.length > 0 ? sorted[sorted.length - 1].count : 0;
    if (total === 0 || !Number.isFinite(q) || sorted[sorted.length - 1].le !== Infinity) {
        return NaN;
    }
    const rank = q * total;
    const index = sorted.findIndex((b) => b.count >= rank);
    if (index === sorted.length - 1) {
        // Beyond the last finite bucket: its upper bound is the best answer, as in Prometheus.
        return sorted.length > 1 ? sorted[sorted.length - 2].le : NaN;
    }
    const upper = sorted[index];
    const lowerBound = index === 0 ? (upper.le > 0 ? 0 : upper.le) : sorted[index - 1].le;
    const lowerCount = index === 0 ? 0 : sorted[index - 1].count;
    const inBucket = upper.count - lowerCount;
    if (inBucket === 0) {
        return upper.le;
    }
    return lowerBound + (upper.le - lowerBound) * ((rank - lowerCount) / inBucket);
}

/** The numbers the status command shows for one replica. Undefined: not known. */
export interface ReplicaLoad {
    running?: number;
    waiting?: number;
    /** 0..1 */
    kvCacheUsage?: number;
    ttftP50Seconds?: number;
    /** Requests finished since the replica started (any finish reason). */
    requestsServed?: number;
}

/**
 * A replica's load from its own `/metrics`. Its TTFT p50 is over the replica's whole life: one scrape has
 * no window (Prometheus's is over the last minute).
 */
export function loadFromMetrics(text: string): ReplicaLoad {
    const samples = parseMetricsText(text);
    const sum = (name: string) => {
        const found = samples.filter((s) => s.name === name);
        return found.length > 0 ? found.reduce((n, s) => n + s.value, 0) : undefined;
    };
    const max = (name: string) => {
        const found = samples.filter((s) => s.name === name);
        return found.length > 0 ? Math.max(...found.map((s) => s.value)) : undefined;
    };
    const buckets = new Map<number, number>();
    for (const s of samples.filter((x) => x.name === `${VLLM.ttft}_bucket`)) {
        const le = parseValue(s.labels.le);
        buckets.set(le, (buckets.get(le) ?? 0) + s.value);
    }
    const p50 = histogramQuantile(0.5, [...buckets].map(([le, count]) => ({ le, count })));
    return {
        running: sum(VLLM.running),
        waiting: sum(VLLM.waiting),
        kvCacheUsage: max(VLLM.kvCacheUsage),
        ttftP50Seconds: Number.isFinite(p50) ? p50 : undefined,
        requestsServed: sum(VLLM.requestSuccess),
    };
}

/** The Prometheus queries the status command runs, each giving one value per replica. */
export const STATUS_QUERIES: Record<keyof ReplicaLoad, string> = {
    running: "replica:vllm_requests_running:sum",
    waiting: "replica:vllm_requests_waiting:sum",
    kvCacheUsage: "replica:vllm_kv_cache_usage:max",
    ttftP50Seconds: "replica:vllm_ttft_seconds:p50_1m",
    requestsServed: `sum by (replica) (${VLLM.requestSuccess}{job="vllm"})`,
};

/** Whether Prometheus's last scrape of each replica answered. */
export const UP_QUERY = 'up{job="vllm"}';

/** Per-replica loads from the answers to {@link STATUS_QUERIES}: `{field: [{replica, value}]}`. */
export function loadsFromPrometheus(answers: Partial<Record<keyof ReplicaLoad, Array<{ replica?: string; value: number }>>>): Map<string, ReplicaLoad> {
    const loads = new Map<string, ReplicaLoad>();
    for (const [field, samples] of Object.entries(answers) as Array<[keyof ReplicaLoad, Array<{ replica?: string; value: number }>]>) {
        for (const sample of samples) {
            if (sample.replica === undefined || !Number.isFinite(sample.value)) {
                continue;
            }
            loads.set(sample.replica, { ...loads.get(sample.replica), [field]: sample.value });
        }
    }
    return loads;
}

/** `unknown`: a replica of another host, reached only through the relay, on a stack without Prometheus. */
export type Health = "healthy" | "unhealthy" | "unreachable" | "unknown";
export type Rotation = "in" | "out" | "unknown";

export interface ReplicaStatus extends ReplicaLoad {
    name: string;
    /** The model group it serves (`default` without model groups; absent from outputs before them). */
    group?: string;
    container: string;
    url?: string;
    rotation: Rotation;
    /**
     * `/health` 200: healthy; another answer: unhealthy (503: the engine died); no answer: unreachable. For a
     * replica of another host, Prometheus's scrape through the relay (`up`): healthy or unreachable; unknown without it.
     */
    health: Health;
}

export interface StatusReport {
    stack: string;
    endpoint: string;
    balancer: {
        reachable: boolean;
        /** The config id nginx serves, from its health line. */
        configId?: string;
        /** The config id of the last `pulumi up`. */
        deployedConfigId?: string;
        /** Why the balancer did not answer, when it did not. */
        error?: string;
    };
    /** Where the load numbers come from, and the TTFT window that implies. */
    source: { kind: "prometheus"; url: string; ttftWindow: "1m" } | { kind: "metrics"; ttftWindow: "since start"; reason: string };
    replicas: ReplicaStatus[];
}

export interface ReportInput {
    stack: string;
    outputs: StackOutputs;
    /** The balancer's health line, or undefined when it did not answer. */
    balancerHealth?: string;
    /** Why the balancer's health line could not be read. */
    balancerError?: string;
    /** Each replica's `/health` status code, or undefined when it did not answer (or has no URL). */
    healthCodes: Record<string, number | undefined>;
    /** Prometheus's `up` for each replica it scrapes, when it answered: how a replica of another host's health is known. */
    scraped?: Record<string, boolean>;
    loads: Map<string, ReplicaLoad>;
    source: StatusReport["source"];
}

export function buildReport(input: ReportInput): StatusReport {
    const balancer = input.balancerHealth === undefined ? undefined : parseNginxHealth(input.balancerHealth);
    const rotation = (name: string): Rotation => {
        if (balancer?.inRotation?.includes(name)) {
            return "in";
        }
        if (balancer?.outOfRotation?.includes(name)) {
            return "out";
        }
        return "unknown";
    };
    return {
        stack: input.stack,
        endpoint: input.outputs.endpoint,
        balancer: { reachable: balancer !== undefined, configId: balancer?.configId, deployedConfigId: input.outputs.configId, error: balancer === undefined ? input.balancerError : undefined },
        source: input.source,
        replicas: input.outputs.replicas.map((r) => {
            const code = input.healthCodes[r.name];
            const load = input.loads.get(r.name) ?? {};
            return {
                name: r.name,
                ...(r.group === undefined ? {} : { group: r.group }),
                container: r.container,
                url: r.url,
                rotation: rotation(r.name),
                health: r.url === undefined ? relayedHealth(input.scraped?.[r.name]) : code === undefined ? "unreachable" : code === 200 ? "healthy" : "unhealthy",
                running: load.running,
                waiting: load.waiting,
                kvCacheUsage: load.kvCacheUsage,
                ttftP50Seconds: load.ttftP50Seconds,
                requestsServed: load.requestsServed,
            };
        }),
    };
}

function relayedHealth(up: boolean | undefined): Health {
    return up === undefined ? "unknown" : up ? "healthy" : "unreachable";
}

/**
 * Whether everything is as it should be: the balancer answers and every replica is healthy and in rotation
 * (or rotation is unknown); a replica whose health is unknown counts as well when the balancer serves it.
 */
export function reportHealthy(report: StatusReport): boolean {
    return report.balancer.reachable && report.replicas.every((r) => (r.health === "healthy" && r.rotation !== "out") || (r.health === "unknown" && r.rotation === "in"));
}

/** The report as JSON for scripts: every field present, `null` where a value is not known. */
export function reportJson(report: StatusReport): string {
    return `${JSON.stringify(report, (_key, value: unknown) => (value === undefined ? null : value), 2)}\n`;
}

/** The report as a table for a terminal. */
export function formatReport(report: StatusReport): string {
    const b = report.balancer;
    const balancerLine = !b.reachable
        ? `balancer  not answering at ${report.endpoint}/nginx-health${b.error ? ` (${b.error})` : ""}`
        : `balancer  config ${b.configId}` +
          (b.deployedConfigId === undefined ? "" : b.deployedConfigId === b.configId ? " (as deployed)" : ` (deployed: ${b.deployedConfigId}; a reload is pending or failed)`);
    const sourceLine =
        report.source.kind === "prometheus"
            ? `metrics   Prometheus ${report.source.url}; TTFT p50 over the last minute`
            : `metrics   each replica's /metrics (${report.source.reason}); TTFT p50 since the replica started`;
    // A GROUP column with model groups: a stack of one model has one group, and no such column.
    const grouped = new Set(report.replicas.map((r) => r.group ?? "default")).size > 1;
    const header = ["REPLICA", ...(grouped ? ["GROUP"] : []), "ROTATION", "HEALTH", "RUNNING", "WAITING", "KV CACHE", "TTFT P50", "SERVED"];
    const words = grouped ? 4 : 3;
    const rows = report.replicas.map((r) => [
        r.name,
        ...(grouped ? [r.group ?? "default"] : []),
        r.rotation,
        r.health,
        count(r.running),
        count(r.waiting),
        r.kvCacheUsage === undefined ? "-" : `${(r.kvCacheUsage * 100).toFixed(1)}%`,
        duration(r.ttftP50Seconds),
        count(r.requestsServed),
    ]);
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
    // Names and words to the left, numbers to the right.
    const line = (cells: string[]) => cells.map((c, i) => (i < words ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ").trimEnd();
    const relayed = report.replicas.some((r) => r.health === "unknown")
        ? ["", "unknown: a replica of another host, which only the relay reaches; with monitoring on, Prometheus scrapes it through the relay"]
        : [];
    return [`stack     ${report.stack}`, `endpoint  ${report.endpoint}`, balancerLine, sourceLine, "", line(header), ...rows.map(line), ...relayed, ""].join("\n");
}

function count(value: number | undefined): string {
    return value === undefined ? "-" : Math.round(value).toLocaleString("en-US");
}

function duration(seconds: number | undefined): string {
    if (seconds === undefined) {
        return "-";
    }
    return seconds < 1 ? `${Math.round(seconds * 1000)} ms` : `${seconds.toFixed(2)} s`;
}
