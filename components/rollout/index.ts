export { RolloutGate, type GateMember, type RolloutGateArgs } from "./gate";
export type { RotationTarget } from "./target";
export { reconcileRotation, type RotationReconcileArgs, type ScriptRunner } from "./reconcile";
