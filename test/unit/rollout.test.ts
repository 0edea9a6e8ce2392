import * as fc from "fast-check";
import { describe, expect, it } from "vitest";
import { describeRollout, planRollout, unavailableCount, type RolloutInputs } from "../../components/planning/rollout";

const slots = (n: number) => Array.from({ length: n }, (_, i) => `vllm${i}`);
const plan = (inputs: Partial<RolloutInputs>) => planRollout({ slots: slots(3), replicas: 3, maxUnavailable: 1, spec: "new", ...inputs });

describe("rollout plan", () => {
    it("on the first deployment starts every configured replica, each behind a step that lets it through at once", () => {
        expect(plan({})).toEqual({ active: ["vllm0", "vllm1", "vllm2"], changing: false, surge: [], batches: [["vllm0"], ["vllm1"], ["vllm2"]], retire: [], added: ["vllm0", "vllm1", "vllm2"], outage: false });
    });

    it("replaces changed replicas in place, one at a time, in slot order", () => {
        const p = plan({ previous: { spec: "old", active: ["vllm0", "vllm1", "vllm2"] } });
        expect(p).toMatchObject({ active: ["vllm0", "vllm1", "vllm2"], changing: true, surge: [], batches: [["vllm0"], ["vllm1"], ["vllm2"]], retire: [], added: [], outage: false });
    });

    it("starts new replicas on configured slots, never on a spare while a configured slot is free", () => {
        // Host by host: gpu-b's spare comes before gpu-c's slots in slot order.
        const slotsByHost = ["a0", "a1", "b0", "b1", "b-spare", "c0", "c1"];
        const p = planRollout({ slots: slotsByHost, configured: slotsByHost.filter((s) => s !== "b-spare"), replicas: 6, maxUnavailable: 1, spec: "s" });
        expect(p.active).toEqual(["a0", "a1", "b0", "b1", "c0", "c1"]);
        const change = planRollout({ slots: slotsByHost, configured: slotsByHost.filter((s) => s !== "b-spare"), replicas: 6, maxUnavailable: 1, spec: "new", previous: { spec: "old", active: p.active } });
        expect(change).toMatchObject({ surge: ["b-spare"], retire: ["a0"] });
    });

    it("batches by maxUnavailable", () => {
        const p = planRollout({ slots: slots(5), replicas: 5, maxUnavailable: 2, spec: "new", previous: { spec: "old", active: slots(5) } });
        expect(p.batches).toEqual([["vllm0", "vllm1"], ["vllm2", "vllm3"], ["vllm4"]]);
    });

    it("with nothing to change still gates every running replica (a change the plan cannot see, such as a transform, rolls the same way)", () => {
        const p = plan({ previous: { spec: "new", active: ["vllm0", "vllm1", "vllm2"] } });
        expect(p).toMatchObject({ changing: false, batches: [["vllm0"], ["vllm1"], ["vllm2"]], surge: [], retire: [] });
    });

    it("says when a change takes the whole fleet down: one replica and no spare", () => {
        expect(planRollout({ slots: slots(1), replicas: 1, maxUnavailable: 1, spec: "new", previous: { spec: "old", active: ["vllm0"] } }).outage).toBe(true);
        expect(planRollout({ slots: slots(2), replicas: 2, maxUnavailable: 2, spec: "new", previous: { spec: "old", active: slots(2) } }).outage).toBe(true);
        expect(plan({ previous: { spec: "old", active: slots(3) } }).outage).toBe(false);
        // No change, no outage, whatever the count.
        expect(planRollout({ slots: slots(1), replicas: 1, maxUnavailable: 1, spec: "same", previous: { spec: "same", active: ["vllm0"] } }).outage).toBe(false);
    });

    it("surges onto a spare slot first, replaces the others in place, and retires the first old one at the end", () => {
        const p = planRollout({ slots: slots(4), replicas: 3, maxUnavailable: 1, spec: "new", previous: { spec: "old", active: ["vllm0", "vllm1", "vllm2"] } });
        expect(p).toEqual({ active: ["vllm1", "vllm2", "vllm3"], changing: true, surge: ["vllm3"], batches: [["vllm1"], ["vllm2"]], retire: ["vllm0"], added: [], outage: false });
        // The next rollout moves on: the spare is now vllm0.
        const next = planRollout({ slots: slots(4), replicas: 3, maxUnavailable: 1, spec: "newer", previous: { spec: "new", active: p.active } });
        expect(next).toMatchObject({ active: ["vllm0", "vllm2", "vllm3"], surge: ["vllm0"], batches: [["vllm2"], ["vllm3"]], retire: ["vllm1"] });
    });

    it("a single replica with a spare rolls without an outage: blue/green", () => {
        const p = planRollout({ slots: slots(2), replicas: 1, maxUnavailable: 1, spec: "new", previous: { spec: "old", active: ["vllm0"] } });
        expect(p).toMatchObject({ active: ["vllm1"], surge: ["vllm1"], batches: [], retire: ["vllm0"], outage: false });
    });

    it("scales with or without a change: new slots are added, the highest running ones removed at the end", () => {
        expect(planRollout({ slots: slots(4), replicas: 4, maxUnavailable: 1, spec: "s", previous: { spec: "s", active: slots(3) } })).toMatchObject({ active: slots(4), added: ["vllm3"], retire: [] });
        expect(planRollout({ slots: slots(4), replicas: 2, maxUnavailable: 1, spec: "s", previous: { spec: "s", active: slots(3) } })).toMatchObject({ active: ["vllm0", "vllm1"], added: [], retire: ["vllm2"] });
        // A slot the config no longer has is dropped.
        expect(planRollout({ slots: slots(2), replicas: 2, maxUnavailable: 1, spec: "s", previous: { spec: "s", active: ["vllm0", "vllm5"] } })).toMatchObject({ active: ["vllm0", "vllm1"], added: ["vllm1"] });
    });

    it("runs exactly the wanted replicas on distinct slots, replaces each running one at most once, and starts surge only on free slots (property)", () => {
        fc.assert(
            fc.property(
                fc.integer({ min: 1, max: 8 }),
                fc.integer({ min: 0, max: 3 }),
                fc.integer({ min: 1, max: 4 }),
                fc.boolean(),
                fc.array(fc.integer({ min: 0, max: 10 }), { maxLength: 8 }),
                (replicas, spares, maxUnavailable, change, previousSlots) => {
                    const all = slots(replicas + spares);
                    const previous = { spec: "old", active: [...new Set(previousSlots.map((i) => `vllm${i}`))] };
                    const running = previous.active.filter((s) => all.includes(s));
                    const p = planRollout({ slots: all, replicas, maxUnavailable, spec: change ? "new" : "old", previous });
                    const replaced = p.batches.flat();
                    return (
                        p.active.length === replicas &&
                        new Set(p.active).size === p.active.length &&
                        p.active.every((s) => all.includes(s)) &&
                        p.batches.every((b) => b.length >= 1 && b.length <= maxUnavailable) &&
                        new Set(replaced).size === replaced.length &&
                        replaced.every((s) => running.includes(s) && p.active.includes(s)) &&
                        p.surge.every((s) => !running.includes(s)) &&
                        (change || p.surge.length === 0) &&
                        // Every replica that ran is kept (and gated) or retired, never both.
                        running.every((s) => replaced.includes(s) !== p.retire.includes(s))
                    );
                },
            ),
        );
    });
});

describe("maxUnavailable", () => {
    it("is a count, or a percentage of the replicas rounded down, at least 1", () => {
        expect(unavailableCount(2, 8)).toBe(2);
        expect(unavailableCount("25%", 8)).toBe(2);
        expect(unavailableCount("10%", 3)).toBe(1);
        expect(unavailableCount("100%", 3)).toBe(3);
    });
});

describe("what preview says", () => {
    it("names the order and the floor of a rollout in place", () => {
        const p = plan({ previous: { spec: "old", active: slots(3) } });
        expect(describeRollout(p, 3, 1, 120)).toBe(
            "rollout of 3 replicas: vllm0, vllm1, vllm2 are replaced in place, one at a time, in that order: each leaves nginx's rotation, drains (up to 120s), is replaced, must pass /health and rejoins before the next starts. At least 2 of 3 stay in rotation.",
        );
    });

    it("names the surge and the retirement", () => {
        const p = planRollout({ slots: slots(4), replicas: 3, maxUnavailable: 1, spec: "new", previous: { spec: "old", active: slots(3) } });
        expect(describeRollout(p, 3, 1, 60)).toMatch(/^rollout of 3 replicas: vllm3 starts on spare capacity .*; then vllm1, vllm2 are replaced in place, one at a time.*; then vllm0 is drained and removed at the end\. At least 3 of 3 stay in rotation\.$/);
    });

    it("says nothing when nothing rolls", () => {
        expect(describeRollout(plan({}), 3, 1, 120)).toBeUndefined();
    });
});
