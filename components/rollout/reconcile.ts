import { execFile } from "child_process";
import * as pulumi from "@pulumi/pulumi";
import { MockMonitor } from "@pulumi/pulumi/runtime/mocks";
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

/** Runs a script with the given environment where `pulumi up` runs; resolves with its stdout. */
export type ScriptRunner = (commandLine: string, env: Record<string, string>) => Promise<string>;

const runScript: ScriptRunner = (commandLine, env) =>
    new Promise((resolve, reject) =>
        execFile("sh", ["-c", commandLine], { env: { ...process.env, ...env }, encoding: "utf8", maxBuffer: 1 << 20 }, (error, stdout, stderr) =>
            error ? reject(new Error(`${stderr.trim() || error.message}`)) : resolve(stdout),
        ),
    );

/**
 * The rotation's reconciliation (`reconcile.sh`), at the end of every `pulumi up` and never in a preview:
 * every replica that runs the settings this deployment declares and serves /health is in rotation. It is
 * a step of the program, not a resource, so an `up` with nothing to change stays one with no changes.
 * Resolves with what it did, one line per replica it found out of rotation (empty in a preview). Under
 * Pulumi's mocks nothing was deployed, so nothing runs unless a test gives its own `run`.
 */
export function reconcileRotation(args: RotationReconcileArgs, run?: ScriptRunner): pulumi.Output<string> {
    const runner = run ?? (pulumi.runtime.getMonitor() instanceof MockMonitor ? undefined : runScript);
    const done = pulumi.all(args.after.map((r) => r.id));
    return pulumi
        .all([rotationEnvironment(args.target, args.members.map((m) => m.engine)), memberLines(args.members), done])
        .apply(async ([rotation, members]) => {
            if (pulumi.runtime.isDryRun() || runner === undefined) {
                return "";
            }
            let out: string;
            try {
                out = await runner(runRolloutScript("reconcile"), { ...rotation, ROLLOUT_SH: rolloutScript("reconcile"), MEMBERS: members });
            } catch (error) {
                throw new Error(`checking nginx's rotation after the deployment: ${(error as Error).message}`);
            }
            const lines = out.split("\n").filter(Boolean);
            for (const line of lines) {
                if (line.startsWith("warning: ")) {
                    await pulumi.log.warn(line.slice("warning: ".length), args.parent);
                } else {
                    await pulumi.log.info(line, args.parent);
                }
            }
            return lines.join("\n");
        });
}
