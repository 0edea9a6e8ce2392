import * as pulumi from "@pulumi/pulumi";
import { stepRunner, type ScriptRunner } from "./local";

export type { ScriptRunner } from "./local";

export interface AfterEveryUpArgs {
    /** What it does, for its error message: "checking nginx's rotation". */
    what: string;
    /** The command line, which reads its script from the environment (see `runRolloutScript`). */
    commandLine: string;
    environment: pulumi.Input<Record<string, string>>;
    /** The resources whose operations of this `up` come first. */
    after: pulumi.CustomResource[];
    /** The resource its messages are logged on. */
    parent: pulumi.Resource;
}

/**
 * A step of the program, not a resource, at the end of every `pulumi up` (never in a preview): for what no
 * resource change would bring back, so that an `up` with nothing to change still reports no changes. It
 * runs once the `after` resources are done, and each line it prints is logged on `parent` (as a warning
 * when it starts with "warning: "); a failure fails the `up`. Resolves with what it printed (empty in a
 * preview). Under Pulumi's mocks nothing was deployed, so nothing runs unless a test gives its own `run`.
 */
export function afterEveryUp(args: AfterEveryUpArgs, run?: ScriptRunner): pulumi.Output<string> {
    const runner = stepRunner(run);
    const done = pulumi.all(args.after.map((r) => r.id));
    return pulumi.all([args.environment, done]).apply(async ([environment]) => {
        if (pulumi.runtime.isDryRun() || runner === undefined) {
            return "";
        }
        let out: string;
        try {
            out = await runner(args.commandLine, environment);
        } catch (error) {
            throw new Error(`${args.what} after the deployment: ${(error as Error).message}`);
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
