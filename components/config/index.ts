export { readPreviousDeployment, readStackConfig } from "./stack";
export { parseFleetConfig } from "./parse";
export { FleetConfigError, type RawConfig } from "./reader";
export type * from "./settings";
