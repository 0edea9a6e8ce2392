import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import type { ReplicaSettings } from "../config";
import type { Engine } from "../docker/providers";
import { rolloutScript, runRolloutScript } from "./scripts";
import { rotationEnvironment, type RotationTarget } from "./target";

/** Members as the rollout scripts read them: one "NAME CONTAINER ENGINE SPEC ADDRESS" per line ("-" for the default engine). */
export function memberLines(members: GateMember[]): pulumi.Output<string> {
    return pulumi
        .all(members.map((m) => pulumi.all([m.container, m.engine?.address ?? "", m.spec]).apply(([c, e, s]) => `${m.name} ${c} ${e || "-"} ${s} ${m.address}`)))
        .apply((l) => l.join("\n"));
}

/** A replica as a rollout step sees it. */
export interface GateMember {
    name: string;
    /** Its container's name on its host. */
    container: pulumi.Input<string>;
    /** Its host's Docker engine; undefined for the default engine. */
    engine?: Engine;
    /** The spec it should run (see `replicaSpec`). */
    spec: pulumi.Input<string>;
    /** `host:port` the balancer reaches it at. */
    address: string;
}

export interface RolloutGateArgs {
    /** The replicas this step may replace. */
    batch: GateMember[];
    /** The replicas of the steps before, which must run their new spec and be back in rotation first. */
    earlier: GateMember[];
    /** The balancer whose rotation they leave. */
    target: RotationTarget;
    /** `startupTimeoutSeconds` bounds the wait for the steps before; `stopGraceSeconds` the drain. */
    timeouts: Pick<ReplicaSettings, "startupTimeoutSeconds" | "stopGraceSeconds">;
    /** The step before this one (and replicas that must be up before any replacement starts). */
    after?: pulumi.Input<pulumi.Resource>[];
}

/**
 * One step of a rollout, before the containers of its batch are registered (which replaces them): waits
 * for the steps before to finish, takes the replicas of its batch that change out of rotation and lets
 * their requests finish. It runs on every `pulumi up` that changes a replica's spec, and lets replicas
 * that do not change, or do not exist yet, through at once.
 */
export class RolloutGate extends pulumi.ComponentResource {
    readonly command: command.local.Command;

    constructor(name: string, args: RolloutGateArgs, opts?: pulumi.ComponentResourceOptions) {
        super("vllm-nginx:rollout:RolloutGate", name, {}, opts);
        this.command = new command.local.Command(
            `${name}-step`,
            {
                create: runRolloutScript("gate"),
                update: runRolloutScript("gate"),
                environment: pulumi.all([rotationEnvironment(args.target, [...args.batch, ...args.earlier].map((m) => m.engine)), memberLines(args.batch), memberLines(args.earlier)]).apply(([rotation, batch, earlier]) => ({
                    ...rotation,
                    ROLLOUT_SH: rolloutScript("gate"),
                    BATCH: batch,
                    EARLIER: earlier,
                    STARTUP_TIMEOUT: String(args.timeouts.startupTimeoutSeconds),
                    GRACE: String(args.timeouts.stopGraceSeconds),
                })),
            },
            { parent: this, dependsOn: pulumi.output(args.after ?? []).apply((after) => [args.target.installed, ...after]) },
        );
        this.registerOutputs({});
    }
}
