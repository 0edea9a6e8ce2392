/**
 * Client keys and their limits under the real nginx, with the secret files written by edge.sh: a missing
 * or wrong key is answered by nginx with vLLM's own 401 and no replica sees the request; a key's name (never
 * the key) reaches the access log and the replica; keys change with a reload; limits answer 429 with
 * Retry-After in vLLM's error shape, per key.
 */
import * as fs from "fs";
import * as http from "http";
import * as os from "os";
import * as path from "path";
import { afterEach, describe, expect, it } from "vitest";
import { performance } from "perf_hooks";
import { ANONYMOUS_LIMITS } from "../../components/edge/render";
import {
    type EdgeBalancer,
    type EdgeBalancerOptions,
    type StandIn,
    freePort,
    nginxCli,
    nginxVersion,
    rawExchange,
    request,
    runEdge,
    startEdgeBalancer,
    sleep,
    startStandIn,
    stopAll,
    stream,
    tokenEvents,
    waitFor,
} from "../support";

const ALICE = { name: "alice", key: "alice-key-0123456789+/=" };
const BOB = { name: "bob", key: "bob-key-abcdefghijklmnop" };
const REPLICA_KEY = "replica-key-0123456789";
const bearer = (key: string) => ({ authorization: `Bearer ${key}` });

const replicas: StandIn[] = [];
const balancers: EdgeBalancer[] = [];
const servers: http.Server[] = [];
afterEach(async () => {
    await Promise.all(balancers.splice(0).map((b) => b.stop()));
    await stopAll(replicas.splice(0));
    await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

/** Stand-ins serving model "m" with their access log on, so that a test can see which requests reached them. */
async function standIns(n: number, args: string[] = []): Promise<StandIn[]> {
    const started = await Promise.all(Array.from({ length: n }, (_, i) => startStandIn({ replicaId: `r${i}`, args: ["--served-model-name", "m", ...args] })));
    replicas.push(...started);
    return started;
}

async function edge(options: EdgeBalancerOptions): Promise<EdgeBalancer> {
    nginxVersion();
    const b = await startEdgeBalancer(options);
    balancers.push(b);
    return b;
}

/** Whether any replica logged a request whose URL carries `marker`. */
const reached = (rs: StandIn[], marker: string) => rs.some((r) => r.output().includes(marker));

/** A replica that answers `{}` to everything and keeps the headers of the last request it got. */
async function echoReplica(): Promise<{ port: number; seen: () => http.IncomingHttpHeaders }> {
    let seen: http.IncomingHttpHeaders = {};
    const echo = http.createServer((req, res) => {
        seen = req.headers;
        req.resume();
        req.on("end", () => res.end("{}"));
    });
    servers.push(echo);
    const port = await freePort();
    await new Promise<void>((r) => echo.listen(port, "127.0.0.1", r));
    return { port, seen: () => seen };
}

const completion = (url: string, marker: string, headers: Record<string, string> = {}) =>
    request(`${url}/v1/completions?probe=${marker}`, { agent: false, body: { model: "m", prompt: "x", max_tokens: 1 }, headers });

describe("client keys at the balancer", () => {
    it("answers a missing, wrong, re-cased or other-scheme key with vLLM's 401 before any replica sees it, and lets a right key through", async () => {
        const rs = await standIns(2);
        const b = await edge({ upstreamPorts: rs.map((r) => r.port), clients: [ALICE, BOB] });
        const refused: Array<[string, Record<string, string>]> = [
            ["none", {}],
            ["wrong", bearer("alice-key-0123456789+/X")],
            ["recased", bearer(ALICE.key.toUpperCase())],
            ["prefix", bearer(ALICE.key.slice(0, -1))],
            ["suffix", bearer(`${ALICE.key}x`)],
            ["basic", { authorization: `Basic ${Buffer.from(`alice:${ALICE.key}`).toString("base64")}` }],
            ["no-scheme", { authorization: ALICE.key }],
            ["two-keys", { authorization: `Bearer ${ALICE.key} ${BOB.key}` }],
            ["query", {}],
        ];
        for (const [marker, headers] of refused) {
            const url = marker === "query" ? `${b.url}/v1/completions?api_key=${encodeURIComponent(ALICE.key)}&probe=query` : undefined;
            const r = url ? await request(url, { agent: false, body: { model: "m", prompt: "x", max_tokens: 1 } }) : await completion(b.url, marker, headers);
            expect(r.status, marker).toBe(401);
            expect(r.json, marker).toEqual({ error: "Unauthorized" });
            expect(r.headers["content-type"]).toBe("application/json");
        }
        // GET /v1/models needs a key too, as behind vLLM's own check.
        expect((await request(`${b.url}/v1/models?probe=models`, { agent: false })).status).toBe(401);
        for (const [marker] of refused) {
            expect(reached(rs, `probe=${marker}`), marker).toBe(false);
        }
        expect(reached(rs, "probe=models")).toBe(false);

        for (const [marker, key] of [["alice-ok", ALICE.key], ["bob-ok", BOB.key]] as const) {
            const ok = await completion(b.url, marker, bearer(key));
            expect(ok.status, marker).toBe(200);
            expect(reached(rs, `probe=${marker}`)).toBe(true);
        }
        expect((await completion(b.url, "lower-scheme", { authorization: `bearer   ${ALICE.key}` })).status).toBe(200);
    });

    it("keeps the probes' paths and CORS preflights open, as vLLM does", async () => {
        const rs = await standIns(1);
        const b = await edge({ upstreamPorts: rs.map((r) => r.port), clients: [ALICE] });
        for (const p of ["/health", "/ping", "/version", "/nginx-health"]) {
            expect((await request(`${b.url}${p}`, { agent: false })).status, p).toBe(200);
        }
        const preflight = await request(`${b.url}/v1/chat/completions`, { agent: false, method: "OPTIONS", headers: { origin: "https://app.example", "access-control-request-method": "POST" } });
        expect(preflight.status).not.toBe(401);
    });

    it("tells the replica the key's name as X-Client-Name, sends the replicas' own key in place of the client's, and logs the name, never the key", async () => {
        const { port: echoPort, seen: headers } = await echoReplica();
        const log = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "vllm-nginx-edge-log-")), "access.log");
        const b = await edge({ upstreamPorts: [echoPort], clients: [ALICE, BOB], replicaKey: REPLICA_KEY, overrides: { accessLog: log } });
        expect((await completion(b.url, "named", { ...bearer(ALICE.key), "x-client-name": "mallory", "X_Client_Name": "mallory" })).status).toBe(200);
        expect(headers()["x-client-name"]).toBe("alice");
        expect(headers()["x_client_name"]).toBeUndefined();
        expect(headers().authorization).toBe(`Bearer ${REPLICA_KEY}`);
        // The replicas' key is not a client key.
        expect((await completion(b.url, "replica-key", bearer(REPLICA_KEY))).status).toBe(401);
        await waitFor("the access log lines", 5000, () => fs.readFileSync(log, "utf8").includes("probe=replica-key"));
        const lines = fs.readFileSync(log, "utf8");
        expect(lines).toMatch(/probe=named .* client=alice$/m);
        expect(lines).toMatch(/probe=replica-key .* 401 .* client=$/m);
        for (const secret of [ALICE.key, BOB.key, REPLICA_KEY]) {
            expect(lines).not.toContain(secret);
            expect(b.nginx.errorLog()).not.toContain(secret);
        }
        fs.rmSync(path.dirname(log), { recursive: true, force: true });
    });

    it("without a replicas' key sends the replica no Authorization at all", async () => {
        const { port: echoPort, seen: headers } = await echoReplica();
        const b = await edge({ upstreamPorts: [echoPort], clients: [ALICE] });
        expect((await request(`${b.url}/v1/models`, { agent: false, headers: bearer(ALICE.key) })).status).toBe(200);
        expect(headers().authorization).toBeUndefined();
        expect(headers()["x-client-name"]).toBe("alice");
    });

    it("works in front of replicas that check vLLM's --api-key themselves", async () => {
        const rs = await standIns(1, ["--api-key", REPLICA_KEY]);
        const b = await edge({ upstreamPorts: rs.map((r) => r.port), clients: [ALICE], replicaKey: REPLICA_KEY });
        expect((await completion(b.url, "through", bearer(ALICE.key))).status).toBe(200);
        // Straight to the replica, a client key is worth nothing: every replica no longer holds every key.
        expect((await completion(rs[0]!.url, "direct", bearer(ALICE.key))).status).toBe(401);
    });

    it("with only the replicas' apiKey, checks it at the balancer on every path, so `Host: x?` (GHSA-94f4-hr76-p5j6) gets 401 and no replica sees it", async () => {
        const rs = await standIns(2, ["--api-key", REPLICA_KEY]);
        const b = await edge({ upstreamPorts: rs.map((r) => r.port), replicaKey: REPLICA_KEY });
        const raw = (target: string, host: string, headers = "") => rawExchange(b.port, [`GET ${target} HTTP/1.1\r\nHost: ${host}\r\n${headers}Connection: close\r\n\r\n`]);
        for (const [marker, host] of [["host-q", "x?"], ["host-hash", "x#"], ["host-plain", "127.0.0.1"]] as const) {
            const x = await raw(`/v1/models?probe=${marker}`, host);
            expect(x.statuses, marker).toEqual([401]);
        }
        // vLLM's --api-key guards /v1 only; the balancer guards every path it forwards.
        for (const p of ["/tokenize", "/detokenize", "/pooling", "/classify", "/score", "/rerank", "/invocations"]) {
            const x = await raw(`${p}?probe=open${p.slice(1)}`, "x");
            expect(x.statuses, p).toEqual([401]);
        }
        for (const marker of ["host-q", "host-hash", "host-plain", ...["tokenize", "detokenize", "pooling", "classify", "score", "rerank", "invocations"].map((p) => `open${p}`)]) {
            expect(reached(rs, `probe=${marker}`), marker).toBe(false);
        }
        const ok = await raw("/v1/models?probe=host-key", "x?", `Authorization: Bearer ${REPLICA_KEY}\r\n`);
        expect(ok.statuses).toEqual([200]);
        for (const p of ["/health", "/ping", "/version", "/nginx-health"]) {
            expect((await request(`${b.url}${p}`, { agent: false })).status, p).toBe(200);
        }
    });

    it("forwards only the API's and the probes' paths: any other is 404 from nginx itself, even with the right key", async () => {
        const rs = await standIns(1);
        const b = await edge({ upstreamPorts: rs.map((r) => r.port), clients: [ALICE] });
        const refused = ["/load", "/v1/load_lora_adapter", "/v1/unload_lora_adapter", "/docs", "/openapi.json", "/redoc", "/v1/models/", "/metrics", "/server_info", "/v1/anything", "/"];
        for (const [i, p] of refused.entries()) {
            const r = await request(`${b.url}${p}?probe=refused${i}`, { agent: false, headers: bearer(ALICE.key) });
            expect(r.status, p).toBe(404);
            expect(r.json, p).toEqual({ detail: "Not Found" });
        }
        for (const i of refused.keys()) {
            expect(reached(rs, `probe=refused${i}`), refused[i]).toBe(false);
        }
        expect((await request(`${b.url}/v1/models?probe=allowed`, { agent: false, headers: bearer(ALICE.key) })).status).toBe(200);
        // The stand-in logs a request once it answered it: its line may come a moment after the answer.
        await waitFor("the allowed path to reach the replica", 5000, async () => reached(rs, "probe=allowed"));
    });

    it("sends a replica the upstream's name as Host, never the client's", async () => {
        const { port: echoPort, seen: headers } = await echoReplica();
        const b = await edge({ upstreamPorts: [echoPort], replicaKey: REPLICA_KEY });
        const x = await rawExchange(b.port, [`GET /v1/models HTTP/1.1\r\nHost: x?\r\nAuthorization: Bearer ${REPLICA_KEY}\r\nConnection: close\r\n\r\n`]);
        expect(x.statuses).toEqual([200]);
        expect(headers().host).toBe("vllm_backend");
        expect(headers().authorization).toBe(`Bearer ${REPLICA_KEY}`);
        expect(headers()["x-client-name"]).toBe("api-key");
    });

    it("adds and removes keys with a reload: nginx keeps running, streams in flight finish, the new keys hold at once", async () => {
        const rs = await standIns(1, ["--itl-ms", "40"]);
        const b = await edge({ upstreamPorts: rs.map((r) => r.port), clients: [ALICE] });
        const master = b.nginx.proc.pid;
        const inFlight = stream(`${b.url}/v1/completions`, { model: "m", prompt: "long", max_tokens: 40, stream: true }, { agent: false, headers: bearer(ALICE.key) });
        await inFlight.firstEvent;
        const out = await b.install([BOB]);
        expect(out.stdout).toContain("edge: 1 client key(s)");
        expect(out.stdout + out.stderr).not.toContain(BOB.key);
        await waitFor("bob's key to hold", 5000, async () => (await completion(b.url, "bob-new", bearer(BOB.key))).status === 200);
        // An old worker may still accept a connection for a moment after the reload, under the old keys.
        await waitFor("alice's key to be refused", 5000, async () => (await completion(b.url, "alice-gone", bearer(ALICE.key))).status === 401);
        const finished = await inFlight.result;
        expect(finished.done, "a reload cuts no stream").toBe(true);
        expect(tokenEvents(finished)).toHaveLength(40);
        expect(b.nginx.proc.pid).toBe(master);
        expect(b.nginx.proc.exitCode).toBeNull();
    });

    it("keeps its files readable by root only", async () => {
        const b = await edge({ upstreamPorts: [await freePort()], clients: [ALICE], replicaKey: REPLICA_KEY });
        expect(fs.statSync(b.dir).mode & 0o777).toBe(0o700);
        for (const file of ["client-keys.map", "replica-authorization.map"]) {
            expect(fs.statSync(path.join(b.dir, file)).mode & 0o777, file).toBe(0o600);
        }
        expect(fs.readFileSync(path.join(b.dir, "client-keys.map"), "utf8")).toContain("alice;");
    });

    it("leaves the previous files in place, and nginx serving them, when nginx refuses new ones; and never repeats what it refused", async () => {
        const rs = await standIns(1);
        const b = await edge({ upstreamPorts: rs.map((r) => r.port), clients: [ALICE] });
        const SECRET = "secret-in-a-broken-line-0123456789";
        const broken = `#vllm-nginx-edge 1\n#file client-keys.map\n"~^(?i:bearer)[ \\t]+(${SECRET}[ \\t]*$" bob;\n#file replica-authorization.map\ndefault "";\n#end\n`;
        const error = await runEdge(b.dir, ["install", "off", ""], broken, nginxCli(b.nginx)).then(
            () => undefined,
            (e: Error & { stderr: string; stdout: string }) => e,
        );
        expect(error, "nginx must refuse a regex that does not compile").toBeDefined();
        expect(error!.stderr).toContain("nginx rejected the front door's files; the previous ones stay");
        expect(error!.stderr).toContain("withheld: they may quote a secret");
        expect(error!.stderr).toContain("test failed");
        expect(error!.stderr + error!.stdout).not.toContain(SECRET);
        expect(fs.readFileSync(path.join(b.dir, "client-keys.map"), "utf8")).toContain("alice;");
        expect((await completion(b.url, "still-alice", bearer(ALICE.key))).status).toBe(200);
        // A bundle cut short (no end line) is refused before anything is written.
        const cut = await runEdge(b.dir, ["install", "off", ""], "#vllm-nginx-edge 1\n#file client-keys.map\n", nginxCli(b.nginx)).then(
            () => "",
            (e: Error) => e.message,
        );
        expect(cut).toContain("the bundle was cut short");
        expect(fs.readFileSync(path.join(b.dir, "client-keys.map"), "utf8")).toContain("alice;");
    });
});

describe("limits per key", () => {
    it("answers requests over a key's rate and burst with 429, Retry-After and vLLM's error shape, without reaching a replica; other keys are not limited", async () => {
        const rs = await standIns(1, ["--itl-ms", "1"]);
        const limited = { ...ALICE, rps: 2, burst: 2 };
        const b = await edge({ upstreamPorts: rs.map((r) => r.port), clients: [limited, BOB] });
        const t0 = performance.now();
        const results = await Promise.all(Array.from({ length: 12 }, (_, i) => completion(b.url, `burst-${i}-`, bearer(ALICE.key))));
        const seconds = (performance.now() - t0) / 1000;
        const ok = results.filter((r) => r.status === 200);
        const rejected = results.filter((r) => r.status === 429);
        expect(ok.length + rejected.length).toBe(12);
        // burst + 1 at once, plus what the rate refilled while the requests were sent.
        expect(ok.length).toBeGreaterThanOrEqual(limited.burst + 1);
        expect(ok.length).toBeLessThanOrEqual(limited.burst + 1 + Math.ceil(seconds * limited.rps));
        for (const r of rejected) {
            expect(r.headers["retry-after"]).toBe("1");
            expect(r.json).toEqual({ error: { message: "too many requests per second for this client key (alice)", type: "RateLimitError", param: null, code: 429 } });
        }
        const served = results.map((r, i) => [r.status, reached(rs, `probe=burst-${i}-`)]);
        for (const [status, wasReached] of served) {
            expect(wasReached, `a ${status} reached a replica: ${wasReached}`).toBe(status === 200);
        }
        const bob = await Promise.all(Array.from({ length: 12 }, (_, i) => completion(b.url, `bob-${i}-`, bearer(BOB.key))));
        expect(bob.map((r) => r.status)).toEqual(Array(12).fill(200));
    });

    it("limits what reaches a replica without a key (the probes' paths, CORS preflights) per address, and never a keyed client or the balancer's own health", async () => {
        const rs = await standIns(1);
        const b = await edge({ upstreamPorts: rs.map((r) => r.port), clients: [ALICE] });
        const n = 3 * (ANONYMOUS_LIMITS.burst + 1);
        const anonymous = await Promise.all(
            Array.from({ length: n }, (_, i) =>
                i % 2 === 0
                    ? request(`${b.url}/health?probe=anon-${i}-`, { agent: false })
                    : request(`${b.url}/v1/chat/completions?probe=anon-${i}-`, { agent: false, method: "OPTIONS", headers: { origin: "https://app.example", "access-control-request-method": "POST" } }),
            ),
        );
        const limited = anonymous.filter((r) => r.status === 429);
        expect(limited.length).toBeGreaterThan(0);
        expect(limited[0]!.json).toEqual({ error: { message: "too many requests without a client key from this address", type: "RateLimitError", param: null, code: 429 } });
        anonymous.forEach((r, i) => expect(reached(rs, `probe=anon-${i}-`), `${r.status} reached a replica`).toBe(r.status !== 429));
        // At the same time, from the same address: a keyed client and the balancer's own health endpoint.
        const keyed = await Promise.all(Array.from({ length: 10 }, (_, i) => completion(b.url, `keyed-${i}-`, bearer(ALICE.key))));
        expect(keyed.map((r) => r.status)).toEqual(Array(10).fill(200));
        const own = await Promise.all(Array.from({ length: n }, () => request(`${b.url}/nginx-health`, { agent: false })));
        expect(own.map((r) => r.status)).toEqual(Array(n).fill(200));
    });

    it("tells a key allowed less than one request a second how long to wait", async () => {
        const rs = await standIns(1, ["--itl-ms", "1"]);
        const b = await edge({ upstreamPorts: rs.map((r) => r.port), clients: [{ ...ALICE, rps: 0.5, burst: 0 }] });
        expect((await completion(b.url, "first", bearer(ALICE.key))).status).toBe(200);
        const second = await completion(b.url, "second", bearer(ALICE.key));
        expect(second.status).toBe(429);
        expect(second.headers["retry-after"]).toBe("2");
    });

    it("answers a key's requests over its concurrency with 429 while its streams run, and serves it again once they end", async () => {
        const rs = await standIns(1, ["--itl-ms", "50"]);
        const b = await edge({ upstreamPorts: rs.map((r) => r.port), clients: [{ ...ALICE, concurrent: 2 }, BOB] });
        const streams = [0, 1].map((i) => stream(`${b.url}/v1/completions`, { model: "m", prompt: `s${i}`, max_tokens: 20, stream: true }, { agent: false, headers: bearer(ALICE.key) }));
        await Promise.all(streams.map((s) => s.firstEvent));
        const third = await completion(b.url, "third", bearer(ALICE.key));
        expect(third.status).toBe(429);
        expect(third.json.error.message).toBe("too many requests in flight for this client key (alice)");
        expect(third.headers["retry-after"]).toBe("1");
        expect(reached(rs, "probe=third")).toBe(false);
        expect((await completion(b.url, "bob-meanwhile", bearer(BOB.key))).status).toBe(200);
        for (const r of await Promise.all(streams.map((s) => s.result))) {
            expect(r.done).toBe(true);
        }
        expect((await completion(b.url, "after", bearer(ALICE.key))).status).toBe(200);
    });

    it("changes a key's limits with a reload of the config, not a restart", async () => {
        const rs = await standIns(1, ["--itl-ms", "1"]);
        const b = await edge({ upstreamPorts: rs.map((r) => r.port), clients: [{ ...ALICE, rps: 1, burst: 0 }] });
        const master = b.nginx.proc.pid;
        expect((await completion(b.url, "a", bearer(ALICE.key))).status).toBe(200);
        expect((await completion(b.url, "b", bearer(ALICE.key))).status).toBe(429);
        await b.reconfigure([{ ...ALICE, rps: 100, burst: 100 }]);
        await waitFor("the new limit", 5000, async () => (await completion(b.url, "c", bearer(ALICE.key))).status === 200);
        // A new worker answered; an old one may still accept a connection under the old limit for a moment.
        await sleep(500);
        const burst = await Promise.all(Array.from({ length: 20 }, (_, i) => completion(b.url, `d${i}`, bearer(ALICE.key))));
        expect(burst.every((r) => r.status === 200)).toBe(true);
        expect(b.nginx.proc.pid).toBe(master);
    });
});
