export { VllmImage, type VllmImageArgs } from "./image";
export { VllmReplica, type VllmReplicaArgs } from "./replica";
