/**
 * Prometheus recording and alerting rules for a fleet, as data, and the rule file rendered from them.
 * Recording rules compute what the dashboard and the status command show, per replica and for the
 * fleet; alerting rules say when a person should look. Pure code: `promtool check rules` and
 * `promtool test rules` run on the rendered text in the integration tier.
 */
import { JOBS } from "./prometheusConfig";
import { ROTATION_METRIC } from "../nginx/paths";
import { NGINX, VLLM } from "./metrics";
import { toYaml } from "./yaml";

export interface RecordingRule {
    record: string;
    expr: string;
    /** One line for the reader of the rule file. */
    help: string;
}

export interface AlertRule {
    alert: string;
    expr: string;
    /** How long the condition must hold before the alert fires. */
    for: string;
    severity: "critical" | "warning";
    summary: string;
    description: string;
}

/** Thresholds of the alerting rules. Every field is optional; see {@link DEFAULT_ALERT_THRESHOLDS}. */
export interface AlertThresholds {
    /** How long a replica's `/metrics` must go unanswered before it is reported down. Defaults to `15s` (three scrapes). */
    replicaDownFor: string;
    /** KV-cache usage (0..1) above which a replica is reported nearly full. Defaults to 0.9. */
    kvCacheUsage: number;
    /** How long the KV cache must stay above `kvCacheUsage`. Defaults to `2m`. */
    kvCacheFor: string;
    /** How long the waiting queue must keep growing (never empty, longer than a minute before). Defaults to `1m`. */
    queueGrowingFor: string;
    /** Share of a replica's HTTP responses that are 5xx (0..1) above which it is reported. Defaults to 0.05. */
    errorRatio: number;
    /** Fewest 5xx responses per minute that count, so that one error on an idle replica does not page. Defaults to 3. */
    errorsPerMinute: number;
    /** How long the 5xx share must stay high. Defaults to `1m`. */
    errorFor: string;
    /** How long nginx must go unobserved before the balancer is reported down. Defaults to `15s`. */
    balancerDownFor: string;
    /**
     * How long a replica that answers /metrics must stay out of rotation before it is reported. Defaults
     * to `10m`: longer than a drain (`stopGracePeriod`, 120 s by default) and a replacement's load.
     */
    outOfRotationFor: string;
}

export const DEFAULT_ALERT_THRESHOLDS: AlertThresholds = {
    replicaDownFor: "15s",
    kvCacheUsage: 0.9,
    kvCacheFor: "2m",
    queueGrowingFor: "1m",
    errorRatio: 0.05,
    errorsPerMinute: 3,
    errorFor: "1m",
    balancerDownFor: "15s",
    outOfRotationFor: "10m",
};

/** The window of every rate and quantile: twelve scrapes at the 5 s interval. */
export const RULE_WINDOW = "1m";

const VLLM_JOB = `job="${JOBS.vllm}"`;

/** Labels a per-replica series keeps: with model groups, the replica's `group` too (absent otherwise). */
const PER_REPLICA = "replica, host, group";

interface Level {
    prefix: "replica" | "fleet";
    /** ` by (...) ` clause, or "" for the whole fleet: `sum${by}(...)`. */
    by: string;
    /** The same with `le`, for quantiles. */
    byLe: string;
}

const LEVELS: Level[] = [
    { prefix: "replica", by: ` by (${PER_REPLICA}) `, byLe: ` by (${PER_REPLICA}, le) ` },
    { prefix: "fleet", by: "", byLe: " by (le) " },
];

const QUANTILES: Array<{ metric: string; name: string; what: string; quantiles: number[] }> = [
    { metric: VLLM.ttft, name: "vllm_ttft_seconds", what: "time to first token", quantiles: [0.5, 0.99] },
    { metric: VLLM.interTokenLatency, name: "vllm_itl_seconds", what: "inter-token latency", quantiles: [0.5, 0.99] },
    { metric: VLLM.e2eLatency, name: "vllm_e2e_latency_seconds", what: "end-to-end request latency", quantiles: [0.5, 0.99] },
    { metric: VLLM.queueTime, name: "vllm_queue_time_seconds", what: "time requests waited in the queue", quantiles: [0.99] },
];

function recordingRules(level: Level): RecordingRule[] {
    const { prefix, by, byLe } = level;
    const sumRate = (metric: string, selector = VLLM_JOB) => `sum${by}(rate(${metric}{${selector}}[${RULE_WINDOW}]))`;
    const scope = prefix === "replica" ? "per replica" : "over the fleet";
    return [
        {
            record: `${prefix}:vllm_requests:rate1m`,
            expr: sumRate(VLLM.requestSuccess),
            help: `Requests finished per second (any finish reason), ${scope}.`,
        },
        ...QUANTILES.flatMap((q) =>
            q.quantiles.map((quantile) => ({
                record: `${prefix}:${q.name}:p${Math.round(quantile * 100)}_1m`,
                expr: `histogram_quantile(${quantile}, sum${byLe}(rate(${q.metric}_bucket{${VLLM_JOB}}[${RULE_WINDOW}])))`,
                help: `${Math.round(quantile * 100)}th percentile of ${q.what} over the last minute, ${scope} (NaN while nothing finished).`,
            })),
        ),
        {
            record: `${prefix}:vllm_prompt_tokens:rate1m`,
            expr: sumRate(VLLM.promptTokens),
            help: `Prompt (prefill) tokens per second, ${scope}.`,
        },
        {
            record: `${prefix}:vllm_generation_tokens:rate1m`,
            expr: sumRate(VLLM.generationTokens),
            help: `Generated tokens per second, ${scope}.`,
        },
        {
            record: `${prefix}:vllm_requests_running:sum`,
            expr: `sum${by}(${VLLM.running}{${VLLM_JOB}})`,
            help: `Requests being generated now, ${scope}.`,
        },
        {
            record: `${prefix}:vllm_requests_waiting:sum`,
            expr: `sum${by}(${VLLM.waiting}{${VLLM_JOB}})`,
            help: `Requests waiting for a seat in the batch, ${scope}.`,
        },
        ...(prefix === "replica"
            ? [
                  {
                      record: "replica:vllm_kv_cache_usage:max",
                      expr: `max${by}(${VLLM.kvCacheUsage}{${VLLM_JOB}})`,
                      help: "KV-cache usage of each replica, 0..1 (the fullest engine when a replica has several).",
                  },
              ]
            : [
                  {
                      record: "fleet:vllm_kv_cache_usage:avg",
                      expr: `avg(${VLLM.kvCacheUsage}{${VLLM_JOB}})`,
                      help: "Mean KV-cache usage over the fleet, 0..1.",
                  },
                  {
                      record: "fleet:vllm_kv_cache_usage:max",
                      expr: `max(${VLLM.kvCacheUsage}{${VLLM_JOB}})`,
                      help: "KV-cache usage of the fullest replica, 0..1.",
                  },
              ]),
        {
            record: `${prefix}:vllm_prefix_cache_hit:ratio_rate1m`,
            expr: `${sumRate(VLLM.prefixCacheHits)} / ${sumRate(VLLM.prefixCacheQueries)}`,
            help: `Share of queried prompt tokens found in the prefix cache over the last minute, ${scope} (NaN without queries).`,
        },
        {
            record: `${prefix}:vllm_http_5xx:ratio_rate1m`,
            // 0 rather than nothing when no 5xx was ever counted: the instrumentator creates a status's
            // series on its first response.
            expr:
                `(${sumRate(VLLM.httpRequests, `${VLLM_JOB},status="5xx"`)} or ${sumRate(VLLM.httpRequests)} * 0)\n` +
                `/ ${sumRate(VLLM.httpRequests)}`,
            help: `Share of HTTP responses that are 5xx over the last minute, ${scope}.`,
        },
        ...(prefix === "fleet"
            ? [
                  {
                      record: "fleet:vllm_replicas_up:sum",
                      expr: `sum(up{${VLLM_JOB}})`,
                      help: "Replicas whose /metrics answered the last scrape.",
                  },
                  {
                      record: "fleet:vllm_replicas:count",
                      expr: `count(up{${VLLM_JOB}})`,
                      help: "Replicas Prometheus scrapes.",
                  },
              ]
            : []),
    ];
}

/** Recording rules per replica (`replica:*`, labels `replica`, `host` and, with model groups, `group`). */
export const REPLICA_RECORDING_RULES: RecordingRule[] = recordingRules(LEVELS[0]);
/** Recording rules for the whole fleet (`fleet:*`, no labels). */
export const FLEET_RECORDING_RULES: RecordingRule[] = recordingRules(LEVELS[1]);

/** The alerting rules with the given thresholds. */
export function alertRules(overrides: Partial<AlertThresholds> = {}): AlertRule[] {
    const t = { ...DEFAULT_ALERT_THRESHOLDS, ...overrides };
    const percent = (ratio: number) => `${Math.round(ratio * 1000) / 10}%`;
    const onReplica = "{{ $labels.replica }} on {{ $labels.host }}";
    return [
        {
            alert: "VllmReplicaDown",
            expr: `up{${VLLM_JOB}} == 0`,
            for: t.replicaDownFor,
            severity: "critical",
            summary: `Replica ${onReplica} does not answer /metrics`,
            description:
                "Prometheus could not scrape the replica for " +
                t.replicaDownFor +
                ": its container is stopped, restarting or still loading the model (vLLM listens only once the model is loaded). nginx routes around it after max_fails failed connections.",
        },
        {
            alert: "VllmFleetDown",
            expr: `sum(up{${VLLM_JOB}}) == 0`,
            for: t.replicaDownFor,
            severity: "critical",
            summary: "No replica answers: every request fails",
            description: `Not one replica could be scraped for ${t.replicaDownFor}; the balancer has nowhere to send requests.`,
        },
        {
            alert: "VllmKvCacheNearlyFull",
            expr: `max by (${PER_REPLICA}) (${VLLM.kvCacheUsage}{${VLLM_JOB}}) > ${t.kvCacheUsage}`,
            for: t.kvCacheFor,
            severity: "warning",
            summary: `KV cache of replica ${onReplica} is {{ $value | humanizePercentage }} full`,
            description:
                `Above ${percent(t.kvCacheUsage)} for ${t.kvCacheFor}: vLLM admits new sequences only as blocks free up and preempts running ones when it runs out, ` +
                "so latency grows. Add replicas, lower --max-num-seqs or --max-model-len, or give the cache more memory.",
        },
        {
            alert: "VllmQueueGrowing",
            expr:
                `min by (${PER_REPLICA}) (min_over_time(${VLLM.waiting}{${VLLM_JOB}}[${RULE_WINDOW}])) > 0\n` +
                `and sum by (${PER_REPLICA}) (delta(${VLLM.waiting}{${VLLM_JOB}}[${RULE_WINDOW}])) > 0`,
            for: t.queueGrowingFor,
            severity: "warning",
            summary: `Requests pile up on replica ${onReplica}`,
            description:
                `For ${t.queueGrowingFor}, requests have been waiting all minute long and the queue is longer than a minute before: ` +
                "the replica receives more than it can generate. Add replicas, or check that the balancer spreads the load.",
        },
        {
            alert: "VllmHigh5xxRate",
            expr:
                `sum by (${PER_REPLICA}) (rate(${VLLM.httpRequests}{${VLLM_JOB},status="5xx"}[${RULE_WINDOW}]))\n` +
                `/ sum by (${PER_REPLICA}) (rate(${VLLM.httpRequests}{${VLLM_JOB}}[${RULE_WINDOW}])) > ${t.errorRatio}\n` +
                `and sum by (${PER_REPLICA}) (rate(${VLLM.httpRequests}{${VLLM_JOB},status="5xx"}[${RULE_WINDOW}])) * 60 >= ${t.errorsPerMinute}`,
            for: t.errorFor,
            severity: "critical",
            summary: `Replica ${onReplica} answers {{ $value | humanizePercentage }} of requests with 5xx`,
            description:
                `More than ${percent(t.errorRatio)} of its responses (and at least ${t.errorsPerMinute} a minute) were server errors for ${t.errorFor}: ` +
                "look at the replica's log (engine errors, out of memory).",
        },
        {
            alert: "VllmReplicaOutOfRotation",
            // The replica's labels (replica, host), where the balancer reports it out.
            expr: `up{${VLLM_JOB}} == 1 and on (replica) ${ROTATION_METRIC}{job="${JOBS.rotation}"} == 0`,
            for: t.outOfRotationFor,
            severity: "warning",
            summary: `Replica ${onReplica} serves but is out of nginx's rotation`,
            description:
                `For ${t.outOfRotationFor} the replica answered /metrics while the balancer sent it no new request. Every \`pulumi up\` brings back ` +
                "a replica that runs its deployed settings and serves /health; look at the last up's warnings, or run `pulumi up`.",
        },
        {
            alert: "NginxBalancerDown",
            expr: `up{job="${JOBS.nginx}"} == 0 or ${NGINX.up}{job="${JOBS.nginx}"} == 0`,
            for: t.balancerDownFor,
            severity: "critical",
            summary: "The nginx balancer is not seen up",
            description:
                `For ${t.balancerDownFor}, either the exporter could not read nginx's stub_status (nginx_up is 0: nginx is down or not reachable) ` +
                "or the exporter itself did not answer (up is 0). Clients of the endpoint get no answer while nginx is down.",
        },
    ];
}

/** Group names in the rendered file. */
export const RULE_GROUPS = { replicas: "vllm-nginx-replicas", fleet: "vllm-nginx-fleet", alerts: "vllm-nginx-alerts" } as const;

/** Renders the rule file, with each recording rule's help as a comment above it. */
export function renderRules(thresholds: Partial<AlertThresholds> = {}): string {
    const lines = [
        "# vllm-nginx recording and alerting rules, rendered by the program.",
        `# Rates and quantiles are over ${RULE_WINDOW}; replica-level series keep the replica and host labels.`,
        "groups:",
        ...group(
            RULE_GROUPS.replicas,
            REPLICA_RECORDING_RULES.map((r) => ({ comment: r.help, rule: { record: r.record, expr: r.expr } })),
        ),
        ...group(
            RULE_GROUPS.fleet,
            FLEET_RECORDING_RULES.map((r) => ({ comment: r.help, rule: { record: r.record, expr: r.expr } })),
        ),
        ...group(
            RULE_GROUPS.alerts,
            alertRules(thresholds).map((a) => ({
                rule: {
                    alert: a.alert,
                    expr: a.expr,
                    for: a.for,
                    labels: { severity: a.severity },
                    annotations: { summary: a.summary, description: a.description },
                },
            })),
        ),
    ];
    return `${lines.join("\n")}\n`;
}

function group(name: string, rules: Array<{ comment?: string; rule: Record<string, string | Record<string, string>> }>): string[] {
    const body = rules.flatMap(({ comment, rule }) => [
        ...(comment ? [`      # ${comment}`] : []),
        ...toYaml([rule])
            .trimEnd()
            .split("\n")
            .map((line) => `      ${line}`),
    ]);
    return [`  - name: ${name}`, "    rules:", ...body];
}
