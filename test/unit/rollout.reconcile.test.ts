/**
 * The rotation's reconciliation as the program runs it (`reconcileRotation`): at the end of an `up`,
 * after what it waits for, with every declared replica; never in a preview. The script itself is tested
 * in rollout.scripts.test.ts, and against a real balancer in the e2e tier.
 */
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { describe, expect, it } from "vitest";
import { reconcileRotation } from "../../components/rollout/reconcile";

function resolve<T>(output: pulumi.Output<T>): Promise<T> {
    return new Promise((done) => output.apply((value) => done(value)));
}

async function reconcileUnder(preview: boolean) {
    const created: string[] = [];
    await pulumi.runtime.setMocks(
        {
            newResource(args) {
                created.push(args.name);
                return { id: `${args.name}-id`, state: args.inputs };
            },
            call: (args) => args.inputs,
        },
        "vllm-nginx",
        "dev",
        preview,
    );
    const installed = new command.local.Command("lb-config", { create: "true" });
    const member = new command.local.Command("vllm1-rotation", { create: "true" });
    const runs: Array<{ commandLine: string; env: Record<string, string>; after: string[] }> = [];
    const done = reconcileRotation(
        {
            members: [
                { name: "vllm0", container: "s-vllm0", spec: "a1", address: "10.0.0.10:8000" },
                { name: "vllm1", container: "s-vllm1", spec: "b2", address: "10.0.0.11:8000" },
            ],
            target: { container: "s-nginx-lb", installed },
            after: [installed, member],
            parent: member,
        },
        async (commandLine, env) => {
            runs.push({ commandLine, env, after: [...created] });
            return "vllm1 was out of nginx's rotation though it runs its deployed settings and serves /health: it is back in\nwarning: vllm0 is out\n";
        },
    );
    return { runs, result: await resolve(done) };
}

describe("reconcileRotation", () => {
    it("runs reconcile.sh once what it waits for exists, with every declared replica and the balancer", async () => {
        const { runs, result } = await reconcileUnder(false);
        expect(runs).toHaveLength(1);
        expect(runs[0].after).toEqual(["lb-config", "vllm1-rotation"]);
        expect(runs[0].commandLine).toBe('sh -c "$ROLLOUT_SH" reconcile.sh');
        expect(runs[0].env.MEMBERS).toBe("vllm0 s-vllm0 - a1 10.0.0.10:8000\nvllm1 s-vllm1 - b2 10.0.0.11:8000");
        expect(runs[0].env.LB_CONTAINER).toBe("s-nginx-lb");
        expect(runs[0].env.ROLLOUT_SH).toContain("does not answer /nginx-health: the rotation was not checked");
        expect(result.split("\n")).toHaveLength(2);
    });

    it("does nothing in a preview", async () => {
        const { runs, result } = await reconcileUnder(true);
        expect(runs).toEqual([]);
        expect(result).toBe("");
    });
});
