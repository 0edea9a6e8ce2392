export { BACKENDS, LOCAL_HOST, VLLM_PORT, planPlacement, type Backend, type FleetPlan, type PlacementInputs, type ReplicaPlan } from "./placement";
export type { KeyProblem } from "./problems";
