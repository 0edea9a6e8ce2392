import * as pulumi from "@pulumi/pulumi";
import { decodeConfigValue } from "./decode";
import { CONFIG_NAMESPACE, SECRET_CONFIG_KEYS } from "./keys";
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
    const prefix = `${CONFIG_NAMESPACE}:`;
    for (const [fullKey, value] of Object.entries(pulumi.runtime.allConfig())) {
        if (fullKey.startsWith(prefix) && !SECRET_CONFIG_KEYS.includes(fullKey.slice(prefix.length))) {
            raw[fullKey.slice(prefix.length)] = decodeConfigValue(value);
        }
    }
    let settings: FleetSettings;
    try {
        settings = parseFleetConfig(raw, pulumi.getStack(), new pulumi.Config("docker").get("host"));
    } catch (error) {
        // A RunError is shown to the user as its message alone, without a stack trace.
        throw error instanceof FleetConfigError ? new pulumi.RunError(error.message) : error;
    }
    const config = new pulumi.Config(CONFIG_NAMESPACE);
    return { settings, secrets: { hfToken: config.getSecret("hfToken"), apiKey: config.getSecret("apiKey") } };
}
