/**
 * A steady load of streamed completions through the balancer, counting what a user would notice:
 * requests that failed before a response began, and streams cut before `data: [DONE]`.
 * Bounded: a fixed concurrency, and it stops when told or after `maxSeconds`.
 */
import { StreamResult, sleep, stream } from "../support";
import OpenAI from "openai";
import { Agent, fetch as undiciFetch } from "undici";

export interface LoadCounts {
    sent: number;
    completed: number;
    /** Failed before any response body arrived (connection error, non-200). */
    failed: number;
    /** Began streaming and ended without `[DONE]`, or was aborted by the server (vLLM ends a stream it aborts, at SIGTERM for one, with `finish_reason: "abort"` and `[DONE]`). */
    cut: number;
    /** Ended with an error event before `[DONE]` (vLLM's way to end a stream whose engine failed). */
    errored: number;
    byReplica: Record<string, number>;
    errors: string[];
}

/** The client keys of Pulumi.e2e.yaml (encrypted there for the empty passphrase): alice unlimited, bob at 2 a second, 1 at a time. */
export const ALICE_KEY = "e2e-alice-key-5f0c2d9a41b7e3";
export const BOB_KEY = "e2e-bob-key-8d1e6a0f72c4b9";

/** The API key the e2e stack sets (vLLM's `--api-key`, through the stack's `apiKey` secret): the replicas' own key. */
export const API_KEY = "sk-e2e-api-key-never-in-state";
export const AUTH = { authorization: `Bearer ${API_KEY}` };

/** Where clients reach the balancer, and what they send it. */
export interface Front {
    /** The balancer's base URL, `http(s)://host:port` (the stack's `endpoint`). */
    url: string;
    /** Headers of every request: the client's key. */
    headers: Record<string, string>;
    /** The certificate to trust over HTTPS (a self-signed balancer's). */
    ca?: string;
}

/** One streamed chat completion through the balancer; resolves with what the client saw. */
export function streamCompletion(front: Front, model: string, maxTokens: number, timeoutMs = 120_000): Promise<StreamResult> {
    return stream(
        `${front.url}/v1/chat/completions`,
        { model, stream: true, max_tokens: maxTokens, messages: [{ role: "user", content: "count for me" }] },
        { headers: front.headers, ca: front.ca, agent: false, timeoutMs },
    ).result;
}

/** Data events of a stream other than `[DONE]`. */
export function chunks(result: StreamResult): number {
    return result.events.filter((e) => e.data !== "[DONE]").length;
}

export class SteadyLoad {
    private counts: LoadCounts = emptyCounts();
    private running = false;
    private workers: Promise<void>[] = [];

    constructor(
        private readonly front: Front,
        private readonly model: string,
        private readonly concurrency: number,
        private readonly maxTokens: number,
        private readonly maxSeconds: number,
        /** A pause after each request, as a user reads the answer: a lighter load. */
        private readonly pauseMs = 0,
    ) {}

    start(): void {
        this.running = true;
        const deadline = Date.now() + this.maxSeconds * 1000;
        this.workers = Array.from({ length: this.concurrency }, async (_, worker) => {
            // Stagger the workers so streams do not start and end in lockstep.
            await sleep(worker * 150);
            while (this.running && Date.now() < deadline) {
                this.counts.sent++;
                const result = await streamCompletion(this.front, this.model, this.maxTokens, 120_000);
                if (!this.record(result)) {
                    // As a client that failed would, wait before the next request rather than spin.
                    await sleep(200);
                } else if (this.pauseMs > 0) {
                    await sleep(this.pauseMs);
                }
            }
        });
    }

    /** Counts since the last call, and starts counting afresh. */
    take(): LoadCounts {
        const counts = this.counts;
        this.counts = emptyCounts();
        return counts;
    }

    async stop(): Promise<LoadCounts> {
        this.running = false;
        await Promise.all(this.workers);
        return this.take();
    }

    /** Counts what the client saw; true when the stream completed. */
    private record(result: StreamResult): boolean {
        const c = this.counts;
        const replica = result.replica ?? "?";
        const got = chunks(result);
        const errorEvent = result.events.some((e) => e.data.startsWith('{"error"'));
        const aborted = result.events.some((e) => e.data.includes('"finish_reason":"abort"'));
        if (result.status === 200 && result.done && errorEvent) {
            c.errored++;
            c.errors.push(`error event from ${replica}`);
        } else if (result.status === 200 && aborted) {
            c.cut++;
            c.errors.push(`aborted by ${replica} after ${got} chunks`);
        } else if (result.status === 200 && result.done && result.complete) {
            c.completed++;
            c.byReplica[replica] = (c.byReplica[replica] ?? 0) + 1;
            return true;
        } else if (result.status === 200 && got > 0) {
            c.cut++;
            c.errors.push(`cut after ${got} chunks from ${replica}: ${result.error ?? "no [DONE]"}`);
        } else {
            c.failed++;
            c.errors.push(`failed: status ${result.status} from ${replica}: ${result.error ?? result.text.slice(0, 200)}`);
        }
        return false;
    }
}

/** The counts of several windows of one load, as one. */
export function addCounts(...windows: LoadCounts[]): LoadCounts {
    const sum = emptyCounts();
    for (const w of windows) {
        sum.sent += w.sent;
        sum.completed += w.completed;
        sum.failed += w.failed;
        sum.cut += w.cut;
        sum.errored += w.errored;
        for (const [replica, n] of Object.entries(w.byReplica)) sum.byReplica[replica] = (sum.byReplica[replica] ?? 0) + n;
        sum.errors.push(...w.errors);
    }
    return sum;
}

function emptyCounts(): LoadCounts {
    return { sent: 0, completed: 0, failed: 0, cut: 0, errored: 0, byReplica: {}, errors: [] };
}

/**
 * The official `openai` client for the front door, with a client key, trusting the balancer's certificate
 * (undici's fetch with an agent that has the CA). It never retries: a failure is the test's to see.
 */
export function openaiClient(front: Front, key: string): OpenAI {
    const dispatcher = new Agent({ connect: { ca: front.ca } });
    return new OpenAI({
        apiKey: key,
        baseURL: `${front.url}/v1`,
        maxRetries: 0,
        fetch: ((url: string, init?: Record<string, unknown>) => undiciFetch(url, { ...init, dispatcher })) as unknown as typeof fetch,
    });
}
