import * as fs from "fs";
import * as path from "path";
import { describe, expect, it } from "vitest";
import { REPO } from "./mockStack";

const COMPONENTS = path.join(REPO, "components");

function sources(dir: string): string[] {
    return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sources(path.join(dir, e.name)) : e.name.endsWith(".ts") ? [path.join(dir, e.name)] : []));
}

/** Relative imports of a file (type-only ones included: a cycle of types is still a tangle), resolved to files. */
function imports(file: string): string[] {
    const text = fs.readFileSync(file, "utf8");
    return [...text.matchAll(/(?:import|export)[^"';]*?from\s+"(\.[^"]+)"/g)].map((m) => {
        const target = path.resolve(path.dirname(file), m[1]!);
        return fs.existsSync(`${target}.ts`) ? `${target}.ts` : path.join(target, "index.ts");
    });
}

describe("the components' structure", () => {
    it("has no import cycle", () => {
        const graph = new Map(sources(COMPONENTS).map((f) => [f, imports(f)]));
        const cycles: string[] = [];
        const state = new Map<string, "visiting" | "done">();
        const visit = (file: string, trail: string[]) => {
            if (state.get(file) === "done") {
                return;
            }
            if (state.get(file) === "visiting") {
                cycles.push([...trail.slice(trail.indexOf(file)), file].map((f) => path.relative(COMPONENTS, f)).join(" -> "));
                return;
            }
            state.set(file, "visiting");
            for (const next of graph.get(file) ?? []) {
                visit(next, [...trail, file]);
            }
            state.set(file, "done");
        };
        for (const file of graph.keys()) {
            visit(file, []);
        }
        expect(cycles).toEqual([]);
    });

    it("exports only the components and the config reader from its index", async () => {
        const exported = Object.keys(await import("../../components")).sort();
        expect(exported).toEqual(["FleetConfigError", "FleetNetwork", "NginxBalancer", "NginxImage", "VllmFleet", "VllmImage", "VllmReplica", "parseFleetConfig", "readPreviousDeployment", "readStackConfig"]);
    });

    it("names its container labels as the policy pack reads them (policy/labels.ts keeps its own copy)", async () => {
        const { LABELS } = await import("../../components/docker/labels");
        const policy = fs.readFileSync(path.join(REPO, "policy", "labels.ts"), "utf8");
        const read = Object.fromEntries([...policy.matchAll(/^\s+(\w+): "(vllm-nginx\.[^"]+)",$/gm)].map((m) => [m[1], m[2]]));
        expect(Object.keys(read).length).toBeGreaterThanOrEqual(9);
        for (const [key, label] of Object.entries(read)) {
            expect(LABELS[key as keyof typeof LABELS], key).toBe(label);
        }
    });

    it("gives every folder an index", () => {
        const folders = fs.readdirSync(COMPONENTS, { withFileTypes: true }).filter((e) => e.isDirectory());
        for (const folder of folders) {
            expect(fs.existsSync(path.join(COMPONENTS, folder.name, "index.ts")), folder.name).toBe(true);
        }
    });
});
