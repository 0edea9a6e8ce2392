/**
 * The hostile battery: what a client can throw at the balancer's public port, each case answered with
 * nginx's or vLLM's clear error, and none of it costing another client anything. Real nginx on the
 * rendered config (client keys on, a 1 MB body limit), stand-in replicas with their access log on (so a
 * test sees which requests reached a replica: every hostile request carries a marker in its URL), and a
 * bystander key streaming all along; the last test checks the bystander's streams.
 *
 * Raw sockets where no HTTP client would send the request: trickled headers and bodies, conflicting
 * framing, dot segments.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
    type EdgeBalancer,
    type RawExchange,
    type StandIn,
    gaps,
    nginxVersion,
    percentile,
    rawExchange,
    request,
    sleep,
    startEdgeBalancer,
    startStandIn,
    stopAll,
    stream,
    tokenEvents,
    type StreamResult,
} from "../support";

const MALLORY = { name: "mallory", key: "mallory-key-0123456789" };
const CAROL = { name: "carol", key: "carol-key-abcdefghijklmn" };
const KEY = `Authorization: Bearer ${MALLORY.key}\r\n`;
const ITL_MS = 20;
const BYSTANDER_TOKENS = 16;

let replicas: StandIn[] = [];
let b: EdgeBalancer;
/** The bystander's streams: before the battery (baseline) and during it. */
const bystander: { before: StreamResult[]; during: StreamResult[]; phase: "before" | "during" | "stop" } = { before: [], during: [], phase: "before" };
let bystanderLoops: Promise<void>[] = [];
let cases = 0;

beforeAll(async () => {
    nginxVersion();
    replicas = await Promise.all([0, 1].map((i) => startStandIn({ replicaId: `r${i}`, args: ["--served-model-name", "m", "--itl-ms", String(ITL_MS)] })));
    b = await startEdgeBalancer({ upstreamPorts: replicas.map((r) => r.port), clients: [MALLORY, CAROL], overrides: { maxBodyBytes: 1024 * 1024 } });
    const loop = async () => {
        while (bystander.phase !== "stop") {
            const phase = bystander.phase;
            const r = await stream(`${b.url}/v1/completions`, { model: "m", prompt: "bystander", max_tokens: BYSTANDER_TOKENS, stream: true }, { agent: false, headers: { authorization: `Bearer ${CAROL.key}` }, timeoutMs: 20_000 }).result;
            bystander[phase].push(r);
        }
    };
    bystanderLoops = [loop(), loop()];
    await sleep(3000);
    bystander.phase = "during";
}, 60_000);

afterAll(async () => {
    bystander.phase = "stop";
    await Promise.all(bystanderLoops);
    await b?.stop();
    await stopAll(replicas);
});

/** Whether any replica logged a request whose URL carries `marker`. */
const reached = (marker: string) => replicas.some((r) => r.output().includes(marker));
const metricsLeaked = (x: { text: string }) => /vllm:|# HELP|# TYPE/.test(x.text);

/** One raw HTTP/1.1 request with mallory's key, `Connection: close`. */
function raw(requestLine: string, headers = "", body: string | Buffer = ""): Promise<RawExchange> {
    const head = `${requestLine}\r\nHost: 127.0.0.1\r\n${KEY}${headers}Connection: close\r\n\r\n`;
    return rawExchange(b.port, [Buffer.concat([Buffer.from(head, "latin1"), Buffer.isBuffer(body) ? body : Buffer.from(body, "latin1")])]);
}

/** A case of the battery. */
function hostile(name: string, run: () => Promise<void>, timeoutMs?: number): void {
    cases += 1;
    it(name, run, timeoutMs);
}

const completionBody = (fields: object = {}) => JSON.stringify({ model: "m", prompt: "x", max_tokens: 1, ...fields });

describe("oversized headers", () => {
    hostile("a 20 KB header line: nginx's 400, no replica", async () => {
        const x = await raw("GET /v1/models?hostile=h1 HTTP/1.1", `X-Big: ${"a".repeat(20_000)}\r\n`);
        expect(x.statuses).toEqual([400]);
        expect(x.text).toContain("Request Header Or Cookie Too Large");
        expect(reached("hostile=h1")).toBe(false);
    });
    hostile("80 KB of headers in 15 KB lines: 400", async () => {
        const x = await raw("GET /v1/models?hostile=h2 HTTP/1.1", Array.from({ length: 6 }, (_, i) => `X-H${i}: ${"b".repeat(15_000)}\r\n`).join(""));
        expect(x.statuses).toEqual([400]);
        expect(reached("hostile=h2")).toBe(false);
    });
    hostile("2,000 small headers: 400", async () => {
        const x = await raw("GET /v1/models?hostile=h3 HTTP/1.1", Array.from({ length: 2000 }, (_, i) => `X-H${i}: ${"v".repeat(20)}\r\n`).join(""));
        expect(x.statuses).toEqual([400]);
        expect(reached("hostile=h3")).toBe(false);
    });
    hostile("a 20 KB request line: 414", async () => {
        const x = await raw(`GET /v1/models?hostile=h4&pad=${"c".repeat(20_000)} HTTP/1.1`);
        expect(x.statuses).toEqual([414]);
        expect(reached("hostile=h4")).toBe(false);
    });
    hostile("a 20 KB Authorization header: 400", async () => {
        const x = await rawExchange(b.port, [`GET /v1/models?hostile=h5 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${"k".repeat(20_000)}\r\nConnection: close\r\n\r\n`]);
        expect(x.statuses).toEqual([400]);
        expect(reached("hostile=h5")).toBe(false);
    });
    hostile("a NUL byte in a header value: 400", async () => {
        const x = await raw("GET /v1/models?hostile=h6 HTTP/1.1", "X-A: a\0b\r\n");
        expect(x.statuses).toEqual([400]);
        expect(reached("hostile=h6")).toBe(false);
    });
    hostile("an obsolete folded header line: 400", async () => {
        const x = await raw("GET /v1/models?hostile=h7 HTTP/1.1", "X-A: a\r\n  folded\r\n");
        expect(x.statuses).toEqual([400]);
        expect(reached("hostile=h7")).toBe(false);
    });
});

describe("oversized bodies", () => {
    hostile("a body over maxBodySize by Content-Length: 413 in vLLM's error shape, before it is read, no replica", async () => {
        const x = await raw("POST /v1/completions?hostile=b1 HTTP/1.1", "Content-Type: application/json\r\nContent-Length: 2000000\r\n", "{");
        expect(x.statuses).toEqual([413]);
        expect(x.text).toContain('{"error": {"message": "request body too large", "type": "BadRequestError", "param": null, "code": 413}}');
        expect(reached("hostile=b1")).toBe(false);
    });
    hostile("a chunked body that grows over maxBodySize: 413, no replica", async () => {
        const chunk = "a".repeat(256 * 1024);
        const chunks = Array.from({ length: 6 }, () => `${chunk.length.toString(16)}\r\n${chunk}\r\n`).join("");
        const x = await raw("POST /v1/completions?hostile=b2 HTTP/1.1", "Transfer-Encoding: chunked\r\n", `${chunks}0\r\n\r\n`);
        expect(x.statuses).toEqual([413]);
        expect(reached("hostile=b2")).toBe(false);
    });
    hostile("an oversized body without a key: 401 first, no replica", async () => {
        const x = await rawExchange(b.port, [`POST /v1/completions?hostile=b3 HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\nConnection: close\r\n\r\n{`]);
        expect(x.statuses).toEqual([401]);
        expect(reached("hostile=b3")).toBe(false);
    });
    hostile("Expect: 100-continue with an oversized body: 413 and no 100 Continue, so the body is never sent", async () => {
        const x = await raw("POST /v1/completions?hostile=b4 HTTP/1.1", "Content-Length: 5000000\r\nExpect: 100-continue\r\n");
        expect(x.statuses).toEqual([413]);
        expect(x.text).not.toContain("100 Continue");
        expect(reached("hostile=b4")).toBe(false);
    });
});

describe("slow clients (slowloris)", () => {
    // Started together, so that the battery waits for nginx's 10 s client timeouts once.
    let headers: Promise<RawExchange>;
    let silentBody: Promise<RawExchange>;
    let truncated: Promise<RawExchange>;
    let tricklingBody: Promise<RawExchange>;
    let reachedMidTrickle: Promise<boolean>;
    let idle: Promise<RawExchange[]>;
    beforeAll(() => {
        const trickle = (head: string, every: number, count: number) => [head, ...Array.from({ length: count }, (_, i) => [every, `X-T${i}: 1\r\n`]).flat()];
        headers = rawExchange(b.port, trickle(`GET /v1/models?hostile=s1 HTTP/1.1\r\nHost: x\r\n${KEY}`, 2000, 12), 30_000, 40_000);
        silentBody = rawExchange(b.port, [`POST /v1/completions?hostile=s2 HTTP/1.1\r\nHost: x\r\n${KEY}Content-Length: 100\r\n\r\n`], 30_000, 40_000);
        truncated = rawExchange(b.port, [`POST /v1/completions?hostile=s3 HTTP/1.1\r\nHost: x\r\n${KEY}Content-Length: 100\r\n\r\n{"model": "m", "prompt": "cut`], 30_000, 40_000);
        const body = completionBody();
        tricklingBody = rawExchange(b.port, [`POST /v1/completions?hostile=s4 HTTP/1.1\r\nHost: x\r\n${KEY}Content-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body.slice(0, -4)}`, ...[...body.slice(-4)].flatMap((c) => [2000, c])], 5000, 40_000);
        reachedMidTrickle = sleep(5000).then(() => reached("hostile=s4"));
        idle = Promise.all(Array.from({ length: 100 }, () => rawExchange(b.port, [], 30_000, 40_000)));
    });

    hostile("headers trickled a line every 2 s: nginx drops the connection at its header timeout, no answer, no replica", async () => {
        const x = await headers;
        expect(x.closedByServer).toBe(true);
        expect(x.statuses).toEqual([]);
        expect(x.ms).toBeLessThan(24_000); // the trickle would have gone on for 24 s
        expect(reached("hostile=s1")).toBe(false);
    }, 45_000);
    hostile("a body announced and never sent: dropped at the body timeout, no replica", async () => {
        const x = await silentBody;
        expect(x.closedByServer).toBe(true);
        expect(x.statuses).toEqual([]);
        expect(reached("hostile=s2")).toBe(false);
    }, 45_000);
    hostile("a JSON body cut short of its Content-Length: dropped, never handed to a replica half-read", async () => {
        const x = await truncated;
        expect(x.closedByServer).toBe(true);
        expect(reached("hostile=s3")).toBe(false);
    }, 45_000);
    hostile("a body trickled a byte every 2 s: buffered by nginx, handed to a replica only once complete", async () => {
        expect(await reachedMidTrickle, "no replica holds a seat while the body trickles in").toBe(false);
        const x = await tricklingBody;
        expect(x.statuses).toEqual([200]);
        expect(reached("hostile=s4")).toBe(true);
    }, 45_000);
    hostile("100 connections that never send a byte: all dropped by nginx", async () => {
        const xs = await idle;
        expect(xs.every((x) => x.closedByServer && x.statuses.length === 0)).toBe(true);
    }, 45_000);
});

describe("bad JSON and bad values, answered by the replica (vLLM's 400)", () => {
    /** vLLM 0.32.0's 400s: its OpenAI error shape (`type` "Bad Request" for FastAPI's validation errors), or FastAPI's own `{"detail"}` for a body json.loads cannot read at all. */
    const replicaError = (x: RawExchange, message: RegExp, type = "BadRequestError") => {
        expect(x.statuses).toEqual([400]);
        const body = JSON.parse(x.text.slice(x.text.indexOf("\r\n\r\n") + 4));
        if (type === "detail") {
            expect(body).toEqual({ detail: expect.stringMatching(message) });
            return;
        }
        expect(body.error.type).toBe(type);
        expect(body.error.code).toBe(400);
        expect(body.error.message).toMatch(message);
    };
    const post = (marker: string, body: string | Buffer) => raw(`POST /v1/completions?hostile=${marker} HTTP/1.1`, `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n`, body);

    hostile("malformed JSON", async () => replicaError(await post("j1", '{"model": "m", "prompt": '), /JSON decode error/, "Bad Request"));
    hostile("JSON that is not an object", async () => replicaError(await post("j2", "[1, 2, 3]"), /valid dictionary/, "Bad Request"));
    hostile("invalid UTF-8 in a string", async () => replicaError(await post("j3", Buffer.concat([Buffer.from('{"model": "m", "prompt": "'), Buffer.from([0xff, 0xfe, 0xc3]), Buffer.from('", "max_tokens": 1}')])), /error parsing the body/, "detail"));
    hostile("a huge max_tokens", async () => replicaError(await post("j4", completionBody({ max_tokens: 1e12 })), /max_tokens=1000000000000 cannot be greater than max_model_len=8192/));
    hostile("a negative max_tokens", async () => replicaError(await post("j5", completionBody({ max_tokens: -1 })), /max_tokens must be at least 1/));
    hostile("JSON nested 50,000 deep", async () => {
        // Python's json recursion limit: a RecursionError, not a JSONDecodeError, so FastAPI's "error parsing the body".
        replicaError(await post("j6", `{"model": "m", "prompt": ${"[".repeat(50_000)}${"]".repeat(50_000)}}`), /error parsing the body/, "detail");
        // The replica is still there.
        expect((await request(`${replicas[0]!.url}/health`, { agent: false })).status).toBe(200);
    });
});

describe("request smuggling", () => {
    const smuggled = (marker: string) => `GET /metrics?smuggled=${marker} HTTP/1.1\r\nHost: x\r\n${KEY}\r\n`;
    const refusedWhole = (x: RawExchange, marker: string, status = 400) => {
        expect(x.statuses).toEqual([status]);
        expect(x.closedByServer).toBe(true);
        expect(metricsLeaked(x)).toBe(false);
        expect(reached(`hostile=${marker}`)).toBe(false);
        expect(reached(`smuggled=${marker}`)).toBe(false);
    };
    const framed = (marker: string, framing: string, body: string) =>
        rawExchange(b.port, [`POST /v1/completions?hostile=${marker} HTTP/1.1\r\nHost: x\r\n${KEY}${framing}\r\n${body}${smuggled(marker)}`]);

    hostile("Content-Length and Transfer-Encoding together (CL.TE)", async () => refusedWhole(await framed("m1", "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n"), "m1"));
    hostile("Transfer-Encoding then Content-Length (TE.CL)", async () => refusedWhole(await framed("m2", "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n", "5c\r\n"), "m2"));
    hostile("two different Content-Lengths", async () => refusedWhole(await framed("m3", "Content-Length: 0\r\nContent-Length: 44\r\n", ""), "m3"));
    hostile("a Content-Length list", async () => refusedWhole(await framed("m4", "Content-Length: 0, 44\r\n", ""), "m4"));
    hostile("a Transfer-Encoding other than chunked: 501", async () => refusedWhole(await framed("m5", "Transfer-Encoding: gzip, chunked\r\n", "0\r\n\r\n"), "m5", 501));
    hostile("an obfuscated Transfer-Encoding: 501", async () => refusedWhole(await framed("m6", "Transfer-Encoding: xchunked\r\n", "0\r\n\r\n"), "m6", 501));
    hostile("a space before the colon of Transfer-Encoding", async () => refusedWhole(await framed("m7", "Content-Length: 5\r\nTransfer-Encoding : chunked\r\n", "0\r\n\r\n"), "m7"));
    hostile("a chunk size that is not hexadecimal", async () => refusedWhole(await framed("m8", "Transfer-Encoding: chunked\r\n", "zz\r\nabc\r\n0\r\n\r\n"), "m8"));
    hostile("a chunk size that overflows", async () => {
        const x = await framed("m9", "Transfer-Encoding: chunked\r\n", "fffffffffffffffffffff\r\nabc\r\n0\r\n\r\n");
        expect([400, 413]).toContain(x.statuses[0]);
        expect(x.statuses).toHaveLength(1);
        expect(reached("smuggled=m9")).toBe(false);
    });
    hostile("Transfer-Encoding in an HTTP/1.0 request", async () => {
        const x = await rawExchange(b.port, [`POST /v1/completions?hostile=m10 HTTP/1.0\r\nHost: x\r\n${KEY}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n${smuggled("m10")}`]);
        refusedWhole(x, "m10");
    });
    hostile("control: two honest pipelined requests are both answered, and a pipelined /metrics is refused by nginx itself", async () => {
        const body = completionBody();
        const x = await rawExchange(b.port, [
            `POST /v1/completions?hostile=m11a HTTP/1.1\r\nHost: x\r\n${KEY}Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}` + `GET /metrics?hostile=m11b HTTP/1.1\r\nHost: x\r\n${KEY}Connection: close\r\n\r\n`,
        ]);
        expect(x.statuses).toEqual([200, 404]);
        expect(metricsLeaked(x)).toBe(false);
        expect(reached("hostile=m11a")).toBe(true);
        expect(reached("hostile=m11b")).toBe(false);
    });
});

describe("paths that try to reach /metrics, /nginx-status or vLLM's operator endpoints", () => {
    const notFound = async (target: string, marker: string, extra = "") => {
        const x = await raw(`GET ${target}${target.includes("?") ? "&" : "?"}hostile=${marker} HTTP/1.1`, extra);
        expect(x.statuses, target).toEqual([404]);
        expect(metricsLeaked(x), target).toBe(false);
        expect(reached(`hostile=${marker}`), target).toBe(false);
    };
    const invalid = async (target: string, marker: string) => {
        const x = await raw(`GET ${target}?hostile=${marker} HTTP/1.1`);
        expect(x.statuses, target).toEqual([400]);
        expect(x.text).toContain("invalid path: dot segments and encoded dots or slashes are refused");
        expect(metricsLeaked(x)).toBe(false);
        expect(reached(`hostile=${marker}`), target).toBe(false);
    };

    hostile("/metrics", () => notFound("/metrics", "p1"));
    hostile("/metrics/ and /metrics/anything (vLLM serves metrics under the whole prefix)", async () => {
        await notFound("/metrics/", "p2a");
        await notFound("/metrics/anything", "p2b");
        await notFound("/metricsfoo", "p2c");
    });
    hostile("/%6Detrics (percent-encoded)", () => notFound("/%6Detrics", "p3"));
    hostile("//metrics", () => notFound("//metrics", "p4"));
    hostile("/v1/../metrics", () => invalid("/v1/../metrics", "p5"));
    hostile("/metrics/../v1/models (nginx would see /v1/models, vLLM its /metrics prefix)", () => invalid("/metrics/../v1/models", "p6"));
    hostile("/v1/%2e%2e/metrics", () => invalid("/v1/%2e%2e/metrics", "p7"));
    hostile("/metrics%2F..%2Fv1%2Fmodels", () => invalid("/metrics%2F..%2Fv1%2Fmodels", "p8"));
    hostile("/./metrics", () => invalid("/./metrics", "p9"));
    hostile("an absolute-form target: GET http://127.0.0.1/metrics", () => notFound("http://127.0.0.1/metrics", "p10"));
    hostile("/METRICS: passed on, and the replica (case-sensitive, as vLLM's router) has no such route", async () => {
        const x = await raw("GET /METRICS?hostile=p11 HTTP/1.1");
        expect(x.statuses).toEqual([404]);
        expect(metricsLeaked(x)).toBe(false);
    });
    hostile("/nginx-status, with and without a trailing slash, and with a Host naming the status port", async () => {
        await notFound("/nginx-status", "p12a");
        await notFound("/nginx-status/", "p12b");
        await notFound("/nginx-status", "p12c", "X-Forwarded-Host: 127.0.0.1:8081\r\n");
    });
    hostile("vLLM's operator endpoints: /server_info, /reset_prefix_cache, /sleep, /wake_up, /collective_rpc, /start_profile", async () => {
        for (const [i, p] of ["/server_info", "/reset_prefix_cache", "/sleep", "/wake_up", "/collective_rpc", "/start_profile"].entries()) {
            const x = await raw(`POST ${p}?hostile=p13-${i} HTTP/1.1`, "Content-Length: 0\r\n");
            expect(x.statuses, p).toEqual([404]);
            expect(reached(`hostile=p13-${i}`), p).toBe(false);
        }
    });
    hostile("/metrics without a key: 401, the key is checked first", async () => {
        const x = await rawExchange(b.port, [`GET /metrics?hostile=p14 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`]);
        expect(x.statuses).toEqual([401]);
        expect(metricsLeaked(x)).toBe(false);
    });
});

describe("unauthenticated traffic", () => {
    hostile("a flood of 500 requests without a key, 50 at a time: all 401 from nginx, none reaches a replica", async () => {
        let next = 0;
        const statuses: number[] = [];
        await Promise.all(
            Array.from({ length: 50 }, async () => {
                for (let i = next++; i < 500; i = next++) {
                    statuses.push((await request(`${b.url}/v1/completions?hostile=u1-${i}-`, { body: { model: "m", prompt: "x", max_tokens: 64 }, agent: false })).status);
                }
            }),
        );
        expect(statuses).toEqual(Array(500).fill(401));
        expect(reached("hostile=u1-")).toBe(false);
    }, 60_000);
});

describe("everyone else, during the battery", () => {
    it("streamed the bystander key's completions whole, every token, none refused or cut", async () => {
        bystander.phase = "stop";
        await Promise.all(bystanderLoops);
        const summary = (rs: StreamResult[]) => {
            const ttft = rs.map((r) => tokenEvents(r)[0]!.at - r.sentAt);
            const allGaps = rs.flatMap((r) => gaps(tokenEvents(r)));
            return { streams: rs.length, ttftP50: percentile(ttft, 50), ttftP99: percentile(ttft, 99), gapP50: percentile(allGaps, 50), gapP99: percentile(allGaps, 99) };
        };
        expect(bystander.during.length).toBeGreaterThan(20);
        for (const r of [...bystander.before, ...bystander.during]) {
            expect(r.status).toBe(200);
            expect(r.error).toBeUndefined();
            expect(r.done).toBe(true);
            expect(tokenEvents(r)).toHaveLength(BYSTANDER_TOKENS);
        }
        const before = summary(bystander.before);
        const during = summary(bystander.during);
        const fmt = (s: ReturnType<typeof summary>) => `${s.streams} streams, TTFT p50 ${s.ttftP50.toFixed(1)} ms p99 ${s.ttftP99.toFixed(1)} ms, token gap p50 ${s.gapP50.toFixed(1)} ms p99 ${s.gapP99.toFixed(1)} ms`;
        console.log(`hostile battery: ${cases} cases. Bystander key before the battery: ${fmt(before)}; during it: ${fmt(during)} (TTFT p50 ratio ${(during.ttftP50 / before.ttftP50).toFixed(2)})`);
    }, 60_000);
});
