// Rewrites the README's config reference from Pulumi.yaml.
import * as fs from "fs";
import * as yaml from "js-yaml";
import * as path from "path";
import { ConfigDeclaration, REFERENCE_BEGIN, REFERENCE_END, renderConfigReference } from "../components/configReference";

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
