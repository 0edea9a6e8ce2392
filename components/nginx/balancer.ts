import * as command from "@pulumi/command";
import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import type { RestartPolicy } from "./config";
import { BALANCER_HEALTH_PATH, renderedConfigId } from "./nginxConfig";
import { lifecycle } from "./lifecycle";
import { envList } from "./proxy";

/** The port nginx listens on inside its container; `lbPort` on the host maps to it. */
export const BALANCER_CONTAINER_PORT = 80;

/** Where the rendered config lives in the container (the image ships a bootstrap config there). */
export const BALANCER_CONFIG_PATH = "/etc/nginx/conf.d/vllm-nginx.conf";

const HEALTH_URL = `http://127.0.0.1:${BALANCER_CONTAINER_PORT}${BALANCER_HEALTH_PATH}`;

/** Probes the balancer's own health endpoint, which answers whether or not any replica is up. */
export const BALANCER_HEALTH_PROBE = `curl -fsS --noproxy '*' -o /dev/null ${HEALTH_URL} || wget -q --no-proxy -O /dev/null ${HEALTH_URL}`;

/**
 * Installs a rendered config into the running balancer and reloads it; nginx's reload starts new workers
 * on the new config and lets the old ones finish their requests, so no stream is cut. `nginx -t` checks
 * the new file first and the previous one is put back if it fails. Returns once the health endpoint
 * serves the new config id, so that anything ordered after this (stopping a removed replica) happens
 * only when nginx no longer routes to it.
 */
export const INSTALL_CONFIG_SCRIPT = `set -eu
docker exec -i "$CONTAINER" sh -eu -c '
f=${BALANCER_CONFIG_PATH}
cat > "$f.next"
cp "$f" "$f.prev"
mv "$f.next" "$f"
if ! out=$(nginx -t 2>&1); then
  mv "$f.prev" "$f"
  echo "nginx rejected the rendered config; the previous one stays:" >&2
  echo "$out" >&2
  exit 1
fi
nginx -s reload
'
tries=0
until docker exec "$CONTAINER" sh -c "curl -fsS --noproxy '*' ${HEALTH_URL} 2>/dev/null || wget -q --no-proxy -O - ${HEALTH_URL}" | grep -q "$CONFIG_ID"; do
  tries=$((tries + 1))
  if [ "$tries" -ge 150 ]; then
    echo "nginx in $CONTAINER did not serve config $CONFIG_ID within 30s of the reload" >&2
    exit 1
  fi
  sleep 0.2
done
echo "nginx in $CONTAINER serves config $CONFIG_ID"
`;

export interface NginxBalancerArgs {
    /** Prefix of the container's name (the stack name). */
    prefix: string;
    /** The balancer image (an image ID). */
    image: pulumi.Input<string>;
    networkName: pulumi.Input<string>;
    /** Host port and address the balancer is published on. */
    port: number;
    bind: string;
    /** The rendered nginx config (see `renderNginxConfig`). */
    config: pulumi.Input<string>;
    /** Resources that must be ready before the config that routes to them is installed (the replicas). */
    upstreamDependencies: pulumi.Input<pulumi.Resource>[];
    proxyEnv: Record<string, string>;
    /** The Docker host the docker provider manages (its `docker:host` config), for `docker exec`. */
    dockerHost?: string;
    /** Time nginx gets to finish in-flight requests when the container stops, in seconds. */
    stopGraceSeconds: number;
    restartPolicy: RestartPolicy;
}

/**
 * The nginx balancer: a long-lived container whose config is replaced and reloaded in place on every
 * change, so that changing the replica list or the balancing settings never restarts it.
 */
export class NginxBalancer extends pulumi.ComponentResource {
    readonly containerName: pulumi.Output<string>;
    /** The id of the config nginx serves, as its health endpoint reports it. */
    readonly configId: pulumi.Output<string>;
    readonly container: docker.Container;
    readonly installConfig: command.local.Command;

    constructor(name: string, args: NginxBalancerArgs, opts?: pulumi.ComponentResourceOptions) {
        super("vllm-nginx:balancer:NginxBalancer", name, {}, opts);

        this.container = new docker.Container(
            `${name}-container`,
            {
                name: `${args.prefix}-nginx-lb`,
                image: args.image,
                envs: envList(args.proxyEnv),
                networksAdvanced: [{ name: args.networkName, aliases: ["nginx-lb"] }],
                ports: [{ internal: BALANCER_CONTAINER_PORT, external: args.port, ip: args.bind }],
                // SIGQUIT is nginx's graceful shutdown: open requests are finished first.
                stopSignal: "SIGQUIT",
                ...lifecycle({
                    prefix: args.prefix,
                    role: "balancer",
                    healthProbe: BALANCER_HEALTH_PROBE,
                    probeTimeoutSeconds: 3,
                    startPeriodSeconds: 30,
                    waitSeconds: 120,
                    restartPolicy: args.restartPolicy,
                    stopGraceSeconds: args.stopGraceSeconds,
                }),
            },
            { parent: this },
        );
        this.containerName = this.container.name;
        this.configId = pulumi.output(args.config).apply(renderedConfigId);

        this.installConfig = new command.local.Command(
            `${name}-config`,
            {
                create: INSTALL_CONFIG_SCRIPT,
                update: INSTALL_CONFIG_SCRIPT,
                stdin: args.config,
                environment: {
                    CONTAINER: this.container.name,
                    CONFIG_ID: this.configId,
                    ...(args.dockerHost ? { DOCKER_HOST: args.dockerHost } : {}),
                },
                // A new container starts from the image's bootstrap config: install the config again.
                triggers: [this.container.id],
            },
            { parent: this, dependsOn: [this.container, ...args.upstreamDependencies] },
        );

        this.registerOutputs({ containerName: this.containerName, configId: this.configId });
    }
}
