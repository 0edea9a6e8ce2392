import * as pulumi from "@pulumi/pulumi";
import * as runtimeConfig from "@pulumi/pulumi/runtime/config";
import { createHash } from "crypto";
import type { PreviousDeployment } from "../planning";
import { decodeConfigValue } from "./decode";
import { CONFIG_NAMESPACE, ENCRYPTED_CONFIG_KEYS, REPLICA_SECRET_KEYS, SECRET_CONFIG_KEYS, isUnset } from "./keys";
import { parseFleetConfig } from "./parse";
import { FleetConfigError, type RawConfig } from "./reader";
import type { FleetSecrets, FleetSettings } from "./settings";

/**
 * Reads every `vllm-nginx:` key of the current stack, validates it all at once, and returns the settings
 * and the secrets as secret outputs. Throws a `FleetConfigError` naming every bad key, before any resource
 * is registered, so `pulumi preview` fails with it.
 */
export function readStackConfig(): { settings: FleetSettings; secrets: FleetSecrets } {
    const raw: RawConfig = {};
    const secretValues: RawConfig = {};
    const prefix = `${CONFIG_NAMESPACE}:`;
    for (const [fullKey, value] of Object.entries(pulumi.runtime.allConfig())) {
        if (fullKey.startsWith(prefix)) {
            const key = fullKey.slice(prefix.length);
            (SECRET_CONFIG_KEYS.includes(key) ? secretValues : raw)[key] = decodeConfigValue(value);
        }
    }
    const unencrypted = ENCRYPTED_CONFIG_KEYS.filter((key) => !isUnset(secretValues[key]) && !isConfigSecret(`${prefix}${key}`));
    let settings: FleetSettings;
    try {
        settings = parseFleetConfig(raw, pulumi.getStack(), new pulumi.Config("docker").get("host"), { values: secretValues, unencrypted });
    } catch (error) {
        // A RunError is shown to the user as its message alone, without a stack trace.
        throw error instanceof FleetConfigError ? new pulumi.RunError(error.message) : error;
    }
    const config = new pulumi.Config(CONFIG_NAMESPACE);
    // The plain values are in the program's config already; only their digest leaves this function.
    const all = pulumi.runtime.allConfig();
    const digest = createHash("sha256")
        .update(JSON.stringify(REPLICA_SECRET_KEYS.map((key) => all[`${prefix}${key}`] ?? null)))
        .digest("hex");
    return {
        settings,
        secrets: {
            hfToken: config.getSecret("hfToken"),
            apiKey: config.getSecret("apiKey"),
            clientKeys: config.getSecret("clientKeys"),
            tlsCertificate: config.getSecret("tlsCertificate"),
            tlsKey: config.getSecret("tlsKey"),
            digest,
        },
    };
}

/** Whether the CLI handed the program `fullKey` as a secret (a value or a structure with an encrypted part). */
function isConfigSecret(fullKey: string): boolean {
    return (runtimeConfig as unknown as { isConfigSecret(key: string): boolean }).isConfigSecret(fullKey);
}

/**
 * What the last deployment of this stack ran, from its own `rollout` output (a stack reference to
 * itself), so that the next one can plan its rollout before anything is created. Undefined on the first
 * deployment.
 */
export async function readPreviousDeployment(): Promise<PreviousDeployment | undefined> {
    const self = new pulumi.StackReference("previous-deployment", { name: `${pulumi.getOrganization()}/${pulumi.getProject()}/${pulumi.getStack()}` });
    const value = await new Promise<unknown>((resolve) => self.getOutput("rollout").apply(resolve));
    if (typeof value !== "object" || value === null) {
        return undefined;
    }
    const { spec, active } = value as Record<string, unknown>;
    return typeof spec === "string" && Array.isArray(active) && active.every((a) => typeof a === "string") ? { spec, active } : undefined;
}
