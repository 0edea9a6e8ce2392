/**
 * vllm-nginx: vLLM replicas behind an nginx balancer on Docker. The components, and the reader of this
 * project's stack config; everything else is internal.
 */
export { VllmFleet, type ReplicaSummary, type VllmFleetArgs } from "./fleet";
export { readPreviousDeployment, readStackConfig, parseFleetConfig, FleetConfigError } from "./config";
export type { FleetSecrets, FleetSettings } from "./config";
export { FleetNetwork, type FleetNetworkArgs } from "./docker";
export { NginxBalancer, NginxImage, type NginxBalancerArgs, type NginxImageArgs } from "./nginx";
export { VllmImage, VllmReplica, type VllmImageArgs, type VllmReplicaArgs } from "./vllm";
export type { Transform } from "./transform";
