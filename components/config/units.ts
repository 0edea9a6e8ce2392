/**
 * Parsing of the human-friendly durations and sizes accepted in stack config.
 *
 * Every parser returns `undefined` for input it does not understand, so that the caller can report the
 * config key together with the value and the accepted forms.
 */

const DURATION_UNITS: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 };

/** Accepted duration forms, as told to a user whose value was rejected. */
export const DURATION_FORMS = 'a whole number followed by ms, s, m, h or d, e.g. "30s", "10m", "1h30m"';

/**
 * Parses a duration such as `"30s"`, `"10m"`, `"1h30m"` or `"500ms"` into seconds.
 * A bare number is taken as seconds, as nginx does.
 */
export function parseDurationSeconds(value: string): number | undefined {
    const text = value.trim();
    if (/^\d+$/.test(text)) {
        return Number(text);
    }
    const part = /(\d+)(ms|s|m|h|d)/gy;
    let total = 0;
    let consumed = 0;
    for (let match = part.exec(text); match !== null; match = part.exec(text)) {
        total += Number(match[1]) * DURATION_UNITS[match[2]];
        consumed = part.lastIndex;
    }
    return consumed > 0 && consumed === text.length ? total : undefined;
}

const SIZE_UNITS: Record<string, number> = {
    b: 1,
    k: 1024,
    kb: 1024,
    m: 1024 ** 2,
    mb: 1024 ** 2,
    g: 1024 ** 3,
    gb: 1024 ** 3,
};

/** Accepted size forms, as told to a user whose value was rejected. */
export const SIZE_FORMS = 'a number followed by b, k/kb, m/mb or g/gb (powers of 1024, as Docker reads them), e.g. "10.24gb", "512m"';

/** Parses a size such as Docker's `"10.24gb"` or nginx's `"100m"` into bytes. */
export function parseSizeBytes(value: string): number | undefined {
    const match = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(value.trim());
    if (!match) {
        return undefined;
    }
    const unit = match[2].toLowerCase() || "b";
    const factor = SIZE_UNITS[unit];
    return factor === undefined ? undefined : Math.floor(Number(match[1]) * factor);
}

/** Renders seconds the way nginx reads them (`"3600s"`). */
export function nginxSeconds(seconds: number): string {
    return Number.isInteger(seconds) ? `${seconds}s` : `${Math.round(seconds * 1000)}ms`;
}

