/** Waiting, for every tier that talks to real processes. */
import { performance } from "perf_hooks";

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Polls `check` until it returns a value other than `undefined` or `false`, and resolves with it.
 * A check that throws ends the wait with its error; running out of time ends it with one that says
 * what was awaited.
 */
export async function waitFor<T>(what: string, timeoutMs: number, check: () => Promise<T | undefined | false> | T | undefined | false, intervalMs = 25): Promise<T> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
        const value = await check();
        if (value !== undefined && value !== false) {
            return value;
        }
        if (performance.now() > deadline) {
            throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
        }
        await sleep(intervalMs);
    }
}
