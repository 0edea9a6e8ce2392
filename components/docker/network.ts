import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import { dynamicRange } from "../planning/subnet";
import { applyTransform, type Transform } from "../transform";
import { labelList } from "./labels";

export interface FleetNetworkArgs {
    /** Prefix of the network's name on the Docker host (the stack name). */
    prefix: string;
    /** IPv4 subnet in CIDR form. Replicas take fixed addresses in its lower half; Docker hands out the upper half. */
    subnet: string;
    /** Adjusts the `docker.Network` it creates. */
    transform?: { network?: Transform<docker.NetworkArgs> };
}

/**
 * The bridge network that the replicas and the balancer share, as the guide's
 * `docker network create vllm_nginx`, with a subnet of its own so replicas keep fixed addresses.
 */
export class FleetNetwork extends pulumi.ComponentResource {
    /** The network's name on the Docker host. */
    readonly networkName: pulumi.Output<string>;
    readonly network: docker.Network;

    constructor(name: string, args: FleetNetworkArgs, opts?: pulumi.ComponentResourceOptions) {
        super("vllm-nginx:network:FleetNetwork", name, {}, opts);

        this.network = new docker.Network(
            ...applyTransform(
                args.transform?.network,
                `${name}-network`,
                {
                    name: `${args.prefix}-vllm-nginx`,
                    driver: "bridge",
                    ipamConfigs: [{ subnet: args.subnet, ipRange: dynamicRange(args.subnet) }],
                    labels: labelList({ stack: args.prefix }),
                },
                { parent: this },
            ),
        );
        this.networkName = this.network.name;

        this.registerOutputs({ networkName: this.networkName });
    }
}
