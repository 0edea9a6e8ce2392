export { readPreviousDeployment, readStackConfig } from "./stack";
export { parseFleetConfig } from "./parse";
export type { SecretConfig } from "./edge";
export { FleetConfigError, type RawConfig } from "./reader";
export type * from "./settings";
