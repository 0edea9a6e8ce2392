import * as pulumi from "@pulumi/pulumi";
import { CONFIG_NAMESPACE, FleetConfigError, FleetSecrets, FleetSettings, RawConfig, SECRET_CONFIG_KEYS, parseFleetConfig } from "./config";

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
        settings = parseFleetConfig(raw, pulumi.getStack());
    } catch (error) {
        // A RunError is shown to the user as its message alone, without a stack trace.
        throw error instanceof FleetConfigError ? new pulumi.RunError(error.message) : error;
    }
    const config = new pulumi.Config(CONFIG_NAMESPACE);
    return { settings, secrets: { hfToken: config.getSecret("hfToken"), apiKey: config.getSecret("apiKey") } };
}

/** Structured values (lists, objects) reach the program as JSON text; plain values as strings. */
export function decodeConfigValue(value: string): unknown {
    const text = value.trim();
    if (text.startsWith("[") || text.startsWith("{")) {
        try {
            return JSON.parse(text);
        } catch {
            return value;
        }
    }
    return value;
}
