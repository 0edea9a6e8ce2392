import * as fs from "fs";
import * as yaml from "js-yaml";
import * as path from "path";
import { describe, expect, it } from "vitest";
import { parseFleetConfig } from "../../components/config";
import { decodeConfigValue } from "../../components/config/decode";
import { CONFIG_KEYS, DEFAULTS, SECRET_CONFIG_KEYS, isUnset } from "../../components/config/keys";
import { ConfigDeclaration, REFERENCE_BEGIN, REFERENCE_END, renderConfigReference } from "../../scripts/config-reference";
import { REPO, stackConfig } from "./mockStack";

const project = yaml.load(fs.readFileSync(path.join(REPO, "Pulumi.yaml"), "utf8")) as {
    name: string;
    runtime: { name: string };
    config: Record<string, ConfigDeclaration>;
};

describe("Pulumi.yaml config declarations", () => {
    it("is the vllm-nginx project on the nodejs runtime", () => {
        expect(project.name).toBe("vllm-nginx");
        expect(project.runtime.name).toBe("nodejs");
    });

    it("declares every key the program reads, with a description, and nothing else", () => {
        const declared = Object.keys(project.config).map((k) => k.replace(/^vllm-nginx:/, ""));
        expect(declared.sort()).toEqual(CONFIG_KEYS.filter((k) => !SECRET_CONFIG_KEYS.includes(k)).sort());
        for (const [key, decl] of Object.entries(project.config)) {
            expect(decl.description, key).toBeTruthy();
        }
    });

    it("declares the same defaults the code applies", () => {
        for (const [fullKey, decl] of Object.entries(project.config)) {
            if (!isUnset(decl.default)) {
                const key = fullKey.replace(/^vllm-nginx:/, "") as keyof typeof DEFAULTS;
                expect(String(DEFAULTS[key]), fullKey).toBe(String(decl.default));
            }
        }
    });

    it("declares a default for every key, model's empty: the CLI lets a stack of model groups (models) leave it unset, and the program refuses it empty otherwise", () => {
        const required = Object.entries(project.config).filter(([, decl]) => decl.default === undefined).map(([key]) => key);
        expect(required).toEqual([]);
        expect(project.config["vllm-nginx:model"]!.default).toBe("");
        expect(() => parseFleetConfig({ model: "", backend: "cpu" }, "dev")).toThrow('vllm-nginx:model = (not set): required: the Hugging Face model id to serve, e.g. "meta-llama/Llama-2-7b-chat-hf" (or model groups in models)');
    });

    const stackFile = (stack: string) => {
        if (!fs.existsSync(path.join(REPO, `Pulumi.${stack}.yaml`))) {
            throw new Error(`Pulumi.${stack}.yaml is missing`);
        }
        return Object.fromEntries(Object.entries(stackConfig(stack)).map(([k, v]) => [k.replace(/^vllm-nginx:/, ""), decodeConfigValue(v)]));
    };

    it.each(["dev", "gpu", "e2e", "vllm"])("validates the %s stack file", (stack) => {
        expect(() => parseFleetConfig(stackFile(stack), stack)).not.toThrow();
    });

    it("validates the multihost example, which needs no key for its replicas: those of gpu-b and gpu-c publish nothing, and their hosts' gates take only the relay's certificate", () => {
        expect(() => parseFleetConfig(stackFile("multihost"), "multihost")).not.toThrow();
    });
});

describe("README config reference", () => {
    it("matches Pulumi.yaml (regenerate with `npx tsx scripts/config-reference.ts`)", () => {
        const readme = fs.readFileSync(path.join(REPO, "README.md"), "utf8");
        const section = readme.slice(readme.indexOf(REFERENCE_BEGIN), readme.indexOf(REFERENCE_END) + REFERENCE_END.length);
        expect(section).toBe(renderConfigReference(project.config));
    });
});
