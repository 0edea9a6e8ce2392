/**
 * The config reference table of the README, generated from the typed declarations in `Pulumi.yaml`.
 * `npx tsx scripts/config-reference.ts` rewrites it; a unit test fails when the two drift apart.
 */
import * as fs from "fs";
import * as yaml from "js-yaml";
import * as path from "path";
import { isUnset } from "../components/config/keys";

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
        const shown = typeof decl.default === "string" ? decl.default : JSON.stringify(decl.default);
        const def = decl.default === undefined ? "required" : isUnset(decl.default) ? "unset" : `\`${shown}\``;
        return `| \`${key}\` | ${type} | ${def} | ${(decl.description ?? "").replace(/\|/g, "\\|")} |`;
    });
    return [REFERENCE_BEGIN, "| key | type | default | meaning |", "|---|---|---|---|", ...rows, REFERENCE_END].join("\n");
}

function main(): void {
    const root = path.resolve(__dirname, "..");
    const project = yaml.load(fs.readFileSync(path.join(root, "Pulumi.yaml"), "utf8")) as { config: Record<string, ConfigDeclaration> };
    const readmePath = path.join(root, "README.md");
    const readme = fs.readFileSync(readmePath, "utf8");
    const start = readme.indexOf(REFERENCE_BEGIN);
    const end = readme.indexOf(REFERENCE_END);
    if (start < 0 || end < 0) {
        throw new Error(`README.md has no ${REFERENCE_BEGIN} ... ${REFERENCE_END} section`);
    }
    fs.writeFileSync(readmePath, readme.slice(0, start) + renderConfigReference(project.config) + readme.slice(end + REFERENCE_END.length));
    console.log("README.md config reference rewritten from Pulumi.yaml");
}

if (require.main === module) {
    main();
}
