/** Every child process a test started, so none outlives the test process. */
import type { ChildProcess } from "child_process";

/** Each child still running, with the signal that stops it for sure (nginx's master stops its workers on SIGTERM). */
const children = new Map<ChildProcess, NodeJS.Signals>();

process.on("exit", () => {
    // Last resort if a test file dies without its afterAll: never leave servers behind.
    for (const [child, signal] of children) {
        child.kill(signal);
    }
});

/** Registers `child` until it exits; `signal` is what stops it on the way out. */
export function track(child: ChildProcess, signal: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    children.set(child, signal);
    return new Promise((resolve) =>
        child.once("exit", (code, sig) => {
            children.delete(child);
            resolve({ code, signal: sig });
        }),
    );
}
