/**
 * The config reference table of the README, generated from the typed declarations in `Pulumi.yaml`
 * (`npx tsx scripts/config-reference.ts` rewrites it; a unit test fails when the two drift apart).
 */
export interface ConfigDeclaration {
    type?: string;
    items?: { type: string };
    default?: unknown;
    secret?: boolean;
    description?: string;
}

export const REFERENCE_BEGIN = "<!-- config-reference:begin (generated from Pulumi.yaml) -->";
export const REFERENCE_END = "<!-- config-reference:end -->";

export function renderConfigReference(config: Record<string, ConfigDeclaration>): string {
    const rows = Object.entries(config).map(([fullKey, decl]) => {
        const key = fullKey.replace(/^vllm-nginx:/, "");
        const type = decl.secret ? "secret string" : decl.type === "array" ? `list of ${decl.items?.type ?? "values"}` : (decl.type ?? "string or list");
        const unset = decl.default === "" || (Array.isArray(decl.default) && decl.default.length === 0);
        const def = decl.default === undefined ? "required" : unset ? "unset" : `\`${String(decl.default)}\``;
        return `| \`${key}\` | ${type} | ${def} | ${(decl.description ?? "").replace(/\|/g, "\\|")} |`;
    });
    return [REFERENCE_BEGIN, "| key | type | default | meaning |", "|---|---|---|---|", ...rows, REFERENCE_END].join("\n");
}
