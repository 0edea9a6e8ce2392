import * as pulumi from "@pulumi/pulumi";
import { ROTATION_SCRIPT } from "./scripts";

/** What a command needs to move replicas in and out of a balancer's rotation. */
export interface RotationTarget {
    /** The balancer's container name. */
    container: pulumi.Input<string>;
    /** The address of the balancer's Docker engine, empty for the default engine. */
    engine: pulumi.Input<string>;
    /** The command that installed the config template; rotation changes come after it. */
    installed: pulumi.Resource;
}

/** The environment of a command that changes `target`'s rotation. */
export function rotationEnvironment(target: RotationTarget): pulumi.Output<Record<string, string>> {
    return pulumi.all([target.container, target.engine]).apply(([container, engine]): Record<string, string> => ({ LB_CONTAINER: container, LB_ENGINE: engine, ROTATION_SH: ROTATION_SCRIPT }));
}
