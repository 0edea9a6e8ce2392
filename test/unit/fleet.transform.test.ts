import type * as docker from "@pulumi/docker";
import { beforeAll, describe, expect, it } from "vitest";
import { RecordedResource, ofType, runProgram } from "./mockStack";

describe("transform: users adjust the children without forking the component", () => {
    let resources: RecordedResource[];
    beforeAll(async () => {
        ({ resources } = await runProgram("dev", {}, [], async () => {
            const { VllmFleet, readStackConfig } = await import("../../components");
            const { settings } = readStackConfig();
            const fleet = new VllmFleet("fleet", {
                settings,
                transform: {
                    replicaContainer: (args) => {
                        args.labels = [...(args.labels as docker.types.input.ContainerLabel[]), { label: "team", value: "research" }];
                        args.volumes = [...(args.volumes as docker.types.input.ContainerVolume[]), { hostPath: "/srv/adapters", containerPath: "/adapters", readOnly: true }];
                    },
                    balancerContainer: { memory: 512 },
                    network: { internal: false },
                },
            });
            // Outputs that resolve only once every resource is registered.
            return { configId: fleet.configId, replicas: fleet.replicas };
        }));
    });

    const containers = () => ofType(resources, "docker:index/container:Container");

    it("adds a label and a mount to every replica container, keeping the program's own", () => {
        const replicas = containers().filter((c) => c.inputs.labels.some((l: { value: string }) => l.value === "replica"));
        expect(replicas).toHaveLength(2);
        for (const replica of replicas) {
            expect(replica.inputs.labels).toEqual(expect.arrayContaining([{ label: "team", value: "research" }, { label: "vllm-nginx.role", value: "replica" }]));
            expect(replica.inputs.volumes).toEqual(expect.arrayContaining([{ hostPath: "/srv/adapters", containerPath: "/adapters", readOnly: true }, expect.objectContaining({ containerPath: "/root/.cache/huggingface" })]));
        }
    });

    it("merges an object into the balancer container's and the network's args", () => {
        const lb = containers().find((c) => c.inputs.name === "dev-nginx-lb")!;
        expect(lb.inputs.memory).toBe(512);
        expect(lb.inputs.ports).toEqual([{ internal: 80, external: 8000, ip: "0.0.0.0" }]);
        expect(ofType(resources, "docker:index/network:Network")[0].inputs.internal).toBe(false);
    });
});
