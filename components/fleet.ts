import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import type { FleetSecrets, FleetSettings } from "./config";
import { labelList } from "./docker/labels";
import { FleetNetwork } from "./docker/network";
import { proxyVariables } from "./docker/proxy";
import { NginxBalancer } from "./nginx/balancer";
import { NginxImage } from "./nginx/image";
import { BALANCER_CONTAINER_PORT } from "./nginx/paths";
import { renderNginxConfig } from "./nginx/render";
import type { Transform } from "./transform";
import { VllmImage } from "./vllm/image";
import { VllmReplica } from "./vllm/replica";

export interface VllmFleetArgs {
    /** Validated settings (see `parseFleetConfig`, or `readStackConfig` for the current stack). */
    settings: FleetSettings;
    /** The HF token and the API key, as secret outputs. Defaults to none. */
    secrets?: FleetSecrets;
    /**
     * The Docker engine of each host, by host name (`local` for a stack without `hosts`). A host without
     * one gets a provider for its engine address (for `local`: `docker:host`, else `DOCKER_HOST`, else the
     * local socket).
     */
    providers?: Record<string, docker.Provider>;
    /** Adjusts the resources the fleet creates, without forking it. */
    transform?: {
        network?: Transform<docker.NetworkArgs>;
        replicaContainer?: Transform<docker.ContainerArgs>;
        balancerContainer?: Transform<docker.ContainerArgs>;
    };
}

/** What a user needs to know of one replica. */
export interface ReplicaSummary {
    name: string;
    host: string;
    container: string;
    gpus: string[];
    cpuSet?: string;
    /** The replica's own published URL (on `replicaPortBind`, the loopback by default). */
    url: string;
}

/**
 * vLLM's "Using Nginx" deployment as one component: the network, the vLLM and nginx images, one replica
 * per GPU group (or CPU replica), and the nginx balancer in front of them.
 */
export class VllmFleet extends pulumi.ComponentResource {
    /** Base URL of the balancer, e.g. `http://127.0.0.1:8000`. */
    readonly endpoint: pulumi.Output<string>;
    /** OpenAI-compatible base URL (`<endpoint>/v1`). */
    readonly openaiBaseUrl: pulumi.Output<string>;
    /** The model name clients send (`--served-model-name`, else the model id). */
    readonly servedModel: pulumi.Output<string>;
    readonly replicas: pulumi.Output<ReplicaSummary[]>;
    readonly balancerContainer: pulumi.Output<string>;
    readonly networkName: pulumi.Output<string>;
    /** Id of the nginx config in service; changes with every change of the rendered config. */
    readonly configId: pulumi.Output<string>;
    /** The rendered nginx config, for review in `pulumi stack output`. */
    readonly nginxConfig: pulumi.Output<string>;

    constructor(name: string, args: VllmFleetArgs, opts?: pulumi.ComponentResourceOptions) {
        super("vllm-nginx:index:VllmFleet", name, {}, opts);
        const s = args.settings;
        const proxyEnv = proxyVariables(s.proxy);
        const provider = args.providers?.local ?? new docker.Provider(`${name}-docker-local`, { host: s.engines.local }, { parent: this });
        const onHost = { parent: this, providers: { docker: provider } };

        const network = new FleetNetwork(`${name}-net`, { prefix: s.prefix, subnet: s.network.subnet, transform: { network: args.transform?.network } }, onHost);
        const compileCache = new docker.Volume(
            `${name}-vllm-cache`,
            { name: `${s.prefix}-vllm-compile-cache`, labels: labelList({ stack: s.prefix }) },
            { parent: this, provider },
        );
        const vllmImage = new VllmImage(`${name}-vllm-image`, { prefix: s.prefix, image: s.images.vllmImage, build: s.images.vllmBuild, proxy: s.proxy }, onHost);
        const nginxImage = new NginxImage(`${name}-nginx-image`, { prefix: s.prefix, base: s.images.nginxBaseImage, proxy: s.proxy }, onHost);

        const replicas: VllmReplica[] = [];
        for (const plan of s.plan.replicas) {
            // Like the guide: the first replica downloads the model into the shared cache, the others
            // start once it is healthy and find the model there (vllm#2232).
            const startAfter = s.replica.warmFirstReplica && replicas.length > 0 ? [replicas[0].container] : [];
            replicas.push(
                new VllmReplica(
                    `${name}-${plan.name}`,
                    {
                        prefix: s.prefix,
                        plan,
                        serve: s.serve,
                        runtime: s.replica,
                        image: vllmImage.imageRef,
                        networkName: network.networkName,
                        compileCacheVolume: compileCache.name,
                        secrets: args.secrets,
                        proxyEnv,
                        startAfter,
                        transform: { container: args.transform?.replicaContainer },
                    },
                    onHost,
                ),
            );
        }

        const rendered = renderNginxConfig({
            ...s.balancer,
            upstreams: s.plan.replicas.map((plan) => ({ name: plan.name, address: plan.upstream })),
            listen: String(BALANCER_CONTAINER_PORT),
            stack: s.prefix,
        });
        const balancer = new NginxBalancer(
            `${name}-lb`,
            {
                prefix: s.prefix,
                image: nginxImage.imageRef,
                networkName: network.networkName,
                publish: s.balancer,
                config: rendered,
                upstreamDependencies: replicas.map((r) => r.container),
                proxyEnv,
                lifecycle: s.replica,
                provider,
                transform: { container: args.transform?.balancerContainer },
            },
            onHost,
        );

        const host = s.balancer.bind === "0.0.0.0" ? "127.0.0.1" : s.balancer.bind;
        const replicaHost = s.replica.portBind === "0.0.0.0" ? "127.0.0.1" : s.replica.portBind;
        this.endpoint = pulumi.output(`http://${host}:${s.balancer.port}`);
        this.openaiBaseUrl = this.endpoint.apply((e) => `${e}/v1`);
        this.servedModel = pulumi.output(s.serve.servedModelName ?? s.serve.model);
        this.replicas = pulumi.all(replicas.map((r) => r.containerName)).apply((containers) =>
            s.plan.replicas.map((plan, i) => ({
                name: plan.name,
                host: plan.host,
                container: containers[i],
                gpus: plan.gpuIds,
                cpuSet: plan.cpuSet,
                url: `http://${replicaHost}:${plan.hostPort}`,
            })),
        );
        this.balancerContainer = balancer.containerName;
        this.networkName = network.networkName;
        this.configId = balancer.configId;
        this.nginxConfig = pulumi.output(rendered.text);

        this.registerOutputs({
            endpoint: this.endpoint,
            openaiBaseUrl: this.openaiBaseUrl,
            servedModel: this.servedModel,
            replicas: this.replicas,
            balancerContainer: this.balancerContainer,
            networkName: this.networkName,
            configId: this.configId,
            nginxConfig: this.nginxConfig,
        });
    }
}
