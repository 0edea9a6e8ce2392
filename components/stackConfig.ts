import * as pulumi from "@pulumi/pulumi";
import { CONFIG_NAMESPACE, FleetConfigError, FleetSettings, RawConfig, parseFleetConfig } from "./config";

/** The secret keys, read as secrets and never as plain values. */
const SECRET_KEYS = ["hfToken", "apiKey"];

/** Secrets of the fleet, read as secret outputs so they stay encrypted in state. */
export interface FleetSecrets {
    /** Hugging Face token for gated models (`HF_TOKEN`). */
    hfToken?: pulumi.Output<string>;
    /** Key clients must send as `Authorization: Bearer <key>` (`VLLM_API_KEY`). */
    apiKey?: pulumi.Output<string>;
}

/**
 * Reads every `vllm-nginx:` key of the current stack, validates it all at once, and returns the settings
 * and the secrets as secret outputs. Throws a `FleetConfigError` naming every bad key, before any resource
 * is registered, so `pulumi preview` fails with it.
 */
export function readStackConfig(): { settings: FleetSettings; secrets: FleetSecrets } {
    const raw: RawConfig = {};
    const prefix = `${CONFIG_NAMESPACE}:`;
    for (const [fullKey, value] of Object.entries(pulumi.runtime.allConfig())) {
        if (fullKey.startsWith(prefix) && !SECRET_KEYS.includes(fullKey.slice(prefix.length))) {
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
