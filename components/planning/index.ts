export { BACKENDS, LOCAL_HOST, VLLM_PORT, planPlacement, type Backend, type Placement, type PlacementInputs, type ReplicaPlan } from "./placement";
export { describeRollout, planRollout, unavailableCount, type PreviousDeployment, type RolloutPlan } from "./rollout";
export type { KeyProblem } from "./problems";
