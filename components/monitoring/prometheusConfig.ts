/**
 * Renders Prometheus's configuration for a fleet: every replica's `/metrics` with its name and host as
 * labels, the nginx exporter, the balancer's rotation, and Prometheus itself, scraped often enough that an alert can fire within
 * seconds of a replica going away. Pure code; the snapshot in the unit tests is what a reviewer reads.
 */
import { createHash } from "crypto";
import { BALANCER_ROTATION_PATH } from "../nginx/paths";
import { toYaml } from "./yaml";

/** One vLLM replica, as Prometheus sees it. */
export interface ReplicaTarget {
    /** Replica name, e.g. `vllm0`; the `replica` label of its series. */
    name: string;
    /**
     * `host:port` Prometheus reaches the replica's `/metrics` at: its fixed address on the stack's network
     * (`172.29.10.10:8000`), or `<host address>:<port>` for a replica on another host.
     */
    address: string;
    /** Name of the host the replica runs on; the `host` label of its series. */
    host: string;
    /** The model group it serves, with several groups: the `group` label of its series. */
    group?: string;
}

export interface PrometheusConfigArgs {
    /** Stack name, written as the `stack` external label and in the header comment. */
    stack: string;
    replicas: ReplicaTarget[];
    /** `host:port` of the nginx exporter. No `nginx` job when unset. */
    balancerExporter?: string;
    /** `host:port` of the balancer's internal listener, whose rotation gauge is scraped. No `rotation` job when unset. */
    balancerRotation?: string;
    /** Host name of the balancer, its `host` label. Defaults to `"local"`. */
    balancerHost?: string;
    /** Seconds between scrapes and between rule evaluations. Defaults to 5. */
    intervalSeconds?: number;
    /** Rule files, relative to the config file. Defaults to `["rules/*.yml"]`. */
    ruleFiles?: string[];
    /** `host:port` Prometheus scrapes itself at. Defaults to `127.0.0.1:9090`, its port in the container. */
    selfAddress?: string;
}

/** Job names, which the rules and the dashboard select on. */
export const JOBS = { vllm: "vllm", nginx: "nginx", rotation: "rotation", prometheus: "prometheus" } as const;

/** The port Prometheus listens on inside its container. */
export const PROMETHEUS_PORT = 9090;

/** The scrape and evaluation interval: five seconds, so a replica's absence is seen within seconds. */
export const DEFAULT_INTERVAL_SECONDS = 5;

const CONFIG_ID_PLACEHOLDER = "@CONFIG_ID@";

/** Renders `prometheus.yml`. Its first line carries a content id, as the nginx config does. */
export function renderPrometheusConfig(args: PrometheusConfigArgs): string {
    const names = new Set<string>();
    for (const replica of args.replicas) {
        if (!/^[A-Za-z0-9_.-]+$/.test(replica.name) || names.has(replica.name)) {
            throw new Error(`renderPrometheusConfig: replica names must be unique words; got ${JSON.stringify(replica.name)}`);
        }
        if (!/^[^\s/]+:\d+$/.test(replica.address)) {
            throw new Error(`renderPrometheusConfig: replica ${replica.name} needs a host:port address; got ${JSON.stringify(replica.address)}`);
        }
        names.add(replica.name);
    }
    const interval = args.intervalSeconds ?? DEFAULT_INTERVAL_SECONDS;
    // A scrape must end before the next one starts.
    const timeout = Math.max(1, interval - 1);

    const body = toYaml({
        global: {
            scrape_interval: `${interval}s`,
            scrape_timeout: `${timeout}s`,
            evaluation_interval: `${interval}s`,
            external_labels: { stack: args.stack },
        },
        rule_files: args.ruleFiles ?? ["rules/*.yml"],
        scrape_configs: [
            {
                job_name: JOBS.vllm,
                metrics_path: "/metrics",
                static_configs: args.replicas.map((r) => ({ targets: [r.address], labels: { replica: r.name, host: r.host, ...(r.group === undefined ? {} : { group: r.group }) } })),
            },
            ...(args.balancerExporter
                ? [
                      {
                          job_name: JOBS.nginx,
                          static_configs: [{ targets: [args.balancerExporter], labels: { host: args.balancerHost ?? "local" } }],
                      },
                  ]
                : []),
            ...(args.balancerRotation
                ? [
                      {
                          job_name: JOBS.rotation,
                          metrics_path: BALANCER_ROTATION_PATH,
                          static_configs: [{ targets: [args.balancerRotation], labels: { balancer: args.balancerHost ?? "local" } }],
                      },
                  ]
                : []),
            {
                job_name: JOBS.prometheus,
                static_configs: [{ targets: [args.selfAddress ?? `127.0.0.1:${PROMETHEUS_PORT}`] }],
            },
        ],
    });
    const text = [
        `# Prometheus for vllm-nginx stack "${args.stack}"; config ${CONFIG_ID_PLACEHOLDER}.`,
        "# Rendered by the program: `pulumi up` replaces this file and reloads Prometheus in place.",
        body,
    ].join("\n");
    return text.split(CONFIG_ID_PLACEHOLDER).join(contentId(text));
}

/** A short content hash, to tell configs apart in logs and outputs. */
export function contentId(text: string): string {
    return createHash("sha256").update(text).digest("hex").slice(0, 12);
}
