import { describe, expect, it } from "vitest";
import { DASHBOARD_PANELS, DATASOURCE_UID, dashboardQueries, renderDashboard } from "../../components/monitoring/dashboard";
import { FLEET_RECORDING_RULES, REPLICA_RECORDING_RULES } from "../../components/monitoring/rules";

interface Panel {
    id: number;
    type: string;
    title: string;
    gridPos: { x: number; y: number; w: number; h: number };
    datasource: { uid: string };
    targets: Array<{ expr: string; refId: string; datasource: { uid: string } }>;
}

describe("fleet dashboard", () => {
    const text = renderDashboard({ stack: "dev" });
    const model = JSON.parse(text) as { uid: string; title: string; panels: Panel[]; tags: string[] };

    it("matches the reviewed snapshot", async () => {
        await expect(text).toMatchFileSnapshot("__snapshots__/monitoring-dev.dashboard.json");
    });

    it("lists every panel query, so that a test can run each against Prometheus", () => {
        const queries = dashboardQueries();
        expect(queries).toHaveLength(model.panels.reduce((n, p) => n + p.targets.length, 0));
        expect(queries.map((q) => q.expr)).toEqual(model.panels.flatMap((p) => p.targets.map((t) => t.expr)));
        expect(queries.every((q) => DASHBOARD_PANELS.some((p) => p.title === q.panel))).toBe(true);
    });

    it("reads only recording rules that exist, or raw series", () => {
        const recorded = new Set([...REPLICA_RECORDING_RULES, ...FLEET_RECORDING_RULES].map((r) => r.record));
        for (const { expr } of dashboardQueries()) {
            for (const name of expr.match(/\b(?:replica|fleet):[a-z0-9_]+:[a-z0-9_]+/g) ?? []) {
                expect(recorded, `${expr} reads ${name}`).toContain(name);
            }
        }
    });

    it("queries the provisioned data source from every panel and target", () => {
        for (const panel of model.panels) {
            expect(panel.datasource.uid).toBe(DATASOURCE_UID);
            expect(panel.targets.every((t) => t.datasource.uid === DATASOURCE_UID)).toBe(true);
            expect(new Set(panel.targets.map((t) => t.refId)).size).toBe(panel.targets.length);
        }
    });

    it("lays the panels out on Grafana's 24-column grid without overlaps", () => {
        const cells = new Set<string>();
        for (const { gridPos, title } of model.panels) {
            expect(gridPos.x + gridPos.w, title).toBeLessThanOrEqual(24);
            for (let x = gridPos.x; x < gridPos.x + gridPos.w; x++) {
                for (let y = gridPos.y; y < gridPos.y + gridPos.h; y++) {
                    expect(cells.has(`${x},${y}`), `${title} overlaps at ${x},${y}`).toBe(false);
                    cells.add(`${x},${y}`);
                }
            }
        }
    });

    it("names the stack in its title and tags, with unique panel ids", () => {
        expect(model.title).toBe("vLLM fleet (dev)");
        expect(model.tags).toEqual(["vllm-nginx", "dev"]);
        expect(new Set(model.panels.map((p) => p.id)).size).toBe(model.panels.length);
    });
});
