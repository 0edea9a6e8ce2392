/**
 * What a fleet runs, and in what order, before anything is realized: each model group's spec, its rollout
 * (batches, surge, outage) and what its replicas serve, and the replicas that are active. Pure code: the
 * `VllmFleet` component realizes it on Docker engines, and tells its messages.
 */
import type { FleetSettings, ReplicaSettings, ServeSettings } from "./config";
import { groupServe, type ModelGroupSettings } from "./config/groups";
import { describeRollout, planRollout, unavailableCount, type PreviousDeployment, type ReplicaPlan, type RolloutPlan } from "./planning";
import { fleetSpec } from "./rollout/spec";

/** One model group's part of the plan. */
export interface GroupPlan {
    group: ModelGroupSettings;
    /** The digest of what its replicas are created from (see `fleetSpec`). */
    spec: string;
    plan: RolloutPlan;
    serve: ServeSettings;
    runtime: ReplicaSettings;
    /** What this update does to the group, for the log; and a warning when it leaves the group serving nothing. */
    message?: string;
    outage?: string;
}

export interface FleetPlan {
    groups: GroupPlan[];
    /** The replicas this deployment runs, in placement order. */
    active: ReplicaPlan[];
}

/** Plans every group's rollout against what the last deployment ran (`previous`), with the secrets' digest in each spec. */
export function planFleet(s: FleetSettings, secretsDigest: string | undefined, previous: PreviousDeployment | undefined): FleetPlan {
    const several = s.groups.length > 1;
    const groups = s.groups.map((group, index): GroupPlan => {
        const spec = fleetSpec(s, secretsDigest, group);
        const slots = s.placement.slots.filter((slot) => slot.group === group.name);
        const replicas = slots.filter((slot) => !slot.spare).length;
        const maxUnavailable = unavailableCount(group.maxUnavailable, replicas);
        // A deployment before model groups recorded one spec: its (first) group's.
        const previousSpec = previous?.groups?.[group.name] ?? (index === 0 ? previous?.spec : undefined);
        const plan = planRollout({
            slots: slots.map((slot) => slot.name),
            configured: slots.filter((slot) => !slot.spare).map((slot) => slot.name),
            replicas,
            maxUnavailable,
            spec,
            previous: previous && { spec: previousSpec ?? "", active: previous.active },
        });
        const of = several ? `model group ${group.name}: ` : "";
        const message = describeRollout(plan, replicas, maxUnavailable, s.replica.stopGraceSeconds);
        return {
            group,
            spec,
            plan,
            serve: groupServe(group),
            runtime: { ...s.replica, startupTimeoutSeconds: group.startupTimeoutSeconds },
            message: message && `${of}${message}`,
            outage: plan.outage
                ? `${of}this change replaces every replica in rotation (${plan.batches.flat().join(", ")}) with no spare capacity: the ${several ? "group" : "fleet"} serves nothing from the moment ` +
                  "they leave rotation until their replacements pass /health (minutes on GPUs). For a change without an outage, run more replicas " +
                  "than rollout.maxUnavailable, or keep spare capacity (rollout.spareGpus, or rollout.spareReplicas on the cpu backend)."
                : undefined,
        };
    });
    const activeNames = new Set(groups.flatMap((g) => g.plan.active));
    return { groups, active: s.placement.slots.filter((p) => activeNames.has(p.name)) };
}
