import * as pulumi from "@pulumi/pulumi";
import { BALANCER_STATUS_PORT } from "../nginx/paths";
import { ROUTING_STATUS_PATH } from "../nginx/routing";
import { afterEveryUp, type ScriptRunner } from "./afterUp";
import { memberLines, type GateMember } from "./gate";
import { rolloutScript, runRolloutScript } from "./scripts";
import { rotationEnvironment, type RotationTarget } from "./target";

/**
 * How long an `up` waits for the balancer to load the adapters on the replicas in rotation (it checks each
 * one every few seconds; vLLM downloads an adapter from the Hugging Face hub on its first load).
 */
export const ADAPTERS_TIMEOUT_SECONDS = 120;

/** "NAME a,b" per replica, the adapters sorted as the balancer's status lists them ("-" for none). */
export function adapterLines(adapters: Record<string, string[]>): string {
    return Object.entries(adapters)
        .map(([name, list]) => `${name} ${[...list].sort().join(",") || "-"}`)
        .join("\n");
}

export interface RotationReconcileArgs {
    /** Every replica this deployment declares. */
    members: GateMember[];
    /**
     * The adapters each replica of a group with LoRA keeps loaded, by replica name: the reconciliation waits
     * (up to `ADAPTERS_TIMEOUT_SECONDS`) until the balancer has loaded them on each one in rotation.
     */
    adapters?: Record<string, string[]>;
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
                .apply(([rotation, members]) => ({
                    ...rotation,
                    ROLLOUT_SH: rolloutScript("reconcile"),
                    MEMBERS: members,
                    ADAPTERS: adapterLines(args.adapters ?? {}),
                    ADAPTERS_TIMEOUT: String(ADAPTERS_TIMEOUT_SECONDS),
                    ROUTING_STATUS: `127.0.0.1:${BALANCER_STATUS_PORT}${ROUTING_STATUS_PATH}`,
                })),
            after: args.after,
            parent: args.parent,
        },
        run,
    );
}
