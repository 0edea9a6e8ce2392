import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import type { FleetSecrets, FleetSettings } from "./config";
import { servedNames, type ModelGroupSettings } from "./config/groups";
import { planFleet } from "./fleetPlan";
import { FleetHost } from "./docker/host";
import { edgeConfig, edgeScheme, edgeSecretBundle } from "./edge";
import { FleetMonitoring } from "./monitoring/fleetMonitoring";
import { proxyVariables } from "./docker/proxy";
import { NginxBalancer } from "./nginx/balancer";
import { NginxImage } from "./nginx/image";
import { BALANCER_CONTAINER_PORT, BALANCER_STATUS_PORT } from "./nginx/paths";
import { renderTemplate } from "./nginx/render";
import type { RoutingGroup } from "./nginx/routing";
import { LOCAL_HOST, egressAddress, type PreviousDeployment, type ReplicaPlan } from "./planning";
import { dynamicRange } from "./planning/subnet";
import { FleetRelay, relayRoutes } from "./relay";
import { RolloutGate, type GateMember } from "./rollout/gate";
import { reconcileRotation } from "./rollout/reconcile";
import type { Transform } from "./transform";
import { VllmImage } from "./vllm/image";
import { VllmReplica, replicaContainer, replicaSpec, type VllmReplicaArgs } from "./vllm/replica";

export interface VllmFleetArgs {
    /** Validated settings (see `parseFleetConfig`, or `readStackConfig` for the current stack). */
    settings: FleetSettings;
    /** The HF token, the API key, client keys and the TLS pair, as secret outputs. Defaults to none. */
    secrets?: FleetSecrets;
    /**
     * What the last deployment of this fleet ran (its `rollout` output; see `readPreviousDeployment`), so
     * that a change is planned, and told at preview, before anything is created. Without it, replicas
     * that change are still replaced one batch at a time, in place.
     */
    previous?: PreviousDeployment;
    /**
     * The Docker engine of each host, by host name (`local` for a stack without `hosts`). A host without
     * one gets a provider for its engine address (`hosts[].engine`; for `local`: `docker:host`, else
     * `DOCKER_HOST`, else the local socket), behind a check that the engine answers.
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
    /** The model group it serves (`default` for a stack without `models`). */
    group: string;
    host: string;
    container: string;
    gpus: string[];
    cpuSet?: string;
    /**
     * The replica's own published URL (on `replicaPortBind`, the loopback by default); none for a replica
     * of another host, which publishes nothing (the relay reaches it).
     */
    url?: string;
}

/**
 * vLLM's "Using Nginx" deployment as one component: the network, the vLLM and nginx images, one replica
 * per GPU group (or CPU replica), and the nginx balancer in front of them. Replicas join nginx's rotation
 * once healthy, leave it (drained) before they stop, and roll one batch at a time when they change.
 */
export class VllmFleet extends pulumi.ComponentResource {
    /** Base URL of the balancer, e.g. `http://127.0.0.1:8000`. */
    readonly endpoint: pulumi.Output<string>;
    /** OpenAI-compatible base URL (`<endpoint>/v1`). */
    readonly openaiBaseUrl: pulumi.Output<string>;
    /** The model name clients send (`--served-model-name`, else the model id): the first model group's. */
    readonly servedModel: pulumi.Output<string>;
    /** Every name the endpoint serves: each model group's models and adapters. */
    readonly models: pulumi.Output<string[]>;
    readonly replicas: pulumi.Output<ReplicaSummary[]>;
    readonly balancerContainer: pulumi.Output<string>;
    readonly networkName: pulumi.Output<string>;
    /** Id of the nginx config in service; changes with every change of the rendered config. */
    readonly configId: pulumi.Output<string>;
    /** The rendered nginx config template, for review in `pulumi stack output`. */
    readonly nginxConfig: pulumi.Output<string>;
    /** What this deployment runs, for the next one to plan its rollout (pass it back as `previous`). */
    readonly rollout: pulumi.Output<PreviousDeployment>;
    /** Prometheus's URL (on the loopback by default), when monitoring is on. */
    readonly prometheusUrl: pulumi.Output<string | undefined>;
    /** Grafana's URL, when it is on. */
    readonly grafanaUrl: pulumi.Output<string | undefined>;
    /** What the rotation's reconciliation at the end of this `up` did (see `reconcileRotation`); empty in a preview. */
    readonly rotationReconciled: pulumi.Output<string>;

    constructor(name: string, args: VllmFleetArgs, opts?: pulumi.ComponentResourceOptions) {
        super("vllm-nginx:index:VllmFleet", name, {}, opts);
        const s = args.settings;
        const proxyEnv = proxyVariables(s.proxy);

        // Each model group rolls on its own: its spec, its plan, its batches. A stack without `models` has one.
        const several = s.groups.length > 1;
        const { groups: groupPlans, active } = planFleet(s, args.secrets?.digest, args.previous);
        for (const { message, outage } of groupPlans) {
            if (message) {
                void pulumi.log.info(message, this);
            }
            if (outage) {
                void pulumi.log.warn(outage, this);
            }
        }
        const groupPlan = (groupName: string) => groupPlans.find((g) => g.group.name === groupName)!;
        const slot = (slotName: string) => s.placement.slots.find((p) => p.name === slotName)!;

        // One FleetHost per Docker engine; a stack without `hosts` has one, `local`, with the names it always had.
        const single = s.placement.hosts.length === 1 && s.placement.hosts[0].name === LOCAL_HOST;
        const hosts = new Map<string, FleetHost>();
        for (const host of s.placement.hosts) {
            const hostName = single ? name : `${name}-${host.name}`;
            hosts.set(
                host.name,
                new FleetHost(
                    hostName,
                    {
                        prefix: s.prefix,
                        host,
                        engineAddress: s.engines[host.name],
                        tls: args.secrets?.hostTls?.[host.name],
                        provider: args.providers?.[host.name],
                        subnet: s.network.subnet,
                        vllm: s.placement.slots.some((slot) => slot.host === host.name) ? s.images : undefined,
                        proxy: s.proxy,
                        transform: { network: args.transform?.network },
                    },
                    { parent: this },
                ),
            );
        }
        const balancerHost = hosts.get(s.placement.hosts.find((h) => h.balancer)!.name)!;
        const engine = balancerHost.engine;
        const onHost = { parent: this, providers: { docker: engine.provider } };
        const nginxImage = new NginxImage(`${name}-nginx-image`, { prefix: s.prefix, base: s.images.nginxBaseImage, proxy: s.proxy }, onHost);

        // Replicas of other hosts are reached through the relay (mutual TLS), and publish nothing.
        const routes = relayRoutes(s.placement.slots);
        const relay =
            routes.length === 0
                ? undefined
                : new FleetRelay(
                      `${name}-relay`,
                      {
                          prefix: s.prefix,
                          routes,
                          balancer: {
                              engine,
                              networkName: balancerHost.networkName,
                              image: nginxImage.imageRef,
                              egressAddress: egressAddress(s.network.subnet),
                              // The balancer and monitoring: the upper half of the network, where replicas never are.
                              allow: dynamicRange(s.network.subnet),
                          },
                          gates: Object.fromEntries(
                              [...new Set(routes.map((route) => route.host))].map((hostName) => {
                                  const host = hosts.get(hostName)!;
                                  const onGateHost = { parent: this, providers: { docker: host.engine.provider } };
                                  const image = new NginxImage(`${name}-${hostName}-nginx-image`, { prefix: s.prefix, base: s.images.nginxBaseImage, proxy: s.proxy }, onGateHost);
                                  const plan = s.placement.hosts.find((h) => h.name === hostName)!;
                                  return [hostName, { engine: host.engine, networkName: host.networkName, image: image.imageRef, address: plan.address!, port: s.placement.slots.find((slot) => slot.host === hostName)!.relay!.gatePort }];
                              }),
                          ),
                          workers: s.balancer.workers,
                          timeoutSeconds: s.balancer.readTimeoutSeconds,
                          restartPolicy: s.replica.restartPolicy,
                          stopGraceSeconds: s.replica.stopGraceSeconds,
                      },
                      { parent: this },
                  );

        const template = renderTemplate({
            ...s.balancer,
            upstreams: active.map((replica) => ({ name: replica.name, address: replica.upstream, ...(several ? { group: replica.group } : {}) })),
            // The Lua balancer reads the body's model with several groups, or for a key limited to some models.
            groups: several || s.edge.clients.some((c) => c.models !== undefined) ? s.groups.map(routingGroup) : undefined,
            listen: String(BALANCER_CONTAINER_PORT),
            statusListen: String(BALANCER_STATUS_PORT),
            stack: s.prefix,
            edge: edgeConfig(s.edge, s.balancer.port),
        });
        const balancer = new NginxBalancer(
            `${name}-lb`,
            {
                prefix: s.prefix,
                image: nginxImage.imageRef,
                networkName: balancerHost.networkName,
                publish: s.balancer,
                workers: s.balancer.workers,
                config: template,
                edge: { settings: s.edge, bundle: edgeSecretBundle(s.edge, args.secrets) },
                proxyEnv,
                lifecycle: s.replica,
                engine,
                transform: { container: args.transform?.balancerContainer },
            },
            onHost,
        );

        // A group with an image of its own pulls it on each host it runs on.
        const groupImages = new Map<string, pulumi.Output<string>>();
        const imageFor = (replica: ReplicaPlan) => {
            const own = groupPlan(replica.group).group.vllmImage;
            if (own === undefined) {
                return hosts.get(replica.host)!.vllmImage!;
            }
            const key = `${replica.host}/${replica.group}`;
            if (!groupImages.has(key)) {
                const onReplicaHost = { parent: this, providers: { docker: hosts.get(replica.host)!.engine.provider } };
                groupImages.set(key, new VllmImage(`${name}-${replica.host}-${replica.group}-vllm-image`, { prefix: s.prefix, image: own, proxy: s.proxy }, onReplicaHost).imageRef);
            }
            return groupImages.get(key)!;
        };
        const replicaArgs = (replica: ReplicaPlan): VllmReplicaArgs => {
            const host = hosts.get(replica.host)!;
            const { serve, runtime } = groupPlan(replica.group);
            return {
                prefix: s.prefix,
                plan: replica,
                serve,
                runtime,
                image: imageFor(replica),
                networkName: host.networkName,
                compileCacheVolume: host.compileCacheVolume,
                secrets: args.secrets,
                proxyEnv,
                rotation: balancer.rotation,
                engine: host.engine,
                transform: { container: args.transform?.replicaContainer },
            };
        };
        const member = (replica: ReplicaPlan): GateMember => {
            const [, containerArgs] = replicaContainer(`${name}-${replica.name}`, replicaArgs(replica));
            return { name: replica.name, container: containerArgs.name!, engine: hosts.get(replica.host)!.engine, spec: replicaSpec(containerArgs), address: replica.upstream };
        };

        const replicas = new Map<string, VllmReplica>();
        // Like the guide: on the first deployment one replica of each host (and group) downloads the model into
        // the host's cache and the host's others start once it serves, and find the model there (vllm#2232).
        const warm = new Map<string, VllmReplica>();
        const create = (replica: ReplicaPlan, after: pulumi.Resource[]) => {
            const warmKey = `${replica.host}/${replica.group}`;
            const first = warm.get(warmKey);
            const waitForWarm = first?.member && s.replica.warmFirstReplica && args.previous === undefined ? [first.member] : [];
            const onReplicaHost = { parent: this, providers: { docker: hosts.get(replica.host)!.engine.provider } };
            // A replica of another host is reached once the relay's ends know their routes and each other.
            const reached = replica.relay && relay ? relay.installed : [];
            const created = new VllmReplica(`${name}-${replica.name}`, { ...replicaArgs(replica), startAfter: [...after, ...waitForWarm, ...reached] }, onReplicaHost);
            replicas.set(replica.name, created);
            if (!first) {
                warm.set(warmKey, created);
            }
        };
        const gates: RolloutGate[] = [];
        groupPlans.forEach(({ group, plan, runtime }, groupIndex) => {
            // Surge replicas start first, on spare slots; every replacement waits until they serve.
            for (const replicaName of plan.surge) {
                create(slot(replicaName), []);
            }
            let after: pulumi.Resource[] = plan.surge.map((replicaName) => replicas.get(replicaName)!.member!);
            plan.batches.forEach((batch, index) => {
                const gate = new RolloutGate(
                    groupIndex === 0 ? `${name}-rollout-${index}` : `${name}-${group.name}-rollout-${index}`,
                    {
                        batch: batch.map((replicaName) => member(slot(replicaName))),
                        earlier: [...plan.surge, ...plan.batches.slice(0, index).flat()].map((replicaName) => member(slot(replicaName))),
                        target: balancer.rotation,
                        timeouts: runtime,
                        after,
                    },
                    { parent: this },
                );
                gates.push(gate);
                for (const replicaName of batch) {
                    create(slot(replicaName), [gate.command]);
                }
                after = [gate.command];
            });
            for (const replicaName of plan.added.filter((added) => !plan.batches.flat().includes(added))) {
                create(slot(replicaName), []);
            }
        });

        // Every `up` ends with each replica that runs its declared settings and serves /health in rotation.
        const loraGroups = new Map(s.groups.filter((group) => group.adapters.length > 0).map((group) => [group.name, group.adapters.map((a) => a.name)]));
        this.rotationReconciled = reconcileRotation({
            members: active.map(member),
            adapters: Object.fromEntries(active.filter((replica) => loraGroups.has(replica.group)).map((replica) => [replica.name, loraGroups.get(replica.group)!])),
            target: balancer.rotation,
            after: [balancer.installConfig, ...gates.map((g) => g.command), ...active.map((replica) => replicas.get(replica.name)!.member!)],
            parent: this,
        });

        const monitoring = new FleetMonitoring(
            `${name}-monitoring`,
            {
                prefix: s.prefix,
                settings: s.monitoring,
                networkName: balancerHost.networkName,
                replicas: active.map((replica) => ({ name: replica.name, address: replica.upstream, host: replica.host, ...(several ? { group: replica.group } : {}) })),
                // Scraped once they serve, so a deploy does not raise "replica down" while models load.
                replicaDependencies: active.map((replica) => replicas.get(replica.name)!.member!),
                balancerDependencies: [balancer.installConfig],
                proxy: s.proxy,
                engine,
                restartPolicy: s.replica.restartPolicy,
            },
            onHost,
        );

        const host = endpointHost(s.balancer.bind, s.engines[s.placement.hosts.find((h) => h.balancer)!.name], s.edge);
        const reachable = (address: string) => (address === "0.0.0.0" ? "127.0.0.1" : address);
        this.endpoint = pulumi.output(`${edgeScheme(s.edge)}://${host}:${s.balancer.port}`);
        this.openaiBaseUrl = this.endpoint.apply((e) => `${e}/v1`);
        this.servedModel = pulumi.output(servedNames(s.groups[0])[0]);
        this.models = pulumi.output(s.groups.flatMap((group) => routingGroup(group).served.map((n) => n.id)));
        const running = active.map((replica) => replicas.get(replica.name)!);
        this.replicas = pulumi.all(running.map((r) => pulumi.all([r.containerName, r.member ? r.member.stdout : ""]).apply(([c]) => c))).apply((containers) =>
            active.map((replica, i) => ({
                name: replica.name,
                group: replica.group,
                host: replica.host,
                container: containers[i],
                gpus: replica.gpuIds,
                cpuSet: replica.cpuSet,
                url: replica.publish === undefined ? undefined : `http://${reachable(replica.publish)}:${replica.hostPort}`,
            })),
        );
        this.balancerContainer = balancer.containerName;
        this.networkName = balancerHost.networkName;
        this.configId = balancer.configId;
        this.nginxConfig = pulumi.output(template.template);
        this.rollout = pulumi.output({ spec: groupPlans[0].spec, active: active.map((replica) => replica.name), groups: Object.fromEntries(groupPlans.map((g) => [g.group.name, g.spec])) });
        this.prometheusUrl = monitoring.prometheusUrl;
        this.grafanaUrl = monitoring.grafanaUrl;

        this.registerOutputs({
            endpoint: this.endpoint,
            openaiBaseUrl: this.openaiBaseUrl,
            servedModel: this.servedModel,
            models: this.models,
            replicas: this.replicas,
            balancerContainer: this.balancerContainer,
            networkName: this.networkName,
            configId: this.configId,
            nginxConfig: this.nginxConfig,
            rollout: this.rollout,
            prometheusUrl: this.prometheusUrl,
            grafanaUrl: this.grafanaUrl,
            rotationReconciled: this.rotationReconciled,
        });
    }
}

/** A model group as the balancer routes to it: its served names, its adapters (each with its model's first name as parent), its balancing. */
export function routingGroup(group: ModelGroupSettings): RoutingGroup {
    const names = servedNames(group);
    return {
        name: group.name,
        served: [...names.map((id) => ({ id, root: group.model })), ...group.adapters.map((a) => ({ id: a.name, root: a.source, parent: names[0] }))],
        ...group.balancer,
        ...(group.adapters.length > 0 ? { lora: true } : {}),
    };
}

/**
 * The host name clients use for the balancer: its bind address when it has one; else, with a self-signed
 * certificate, the certificate's first name; else the balancer's engine host when that is another machine
 * (`ssh://user@gpu-a`, `tcp://gpu-a:2376`); else the loopback.
 */
export function endpointHost(bind: string, engine: string | undefined, edge: FleetSettings["edge"]): string {
    if (bind !== "0.0.0.0") {
        return bind;
    }
    if (edge.tls.mode === "self-signed" && edge.tls.hosts.length > 0) {
        return edge.tls.hosts[0];
    }
    const remote = /^(?:ssh|tcp):\/\/(?:[^@/]*@)?(\[[^\]]+\]|[^:/]+)/.exec(engine ?? "");
    return remote ? remote[1] : "127.0.0.1";
}
