/**
 * How long a replica's first start can take: the weights downloaded into an empty Hugging Face cache,
 * then loaded. The size is read off the model id, as model ids usually carry it (`Llama-2-7b-chat-hf`,
 * `Qwen2.5-0.5B-Instruct`, `Mixtral-8x7B-v0.1`, `SmolLM2-135M`).
 */

/** 16-bit weights (bf16/fp16), what vLLM loads by default; quantized checkpoints are smaller. */
export const BYTES_PER_PARAMETER = 2;

export interface StartupAssumptions {
    /** Download rate from the Hugging Face hub (or its mirror), in MB/s (10^6 bytes per second). */
    downloadMBps: number;
    /** Time from downloaded weights to a healthy server: loading, memory profiling, CUDA graphs, in seconds. */
    loadSeconds: number;
}

/** 50 MB/s is 400 Mbit/s, a fast office line; two minutes of loading is what a 7B model takes on one GPU. */
export const DEFAULT_ASSUMPTIONS: StartupAssumptions = { downloadMBps: 50, loadSeconds: 120 };

/** The number of parameters named in a model id, or undefined when it names none. */
export function modelParameters(modelId: string): number | undefined {
    const name = modelId.split("/").pop() ?? modelId;
    const pattern = /(?:^|[-_.])(?:(\d+)x)?(\d+(?:\.\d+)?)([bm])(?=$|[-_.])/gi;
    let largest: number | undefined;
    for (const match of name.matchAll(pattern)) {
        const experts = match[1] ? Number(match[1]) : 1;
        const unit = match[3].toLowerCase() === "b" ? 1e9 : 1e6;
        const count = experts * Number(match[2]) * unit;
        largest = largest === undefined ? count : Math.max(largest, count);
    }
    return largest;
}

export interface StartupEstimate {
    parameters: number;
    bytes: number;
    downloadSeconds: number;
    loadSeconds: number;
    totalSeconds: number;
}

export function estimateFirstStart(modelId: string, assumptions: StartupAssumptions = DEFAULT_ASSUMPTIONS): StartupEstimate | undefined {
    const parameters = modelParameters(modelId);
    if (parameters === undefined) {
        return undefined;
    }
    const bytes = parameters * BYTES_PER_PARAMETER;
    const downloadSeconds = Math.ceil(bytes / (assumptions.downloadMBps * 1e6));
    return { parameters, bytes, downloadSeconds, loadSeconds: assumptions.loadSeconds, totalSeconds: downloadSeconds + assumptions.loadSeconds };
}

/** `90s`, `7m`, `1h 5m`: rounded up to the minute past two minutes. */
export function formatDuration(seconds: number): string {
    if (seconds < 120) {
        return `${Math.ceil(seconds)}s`;
    }
    const minutes = Math.ceil(seconds / 60);
    return minutes < 60 ? `${minutes}m` : `${Math.floor(minutes / 60)}h ${minutes % 60}m`;
}

/** `0.5B`, `7B`, `135M`. */
export function formatParameters(parameters: number): string {
    return parameters >= 1e8 ? `${+(parameters / 1e9).toFixed(2)}B` : `${+(parameters / 1e6).toFixed(0)}M`;
}

/** Startup timeouts as the program writes them: seconds, or a duration such as `30m`. */
export function parseSeconds(value: string | number | undefined): number | undefined {
    if (typeof value === "number") {
        return Number.isFinite(value) ? value : undefined;
    }
    const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(value ?? "");
    if (!match) {
        return undefined;
    }
    const factor = { ms: 0.001, s: 1, m: 60, h: 3600 }[(match[2] ?? "s") as "ms" | "s" | "m" | "h"];
    return Number(match[1]) * factor;
}
