/**
 * The shell scripts of the rollout commands (`scripts/`), read once. They run where `pulumi up` runs and
 * act through the docker CLI on the engines the providers manage; `rotation.sh` runs in the balancer.
 */
import * as fs from "fs";
import * as path from "path";

const read = (file: string) => fs.readFileSync(path.join(__dirname, "scripts", file), "utf8");

/** The script that changes nginx's rotation inside the balancer's container. */
export const ROTATION_SCRIPT = read("rotation.sh");

export type RolloutScript = "install" | "gate" | "member" | "engine" | "reconcile";

/** The functions that point the docker CLI at an engine, with its TLS material when it needs some. */
export const ENGINE_TLS_SCRIPT = read("engine-tls.sh");

/** A rollout script with the functions it uses, for the `ROLLOUT_SH` environment variable. */
export function rolloutScript(script: RolloutScript): string {
    return withRolloutFunctions(read(`${script}.sh`));
}

/** A script of another module with the rollout scripts' functions (reaching the balancer on its engine, `lb`, `retry`). */
export function withRolloutFunctions(script: string): string {
    return `${ENGINE_TLS_SCRIPT}\n${read("common.sh")}\n${script}`;
}

/** The command line that runs the script in `ROLLOUT_SH`: short, so that an error shows what failed, not the script. */
export function runRolloutScript(script: RolloutScript, ...args: string[]): string {
    return ["sh", "-c", '"$ROLLOUT_SH"', `${script}.sh`, ...args].join(" ");
}
