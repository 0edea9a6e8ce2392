/** The shell scripts of the edge install (`scripts/`), read once. */
import * as fs from "fs";
import * as path from "path";
import { withRolloutFunctions } from "../rollout/scripts";

const read = (file: string) => fs.readFileSync(path.join(__dirname, "scripts", file), "utf8");

/** Runs inside the balancer's container: writes the secret files, checks them with nginx and reloads. */
export const EDGE_SCRIPT = read("edge.sh");

/** Runs where `pulumi up` runs: pipes the bundle on its stdin into `edge.sh install` in the container, on its engine. */
export const EDGE_INSTALL_SCRIPT = withRolloutFunctions(read("install.sh"));

/** Runs where `pulumi up` runs, at the end of every `up`: `edge.sh renew` in the container. */
export const EDGE_RENEW_SCRIPT = withRolloutFunctions(read("renew.sh"));
