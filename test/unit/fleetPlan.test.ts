/**
 * The fleet's plan without Pulumi (`planFleet`): each model group's spec and rollout against the last
 * deployment, what it tells the user, and the replicas that are active.
 */
import { describe, expect, it } from "vitest";
import { parseFleetConfig } from "../../components/config/parse";
import { planFleet } from "../../components/fleetPlan";

const settings = (smallArgs: string[] = []) =>
    parseFleetConfig(
        {
            model: "",
            backend: "cpu",
            models: [
                { name: "chat", model: "org/chat", replicas: 2, adapters: [{ name: "sql", source: "org/sql-lora" }] },
                { name: "small", model: "org/small", replicas: 1, vllmArgs: smallArgs },
            ],
        },
        "dev",
    );

describe("planFleet", () => {
    it("plans a first deployment: every group's replicas active, nothing rolls", () => {
        const plan = planFleet(settings(), "", undefined);
        expect(plan.groups.map((g) => g.group.name)).toEqual(["chat", "small"]);
        expect(plan.active.map((r) => r.name)).toEqual(["vllm0", "vllm1", "small-vllm0"]);
        expect(plan.groups.map((g) => g.plan.changing)).toEqual([false, false]);
        expect(plan.groups.map((g) => g.plan.added)).toEqual([["vllm0", "vllm1"], ["small-vllm0"]]);
        expect(plan.groups[0]!.serve.lora).toEqual({ folders: [] });
    });

    it("rolls only the group whose settings changed, and warns of the outage of a group without spare capacity", () => {
        const before = planFleet(settings(), "", undefined);
        const previous = { spec: before.groups[0]!.spec, active: before.active.map((r) => r.name), groups: Object.fromEntries(before.groups.map((g) => [g.group.name, g.spec])) };
        const after = planFleet(settings(["--max-num-seqs", "8"]), "", previous);
        expect(after.groups[0]!.spec).toBe(before.groups[0]!.spec);
        expect(after.groups[0]!.plan.changing).toBe(false);
        expect(after.groups[0]!.message).toBeUndefined();
        expect(after.groups[1]!.plan.changing).toBe(true);
        expect(after.groups[1]!.plan.batches).toEqual([["small-vllm0"]]);
        expect(after.groups[1]!.message).toMatch(/^model group small: rollout of 1 replica/);
        expect(after.groups[1]!.outage).toMatch(/^model group small: this change replaces every replica in rotation \(small-vllm0\) with no spare capacity/);
        // The secrets' digest is part of every group's spec.
        expect(planFleet(settings(), "other-secrets", previous).groups.map((g) => g.spec)).not.toContain(before.groups[0]!.spec);
    });
});
