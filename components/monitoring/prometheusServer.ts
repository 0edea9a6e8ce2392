import * as command from "@pulumi/command";
import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import type { RestartPolicy } from "../config";
import { labelList } from "../docker/labels";
import { lifecycle } from "../docker/lifecycle";
import { tlsEnvironment, type Engine } from "../docker/providers";
import { ENGINE_TLS_SCRIPT } from "../rollout/scripts";
import { UNBUNDLE_FUNCTION, renderBundle } from "./configBundle";
import { PROMETHEUS_PORT, contentId } from "./prometheusConfig";

/** Prometheus's config folder in both images; the rendered config and rules are installed here. */
export const PROMETHEUS_CONFIG_DIR = "/etc/prometheus";
/** Where the rule files go, relative to the config folder (the config's `rule_files` points here). */
export const PROMETHEUS_RULES_FILE = "rules/vllm-nginx.yml";
/** Prometheus's data folder in both images: the volume is mounted here. */
export const PROMETHEUS_DATA_DIR = "/prometheus";
/** The network alias other containers (Grafana) reach Prometheus by. */
export const PROMETHEUS_ALIAS = "prometheus";

const LOCAL_URL = `http://127.0.0.1:${PROMETHEUS_PORT}`;

/** Answers 0 once Prometheus serves queries (busybox wget in the upstream image, GNU wget in Debian's). */
export const PROMETHEUS_HEALTH_PROBE = `wget -q -O /dev/null ${LOCAL_URL}/-/ready`;

/**
 * The arguments after the image's `prometheus` entrypoint. No `--web.enable-lifecycle`: it would let
 * anything on the fleet's network, replicas included, stop Prometheus with `POST /-/quit`. The install
 * script reloads it with SIGHUP instead.
 */
export function prometheusCommand(retention: string): string[] {
    return [
        `--config.file=${PROMETHEUS_CONFIG_DIR}/prometheus.yml`,
        `--storage.tsdb.path=${PROMETHEUS_DATA_DIR}`,
        `--storage.tsdb.retention.time=${retention}`,
        `--web.listen-address=:${PROMETHEUS_PORT}`,
    ];
}

/** The config and the rules as one bundle, the standard input of the install script. */
export function prometheusBundle(config: string, rules: string): string {
    return renderBundle([
        { path: "prometheus.yml", content: config },
        { path: PROMETHEUS_RULES_FILE, content: rules },
    ]);
}

/**
 * Installs a bundle (config and rules) into the running container and reloads Prometheus in place: the
 * files are unpacked into a staging folder and checked with `promtool check config` (which checks the
 * rule files it names too); only then do they replace the live ones, and SIGHUP to Prometheus (the
 * container's first process) loads them: its own metrics say whether that reload succeeded.
 * The scrape history stays, and nothing restarts. A bundle promtool rejects leaves the previous config
 * in service and fails the command with promtool's message; a reload Prometheus refuses puts the previous
 * files back.
 */
export const INSTALL_PROMETHEUS_CONFIG_SCRIPT = `set -eu
${ENGINE_TLS_SCRIPT}
with_engine "\${ENGINE:-}" docker exec -i "$CONTAINER" sh -eu -c '
${UNBUNDLE_FUNCTION}
# reload_state: "<1 if the last reload succeeded, else 0> <when the last successful one was, in seconds>".
reload_state() {
  wget -q -O - ${LOCAL_URL}/metrics | awk "/^prometheus_config_last_reload_successful /{ok=\\$2} /^prometheus_config_last_reload_success_timestamp_seconds /{ts=\\$2} END{printf \\"%d %d\\n\\", ok, ts}"
}
# reload: SIGHUP, then waits (up to 20 s) for a successful reload newer than the last one; fails when
# Prometheus reports this one failed.
reload() {
  set -- $(reload_state)
  ok_before=$1 before=$2
  # A reload in the same second as the last one would not show in the timestamp.
  while [ "$(date +%s)" -le "$before" ]; do sleep 0.2; done
  kill -HUP 1
  tries=0
  while [ "$tries" -lt 100 ]; do
    set -- $(reload_state)
    [ "$2" -le "$before" ] || return 0
    [ "$ok_before" = 0 ] || [ "$1" = 1 ] || return 1
    tries=$((tries + 1))
    sleep 0.2
  done
  return 1
}
cd ${PROMETHEUS_CONFIG_DIR}
rm -rf next prev
unbundle next
if ! out=$(promtool check config next/prometheus.yml 2>&1); then
  rm -rf next
  echo "promtool rejected the rendered Prometheus config; the previous one stays:" >&2
  echo "$out" >&2
  exit 1
fi
mkdir prev
cp prometheus.yml prev/
if [ -d rules ]; then mv rules prev/rules; fi
mv next/rules rules
mv next/prometheus.yml prometheus.yml
rm -rf next
if ! reload; then
  rm -rf rules
  if [ -d prev/rules ]; then mv prev/rules rules; fi
  cp prev/prometheus.yml prometheus.yml
  reload || true
  echo "Prometheus refused the new config (see its log); the previous one is back" >&2
  exit 1
fi
'
echo "Prometheus in $CONTAINER serves config $CONFIG_ID"
`;

export interface PrometheusServerArgs {
    /** Prefix of the container's and the volume's names (the stack name). */
    prefix: string;
    /** The Prometheus image to run (an image ID): upstream `prom/prometheus` or `images/prometheus`. */
    image: pulumi.Input<string>;
    /** The stack's network, where the replicas and the exporter are reached. */
    networkName: pulumi.Input<string>;
    /** The rendered `prometheus.yml` (see `renderPrometheusConfig`). */
    config: pulumi.Input<string>;
    /** The rendered rule file (see `renderRules`). */
    rules: pulumi.Input<string>;
    /** Host port of the web UI and API. Defaults to 9090. */
    port?: number;
    /** Host address the port is published on. Defaults to `127.0.0.1`. */
    bind?: string;
    /** How long samples are kept, in Prometheus's duration syntax. Defaults to `15d`. */
    retention?: string;
    /** The Docker engine it runs on, and the address its config command reaches it at. Defaults to the default provider and engine. */
    engine?: Engine;
    /** Docker restart policy. Defaults to `unless-stopped`. */
    restartPolicy?: RestartPolicy;
    /**
     * Resources the config is installed after (the replicas, healthy once created), so that a replica
     * still loading its model is not scraped, and not reported down, before it first answers. Defaults to none.
     */
    configDependencies?: pulumi.Input<pulumi.Resource>[];
}

/**
 * Prometheus as a long-lived container on the stack's network: its samples on a named volume that
 * survives `pulumi up` and container replacement, and its config and rules installed by a command and
 * reloaded in place whenever they change, so a change of the replica list never restarts it.
 */
export class PrometheusServer extends pulumi.ComponentResource {
    readonly containerName: pulumi.Output<string>;
    /** `http://<bind>:<port>` as reached from the Docker host. */
    readonly url: pulumi.Output<string>;
    /** Content id of the config and rules in service; known once they are installed. */
    readonly configId: pulumi.Output<string>;
    readonly container: docker.Container;
    readonly volume: docker.Volume;
    readonly installConfig: command.local.Command;

    constructor(name: string, args: PrometheusServerArgs, opts?: pulumi.ComponentResourceOptions) {
        super("vllm-nginx:monitoring:PrometheusServer", name, {}, opts);
        const port = args.port ?? 9090;
        const bind = args.bind ?? "127.0.0.1";

        this.volume = new docker.Volume(`${name}-data`, { name: `${args.prefix}-prometheus-data`, labels: labelList({ stack: args.prefix, role: "prometheus" }) }, { parent: this });

        this.container = new docker.Container(
            `${name}-container`,
            {
                name: `${args.prefix}-prometheus`,
                image: args.image,
                command: prometheusCommand(args.retention ?? "15d"),
                networksAdvanced: [{ name: args.networkName, aliases: [PROMETHEUS_ALIAS] }],
                ports: [{ internal: PROMETHEUS_PORT, external: port, ip: bind }],
                volumes: [{ volumeName: this.volume.name, containerPath: PROMETHEUS_DATA_DIR }],
                ...lifecycle({
                    prefix: args.prefix,
                    role: "prometheus",
                    healthProbe: PROMETHEUS_HEALTH_PROBE,
                    // Replaying the write-ahead log of a large volume takes a while.
                    startPeriodSeconds: 120,
                    waitSeconds: 180,
                    restartPolicy: args.restartPolicy ?? "unless-stopped",
                    // Time to flush the head block to the volume.
                    stopGraceSeconds: 60,
                }),
            },
            { parent: this },
        );
        this.containerName = this.container.name;

        const bundle = pulumi.all([args.config, args.rules]).apply(([config, rules]) => prometheusBundle(config, rules));
        const bundleId = bundle.apply(contentId);
        this.installConfig = new command.local.Command(
            `${name}-config`,
            {
                create: INSTALL_PROMETHEUS_CONFIG_SCRIPT,
                update: INSTALL_PROMETHEUS_CONFIG_SCRIPT,
                stdin: bundle,
                environment: pulumi
                    .all([this.container.name, bundleId, args.engine?.address ?? "", tlsEnvironment([args.engine])])
                    .apply(([container, id, address, tls]): Record<string, string> => ({ ...tls, CONTAINER: container, CONFIG_ID: id, ENGINE: address })),
                // A new container starts from the image's bootstrap config: install the bundle again.
                triggers: [this.container.id],
            },
            { parent: this, dependsOn: [this.container, ...(args.configDependencies ?? [])] },
        );
        this.configId = pulumi.all([bundleId, this.installConfig.stdout]).apply(([id]) => id);
        this.url = pulumi.output(`http://${bind === "0.0.0.0" ? "127.0.0.1" : bind}:${port}`);

        this.registerOutputs({ containerName: this.containerName, url: this.url, configId: this.configId });
    }
}
