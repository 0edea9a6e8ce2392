/**
 * Durations as Docker reports them back (Go's `time.Duration` form: `30s`, `2m0s`, `1h0m0s`). The docker
 * provider stores what Docker reports after a create, so an input written any other way (`120s`) shows
 * as a change on the next `pulumi up`; written this way, a second `up` has nothing to do.
 */
export function dockerDuration(seconds: number): string {
    if (!Number.isInteger(seconds) || seconds < 0) {
        throw new Error(`dockerDuration: ${seconds} is not a whole number of seconds`);
    }
    const h = Math.floor(seconds / 3600);
    const m = Math.floor((seconds % 3600) / 60);
    const s = seconds % 60;
    if (h > 0) {
        return `${h}h${m}m${s}s`;
    }
    return m > 0 ? `${m}m${s}s` : `${s}s`;
}
