/**
 * The conformance checks: what a client, a balancer or Prometheus sees of a `vllm serve` server, as
 * functions of a target, so that the very same code observes real vLLM (its CPU build, in Docker) and
 * the stand-in (test/standin/server.mjs). Each check returns observations: a row name and a normalised
 * value (a status code, a body's shape, an error message, SSE framing facts, a metric's type and label
 * names...), never generated text, which the tiny model makes random. conformance.test.ts runs them all
 * against both servers and compares the values row by row.
 */
import * as fs from "fs";
import * as http from "http";
import { performance } from "perf_hooks";
import { type Response, type StreamResult, readResponse, request, sleep, stream } from "../support";

/** A server under test, real vLLM or the stand-in, with the same handles. */
export interface Target {
    /** Base URL, `http://127.0.0.1:PORT`. */
    url: string;
    /** The key it was started with (`--api-key`), if any. */
    apiKey?: string;
    /** Sends SIGTERM before its first await (a caller can read what ran at that moment), and resolves once the process has exited: its code (null if it did not exit) and how long it took. */
    stop(): Promise<{ code: number | null; ms: number }>;
    /** Kills the engine under the API server: vLLM's `VLLM::EngineCore` process, the stand-in's simulated engine. */
    killEngine(): Promise<void>;
    /** The exit code once the process has exited, or undefined if it still runs after `timeoutMs`. */
    waitExit(timeoutMs: number): Promise<number | undefined>;
    /** Everything the server logged so far. */
    logs(): Promise<string>;
    /** What a probe of its port saw while it loaded. */
    startup: { refused: number; answeredBefore: number[] };
}

/** Row name -> normalised observation. */
export type Observations = Record<string, string>;

/** Which server of each kind a check runs on (one server serves many checks; the last check of each ends it). */
export type Role = "plain" | "keyed" | "death";

export interface Check {
    name: string;
    role: Role;
    run(t: Target): Promise<Observations>;
}

/** Flags both servers get (the stand-in also takes stand-in knobs, see conformance.test.ts). */
export const MODEL = "tiny";
/** The tiny model's whole context (2048 positions): long requests are what keep the lifecycle checks' requests in flight. */
export const MAX_MODEL_LEN = 2048;
/** Tokens of a request that must still run when a lifecycle check acts (about 2 s on vLLM's CPU build, 4 s on the stand-in). */
export const LONG = 2000;
export const API_KEY = "conformance-key";
/** --shutdown-timeout of the keyed server, whose SIGTERM check drains. */
export const DRAIN_SECONDS = 12;
/** How long a lifecycle check waits for a request to end before it calls it hung and closes it. */
export const HANG_MS = 6000;
export const COMMON_ARGS = ["--served-model-name", MODEL, "--max-model-len", String(MAX_MODEL_LEN), "--enforce-eager"];
/** The plain server serves a LoRA adapter from its start and loads another at run time (VLLM_ALLOW_RUNTIME_LORA_UPDATING, set by the image). */
export const LORA_ARGS = ["--enable-lora", "--max-lora-rank", "8", "--max-loras", "1", "--lora-modules", "lora-a=/opt/models/lora-a"];
/** An adapter made with the tiny model (test/vllm/make_model.py), where the image keeps it; the stand-in reads no adapter. */
export const LORA_B_PATH = "/opt/models/lora-b";
export const ROLE_ARGS: Record<Role, string[]> = {
    plain: LORA_ARGS,
    keyed: ["--api-key", API_KEY, "--shutdown-timeout", String(DRAIN_SECONDS)],
    death: [],
};

// ---------------------------------------------------------------------------------------------------
// Normalisation.
// ---------------------------------------------------------------------------------------------------

const keys = (o: unknown): string => (o !== null && typeof o === "object" && !Array.isArray(o) ? `{${Object.keys(o).sort().join(",")}}` : JSON.stringify(o));

/** A JSON value's shape: objects as their sorted keys, arrays as [n], scalars as their type. */
function shape(o: unknown): string {
    if (Array.isArray(o)) {
        return `[${o.length}]`;
    }
    if (o === null) {
        return "null";
    }
    return typeof o === "object" ? keys(o) : typeof o;
}

/** A response body in a few words: empty, vLLM's error shapes in full, other JSON as its keys, text as its content type. */
export function body(r: Response): string {
    if (r.text === "") {
        return "empty";
    }
    if (r.json === undefined) {
        return `text (${String(r.headers["content-type"] ?? "no content-type")})`;
    }
    const j = r.json;
    if (j && typeof j === "object" && j.error && typeof j.error === "object") {
        const e = j.error;
        return `error ${e.type} param=${e.param} code=${e.code}: ${JSON.stringify(e.message)}` + (Object.keys(j).length > 1 || keys(e) !== "{code,message,param,type}" ? ` [keys ${keys(j)} ${keys(e)}]` : "");
    }
    if (j && typeof j === "object" && (typeof j.detail === "string" || typeof j.error === "string")) {
        return JSON.stringify(j);
    }
    return `json ${shape(j)}`;
}

/** Status and body, as one cell. */
export const answer = (r: Response): string => `${r.status} ${body(r)}`;

/** Status and the body's kind only (the error rows carry the messages). */
function kind(r: Response): string {
    if (r.text === "") {
        return `${r.status} empty`;
    }
    if (r.json === undefined) {
        return `${r.status} text`;
    }
    if (r.json?.error && typeof r.json.error === "object") {
        return `${r.status} error ${r.json.error.type}`;
    }
    return `${r.status} json ${shape(r.json)}`;
}

/** Response header names a client sees, without those of the moment (date) and the stand-in's replica id. */
function headerNames(r: { headers: http.IncomingHttpHeaders }): string {
    return Object.keys(r.headers)
        .filter((h) => h !== "date" && h !== "x-replica-id")
        .sort()
        .join(", ");
}

/** `cmpl-<16 hex>` and the like: an id's form. */
function idForm(id: unknown, requestId?: string): string {
    if (typeof id !== "string") {
        return `not a string: ${JSON.stringify(id)}`;
    }
    const m = /^([a-z]+-)(.*)$/.exec(id);
    if (!m) {
        return `other: ${id}`;
    }
    const rest = m[2]!;
    if (requestId !== undefined && rest === requestId) {
        return `${m[1]}<x-request-id>`;
    }
    return `${m[1]}${/^[0-9a-f]+$/.test(rest) ? `<${rest.length} hex>` : "<other>"}`;
}

const fingerprintForm = (f: unknown) => (typeof f === "string" ? f.replace(/^vllm-[^-]+-[0-9a-f]{8}$/, "vllm-<version>-<8 hex>") : JSON.stringify(f));

/** Every `data:` event's JSON (without [DONE]). */
const chunks = (r: StreamResult): any[] =>
    r.events
        .filter((e) => e.data !== "[DONE]")
        .map((e) => {
            try {
                return JSON.parse(e.data);
            } catch {
                return { unparsable: e.data };
            }
        });

/** The kind of an SSE chunk: role, token, finish(reason), usage, error(type/code). */
function chunkKind(c: any): string {
    if (c.error) {
        return `error ${c.error.type}/${c.error.code}`;
    }
    const choice = c.choices?.[0];
    if (Array.isArray(c.choices) && c.choices.length === 0) {
        return c.usage ? "usage" : "empty";
    }
    if (choice?.finish_reason) {
        return `finish(${choice.finish_reason})`;
    }
    if (choice?.delta?.role !== undefined) {
        return "role";
    }
    return "token";
}

/** The chunks of a stream in order, runs of the same kind compressed: `role, token x3, finish(length), usage, [DONE]`. */
function sequence(r: StreamResult, maxTokens?: number): string {
    const kinds = chunks(r).map(chunkKind);
    const out: string[] = [];
    for (let i = 0; i < kinds.length; ) {
        let j = i;
        while (j < kinds.length && kinds[j] === kinds[i]) {
            j += 1;
        }
        out.push(j - i > 1 ? `${kinds[i]} x${maxTokens !== undefined && kinds[i] === "token" && j - i === maxTokens - 1 ? "(max_tokens-1)" : j - i}` : kinds[i]!);
        i = j;
    }
    return [...out, ...(r.done ? ["[DONE]"] : [])].join(", ");
}

/** Whether an SSE body is only `data: ...` lines, each followed by a blank line, ending with `data: [DONE]`. */
function framing(text: string): string {
    const issues: string[] = [];
    if (!text.endsWith("\n\n")) {
        issues.push("does not end with a blank line");
    }
    const blocks = text.replace(/\n\n$/, "").split("\n\n");
    if (blocks.some((b) => !/^data: [^\n]+$/.test(b))) {
        issues.push(`blocks other than one "data: " line: ${JSON.stringify(blocks.find((b) => !/^data: [^\n]+$/.test(b))).slice(0, 80)}`);
    }
    if (blocks.at(-1) !== "data: [DONE]") {
        issues.push("last event is not [DONE]");
    }
    if (/\r/.test(text)) {
        issues.push("CR characters");
    }
    return issues.length === 0 ? 'one "data: <json>" line per event, events separated by a blank line, last "data: [DONE]"' : issues.join("; ");
}

/**
 * vLLM 0.32.0 ends a request its engine stops under it (SIGTERM with --shutdown-timeout 0) in one of
 * three ways, by a race in its shutdown: the engine's abort (`finish_reason: "abort"`, then [DONE]; a
 * plain request gets 200), its EngineDeadError (an error event then [DONE]; a plain request gets 500),
 * or not at all: the output handler is cancelled first and the request hangs until its client gives up
 * (uvicorn waits for it; under Docker, until SIGKILL). A stream that reaches it as the shutdown begins gets
 * 500 before any event (seen on a loaded machine). These are one outcome here.
 */
export const ABORTED = "aborted by the server: abort chunk or EngineDeadError event then [DONE], or left hanging (vLLM 0.32.0's shutdown race)";
/** A request to a dead engine: vLLM's route answers 500 InternalServerError (EngineDeadError), unless its watchdog has already stopped the server. */
export const DEAD_ENGINE_PLAIN = "500 InternalServerError (EngineDeadError), or no answer once the watchdog has stopped the server";
export const DEAD_ENGINE_HEALTH = "503 with an empty body, or no answer once the watchdog has stopped the server";
export const DEAD_ENGINE_STREAM = "500 InternalServerError as JSON, not an event stream, or no answer once the watchdog has stopped the server";
export const ABORTED_PLAIN = "aborted by the server: 200 finish_reason abort or 500 EngineDeadError, or left hanging (vLLM 0.32.0's shutdown race)";

/** How a stream ended, for the lifecycle checks: the last chunk's kind, whether [DONE] came, whether the response ended cleanly. */
export function ending(r: StreamResult | "hung", aborted = false): string {
    if (r === "hung") {
        return aborted ? ABORTED : "hung: no end within the wait";
    }
    if (r.status !== 200) {
        // A stream that reached the server as its shutdown began: 500 InternalServerError, not an event stream.
        return aborted && r.status === 500 ? ABORTED : `HTTP ${r.status}`;
    }
    const parsed = chunks(r);
    const kinds = parsed.map(chunkKind).filter((k) => k !== "usage");
    const last = kinds.at(-1) ?? "no chunk";
    const end = `${r.done ? "[DONE]" : "no [DONE]"}, ${r.complete ? "clean end" : "connection cut"}`;
    if (aborted && r.done && r.complete && (last === "finish(abort)" || last === "error InternalServerError/500")) {
        return ABORTED;
    }
    return `${last}, ${end}`;
}

/** The same for a non-streamed request. */
export function plainEnding(r: Response | Error | "hung", aborted = false): string {
    if (r === "hung") {
        return aborted ? ABORTED_PLAIN : "hung: no answer within the wait";
    }
    if (r instanceof Error) {
        return `no answer (${r.message.slice(0, 60)})`;
    }
    const fr = r.status === 200 ? r.json?.choices?.[0]?.finish_reason : undefined;
    if (aborted && ((r.status === 200 && fr === "abort") || (r.status === 500 && r.json?.error?.type === "InternalServerError"))) {
        return ABORTED_PLAIN;
    }
    return r.status === 200 ? `200 finish_reason=${fr}` : answer(r);
}

/** Waits up to `ms` for a promise; "hung" if it has not settled by then. */
async function within<T>(p: Promise<T>, ms: number): Promise<T | "hung"> {
    let timer: NodeJS.Timeout | undefined;
    const r = await Promise.race([p, new Promise<"hung">((resolve) => (timer = setTimeout(() => resolve("hung"), ms)))]);
    clearTimeout(timer);
    return r;
}

// ---------------------------------------------------------------------------------------------------
// Requests.
// ---------------------------------------------------------------------------------------------------

const auth = (t: Target, key = t.apiKey): Record<string, string> => (key ? { authorization: `Bearer ${key}` } : {});

function post(t: Target, path: string, b: unknown, headers: Record<string, string> = {}): Promise<Response> {
    return request(`${t.url}${path}`, { method: "POST", body: b, headers: { ...auth(t), ...headers }, agent: false, timeoutMs: 120_000 });
}

function get(t: Target, path: string, headers: Record<string, string> = {}): Promise<Response> {
    return request(`${t.url}${path}`, { headers: { ...auth(t), ...headers }, agent: false, timeoutMs: 120_000 });
}

/** A request with exactly these headers (no content-type added). */
function raw(t: Target, method: string, path: string, payload: Buffer | undefined, headers: Record<string, string>): Promise<Response> {
    const started = performance.now();
    return new Promise((resolve, reject) => {
        const req = http.request(`${t.url}${path}`, { method, agent: false, headers: { ...headers, ...(payload ? { "content-length": payload.length } : {}) } }, (res) =>
            readResponse(res, started).then(resolve, reject),
        );
        req.on("error", reject);
        req.end(payload);
    });
}

/** A POST whose connection the caller can close (`abort()`): the answer, or the error that ended it. */
function plainHandle(t: Target, path: string, b: unknown): { result: Promise<Response | Error>; abort(): void } {
    const payload = Buffer.from(JSON.stringify(b));
    let req!: http.ClientRequest;
    const started = performance.now();
    const result = new Promise<Response | Error>((resolve) => {
        req = http.request(`${t.url}${path}`, { method: "POST", agent: false, headers: { "content-type": "application/json", "content-length": payload.length, ...auth(t) } }, (res) =>
            readResponse(res, started).then(resolve, resolve),
        );
        req.on("error", (e) => resolve(e));
        req.end(payload);
    });
    return { result, abort: () => req.destroy() };
}

function sse(t: Target, path: string, b: unknown) {
    return stream(`${t.url}${path}`, b, { headers: auth(t), agent: false, timeoutMs: 60_000 });
}

const chat = (content: string) => [{ role: "user", content }];
/** A prompt of n token ids: the same count on both servers, whatever their tokenizers. */
const ids = (n: number) => Array.from({ length: n }, () => 354);
/** vLLM's tiny model may emit EOS; with ignore_eos it never stops early (the stand-in never does). */
const GEN = { model: MODEL, ignore_eos: true };

/**
 * A stream whose events are counted as they come, so a check can act after the n-th.
 */
function countedStream(t: Target, path: string, b: unknown) {
    let seen = 0;
    const waiters: Array<{ n: number; resolve: () => void }> = [];
    const h = stream(`${t.url}${path}`, b, {
        headers: auth(t),
        agent: false,
        timeoutMs: 120_000,
        onEvent: () => {
            seen += 1;
            for (const w of waiters.filter((w) => seen >= w.n)) {
                w.resolve();
            }
        },
    });
    let ended = false;
    void h.result.then(() => {
        ended = true;
        waiters.forEach((w) => w.resolve());
    });
    return {
        ...h,
        /** Events so far, and whether the stream has ended. */
        get seen() {
            return seen;
        },
        get ended() {
            return ended;
        },
        after(n: number): Promise<void> {
            return seen >= n || ended ? Promise.resolve() : new Promise((resolve) => waiters.push({ n, resolve }));
        },
    };
}

// ---------------------------------------------------------------------------------------------------
// Prometheus text.
// ---------------------------------------------------------------------------------------------------

interface Family {
    type: string;
    labels: Map<string, Set<string>>;
    les: string[];
}

/** Families by name (`# TYPE` lines) with the label names (and values) their samples carry. */
export function families(text: string): Map<string, Family> {
    const out = new Map<string, Family>();
    for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
        out.set(m[1]!, { type: m[2]!, labels: new Map(), les: [] });
    }
    const names = [...out.keys()].sort((a, b) => b.length - a.length);
    for (const line of text.split("\n")) {
        if (line === "" || line.startsWith("#")) {
            continue;
        }
        const m = /^([^{\s]+)(?:\{(.*)\})?\s+\S+/.exec(line);
        if (!m) {
            continue;
        }
        const sample = m[1]!;
        const name = out.has(sample) ? sample : names.find((n) => [`${n}_bucket`, `${n}_count`, `${n}_sum`, `${n}_total`, `${n}_created`].includes(sample));
        const family = name === undefined ? undefined : out.get(name);
        if (!family) {
            continue;
        }
        for (const l of (m[2] ?? "").matchAll(/([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
            if (l[1] === "le") {
                if (sample.endsWith("_bucket") && !family.les.includes(l[2]!)) {
                    family.les.push(l[2]!);
                }
                continue;
            }
            const values = family.labels.get(l[1]!) ?? new Set<string>();
            values.add(l[2]!);
            family.labels.set(l[1]!, values);
        }
    }
    return out;
}

/** Labels whose values are an enumeration worth comparing (not ids, sizes or config values). */
const ENUM_LABELS = new Set(["finished_reason", "reason", "source", "sleep_state", "status", "method"]);

function describeFamily(f: Family): string {
    const labels = [...f.labels.keys()].sort().map((l) => (ENUM_LABELS.has(l) ? `${l}=${[...f.labels.get(l)!].sort().join("|")}` : l));
    return `${f.type} {${labels.join(", ")}}`;
}

/** The `vllm:` metric names the project reads (monitoring, rollout scripts, benchmark): their rows must match. */
export function projectMetricNames(root: string): string[] {
    const files = ["components/monitoring/metrics.ts", "components/rollout/scripts/common.sh", "bench/routing.ts"];
    const names = new Set<string>();
    for (const f of files) {
        const text = fs.existsSync(`${root}/${f}`) ? fs.readFileSync(`${root}/${f}`, "utf8") : "";
        for (const m of text.matchAll(/vllm:[a-z0-9_]+(?:\([a-z0-9|]+\))?/g)) {
            const alt = /^(vllm:[a-z0-9_]*)\(([a-z0-9|]+)\)$/.exec(m[0]);
            for (const n of alt ? alt[2]!.split("|").map((x) => `${alt[1]}${x}`) : [m[0]]) {
                names.add(n);
            }
        }
    }
    return [...names].filter((n) => !n.endsWith("_")).sort();
}

// ---------------------------------------------------------------------------------------------------
// The checks.
// ---------------------------------------------------------------------------------------------------

/** Which paths exist and answer what, without a key (the plain server). */
const ENDPOINTS: Array<[string, string]> = [
    ["GET", "/health"],
    ["POST", "/health"],
    ["GET", "/ping"],
    ["POST", "/ping"],
    ["GET", "/version"],
    ["POST", "/version"],
    ["GET", "/load"],
    ["GET", "/metrics"],
    ["POST", "/metrics"],
    ["GET", "/v1/models"],
    ["POST", "/v1/models"],
    ["GET", "/tokenize"],
    ["POST", "/tokenize"],
    ["POST", "/detokenize"],
    ["GET", "/v1/completions"],
    ["POST", "/v1/completions"],
    ["GET", "/v1/chat/completions"],
    ["POST", "/v1/chat/completions"],
    ["POST", "/v1/responses"],
    ["POST", "/v1/messages"],
    ["GET", "/nope"],
    ["POST", "/nope"],
    ["GET", "/v1/nope"],
    ["GET", "/standin/kv-cache"],
];

export const CHECKS: Check[] = [
    {
        name: "startup",
        role: "plain",
        async run(t) {
            const s = t.startup;
            return {
                "startup: port while loading":
                    s.refused > 0 && s.answeredBefore.length === 0 ? "refused until ready, then /health 200" : `refused ${s.refused} times, answered ${JSON.stringify(s.answeredBefore)} before ready`,
            };
        },
    },
    {
        name: "endpoints",
        role: "plain",
        async run(t) {
            const o: Observations = {};
            for (const [method, path] of ENDPOINTS) {
                const r = method === "GET" ? await get(t, path) : await post(t, path, {});
                o[`endpoint: ${method} ${path}`] = kind(r);
            }
            const version = (await get(t, "/version")).json?.version;
            o["endpoint: /version value"] = typeof version === "string" ? `${/^\d+\.\d+\.\d+/.exec(version)?.[0] ?? version} (release part)` : JSON.stringify(version);
            const health = await get(t, "/health");
            o["headers: /health"] = headerNames(health);
            o["headers: JSON response"] = headerNames(await get(t, "/v1/models"));
            o["headers: /metrics content-type"] = String((await get(t, "/metrics")).headers["content-type"]);
            o["headers: /metrics content-type, Prometheus's Accept"] = String(
                (
                    await get(t, "/metrics", {
                        accept: "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
                    })
                ).headers["content-type"],
            );
            const models = (await get(t, "/v1/models")).json;
            o["/v1/models: entry"] = `${keys(models?.data?.[0])} id=${models?.data?.[0]?.id} root=${models?.data?.[0]?.root} max_model_len=${models?.data?.[0]?.max_model_len} owned_by=${models?.data?.[0]?.owned_by}`;
            const load = await get(t, "/load");
            o["endpoint: /load value"] = load.status === 200 ? JSON.stringify(load.json) : String(load.status);
            const tok = await post(t, "/tokenize", { model: MODEL, prompt: "hello world" });
            const intList = (x: unknown) => Array.isArray(x) && x.length > 0 && x.every((i) => Number.isInteger(i));
            o["tokenize: prompt"] =
                tok.status === 200
                    ? `200 ${keys(tok.json)} tokens: ${intList(tok.json.tokens) ? "a list of ints" : shape(tok.json.tokens)}, count = its length: ${tok.json.count === tok.json.tokens?.length}, max_model_len=${tok.json.max_model_len} token_strs=${JSON.stringify(tok.json.token_strs)}`
                    : answer(tok);
            const tokChat = await post(t, "/tokenize", { model: MODEL, messages: chat("hi") });
            o["tokenize: messages"] = tokChat.status === 200 ? `200 ${keys(tokChat.json)}` : answer(tokChat);
            if (tok.status === 200) {
                const detok = await post(t, "/detokenize", { model: MODEL, tokens: tok.json.tokens });
                o["detokenize: tokens of /tokenize"] = detok.status === 200 ? `200 ${keys(detok.json)} round trip ${detok.json.prompt === "hello world" ? "exact" : "differs"}` : answer(detok);
            } else {
                o["detokenize: tokens of /tokenize"] = "no tokens (/tokenize failed)";
            }
            o["tokenize: unknown model"] = answer(await post(t, "/tokenize", { model: "nope", prompt: "hello" }));
            return o;
        },
    },
    {
        name: "errors",
        role: "plain",
        async run(t) {
            const c = "/v1/completions";
            const h = "/v1/chat/completions";
            return {
                "error: invalid JSON (completions)": answer(await post(t, c, "{not json")),
                "error: invalid JSON (chat)": answer(await post(t, h, '{"model": "tiny", "messages": [}')),
                "error: JSON not an object": answer(await post(t, c, "[1, 2]")),
                "error: body not UTF-8": answer(await post(t, c, Buffer.from([0x7b, 0x22, 0x70, 0x72, 0x6f, 0x6d, 0x70, 0x74, 0x22, 0x3a, 0x20, 0x22, 0xff, 0x22, 0x7d]))),
                "error: no content-type": answer(await raw(t, "POST", c, Buffer.from('{"prompt": "hi", "max_tokens": 1}'), auth(t))),
                "error: max_tokens -1 (completions)": answer(await post(t, c, { ...GEN, prompt: "hello", max_tokens: -1 })),
                "error: max_tokens -1 (chat)": answer(await post(t, h, { ...GEN, messages: chat("hello"), max_tokens: -1 })),
                "error: max_tokens 1.5": answer(await post(t, c, { ...GEN, prompt: "hello", max_tokens: 1.5 })),
                "error: unknown model (completions)": answer(await post(t, c, { model: "nope", prompt: "hello", max_tokens: 2 })),
                "error: unknown model (chat)": answer(await post(t, h, { model: "nope", messages: chat("hello"), max_tokens: 2 })),
                "error: max_tokens over max-model-len": answer(await post(t, c, { ...GEN, prompt: "hello", max_tokens: 5000 })),
                "error: prompt over max-model-len (max-model-len + 1 token ids)": answer(await post(t, c, { ...GEN, prompt: ids(MAX_MODEL_LEN + 1), max_tokens: 2 })),
                "error: prompt over max-model-len (twice max-model-len token ids)": answer(await post(t, c, { ...GEN, prompt: ids(2 * MAX_MODEL_LEN), max_tokens: 2 })),
                "error: prompt of max-model-len token ids": answer(await post(t, c, { ...GEN, prompt: ids(MAX_MODEL_LEN), max_tokens: 2 })),
                "error: missing prompt": answer(await post(t, c, { model: MODEL, max_tokens: 2 })),
                "error: empty token list": answer(await post(t, c, { model: MODEL, prompt: [], max_tokens: 2 })),
                "error: missing messages": answer(await post(t, h, { model: MODEL, max_tokens: 2 })),
                "error: empty messages": answer(await post(t, h, { model: MODEL, messages: [], max_tokens: 2 })),
                "error: unknown path": answer(await get(t, "/nope")),
                "error: wrong method": answer(await get(t, c)),
            };
        },
    },
    {
        name: "generation",
        role: "plain",
        async run(t) {
            const o: Observations = {};
            const c = await post(t, "/v1/completions", { ...GEN, prompt: "hello world", max_tokens: 5 });
            o["completion: fields"] = `${c.status} ${keys(c.json)}`;
            o["completion: choice fields"] = keys(c.json?.choices?.[0]);
            o["completion: usage fields"] = keys(c.json?.usage);
            o["completion: max_tokens 5"] = `object=${c.json?.object} finish_reason=${c.json?.choices?.[0]?.finish_reason} completion_tokens=${c.json?.usage?.completion_tokens} total=prompt+completion ${c.json?.usage?.total_tokens === c.json?.usage?.prompt_tokens + c.json?.usage?.completion_tokens}`;
            o["completion: id"] = idForm(c.json?.id);
            o["completion: system_fingerprint"] = fingerprintForm(c.json?.system_fingerprint);
            o["completion: model"] = String(c.json?.model);
            const withId = await post(t, "/v1/completions", { ...GEN, prompt: "hello", max_tokens: 1 }, { "x-request-id": "conformance-1" });
            o["completion: id with X-Request-Id"] = `${idForm(withId.json?.id, "conformance-1")}, x-request-id echoed: ${withId.headers["x-request-id"] !== undefined}`;
            const dflt = await post(t, "/v1/completions", { ...GEN, prompt: "hello" });
            o["completion: default max_tokens"] = `completion_tokens=${dflt.json?.usage?.completion_tokens}`;
            const clamped = await post(t, "/v1/completions", { ...GEN, prompt: ids(MAX_MODEL_LEN - 24), max_tokens: 100 });
            o["completion: prompt + max_tokens over max-model-len (max-model-len - 24 ids, max_tokens 100)"] =
                clamped.status === 200 ? `200 finish_reason=${clamped.json.choices[0].finish_reason} completion_tokens=${clamped.json.usage.completion_tokens}` : answer(clamped);
            const batch = await post(t, "/v1/completions", { ...GEN, prompt: ["hello", "world"], max_tokens: 2 });
            o["completion: list of 2 prompts"] = batch.status === 200 ? `200 choices=${batch.json.choices.length}` : answer(batch);

            const d = await post(t, "/v1/chat/completions", { ...GEN, messages: chat("hello"), max_tokens: 5 });
            o["chat: fields"] = `${d.status} ${keys(d.json)}`;
            o["chat: choice fields"] = keys(d.json?.choices?.[0]);
            o["chat: message fields"] = keys(d.json?.choices?.[0]?.message);
            o["chat: max_tokens 5"] = `object=${d.json?.object} role=${d.json?.choices?.[0]?.message?.role} finish_reason=${d.json?.choices?.[0]?.finish_reason} completion_tokens=${d.json?.usage?.completion_tokens}`;
            o["chat: id"] = idForm(d.json?.id);
            const mct = await post(t, "/v1/chat/completions", { ...GEN, messages: chat("hello"), max_completion_tokens: 3 });
            o["chat: max_completion_tokens 3"] = `completion_tokens=${mct.json?.usage?.completion_tokens}`;
            // A long message, so that the rest of the context is a few hundred tokens, not a thousand.
            const dchat = await post(t, "/v1/chat/completions", { ...GEN, messages: chat("hello world ".repeat(650)) });
            const u = dchat.json?.usage;
            o["chat: default max_tokens"] = u ? (u.completion_tokens === MAX_MODEL_LEN - u.prompt_tokens ? "the rest of the context (max-model-len - prompt)" : `completion_tokens=${u.completion_tokens}`) : answer(dchat);
            return o;
        },
    },
    {
        name: "streams",
        role: "plain",
        async run(t) {
            const o: Observations = {};
            const c = await sse(t, "/v1/completions", { ...GEN, prompt: "hello world", max_tokens: 4, stream: true, stream_options: { include_usage: true } }).result;
            const cc = chunks(c);
            o["SSE completions: status, content-type"] = `${c.status} ${c.headers["content-type"]}`;
            o["SSE completions: headers"] = headerNames(c);
            o["SSE completions: framing"] = framing(c.text);
            o["SSE completions: chunks (max_tokens 4, include_usage)"] = sequence(c, 4);
            o["SSE completions: token chunk fields"] = `${keys(cc[0])} choice ${keys(cc[0]?.choices?.[0])}`;
            const cfin = cc.find((x) => x.choices?.[0]?.finish_reason);
            o["SSE completions: finish chunk fields"] = `${keys(cfin)} choice ${keys(cfin?.choices?.[0])}`;
            const cu = cc.find((x) => Array.isArray(x.choices) && x.choices.length === 0);
            o["SSE completions: usage chunk"] = cu ? `${keys(cu)} usage ${keys(cu.usage)} completion_tokens=${cu.usage?.completion_tokens}` : "none";
            o["SSE completions: ids and model"] = `${[...new Set(cc.map((x) => idForm(x.id)))].join(" ")}; one id: ${new Set(cc.map((x) => x.id)).size === 1}; model ${[...new Set(cc.map((x) => x.model))].join(" ")}`;

            const h = await sse(t, "/v1/chat/completions", { ...GEN, messages: chat("hello"), max_tokens: 4, stream: true, stream_options: { include_usage: true } }).result;
            const hc = chunks(h);
            o["SSE chat: status, content-type"] = `${h.status} ${h.headers["content-type"]}`;
            o["SSE chat: framing"] = framing(h.text);
            o["SSE chat: chunks (max_tokens 4, include_usage)"] = sequence(h, 4);
            o["SSE chat: first chunk"] = `${keys(hc[0])} choice ${keys(hc[0]?.choices?.[0])} delta ${JSON.stringify(hc[0]?.choices?.[0]?.delta)}`;
            o["SSE chat: token chunk fields"] = `${keys(hc[1])} choice ${keys(hc[1]?.choices?.[0])} delta ${keys(hc[1]?.choices?.[0]?.delta)}`;
            const hfin = hc.find((x) => x.choices?.[0]?.finish_reason);
            o["SSE chat: finish chunk fields"] = `${keys(hfin)} choice ${keys(hfin?.choices?.[0])}`;
            const hu = hc.find((x) => Array.isArray(x.choices) && x.choices.length === 0);
            o["SSE chat: usage chunk"] = hu ? `${keys(hu)} usage ${keys(hu.usage)} completion_tokens=${hu.usage?.completion_tokens}` : "none";
            o["SSE chat: ids and model"] = `${[...new Set(hc.map((x) => idForm(x.id)))].join(" ")}; one id: ${new Set(hc.map((x) => x.id)).size === 1}; model ${[...new Set(hc.map((x) => x.model))].join(" ")}`;

            const plain = await sse(t, "/v1/chat/completions", { ...GEN, messages: chat("hello"), max_tokens: 3, stream: true }).result;
            o["SSE chat: chunks without include_usage (max_tokens 3)"] = sequence(plain, 3);
            const err = await sse(t, "/v1/completions", { model: "nope", prompt: "hello", max_tokens: 2, stream: true }).result;
            o["SSE: error before the stream starts (unknown model)"] = `${err.status} ${err.headers["content-type"]} ${err.text.startsWith("{") ? "JSON body" : "event stream"}`;
            return o;
        },
    },
    {
        name: "client abort",
        role: "plain",
        async run(t) {
            const abortedBefore = await abortCount(t);
            const h = countedStream(t, "/v1/completions", { ...GEN, prompt: "hello", max_tokens: LONG, stream: true });
            await h.after(1);
            h.abort();
            await h.result;
            await sleep(1000);
            const running = metricSample(await (await get(t, "/metrics")).text, "vllm:num_requests_running");
            const abortedAfter = await abortCount(t);
            return {
                "metrics: a client disconnect in request_success_total{finished_reason=abort}": abortedAfter > abortedBefore ? "counted" : "not counted",
                "metrics: num_requests_running after a client disconnect": String(running),
            };
        },
    },
    {
        name: "lora",
        role: "plain",
        async run(t) {
            const o: Observations = {};
            const load = (b: unknown) => post(t, "/v1/load_lora_adapter", b);
            const unload = (b: unknown) => post(t, "/v1/unload_lora_adapter", b);
            const plainAnswer = (r: Response) => `${r.status} ${r.json === undefined ? `${JSON.stringify(r.text)} content-type=${r.headers["content-type"] ?? "none"}` : body(r)}`;
            const card = (await get(t, "/v1/models")).json?.data?.find((m: { id: string }) => m.id === "lora-a");
            o["lora: /v1/models entry of a --lora-modules adapter"] = card ? `${keys(card)} root=${card.root} parent=${card.parent} max_model_len=${card.max_model_len}` : "absent";
            o["lora: load"] = plainAnswer(await load({ lora_name: "lora-b", lora_path: LORA_B_PATH }));
            o["lora: load it again"] = plainAnswer(await load({ lora_name: "lora-b", lora_path: LORA_B_PATH }));
            o["lora: load it again in place"] = plainAnswer(await load({ lora_name: "lora-b", lora_path: LORA_B_PATH, load_inplace: true }));
            o["lora: load under the base model's name"] = plainAnswer(await load({ lora_name: MODEL, lora_path: LORA_B_PATH }));
            o["lora: load without lora_path"] = plainAnswer(await load({ lora_name: "lora-c" }));
            o["lora: load with an empty lora_path"] = plainAnswer(await load({ lora_name: "lora-c", lora_path: "" }));
            const listed = (await get(t, "/v1/models")).json?.data?.map((m: { id: string; parent: string | null }) => `${m.id}<${m.parent}`);
            o["lora: /v1/models after the loads"] = JSON.stringify(listed);
            const c = await post(t, "/v1/completions", { ...GEN, model: "lora-b", prompt: "hello", max_tokens: 2 });
            o["lora: completion with an adapter loaded at run time"] = c.status === 200 ? `200 model=${c.json.model}` : answer(c);
            const h = await sse(t, "/v1/chat/completions", { ...GEN, model: "lora-a", messages: chat("hello"), max_tokens: 2, stream: true }).result;
            o["lora: stream with a --lora-modules adapter"] = `${h.status} model ${[...new Set(chunks(h).map((x) => x.model))].join(" ")}`;

            // --max-loras 1: while a request runs with lora-a, one for lora-b waits (deferred), and one for the base model does not.
            // What is read counts only while lora-a's stream still runs: on a busy machine it may have ended (or failed)
            // before the reading, and then the scenario is run again, at most three times.
            let long!: ReturnType<typeof countedStream>;
            let other!: ReturnType<typeof plainHandle>;
            let base!: Response;
            let during = "";
            let running = false;
            for (let attempt = 0; attempt < 3 && !running; attempt += 1) {
                if (attempt > 0) {
                    long.abort();
                    await long.result;
                    await other.result;
                }
                long = countedStream(t, "/v1/completions", { ...GEN, model: "lora-a", prompt: "hello", max_tokens: LONG, stream: true });
                await long.after(1);
                other = plainHandle(t, "/v1/completions", { ...GEN, model: "lora-b", prompt: "hello", max_tokens: 2 });
                base = await post(t, "/v1/completions", { ...GEN, prompt: "hello", max_tokens: 2 });
                await sleep(500);
                const before = long.seen;
                // vLLM's gauges follow its scheduler's steps and its output loop, which lag on a busy machine: read
                // them again (for up to 5 s) until they show the waiting adapter, or give the last reading.
                for (let reading = 0; reading < 20; reading += 1) {
                    during = (await get(t, "/metrics")).text;
                    if (Number(metricSample(during, "vllm:num_requests_waiting_by_reason", 'reason="deferred"')) >= 1) {
                        break;
                    }
                    await sleep(250);
                }
                await long.after(before + 1);
                running = !long.ended;
            }
            o["lora: max_loras 1, another adapter's request while one runs"] = !running
                ? `lora-a's stream did not keep running in 3 tries (${long.seen} events)`
                : `waiting deferred=${metricSample(during, "vllm:num_requests_waiting_by_reason", 'reason="deferred"')} capacity=${metricSample(during, "vllm:num_requests_waiting_by_reason", 'reason="capacity"')}` +
                  `; the base model's request meanwhile: ${base.status}`;
            // Each label set the gauge has been set with, and the newest: what the series say of the adapters in flight.
            const info = during
                .split("\n")
                .filter((l) => l.startsWith("vllm:lora_requests_info{"))
                .map((l) => ({ labels: l.slice(l.indexOf("{"), l.lastIndexOf("}") + 1), at: Number(l.split(" ").at(-1)) }));
            const newest = [...info].sort((x, y) => y.at - x.at)[0];
            o["lora: lora_requests_info while lora-a runs and lora-b waits"] = newest
                ? `newest ${newest.labels}, set to the time: ${Math.abs(newest.at - Date.now() / 1000) < 60}; all: ${info
                      .map((i) => i.labels)
                      .sort()
                      .join(" ")}`
                : "no series";
            long.abort();
            await long.result;
            const after = await other.result;
            o["lora: the waiting request once the adapter's batch ended"] = after instanceof Error ? after.message : `${after.status} model=${after.json?.model}`;

            o["lora: unload"] = plainAnswer(await unload({ lora_name: "lora-b" }));
            o["lora: unload it again"] = plainAnswer(await unload({ lora_name: "lora-b" }));
            o["lora: unload without lora_name"] = plainAnswer(await unload({}));
            o["lora: completion with an unloaded adapter"] = answer(await post(t, "/v1/completions", { ...GEN, model: "lora-b", prompt: "hello", max_tokens: 2 }));
            // Last: the stand-in reads no adapter, and loads any path (test/standin/README.md).
            o["lora: load a path with no adapter"] = plainAnswer(await load({ lora_name: "lora-missing", lora_path: "/nope" }));
            return o;
        },
    },
    {
        name: "metrics",
        role: "plain",
        async run(t) {
            const text = (await get(t, "/metrics")).text;
            const fams = families(text);
            const o: Observations = {};
            const created = [...fams.keys()].filter((n) => n.endsWith("_created") && fams.get(n)!.type === "gauge");
            const counted = [...fams.entries()].filter(([n, f]) => (f.type === "counter" || f.type === "histogram" || f.type === "summary") && (n.startsWith("vllm:") || n.startsWith("http_")));
            const withCreated = counted.filter(([n, f]) => fams.has(`${f.type === "counter" ? n.replace(/_total$/, "") : n}_created`));
            o["metrics: *_created gauges"] = created.length === 0 ? "none" : withCreated.length === counted.length ? "one per counter, histogram and summary" : `${withCreated.length} of ${counted.length} counters, histograms and summaries`;
            for (const [name, f] of fams) {
                if (!name.startsWith("vllm:") || created.includes(name)) {
                    continue;
                }
                o[`metric: ${name}`] = describeFamily(f);
            }
            for (const name of ["http_requests_total", "http_request_duration_seconds", "http_request_duration_highr_seconds", "http_request_size_bytes", "http_response_size_bytes"]) {
                const f = fams.get(name);
                o[`metric: ${name}`] = f ? describeFamily(f) : "absent";
            }
            for (const name of projectMetricNames(`${__dirname}/../..`)) {
                const f = fams.get(name);
                o[`metric: ${name}`] = f ? describeFamily(f) : "absent";
            }
            for (const name of ["vllm:time_to_first_token_seconds", "vllm:inter_token_latency_seconds", "vllm:e2e_request_latency_seconds", "vllm:request_queue_time_seconds"]) {
                o[`metric buckets: ${name}`] = fams.get(name)?.les.join(" ") ?? "absent";
            }
            const handlers = fams.get("http_requests_total")?.labels.get("handler");
            o["metrics: http_requests_total handlers seen"] = handlers ? [...handlers].sort().join(" ") : "absent";
            return o;
        },
    },
    {
        name: "SIGTERM, default (--shutdown-timeout 0)",
        role: "plain",
        async run(t) {
            // Four streams and a plain request of LONG tokens each (a batch is slower than one request), and
            // SIGTERM at the first token: what vLLM does to those still running when its shutdown begins.
            const streams = [0, 1, 2, 3].map((i) => countedStream(t, "/v1/completions", { ...GEN, prompt: `hello ${i}`, max_tokens: LONG, stream: true, stream_options: { include_usage: true } }));
            const plain = plainHandle(t, "/v1/completions", { ...GEN, prompt: "hello there", max_tokens: LONG });
            await streams[0]!.after(1);
            const stopping = t.stop();
            // A request vLLM leaves hanging is given up after HANG_MS, as a client (or Docker's SIGKILL) would.
            const results = await Promise.all(streams.map((h) => within(h.result, HANG_MS)));
            const p = await within(plain.result, 1000);
            streams.forEach((h, i) => results[i] === "hung" && h.abort());
            if (p === "hung") {
                plain.abort();
            }
            const exit = await stopping;
            const hung = results.includes("hung") || p === "hung";
            // Those that finished before the server acted on the signal (a loaded machine) say nothing about it.
            const finished = (x: StreamResult | "hung") => x !== "hung" && /^finish\(length\), \[DONE\], clean end$/.test(ending(x));
            const cut = results.filter((x) => !finished(x));
            const plainCut = !(p !== "hung" && !(p instanceof Error) && p.status === 200 && p.json?.choices?.[0]?.finish_reason === "length");
            return {
                "SIGTERM default: requests still running when the server acted": cut.length > 0 || plainCut ? "some" : "none",
                "SIGTERM default: in-flight stream": cut.length > 0 ? [...new Set(cut.map((x) => ending(x, true)))].join(" | ") : "none was in flight",
                "SIGTERM default: in-flight plain request": plainCut ? plainEnding(p, true) : "not in flight",
                "SIGTERM default: exit":
                    exit.code === null ? "did not exit" : `code ${exit.code}, ${exit.ms < 15_000 || hung ? "once its in-flight requests have ended (at once, or when a hung one's client gives up)" : `after ${(exit.ms / 1000).toFixed(0)} s`}`,
            };
        },
    },
    {
        name: "api key",
        role: "keyed",
        async run(t) {
            const o: Observations = {};
            const bodies: Record<string, unknown> = {
                "/tokenize": { model: MODEL, prompt: "hello" },
                "/detokenize": { model: MODEL, tokens: [1] },
                "/v1/completions": { ...GEN, prompt: "hello", max_tokens: 1 },
                "/v1/chat/completions": { ...GEN, messages: chat("hello"), max_tokens: 1 },
            };
            const paths = ["/health", "/ping", "/version", "/load", "/metrics", "/tokenize", "/detokenize", "/v1/models", "/v1/completions", "/v1/chat/completions", "/v1/nope", "/nope"];
            for (const path of paths) {
                const statuses: number[] = [];
                for (const key of [undefined, "wrong", API_KEY]) {
                    const headers: Record<string, string> = key ? { authorization: `Bearer ${key}` } : {};
                    const r = path in bodies ? await raw(t, "POST", path, Buffer.from(JSON.stringify(bodies[path])), { "content-type": "application/json", ...headers }) : await raw(t, "GET", path, undefined, headers);
                    statuses.push(r.status);
                }
                o[`api-key: ${path in bodies ? "POST" : "GET"} ${path} (none / wrong / right key)`] = statuses.join(" / ");
            }
            const denied = await raw(t, "GET", "/v1/models", undefined, {});
            o["api-key: 401 answer"] = `${answer(denied)}; headers ${headerNames(denied)}`;
            o["api-key: scheme in lower case (bearer KEY)"] = String((await raw(t, "GET", "/v1/models", undefined, { authorization: `bearer ${API_KEY}` })).status);
            o["api-key: OPTIONS /v1/models without a key"] = String((await raw(t, "OPTIONS", "/v1/models", undefined, {})).status);
            const refused = async () => metricSample((await raw(t, "GET", "/metrics", undefined, {})).text, "http_requests_total", 'handler="/v1/models",method="GET",status="4xx"') || 0;
            const before = await refused();
            await raw(t, "GET", "/v1/models", undefined, {});
            o["api-key: 401s in http_requests_total"] = (await refused()) > before ? "counted" : "not counted";
            return o;
        },
    },
    {
        name: `SIGTERM, --shutdown-timeout ${DRAIN_SECONDS}`,
        role: "keyed",
        async run(t) {
            const h = countedStream(t, "/v1/completions", { ...GEN, prompt: "hello", max_tokens: LONG, stream: true });
            let streamEnd = NaN;
            void h.result.then(() => (streamEnd = performance.now()));
            await h.after(1);
            const t0 = performance.now();
            // Both targets send SIGTERM before stop's first await: whether the stream still ran is read at once.
            // (Read after the drain's log line, a loaded machine's lag could outlast vLLM's 2 s of tokens.)
            const exit = t.stop();
            const stillStreaming = Number.isNaN(streamEnd);
            // Once the engine says it drains, while the in-flight stream still runs: what new requests get.
            // (The stand-in before vLLM 0.32.0's lines said only its own "SIGTERM received ... draining".)
            const drainSeen = await waitForLog(t, /\[shutdown\] EngineCore: start mode=drain|SIGTERM received: shutting down \(grace [1-9]/, 10_000);
            const [late, lateStream, lateTokenize, health] = await Promise.all([
                request(`${t.url}/v1/completions`, { body: { ...GEN, prompt: "late", max_tokens: 2 }, headers: auth(t), agent: false, timeoutMs: HANG_MS }).then(
                    (r) => (r.status === 200 ? `200 finish_reason=${r.json?.choices?.[0]?.finish_reason} completion_tokens=${r.json?.usage?.completion_tokens}` : answer(r)),
                    (e: Error) => `no answer (${e.message.slice(0, 40)})`,
                ),
                (async () => {
                    const lh = sse(t, "/v1/completions", { ...GEN, prompt: "late", max_tokens: 2, stream: true });
                    const x = await within(lh.result, HANG_MS);
                    if (x === "hung") {
                        lh.abort();
                    }
                    return x === "hung" ? "hung: no end within the wait" : x.status === 200 ? sequence(x) : `${x.status} ${String(x.headers["content-type"])}: ${x.text.slice(0, 160)}`;
                })(),
                post(t, "/tokenize", { model: MODEL, prompt: "late" }).then(answer, (e: Error) => `no answer (${e.message.slice(0, 40)})`),
                get(t, "/health").then(
                    (r) => String(r.status),
                    (e: Error) => `no answer (${e.message.slice(0, 40)})`,
                ),
            ]);
            const r = await within(h.result, (DRAIN_SECONDS + 5) * 1000);
            if (r === "hung") {
                h.abort();
            }
            const done = await exit;
            const streamEndedMs = streamEnd - t0;
            return {
                "SIGTERM drain: the in-flight stream still ran when the drain began": drainSeen ? (stillStreaming ? "yes" : "no, it had ended") : "no drain line in the log",
                "SIGTERM drain: /health while draining": health,
                "SIGTERM drain: new request while draining": late,
                "SIGTERM drain: new stream while draining": lateStream,
                "SIGTERM drain: /tokenize while draining": lateTokenize,
                "SIGTERM drain: in-flight stream": ending(r),
                "SIGTERM drain: exit":
                    done.code === null
                        ? "did not exit"
                        : `code ${done.code}, ${r === "hung" ? "with the in-flight stream hung" : done.ms < streamEndedMs ? "before the in-flight stream ended" : done.ms <= (DRAIN_SECONDS + 10) * 1000 ? "after the in-flight stream ended, within the timeout (+10 s)" : `after ${(done.ms / 1000).toFixed(0)} s`}`,
            };
        },
    },
    {
        name: "engine death",
        role: "death",
        async run(t) {
            const h = countedStream(t, "/v1/completions", { ...GEN, prompt: "hello", max_tokens: LONG, stream: true });
            const plain = plainHandle(t, "/v1/completions", { ...GEN, prompt: "hello there", max_tokens: LONG });
            await h.after(1);
            const t0 = performance.now();
            await t.killEngine();
            const r = await within(h.result, HANG_MS);
            const p = await within(plain.result, 1000);
            if (r === "hung") {
                h.abort();
            }
            if (p === "hung") {
                plain.abort();
            }
            // At once, before the watchdog (every 5 s) stops the server: what a request to a dead engine gets.
            const next = await request(`${t.url}/v1/completions`, { body: { ...GEN, prompt: "after", max_tokens: 2 }, agent: false, timeoutMs: HANG_MS }).then(
                (x) => (x.status === 500 && x.json?.error?.type === "InternalServerError" ? DEAD_ENGINE_PLAIN : answer(x)),
                (e: Error) => (/ECONNREFUSED|socket hang up|ECONNRESET/.test(e.message) ? DEAD_ENGINE_PLAIN : `no answer (${e.message.slice(0, 40)})`),
            );
            const nextHandle = sse(t, "/v1/completions", { ...GEN, prompt: "after", max_tokens: 2, stream: true });
            const nextStream = await within(nextHandle.result, HANG_MS);
            if (nextStream === "hung") {
                nextHandle.abort();
            }
            // 503, unless the watchdog has stopped the server meanwhile: one outcome.
            const dead = (x: Response) => (x.status === 503 && x.text === "" ? DEAD_ENGINE_HEALTH : answer(x));
            const gone = (e: Error) => (/ECONNREFUSED|socket hang up|ECONNRESET/.test(e.message) ? DEAD_ENGINE_HEALTH : `no answer (${e.message.slice(0, 40)})`);
            const health = await get(t, "/health").then(dead, gone);
            const ping = await get(t, "/ping").then(dead, gone);
            const code = await t.waitExit(30_000);
            const ms = performance.now() - t0;
            const streamError = r === "hung" ? undefined : r.events.find((e) => e.data.startsWith('{"error"'));
            const nextStreamSeen =
                nextStream === "hung"
                    ? "hung: no end within the wait"
                    : nextStream.status === 500 && /"type":\s*"InternalServerError"/.test(nextStream.text) && !nextStream.text.startsWith("data:")
                      ? DEAD_ENGINE_STREAM
                      : nextStream.status === 0 && /ECONNREFUSED|socket hang up|ECONNRESET/.test(nextStream.error ?? "")
                        ? DEAD_ENGINE_STREAM
                        : `${nextStream.status} ${nextStream.text.slice(0, 200)}`;
            return {
                "engine death: in-flight stream": r === "hung" ? "hung: no end within the wait" : `${sequence(r).replace(/^token(?: x\d+)?, /, "tokens..., ")}, ${r.complete ? "clean end" : "connection cut"}`,
                "engine death: stream error event, as sent": streamError ? streamError.data : "none",
                "engine death: in-flight plain request": p === "hung" ? "hung: no answer within the wait" : p instanceof Error ? `no answer (${p.message.slice(0, 40)})` : answer(p),
                "engine death: new request": next,
                "engine death: new stream": nextStreamSeen,
                "engine death: /health after": health,
                "engine death: /ping after": ping,
                "engine death: exit": code === undefined ? "still running 30 s later" : `code ${code}, ${ms < 20_000 ? "on its own, at its watchdog's next check (every 5 s; < 20 s)" : `after ${(ms / 1000).toFixed(0)} s`}`,
            };
        },
    },
];

/** The log rows, from the plain server's log once it has exited. */
export function logObservations(log: string): Observations {
    const line = (re: RegExp) => log.split("\n").find((l) => re.test(l));
    const norm = (l: string | undefined) =>
        l === undefined
            ? "absent"
            : l
                  .replace(/\(APIServer pid=\d+\)/, "(APIServer pid=<pid>)")
                  .replace(/\d\d-\d\d \d\d:\d\d:\d\d/, "<time>")
                  .replace(/\[([a-z_]+\.py):\d+\]/, "[$1]")
                  .replace(/http:\/\/[^\s:]+:\d+/, "http://<host>:<port>")
                  .replace(/\[\d+\]/, "[<pid>]")
                  .replace(/\d+\.\d+\.\d+\.\d+:\d+ -/, "<client> -");
    return {
        "log: serving line": norm(line(/Starting vLLM .*on http/)),
        "log: route lines": norm(line(/Route: \/health, Methods/)),
        "log: uvicorn start line": norm(line(/Started server process/)),
        "log: access line": norm(line(/"GET \/health HTTP\/1\.1" 200/)),
        "log: SIGTERM": norm(line(/\[shutdown\] API server: shutdown triggered|SIGTERM received/)),
    };
}

/** Waits until the server's log has a line matching `re` (false after `timeoutMs`). */
async function waitForLog(t: Target, re: RegExp, timeoutMs: number): Promise<boolean> {
    const deadline = performance.now() + timeoutMs;
    while (performance.now() < deadline) {
        if (re.test(await t.logs())) {
            return true;
        }
        await sleep(50);
    }
    return false;
}

async function abortCount(t: Target): Promise<number> {
    return metricSample((await get(t, "/metrics")).text, "vllm:request_success_total", 'finished_reason="abort"');
}

function metricSample(text: string, name: string, contains = ""): number {
    const l = text.split("\n").find((x) => x.startsWith(`${name}{`) && x.includes(contains));
    return l ? Number(l.split(" ").at(-1)) : NaN;
}

// ---------------------------------------------------------------------------------------------------
// The table.
// ---------------------------------------------------------------------------------------------------

export interface Row {
    check: string;
    vllm: string;
    standin: string;
    same: boolean;
}

export function compare(vllm: Observations, standin: Observations): Row[] {
    const names = [...new Set([...Object.keys(vllm), ...Object.keys(standin)])];
    return names.map((check) => {
        const v = vllm[check] ?? "—";
        const s = standin[check] ?? "—";
        return { check, vllm: v, standin: s, same: v === s };
    });
}

const cell = (s: string, width: number) => (s.length > width ? `${s.slice(0, width - 1)}…` : s).replace(/\|/g, "\\|");

/** `check | vLLM 0.32.0 | stand-in | same?`, cells cut at `width` (the full values of differing rows follow the table). */
export function renderTable(rows: Row[], width = 90): string {
    const lines = ["| check | vLLM 0.32.0 | stand-in | same? |", "|---|---|---|---|"];
    for (const r of rows) {
        lines.push(`| ${cell(r.check, 80)} | ${cell(r.vllm, width)} | ${cell(r.standin, width)} | ${r.same ? "yes" : "NO"} |`);
    }
    const differing = rows.filter((r) => !r.same);
    lines.push("", `${rows.length} rows, ${differing.length} differ.`);
    if (differing.length > 0) {
        lines.push("", "Differences in full:");
        for (const r of differing) {
            lines.push(`- ${r.check}`, `    vLLM 0.32.0: ${r.vllm}`, `    stand-in:    ${r.standin}`);
        }
    }
    return lines.join("\n");
}

/** The check names of the "Differences from vLLM" table in test/standin/README.md (first column, backticks removed). */
export function readmeDifferences(readme: string): string[] {
    const at = readme.search(/^## Differences from vLLM\s*$/m);
    if (at < 0) {
        return [];
    }
    const rest = readme.slice(at).split("\n").slice(1);
    const start = rest.findIndex((l) => l.startsWith("|"));
    if (start < 0) {
        return [];
    }
    const out: string[] = [];
    for (const l of rest.slice(start + 2)) {
        if (!l.startsWith("|")) {
            break;
        }
        const first = l.split(/(?<!\\)\|/)[1]!.trim();
        out.push(first.replace(/^`|`$/g, "").replace(/\\\|/g, "|"));
    }
    return out;
}
