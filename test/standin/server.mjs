#!/usr/bin/env node
// @ts-check
/**
 * A dependency-free stand-in for `vllm serve` (vLLM 0.32.0): the same command line, endpoints, wire
 * formats, metric names and lifecycle (port closed while loading, in-flight requests aborted on SIGTERM,
 * exit after engine death), with a fake "model" that emits one word per token. Its engine models what
 * a balancer can observe of vLLM's: one scheduler per replica stepping through prefills and decodes with
 * a token budget, and a finite prefix cache of 16-token blocks with vLLM's LRU eviction. Runs on Node
 * 18 and 20. README.md beside this file lists every flag, endpoint and where it differs from vLLM.
 */
import http from "node:http";
import os from "node:os";
import crypto from "node:crypto";

/** vLLM's release the stand-in follows, with a local version part that says it is the stand-in (as vLLM's CPU build says `+cpu`). */
const STANDIN_VERSION = "0.32.0+standin";

/** vLLM's EngineDeadError message (vllm/v1/engine/exceptions.py). */
const ENGINE_DEAD_MESSAGE = "EngineCore encountered an issue. See stack trace (above) for the root cause.";

/** vLLM's API-server watchdog period: an errored engine is noticed within this long (vllm/entrypoints/launchers/launcher.py, 0.32.0). */
const WATCHDOG_MS = 5000;

/** vLLM flags that take no value; any other unknown flag takes the next argument as its value. */
const BOOLEAN_FLAGS = new Set([
    "--trust-remote-code",
    "--enforce-eager",
    "--disable-log-requests",
    "--enable-log-requests",
    "--disable-frontend-multiprocessing",
    "--enable-auto-tool-choice",
    "--disable-custom-all-reduce",
    "--async-scheduling",
    "--headless",
    "--disable-fastapi-docs",
    "--enable-force-include-usage",
    "--return-tokens-as-token-ids",
    "--skip-tokenizer-init",
    "--allow-credentials",
    "--use-v2-block-manager",
    "--multi-step-stream-outputs",
]);

/** `--block-size` values vLLM accepts (vllm/config/cache.py). */
const BLOCK_SIZES = [1, 8, 16, 32, 64, 128];

/**
 * @typedef {object} Options
 * @property {string} model
 * @property {string} host
 * @property {number} port
 * @property {string[]} servedModelNames
 * @property {string[]} apiKeys
 * @property {number} shutdownTimeoutSeconds 0: abort in-flight requests on SIGTERM (vLLM's default)
 * @property {number} maxModelLen
 * @property {number} maxNumSeqs
 * @property {number} maxNumBatchedTokens token budget of one scheduler step
 * @property {boolean} enablePrefixCaching
 * @property {number} blockSize tokens per KV-cache block
 * @property {number | undefined} numGpuBlocksOverride
 * @property {number} kvCacheTokens pool size in tokens when no block count is given
 * @property {boolean} promptTokensDetails usage.prompt_tokens_details.cached_tokens
 * @property {boolean} logStats false with --disable-log-stats: no `vllm:` series on /metrics, as vLLM creates no stat logger
 * @property {boolean} accessLog
 * @property {boolean} requestIdHeaders
 * @property {boolean} serverLoadTracking --enable-server-load-tracking: /load counts the requests in flight
 * @property {number} loadSeconds stand-in only
 * @property {number} itlMs stand-in only: decode step of one sequence
 * @property {number} batchSlowdown stand-in only
 * @property {number} prefillOverheadMs stand-in only: fixed cost of a step that prefills
 * @property {number} prefillMsPerToken stand-in only: cost of each uncached prompt token
 * @property {number} timeScale stand-in only: multiplies every simulated duration
 * @property {string} replicaId stand-in only
 * @property {boolean} enableLora --enable-lora
 * @property {number} maxLoras --max-loras: adapters in one batch (vLLM's default 1)
 * @property {LoraModule[]} loraModules --lora-modules, loaded at start
 * @property {string[]} ignored
 */

/**
 * A LoRA adapter the server serves: its name (what clients send as `model`), its path (never read: the
 * stand-in has no weights), and the base model it adapts.
 * @typedef {object} LoraModule
 * @property {string} name
 * @property {string} path
 * @property {string | undefined} base
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
        shutdownTimeoutSeconds: 0,
        maxModelLen: 8192,
        // vLLM v0.11's defaults for `vllm serve` on a GPU with at least 70 GiB that is not an A100 (H100,
        // MI300x): vllm/engine/arg_utils.py, _set_default_args.
        maxNumSeqs: 1024,
        maxNumBatchedTokens: 8192,
        enablePrefixCaching: true,
        blockSize: 16,
        numGpuBlocksOverride: undefined,
        kvCacheTokens: 262144,
        promptTokensDetails: false,
        logStats: true,
        accessLog: true,
        requestIdHeaders: false,
        serverLoadTracking: false,
        loadSeconds: 0,
        // An 8B model on an H100 (llm-d-inference-sim's 8b-h100 profile, see README.md).
        itlMs: 12,
        batchSlowdown: 0.02,
        prefillOverheadMs: 30,
        prefillMsPerToken: 0.25,
        timeScale: 1,
        replicaId: os.hostname(),
        enableLora: false,
        maxLoras: 1,
        loraModules: [],
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
    /** @param {string} flag @param {string} text @param {number} min */
    const integer = (flag, text, min) => {
        const value = number(flag, text, min);
        if (!Number.isInteger(value)) {
            usageError(`argument ${flag}: invalid int value: '${text}'`);
        }
        return value;
    };
    /** @param {string} flag @param {string | undefined} inline */
    const noValue = (flag, inline) => {
        if (inline !== undefined) {
            usageError(`argument ${flag}: ignored explicit argument '${inline}'`);
        }
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
                o.port = integer(flag, takeValue(flag, inline), 0);
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
                o.maxNumSeqs = integer(flag, takeValue(flag, inline), 1);
                break;
            case "--max-num-batched-tokens":
                o.maxNumBatchedTokens = integer(flag, takeValue(flag, inline), 1);
                break;
            case "--enable-prefix-caching":
                noValue(flag, inline);
                o.enablePrefixCaching = true;
                break;
            case "--no-enable-prefix-caching":
                noValue(flag, inline);
                o.enablePrefixCaching = false;
                break;
            case "--block-size": {
                const text = takeValue(flag, inline);
                const value = Number(text);
                if (!BLOCK_SIZES.includes(value)) {
                    usageError(`argument ${flag}: invalid choice: '${text}' (choose from ${BLOCK_SIZES.join(", ")})`);
                }
                o.blockSize = value;
                break;
            }
            case "--num-gpu-blocks-override":
                o.numGpuBlocksOverride = integer(flag, takeValue(flag, inline), 2);
                break;
            case "--enable-prompt-tokens-details":
                noValue(flag, inline);
                o.promptTokensDetails = true;
                break;
            case "--disable-log-stats":
                noValue(flag, inline);
                o.logStats = false;
                break;
            case "--disable-uvicorn-access-log":
                noValue(flag, inline);
                o.accessLog = false;
                break;
            case "--enable-request-id-headers":
                noValue(flag, inline);
                o.requestIdHeaders = true;
                break;
            case "--enable-server-load-tracking":
                noValue(flag, inline);
                o.serverLoadTracking = true;
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
            case "--prefill-overhead-ms":
                o.prefillOverheadMs = number(flag, takeValue(flag, inline), 0);
                break;
            case "--prefill-ms-per-token":
                o.prefillMsPerToken = number(flag, takeValue(flag, inline), 0);
                break;
            case "--time-scale":
                o.timeScale = number(flag, takeValue(flag, inline), 0);
                break;
            case "--replica-id":
                o.replicaId = takeValue(flag, inline);
                break;
            case "--kv-cache-tokens":
                o.kvCacheTokens = integer(flag, takeValue(flag, inline), 1);
                break;
            case "--enable-lora":
                noValue(flag, inline);
                o.enableLora = true;
                break;
            case "--max-loras":
                o.maxLoras = integer(flag, takeValue(flag, inline), 1);
                break;
            case "--lora-modules":
                // vLLM's LoRAParserAction: `name=path`, or JSON {"name", "path", "base_model_name"}.
                for (const item of takeMany(flag, inline)) {
                    o.loraModules.push(loraModule(flag, item));
                }
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

/**
 * One `--lora-modules` item, as vLLM's LoRAParserAction reads it: `name=path`, or a JSON object with
 * `name`, `path` and an optional `base_model_name`.
 * @param {string} flag @param {string} item @returns {LoraModule}
 */
function loraModule(flag, item) {
    if (item.trim().startsWith("{")) {
        /** @type {any} */
        let parsed;
        try {
            parsed = JSON.parse(item);
        } catch {
            usageError(`argument ${flag}: Invalid JSON format for --lora-modules: ${item}`);
        }
        if (typeof parsed?.name !== "string" || typeof parsed?.path !== "string") {
            usageError(`argument ${flag}: Invalid fields for --lora-modules: ${item}`);
        }
        return { name: parsed.name, path: parsed.path, base: typeof parsed.base_model_name === "string" ? parsed.base_model_name : undefined };
    }
    const at = item.indexOf("=");
    if (at <= 0) {
        usageError(`argument ${flag}: Invalid format for --lora-modules: ${item}. Expected 'name=path' or a JSON object`);
    }
    return { name: item.slice(0, at), path: item.slice(at + 1), base: undefined };
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

// ---------------------------------------------------------------------------------------------------
// Request validation as vLLM's FastAPI app answers it: Python's json decoder (its error messages and
// positions), pydantic's errors for the fields the stand-in reads, rendered the way vLLM renders a
// RequestValidationError ("N validation error(s):" then one repr'd dict per error).
// ---------------------------------------------------------------------------------------------------

/** Python's repr() of a str. @param {string} s */
function pyRepr(s) {
    const quote = s.includes("'") && !s.includes('"') ? '"' : "'";
    let out = "";
    for (const ch of s) {
        const c = /** @type {number} */ (ch.codePointAt(0));
        if (ch === "\\") {
            out += "\\\\";
        } else if (ch === quote) {
            out += `\\${quote}`;
        } else if (ch === "\n") {
            out += "\\n";
        } else if (ch === "\r") {
            out += "\\r";
        } else if (ch === "\t") {
            out += "\\t";
        } else if (c < 0x20 || c === 0x7f) {
            out += `\\x${c.toString(16).padStart(2, "0")}`;
        } else {
            out += ch;
        }
    }
    return `${quote}${out}${quote}`;
}

/** How vLLM shows a rejected input in a validation error: str() of a scalar, `<dict of N items>` / `<list of N items>` of a container. @param {unknown} v */
function pyInput(v) {
    if (Array.isArray(v)) {
        return `<list of ${v.length} items>`;
    }
    if (v === null || v === undefined) {
        return "None";
    }
    if (typeof v === "object") {
        return `<dict of ${Object.keys(v).length} items>`;
    }
    if (typeof v === "boolean") {
        return v ? "True" : "False";
    }
    return String(v);
}

/**
 * One pydantic error, as vLLM prints it.
 * @typedef {{type: string, loc: string, msg: string, input: unknown, ctx?: Record<string, string>}} FieldError
 */

/** vLLM's message for a RequestValidationError: its errors, pydantic's as repr'd dicts, FastAPI's own as text. @param {Array<FieldError | string>} errors */
function validationMessage(errors) {
    const lines = errors.map((e) => {
        if (typeof e === "string") {
            return `  ${e}`;
        }
        const ctx = e.ctx ? `, 'ctx': {${Object.entries(e.ctx).map(([k, v]) => `${pyRepr(k)}: ${pyRepr(v)}`).join(", ")}}` : "";
        return `  {'type': ${pyRepr(e.type)}, 'loc': ${pyRepr(e.loc)}, 'msg': ${pyRepr(e.msg)}, 'input': ${pyRepr(pyInput(e.input))}${ctx}}`;
    });
    return `${errors.length} validation error${errors.length === 1 ? "" : "s"}:\n${lines.join("\n")}`;
}

const JSON_WS = new Set([" ", "\t", "\n", "\r"]);

/** Nesting at which Python's json.loads gives up with a RecursionError (its recursion limit, 1000, less the frames below it). */
const PYTHON_JSON_MAX_DEPTH = 950;

/**
 * Where and why CPython's json.loads (its C scanner, Python 3.11) rejects `s`, or undefined when it
 * accepts it; `{recursion: true}` when it nests deeper than Python's recursion limit allows.
 * @param {string} s
 * @returns {{msg: string, pos: number} | {recursion: true} | undefined}
 */
function pythonJsonError(s) {
    let depth = 0;
    /** @param {string} msg @param {number} pos */
    const fail = (msg, pos) => {
        throw Object.assign(new Error(msg), { jsonPos: pos, jsonMsg: msg });
    };
    /** StopIteration(idx): no value starts here. @param {number} idx */
    const stop = (idx) => {
        throw Object.assign(new Error("stop"), { stopAt: idx });
    };
    /** @param {number} i */
    const ws = (i) => {
        while (i < s.length && JSON_WS.has(/** @type {string} */ (s[i]))) {
            i += 1;
        }
        return i;
    };
    /** @param {number} end after the opening quote @returns {number} after the closing quote */
    const string = (end) => {
        const begin = end - 1;
        for (;;) {
            if (end >= s.length) {
                fail("Unterminated string starting at", begin);
            }
            const c = /** @type {string} */ (s[end]);
            if (c === '"') {
                return end + 1;
            }
            if (c === "\\") {
                end += 1;
                if (end >= s.length) {
                    fail("Unterminated string starting at", begin);
                }
                const e = /** @type {string} */ (s[end]);
                if (e === "u") {
                    if (!/^[0-9a-fA-F]{4}$/.test(s.slice(end + 1, end + 5))) {
                        fail("Invalid \\uXXXX escape", end);
                    }
                    end += 5;
                } else if ('"\\/bfnrt'.includes(e)) {
                    end += 1;
                } else {
                    fail("Invalid \\escape", end - 1);
                }
                continue;
            }
            if (c.charCodeAt(0) <= 0x1f) {
                fail("Invalid control character at", end);
            }
            end += 1;
        }
    };
    /** @param {number} idx @returns {number} after the value */
    const value = (idx) => {
        if (idx >= s.length) {
            stop(idx);
        }
        const c = s[idx];
        if (c === '"') {
            return string(idx + 1);
        }
        if (c === "{" || c === "[") {
            depth += 1;
            if (depth > PYTHON_JSON_MAX_DEPTH) {
                throw Object.assign(new Error("recursion"), { recursion: true });
            }
        }
        if (c === "{") {
            let end = ws(idx + 1);
            if (s[end] === "}") {
                depth -= 1;
                return end + 1;
            }
            for (;;) {
                if (s[end] !== '"') {
                    fail("Expecting property name enclosed in double quotes", end);
                }
                end = ws(string(end + 1));
                if (s[end] !== ":") {
                    fail("Expecting ':' delimiter", end);
                }
                end = ws(value(ws(end + 1)));
                if (s[end] === "}") {
                    depth -= 1;
                    return end + 1;
                }
                if (s[end] !== ",") {
                    fail("Expecting ',' delimiter", end);
                }
                end = ws(end + 1);
            }
        }
        if (c === "[") {
            let end = ws(idx + 1);
            if (s[end] === "]") {
                depth -= 1;
                return end + 1;
            }
            for (;;) {
                end = ws(value(end));
                if (s[end] === "]") {
                    depth -= 1;
                    return end + 1;
                }
                if (s[end] !== ",") {
                    fail("Expecting ',' delimiter", end);
                }
                end = ws(end + 1);
            }
        }
        for (const literal of ["null", "true", "false", "NaN", "Infinity", "-Infinity"]) {
            if (s.startsWith(literal, idx)) {
                return idx + literal.length;
            }
        }
        const number = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?/.exec(s.slice(idx, idx + 400));
        if (number) {
            return idx + number[0].length;
        }
        return stop(idx);
    };
    try {
        let end;
        try {
            end = value(ws(0));
        } catch (err) {
            const e = /** @type {{stopAt?: number}} */ (err);
            if (e.stopAt !== undefined) {
                fail("Expecting value", e.stopAt);
            }
            throw err;
        }
        end = ws(end);
        if (end !== s.length) {
            fail("Extra data", end);
        }
        return undefined;
    } catch (err) {
        const e = /** @type {{jsonMsg?: string, jsonPos?: number, stopAt?: number, recursion?: boolean}} */ (err);
        if (e.recursion) {
            return { recursion: true };
        }
        if (e.stopAt !== undefined) {
            return { msg: "Expecting value", pos: e.stopAt };
        }
        if (e.jsonMsg !== undefined) {
            return { msg: e.jsonMsg, pos: /** @type {number} */ (e.jsonPos) };
        }
        throw err;
    }
}

/**
 * pydantic's lax int: an int, a float without a fractional part, or a string of one.
 * @param {unknown} v @param {string} loc @param {FieldError[]} errors
 * @returns {number | undefined}
 */
function laxInt(v, loc, errors) {
    if (v === undefined || v === null) {
        return undefined;
    }
    if (typeof v === "boolean") {
        return v ? 1 : 0;
    }
    if (typeof v === "number") {
        if (!Number.isInteger(v)) {
            errors.push({ type: "int_from_float", loc, msg: "Input should be a valid integer, got a number with a fractional part", input: v });
            return undefined;
        }
        return v;
    }
    if (typeof v === "string") {
        const t = v.trim();
        if (/^[-+]?\d+$/.test(t)) {
            return Number(t);
        }
        if (/^[-+]?\d+\.0*$/.test(t)) {
            return Math.trunc(Number(t));
        }
        errors.push({ type: "int_parsing", loc, msg: "Input should be a valid integer, unable to parse string as an integer", input: v });
        return undefined;
    }
    errors.push({ type: "int_type", loc, msg: "Input should be a valid integer", input: v });
    return undefined;
}

// ---------------------------------------------------------------------------------------------------
// Tokens. The stand-in's tokenizer cuts text into 4-character pieces (one token each, about the 4
// characters per token of real tokenizers), after rendering chat messages with a fixed ChatML template;
// a completions prompt given as token ids is taken as is. The fake model's output tokens are words.
// ---------------------------------------------------------------------------------------------------

const CHARS_PER_TOKEN = 4;

/** Words the fake model emits, one per token. */
const WORDS = ["The", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "and", "keeps", "running", "through", "fields", "of", "tokens."];

/** @param {number} index */
function tokenText(index) {
    return ` ${WORDS[index % WORDS.length]}`;
}

/**
 * A prompt as the engine sees it.
 * @typedef {{kind: "text", text: string, length: number} | {kind: "ids", ids: number[], length: number}} Prompt
 */

/** @param {string} text @returns {Prompt} */
function textPrompt(text) {
    return { kind: "text", text, length: Math.max(1, Math.ceil(text.length / CHARS_PER_TOKEN)) };
}

/**
 * A completions `prompt`: one string, or one list of token ids.
 * @param {unknown} prompt
 * @returns {Prompt | undefined}
 */
function completionPrompt(prompt) {
    if (typeof prompt === "string") {
        return textPrompt(prompt);
    }
    if (Array.isArray(prompt) && prompt.length > 0 && prompt.every((t) => Number.isInteger(t) && t >= 0)) {
        return { kind: "ids", ids: prompt, length: prompt.length };
    }
    return undefined;
}

/**
 * Chat messages rendered with a ChatML template (`<|im_start|>{role}\n{content}<|im_end|>\n` per message,
 * then the generation prompt `<|im_start|>assistant\n`), as Qwen's chat templates render them.
 * @param {unknown} messages
 * @returns {string | undefined}
 */
function renderChat(messages) {
    if (!Array.isArray(messages) || messages.length === 0) {
        return undefined;
    }
    let out = "";
    for (const m of messages) {
        if (typeof m !== "object" || m === null) {
            return undefined;
        }
        const { role, content } = /** @type {{role?: unknown, content?: unknown}} */ (m);
        let text = "";
        if (typeof content === "string") {
            text = content;
        } else if (Array.isArray(content)) {
            text = content
                .filter((part) => part && typeof part === "object" && typeof part.text === "string")
                .map((part) => /** @type {string} */ (part.text))
                .join("\n");
        } else if (content !== undefined && content !== null) {
            return undefined;
        }
        out += `<|im_start|>${typeof role === "string" ? role : "user"}\n${text}<|im_end|>\n`;
    }
    return `${out}<|im_start|>assistant\n`;
}

/** The pieces /tokenize has handed out, by id, for /detokenize. @type {Map<number, string>} */
const PIECES_BY_ID = new Map();

/**
 * /tokenize's ids for a text: one per 4-character piece, a hash of the piece (FNV-1a, from 1000 up), so
 * every replica gives the same text the same ids. They are not the ids a completions prompt of token
 * ids is cached under (those stay a namespace of their own).
 * @param {string} text
 */
function tokenIds(text) {
    /** @type {number[]} */
    const ids = [];
    for (let at = 0; at < text.length; at += CHARS_PER_TOKEN) {
        const piece = text.slice(at, at + CHARS_PER_TOKEN);
        let h = 0x811c9dc5;
        for (let k = 0; k < piece.length; k += 1) {
            h = Math.imul(h ^ piece.charCodeAt(k), 0x01000193) >>> 0;
        }
        const id = 1000 + (h % 1_000_000_000);
        PIECES_BY_ID.set(id, piece);
        ids.push(id);
    }
    return ids;
}

/** @param {Prompt} prompt @param {number} t */
function promptTokenKey(prompt, t) {
    // Token ids are a namespace of their own: they never match text pieces.
    return prompt.kind === "text" ? prompt.text.slice(t * CHARS_PER_TOKEN, (t + 1) * CHARS_PER_TOKEN) : `\u0001${prompt.ids[t]}`;
}

/**
 * A block's key chains its parent's: hash(parent hash, the block's tokens), so a block matches only if
 * every token before it matches too (vLLM's design doc, docs/design/prefix_caching.md).
 * @param {string} parent
 * @param {string[]} tokens
 */
function chainHash(parent, tokens) {
    return crypto.createHash("sha256").update(parent).update("\u0000").update(tokens.join("\u0000")).digest("base64");
}

// ---------------------------------------------------------------------------------------------------
// The KV cache: a pool of blocks with reference counts, a free queue that is vLLM's LRU (freed blocks go
// to the tail, a finished request's in reverse order; allocation takes the head and drops its hash), and
// a map from block hash to the blocks that hold it (vllm/v1/core/block_pool.py, v0.11).
// ---------------------------------------------------------------------------------------------------

/**
 * @typedef {object} Block
 * @property {number} id
 * @property {number} ref running requests holding it
 * @property {string | null} hash set once the block is full and cached
 * @property {Block | null} prev free-queue links
 * @property {Block | null} next
 */

class BlockPool {
    /** @param {number} numBlocks */
    constructor(numBlocks) {
        this.numBlocks = numBlocks;
        /** @type {Block} */
        this.head = { id: -1, ref: 0, hash: null, prev: null, next: null };
        /** @type {Block} */
        this.tail = { id: -2, ref: 0, hash: null, prev: this.head, next: null };
        this.head.next = this.tail;
        this.numFree = 0;
        /** @type {Map<string, Map<number, Block>>} */
        this.cached = new Map();
        this.evictions = 0;
        for (let id = 0; id < numBlocks; id += 1) {
            this.append({ id, ref: 0, hash: null, prev: null, next: null });
        }
        // vLLM sets block 0 aside as its "null block"; it is never allocated, so numBlocks - 1 are usable.
        this.popFree();
    }

    get usableBlocks() {
        return this.numBlocks - 1;
    }

    /** @param {Block} b */
    append(b) {
        const last = /** @type {Block} */ (this.tail.prev);
        b.prev = last;
        b.next = this.tail;
        last.next = b;
        this.tail.prev = b;
        this.numFree += 1;
    }

    /** @param {Block} b */
    unlink(b) {
        /** @type {Block} */ (b.prev).next = b.next;
        /** @type {Block} */ (b.next).prev = b.prev;
        b.prev = null;
        b.next = null;
        this.numFree -= 1;
    }

    /** The least recently freed block; a cached one loses its hash (eviction). */
    popFree() {
        const b = /** @type {Block} */ (this.head.next);
        if (b === this.tail) {
            throw new Error("no free KV-cache block");
        }
        this.unlink(b);
        if (b.hash !== null) {
            this.uncache(b);
            this.evictions += 1;
        }
        return b;
    }

    /** @param {Block} b */
    uncache(b) {
        const holders = this.cached.get(/** @type {string} */ (b.hash));
        holders?.delete(b.id);
        if (holders && holders.size === 0) {
            this.cached.delete(/** @type {string} */ (b.hash));
        }
        b.hash = null;
    }

    /** @param {Block} b @param {string} hash */
    cache(b, hash) {
        b.hash = hash;
        const holders = this.cached.get(hash) ?? new Map();
        holders.set(b.id, b);
        this.cached.set(hash, holders);
    }

    /** @param {string} hash @returns {Block | undefined} */
    lookup(hash) {
        return this.cached.get(hash)?.values().next().value;
    }

    /** A request takes a reference to these blocks (a cache hit pulls free ones out of the queue). @param {Block[]} blocks */
    touch(blocks) {
        for (const b of blocks) {
            if (b.ref === 0) {
                this.unlink(b);
            }
            b.ref += 1;
        }
    }

    /** Releases blocks in the given order: those no longer held join the free queue's tail. @param {Block[]} blocks */
    free(blocks) {
        for (const b of blocks) {
            b.ref -= 1;
        }
        for (const b of blocks) {
            if (b.ref === 0) {
                this.append(b);
            }
        }
    }

    /** vLLM's `get_usage`: the share of usable blocks not in the free queue. */
    usage() {
        return this.usableBlocks > 0 ? 1 - this.numFree / this.usableBlocks : 0;
    }
}

// ---------------------------------------------------------------------------------------------------
// Metrics, rendered as prometheus_client renders vLLM's registry (text format 0.0.4).
// ---------------------------------------------------------------------------------------------------

/** vLLM's buckets (vllm/v1/metrics/loggers.py; the same from v0.11 to 0.32.0). */
const TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0];
const ITL_BUCKETS = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0];
const REQUEST_LATENCY_BUCKETS = [0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0];
const ITERATION_TOKEN_BUCKETS = [1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384];
/** prometheus-fastapi-instrumentator's default buckets (metrics.default). */
const HTTP_HIGHR_BUCKETS = [0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5, 7.5, 10, 30, 60];
const HTTP_LOWR_BUCKETS = [0.1, 0.5, 1];

/** vLLM's build_1_2_5_buckets: 1, 2, 5, 10, 20, ... up to `max`. @param {number} max */
function buckets125(max) {
    /** @type {number[]} */
    const out = [];
    for (let exponent = 0; ; exponent += 1) {
        for (const m of [1, 2, 5]) {
            const value = m * 10 ** exponent;
            if (value > max) {
                return out;
            }
            out.push(value);
        }
    }
}

/** prometheus_client's floatToGoString. @param {number} v */
function goFloat(v) {
    if (v === Infinity) {
        return "+Inf";
    }
    if (v === -Infinity) {
        return "-Inf";
    }
    if (Number.isNaN(v)) {
        return "NaN";
    }
    const s = (Number.isInteger(v) && Math.abs(v) < 1e16 ? `${v}.0` : String(v)).replace(/e([+-])(\d)$/, "e$10$2");
    const dot = s.indexOf(".");
    if (v > 0 && dot > 6 && !s.includes("e")) {
        const mantissa = `${s[0]}.${s.slice(1, dot)}${s.slice(dot + 1)}`.replace(/[0.]+$/, "");
        return `${mantissa}e+0${dot - 1}`;
    }
    return s;
}

class Histogram {
    /** @param {number[]} buckets */
    constructor(buckets) {
        this.buckets = buckets;
        this.counts = buckets.map(() => 0);
        this.count = 0;
        this.sum = 0;
    }

    /** @param {number} v */
    observe(v) {
        this.count += 1;
        this.sum += v;
        this.buckets.forEach((le, k) => {
            if (v <= le) {
                this.counts[k] += 1;
            }
        });
    }
}

/**
 * Prometheus text exposition.
 */
class Exposition {
    constructor() {
        /** @type {string[]} */
        this.lines = [];
    }

    /** Labels sorted by name, as prometheus_client writes them. @param {Record<string, string>} labels */
    static labels(labels) {
        const keys = Object.keys(labels).sort();
        return keys.length === 0 ? "" : `{${keys.map((k) => `${k}="${String(labels[k]).replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"')}"`).join(",")}}`;
    }

    /** @param {string} name @param {"gauge" | "counter" | "histogram" | "summary"} type @param {string} help */
    family(name, type, help) {
        this.lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    }

    /** @param {string} name @param {Record<string, string>} labels @param {number} value */
    sample(name, labels, value) {
        this.lines.push(`${name}${Exposition.labels(labels)} ${goFloat(value)}`);
    }

    /**
     * prometheus_client's `_created` gauge of a counter, histogram or summary: one sample per series, the
     * time it was created. @param {string} name the family's name without `_total` @param {string} help
     * @param {Array<[Record<string, string>, number]>} series
     */
    created(name, help, series) {
        this.family(`${name}_created`, "gauge", help);
        for (const [labels, at] of series) {
            this.sample(`${name}_created`, labels, at);
        }
    }

    /** A gauge's family with its samples. @param {string} name @param {string} help @param {Array<[Record<string, string>, number]>} series */
    gauge(name, help, series) {
        this.family(name, "gauge", help);
        for (const [labels, v] of series) {
            this.sample(name, labels, v);
        }
    }

    /**
     * A counter (`NAME_total`) and its `NAME_created`. @param {string} name without `_total` @param {string} help
     * @param {Array<[Record<string, string>, number]>} series @param {number | ((labels: Record<string, string>) => number)} created
     */
    counter(name, help, series, created) {
        this.family(`${name}_total`, "counter", help);
        for (const [labels, v] of series) {
            this.sample(`${name}_total`, labels, v);
        }
        this.created(name, help, series.map(([labels]) => [labels, typeof created === "number" ? created : created(labels)]));
    }

    /** @param {string} name @param {string} help @param {Array<[Record<string, string>, Histogram, number]>} series with each one's created time */
    histogram(name, help, series) {
        this.family(name, "histogram", help);
        for (const [labels, h] of series) {
            h.buckets.forEach((le, k) => this.sample(`${name}_bucket`, { ...labels, le: goFloat(le) }, h.counts[k] ?? 0));
            this.sample(`${name}_bucket`, { ...labels, le: "+Inf" }, h.count);
            this.sample(`${name}_count`, labels, h.count);
            this.sample(`${name}_sum`, labels, h.sum);
        }
        this.created(name, help, series.map(([labels, , at]) => [labels, at]));
    }

    /** @param {string} name @param {string} help @param {Array<[Record<string, string>, {count: number, sum: number, created: number}]>} series */
    summary(name, help, series) {
        this.family(name, "summary", help);
        for (const [labels, s] of series) {
            this.sample(`${name}_count`, labels, s.count);
            this.sample(`${name}_sum`, labels, s.sum);
        }
        this.created(name, help, series.map(([labels, x]) => [labels, x.created]));
    }

    text() {
        return `${this.lines.join("\n")}\n`;
    }
}

/** The engine's own counters and histograms (vLLM's PrometheusStatLogger, 0.32.0). */
class EngineMetrics {
    /** @param {number} maxModelLen */
    constructor(maxModelLen) {
        this.promptTokens = 0;
        this.generationTokens = 0;
        this.prefixCacheQueries = 0;
        this.prefixCacheHits = 0;
        this.preemptions = 0;
        /** Prompt tokens found in the prefix cache, counted with prompt_tokens. */
        this.promptTokensCached = 0;
        /** Every FinishReason of vLLM 0.32.0 exists from the start, at 0. @type {Record<string, number>} */
        this.finished = { stop: 0, length: 0, abort: 0, error: 0, repetition: 0 };
        const lengths = buckets125(maxModelLen);
        this.timePerOutputToken = new Histogram(ITL_BUCKETS);
        this.requestPreemptions = new Histogram([1, 2, 3, 4, 5, 10, 20]);
        this.prefillKvComputed = new Histogram(lengths);
        this.requestPromptTokens = new Histogram(lengths);
        this.requestGenerationTokens = new Histogram(lengths);
        this.iterationTokens = new Histogram(ITERATION_TOKEN_BUCKETS);
        this.maxGenerationTokens = new Histogram(lengths);
        this.paramsN = new Histogram([1, 2, 5, 10, 20]);
        this.paramsMaxTokens = new Histogram(lengths);
        this.ttft = new Histogram(TTFT_BUCKETS);
        this.itl = new Histogram(ITL_BUCKETS);
        this.e2e = new Histogram(REQUEST_LATENCY_BUCKETS);
        this.queueTime = new Histogram(REQUEST_LATENCY_BUCKETS);
        this.inferenceTime = new Histogram(REQUEST_LATENCY_BUCKETS);
        this.prefillTime = new Histogram(REQUEST_LATENCY_BUCKETS);
        this.decodeTime = new Histogram(REQUEST_LATENCY_BUCKETS);
    }
}

/** What prometheus-fastapi-instrumentator records for each HTTP request, as vLLM sets it up (api_server.py, mount_metrics). */
class HttpMetrics {
    constructor() {
        /** Each series' `_created`: when it was first recorded (seconds). */
        /** @type {Map<string, {labels: Record<string, string>, n: number, created: number}>} */
        this.requests = new Map();
        /** @type {Map<string, {labels: Record<string, string>, h: Histogram, created: number}>} */
        this.duration = new Map();
        this.durationHighr = new Histogram(HTTP_HIGHR_BUCKETS);
        this.durationHighrCreated = Date.now() / 1000;
        /** @type {Map<string, {count: number, sum: number, created: number}>} */
        this.requestSize = new Map();
        /** @type {Map<string, {count: number, sum: number, created: number}>} */
        this.responseSize = new Map();
    }

    /**
     * @param {string} handler route template, or "none"
     * @param {string} method
     * @param {number} status
     * @param {number} seconds
     * @param {number} requestBytes Content-Length of the request
     * @param {number} responseBytes Content-Length of the response (0 when streamed)
     */
    record(handler, method, status, seconds, requestBytes, responseBytes) {
        const statusGroup = `${Math.floor(status / 100)}xx`;
        const key = `${method} ${statusGroup} ${handler}`;
        const now = Date.now() / 1000;
        const entry = this.requests.get(key) ?? { labels: { handler, method, status: statusGroup }, n: 0, created: now };
        entry.n += 1;
        this.requests.set(key, entry);
        const dkey = `${method} ${handler}`;
        const d = this.duration.get(dkey) ?? { labels: { handler, method }, h: new Histogram(HTTP_LOWR_BUCKETS), created: now };
        d.h.observe(seconds);
        this.duration.set(dkey, d);
        this.durationHighr.observe(seconds);
        for (const [map, bytes] of /** @type {Array<[Map<string, {count: number, sum: number, created: number}>, number]>} */ ([
            [this.requestSize, requestBytes],
            [this.responseSize, responseBytes],
        ])) {
            const s = map.get(handler) ?? { count: 0, sum: 0, created: now };
            s.count += 1;
            s.sum += bytes;
            map.set(handler, s);
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// The engine: one scheduler per replica. Each step schedules the running requests first (one decode
// token each, or the next chunk of a prefill), then admits waiting requests in arrival order while the
// step's token budget, the seat limit and the KV cache allow, looking their prompts up in the prefix
// cache (vllm/v1/core/sched/scheduler.py, v0.11). A step takes
//   (prefill tokens > 0 ? overhead + prefill tokens x per-token cost : 0)
//   + (decodes > 0 ? itl x (1 + batch_slowdown x (decodes - 1)) : 0),
// times the time scale, so prefills queue behind each other and hold up every decode in their step.
// ---------------------------------------------------------------------------------------------------

/**
 * @typedef {"length" | "abort" | "error" | "shutdown"} EndReason
 * length: finished; abort: the client went away; error: the engine died; shutdown: SIGTERM.
 */

/**
 * @typedef {object} Sequence
 * @property {string} id
 * @property {Prompt} prompt
 * @property {number} maxTokens
 * @property {number} generated output tokens so far
 * @property {number} numComputed tokens whose KV is computed
 * @property {Block[]} blocks
 * @property {string[]} blockHashes hashes of the full blocks of prompt + output so far
 * @property {number} numCachedBlocks leading blocks registered in the cache
 * @property {number} cachedTokens prefix-cache hit at admission
 * @property {number} numPreemptions
 * @property {"waiting" | "running" | "done"} state
 * @property {number} stallMs stand-in header x-standin-stall-ms: held before its prefill
 * @property {number | undefined} stallUntil
 * @property {number | undefined} soloItlMs stand-in header x-standin-itl-ms: decodes on its own timer
 * @property {NodeJS.Timeout | undefined} timer stall or solo-decode timer
 * @property {number} arrival ms (performance.now)
 * @property {number | undefined} scheduledAt
 * @property {number | undefined} firstTokenAt
 * @property {number | undefined} lastTokenAt
 * @property {(index: number, last: boolean) => void} onToken
 * @property {(reason: EndReason) => void} onEnd called once
 * @property {{ name: string, id: number } | undefined} lora the adapter it runs with, if any
 * @property {boolean} deferred skipped by the scheduler while waiting (the max_loras limit)
 * @property {boolean} [loraCounted] counted in its adapter's requests (scheduled at least once)
 */

/** @template T @param {T[]} list @param {T} item */
function remove(list, item) {
    const at = list.indexOf(item);
    if (at >= 0) {
        list.splice(at, 1);
    }
}

/** @param {Sequence} s */
function numTokens(s) {
    return s.prompt.length + s.generated;
}

class Engine {
    /** @param {Options} options @param {number} numGpuBlocks */
    constructor(options, numGpuBlocks) {
        this.options = options;
        this.blockSize = options.blockSize;
        this.pool = new BlockPool(numGpuBlocks);
        /** Admission order; preemption takes the last. @type {Sequence[]} */
        this.running = [];
        /** @type {Sequence[]} */
        this.waiting = [];
        this.dead = false;
        this.metrics = new EngineMetrics(options.maxModelLen);
        this.stepping = false;
        this.kickPending = false;
        /** @type {NodeJS.Timeout | undefined} */
        this.stepTimer = undefined;
        /** @type {(() => void) | undefined} called whenever the engine has nothing left to do */
        this.onIdle = undefined;
        /**
         * Requests per adapter from their first scheduling to their end, in the order vLLM's LoRARequestStates
         * keeps them (an adapter leaves when its last ends): one still waiting for its first step is not
         * there, as in vLLM 0.32.0 (the conformance suite reads it). @type {Map<string, number>}
         */
        this.loraInFlight = new Map();
        /** vLLM's vllm:lora_requests_info series: each label set it has set, and when (a gauge set to the time). @type {Map<string, number>} */
        this.loraInfo = new Map();
    }

    /** @param {number} ms */
    scaled(ms) {
        return ms * this.options.timeScale;
    }

    get size() {
        return this.running.length + this.waiting.length;
    }

    /** @param {Sequence} seq */
    submit(seq) {
        seq.state = "waiting";
        this.waiting.push(seq);
        this.kick();
    }

    /** A request with an adapter counts in the adapter's requests from its first scheduling on. @param {Sequence} seq */
    countLora(seq) {
        if (seq.lora && !seq.loraCounted) {
            seq.loraCounted = true;
            this.loraInFlight.set(seq.lora.name, (this.loraInFlight.get(seq.lora.name) ?? 0) + 1);
        }
    }

    /**
     * What vLLM's PrometheusStatLogger sets at each step with LoRA on: vllm:lora_requests_info with the
     * adapters that have requests in flight in both of its adapter labels (it joins the keys of two dicts
     * that hold the same adapters), set to the time.
     */
    recordLora() {
        if (this.options.enableLora) {
            this.loraInfo.set([...this.loraInFlight.keys()].join(","), Date.now() / 1000);
        }
    }

    /** Runs a step soon, unless one is under way (requests arriving together share the step). */
    kick() {
        if (this.dead || this.stepping || this.kickPending) {
            return;
        }
        this.kickPending = true;
        setImmediate(() => {
            this.kickPending = false;
            this.step();
        });
    }

    step() {
        if (this.dead || this.stepping) {
            return;
        }
        const plan = this.schedule();
        if (plan.length === 0) {
            if (this.size === 0) {
                this.onIdle?.();
            }
            return;
        }
        let prefillTokens = 0;
        let decodes = 0;
        for (const [seq, n] of plan) {
            if (seq.generated > 0 && n === 1 && numTokens(seq) - seq.numComputed === 1) {
                decodes += 1;
            } else {
                prefillTokens += n;
            }
        }
        const o = this.options;
        const ms =
            (prefillTokens > 0 ? o.prefillOverheadMs + prefillTokens * o.prefillMsPerToken : 0) + (decodes > 0 ? o.itlMs * (1 + o.batchSlowdown * (decodes - 1)) : 0);
        this.stepping = true;
        const done = () => {
            this.stepTimer = undefined;
            this.stepping = false;
            this.finishStep(plan);
            this.step();
        };
        const duration = this.scaled(ms);
        if (duration <= 0) {
            setImmediate(done);
        } else {
            this.stepTimer = setTimeout(done, duration);
        }
    }

    /** @returns {Array<[Sequence, number]>} what this step computes: requests and their new tokens */
    schedule() {
        const now = performance.now();
        /** @type {Array<[Sequence, number]>} */
        const plan = [];
        let budget = this.options.maxNumBatchedTokens;
        let preempted = false;
        for (let i = 0; i < this.running.length && budget > 0; ) {
            const seq = /** @type {Sequence} */ (this.running[i]);
            if ((seq.stallUntil !== undefined && seq.stallUntil > now) || (seq.soloItlMs !== undefined && seq.generated > 0)) {
                i += 1;
                continue;
            }
            if (seq.stallUntil !== undefined) {
                // Its stall is over: it is looked up and allocated like a request admitted now.
                const admitted = this.admit(seq, budget);
                if (admitted === 0) {
                    i += 1;
                    continue;
                }
                seq.stallUntil = undefined;
                plan.push([seq, admitted]);
                budget -= admitted;
                i += 1;
                continue;
            }
            const n = Math.min(numTokens(seq) - seq.numComputed, budget);
            let scheduled = true;
            while (!this.allocate(seq, n, [])) {
                // vLLM's FCFS preemption: the last admitted request gives its blocks back and waits again.
                const victim = /** @type {Sequence} */ (this.running[this.running.length - 1]);
                this.preempt(victim);
                preempted = true;
                if (victim === seq) {
                    scheduled = false;
                    break;
                }
            }
            if (!scheduled) {
                break;
            }
            plan.push([seq, n]);
            budget -= n;
            i += 1;
        }
        // vLLM's max_loras: a request whose adapter would make one adapter too many in the batch is skipped
        // (deferred) and stays at the head of the queue, and those behind it may go first.
        const scheduledLoras = new Set(this.running.flatMap((r) => (r.lora ? [r.lora.id] : [])));
        /** @type {Sequence[]} */
        const skipped = [];
        while (!preempted && this.waiting.length > 0 && budget > 0 && this.running.length < this.options.maxNumSeqs) {
            const seq = /** @type {Sequence} */ (this.waiting[0]);
            if (seq.lora && scheduledLoras.size >= this.options.maxLoras && !scheduledLoras.has(seq.lora.id)) {
                this.waiting.shift();
                seq.deferred = true;
                skipped.push(seq);
                continue;
            }
            if (seq.stallMs > 0 && seq.numPreemptions === 0 && seq.scheduledAt === undefined) {
                // Stand-in only: it takes its seat now and starts its prefill after the stall.
                this.waiting.shift();
                this.running.push(seq);
                seq.state = "running";
                this.countLora(seq);
                seq.scheduledAt = now;
                seq.stallUntil = now + seq.stallMs;
                // The timer ends the stall itself: Node's timers can fire a millisecond or so before
                // performance.now() reaches stallUntil, and a stall still "running" then had no timer left.
                seq.timer = setTimeout(() => {
                    seq.timer = undefined;
                    seq.stallUntil = Math.min(/** @type {number} */ (seq.stallUntil), performance.now());
                    this.kick();
                }, seq.stallMs);
                continue;
            }
            const admitted = this.admit(seq, budget);
            if (admitted === 0) {
                break;
            }
            this.waiting.shift();
            this.running.push(seq);
            seq.state = "running";
            seq.deferred = false;
            this.countLora(seq);
            if (seq.lora) {
                scheduledLoras.add(seq.lora.id);
            }
            plan.push([seq, admitted]);
            budget -= admitted;
        }
        this.waiting.unshift(...skipped);
        return plan;
    }

    /**
     * Looks a request's prompt up in the prefix cache and allocates its first chunk. Returns the tokens
     * scheduled, or 0 when the KV cache cannot hold them (it stays where it is).
     * @param {Sequence} seq
     * @param {number} budget
     */
    admit(seq, budget) {
        /** @type {Block[]} */
        let hit = [];
        if (this.options.enablePrefixCaching) {
            this.updateBlockHashes(seq);
            // The last token is always recomputed (its logits are needed), and hits are whole blocks.
            const maxBlocks = Math.floor((numTokens(seq) - 1) / this.blockSize);
            for (let i = 0; i < maxBlocks; i += 1) {
                const b = this.pool.lookup(/** @type {string} */ (seq.blockHashes[i]));
                if (!b) {
                    break;
                }
                hit.push(b);
            }
        }
        const cached = hit.length * this.blockSize;
        const n = Math.min(numTokens(seq) - cached, budget);
        if (!this.allocate(seq, n, hit)) {
            return 0;
        }
        seq.numComputed = cached;
        if (seq.numPreemptions === 0) {
            // Counted once per request, when it is scheduled; a preempted request's second lookup is not.
            seq.cachedTokens = cached;
            seq.scheduledAt = seq.scheduledAt ?? performance.now();
            if (this.options.enablePrefixCaching) {
                this.metrics.prefixCacheQueries += numTokens(seq);
                this.metrics.prefixCacheHits += cached;
            }
        }
        return n;
    }

    /**
     * vLLM's allocate_slots: takes the hit blocks, then new blocks from the free queue's head for `n` more
     * tokens, and registers the blocks that become full in the cache. False when there are not enough.
     * @param {Sequence} seq
     * @param {number} n
     * @param {Block[]} hit
     */
    allocate(seq, n, hit) {
        const computed = seq.numComputed + hit.length * this.blockSize;
        const required = Math.ceil((computed + n) / this.blockSize);
        const fresh = Math.max(0, required - seq.blocks.length - hit.length);
        const hitFree = hit.filter((b) => b.ref === 0).length;
        if (fresh > this.pool.numFree - hitFree) {
            return false;
        }
        this.pool.touch(hit);
        seq.blocks.push(...hit);
        if (hit.length > 0) {
            seq.numCachedBlocks = seq.blocks.length; // hits come only at admission, into an empty list
        }
        for (let k = 0; k < fresh; k += 1) {
            const b = this.pool.popFree();
            b.ref = 1;
            seq.blocks.push(b);
        }
        if (this.options.enablePrefixCaching) {
            const full = Math.floor(Math.min(computed + n, numTokens(seq)) / this.blockSize);
            this.updateBlockHashes(seq);
            for (let i = seq.numCachedBlocks; i < full; i += 1) {
                const b = /** @type {Block} */ (seq.blocks[i]);
                if (b.hash === null) {
                    this.pool.cache(b, /** @type {string} */ (seq.blockHashes[i]));
                }
            }
            seq.numCachedBlocks = Math.max(seq.numCachedBlocks, full);
        }
        return true;
    }

    /** Hashes of every full block of the request's tokens so far. @param {Sequence} seq */
    updateBlockHashes(seq) {
        const bs = this.blockSize;
        while ((seq.blockHashes.length + 1) * bs <= numTokens(seq)) {
            const i = seq.blockHashes.length;
            /** @type {string[]} */
            const tokens = [];
            for (let t = i * bs; t < (i + 1) * bs; t += 1) {
                tokens.push(t < seq.prompt.length ? promptTokenKey(seq.prompt, t) : tokenText(t - seq.prompt.length));
            }
            seq.blockHashes.push(chainHash(i === 0 ? "" : /** @type {string} */ (seq.blockHashes[i - 1]), tokens));
        }
    }

    /** @param {Sequence} seq */
    releaseBlocks(seq) {
        // A finished request's blocks join the free queue last block first: its tail is evicted first.
        this.pool.free([...seq.blocks].reverse());
        seq.blocks = [];
        seq.numCachedBlocks = 0;
    }

    /** @param {Sequence} seq */
    preempt(seq) {
        if (seq.timer) {
            clearTimeout(seq.timer);
            seq.timer = undefined;
        }
        remove(this.running, seq);
        this.releaseBlocks(seq);
        seq.numComputed = 0;
        seq.stallUntil = undefined;
        seq.numPreemptions += 1;
        seq.state = "waiting";
        this.waiting.unshift(seq);
        this.metrics.preemptions += 1;
    }

    /** @param {Array<[Sequence, number]>} plan */
    finishStep(plan) {
        this.recordLora();
        let iterationTokens = 0;
        for (const [seq, n] of plan) {
            if (seq.state !== "running") {
                continue; // aborted during the step
            }
            seq.numComputed += n;
            if (seq.numComputed < numTokens(seq)) {
                continue; // a chunk of a longer prefill
            }
            iterationTokens += 1 + (seq.generated === 0 ? seq.prompt.length : 0);
            this.emit(seq);
        }
        if (iterationTokens > 0) {
            this.metrics.iterationTokens.observe(iterationTokens);
        }
    }

    /** The sampled token goes out. @param {Sequence} seq */
    emit(seq) {
        const now = performance.now();
        const m = this.metrics;
        const index = seq.generated;
        seq.generated += 1;
        m.generationTokens += 1;
        if (index === 0) {
            seq.firstTokenAt = now;
            m.promptTokens += seq.prompt.length;
            m.promptTokensCached += seq.cachedTokens;
            m.ttft.observe((now - seq.arrival) / 1000);
        } else {
            m.itl.observe((now - /** @type {number} */ (seq.lastTokenAt)) / 1000);
        }
        seq.lastTokenAt = now;
        const last = seq.generated >= seq.maxTokens;
        seq.onToken(index, last);
        if (last) {
            this.end(seq, "length");
        } else if (seq.soloItlMs !== undefined && seq.state === "running") {
            this.soloDecode(seq);
        }
    }

    /** Stand-in only: a request with its own token gap decodes on its own timer, outside the steps. @param {Sequence} seq */
    soloDecode(seq) {
        seq.timer = setTimeout(() => {
            seq.timer = undefined;
            if (seq.state !== "running" || this.dead) {
                return;
            }
            if (!this.allocate(seq, 1, [])) {
                this.soloDecode(seq); // no block free yet: try again after another gap
                return;
            }
            seq.numComputed += 1;
            this.emit(seq);
        }, /** @type {number} */ (seq.soloItlMs));
    }

    /**
     * Ends a request: finished, or aborted for any reason. Only finished ones are counted in
     * request_success and the request histograms: vLLM (v0.11 to 0.32.0) records no stats for a client's abort.
     * @param {Sequence} seq
     * @param {EndReason} reason
     */
    end(seq, reason) {
        if (seq.state === "done") {
            return;
        }
        if (seq.timer) {
            clearTimeout(seq.timer);
            seq.timer = undefined;
        }
        remove(seq.state === "waiting" ? this.waiting : this.running, seq);
        this.releaseBlocks(seq);
        seq.state = "done";
        if (seq.lora && seq.loraCounted) {
            const left = (this.loraInFlight.get(seq.lora.name) ?? 1) - 1;
            if (left > 0) {
                this.loraInFlight.set(seq.lora.name, left);
            } else {
                this.loraInFlight.delete(seq.lora.name);
            }
        }
        if (reason === "length") {
            const m = this.metrics;
            const now = performance.now();
            const scheduledAt = seq.scheduledAt ?? seq.arrival;
            const firstTokenAt = seq.firstTokenAt ?? now;
            m.finished.length = (m.finished.length ?? 0) + 1;
            m.e2e.observe((now - seq.arrival) / 1000);
            m.queueTime.observe((scheduledAt - seq.arrival) / 1000);
            m.prefillTime.observe((firstTokenAt - scheduledAt) / 1000);
            m.decodeTime.observe((now - firstTokenAt) / 1000);
            m.inferenceTime.observe((now - scheduledAt) / 1000);
            m.requestPromptTokens.observe(seq.prompt.length);
            m.requestGenerationTokens.observe(seq.generated);
            m.maxGenerationTokens.observe(seq.maxTokens);
            m.paramsN.observe(1);
            m.paramsMaxTokens.observe(seq.maxTokens);
            m.timePerOutputToken.observe(seq.generated > 1 ? (now - firstTokenAt) / 1000 / (seq.generated - 1) : 0);
            m.requestPreemptions.observe(seq.numPreemptions);
            m.prefillKvComputed.observe(seq.prompt.length - seq.cachedTokens);
        }
        seq.onEnd(reason);
        this.kick();
        if (this.size === 0 && !this.stepping) {
            this.onIdle?.();
        }
    }

    /** Ends every request for `reason`. @param {EndReason} reason */
    endAll(reason) {
        for (const seq of [...this.waiting, ...this.running]) {
            this.end(seq, reason);
        }
    }

    /** The engine core dies: every request fails, nothing runs any more. */
    kill() {
        this.endAll("error");
        this.dead = true;
        if (this.stepTimer) {
            clearTimeout(this.stepTimer);
            this.stepTimer = undefined;
        }
        this.stepping = false;
    }
}

/**
 * Prometheus text of the engine and HTTP metrics, with vLLM 0.32.0's families in its order, names, types,
 * help texts, labels and buckets, and prometheus_client's `_created` gauges; labels sorted by name.
 * @param {Engine} engine
 * @param {HttpMetrics} httpMetrics
 * @param {string} modelName
 * @param {Options} options
 * @param {number} startedAt seconds, the engine series' `_created`
 */
function renderMetrics(engine, httpMetrics, modelName, options, startedAt) {
    const m = engine.metrics;
    const base = { model_name: modelName, engine: "0" };
    /** @param {number} v @returns {Array<[Record<string, string>, number]>} */
    const one = (v) => [[base, v]];
    /** @param {string} label @param {Record<string, number>} values @returns {Array<[Record<string, string>, number]>} */
    const by = (label, values) => Object.entries(values).map(([k, v]) => [{ ...base, [label]: k }, v]);
    /** @param {Histogram} h @returns {Array<[Record<string, string>, Histogram, number]>} */
    const hist = (h) => [[base, h, startedAt]];
    const x = new Exposition();
    // vLLM creates its stat loggers, Prometheus's included, only when it logs stats (AsyncLLM, log_stats).
    if (options.logStats) {
        const mfu = "(for Model Flops Utilization calculations).";
        x.counter("vllm:estimated_flops_per_gpu", `Estimated number of floating point operations per GPU ${mfu}`, one(0), startedAt);
        x.counter("vllm:estimated_read_bytes_per_gpu", `Estimated number of bytes read from memory per GPU ${mfu}`, one(0), startedAt);
        x.counter("vllm:estimated_write_bytes_per_gpu", `Estimated number of bytes written to memory per GPU ${mfu}`, one(0), startedAt);
        x.gauge("vllm:num_requests_running", "Number of requests in model execution batches.", one(engine.running.length));
        x.gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", one(engine.waiting.length));
        x.gauge(
            "vllm:num_requests_waiting_by_reason",
            "Number of waiting requests by reason. Reason labels: 'capacity' = waiting for scheduling capacity; 'deferred' = deferred by transient constraints (LoRA budget, KV transfer, blocked status). Sum of all reasons equals vllm:num_requests_waiting.",
            by("reason", { capacity: engine.waiting.filter((w) => !w.deferred).length, deferred: engine.waiting.filter((w) => w.deferred).length }),
        );
        x.gauge(
            "vllm:engine_sleep_state",
            "Engine sleep state; awake = 0 means engine is sleeping; awake = 1 means engine is awake; weights_offloaded = 1 means sleep level 1; discard_all = 1 means sleep level 2.",
            by("sleep_state", { awake: 1, weights_offloaded: 0, discard_all: 0 }),
        );
        x.gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", one(engine.pool.usage()));
        x.counter("vllm:prefix_cache_queries", "Prefix cache queries, in terms of number of queried tokens.", one(m.prefixCacheQueries), startedAt);
        x.counter("vllm:prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens.", one(m.prefixCacheHits), startedAt);
        x.counter("vllm:external_prefix_cache_queries", "External prefix cache queries from KV connector cross-instance cache sharing, in terms of number of queried tokens.", one(0), startedAt);
        x.counter("vllm:external_prefix_cache_hits", "External prefix cache hits from KV connector cross-instance cache sharing, in terms of number of cached tokens.", one(0), startedAt);
        x.counter("vllm:mm_cache_queries", "Multi-modal cache queries, in terms of number of queried items.", one(0), startedAt);
        x.counter("vllm:mm_cache_hits", "Multi-modal cache hits, in terms of number of cached items.", one(0), startedAt);
        x.counter("vllm:num_preemptions", "Cumulative number of preemption from the engine.", one(m.preemptions), startedAt);
        x.counter("vllm:prompt_tokens", "Number of prefill tokens processed.", one(m.promptTokens), startedAt);
        x.counter(
            "vllm:prompt_tokens_by_source",
            "Number of prompt tokens by source.",
            by("source", { local_compute: m.promptTokens - m.promptTokensCached, local_cache_hit: m.promptTokensCached, external_kv_transfer: 0 }),
            startedAt,
        );
        x.counter("vllm:prompt_tokens_cached", "Number of cached prompt tokens (local + external).", one(m.promptTokensCached), startedAt);
        x.counter(
            "vllm:prompt_tokens_cached_by_source",
            "Prefix-cache hit tokens by the cache tier that supplied them: device (local HBM), host (offloaded to DRAM), disk, p2p (transferred from another vLLM instance) or external_unspecified. Counted at admission; sums to vllm:prefix_cache_hits + vllm:external_prefix_cache_hits.",
            by("source", { device: m.promptTokensCached, host: 0, p2p: 0, disk: 0, external_unspecified: 0 }),
            startedAt,
        );
        x.counter("vllm:generation_tokens", "Number of generation tokens processed.", one(m.generationTokens), startedAt);
        x.counter("vllm:request_success", "Count of successfully processed requests.", by("finished_reason", m.finished), startedAt);
        x.counter(
            "vllm:admission_rejections",
            "Number of admission attempts rejected by a queue limit, by reason.",
            [
                [{ model_name: modelName, reason: "max_num_queued_reqs" }, 0],
                [{ model_name: modelName, reason: "max_num_queued_tokens" }, 0],
            ],
            startedAt,
        );
        x.histogram("vllm:request_prompt_tokens", "Number of prefill tokens processed.", hist(m.requestPromptTokens));
        x.histogram("vllm:request_generation_tokens", "Number of generation tokens processed.", hist(m.requestGenerationTokens));
        x.histogram("vllm:iteration_tokens_total", "Histogram of number of tokens per engine_step.", hist(m.iterationTokens));
        x.histogram("vllm:request_max_num_generation_tokens", "Histogram of maximum number of requested generation tokens.", hist(m.maxGenerationTokens));
        x.histogram("vllm:request_params_n", "Histogram of the n request parameter.", hist(m.paramsN));
        x.histogram("vllm:request_params_max_tokens", "Histogram of the max_tokens request parameter.", hist(m.paramsMaxTokens));
        x.histogram("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", hist(m.ttft));
        x.histogram("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", hist(m.itl));
        x.histogram("vllm:request_time_per_output_token_seconds", "Histogram of time_per_output_token_seconds per request.", hist(m.timePerOutputToken));
        x.histogram("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", hist(m.e2e));
        x.histogram("vllm:request_queue_time_seconds", "Histogram of time spent in WAITING phase for request.", hist(m.queueTime));
        x.histogram("vllm:request_inference_time_seconds", "Histogram of time spent in RUNNING phase for request.", hist(m.inferenceTime));
        x.histogram("vllm:request_prefill_time_seconds", "Histogram of time spent in PREFILL phase for request.", hist(m.prefillTime));
        x.histogram("vllm:request_decode_time_seconds", "Histogram of time spent in DECODE phase for request.", hist(m.decodeTime));
        x.histogram("vllm:request_num_preemptions", "Histogram of the number of times a request was preempted.", hist(m.requestPreemptions));
        x.histogram("vllm:request_prefill_kv_computed_tokens", "Histogram of new KV tokens computed during prefill (excluding cached tokens).", hist(m.prefillKvComputed));
        // With --enable-lora: a label set per state it has seen, each set to the time it was last seen (no model_name or engine label).
        if (options.enableLora) {
            x.gauge(
                "vllm:lora_requests_info",
                "Running stats on lora requests.",
                [...engine.loraInfo].map(([names, at]) => [{ max_lora: String(options.maxLoras), running_lora_adapters: names, waiting_lora_adapters: names }, at]),
            );
        }
        const numBlocks = engine.pool.numBlocks;
        x.gauge("vllm:cache_config_info", "Information of the LLMEngine CacheConfig", [
            [
                {
                    _block_size_resolved: "True",
                    block_size: String(options.blockSize),
                    cache_dtype: "auto",
                    cache_hit_alignment_tokens: "None",
                    effective_attention_block_size: String(options.blockSize),
                    enable_mamba_shared_prefix_checkpoint: "False",
                    enable_prefix_caching: options.enablePrefixCaching ? "True" : "False",
                    engine: "0",
                    gpu_memory_utilization: "0.92",
                    hash_block_size: "None",
                    is_attention_free: "False",
                    kv_cache_dtype_skip_layers: "[]",
                    kv_cache_layout: "None",
                    kv_cache_max_concurrency: String(((numBlocks * options.blockSize) / options.maxModelLen).toFixed(1)),
                    kv_cache_memory_bytes: "None",
                    kv_cache_size_tokens: String(numBlocks * options.blockSize),
                    kv_offloading_backend: "native",
                    kv_offloading_size: "None",
                    kv_sharing_fast_prefill: "False",
                    mamba_block_size: "None",
                    mamba_cache_dtype: "auto",
                    mamba_cache_mode: "none",
                    mamba_page_size_padded: "None",
                    mamba_ssm_cache_dtype: "float32",
                    num_cpu_blocks: "None",
                    num_gpu_blocks: String(numBlocks),
                    num_gpu_blocks_override: options.numGpuBlocksOverride === undefined ? "None" : String(options.numGpuBlocksOverride),
                    prefix_cache_retention_interval: "0",
                    prefix_caching_hash_algo: "sha256",
                    prefix_match_unit: "None",
                    replayssm_buffer_len: "16",
                    skip_page_size_padded: "None",
                    sliding_window: "None",
                    swa_bounded_replay: "True",
                    use_kda_recoverssm: "False",
                    use_replayssm: "False",
                    user_specified_block_size: "False",
                },
                1,
            ],
        ]);
    }
    const requests = [...httpMetrics.requests.values()];
    x.counter(
        "http_requests",
        "Total number of requests by method, status and handler.",
        requests.map(({ labels, n }) => [labels, n]),
        (labels) => /** @type {number} */ (requests.find((r) => r.labels === labels)?.created),
    );
    x.summary(
        "http_request_size_bytes",
        "Content length of incoming requests by handler. Only value of header is respected. Otherwise ignored. No percentile calculated. ",
        [...httpMetrics.requestSize].map(([handler, s]) => [{ handler }, s]),
    );
    x.summary(
        "http_response_size_bytes",
        "Content length of outgoing responses by handler. Only value of header is respected. Otherwise ignored. No percentile calculated. ",
        [...httpMetrics.responseSize].map(([handler, s]) => [{ handler }, s]),
    );
    x.histogram("http_request_duration_highr_seconds", "Latency with many buckets but no API specific labels. Made for more accurate percentile calculations. ", [
        [{}, httpMetrics.durationHighr, httpMetrics.durationHighrCreated],
    ]);
    x.histogram(
        "http_request_duration_seconds",
        "Latency with only few buckets by handler. Made to be only used if aggregation by handler is important. ",
        [...httpMetrics.duration.values()].map(({ labels, h, created }) => [labels, h, created]),
    );
    return x.text();
}

// ---------------------------------------------------------------------------------------------------
// The HTTP server.
// ---------------------------------------------------------------------------------------------------

/** Largest request body the stand-in reads (vLLM/uvicorn set none; this only guards memory). */
const MAX_BODY_BYTES = 256 * 1024 * 1024;

/** How many recent requests `GET /standin/requests` remembers. */
const REQUEST_LOG_SIZE = 10000;

/** Routes vLLM's instrumentator leaves out of http_* metrics (entrypoints/serve/instrumentator/metrics.py, 0.32.0). */
const UNINSTRUMENTED = new Set(["/metrics", "/health", "/load", "/ping", "/version", "/server_info"]);

/** vLLM's routes that the stand-in serves, as vLLM logs its own at startup (launcher.py), in its order. */
const ROUTES = [
    ["/load", "GET"],
    ["/version", "GET"],
    ["/health", "GET"],
    ["/metrics", "GET"],
    ["/tokenize", "POST"],
    ["/detokenize", "POST"],
    ["/v1/models", "GET"],
    ["/ping", "GET"],
    ["/ping", "POST"],
    ["/v1/chat/completions", "POST"],
    ["/v1/completions", "POST"],
];

/** The routes vLLM adds with VLLM_ALLOW_RUNTIME_LORA_UPDATING (entrypoints/serve/lora/api_router.py, 0.32.0). */
const LORA_ROUTES = [
    ["/v1/load_lora_adapter", "POST"],
    ["/v1/unload_lora_adapter", "POST"],
];

/** Each route's methods: another method is a 405 (/metrics is a mount, which takes any). @param {string[][]} routes */
function routeMethods(routes) {
    /** @type {Map<string, string[]>} */
    const methods = new Map();
    for (const [route, method] of routes) {
        if (route !== "/metrics") {
            methods.set(/** @type {string} */ (route), [...(methods.get(/** @type {string} */ (route)) ?? []), /** @type {string} */ (method)]);
        }
    }
    return methods;
}

/** vLLM's random ids: 16 hex digits (`cmpl-…`, `chatcmpl-…`, `modelperm-…`). */
function randomHex16() {
    return crypto.randomBytes(8).toString("hex");
}

/** `MM-DD HH:MM:SS`, vLLM's log time stamp. */
function stamp() {
    const d = new Date();
    const p = (/** @type {number} */ n) => String(n).padStart(2, "0");
    return `${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/**
 * Starts the stand-in: waits `loadSeconds` with the port closed, then listens.
 * @param {Options} options
 * @param {(line: string) => void} write
 */
async function main(options, write) {
    const servedNames = options.servedModelNames.length > 0 ? options.servedModelNames : [options.model];
    const modelName = /** @type {string} */ (servedNames[0]);
    const numGpuBlocks = options.numGpuBlocksOverride ?? Math.floor(options.kvCacheTokens / options.blockSize);
    // vLLM 0.32.0 reads it as bool(int(os.getenv(name, "0"))): "1" keeps the server up, "0" does not, and a
    // value that is not an integer stops the server at start-up (ValueError).
    const keepAliveRaw = (process.env.VLLM_KEEP_ALIVE_ON_ENGINE_DEATH ?? "0").trim();
    if (!/^[-+]?\d+$/.test(keepAliveRaw)) {
        process.stderr.write(`ValueError: invalid literal for int() with base 10: '${keepAliveRaw}' (VLLM_KEEP_ALIVE_ON_ENGINE_DEATH)\n`);
        process.exit(1);
    }
    const keepAliveOnEngineDeath = Number(keepAliveRaw) !== 0;
    // vLLM prefixes its own lines with its process (vllm/utils decorate_logs); uvicorn's lines have no prefix in 0.32.0.
    const prefix = `(APIServer pid=${process.pid}) `;
    const enginePrefix = `(EngineCore pid=${process.pid}) `;
    /** vLLM's own log format. @param {string} level @param {string} where @param {string} message */
    const log = (level, where, message) => write(`${prefix}${level} ${stamp()} [${where}] ${message}`);
    /** @param {string} level @param {string} where @param {string} message */
    const engineLog = (level, where, message) => write(`${enginePrefix}${level} ${stamp()} [${where}] ${message}`);
    /** uvicorn's format. @param {string} message */
    const uvicorn = (message) => write(`INFO:     ${message}`);

    log("INFO", "api_utils.py", `vLLM version ${STANDIN_VERSION}, model ${options.model}`);
    log(
        "INFO",
        "utils.py",
        `non-default args: ${JSON.stringify({
            model: options.model,
            host: options.host,
            port: options.port,
            served_model_name: servedNames,
            max_model_len: options.maxModelLen,
            max_num_seqs: options.maxNumSeqs,
            max_num_batched_tokens: options.maxNumBatchedTokens,
            enable_prefix_caching: options.enablePrefixCaching,
            block_size: options.blockSize,
            num_gpu_blocks: numGpuBlocks,
            shutdown_timeout: options.shutdownTimeoutSeconds,
        })}`,
    );
    log(
        "INFO",
        "standin",
        `vLLM stand-in (not vLLM), replica ${options.replicaId}: itl_ms=${options.itlMs}, batch_slowdown=${options.batchSlowdown}, prefill=${options.prefillOverheadMs} ms + ${options.prefillMsPerToken} ms/token, time_scale=${options.timeScale}`,
    );
    if (options.ignored.length > 0) {
        log("INFO", "standin", `ignoring vLLM args the stand-in does not model: ${options.ignored.join(" ")}`);
    }
    const usableTokens = (numGpuBlocks - 1) * options.blockSize;
    if (options.maxModelLen > usableTokens) {
        // vLLM refuses to start when one request of max_model_len cannot fit in the KV cache.
        engineLog("ERROR", "core.py", "EngineCore failed to start.");
        write(
            `ValueError: To serve at least one request with the models's max seq len (${options.maxModelLen}), the KV cache must hold ${options.maxModelLen} tokens, but it holds ${usableTokens} (${numGpuBlocks} blocks of ${options.blockSize} tokens, one kept aside). Raise --num-gpu-blocks-override or --kv-cache-tokens, or lower --max-model-len.`,
        );
        process.exit(1);
    }

    const engine = new Engine(options, numGpuBlocks);
    const httpMetrics = new HttpMetrics();
    const createdAt = Math.floor(Date.now() / 1000);
    // LoRA adapters, by name (vLLM's OpenAIServingModels.lora_requests): the --lora-modules, then those
    // loaded at run time, which vLLM serves only with VLLM_ALLOW_RUNTIME_LORA_UPDATING ("1" or "true").
    const runtimeLora = ["1", "true"].includes((process.env.VLLM_ALLOW_RUNTIME_LORA_UPDATING ?? "0").trim().toLowerCase());
    const routes = runtimeLora ? [...ROUTES, ...LORA_ROUTES] : ROUTES;
    const methodsByRoute = routeMethods(routes);
    /** @type {Map<string, LoraModule & { id: number }>} */
    const loras = new Map();
    let loraIds = 0;
    /** When the metrics' series were created (prometheus_client's `_created`), in seconds. */
    const startedAt = Date.now() / 1000;
    /** Generation requests in flight, for /load with --enable-server-load-tracking. */
    let serverLoad = 0;
    /** vLLM's system_fingerprint: its version and a hash of its configuration. */
    const systemFingerprint = `vllm-${STANDIN_VERSION}-${crypto.createHash("sha256").update(JSON.stringify(options)).digest("hex").slice(0, 8)}`;
    /** @type {Array<{id: string, path: string, at: number}>} */
    const requestLog = [];
    /** @type {Set<import("node:net").Socket>} */
    const sockets = new Set();
    /** Responses not yet closed, which a shutdown lets finish. @type {Set<http.ServerResponse>} */
    const responses = new Set();
    /** "running"; "draining" after SIGTERM with --shutdown-timeout > 0; "stopping" once it exits. */
    let lifecycle = /** @type {"running" | "draining" | "stopping"} */ ("running");
    let signalName = "";
    /** API requests (/v1/*) that arrived after the signal: a balancer that stopped routing here first sends none. */
    let apiRequestsAfterSignal = 0;
    /** Generation requests that arrived while draining, refused with vLLM's 500. */
    let refusedWhileDraining = 0;
    /** What became of the generation requests in flight at the signal. */
    const atSignal = { total: 0, finished: 0, aborted: 0 };
    /** @type {Set<Sequence>} */
    const inFlightAtSignal = new Set();

    /** @param {http.ServerResponse} res @param {number} status @param {unknown} body */
    const sendJson = (res, status, body) => {
        const text = JSON.stringify(body);
        res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
        res.end(text);
    };
    /** vLLM's OpenAI-style error body (ErrorResponse with ErrorInfo). @param {http.ServerResponse} res @param {number} status @param {string} type @param {string} message */
    const sendError = (res, status, type, message) => sendJson(res, status, { error: { message, type, param: null, code: status } });
    /** Python's json.dumps spacing, as vLLM writes its error events. @param {unknown} v @returns {string} */
    const pyJson = (v) => {
        if (Array.isArray(v)) {
            return `[${v.map(pyJson).join(", ")}]`;
        }
        if (v !== null && typeof v === "object") {
            return `{${Object.entries(v).map(([k, x]) => `${pyJson(k)}: ${pyJson(x)}`).join(", ")}}`;
        }
        return JSON.stringify(v).replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
    };
    /** The SSE event vLLM sends when a stream fails after its headers went out (create_streaming_error_response), then [DONE]. @param {string} message */
    const streamError = (message) => `data: ${pyJson({ error: { message, type: "InternalServerError", param: null, code: 500 } })}\n\ndata: [DONE]\n\n`;
    const SSE_HEADERS = { "content-type": "text/event-stream; charset=utf-8" };

    /** @param {http.IncomingMessage} req @param {http.ServerResponse} res */
    const handle = async (req, res) => {
        const url = new URL(req.url ?? "/", "http://standin");
        const path = url.pathname;
        const method = req.method ?? "GET";

        // vLLM's routes and their methods: another method is FastAPI's 405, with an Allow header.
        const allowed = methodsByRoute.get(path);
        if (allowed && !allowed.includes(method)) {
            res.setHeader("allow", allowed.join(", "));
            return sendJson(res, 405, { detail: "Method Not Allowed" });
        }
        if (path === "/health" || path === "/ping") {
            res.writeHead(engine.dead ? 503 : 200, { "content-length": 0 });
            return res.end();
        }
        if (path === "/version") {
            return sendJson(res, 200, { version: STANDIN_VERSION });
        }
        if (path === "/load") {
            // The requests in flight on the generation routes, counted only with --enable-server-load-tracking.
            return sendJson(res, 200, { server_load: options.serverLoadTracking ? serverLoad : 0 });
        }
        if (path === "/metrics" || path.startsWith("/metrics/")) {
            // A Starlette Mount of prometheus_client's ASGI app: any method, any path under it.
            const text = renderMetrics(engine, httpMetrics, modelName, options, startedAt);
            res.writeHead(200, { "content-type": "text/plain; version=1.0.0; charset=utf-8", "content-length": Buffer.byteLength(text) });
            return res.end(text);
        }
        if (path === "/tokenize" || path === "/detokenize") {
            return tokenization(req, res, path === "/tokenize");
        }
        // Stand-in only: test hooks, outside /v1 so no API key is needed.
        if (path === "/standin/kill-engine" && method === "POST") {
            killEngine();
            return sendJson(res, 200, { dead: true, exits: !keepAliveOnEngineDeath });
        }
        if (path === "/standin/block-loop" && method === "POST") {
            // Busy for `ms` on the event loop, as vLLM's API server is while it renders a long chat template
            // or tokenizes a large prompt: /health and every other request wait meanwhile.
            const ms = Math.min(Number(url.searchParams.get("ms") ?? 1000), 60_000);
            sendJson(res, 200, { blocking_ms: ms });
            setImmediate(() => {
                const until = performance.now() + ms;
                while (performance.now() < until) {
                    // busy
                }
            });
            return;
        }
        if (path === "/standin/requests" && method === "GET") {
            return sendJson(res, 200, { replica: options.replicaId, requests: requestLog });
        }
        if (path === "/standin/connections" && method === "GET") {
            return sendJson(res, 200, { open: sockets.size, closed_by_client: closedConnections.client, closed_by_server: closedConnections.server });
        }
        if (path === "/standin/kv-cache" && method === "GET") {
            return sendJson(res, 200, {
                block_size: options.blockSize,
                num_gpu_blocks: engine.pool.numBlocks,
                usable_blocks: engine.pool.usableBlocks,
                free_blocks: engine.pool.numFree,
                cached_blocks: engine.pool.cached.size,
                evictions: engine.pool.evictions,
                enable_prefix_caching: options.enablePrefixCaching,
            });
        }

        if (path.startsWith("/v1")) {
            if (path === "/v1/models") {
                // The base model's names, then each adapter with its path as root and its base as parent.
                const cards = [
                    ...servedNames.map((name) => ({ id: name, root: options.model, parent: null, max_model_len: options.maxModelLen })),
                    ...[...loras.values()].map((lora) => ({ id: lora.name, root: lora.path, parent: lora.base ?? modelName, max_model_len: null })),
                ];
                return sendJson(res, 200, {
                    object: "list",
                    data: cards.map((card) => ({
                        id: card.id,
                        object: "model",
                        created: createdAt,
                        owned_by: "vllm",
                        root: card.root,
                        parent: card.parent,
                        max_model_len: card.max_model_len,
                        permission: [
                            {
                                id: `modelperm-${randomHex16()}`,
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
            if (runtimeLora && (path === "/v1/load_lora_adapter" || path === "/v1/unload_lora_adapter")) {
                return loraAdapter(req, res, path === "/v1/load_lora_adapter");
            }
            if (path === "/v1/completions" || path === "/v1/chat/completions") {
                serverLoad += 1;
                res.once("close", () => (serverLoad -= 1));
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
    /** vLLM's answer to a RequestValidationError: 400 "Bad Request", param the first error's location. @param {http.ServerResponse} res @param {Array<FieldError | string>} errors */
    const sendValidation = (res, errors) => {
        const first = errors[0];
        return sendJson(res, 400, { error: { message: validationMessage(errors), type: "Bad Request", param: typeof first === "string" || first === undefined ? null : first.loc, code: 400 } });
    };
    /** vLLM's VLLMValidationError: "<message> (parameter=P, value=V)", type BadRequestError, param P. @param {http.ServerResponse} res @param {string} message @param {string | null} param @param {unknown} [value] */
    const sendInvalid = (res, message, param, value) =>
        sendJson(res, 400, {
            error: { message: param === null ? message : `${message} (parameter=${param}${value === undefined ? "" : `, value=${pyInput(value)}`})`, type: "BadRequestError", param, code: 400 },
        });

    /**
     * A JSON route's body as FastAPI reads it for vLLM: decoded by Python's json (its errors, with their
     * positions), then the route's `validate_json_request` (Content-Type must be application/json), then
     * the body must be an object. Undefined once an error has been answered.
     * @param {http.IncomingMessage} req @param {http.ServerResponse} res
     * @returns {Promise<Record<string, any> | undefined>}
     */
    const readJson = async (req, res) => {
        const raw = await readBody(req);
        if (raw === "gone") {
            return undefined;
        }
        if (raw === "too-large") {
            sendError(res, 413, "BadRequestError", `request body larger than the stand-in's limit of ${MAX_BODY_BYTES} bytes`);
            return undefined;
        }
        const contentType = String(req.headers["content-type"] ?? "");
        const mediaType = contentType.toLowerCase().split(";")[0];
        // FastAPI decodes JSON when there is no Content-Type or its subtype is json (or +json).
        const subtype = (contentType.split(";")[0] ?? "").trim().toLowerCase().split("/")[1] ?? "";
        /** @type {unknown} */
        let body;
        if (raw.length > 0 && (contentType === "" || subtype === "json" || subtype.endsWith("+json"))) {
            /** @type {string} */
            let decoded;
            try {
                decoded = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(raw);
            } catch {
                // json.loads fails with something other than a JSONDecodeError: FastAPI's HTTPException(400).
                sendJson(res, 400, { detail: "There was an error parsing the body" });
                return undefined;
            }
            const bad = pythonJsonError(decoded);
            if (bad && "recursion" in bad) {
                // A RecursionError is no JSONDecodeError: FastAPI's HTTPException(400) again.
                sendJson(res, 400, { detail: "There was an error parsing the body" });
                return undefined;
            }
            if (bad) {
                const pos = [...decoded.slice(0, bad.pos)].length; // Python counts code points
                sendValidation(res, [{ type: "json_invalid", loc: `body.${pos}`, msg: "JSON decode error", input: {}, ctx: { error: bad.msg } }]);
                return undefined;
            }
            try {
                body = JSON.parse(decoded);
            } catch {
                body = {}; // NaN or Infinity, which Python reads and JSON.parse does not
            }
        }
        if (mediaType !== "application/json") {
            sendValidation(res, ["Unsupported Media Type: Only 'application/json' is allowed"]);
            return undefined;
        }
        if (body === undefined) {
            sendValidation(res, [{ type: "missing", loc: "body", msg: "Field required", input: null }]);
            return undefined;
        }
        if (typeof body !== "object" || body === null || Array.isArray(body)) {
            sendValidation(res, [{ type: "model_attributes_type", loc: "body", msg: "Input should be a valid dictionary or object to extract fields from", input: body }]);
            return undefined;
        }
        return /** @type {Record<string, any>} */ (body);
    };

    /** The served-model check of vLLM's serving classes (404, param "model"); a missing or empty name is the first. @param {http.ServerResponse} res @param {unknown} requested */
    const checkModel = (res, requested) => {
        if (requested === undefined || requested === null || requested === "" || servedNames.includes(/** @type {string} */ (requested)) || loras.has(/** @type {string} */ (requested))) {
            return true;
        }
        sendJson(res, 404, { error: { message: `The model \`${requested}\` does not exist. Valid aliases: ${servedNames.join(", ")}.`, type: "NotFoundError", param: "model", code: 404 } });
        return false;
    };

    /**
     * POST /v1/load_lora_adapter ({lora_name, lora_path, load_inplace}) and /v1/unload_lora_adapter
     * ({lora_name}), with vLLM 0.32.0's checks, messages and plain-text answers (OpenAIServingModels). The
     * stand-in reads no adapter: any path loads.
     * @param {http.IncomingMessage} req @param {http.ServerResponse} res @param {boolean} load
     */
    const loraAdapter = async (req, res, load) => {
        const body = await readJson(req, res);
        if (body === undefined) {
            return;
        }
        const fields = load ? ["lora_name", "lora_path"] : ["lora_name"];
        const missing = fields.filter((f) => body[f] === undefined);
        if (missing.length > 0) {
            return sendValidation(
                res,
                missing.map((f) => ({ type: "missing", loc: `body.${f}`, msg: "Field required", input: body })),
            );
        }
        const wrong = fields.filter((f) => typeof body[f] !== "string");
        if (wrong.length > 0) {
            return sendValidation(
                res,
                wrong.map((f) => ({ type: "string_type", loc: `body.${f}`, msg: "Input should be a valid string", input: body[f] })),
            );
        }
        /** @type {string} */
        const name = body.lora_name;
        /** A 200 with a text body and no content type, as vLLM's Response(content=...). @param {string} text */
        const success = (text) => {
            res.writeHead(200, { "content-length": Buffer.byteLength(text) });
            res.end(text);
        };
        if (!load) {
            if (name === "") {
                return sendError(res, 400, "InvalidUserInput", "'lora_name' needs to be provided to unload a LoRA adapter.");
            }
            if (!loras.has(name)) {
                return sendError(res, 404, "NotFoundError", `The lora adapter '${name}' cannot be found.`);
            }
            loras.delete(name);
            log("INFO", "serving.py", `Removed LoRA adapter: name '${name}'`);
            return success(`Success: LoRA adapter '${name}' removed successfully.`);
        }
        /** @type {string} */
        const lora_path = body.lora_path;
        if (name === "" || lora_path === "") {
            return sendError(res, 400, "InvalidUserInput", "Both 'lora_name' and 'lora_path' must be provided.");
        }
        if (servedNames.includes(name)) {
            return sendError(res, 400, "InvalidUserInput", `The lora adapter '${name}' conflicts with a served base model.`);
        }
        if (body.load_inplace !== true && loras.has(name)) {
            return sendError(res, 400, "InvalidUserInput", `The lora adapter '${name}' has already been loaded. If you want to load the adapter in place, set 'load_inplace' to True.`);
        }
        if (!options.enableLora) {
            return sendError(res, 500, "InternalServerError", "LoRA is not enabled. Use --enable-lora to enable LoRA.");
        }
        const previous = loras.get(name);
        loras.set(name, { name, path: lora_path, base: undefined, id: previous?.id ?? (loraIds += 1) });
        log("INFO", "serving.py", `Loaded new LoRA adapter: name '${name}', path '${lora_path}'`);
        return success(`Success: LoRA adapter '${name}' added successfully.`);
    };

    /**
     * POST /tokenize ({prompt} or {messages}, rendered with the chat template) and POST /detokenize
     * ({tokens}), in vLLM's shapes, with the stand-in's tokens (tokenIds).
     * @param {http.IncomingMessage} req @param {http.ServerResponse} res @param {boolean} tokenize
     */
    const tokenization = async (req, res, tokenize) => {
        const body = await readJson(req, res);
        if (body === undefined) {
            return;
        }
        if (tokenize) {
            if (body.prompt === undefined && body.messages === undefined) {
                return sendValidation(res, [
                    { type: "missing", loc: "body.prompt", msg: "Field required", input: body },
                    { type: "missing", loc: "body.messages", msg: "Field required", input: body },
                ]);
            }
            if (body.messages === undefined && typeof body.prompt !== "string") {
                return sendValidation(res, [{ type: "string_type", loc: "body.prompt", msg: "Input should be a valid string", input: body.prompt }]);
            }
            if (!checkModel(res, body.model)) {
                return;
            }
            if (lifecycle !== "running") {
                return sendError(res, 500, "InternalServerError", "cannot schedule new futures after shutdown"); // its renderer is stopped
            }
            const text = body.messages !== undefined ? renderChat(body.messages) : /** @type {string} */ (body.prompt);
            if (text === undefined) {
                return sendInvalid(res, "messages: a list of messages with string or text contents is required", "messages");
            }
            const tokens = tokenIds(text);
            return sendJson(res, 200, { count: tokens.length, max_model_len: options.maxModelLen, tokens, token_strs: null });
        }
        if (body.tokens === undefined) {
            return sendValidation(res, [{ type: "missing", loc: "body.tokens", msg: "Field required", input: body }]);
        }
        if (!Array.isArray(body.tokens)) {
            return sendValidation(res, [{ type: "list_type", loc: "body.tokens", msg: "Input should be a valid list", input: body.tokens }]);
        }
        if (!checkModel(res, body.model)) {
            return;
        }
        if (lifecycle !== "running") {
            return sendError(res, 500, "InternalServerError", "cannot schedule new futures after shutdown");
        }
        // Ids it never handed out decode to nothing, as out-of-vocabulary ids do in vLLM.
        return sendJson(res, 200, { prompt: body.tokens.map((t) => PIECES_BY_ID.get(t) ?? "").join("") });
    };

    /** @param {http.IncomingMessage} req @param {http.ServerResponse} res @param {boolean} chat */
    const generate = async (req, res, chat) => {
        const received = performance.now();
        const body = await readJson(req, res);
        if (body === undefined) {
            return;
        }
        // pydantic: field types, then the request models' own validators.
        /** @type {FieldError[]} */
        const fieldErrors = [];
        if (chat) {
            if (body.messages === undefined) {
                fieldErrors.push({ type: "missing", loc: "body.messages", msg: "Field required", input: body });
            } else if (!Array.isArray(body.messages)) {
                fieldErrors.push({ type: "list_type", loc: "body.messages", msg: "Input should be a valid list", input: body.messages });
            }
        }
        const maxTokensParam = chat && body.max_completion_tokens !== undefined && body.max_completion_tokens !== null ? "max_completion_tokens" : "max_tokens";
        const requestedMaxTokens = laxInt(body[maxTokensParam], `body.${maxTokensParam}`, fieldErrors);
        if (fieldErrors.length > 0) {
            return sendValidation(res, fieldErrors);
        }
        if (!chat && (body.prompt === undefined || body.prompt === null || body.prompt === "") && (body.prompt_embeds === undefined || body.prompt_embeds === null || (Array.isArray(body.prompt_embeds) && body.prompt_embeds.length === 0))) {
            return sendInvalid(res, "Either prompt or prompt_embeds must be provided and non-empty.", "prompt");
        }
        if (body.stream_options && !body.stream) {
            return sendInvalid(res, "Stream options can only be defined when `stream=True`.", "stream_options");
        }
        if (engine.dead) {
            // The serving classes raise the engine's dead error before anything else; vLLM's handler answers
            // it as an InternalServerError in the OpenAI shape.
            return sendError(res, 500, "InternalServerError", ENGINE_DEAD_MESSAGE);
        }
        if (!checkModel(res, body.model)) {
            return;
        }
        if (lifecycle !== "running") {
            // Draining (--shutdown-timeout > 0): vLLM's shutdown stops its renderer first, so a new request
            // fails where it would be tokenized, while the engine drains what it has.
            refusedWhileDraining += 1;
            return sendError(res, 500, "InternalServerError", "cannot schedule new futures after shutdown");
        }
        if (chat && body.messages.length === 0) {
            return sendInvalid(res, "Cannot apply chat template to an empty conversation. Provide at least one message.", null);
        }
        // Rendering: max_tokens against max_model_len (TokenizeParams), then the prompt.
        if (requestedMaxTokens !== undefined && requestedMaxTokens > options.maxModelLen) {
            return sendInvalid(res, `${maxTokensParam}=${requestedMaxTokens} cannot be greater than max_model_len=${options.maxModelLen}. Please request fewer output tokens.`, maxTokensParam, requestedMaxTokens);
        }
        if (!chat && Array.isArray(body.prompt) && body.prompt.length === 0) {
            return sendInvalid(res, "You must pass at least one prompt", null);
        }
        const rendered = chat ? renderChat(body.messages) : undefined;
        const prompt = chat ? (rendered === undefined ? undefined : textPrompt(rendered)) : completionPrompt(body.prompt);
        if (prompt === undefined) {
            return sendError(
                res,
                400,
                "BadRequestError",
                chat ? "messages: a list of messages with string or text contents is required" : "prompt: a string or a non-empty list of token ids is required (the stand-in serves one prompt per request)",
            );
        }
        const promptTokens = prompt.length;
        if (promptTokens > options.maxModelLen) {
            // The tokenizer truncates to max_model_len + 1, so that count reads "at least".
            return sendInvalid(
                res,
                `This model's maximum context length is ${options.maxModelLen} tokens. However, your prompt contains ${promptTokens === options.maxModelLen + 1 ? "at least " : ""}${promptTokens} input tokens, which exceeds this limit even without any output tokens. Please reduce the length of the input prompt.`,
                "input_tokens",
                promptTokens,
            );
        }
        // get_max_tokens: the request's (or the default, 16), capped by what is left of the context.
        const maxTokens = Math.min(requestedMaxTokens ?? 16, options.maxModelLen - promptTokens);
        if (maxTokens < 1) {
            return sendInvalid(res, `max_tokens must be at least 1, got ${maxTokens}.`, "max_tokens", maxTokens);
        }
        const stream = body.stream === true;
        const includeUsage = stream && body.stream_options?.include_usage === true;
        const stallHeader = Number(req.headers["x-standin-stall-ms"] ?? 0);
        const stallMs = Number.isFinite(stallHeader) && stallHeader > 0 ? stallHeader : 0;
        const itlHeader = req.headers["x-standin-itl-ms"] === undefined ? NaN : Number(req.headers["x-standin-itl-ms"]);
        const soloItlMs = Number.isFinite(itlHeader) && itlHeader >= 0 ? itlHeader : undefined;
        // vLLM's request id is the X-Request-Id header when the client sends one (_base_request_id).
        const headerId = typeof req.headers["x-request-id"] === "string" && req.headers["x-request-id"] !== "" ? req.headers["x-request-id"] : undefined;
        const id = `${chat ? "chatcmpl" : "cmpl"}-${headerId ?? randomHex16()}`;
        const created = Math.floor(Date.now() / 1000);
        requestLog.push({ id: headerId ?? id, path: req.url ?? "", at: Date.now() });
        if (requestLog.length > REQUEST_LOG_SIZE) {
            requestLog.shift();
        }
        const object = chat ? "chat.completion.chunk" : "text_completion";
        const lora = typeof body.model === "string" ? loras.get(body.model) : undefined;

        /** @type {Sequence} */
        const seq = {
            id,
            prompt,
            maxTokens,
            generated: 0,
            numComputed: 0,
            blocks: [],
            blockHashes: [],
            numCachedBlocks: 0,
            cachedTokens: 0,
            numPreemptions: 0,
            state: "waiting",
            stallMs,
            stallUntil: undefined,
            soloItlMs,
            timer: undefined,
            arrival: received,
            scheduledAt: undefined,
            firstTokenAt: undefined,
            lastTokenAt: undefined,
            onToken: () => {},
            onEnd: () => {},
            lora: lora ? { name: lora.name, id: lora.id } : undefined,
            deferred: false,
        };
        // vLLM answers with the first served name, whichever name the client used, or the adapter's name
        // (OpenAIServingModels.model_name).
        const model = lora ? lora.name : modelName;
        /** Streamed usage has the counts only; the plain answer's also has the two details (null unless enabled). @param {number} completion @param {boolean} streamed */
        const usage = (completion, streamed) => ({
            prompt_tokens: promptTokens,
            total_tokens: promptTokens + completion,
            completion_tokens: completion,
            ...(options.promptTokensDetails ? { prompt_tokens_details: { cached_tokens: seq.cachedTokens } } : streamed ? {} : { prompt_tokens_details: null }),
            ...(streamed ? {} : { completion_tokens_details: null }),
        });
        /** One chunk of a stream, in vLLM 0.32.0's fields. @param {string} text @param {string | null} finish */
        const chunk = (text, finish) =>
            JSON.stringify(
                chat
                    ? { id, object, created, model, choices: [{ index: 0, delta: { content: text }, logprobs: null, finish_reason: finish, ...(finish ? { stop_reason: null } : {}), token_ids: null }] }
                    : { id, object, created, model, choices: [{ index: 0, text, logprobs: null, finish_reason: finish, stop_reason: null, prompt_token_ids: null, token_ids: null }] },
            );
        /** The first chat chunk: the role, before any text. */
        const roleChunk = () => JSON.stringify({ id, object, created, model, choices: [{ index: 0, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null }], prompt_token_ids: null, prompt_text: null });
        /** The end of a stream: the finishing chunk, the usage chunk if asked for, [DONE]. @param {string} text @param {string} finish @param {number} generated */
        const streamEnd = (text, finish, generated) =>
            [chunk(text, finish), ...(includeUsage ? [JSON.stringify({ id, object, created, model, choices: [], usage: usage(generated, true), system_fingerprint: systemFingerprint })] : [])]
                .map((e) => `data: ${e}\n\n`)
                .join("") + "data: [DONE]\n\n";
        /** A non-streamed answer. @param {string} text @param {string} finish @param {number} generated */
        const plainAnswer = (text, finish, generated) =>
            chat
                ? {
                      id,
                      object: "chat.completion",
                      created,
                      model,
                      choices: [
                          {
                              index: 0,
                              message: { role: "assistant", content: text, refusal: null, annotations: null, audio: null, function_call: null, reasoning: null },
                              logprobs: null,
                              finish_reason: finish,
                              stop_reason: null,
                              token_ids: null,
                              routed_experts: null,
                          },
                      ],
                      service_tier: null,
                      system_fingerprint: systemFingerprint,
                      usage: usage(generated, false),
                      prompt_logprobs: null,
                      prompt_token_ids: null,
                      prompt_text: null,
                      kv_transfer_params: null,
                      ec_transfer_params: null,
                      metrics: null,
                  }
                : {
                      id,
                      object: "text_completion",
                      created,
                      model,
                      choices: [{ index: 0, text, logprobs: null, finish_reason: finish, stop_reason: null, token_ids: null, prompt_logprobs: null, prompt_token_ids: null, routed_experts: null }],
                      service_tier: null,
                      system_fingerprint: systemFingerprint,
                      usage: usage(generated, false),
                      kv_transfer_params: null,
                      ec_transfer_params: null,
                      metrics: null,
                  };
        /**
         * The engine aborted the request (SIGTERM, or a request that arrived while draining): a stream ends
         * with a `finish_reason: "abort"` chunk and [DONE], a plain request gets 200 with what it has.
         */
        const answerAborted = () => {
            if (stream) {
                if (!res.headersSent) {
                    res.writeHead(200, SSE_HEADERS);
                }
                res.end((chat && seq.generated === 0 ? `data: ${roleChunk()}\n\n` : "") + streamEnd("", "abort", seq.generated));
            } else if (!res.headersSent) {
                sendJson(res, 200, plainAnswer(text, "abort", seq.generated));
            }
        };

        let text = "";
        seq.onToken = (index, last) => {
            if (res.destroyed || res.writableEnded) {
                return;
            }
            const piece = tokenText(index);
            if (stream) {
                if (!res.headersSent) {
                    res.writeHead(200, SSE_HEADERS);
                }
                const head = chat && index === 0 ? `data: ${roleChunk()}\n\n` : "";
                res.write(head + (last ? streamEnd(piece, "length", index + 1) : `data: ${chunk(piece, null)}\n\n`));
                if (last) {
                    res.end();
                }
                return;
            }
            text += piece;
            if (last) {
                sendJson(res, 200, plainAnswer(text, "length", index + 1));
            }
        };
        seq.onEnd = (reason) => {
            if (inFlightAtSignal.delete(seq)) {
                atSignal[reason === "length" ? "finished" : "aborted"] += 1;
            }
            if (res.destroyed || res.writableEnded) {
                return;
            }
            if (reason === "error") {
                // The engine died under this request: a stream ends with vLLM's EngineDeadError event and
                // [DONE]; a plain request gets 500 InternalServerError.
                if (stream) {
                    if (!res.headersSent) {
                        res.writeHead(200, SSE_HEADERS);
                    }
                    res.end(streamError(ENGINE_DEAD_MESSAGE));
                } else if (!res.headersSent) {
                    sendError(res, 500, "InternalServerError", ENGINE_DEAD_MESSAGE);
                } else {
                    res.destroy();
                }
            } else if (reason === "shutdown") {
                answerAborted();
            }
        };
        res.on("close", () => {
            if (seq.state !== "done") {
                // The client (or the proxy in front) closed the connection: abort at once, like vLLM.
                engine.end(seq, "abort");
            }
        });
        if (stream && stallMs === 0) {
            // Like vLLM (Starlette's StreamingResponse): status and headers go out at once, before the
            // request is scheduled; tokens follow as they are generated.
            res.writeHead(200, SSE_HEADERS);
            res.flushHeaders();
        }
        engine.submit(seq);
    };
    const killEngine = () => {
        if (engine.dead) {
            return;
        }
        log("ERROR", "standin", "engine killed on request (POST /standin/kill-engine)");
        engineLog("ERROR", "core.py", "EngineCore encountered a fatal error.");
        engine.kill();
        log("ERROR", "async_llm.py", "AsyncLLM output_handler failed.");
        write(`${prefix}vllm.v1.engine.exceptions.EngineDeadError: ${ENGINE_DEAD_MESSAGE}`);
        if (!keepAliveOnEngineDeath) {
            log("INFO", "standin", `the API server exits at its next watchdog check (every ${WATCHDOG_MS / 1000} s); set VLLM_KEEP_ALIVE_ON_ENGINE_DEATH to keep it up`);
        }
    };

    /** Closed connections by who closed them: the client (FIN first) or this server (e.g. keep-alive expiry). */
    const closedConnections = { client: 0, server: 0 };
    const server = http.createServer({ noDelay: true, requestTimeout: 0 }, (req, res) => {
        const started = performance.now();
        responses.add(res);
        res.on("close", () => responses.delete(res));
        const path = new URL(req.url ?? "/", "http://standin").pathname;
        if (lifecycle !== "running" && path.startsWith("/v1")) {
            apiRequestsAfterSignal += 1;
        }
        // uvicorn's default server header; the replica id is the stand-in's own.
        res.setHeader("server", "uvicorn");
        // vLLM's CORS middleware (inside its API-key middleware, whose 401s lack it).
        res.setHeader("vary", "Origin");
        res.setHeader("x-replica-id", options.replicaId);
        if (options.requestIdHeaders) {
            // vLLM's XRequestIdMiddleware: the client's X-Request-Id, else a fresh uuid4 hex.
            const given = req.headers["x-request-id"];
            res.setHeader("x-request-id", typeof given === "string" && given !== "" ? given : crypto.randomUUID().replace(/-/g, ""));
        }
        // uvicorn sends no Keep-Alive header; Node adds one unless the response names its connection.
        const connection = String(req.headers.connection ?? "").toLowerCase();
        const closes = connection.includes("close") || (req.httpVersion === "1.0" && !connection.includes("keep-alive"));
        res.setHeader("connection", closes ? "close" : "keep-alive");
        // uvicorn logs the access line when the response starts.
        const writeHead = res.writeHead;
        /** @type {any} */ (res).writeHead = (/** @type {any[]} */ ...args) => {
            const out = writeHead.apply(res, /** @type {any} */ (args));
            if (options.accessLog) {
                const remote = `${req.socket.remoteAddress ?? "?"}:${req.socket.remotePort ?? "?"}`;
                uvicorn(`${remote} - "${req.method} ${req.url} HTTP/${req.httpVersion}" ${res.statusCode} ${http.STATUS_CODES[res.statusCode] ?? ""}`);
            }
            return out;
        };
        res.on("close", () => {
            // The instrumentator sits inside the API-key middleware, so 401s are not counted; the stand-in's
            // own hooks are not vLLM routes.
            if (!UNINSTRUMENTED.has(path) && !path.startsWith("/standin/") && res.statusCode !== 401 && res.headersSent) {
                // vLLM 0.32.0 counts no request under /v1/load_lora_adapter, though it does under
                // /v1/unload_lora_adapter (the conformance suite's handlers row); the stand-in counts it as none.
                const handler = methodsByRoute.has(path) && path !== "/v1/load_lora_adapter" ? path : "none";
                const responseBytes = Number(res.getHeader("content-length") ?? 0);
                httpMetrics.record(handler, req.method ?? "GET", res.statusCode, (performance.now() - started) / 1000, Number(req.headers["content-length"] ?? 0) || 0, responseBytes || 0);
            }
        });
        if (path.startsWith("/v1") && options.apiKeys.length > 0 && req.method !== "OPTIONS" && !authorized(req.headers.authorization)) {
            // vLLM's AuthenticationMiddleware answers exactly this body, outside its CORS middleware (no Vary).
            res.removeHeader("vary");
            return sendJson(res, 401, { error: "Unauthorized" });
        }
        handle(req, res).catch((err) => {
            log("ERROR", "standin", err instanceof Error ? String(err.stack) : String(err));
            if (!res.headersSent) {
                sendError(res, 500, "InternalServerError", String(err));
            } else {
                res.destroy();
            }
        });
    });
    /** vLLM's AuthenticationMiddleware: the scheme is case-insensitive, the key is everything after the first space. @param {string | undefined} header */
    const authorized = (header) => {
        if (!header) {
            return false;
        }
        const space = header.indexOf(" ");
        const scheme = space < 0 ? header : header.slice(0, space);
        const key = space < 0 ? "" : header.slice(space + 1);
        return scheme.toLowerCase() === "bearer" && options.apiKeys.includes(key);
    };
    // uvicorn (vLLM's HTTP server) closes a connection that has been idle for VLLM_HTTP_TIMEOUT_KEEP_ALIVE
    // seconds (default 5). Node's own keepAliveTimeout closes at the timeout on Node 18 (the image's, from
    // Debian) and 1 s after it on Node 20.20: the stand-in keeps its own timer instead, so that it closes at
    // 5 s on both, after nginx (4 s); closing at 4 s raced nginx, whose POST written on a connection closing
    // under it became a 502.
    const keepAliveMs = 1000 * (Number(process.env.VLLM_HTTP_TIMEOUT_KEEP_ALIVE) > 0 ? Number(process.env.VLLM_HTTP_TIMEOUT_KEEP_ALIVE) : 5);
    server.keepAliveTimeout = 0;
    /** Per connection: requests under way on it, and the timer that closes it once idle. @type {WeakMap<import("net").Socket, {busy: number, timer?: NodeJS.Timeout}>} */
    const idle = new WeakMap();
    const idleFrom = (/** @type {import("net").Socket} */ socket) => {
        const state = idle.get(socket);
        if (state && state.busy === 0 && !socket.destroyed) {
            clearTimeout(state.timer);
            state.timer = setTimeout(() => socket.destroy(), keepAliveMs);
        }
    };
    server.on("request", (req, res) => {
        const state = idle.get(req.socket);
        if (state) {
            clearTimeout(state.timer);
            state.busy += 1;
            res.once("close", () => {
                state.busy -= 1;
                idleFrom(req.socket);
            });
        }
    });
    server.on("connection", (socket) => {
        idle.set(socket, { busy: 0 });
        idleFrom(socket);
        socket.on("close", () => clearTimeout(idle.get(socket)?.timer));
        sockets.add(socket);
        let peerEnded = false;
        socket.on("end", () => (peerEnded = true));
        socket.on("close", () => {
            sockets.delete(socket);
            closedConnections[peerEnded ? "client" : "server"] += 1;
        });
    });

    /**
     * uvicorn's shutdown, then exit 0: the listener closes, whatever is still running is cut. vLLM exits 0
     * after a signal and after engine death alike (vllm#48966).
     * @param {string} why
     */
    const exit = (why) => {
        if (lifecycle === "stopping") {
            return;
        }
        lifecycle = "stopping";
        log("INFO", "launcher.py", "[shutdown] API server: engine client stopped");
        log("INFO", "launcher.py", "[shutdown] API server: signalling HTTP server shutdown");
        log("INFO", "launcher.py", "[shutdown] API server: shutting down FastAPI HTTP server");
        server.close();
        server.closeIdleConnections?.();
        // What still runs is aborted by the engine: streams get their abort chunk and [DONE], plain requests
        // their answer. uvicorn then waits for the responses under way to be sent, and exits.
        engine.endAll("shutdown");
        uvicorn("Shutting down");
        const pending = [...responses].filter((r) => !r.writableFinished);
        const sent = Promise.all(pending.map((r) => new Promise((resolve) => (r.once("finish", resolve), r.once("close", resolve)))));
        void Promise.race([sent, new Promise((resolve) => setTimeout(resolve, 1000))]).then(() => {
            for (const socket of sockets) {
                socket.destroy();
            }
            uvicorn("Waiting for application shutdown.");
            uvicorn(`Application shutdown complete.${why}`);
            uvicorn(`Finished server process [${process.pid}]`);
            process.exit(0);
        });
    };

    let listening = false;
    /** @param {string} signal */
    const shutdown = (signal) => {
        if (signalName !== "" || lifecycle === "stopping") {
            return;
        }
        signalName = signal;
        for (const seq of [...engine.running, ...engine.waiting]) {
            inFlightAtSignal.add(seq);
        }
        atSignal.total = inFlightAtSignal.size;
        const grace = options.shutdownTimeoutSeconds;
        log("INFO", "launcher.py", "[shutdown] API server: shutdown triggered");
        log("INFO", "launcher.py", `[shutdown] API server: stopping engine client mode=${grace > 0 ? "drain" : "abort"} timeout=${grace}s`);
        engineLog("INFO", "core.py", `[shutdown] EngineCore: start mode=${grace > 0 ? "drain" : "abort"} timeout=${grace}s`);
        if (atSignal.total > 0) {
            engineLog(
                "INFO",
                "core.py",
                grace > 0 ? `[shutdown] EngineCore: draining in-flight requests count=${atSignal.total} timeout=${grace}s` : `[shutdown] EngineCore: aborting in-flight requests count=${atSignal.total}`,
            );
        }
        log(
            "INFO",
            "standin",
            `${signal} received: shutting down (grace ${grace}s for ${atSignal.total} in-flight request(s): ${grace > 0 ? "draining; new generation requests fail" : "aborting them"})`,
        );
        if (!listening) {
            uvicorn("Finished server process (still loading)");
            process.exit(0);
        }
        const report = () =>
            ` ${apiRequestsAfterSignal} request(s) arrived after ${signal} (${refusedWhileDraining} generation request(s) refused); of the ${atSignal.total} in flight at ${signal}, ${atSignal.finished} finished and ${atSignal.aborted + inFlightAtSignal.size} were aborted.`;
        if (grace <= 0) {
            // --shutdown-timeout 0, the default: no drain, in-flight requests are aborted.
            exit(report());
            return;
        }
        // --shutdown-timeout N: the engine drains for up to N s while the port keeps listening.
        lifecycle = "draining";
        engine.onIdle = () => exit(report());
        if (engine.size === 0) {
            exit(report());
            return;
        }
        setTimeout(() => {
            log("WARNING", "standin", `shutdown timeout reached: aborting ${engine.size} request(s)`);
            exit(report());
        }, grace * 1000).unref();
    };
    process.on("SIGTERM", () => shutdown("SIGTERM"));
    process.on("SIGINT", () => shutdown("SIGINT"));

    const loadMs = options.loadSeconds * 1000 * options.timeScale;
    if (loadMs > 0) {
        log("INFO", "standin", `loading model weights (stand-in: ${(loadMs / 1000).toFixed(2)} s, port ${options.port} stays closed)`);
        await new Promise((resolve) => setTimeout(resolve, loadMs));
    }
    if (signalName !== "") {
        return;
    }
    const cacheTokens = numGpuBlocks * options.blockSize;
    engineLog("INFO", "kv_cache_utils.py", `GPU KV cache size: ${cacheTokens.toLocaleString("en-US")} tokens`);
    engineLog("INFO", "kv_cache_utils.py", `Maximum concurrency for ${options.maxModelLen.toLocaleString("en-US")} tokens per request: ${(cacheTokens / options.maxModelLen).toFixed(2)}x`);
    log("INFO", "loggers.py", `Engine 000: vllm cache_config_info with initialization after num_gpu_blocks is: ${numGpuBlocks}`);
    // init_static_loras: each --lora-modules entry is loaded before the server listens; without
    // --enable-lora the engine refuses it and the server does not start.
    for (const module of options.loraModules) {
        if (!options.enableLora) {
            process.stderr.write("ValueError: LoRA is not enabled. Use --enable-lora to enable LoRA.\n");
            process.exit(1);
        }
        loras.set(module.name, { ...module, id: (loraIds += 1) });
        log("INFO", "serving.py", `Loaded new LoRA adapter: name '${module.name}', path '${module.path}'`);
    }
    if (runtimeLora) {
        log("WARNING", "api_router.py", "LoRA dynamic loading & unloading is enabled in the API server. This should ONLY be used for local development!");
    }
    await new Promise((resolve, reject) => {
        server.once("error", reject);
        server.listen(options.port, options.host, () => resolve(undefined));
    });
    listening = true;
    const address = server.address();
    const port = typeof address === "object" && address ? address.port : options.port;
    // vLLM's own lines; it never prints uvicorn's "Uvicorn running on" (it hands uvicorn a bound socket).
    log("INFO", "entry.py", `Starting vLLM server on http://${options.host.includes(":") ? `[${options.host}]` : options.host}:${port}`);
    log("INFO", "launcher.py", "Available routes are:");
    for (const [route, method] of routes) {
        log("INFO", "launcher.py", `Route: ${route}, Methods: ${method}`);
    }
    uvicorn(`Started server process [${process.pid}]`);
    uvicorn("Waiting for application startup.");
    uvicorn("Application startup complete.");
    // vLLM's watchdog: an errored engine makes the API server exit at its next check, unless
    // VLLM_KEEP_ALIVE_ON_ENGINE_DEATH is set (launcher.py, terminate_if_errored).
    setInterval(() => {
        if (engine.dead && !keepAliveOnEngineDeath) {
            exit(" (the engine is dead)");
        }
    }, WATCHDOG_MS).unref();
}

const options = parseArgs(process.argv.slice(2), process.env);
main(options, (line) => process.stdout.write(`${line}\n`)).catch((err) => {
    process.stderr.write(`ERROR:    ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
});
