#!/usr/bin/env node
// @ts-check
/**
 * A dependency-free stand-in for `vllm serve`: the same command line, endpoints, wire formats,
 * metrics names and lifecycle (port closed while loading, drain on SIGTERM), with a fake "model" that
 * emits one word per token at a configurable pace. Runs on Node 18 and 20. See README.md beside this
 * file for every flag, endpoint and where it differs from vLLM.
 */
import http from "node:http";
import os from "node:os";
import crypto from "node:crypto";

const STANDIN_VERSION = "0.0.0+standin";

/** vLLM flags that take no value; any other unknown flag takes the next argument as its value. */
const BOOLEAN_FLAGS = new Set([
    "--trust-remote-code",
    "--enforce-eager",
    "--disable-log-stats",
    "--disable-log-requests",
    "--enable-log-requests",
    "--disable-frontend-multiprocessing",
    "--enable-auto-tool-choice",
    "--disable-custom-all-reduce",
    "--async-scheduling",
    "--headless",
    "--disable-fastapi-docs",
    "--enable-server-load-tracking",
    "--enable-force-include-usage",
    "--enable-prompt-tokens-details",
    "--return-tokens-as-token-ids",
    "--skip-tokenizer-init",
    "--allow-credentials",
    "--use-v2-block-manager",
    "--multi-step-stream-outputs",
]);

/**
 * @typedef {object} Options
 * @property {string} model
 * @property {string} host
 * @property {number} port
 * @property {string[]} servedModelNames
 * @property {string[]} apiKeys
 * @property {number} shutdownTimeoutSeconds
 * @property {number} maxModelLen
 * @property {number} loadSeconds
 * @property {number} itlMs
 * @property {number} maxNumSeqs
 * @property {number} batchSlowdown
 * @property {string} replicaId
 * @property {number} kvCacheTokens
 * @property {boolean} accessLog
 * @property {boolean} requestIdHeaders
 * @property {string[]} ignored
 */

/** @param {string} message */
function usageError(message) {
    process.stderr.write(`usage: server.mjs [MODEL] [--model MODEL] [--host HOST] [--port PORT] [options]\nserver.mjs: error: ${message}\n`);
    process.exit(2);
}

/**
 * Parses vLLM's command line (`vllm serve MODEL --port 8000 ...`), accepting `--flag value` and
 * `--flag=value`, and ignoring vLLM flags the stand-in has no use for.
 * @param {string[]} argv
 * @param {NodeJS.ProcessEnv} env
 * @returns {Options}
 */
function parseArgs(argv, env) {
    /** @type {Options} */
    const o = {
        model: "",
        host: "0.0.0.0",
        port: 8000,
        servedModelNames: [],
        apiKeys: [],
        shutdownTimeoutSeconds: 30,
        maxModelLen: 8192,
        loadSeconds: 0,
        itlMs: 20,
        maxNumSeqs: 256,
        batchSlowdown: 0.02,
        replicaId: os.hostname(),
        kvCacheTokens: 262144,
        accessLog: true,
        requestIdHeaders: false,
        ignored: [],
    };
    /** @type {string[]} */
    const positionals = [];
    let i = 0;
    /** @param {string} flag @param {string | undefined} inline */
    const takeValue = (flag, inline) => {
        if (inline !== undefined) {
            return inline;
        }
        const value = argv[i + 1];
        if (value === undefined || /^--/.test(value)) {
            usageError(`argument ${flag}: expected one argument`);
        }
        i += 1;
        return /** @type {string} */ (value);
    };
    /** @param {string} flag @param {string | undefined} inline */
    const takeMany = (flag, inline) => {
        /** @type {string[]} */
        const values = inline !== undefined ? [inline] : [];
        while (inline === undefined && argv[i + 1] !== undefined && !/^--/.test(/** @type {string} */ (argv[i + 1]))) {
            values.push(/** @type {string} */ (argv[i + 1]));
            i += 1;
        }
        if (values.length === 0) {
            usageError(`argument ${flag}: expected at least one argument`);
        }
        return values;
    };
    /** @param {string} flag @param {string} text @param {number} min */
    const number = (flag, text, min) => {
        const value = Number(text);
        if (!Number.isFinite(value) || value < min) {
            usageError(`argument ${flag}: invalid value: '${text}'`);
        }
        return value;
    };
    for (; i < argv.length; i += 1) {
        const arg = /** @type {string} */ (argv[i]);
        if (!arg.startsWith("--")) {
            positionals.push(arg);
            continue;
        }
        const eq = arg.indexOf("=");
        const flag = (eq >= 0 ? arg.slice(0, eq) : arg).replace(/_/g, "-");
        const inline = eq >= 0 ? arg.slice(eq + 1) : undefined;
        switch (flag) {
            case "--model":
                o.model = takeValue(flag, inline);
                break;
            case "--host":
                o.host = takeValue(flag, inline);
                break;
            case "--port":
                o.port = number(flag, takeValue(flag, inline), 0);
                break;
            case "--served-model-name":
                o.servedModelNames = takeMany(flag, inline);
                break;
            case "--api-key":
                o.apiKeys = takeMany(flag, inline);
                break;
            case "--shutdown-timeout":
                o.shutdownTimeoutSeconds = number(flag, takeValue(flag, inline), 0);
                break;
            case "--max-model-len":
                o.maxModelLen = parseModelLen(flag, takeValue(flag, inline));
                break;
            case "--max-num-seqs":
                o.maxNumSeqs = Math.floor(number(flag, takeValue(flag, inline), 1));
                break;
            case "--disable-uvicorn-access-log":
                o.accessLog = false;
                break;
            case "--enable-request-id-headers":
                o.requestIdHeaders = true;
                break;
            // Stand-in only.
            case "--load-seconds":
                o.loadSeconds = number(flag, takeValue(flag, inline), 0);
                break;
            case "--itl-ms":
                o.itlMs = number(flag, takeValue(flag, inline), 0);
                break;
            case "--batch-slowdown":
                o.batchSlowdown = number(flag, takeValue(flag, inline), 0);
                break;
            case "--replica-id":
                o.replicaId = takeValue(flag, inline);
                break;
            case "--kv-cache-tokens":
                o.kvCacheTokens = number(flag, takeValue(flag, inline), 1);
                break;
            default: {
                // Any other vLLM flag: accepted and ignored, with its value if it has one.
                const isBoolean = BOOLEAN_FLAGS.has(flag) || /^--(enable|disable|no)-/.test(flag);
                const next = argv[i + 1];
                if (inline !== undefined) {
                    o.ignored.push(`${flag}=${inline}`);
                } else if (!isBoolean && next !== undefined && (!next.startsWith("-") || /^-\d/.test(next))) {
                    o.ignored.push(`${flag} ${next}`);
                    i += 1;
                } else {
                    o.ignored.push(flag);
                }
            }
        }
    }
    if (positionals.length > 1) {
        usageError(`unrecognized arguments: ${positionals.slice(1).join(" ")}`);
    }
    if (positionals.length === 1) {
        if (o.model !== "" && o.model !== positionals[0]) {
            usageError(`model given twice: positional '${positionals[0]}' and --model '${o.model}'`);
        }
        o.model = /** @type {string} */ (positionals[0]);
    }
    if (o.model === "") {
        o.model = "Qwen/Qwen3-0.6B"; // vllm serve's default model in current releases
    }
    if (o.apiKeys.length === 0 && env.VLLM_API_KEY) {
        o.apiKeys = [env.VLLM_API_KEY];
    }
    return o;
}

/** @param {string} flag @param {string} text vLLM also accepts `1k`, `32K`, `1m` forms. */
function parseModelLen(flag, text) {
    const match = /^(\d+)([kKmM]?)$/.exec(text.trim());
    if (!match) {
        usageError(`argument ${flag}: invalid value: '${text}'`);
    }
    const m = /** @type {RegExpExecArray} */ (match);
    const unit = { "": 1, k: 1000, K: 1024, m: 1000000, M: 1048576 }[/** @type {"" | "k" | "K" | "m" | "M"} */ (m[2])];
    return Number(m[1]) * unit;
}

/** Words the fake model emits, one per token. */
const WORDS = ["The", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "and", "keeps", "running", "through", "fields", "of", "tokens."];

/** @param {number} index */
function tokenText(index) {
    return ` ${WORDS[index % WORDS.length]}`;
}

/**
 * Prompt tokens, estimated as ceil(characters / 4) (the usual ~4 characters per token), at least 1.
 * A list of token ids counts one token per id.
 * @param {unknown} prompt
 * @returns {number}
 */
function countPromptTokens(prompt) {
    if (typeof prompt === "string") {
        return Math.max(1, Math.ceil(prompt.length / 4));
    }
    if (Array.isArray(prompt) && prompt.every((t) => typeof t === "number")) {
        return Math.max(1, prompt.length);
    }
    return -1;
}

/**
 * Chat prompt tokens: ceil(characters / 4) of every text part, plus 4 per message for the chat template.
 * @param {unknown} messages
 * @returns {number}
 */
function countChatTokens(messages) {
    if (!Array.isArray(messages) || messages.length === 0) {
        return -1;
    }
    let chars = 0;
    for (const m of messages) {
        if (typeof m !== "object" || m === null) {
            return -1;
        }
        const content = /** @type {{content?: unknown}} */ (m).content;
        if (typeof content === "string") {
            chars += content.length;
        } else if (Array.isArray(content)) {
            for (const part of content) {
                if (part && typeof part === "object" && typeof part.text === "string") {
                    chars += part.text.length;
                }
            }
        }
    }
    return Math.ceil(chars / 4) + 4 * messages.length;
}

/** vLLM's time-to-first-token buckets. */
const TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0];

/**
 * @typedef {object} Sequence
 * @property {string} id
 * @property {number} promptTokens
 * @property {number} maxTokens
 * @property {number} generated
 * @property {number} arrival ms (performance.now)
 * @property {number} stallMs
 * @property {number | undefined} itlMs per-request token gap (stand-in header x-standin-itl-ms)
 * @property {"waiting" | "running" | "done"} state
 * @property {NodeJS.Timeout | undefined} timer
 * @property {(index: number, last: boolean) => void} onToken
 * @property {(reason: string) => void} onEnd called once: "length", or "abort"
 */

/**
 * The fake engine: up to `maxNumSeqs` sequences run at once, the rest wait in FIFO order. Each running
 * sequence emits one token every `itl * (1 + batchSlowdown * (running - 1))` ms, so tokens slow down
 * as the batch grows, as they do on a GPU.
 */
class Engine {
    /** @param {Options} options */
    constructor(options) {
        this.options = options;
        /** @type {Set<Sequence>} */
        this.running = new Set();
        /** @type {Sequence[]} */
        this.waiting = [];
        this.dead = false;
        /** @type {Record<string, number>} */
        this.finished = { stop: 0, length: 0, abort: 0 };
        this.promptTokens = 0;
        this.generationTokens = 0;
        this.ttftCounts = TTFT_BUCKETS.map(() => 0);
        this.ttftCount = 0;
        this.ttftSum = 0;
    }

    /** @param {Sequence} seq */
    tokenGapMs(seq) {
        return (seq.itlMs ?? this.options.itlMs) * (1 + this.options.batchSlowdown * Math.max(0, this.running.size - 1));
    }

    kvCacheUsage() {
        let tokens = 0;
        for (const s of this.running) {
            tokens += s.promptTokens + s.generated;
        }
        return Math.min(1, tokens / this.options.kvCacheTokens);
    }

    /** @param {Sequence} seq */
    submit(seq) {
        if (this.running.size < this.options.maxNumSeqs) {
            this.start(seq);
        } else {
            this.waiting.push(seq);
        }
    }

    /** @param {Sequence} seq */
    start(seq) {
        seq.state = "running";
        this.running.add(seq);
        seq.timer = setTimeout(() => this.step(seq), seq.stallMs + this.tokenGapMs(seq));
    }

    /** @param {Sequence} seq */
    step(seq) {
        if (seq.state !== "running") {
            return;
        }
        if (seq.generated === 0) {
            this.promptTokens += seq.promptTokens;
            const ttft = (performance.now() - seq.arrival) / 1000;
            this.ttftCount += 1;
            this.ttftSum += ttft;
            TTFT_BUCKETS.forEach((le, k) => {
                if (ttft <= le) {
                    this.ttftCounts[k] += 1;
                }
            });
        }
        const index = seq.generated;
        seq.generated += 1;
        this.generationTokens += 1;
        const last = seq.generated >= seq.maxTokens;
        seq.onToken(index, last);
        if (last) {
            this.end(seq, "length");
        } else if (seq.state === "running") {
            seq.timer = setTimeout(() => this.step(seq), this.tokenGapMs(seq));
        }
    }

    /**
     * Ends a sequence (finished or aborted), frees its seat and starts the next waiting one.
     * @param {Sequence} seq
     * @param {string} reason
     */
    end(seq, reason) {
        if (seq.state === "done") {
            return;
        }
        if (seq.timer) {
            clearTimeout(seq.timer);
        }
        if (seq.state === "waiting") {
            this.waiting = this.waiting.filter((s) => s !== seq);
        }
        this.running.delete(seq);
        seq.state = "done";
        this.finished[reason] = (this.finished[reason] ?? 0) + 1;
        while (this.running.size < this.options.maxNumSeqs && this.waiting.length > 0) {
            this.start(/** @type {Sequence} */ (this.waiting.shift()));
        }
        seq.onEnd(reason);
    }

    abortAll() {
        for (const seq of [...this.waiting, ...this.running]) {
            this.end(seq, "abort");
        }
    }
}

/**
 * Prometheus text exposition, as vLLM's prometheus_client renders it (floats as `1.0`).
 * @param {Engine} engine
 * @param {string} modelName
 */
function renderMetrics(engine, modelName) {
    const base = `model_name="${modelName.replace(/["\\]/g, "\\$&")}",engine="0"`;
    /** @param {number} v */
    const f = (v) => (Number.isInteger(v) ? `${v}.0` : String(v));
    /** @type {string[]} */
    const out = [];
    /** @param {string} name @param {string} type @param {string} help @param {Array<[string, number]>} samples */
    const metric = (name, type, help, samples) => {
        out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
        for (const [suffixAndLabels, value] of samples) {
            out.push(`${suffixAndLabels} ${f(value)}`);
        }
    };
    metric("vllm:num_requests_running", "gauge", "Number of requests in model execution batches.", [[`vllm:num_requests_running{${base}}`, engine.running.size]]);
    metric("vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.", [[`vllm:num_requests_waiting{${base}}`, engine.waiting.length]]);
    metric("vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.", [[`vllm:kv_cache_usage_perc{${base}}`, engine.kvCacheUsage()]]);
    metric("vllm:prompt_tokens_total", "counter", "Number of prefill tokens processed.", [[`vllm:prompt_tokens_total{${base}}`, engine.promptTokens]]);
    metric("vllm:generation_tokens_total", "counter", "Number of generation tokens processed.", [[`vllm:generation_tokens_total{${base}}`, engine.generationTokens]]);
    metric(
        "vllm:request_success_total",
        "counter",
        "Count of successfully processed requests.",
        Object.entries(engine.finished).map(([reason, n]) => [`vllm:request_success_total{${base},finished_reason="${reason}"}`, n]),
    );
    /** @type {Array<[string, number]>} */
    const ttft = TTFT_BUCKETS.map((le, k) => [`vllm:time_to_first_token_seconds_bucket{${base},le="${f(le)}"}`, engine.ttftCounts[k]]);
    ttft.push([`vllm:time_to_first_token_seconds_bucket{${base},le="+Inf"}`, engine.ttftCount]);
    ttft.push([`vllm:time_to_first_token_seconds_count{${base}}`, engine.ttftCount]);
    ttft.push([`vllm:time_to_first_token_seconds_sum{${base}}`, engine.ttftSum]);
    metric("vllm:time_to_first_token_seconds", "histogram", "Histogram of time to first token in seconds.", ttft);
    return `${out.join("\n")}\n`;
}

/** Largest request body the stand-in reads (vLLM/uvicorn set none; this only guards memory). */
const MAX_BODY_BYTES = 256 * 1024 * 1024;

/** How many recent requests `GET /standin/requests` remembers. */
const REQUEST_LOG_SIZE = 10000;

/**
 * Starts the stand-in: waits `loadSeconds` with the port closed, then listens.
 * @param {Options} options
 * @param {(line: string) => void} log
 */
async function main(options, log) {
    const servedNames = options.servedModelNames.length > 0 ? options.servedModelNames : [options.model];
    const modelName = /** @type {string} */ (servedNames[0]);
    const engine = new Engine(options);
    const createdAt = Math.floor(Date.now() / 1000);
    /** @type {Array<{id: string, path: string, at: number}>} */
    const requestLog = [];
    /** @type {Set<import("node:net").Socket>} */
    const sockets = new Set();
    let inFlight = 0;
    let draining = false;
    /** @type {(() => void) | undefined} */
    let onIdle;

    log(`INFO:     vLLM stand-in ${STANDIN_VERSION} (pid ${process.pid}), replica ${options.replicaId}`);
    log(`INFO:     non-default args: model='${options.model}', served_model_name=${JSON.stringify(servedNames)}, max_model_len=${options.maxModelLen}, max_num_seqs=${options.maxNumSeqs}, itl_ms=${options.itlMs}, batch_slowdown=${options.batchSlowdown}`);
    if (options.ignored.length > 0) {
        log(`INFO:     ignoring vLLM args the stand-in does not model: ${options.ignored.join(" ")}`);
    }

    /** @param {http.ServerResponse} res @param {number} status @param {unknown} body */
    const sendJson = (res, status, body) => {
        const text = JSON.stringify(body);
        res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
        res.end(text);
    };
    /** vLLM's OpenAI-style error body. @param {http.ServerResponse} res @param {number} status @param {string} type @param {string} message */
    const sendError = (res, status, type, message) => sendJson(res, status, { error: { message, type, param: null, code: status } });

    /** @param {http.IncomingMessage} req @param {http.ServerResponse} res */
    const handle = async (req, res) => {
        res.setHeader("x-replica-id", options.replicaId);
        if (draining) {
            res.setHeader("connection", "close");
        }
        const url = new URL(req.url ?? "/", "http://standin");
        const path = url.pathname;
        const method = req.method ?? "GET";

        if (path === "/health" || path === "/ping") {
            if (method !== "GET" && !(path === "/ping" && method === "POST")) {
                return sendJson(res, 405, { detail: "Method Not Allowed" });
            }
            res.writeHead(engine.dead ? 503 : 200, { "content-length": 0 });
            return res.end();
        }
        if (path === "/version" && method === "GET") {
            return sendJson(res, 200, { version: STANDIN_VERSION });
        }
        if (path === "/metrics" && method === "GET") {
            const text = renderMetrics(engine, modelName);
            res.writeHead(200, { "content-type": "text/plain; version=0.0.4; charset=utf-8", "content-length": Buffer.byteLength(text) });
            return res.end(text);
        }
        // Stand-in only: test hooks, outside /v1 so no API key is needed.
        if (path === "/standin/kill-engine" && method === "POST") {
            engine.dead = true;
            engine.abortAll();
            log("ERROR:    stand-in engine killed on request: /health now answers 503");
            return sendJson(res, 200, { dead: true });
        }
        if (path === "/standin/requests" && method === "GET") {
            return sendJson(res, 200, { replica: options.replicaId, requests: requestLog });
        }
        if (path === "/standin/connections" && method === "GET") {
            return sendJson(res, 200, { open: sockets.size, closed_by_client: closedConnections.client, closed_by_server: closedConnections.server });
        }

        if (path.startsWith("/v1")) {
            if (options.apiKeys.length > 0 && method !== "OPTIONS") {
                const auth = req.headers.authorization ?? "";
                if (!options.apiKeys.some((key) => auth === `Bearer ${key}`)) {
                    // vLLM's AuthenticationMiddleware answers exactly this body.
                    return sendJson(res, 401, { error: "Unauthorized" });
                }
            }
            if (path === "/v1/models" && method === "GET") {
                return sendJson(res, 200, {
                    object: "list",
                    data: servedNames.map((name) => ({
                        id: name,
                        object: "model",
                        created: createdAt,
                        owned_by: "vllm",
                        root: options.model,
                        parent: null,
                        max_model_len: options.maxModelLen,
                        permission: [
                            {
                                id: `modelperm-${crypto.randomUUID().replace(/-/g, "")}`,
                                object: "model_permission",
                                created: createdAt,
                                allow_create_engine: false,
                                allow_sampling: true,
                                allow_logprobs: true,
                                allow_search_indices: false,
                                allow_view: true,
                                allow_fine_tuning: false,
                                organization: "*",
                                group: null,
                                is_blocking: false,
                            },
                        ],
                    })),
                });
            }
            if (path === "/v1/completions" || path === "/v1/chat/completions") {
                if (method !== "POST") {
                    return sendJson(res, 405, { detail: "Method Not Allowed" });
                }
                return generate(req, res, path === "/v1/chat/completions");
            }
        }
        return sendJson(res, 404, { detail: "Not Found" });
    };

    /**
     * @param {http.IncomingMessage} req
     * @returns {Promise<Buffer | "too-large" | "gone">}
     */
    const readBody = (req) =>
        new Promise((resolve) => {
            /** @type {Buffer[]} */
            const chunks = [];
            let size = 0;
            req.on("data", (chunk) => {
                size += chunk.length;
                if (size <= MAX_BODY_BYTES) {
                    chunks.push(chunk);
                }
            });
            req.on("end", () => resolve(size <= MAX_BODY_BYTES ? Buffer.concat(chunks) : "too-large"));
            req.on("error", () => resolve("gone"));
            req.on("aborted", () => resolve("gone"));
        });

    /** @param {http.IncomingMessage} req @param {http.ServerResponse} res @param {boolean} chat */
    const generate = async (req, res, chat) => {
        const received = performance.now();
        const raw = await readBody(req);
        if (raw === "gone") {
            return;
        }
        if (raw === "too-large") {
            return sendError(res, 413, "BadRequestError", `request body larger than the stand-in's limit of ${MAX_BODY_BYTES} bytes`);
        }
        /** @type {any} */
        let body;
        try {
            body = JSON.parse(raw.toString("utf8"));
        } catch (err) {
            return sendError(res, 400, "BadRequestError", `JSON decode error: ${/** @type {Error} */ (err).message}`);
        }
        if (typeof body !== "object" || body === null || Array.isArray(body)) {
            return sendError(res, 400, "BadRequestError", "Input should be a valid dictionary");
        }
        if (engine.dead) {
            return sendError(res, 500, "EngineDeadError", "EngineCore encountered an issue. See stack trace (above) for the root cause.");
        }
        const requested = body.model === undefined || body.model === null ? modelName : body.model;
        if (!servedNames.includes(requested)) {
            return sendError(res, 404, "NotFoundError", `The model \`${requested}\` does not exist.`);
        }
        const promptTokens = chat ? countChatTokens(body.messages) : countPromptTokens(body.prompt);
        if (promptTokens < 0) {
            return sendError(res, 400, "BadRequestError", chat ? "messages: a non-empty list of messages is required" : "prompt: a string or a list of token ids is required (the stand-in serves one prompt per request)");
        }
        const maxTokensField = chat ? (body.max_completion_tokens ?? body.max_tokens) : body.max_tokens;
        const maxTokens = maxTokensField === undefined || maxTokensField === null ? 16 : maxTokensField;
        if (!Number.isInteger(maxTokens) || maxTokens < 1) {
            return sendError(res, 400, "BadRequestError", `max_tokens must be at least 1, got ${maxTokensField}.`);
        }
        if (promptTokens + maxTokens > options.maxModelLen) {
            return sendError(
                res,
                400,
                "BadRequestError",
                `This model's maximum context length is ${options.maxModelLen} tokens. However, you requested ${promptTokens + maxTokens} tokens (${promptTokens} in the messages, ${maxTokens} in the completion). Please reduce the length of the messages or completion.`,
            );
        }
        const stream = body.stream === true;
        const includeUsage = stream && body.stream_options?.include_usage === true;
        const stallHeader = Number(req.headers["x-standin-stall-ms"] ?? 0);
        const stallMs = Number.isFinite(stallHeader) && stallHeader > 0 ? stallHeader : 0;
        const itlHeader = req.headers["x-standin-itl-ms"] === undefined ? NaN : Number(req.headers["x-standin-itl-ms"]);
        const itlMs = Number.isFinite(itlHeader) && itlHeader >= 0 ? itlHeader : undefined;
        const id = `${chat ? "chatcmpl" : "cmpl"}-${crypto.randomUUID().replace(/-/g, "")}`;
        const created = Math.floor(Date.now() / 1000);
        const requestId = typeof req.headers["x-request-id"] === "string" ? req.headers["x-request-id"] : id;
        requestLog.push({ id: requestId, path: req.url ?? "", at: Date.now() });
        if (requestLog.length > REQUEST_LOG_SIZE) {
            requestLog.shift();
        }
        if (options.requestIdHeaders) {
            res.setHeader("x-request-id", requestId);
        }

        /** @param {number} index @param {boolean} last */
        const streamChunk = (index, last) => {
            const finish = last ? "length" : null;
            const text = tokenText(index);
            /** @type {string[]} */
            const events = [];
            if (chat) {
                if (index === 0) {
                    events.push(JSON.stringify({ id, object: "chat.completion.chunk", created, model: requested, choices: [{ index: 0, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null }] }));
                }
                events.push(JSON.stringify({ id, object: "chat.completion.chunk", created, model: requested, choices: [{ index: 0, delta: { content: text }, logprobs: null, finish_reason: finish, ...(last ? { stop_reason: null } : {}) }] }));
            } else {
                events.push(JSON.stringify({ id, object: "text_completion", created, model: requested, choices: [{ index: 0, text, logprobs: null, finish_reason: finish, stop_reason: null }] }));
            }
            if (last && includeUsage) {
                events.push(JSON.stringify({ id, object: chat ? "chat.completion.chunk" : "text_completion", created, model: requested, choices: [], usage: usage(index + 1) }));
            }
            return events.map((e) => `data: ${e}\n\n`).join("") + (last ? "data: [DONE]\n\n" : "");
        };
        /** @param {number} completion */
        const usage = (completion) => ({ prompt_tokens: promptTokens, total_tokens: promptTokens + completion, completion_tokens: completion, prompt_tokens_details: null });

        let text = "";
        /** @type {Sequence} */
        const seq = {
            id,
            promptTokens,
            maxTokens,
            generated: 0,
            arrival: received,
            stallMs,
            itlMs,
            state: "waiting",
            timer: undefined,
            onToken: (index, last) => {
                if (res.destroyed || res.writableEnded) {
                    return;
                }
                if (stream) {
                    if (!res.headersSent) {
                        res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8" });
                    }
                    res.write(streamChunk(index, last));
                    if (last) {
                        res.end();
                    }
                } else {
                    text += tokenText(index);
                    if (last) {
                        sendJson(
                            res,
                            200,
                            chat
                                ? {
                                      id,
                                      object: "chat.completion",
                                      created,
                                      model: requested,
                                      choices: [{ index: 0, message: { role: "assistant", content: text, refusal: null, annotations: null, audio: null, function_call: null, tool_calls: [], reasoning_content: null }, logprobs: null, finish_reason: "length", stop_reason: null }],
                                      usage: usage(maxTokens),
                                      prompt_logprobs: null,
                                  }
                                : {
                                      id,
                                      object: "text_completion",
                                      created,
                                      model: requested,
                                      choices: [{ index: 0, text, logprobs: null, finish_reason: "length", stop_reason: null, prompt_logprobs: null }],
                                      usage: usage(maxTokens),
                                  },
                        );
                    }
                }
            },
            onEnd: (reason) => {
                if (reason === "abort" && !res.destroyed) {
                    // The engine went away (kill-engine, or the drain deadline): cut the response.
                    res.destroy();
                }
            },
        };
        res.on("error", () => {});
        res.on("close", () => {
            if (seq.state !== "done") {
                // The client (or the proxy in front) closed the connection: abort at once, like vLLM.
                engine.end(seq, "abort");
            }
        });
        if (stream && stallMs === 0) {
            // Like vLLM (Starlette's StreamingResponse): status and headers go out at once, before the
            // request is scheduled; tokens follow as they are generated.
            res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8" });
            res.flushHeaders();
        }
        engine.submit(seq);
    };

    /** Requests that arrived after SIGTERM (on a kept-alive connection): a balancer that stopped routing here first sends none. */
    let receivedWhileDraining = 0;
    const server = http.createServer({ noDelay: true, requestTimeout: 0 }, (req, res) => {
        inFlight += 1;
        if (draining) {
            receivedWhileDraining += 1;
        }
        res.on("close", () => {
            inFlight -= 1;
            if (options.accessLog) {
                const remote = `${req.socket.remoteAddress ?? "?"}:${req.socket.remotePort ?? "?"}`;
                log(`INFO:     ${remote} - "${req.method} ${req.url} HTTP/${req.httpVersion}" ${res.statusCode} ${http.STATUS_CODES[res.statusCode] ?? ""}`);
            }
            if (draining) {
                setImmediate(() => server.closeIdleConnections?.());
                if (inFlight === 0 && onIdle) {
                    onIdle();
                }
            }
        });
        handle(req, res).catch((err) => {
            log(`ERROR:    ${err instanceof Error ? err.stack : String(err)}`);
            if (!res.headersSent) {
                sendError(res, 500, "InternalServerError", String(err));
            } else {
                res.destroy();
            }
        });
    });
    // uvicorn (vLLM's HTTP server) closes idle connections after VLLM_HTTP_TIMEOUT_KEEP_ALIVE seconds
    // (default 5). Node closes them 1 s after keepAliveTimeout (its built-in buffer), hence the - 1000.
    const keepAliveMs = 1000 * (Number(process.env.VLLM_HTTP_TIMEOUT_KEEP_ALIVE) > 0 ? Number(process.env.VLLM_HTTP_TIMEOUT_KEEP_ALIVE) : 5);
    server.keepAliveTimeout = keepAliveMs > 1000 ? keepAliveMs - 1000 : keepAliveMs;
    /** Closed connections by who closed them: the client (FIN first) or this server (e.g. keep-alive expiry). */
    const closedConnections = { client: 0, server: 0 };
    server.on("connection", (socket) => {
        sockets.add(socket);
        let peerEnded = false;
        socket.on("end", () => (peerEnded = true));
        socket.on("close", () => {
            sockets.delete(socket);
            closedConnections[peerEnded ? "client" : "server"] += 1;
        });
    });

    let listening = false;
    /** @param {string} signal */
    const shutdown = (signal) => {
        if (draining) {
            return;
        }
        draining = true;
        log(`INFO:     ${signal} received: shutting down (grace ${options.shutdownTimeoutSeconds}s for ${inFlight} in-flight request(s))`);
        if (!listening) {
            log("INFO:     Finished server process (still loading)");
            process.exit(0);
        }
        const exit = () => {
            log(`INFO:     Application shutdown complete. ${receivedWhileDraining} request(s) arrived after ${signal}.`);
            log(`INFO:     Finished server process [${process.pid}]`);
            process.exit(0);
        };
        server.close(); // stop accepting connections: the port closes now
        server.closeIdleConnections?.();
        onIdle = exit;
        if (inFlight === 0) {
            exit();
            return;
        }
        setTimeout(() => {
            log(`WARNING:  shutdown timeout reached: aborting ${engine.running.size + engine.waiting.length} request(s)`);
            engine.abortAll();
            for (const socket of sockets) {
                socket.destroy();
            }
            exit();
        }, options.shutdownTimeoutSeconds * 1000).unref();
    };
    process.on("SIGTERM", () => shutdown("SIGTERM"));
    process.on("SIGINT", () => shutdown("SIGINT"));

    if (options.loadSeconds > 0) {
        log(`INFO:     Loading model weights (stand-in: ${options.loadSeconds}s, port ${options.port} stays closed)`);
        await new Promise((resolve) => setTimeout(resolve, options.loadSeconds * 1000));
    }
    if (draining) {
        return;
    }
    await new Promise((resolve, reject) => {
        server.once("error", reject);
        server.listen(options.port, options.host, () => resolve(undefined));
    });
    listening = true;
    const address = server.address();
    const port = typeof address === "object" && address ? address.port : options.port;
    // vLLM's own lines; it never prints uvicorn's "Uvicorn running on" (it hands uvicorn a bound socket).
    log(`INFO:     Starting vLLM API server 0 on http://${options.host.includes(":") ? `[${options.host}]` : options.host}:${port}`);
    log(`INFO:     Started server process [${process.pid}]`);
    log("INFO:     Waiting for application startup.");
    log("INFO:     Application startup complete.");
}

const options = parseArgs(process.argv.slice(2), process.env);
main(options, (line) => process.stdout.write(`${line}\n`)).catch((err) => {
    process.stderr.write(`ERROR:    ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
});
