import { beforeAll, describe, expect, it } from "vitest";
import { RecordedResource, ofType, runProgram } from "./mockStack";

describe("one explicit Docker provider per host, and commands that talk to the same engine", () => {
    let resources: RecordedResource[];
    beforeAll(async () => {
        ({ resources } = await runProgram("dev", { "docker:host": "ssh://ops@gpu-box.internal" }));
    });

    it("creates the local host's provider from docker:host", () => {
        const providers = ofType(resources, "pulumi:providers:docker");
        expect(providers.map((p) => [p.name, p.inputs.host])).toEqual([["fleet-docker-local", "ssh://ops@gpu-box.internal"]]);
    });

    it("checks that the engine answers before the provider is used, naming the host", () => {
        const check = ofType(resources, "command:local:Command").find((c) => c.name === "fleet-engine")!;
        expect(check.inputs.environment).toMatchObject({ HOST: "local", ENGINE: "ssh://ops@gpu-box.internal" });
        expect(ofType(resources, "pulumi:providers:docker")[0].dependsOn).toContain("fleet-engine");
    });

    it("registers every Docker resource with that provider, so each says which engine it lives on", () => {
        const dockerResources = resources.filter((r) => r.type.startsWith("docker:"));
        expect(dockerResources.length).toBeGreaterThanOrEqual(7);
        for (const r of dockerResources) {
            expect(r.provider, `${r.type} ${r.name}`).toBe("fleet-docker-local");
        }
    });

    it("points every command at the provider's engine: the balancer's, and each replica's", () => {
        const commands = ofType(resources, "command:local:Command");
        expect(commands.length).toBeGreaterThanOrEqual(3);
        for (const command of commands) {
            const env = command.inputs.environment;
            expect(env.LB_ENGINE ?? env.DOCKER_HOST ?? env.ENGINE, command.name).toBe("ssh://ops@gpu-box.internal");
        }
        const members = commands.filter((c) => c.name.endsWith("-rotation"));
        expect(members.map((m) => m.inputs.environment.ENGINE)).toEqual(["ssh://ops@gpu-box.internal", "ssh://ops@gpu-box.internal"]);
    });
});
