export { RolloutGate, type GateMember, type RolloutGateArgs } from "./gate";
export type { RotationTarget } from "./target";
export { afterEveryUp, type AfterEveryUpArgs, type ScriptRunner } from "./afterUp";
export { reconcileRotation, type RotationReconcileArgs } from "./reconcile";
