import * as pulumi from "@pulumi/pulumi";
import { afterEveryUp, type ScriptRunner } from "./afterUp";
import { memberLines, type GateMember } from "./gate";
import { rolloutScript, runRolloutScript } from "./scripts";
import { rotationEnvironment, type RotationTarget } from "./target";

export interface RotationReconcileArgs {
    /** Every replica this deployment declares. */
    members: GateMember[];
    /** The balancer whose rotation they belong to. */
    target: RotationTarget;
    /** What this `up` does to the rotation first: the replicas' member commands and the rollout's gates. */
    after: pulumi.CustomResource[];
    /** The resource its messages are logged on. */
    parent: pulumi.Resource;
}

/**
 * The rotation's reconciliation (`reconcile.sh`), at the end of every `pulumi up` (see `afterEveryUp`):
 * every replica that runs the settings this deployment declares and serves /health is in rotation.
 * Resolves with what it did, one line per replica it found out of rotation.
 */
export function reconcileRotation(args: RotationReconcileArgs, run?: ScriptRunner): pulumi.Output<string> {
    return afterEveryUp(
        {
            what: "checking nginx's rotation",
            commandLine: runRolloutScript("reconcile"),
            environment: pulumi
                .all([rotationEnvironment(args.target, args.members.map((m) => m.engine)), memberLines(args.members)])
                .apply(([rotation, members]) => ({ ...rotation, ROLLOUT_SH: rolloutScript("reconcile"), MEMBERS: members })),
            after: args.after,
            parent: args.parent,
        },
        run,
    );
}
