/** Scripts the program itself runs where `pulumi up` runs, outside any resource. */
import { execFile } from "child_process";
import * as pulumi from "@pulumi/pulumi";
import { MockMonitor } from "@pulumi/pulumi/runtime/mocks";

/** Runs a script with the given environment where `pulumi up` runs; resolves with its stdout, rejects with its stderr. */
export type ScriptRunner = (commandLine: string, env: Record<string, string>) => Promise<string>;

export const runScript: ScriptRunner = (commandLine, env) =>
    new Promise((resolve, reject) =>
        execFile("sh", ["-c", commandLine], { env: { ...process.env, ...env }, encoding: "utf8", maxBuffer: 1 << 20 }, (error, stdout, stderr) =>
            error ? reject(new Error(`${stderr.trim() || error.message}`)) : resolve(stdout),
        ),
    );

/** Whether the program runs under Pulumi's mocks (unit tests): nothing was deployed, and no engine is there. */
export function underMocks(): boolean {
    return pulumi.runtime.getMonitor() instanceof MockMonitor;
}

/** The runner a program step uses: the caller's (a test's), else `runScript`; none under Pulumi's mocks, where nothing was deployed. */
export function stepRunner(run?: ScriptRunner): ScriptRunner | undefined {
    return run ?? (underMocks() ? undefined : runScript);
}
