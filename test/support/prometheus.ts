/** Reading Prometheus text exposition, as vLLM's `/metrics` serves it. */
import { request } from "./http";

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
