/**
 * Reads raw stack config values by key, applying defaults and collecting every problem, so that a user
 * sees all of them at once, each with its key, the value given and what is allowed.
 */
import type { KeyProblem } from "../planning";
import { isIpv4 } from "../planning/subnet";
import { CONFIG_NAMESPACE, isUnset } from "./keys";
import { DURATION_FORMS, SIZE_FORMS, parseDurationSeconds, parseSizeBytes } from "./units";

/** Raw config values by key (without namespace), as read from the stack. */
export type RawConfig = Record<string, unknown>;

/** Thrown with every problem found, so a user fixes them all in one go. */
export class FleetConfigError extends Error {
    constructor(readonly problems: KeyProblem[]) {
        super(`invalid stack config (${problems.length} problem${problems.length === 1 ? "" : "s"}):\n` + problems.map((p) => `  - ${describe(p)}`).join("\n"));
        this.name = "FleetConfigError";
    }
}

function describe(problem: KeyProblem): string {
    if (problem.key === undefined) {
        return `stack name ${show(problem.value)}: ${problem.allowed}`;
    }
    return `${CONFIG_NAMESPACE}:${problem.key} = ${show(problem.value)}: ${problem.allowed}`;
}

/** Stands for a secret in a problem's value: the problem names where it is, never what it is. */
export const SECRET_VALUE: unique symbol = Symbol("secret");

function show(value: unknown): string {
    if (value === undefined) {
        return "(not set)";
    }
    return value === SECRET_VALUE ? "(secret)" : JSON.stringify(value, (_key, v: unknown) => (v === SECRET_VALUE ? "(secret)" : v));
}

export class ConfigReader {
    readonly problems: KeyProblem[] = [];

    constructor(private readonly raw: RawConfig) {}

    has(key: string): boolean {
        return !isUnset(this.raw[key]);
    }

    value(key: string): unknown {
        return this.has(key) ? this.raw[key] : undefined;
    }

    problem(key: string | undefined, value: unknown, allowed: string): void {
        this.problems.push({ key, value, allowed });
    }

    /** Whether a problem was already reported for `key`. */
    reported(key: string): boolean {
        return this.problems.some((p) => p.key === key);
    }

    string(key: string, fallback: string): string;
    string(key: string): string | undefined;
    string(key: string, fallback?: string): string | undefined {
        const value = this.value(key);
        if (value === undefined) {
            return fallback;
        }
        if (typeof value !== "string" && typeof value !== "number") {
            this.problem(key, value, "a string");
            return fallback;
        }
        return String(value);
    }

    oneOf<T extends string>(key: string, allowed: readonly T[], fallback: T): T {
        const value = this.string(key, fallback);
        if (!(allowed as readonly string[]).includes(value)) {
            this.problem(key, value, `one of ${allowed.map((a) => `"${a}"`).join(", ")}`);
            return fallback;
        }
        return value as T;
    }

    integer(key: string, fallback: number, min: number, max: number): number {
        const value = this.value(key);
        if (value === undefined) {
            return fallback;
        }
        const number = typeof value === "number" ? value : typeof value === "string" && /^-?\d+$/.test(value.trim()) ? Number(value) : NaN;
        if (!Number.isInteger(number) || number < min || number > max) {
            this.problem(key, value, `a whole number from ${min} to ${max}`);
            return fallback;
        }
        return number;
    }

    /** A number (decimals allowed) from `min` to `max`. */
    number(key: string, fallback: number, min: number, max: number): number {
        const value = this.value(key);
        if (value === undefined) {
            return fallback;
        }
        const number = typeof value === "number" ? value : typeof value === "string" && /^\s*-?\d+(\.\d+)?\s*$/.test(value) ? Number(value) : NaN;
        if (!Number.isFinite(number) || number < min || number > max) {
            this.problem(key, value, `a number from ${min} to ${max}`);
            return fallback;
        }
        return number;
    }

    boolean(key: string, fallback: boolean): boolean {
        const value = this.value(key);
        if (value === undefined) {
            return fallback;
        }
        if (value === true || value === "true") {
            return true;
        }
        if (value === false || value === "false") {
            return false;
        }
        this.problem(key, value, "true or false");
        return fallback;
    }

    /** A duration in seconds, at least `minSeconds`; with `wholeSeconds`, one without a part of a second. */
    duration(key: string, fallback: string, minSeconds = 0, options: { wholeSeconds?: boolean } = {}): number {
        const text = this.string(key, fallback);
        const seconds = parseDurationSeconds(text);
        if (seconds === undefined || seconds < minSeconds || (options.wholeSeconds && !Number.isInteger(seconds))) {
            this.problem(key, text, options.wholeSeconds ? `a whole number of seconds, at least ${minSeconds}s: ${DURATION_FORMS}` : `a duration of at least ${minSeconds}s: ${DURATION_FORMS}`);
            return parseDurationSeconds(fallback)!;
        }
        return seconds;
    }

    size(key: string, fallback: string): number {
        const text = this.string(key, fallback);
        const bytes = parseSizeBytes(text);
        if (bytes === undefined || bytes <= 0) {
            this.problem(key, text, `a size: ${SIZE_FORMS}`);
            return parseSizeBytes(fallback)!;
        }
        return bytes;
    }

    stringList(key: string): string[] | undefined {
        const value = this.value(key);
        if (value === undefined) {
            return undefined;
        }
        if (!Array.isArray(value) || !value.every((v) => typeof v === "string" || typeof v === "number")) {
            this.problem(key, value, "a list of strings");
            return undefined;
        }
        return value.map(String);
    }

    ipv4(key: string, fallback: string): string {
        const text = this.string(key, fallback);
        if (!isIpv4(text)) {
            this.problem(key, text, 'an IPv4 address, e.g. "127.0.0.1" or "0.0.0.0"');
            return fallback;
        }
        return text;
    }
}
