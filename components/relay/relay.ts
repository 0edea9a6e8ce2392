import * as command from "@pulumi/command";
import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import * as fs from "fs";
import * as path from "path";
import type { RestartPolicy } from "../config";
import { lifecycle } from "../docker/lifecycle";
import { tlsEnvironment, type Engine } from "../docker/providers";
import { withRolloutFunctions } from "../rollout/scripts";
import { EGRESS_PEER_FILE, RELAY_CONFIG_FILE, RELAY_DIR, peerFile, relayCommand, renderEgressConfig, renderGateConfig, type RelayRoute } from "./render";

/** The install of one end (see `scripts/install.sh`), with the rollout scripts' functions (`on_engine`, `retry`). */
const INSTALL_SCRIPT = withRolloutFunctions(fs.readFileSync(path.join(__dirname, "scripts", "install.sh"), "utf8"));

/** What every end runs on: a host's engine, its stack network and the nginx image built there. */
export interface RelayHost {
    engine: Engine;
    networkName: pulumi.Input<string>;
    /** The nginx image on this host (see `NginxImage`): Debian's nginx with its stream module. */
    image: pulumi.Input<string>;
}

export interface FleetRelayArgs {
    /** Prefix of the containers' names (the stack name). */
    prefix: string;
    /** The replicas of other hosts, as the relay reaches them (see `relayRoutes`); none: no relay. */
    routes: RelayRoute[];
    /** The balancer's host, where the egress runs at `egressAddress` on the stack's network. */
    balancer: RelayHost & { egressAddress: string; allow: string };
    /** The other hosts with replicas, by host name, each with the address and port its gate publishes on. */
    gates: Record<string, RelayHost & { address: string; port: number }>;
    /** nginx worker processes of each end (`lbWorkers`). */
    workers: number;
    /** The balancer's `readTimeout` in seconds: how long an idle stream lasts in the relay. */
    timeoutSeconds: number;
    restartPolicy: RestartPolicy;
    /** How long a stopping end lets its streams finish (`stopGracePeriod`). */
    stopGraceSeconds: number;
}

/**
 * The relay between the balancer and the replicas of other hosts (see `render.ts`): the egress on the
 * balancer's host, a gate on each other host, and the installs that exchange their certificates and
 * configs. A change of routes is a reload; only a new image or a new address replaces a container.
 */
export class FleetRelay extends pulumi.ComponentResource {
    /** The installs; a replica of another host is reached once they ran. */
    readonly installed: pulumi.Resource[];

    constructor(name: string, args: FleetRelayArgs, opts?: pulumi.ComponentResourceOptions) {
        super("vllm-nginx:relay:FleetRelay", name, {}, opts);
        const timing = { timeoutSeconds: args.timeoutSeconds };
        const end = (endName: string, host: RelayHost, container: Omit<docker.ContainerArgs, "image">, role: "relay" | "gate") =>
            new docker.Container(
                `${name}-${endName}`,
                {
                    ...container,
                    image: host.image,
                    command: relayCommand(args.workers),
                    ...lifecycle({ prefix: args.prefix, role, restartPolicy: args.restartPolicy, stopGraceSeconds: args.stopGraceSeconds }),
                },
                { parent: this, provider: host.engine.provider },
            );

        const egress = end(
            "egress",
            args.balancer,
            { name: `${args.prefix}-relay`, networksAdvanced: [{ name: args.balancer.networkName, aliases: ["relay"], ipv4Address: args.balancer.egressAddress }] },
            "relay",
        );
        const gates = Object.entries(args.gates).map(([host, gate]) => ({
            host,
            gate,
            container: end(
                `gate-${host}`,
                gate,
                { name: `${args.prefix}-gate`, networksAdvanced: [{ name: gate.networkName, aliases: ["gate"] }], ports: [{ internal: gate.port, external: gate.port, ip: gate.address }] },
                "gate",
            ),
        }));

        const install = (endName: string, host: RelayHost, container: docker.Container, config: string, peers: Array<{ file: string; engine: Engine; container: docker.Container }>) =>
            new command.local.Command(
                `${name}-${endName}-install`,
                {
                    create: 'sh -c "$RELAY_SH" relay-install.sh',
                    update: 'sh -c "$RELAY_SH" relay-install.sh',
                    environment: pulumi
                        .all([
                            tlsEnvironment([host.engine, ...peers.map((p) => p.engine)]),
                            host.engine.address,
                            container.name,
                            pulumi.all(peers.map((p) => pulumi.all([p.engine.address, p.container.name]).apply(([address, c]) => `${p.file}|${address || "-"}|${c}`))),
                        ])
                        .apply(([tls, address, containerName, peerList]) => ({
                            ...tls,
                            RELAY_SH: INSTALL_SCRIPT,
                            RELAY_ENGINE: address,
                            RELAY_CONTAINER: containerName,
                            RELAY_CONFIG: config,
                            RELAY_PEERS: peerList.join(" "),
                            RELAY_DIR,
                            RELAY_CONFIG_FILE,
                        })),
                    // A new container of this end or of a peer has a new key: the certificates are exchanged again.
                    triggers: [container.id, ...peers.map((p) => p.container.id)],
                },
                { parent: this, dependsOn: [container, ...peers.map((p) => p.container)] },
            );

        this.installed = [
            install(
                "egress",
                args.balancer,
                egress,
                renderEgressConfig(args.routes, { ...timing, allow: args.balancer.allow }),
                gates.map((g) => ({ file: peerFile(g.host), engine: g.gate.engine, container: g.container })),
            ),
            ...gates.map((g) =>
                install(
                    `gate-${g.host}`,
                    g.gate,
                    g.container,
                    renderGateConfig(
                        args.routes.filter((route) => route.host === g.host),
                        { ...timing, port: g.gate.port },
                    ),
                    [{ file: EGRESS_PEER_FILE, engine: args.balancer.engine, container: egress }],
                ),
            ),
        ];
        this.registerOutputs({});
    }
}
