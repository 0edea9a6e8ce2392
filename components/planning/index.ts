export {
    BACKENDS,
    DEFAULT_GROUP,
    GROUP_SLOTS,
    LOCAL_HOST,
    TOP_LEVEL_KEYS,
    VLLM_PORT,
    egressAddress,
    planPlacement,
    type Backend,
    type GroupPlacementInputs,
    type HostInputs,
    type HostPlan,
    type Placement,
    type PlacementInputs,
    type RelayPlan,
    type ReplicaPlan,
    type ThreadsBind,
} from "./placement";
export { describeRollout, planRollout, unavailableCount, type PreviousDeployment, type RolloutPlan } from "./rollout";
export type { KeyProblem } from "./problems";
