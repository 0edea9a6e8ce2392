/**
 * A steady load of streamed completions through the balancer, counting what a user would notice:
 * requests that failed before a response began, and streams cut before `data: [DONE]`.
 * Bounded: a fixed concurrency, and it stops when told or after `maxSeconds`.
 */
import * as http from "http";

export interface LoadCounts {
    sent: number;
    completed: number;
    /** Failed before any response body arrived (connection error, non-200). */
    failed: number;
    /** Began streaming and ended without `[DONE]`. */
    cut: number;
    byReplica: Record<string, number>;
    errors: string[];
}

/** The API key the e2e stack sets (vLLM's `--api-key`, through the stack's `apiKey` secret). */
export const API_KEY = "sk-e2e-api-key-never-in-state";
export const AUTH = { authorization: `Bearer ${API_KEY}` };

export interface StreamResult {
    status: number;
    replica: string;
    chunks: number;
    done: boolean;
    error?: string;
}

/** One streamed chat completion; resolves with what the client saw. */
export function streamCompletion(port: number, model: string, maxTokens: number, timeoutMs = 120_000): Promise<StreamResult> {
    return new Promise((resolve) => {
        const body = JSON.stringify({ model, stream: true, max_tokens: maxTokens, messages: [{ role: "user", content: "count for me" }] });
        const req = http.request(
            {
                host: "127.0.0.1",
                port,
                path: "/v1/chat/completions",
                method: "POST",
                agent: false,
                headers: { ...AUTH, "content-type": "application/json", "content-length": Buffer.byteLength(body) },
                timeout: timeoutMs,
            },
            (res) => {
                const result: StreamResult = { status: res.statusCode ?? 0, replica: String(res.headers["x-replica-id"] ?? "?"), chunks: 0, done: false };
                let buffer = "";
                res.setEncoding("utf8");
                res.on("data", (text: string) => {
                    buffer += text;
                    let end;
                    while ((end = buffer.indexOf("\n\n")) >= 0) {
                        const event = buffer.slice(0, end);
                        buffer = buffer.slice(end + 2);
                        if (event === "data: [DONE]") {
                            result.done = true;
                        } else if (event.startsWith("data: ")) {
                            result.chunks++;
                        }
                    }
                });
                res.on("end", () => resolve(result));
                res.on("error", (error) => resolve({ ...result, error: String(error) }));
                res.on("aborted", () => resolve({ ...result, error: "aborted" }));
            },
        );
        req.on("timeout", () => req.destroy(new Error("client timeout")));
        req.on("error", (error) => resolve({ status: 0, replica: "?", chunks: 0, done: false, error: String(error) }));
        req.end(body);
    });
}

export class SteadyLoad {
    private counts: LoadCounts = emptyCounts();
    private running = false;
    private workers: Promise<void>[] = [];

    constructor(
        private readonly port: number,
        private readonly model: string,
        private readonly concurrency: number,
        private readonly maxTokens: number,
        private readonly maxSeconds: number,
    ) {}

    start(): void {
        this.running = true;
        const deadline = Date.now() + this.maxSeconds * 1000;
        this.workers = Array.from({ length: this.concurrency }, async (_, worker) => {
            // Stagger the workers so streams do not start and end in lockstep.
            await sleep(worker * 150);
            while (this.running && Date.now() < deadline) {
                this.counts.sent++;
                const result = await streamCompletion(this.port, this.model, this.maxTokens);
                this.record(result);
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

    private record(result: StreamResult): void {
        const c = this.counts;
        if (result.status === 200 && result.done) {
            c.completed++;
            c.byReplica[result.replica] = (c.byReplica[result.replica] ?? 0) + 1;
        } else if (result.status === 200 && result.chunks > 0) {
            c.cut++;
            c.errors.push(`cut after ${result.chunks} chunks from ${result.replica}: ${result.error ?? "no [DONE]"}`);
        } else {
            c.failed++;
            c.errors.push(`failed: status ${result.status} from ${result.replica}: ${result.error ?? ""}`);
        }
    }
}

function emptyCounts(): LoadCounts {
    return { sent: 0, completed: 0, failed: 0, cut: 0, byReplica: {}, errors: [] };
}

export function sleep(ms: number): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, ms));
}
