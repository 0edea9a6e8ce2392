/**
 * Readers of the values that appear both at the top level and in a model group (`models[i]`): each reports
 * a problem under the key it is given, so the two places say the same thing.
 */
import type { ThreadsBind } from "../planning";
import { DEFAULTS } from "./keys";
import type { ConfigReader } from "./reader";

/** `cpuThreadsBind` (top-level, a host's or a group's): "auto", "nobind" or a list of core ranges; another shape is reported under `key`. */
export function readThreadsBind(read: ConfigReader, key: string, bind: unknown): ThreadsBind {
    if (bind === undefined || bind === null || bind === "" || bind === DEFAULTS.cpuThreadsBind) {
        return "auto";
    }
    if (bind === "nobind") {
        return "nobind";
    }
    const ranges = Array.isArray(bind) && bind.every((v) => typeof v === "string" || typeof v === "number") ? bind.map(String) : undefined;
    if (ranges === undefined) {
        read.problem(key, bind, '"auto", "nobind" or a list of core ranges, one per replica, e.g. ["0-3", "4-7"]');
        return "auto";
    }
    return ranges;
}

const MAX_UNAVAILABLE_FORMS = "a whole number of replicas (at least 1) or a percentage from 1% to 100%";

/** `rollout.maxUnavailable`: a whole number from 1, or a percentage ("25%"); `fallback` when unset or bad (reported under `key`). */
export function readMaxUnavailable(read: ConfigReader, key: string, raw: unknown, fallback: number | string): number | string {
    if (raw === undefined) {
        return fallback;
    }
    if (typeof raw === "string" && /^\s*\d+\s*%\s*$/.test(raw)) {
        const percent = Number(raw.replace("%", "").trim());
        if (percent < 1 || percent > 100) {
            read.problem(key, raw, MAX_UNAVAILABLE_FORMS);
            return fallback;
        }
        return `${percent}%`;
    }
    const n = typeof raw === "number" ? raw : typeof raw === "string" && /^\s*\d+\s*$/.test(raw) ? Number(raw) : NaN;
    if (!Number.isInteger(n) || n < 1 || n > 1024) {
        read.problem(key, raw, MAX_UNAVAILABLE_FORMS);
        return fallback;
    }
    return n;
}

/** An HTTP header name as nginx exposes it in `$http_*` (letters, digits and dashes), in lower case; `fallback` when bad (reported under `key`). */
export function checkHeaderName(read: ConfigReader, key: string, name: string, fallback: string): string {
    if (!/^[A-Za-z0-9][A-Za-z0-9-]*$/.test(name)) {
        read.problem(key, name, 'an HTTP header name of letters, digits and dashes, e.g. "x-user-id"');
        return fallback;
    }
    return name.toLowerCase();
}
