import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import { BALANCER_CONTAINER_PORT, NginxBalancer } from "./balancer";
import type { FleetSecrets, FleetSettings } from "./config";
import { FleetNetwork } from "./network";
import { NginxImage } from "./nginxImage";
import { renderNginxConfig } from "./nginxConfig";
import { VLLM_PORT } from "./placement";
import { proxyVariables } from "./proxy";
import { VllmImage } from "./vllmImage";
import { VllmReplica } from "./replica";

export interface VllmFleetArgs {
    /** Validated settings (see `parseFleetConfig`). */
    settings: FleetSettings;
    /** The HF token and the API key, from secrets. */
    secrets?: FleetSecrets;
}

/** What a user needs to know of one replica. */
export interface ReplicaSummary {
    name: string;
    container: string;
    gpus: string[];
    cpuSet?: string;
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

        const network = new FleetNetwork(`${name}-net`, { prefix: s.prefix, subnet: s.networkSubnet }, { parent: this });
        const compileCache = new docker.Volume(
            `${name}-vllm-cache`,
            { name: `${s.prefix}-vllm-compile-cache`, labels: [{ label: "vllm-nginx.stack", value: s.prefix }] },
            { parent: this },
        );
        const vllmImage = new VllmImage(`${name}-vllm-image`, { prefix: s.prefix, image: s.vllmImage, build: s.vllmBuild, proxy: s.proxy }, { parent: this });
        const nginxImage = new NginxImage(`${name}-nginx-image`, { prefix: s.prefix, baseImage: s.nginxBaseImage, proxy: s.proxy }, { parent: this });

        const replicas: VllmReplica[] = [];
        for (const plan of s.replicas) {
            // Like the guide: the first replica downloads the model into the shared cache, the others
            // start once it is healthy and find the model there (vllm#2232).
            const waitFor = s.warmFirstReplica && replicas.length > 0 ? [replicas[0].container] : [];
            replicas.push(
                new VllmReplica(
                    `${name}-${plan.alias}`,
                    {
                        prefix: s.prefix,
                        plan,
                        backend: s.backend,
                        image: vllmImage.imageRef,
                        model: s.model,
                        servedModelName: s.servedModelName,
                        vllmArgs: s.vllmArgs,
                        networkName: network.networkName,
                        hfCacheDir: s.hfCacheDir,
                        compileCacheVolume: compileCache.name,
                        secrets: args.secrets ?? {},
                        proxyEnv,
                        cpuKvCacheSpace: s.cpuKvCacheSpace,
                        portBind: s.replicaPortBind,
                        shmSizeBytes: s.shmSizeBytes,
                        ipcHost: s.ipcHost,
                        startupTimeoutSeconds: s.startupTimeoutSeconds,
                        stopGraceSeconds: s.stopGraceSeconds,
                        restartPolicy: s.restartPolicy,
                        startAfter: waitFor,
                    },
                    { parent: this },
                ),
            );
        }

        const rendered = renderNginxConfig({
            upstreams: s.replicas.map((plan) => ({ name: plan.alias, address: `${plan.ip}:${VLLM_PORT}` })),
            balancer: s.balancer,
            maxFails: s.maxFails,
            failTimeoutSeconds: s.failTimeoutSeconds,
            readTimeoutSeconds: s.readTimeoutSeconds,
            connectTimeoutSeconds: s.connectTimeoutSeconds,
            maxBodyBytes: s.maxBodyBytes,
            listen: String(BALANCER_CONTAINER_PORT),
            stack: s.prefix,
        });
        const balancer = new NginxBalancer(
            `${name}-lb`,
            {
                prefix: s.prefix,
                image: nginxImage.imageRef,
                networkName: network.networkName,
                port: s.lbPort,
                bind: s.lbBind,
                config: rendered,
                upstreamDependencies: replicas.map((r) => r.container),
                proxyEnv,
                dockerHost: new pulumi.Config("docker").get("host"),
                stopGraceSeconds: s.stopGraceSeconds,
                restartPolicy: s.restartPolicy,
            },
            { parent: this },
        );

        const host = s.lbBind === "0.0.0.0" ? "127.0.0.1" : s.lbBind;
        const replicaHost = s.replicaPortBind === "0.0.0.0" ? "127.0.0.1" : s.replicaPortBind;
        this.endpoint = pulumi.output(`http://${host}:${s.lbPort}`);
        this.openaiBaseUrl = this.endpoint.apply((e) => `${e}/v1`);
        this.servedModel = pulumi.output(s.servedModelName ?? s.model);
        this.replicas = pulumi.all(replicas.map((r) => r.containerName)).apply((containers) =>
            s.replicas.map((plan, i) => ({
                name: plan.alias,
                container: containers[i],
                gpus: plan.gpuIds,
                cpuSet: plan.cpuSet,
                url: `http://${replicaHost}:${plan.hostPort}`,
            })),
        );
        this.balancerContainer = balancer.containerName;
        this.networkName = network.networkName;
        // Known once the config is installed, so it reflects what nginx serves.
        this.configId = pulumi.all([balancer.configId, balancer.installConfig.stdout]).apply(([id]) => id);
        this.nginxConfig = pulumi.output(rendered);

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
