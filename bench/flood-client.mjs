// @ts-check
/**
 * A misbehaving client for bench/flood.ts: `concurrency` loops sending streamed completions with one key,
 * each starting its next request as soon as the last one ends, ignoring 429 and Retry-After, up to
 * `rate` attempts a second in all. Runs in a process of its own so that its work does not sit on the
 * measuring client's event loop. On SIGTERM it prints what it got, as JSON, and exits.
 *
 *   node bench/flood-client.mjs URL KEY CONCURRENCY RATE MAX_TOKENS
 */
import * as http from "http";

const [url, key, concurrencyArg, rateArg, maxTokensArg] = process.argv.slice(2);
if (!url || !key) {
    console.error("usage: flood-client.mjs URL KEY CONCURRENCY RATE MAX_TOKENS");
    process.exit(2);
}
const concurrency = Number(concurrencyArg ?? 32);
const rate = Number(rateArg ?? 400);
const maxTokens = Number(maxTokensArg ?? 64);
const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
const payload = JSON.stringify({ model: "m", prompt: "flood", max_tokens: maxTokens, stream: true });
/** @type {Record<string, number>} */
const statuses = {};
let attempts = 0;
let completeStreams = 0;
let stopping = false;
const started = Date.now();
let nextSlot = Date.now();

/** Waits for the next of `rate` attempt slots a second. */
async function slot() {
    const now = Date.now();
    nextSlot = Math.max(nextSlot + 1000 / rate, now);
    const wait = nextSlot - now;
    if (wait > 0) {
        await new Promise((r) => setTimeout(r, wait));
    }
}

/** @returns {Promise<void>} */
function attempt() {
    return new Promise((resolve) => {
        attempts += 1;
        const req = http.request(
            `${url}/v1/completions`,
            { method: "POST", agent, headers: { "content-type": "application/json", "content-length": Buffer.byteLength(payload), authorization: `Bearer ${key}` } },
            (res) => {
                const status = String(res.statusCode);
                statuses[status] = (statuses[status] ?? 0) + 1;
                let done = false;
                res.setEncoding("utf8");
                res.on("data", (chunk) => (done = done || chunk.includes("[DONE]")));
                res.on("end", () => {
                    if (done) {
                        completeStreams += 1;
                    }
                    resolve();
                });
                res.on("error", () => resolve());
            },
        );
        req.on("error", () => {
            statuses.error = (statuses.error ?? 0) + 1;
            resolve();
        });
        req.end(payload);
    });
}

async function loop() {
    while (!stopping) {
        await slot();
        if (!stopping) {
            await attempt();
        }
    }
}

process.on("SIGTERM", () => {
    stopping = true;
    const seconds = (Date.now() - started) / 1000;
    process.stdout.write(`${JSON.stringify({ attempts, seconds, attemptsPerSecond: attempts / seconds, statuses, completeStreams })}\n`, () => process.exit(0));
});

for (let i = 0; i < concurrency; i += 1) {
    void loop();
}
process.stdout.write("flooding\n");
