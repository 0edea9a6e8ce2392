import { describe, expect, it } from "vitest";
import { ofType, runProgram } from "./mockStack";

describe("gpu groups", () => {
    it("gives a replica every GPU of its group and --tensor-parallel-size = group size", async () => {
        const { resources } = await runProgram("gpu", { gpus: ["0,1", "2,3"] });
        const replicas = ofType(resources, "docker:index/container:Container").filter((c) => c.inputs.deviceRequests);
        expect(replicas.map((r) => r.inputs.deviceRequests[0].deviceIds)).toEqual([
            ["0", "1"],
            ["2", "3"],
        ]);
        expect(replicas[0].inputs.command.slice(-2)).toEqual(["--tensor-parallel-size", "2"]);
    });
});
