/** Reading Prometheus text exposition, as vLLM's `/metrics` serves it. */
import { request } from "./http";
import { waitFor } from "./wait";

/** Value of the first sample of `name` whose labels include every given label (NaN if none). */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
    for (const line of text.split("\n")) {
        if (line.startsWith("#") || !line.startsWith(name)) {
            continue;
        }
        const match = /^([^{\s]+)(\{([^}]*)\})?\s+(\S+)$/.exec(line);
        if (!match || match[1] !== name) {
            continue;
        }
        const got: Record<string, string> = {};
        for (const m of (match[3] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
            got[m[1]!] = m[2]!;
        }
        if (Object.entries(labels).every(([k, v]) => got[k] === v)) {
            return Number(match[4]);
        }
    }
    return NaN;
}

export async function scrape(server: { url: string }): Promise<string> {
    return (await request(`${server.url}/metrics`, { agent: false })).text;
}

export interface Sample {
    metric: Record<string, string>;
    value: number;
}

/** Prometheus's HTTP API at `url`. */
export class PrometheusApi {
    constructor(readonly url: string) {}

    /** An instant query; values as numbers (NaN stays NaN). */
    async query(expr: string): Promise<Sample[]> {
        const r = await request(`${this.url}/api/v1/query?query=${encodeURIComponent(expr)}`, { agent: false });
        if (r.status !== 200 || r.json?.status !== "success") {
            throw new Error(`query ${expr} failed: ${r.status} ${r.text}`);
        }
        return (r.json.data.result as Array<{ metric: Record<string, string>; value: [number, string] }>).map((s) => ({ metric: s.metric, value: Number(s.value[1]) }));
    }

    /** Health of every active target, as `job/replica-or-instance`. */
    async targets(): Promise<Record<string, string>> {
        const r = await request(`${this.url}/api/v1/targets`, { agent: false });
        const active = r.json.data.activeTargets as Array<{ labels: Record<string, string>; health: string }>;
        return Object.fromEntries(active.map((t) => [`${t.labels.job}/${t.labels.replica ?? t.labels.instance}`, t.health]));
    }

    /** Firing alerts by name, with their labels. */
    async firing(alertname: string): Promise<Array<Record<string, string>>> {
        return (await this.query(`ALERTS{alertname="${alertname}",alertstate="firing"}`)).map((s) => s.metric);
    }

    async pending(alertname: string): Promise<Array<Record<string, string>>> {
        return (await this.query(`ALERTS{alertname="${alertname}",alertstate="pending"}`)).map((s) => s.metric);
    }

    /** Waits until every target is up. */
    async waitForTargetsUp(expected: string[], timeoutMs = 30_000): Promise<Record<string, string>> {
        return waitFor(`targets ${expected.join(", ")} to be up`, timeoutMs, async () => {
            const targets = await this.targets().catch(() => ({}) as Record<string, string>);
            return expected.every((t) => targets[t] === "up") ? targets : undefined;
        }, 500);
    }

    /** Waits until `expr` returns at least one finite value for each of `labelValues` of `label` (or any, if none given). */
    async waitForValues(expr: string, timeoutMs: number, label?: string, labelValues: string[] = []): Promise<Sample[]> {
        return waitFor(`${expr} to have values${label ? ` for ${label}=${labelValues.join("|")}` : ""}`, timeoutMs, async () => {
            const samples = (await this.query(expr)).filter((s) => Number.isFinite(s.value));
            const ok = label ? labelValues.every((v) => samples.some((s) => s.metric[label] === v)) : samples.length > 0;
            return ok ? samples : undefined;
        }, 1000);
    }
}
