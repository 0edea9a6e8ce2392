import * as pulumi from "@pulumi/pulumi";
import { tlsEnvironment, type Engine } from "../docker/providers";
import { ROTATION_SCRIPT } from "./scripts";

/** What a command needs to move replicas in and out of a balancer's rotation. */
export interface RotationTarget {
    /** The balancer's container name. */
    container: pulumi.Input<string>;
    /** The balancer's Docker engine; undefined for the default engine. */
    engine?: Engine;
    /** The command that installed the config template; rotation changes come after it. */
    installed: pulumi.Resource;
}

/**
 * The environment of a command that changes `target`'s rotation, and acts on the `others` engines too
 * (replicas'): where the balancer is, the script it runs, and the TLS material of the engines that need it.
 */
export function rotationEnvironment(target: RotationTarget, others: Array<Engine | undefined> = []): pulumi.Output<Record<string, string>> {
    return pulumi
        .all([target.container, target.engine?.address ?? "", tlsEnvironment([target.engine, ...others])])
        .apply(([container, engine, tls]): Record<string, string> => ({ ...tls, LB_CONTAINER: container, LB_ENGINE: engine, ROTATION_SH: ROTATION_SCRIPT }));
}
