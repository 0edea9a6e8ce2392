/**
 * A small YAML writer for the files Prometheus and Grafana read: block style, so that a reviewer reads
 * the rendered text as if it were written by hand, and no runtime dependency for it. Strings are quoted
 * as JSON string literals (which YAML reads as double-quoted scalars) unless they are plain words that
 * YAML cannot mistake for anything else; strings with line breaks become literal blocks (`|-`), which
 * keeps multi-line PromQL readable.
 */

/** Values the writer accepts: what JSON has, without `null` inside lists. */
export type YamlValue = string | number | boolean | null | YamlValue[] | { [key: string]: YamlValue | undefined };

const INDENT = "  ";

/** Strings YAML 1.1 or 1.2 would read as something else than the same string. */
const RESERVED = /^(?:true|false|yes|no|on|off|y|n|null|~)$/i;

/** Renders `value` as a YAML document (ending with a line break). Keys with `undefined` are left out. */
export function toYaml(value: YamlValue): string {
    return `${block(value, 0).join("\n")}\n`;
}

function block(value: YamlValue, depth: number): string[] {
    const pad = INDENT.repeat(depth);
    if (Array.isArray(value)) {
        if (value.length === 0) {
            return [`${pad}[]`];
        }
        return value.flatMap((item) => listItem(item, depth));
    }
    if (isMap(value)) {
        const entries = definedEntries(value);
        if (entries.length === 0) {
            return [`${pad}{}`];
        }
        return entries.flatMap(([key, item]) => mapEntry(key, item, depth));
    }
    return [`${pad}${scalar(value, depth)}`];
}

function listItem(item: YamlValue, depth: number): string[] {
    const pad = INDENT.repeat(depth);
    if ((isMap(item) && definedEntries(item).length > 0) || (Array.isArray(item) && item.length > 0)) {
        // The first line of the nested block goes after the dash; the rest keeps the block's indent.
        const lines = block(item, depth + 1);
        return [`${pad}- ${lines[0].slice(pad.length + INDENT.length)}`, ...lines.slice(1)];
    }
    return [`${pad}- ${inline(item, depth + 1)}`];
}

function mapEntry(key: string, item: YamlValue, depth: number): string[] {
    const pad = INDENT.repeat(depth);
    const name = quoteIfNeeded(key);
    if ((isMap(item) && definedEntries(item).length > 0) || (Array.isArray(item) && item.length > 0)) {
        return [`${pad}${name}:`, ...block(item, depth + 1)];
    }
    return [`${pad}${name}: ${inline(item, depth + 1)}`];
}

function inline(value: YamlValue, depth: number): string {
    if (Array.isArray(value)) {
        return "[]";
    }
    if (isMap(value)) {
        return "{}";
    }
    return scalar(value, depth);
}

function scalar(value: string | number | boolean | null, depth: number): string {
    if (value === null) {
        return "null";
    }
    if (typeof value === "boolean") {
        return String(value);
    }
    if (typeof value === "number") {
        if (!Number.isFinite(value)) {
            throw new Error(`toYaml: ${value} has no YAML form here`);
        }
        return String(value);
    }
    const literal = value.includes("\n") && !SPECIAL.test(value.replace(/\n/g, "")) && !/^\s/.test(value) && !/\s$/.test(value) && !/\n\s*\n/.test(value);
    if (literal) {
        const pad = INDENT.repeat(depth);
        return `|-\n${value
            .split("\n")
            .map((line) => `${pad}${line}`)
            .join("\n")}`;
    }
    return quoteIfNeeded(value);
}

/** Plain when it is a simple word, path or duration ("5s"), else quoted. */
function quoteIfNeeded(text: string): string {
    // A colon is text unless a space or the end follows it.
    const word = /^[A-Za-z_/][A-Za-z0-9_./:-]*$/.test(text) && !text.endsWith(":") && !RESERVED.test(text);
    const duration = /^(?:\d+(?:ms|s|m|h|d|w|y))+$/.test(text);
    if (word || duration) {
        return text;
    }
    // Single quotes escape nothing but the quote itself, so PromQL's double quotes stay readable.
    return !text.includes("'") && !SPECIAL.test(text) ? `'${text}'` : doubleQuoted(text);
}

/** Characters YAML treats as breaks, marks or controls rather than text. */
// eslint-disable-next-line no-control-regex -- control characters are exactly what this looks for
const SPECIAL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\ufeff]/;

/** A JSON string literal, with the characters that YAML (unlike JSON) reads as line breaks escaped too. */
function doubleQuoted(text: string): string {
    return JSON.stringify(text).replace(/[\u007f-\u009f\u2028\u2029\ufeff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

function isMap(value: YamlValue | undefined): value is { [key: string]: YamlValue | undefined } {
    return typeof value === "object" && value !== null && !Array.isArray(value);
}

function definedEntries(map: { [key: string]: YamlValue | undefined }): Array<[string, YamlValue]> {
    return Object.entries(map).filter((entry): entry is [string, YamlValue] => entry[1] !== undefined);
}
