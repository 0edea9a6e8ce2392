/**
 * Which replica slots run after this update, and in what order replicas are replaced when their settings
 * change. Pure: a function of the slots, the number of replicas wanted, the spec this update deploys and
 * what the last deployment ran (its stack outputs).
 *
 * A slot is a place a replica can run: a GPU group (or a CPU core range) with its own name, address and
 * port. The configured entries come first, spares after. Without spares, replicas are replaced in place,
 * `maxUnavailable` at a time. With spares and a change to deploy, new replicas first start on spare
 * slots; the same number of old replicas are retired once everything else has rolled, so capacity never
 * drops below the replica count. Which slots are spare then moves with each rollout.
 */

/** What the last deployment ran, as it exported it. */
export interface PreviousDeployment {
    /** The fleet spec it deployed (see `fleetSpec`): its first model group's. */
    spec: string;
    /** The slots it ran, by name. */
    active: string[];
    /** Each model group's spec, by group name (deployments before model groups had only `spec`). */
    groups?: Record<string, string>;
}

export interface RolloutInputs {
    /** Every slot, by name, in order (host by host: its configured entries, then its spares). */
    slots: string[];
    /** The configured slots (not spares): new replicas go there first. Defaults to every slot. */
    configured?: string[];
    /** How many replicas should run. */
    replicas: number;
    /** At most this many replicas out of rotation at once. */
    maxUnavailable: number;
    /** The fleet spec this update deploys. */
    spec: string;
    previous?: PreviousDeployment;
}

export interface RolloutPlan {
    /** The slots that run after this update, in slot order. */
    active: string[];
    /** Whether the replicas' settings change (known before anything is created). */
    changing: boolean;
    /** Slots that start with the new settings, and pass /health, before any replica is replaced. */
    surge: string[];
    /** Replicas replaced in place, batch by batch: a batch leaves rotation once the one before is back. */
    batches: string[][];
    /** Replicas removed at the end: drained, then stopped. */
    retire: string[];
    /** Slots new in this update that are not surge (scale-up, or the first deployment). */
    added: string[];
    /** Whether a change leaves no replica in rotation for a while (one replica, no spare). */
    outage: boolean;
}

export function planRollout(inputs: RolloutInputs): RolloutPlan {
    const known = new Set(inputs.slots);
    const previous = inputs.previous?.active.filter((slot) => known.has(slot)) ?? [];
    const changing = inputs.previous !== undefined && inputs.previous.spec !== inputs.spec && previous.length > 0;
    const order = (list: string[]) => inputs.slots.filter((slot) => list.includes(slot));

    // Scale first: keep the lowest slots that ran, add the lowest free ones.
    const kept = order(previous).slice(0, inputs.replicas);
    const scaledDown = order(previous).slice(inputs.replicas);
    const added: string[] = [];
    const surge: string[] = [];
    // Free slots, configured ones first: new replicas take a spare only when no configured slot is free.
    const configured = inputs.configured ?? inputs.slots;
    const free = () => [...configured, ...inputs.slots.filter((slot) => !configured.includes(slot))].filter((slot) => ![...kept, ...scaledDown, ...added, ...surge].includes(slot));
    while (kept.length + added.length < inputs.replicas && free().length > 0) {
        added.push(free()[0]);
    }

    // Then surge: as many new slots as spares allow, each standing in for an old replica retired at the end.
    if (changing) {
        while (surge.length < kept.length && free().length > 0) {
            surge.push(free()[0]);
        }
    }
    const retiredBySurge = kept.slice(0, surge.length);
    // Without a record of the last deployment, any replica may already run: gate them all (a gate lets a
    // replica that does not exist yet, or does not change, through at once).
    const inPlace = inputs.previous === undefined ? added : kept.slice(surge.length);

    const batchSize = Math.max(1, inputs.maxUnavailable);
    const batches: string[][] = [];
    for (let i = 0; i < inPlace.length; i += batchSize) {
        batches.push(inPlace.slice(i, i + batchSize));
    }
    return {
        active: order([...inPlace, ...added, ...surge]),
        changing,
        surge,
        batches,
        retire: [...retiredBySurge, ...scaledDown],
        added,
        outage: changing && surge.length === 0 && inPlace.length - Math.min(batchSize, inPlace.length) < 1,
    };
}

/** `maxUnavailable` as a count: a whole number, or a percentage of the replicas rounded down (at least 1). */
export function unavailableCount(maxUnavailable: number | string, replicas: number): number {
    if (typeof maxUnavailable === "number") {
        return maxUnavailable;
    }
    const percent = Number(maxUnavailable.replace(/%$/, ""));
    return Math.max(1, Math.floor((replicas * percent) / 100));
}

/** One line that tells a user what this update does to the running replicas, or undefined when nothing rolls. */
export function describeRollout(plan: RolloutPlan, replicas: number, maxUnavailable: number, graceSeconds: number): string | undefined {
    if (!plan.changing) {
        return undefined;
    }
    const list = (names: string[]) => names.join(", ");
    const steps: string[] = [];
    if (plan.surge.length > 0) {
        steps.push(`${list(plan.surge)} start${plan.surge.length === 1 ? "s" : ""} on spare capacity with the new settings and must pass /health first`);
    }
    if (plan.batches.length > 0) {
        const each = maxUnavailable === 1 ? "one at a time" : `at most ${maxUnavailable} at a time`;
        steps.push(
            `${list(plan.batches.flat())} ${plan.batches.flat().length === 1 ? "is" : "are"} replaced in place, ${each}, in that order: each leaves nginx's rotation, drains (up to ${graceSeconds}s), is replaced, must pass /health and rejoins before the next starts`,
        );
    }
    if (plan.retire.length > 0) {
        steps.push(`${list(plan.retire)} ${plan.retire.length === 1 ? "is" : "are"} drained and removed at the end`);
    }
    const floor = plan.surge.length > 0 ? Math.max(0, replicas + plan.surge.length - maxUnavailable) : Math.max(0, replicas - maxUnavailable);
    return `rollout of ${replicas} replica${replicas === 1 ? "" : "s"}: ${steps.join("; then ")}. At least ${Math.min(floor, replicas)} of ${replicas} stay in rotation.`;
}
