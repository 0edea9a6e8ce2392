/**
 * The dev stack serving two model groups (`models`): each group's replicas run its own model, flags,
 * environment and adapters; the balancer routes by model among them; each group rolls on its own.
 */
import { createHash } from "crypto";
import { beforeAll, describe, expect, it } from "vitest";
import { decodeConfigValue } from "../../components/config/decode";
import { REPLICA_SECRET_KEYS } from "../../components/config/keys";
import { parseFleetConfig } from "../../components/config/parse";
import { fleetSpec } from "../../components/rollout/spec";
import { RecordedResource, ofType, runProgram, stackConfig } from "./mockStack";

export const TWO_GROUPS = {
    model: "",
    replicas: "1",
    vllmArgs: [],
    models: [
        {
            name: "chat",
            model: "Qwen/Qwen2.5-0.5B-Instruct",
            servedModelName: "qwen",
            replicas: 2,
            vllmArgs: ["--max-model-len", "4096"],
            balancer: "cache_aware",
            adapters: [{ name: "sql", source: "/srv/adapters/sql" }],
        },
        { name: "small", model: "HuggingFaceTB/SmolLM2-135M-Instruct", replicas: 1, env: { VLLM_LOGGING_LEVEL: "DEBUG" }, rollout: { maxUnavailable: 1 } },
    ],
};

/** The spec the program computes for `group` of the dev stack with these overrides, as readStackConfig does. */
function groupSpec(overrides: Record<string, unknown>, group: number): string {
    const config = stackConfig("dev", overrides);
    const raw = Object.fromEntries(Object.entries(config).filter(([k]) => k.startsWith("vllm-nginx:")).map(([k, v]) => [k.slice("vllm-nginx:".length), decodeConfigValue(v)]));
    const digest = createHash("sha256")
        .update(JSON.stringify(REPLICA_SECRET_KEYS.map((key) => config[`vllm-nginx:${key}`] ?? null)))
        .digest("hex");
    const settings = parseFleetConfig(raw, "dev");
    return fleetSpec(settings, digest, settings.groups[group]);
}

describe("the dev stack with two model groups", () => {
    let resources: RecordedResource[];
    let outputs: Record<string, any>;
    beforeAll(async () => {
        ({ resources, outputs } = await runProgram("dev", TWO_GROUPS, [], undefined, {
            // The last deployment ran both groups; the chat group's settings changed since, the small one's did not.
            rollout: { spec: "old-chat", active: ["vllm0", "vllm1", "small-vllm0"], groups: { chat: "old-chat", small: groupSpec(TWO_GROUPS, 1) } },
        }));
    });
    const container = (name: string) => ofType(resources, "docker:index/container:Container").find((c) => c.inputs.name === name)!;
    const byName = (name: string) => resources.find((r) => r.name === name);

    it("runs each group's replicas with its model, names, flags, environment and adapters (a host path mounted read-only)", () => {
        expect(ofType(resources, "docker:index/container:Container").map((c) => c.inputs.name).filter((n) => n.includes("vllm")).sort()).toEqual(["dev-small-vllm0", "dev-vllm0", "dev-vllm1"]);
        expect(container("dev-vllm0").inputs.command).toEqual([
            "Qwen/Qwen2.5-0.5B-Instruct", "--host", "0.0.0.0", "--port", "8000", "--served-model-name", "qwen", "--enable-lora", "--max-model-len", "4096",
        ]);
        // The adapter's folder, read-only: the balancer loads the adapter at run time, with vLLM's runtime endpoints.
        expect(container("dev-vllm0").inputs.volumes).toContainEqual({ hostPath: "/srv/adapters", containerPath: "/srv/adapters", readOnly: true });
        expect(container("dev-vllm0").inputs.envs).toContain("VLLM_ALLOW_RUNTIME_LORA_UPDATING=True");
        expect(container("dev-small-vllm0").inputs.envs).not.toContain("VLLM_ALLOW_RUNTIME_LORA_UPDATING=True");
        expect(container("dev-small-vllm0").inputs.command).toEqual(["HuggingFaceTB/SmolLM2-135M-Instruct", "--host", "0.0.0.0", "--port", "8000"]);
        expect(container("dev-small-vllm0").inputs.envs).toContain("VLLM_LOGGING_LEVEL=DEBUG");
        expect(container("dev-vllm0").inputs.envs).not.toContain("VLLM_LOGGING_LEVEL=DEBUG");
        // The small group's addresses and ports start 32 after the first group's.
        expect(container("dev-small-vllm0").inputs.networksAdvanced[0].ipv4Address).toBe("172.29.10.42");
    });

    it("renders the balancer's groups: each replica under its group, each group's names and balancing", () => {
        const conf: string = outputs.nginxConfig;
        expect(conf).toContain('{ name = "vllm0", address = "172.29.10.10:8000", out = "{{down:vllm0}}", group = "chat" },');
        expect(conf).toContain('{ name = "small-vllm0", address = "172.29.10.42:8000", out = "{{down:small-vllm0}}", group = "small" },');
        expect(conf).toContain('{ name = "chat", method = "cache_aware",');
        expect(conf).toMatch(/\{ name = "chat", [^\n]* lora = true,\n/);
        expect(conf).not.toMatch(/\{ name = "small", [^\n]* lora = true,/);
        // No client keys and no apiKey: the master reads no replicas' key.
        expect(conf).toContain('init_by_lua_block { require("vllm_nginx.routing").init({ replica_authorization_file = nil }) }');
        expect(conf).toContain('models = { { id = "qwen", root = "Qwen/Qwen2.5-0.5B-Instruct" }, { id = "sql", root = "/srv/adapters/sql", parent = "qwen" } } },');
        expect(outputs.models).toEqual(["qwen", "sql", "HuggingFaceTB/SmolLM2-135M-Instruct"]);
        expect(outputs.replicas.map((r: { name: string; group: string }) => `${r.name}:${r.group}`)).toEqual(["vllm0:chat", "vllm1:chat", "small-vllm0:small"]);
    });

    it("rolls each group on its own: the chat group one replica at a time, the small group's step apart from the chat group's steps", () => {
        expect(byName("fleet-vllm0-container")!.dependsOn).toContain("fleet-rollout-0-step");
        expect(byName("fleet-rollout-1-step")!.dependsOn).toContain("fleet-rollout-0-step");
        expect(byName("fleet-vllm1-container")!.dependsOn).toContain("fleet-rollout-1-step");
        // Every replica has its step (one whose settings did not change passes through it at once), and
        // the small group's waits for no step of the chat group's.
        expect(byName("fleet-small-vllm0-container")!.dependsOn).toContain("fleet-small-rollout-0-step");
        expect(byName("fleet-small-rollout-0-step")!.dependsOn.filter((d) => d.startsWith("fleet-rollout"))).toEqual([]);
        // What the small group's step compares: the spec its replica runs is the one the last deployment recorded.
        expect(outputs.rollout.groups.small).toBe(groupSpec(TWO_GROUPS, 1));
        expect(outputs.rollout.groups.chat).not.toBe("old-chat");
        expect(outputs.rollout.spec).toBe(outputs.rollout.groups.chat);
    });
});
