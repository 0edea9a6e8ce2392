import { beforeAll, describe, expect, it } from "vitest";
import * as pulumi from "@pulumi/pulumi";
import { checkEngine, engineAnswers } from "../../components/docker/host";
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

    it("checks that the engine answers on every up, before the provider is configured, naming the host", async () => {
        const runs: Array<Record<string, string>> = [];
        const answered = engineAnswers({ host: "local", address: "ssh://ops@gpu-box.internal" }, async (commandLine, env) => {
            expect(commandLine).toBe('sh -c "$ROLLOUT_SH" engine.sh');
            runs.push(env);
            return "host local: Docker engine 20.10.24 answers at ssh://ops@gpu-box.internal\n";
        });
        expect(await (answered as any).promise()).toBe("ssh://ops@gpu-box.internal");
        expect(runs).toHaveLength(1);
        expect(runs[0]).toMatchObject({ HOST: "local", ENGINE: "ssh://ops@gpu-box.internal" });
        expect(runs[0].ROLLOUT_SH).toContain("its Docker engine does not answer at");
        // No command resource: one would run on its creation only.
        expect(ofType(resources, "command:local:Command").map((c) => c.name)).not.toContain("fleet-engine");
    });

    it("fails the run with the check's own message when the engine does not answer", async () => {
        const message = "host local: its Docker engine does not answer at ssh://ops@gpu-box.internal (tried: docker version, with DOCKER_HOST=ssh://ops@gpu-box.internal):";
        const failed = checkEngine({ HOST: "local" }, () => Promise.reject(new Error(message)));
        await expect(failed).rejects.toThrow(message);
        await expect(failed).rejects.toBeInstanceOf(pulumi.RunError);
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
