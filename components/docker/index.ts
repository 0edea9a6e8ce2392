export { FleetNetwork, type FleetNetworkArgs } from "./network";
export { LABELS } from "./labels";
