/**
 * TLS at the balancer under the real nginx, with certificates made in the test: HTTPS verified by name,
 * HTTP/2 with streams that still arrive token by token and still abort the generation when the client
 * leaves, TLS 1.2+ with forward-secret suites only, plain HTTP redirected or refused, a certificate
 * change as a reload, and a self-signed pair made by edge.sh itself.
 */
import { execFileSync } from "child_process";
import { X509Certificate } from "crypto";
import * as fs from "fs";
import * as http2 from "http2";
import * as https from "https";
import * as path from "path";
import * as tls from "tls";
import { afterEach, describe, expect, it } from "vitest";
import { performance } from "perf_hooks";
import {
    type EdgeBalancer,
    type EdgeBalancerOptions,
    type StandIn,
    makeCertificate,
    metricValue,
    nginxCli,
    nginxVersion,
    percentile,
    rawExchange,
    request,
    runEdge,
    scrape,
    sleep,
    startEdgeBalancer,
    startStandIn,
    stopAll,
    waitFor,
} from "../support";

const ITL_MS = 50;
const TOKENS = 20;
const ALICE = { name: "alice", key: "alice-key-0123456789+/=" };
const PLAIN_KEY_REFUSAL = "a key sent over plain HTTP is refused, not redirected: use https, and replace a key that crossed the network in clear text";

const replicas: StandIn[] = [];
const balancers: EdgeBalancer[] = [];
afterEach(async () => {
    await Promise.all(balancers.splice(0).map((b) => b.stop()));
    await stopAll(replicas.splice(0));
});

async function setup(options: Omit<EdgeBalancerOptions, "upstreamPorts">, standInArgs: string[] = []): Promise<{ b: EdgeBalancer; rs: StandIn[] }> {
    nginxVersion();
    const rs = await Promise.all([0, 1].map((i) => startStandIn({ replicaId: `r${i}`, args: ["--served-model-name", "m", "--itl-ms", String(ITL_MS), "--disable-uvicorn-access-log", ...standInArgs] })));
    replicas.push(...rs);
    const b = await startEdgeBalancer({ ...options, upstreamPorts: rs.map((r) => r.port) });
    balancers.push(b);
    return { b, rs };
}

interface H2Result {
    status: number;
    headers: http2.IncomingHttpHeaders;
    text: string;
    /** performance.now() of each SSE token event's arrival. */
    tokenArrivals: number[];
    done: boolean;
    alpn: string | false;
}

/** One request over HTTP/2 (ALPN h2, the certificate verified against `ca`), its SSE token arrivals timed. */
function h2Request(url: string, ca: string, body: object | undefined, headers: Record<string, string> = {}, onSession?: (s: http2.ClientHttp2Stream) => void): Promise<H2Result> {
    return new Promise((resolve, reject) => {
        const session = http2.connect(url, { ca });
        session.on("error", reject);
        const { pathname, search } = new URL(url);
        const req = session.request({ ":method": body ? "POST" : "GET", ":path": `${pathname}${search}`, ...(body ? { "content-type": "application/json" } : {}), ...headers });
        const result: H2Result = { status: 0, headers: {}, text: "", tokenArrivals: [], done: false, alpn: false };
        req.on("response", (h) => {
            result.status = Number(h[":status"]);
            result.headers = h;
            result.alpn = (session.socket as tls.TLSSocket).alpnProtocol ?? false;
        });
        req.setEncoding("utf8");
        req.on("data", (chunk: string) => {
            const at = performance.now();
            result.text += chunk;
            for (const line of chunk.split("\n")) {
                if (line.startsWith("data: ") && line !== "data: [DONE]") {
                    const choice = JSON.parse(line.slice(6)).choices?.[0];
                    if ((choice?.text ?? choice?.delta?.content ?? "") !== "") {
                        result.tokenArrivals.push(at);
                    }
                }
            }
            result.done = result.text.includes("data: [DONE]");
        });
        req.on("end", () => {
            session.close();
            resolve(result);
        });
        req.on("error", (e) => {
            session.close();
            reject(e);
        });
        onSession?.(req);
        req.end(body ? JSON.stringify(body) : undefined);
    });
}

/** A GET over HTTPS/1.1 with the certificate verified against `ca`; resolves with the status and the TLS details. */
function httpsGet(url: string, ca: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string; protocol: string | null; cipher: string; peer: X509Certificate }> {
    return new Promise((resolve, reject) => {
        const req = https.get(url, { ca, headers, agent: false, ALPNProtocols: ["http/1.1"] } as https.RequestOptions, (res) => {
            let body = "";
            res.setEncoding("utf8");
            res.on("data", (d) => (body += d));
            res.on("end", () => {
                const socket = res.socket as tls.TLSSocket;
                resolve({ status: res.statusCode ?? 0, body, protocol: socket.getProtocol(), cipher: socket.getCipher().standardName, peer: new X509Certificate(socket.getPeerX509Certificate()!.raw) });
            });
        });
        req.on("error", reject);
    });
}

/** Whether a TLS handshake with these client settings succeeds; the error message when it does not. */
function handshake(port: number, options: tls.ConnectionOptions): Promise<{ ok: boolean; error?: string; protocol?: string | null }> {
    return new Promise((resolve) => {
        const socket = tls.connect({ host: "127.0.0.1", port, rejectUnauthorized: false, ...options }, () => {
            const protocol = socket.getProtocol();
            socket.destroy();
            resolve({ ok: true, protocol });
        });
        socket.on("error", (e) => resolve({ ok: false, error: e.message }));
    });
}

const fingerprint = (pem: string) => new X509Certificate(pem).fingerprint256;
const body = (n = TOKENS) => ({ model: "m", prompt: "Tell me a story", max_tokens: n, stream: true });
const auth = { authorization: `Bearer ${ALICE.key}` };

describe("TLS at the balancer", () => {
    it("serves HTTPS with a certificate made in the test, verified by name, TLS 1.2 or 1.3 with a forward-secret AEAD suite", async () => {
        const pair = makeCertificate();
        const { b } = await setup({ tls: { mode: "provided", pair } });
        const r = await httpsGet(`${b.url}/v1/models`, pair.certificate);
        expect(r.status).toBe(200);
        expect(r.peer.fingerprint256).toBe(fingerprint(pair.certificate));
        expect(["TLSv1.2", "TLSv1.3"]).toContain(r.protocol);
        expect(r.cipher).toMatch(/^TLS_(AES_(128|256)_GCM_SHA(256|384)|CHACHA20_POLY1305_SHA256)$|^TLS_ECDHE_/);
        // TLS 1.2 negotiates an ECDHE suite.
        const v12 = await handshake(b.port, { ca: pair.certificate, maxVersion: "TLSv1.2", servername: "localhost" });
        expect(v12).toMatchObject({ ok: true, protocol: "TLSv1.2" });
    });

    it("refuses TLS 1.1 and older, and TLS 1.2 suites without forward secrecy or without AEAD", async () => {
        const pair = makeCertificate("IP:127.0.0.1,DNS:localhost", 2, "vllm-nginx rsa test", "rsa");
        const { b } = await setup({ tls: { mode: "provided", pair } });
        // The client would take them (security level 0); the server says no.
        const old = await handshake(b.port, { minVersion: "TLSv1", maxVersion: "TLSv1.1", ciphers: "DEFAULT@SECLEVEL=0" });
        expect(old.ok).toBe(false);
        expect(old.error).toMatch(/protocol version|unsupported protocol/i);
        for (const cipher of ["AES128-GCM-SHA256", "AES256-SHA", "ECDHE-RSA-AES128-SHA", "ECDHE-RSA-AES256-SHA384"]) {
            const weak = await handshake(b.port, { maxVersion: "TLSv1.2", ciphers: `${cipher}@SECLEVEL=0` });
            expect(weak.ok, cipher).toBe(false);
        }
        expect((await handshake(b.port, { maxVersion: "TLSv1.2", ciphers: "ECDHE-RSA-AES128-GCM-SHA256" })).ok).toBe(true);
    });

    it("speaks HTTP/2 to clients and still streams token by token, completions and chat", async () => {
        const pair = makeCertificate();
        const { b } = await setup({ tls: { mode: "provided", pair } });
        for (const [path, payload] of [
            ["/v1/completions", body()],
            ["/v1/chat/completions", { model: "m", messages: [{ role: "user", content: "hi" }], max_tokens: TOKENS, stream: true }],
        ] as const) {
            const r = await h2Request(`${b.url}${path}`, pair.certificate, payload);
            expect(r.alpn).toBe("h2");
            expect(r.status).toBe(200);
            expect(r.done).toBe(true);
            expect(r.tokenArrivals).toHaveLength(TOKENS);
            // Tokens arrive one by one, ~50 ms apart: no bursts.
            expect(new Set(r.tokenArrivals).size).toBeGreaterThanOrEqual(TOKENS - 1);
            const gaps = r.tokenArrivals.slice(1).map((t, i) => t - r.tokenArrivals[i]!);
            expect(percentile(gaps, 50)).toBeGreaterThan(0.7 * ITL_MS);
        }
    });

    it("aborts the generation on the replica when an HTTP/2 client cancels its stream", async () => {
        const pair = makeCertificate();
        const { b, rs } = await setup({ tls: { mode: "provided", pair } });
        let cancel: () => void = () => undefined;
        const pending = h2Request(`${b.url}/v1/completions`, pair.certificate, body(2000), {}, (s) => {
            let seen = 0;
            s.on("data", () => {
                seen += 1;
                if (seen === 3) {
                    cancel = () => s.close(http2.constants.NGHTTP2_CANCEL);
                    cancel();
                }
            });
        }).catch(() => undefined);
        await pending;
        const running = async () => (await Promise.all(rs.map(async (r) => metricValue(await scrape(r), "vllm:num_requests_running")))).reduce((a, v) => a + v, 0);
        await waitFor("the replica to drop the cancelled generation", 2000, async () => (await running()) === 0);
        const tokens = await Promise.all(rs.map(async (r) => metricValue(await scrape(r), "vllm:generation_tokens_total")));
        await sleep(4 * ITL_MS);
        expect(await Promise.all(rs.map(async (r) => metricValue(await scrape(r), "vllm:generation_tokens_total")))).toEqual(tokens);
        expect(tokens.reduce((a, v) => a + v, 0)).toBeLessThan(100);
    });

    it("checks client keys over HTTP/2 with vLLM's 401", async () => {
        const pair = makeCertificate();
        const { b } = await setup({ tls: { mode: "provided", pair }, clients: [ALICE] });
        const refused = await h2Request(`${b.url}/v1/completions`, pair.certificate, body(1));
        expect(refused.status).toBe(401);
        expect(JSON.parse(refused.text)).toEqual({ error: "Unauthorized" });
        const ok = await h2Request(`${b.url}/v1/completions`, pair.certificate, body(3), auth);
        expect(ok.status).toBe(200);
        expect(ok.done).toBe(true);
    });

    it("redirects plain HTTP to HTTPS when asked, keeping the health endpoint for probes; a plain request to the HTTPS port gets nginx's 400", async () => {
        const pair = makeCertificate();
        const { b } = await setup({ tls: { mode: "provided", pair, http: "redirect" } });
        const redirected = await request(`${b.plainUrl}/v1/models?x=1`, { agent: false, headers: { host: "llm.example:80" } });
        expect(redirected.status).toBe(308);
        expect(redirected.headers.location).toBe(`https://llm.example:${b.port}/v1/models?x=1`);
        expect((await request(`${b.plainUrl}/nginx-health`, { agent: false })).text).toMatch(/^ok [0-9a-f]{12} in=vllm0,vllm1 out=/);
        const plainToTls = await rawExchange(b.port, ["GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n"]);
        expect(plainToTls.statuses).toEqual([400]);
        expect(plainToTls.text).toContain("The plain HTTP request was sent to HTTPS port");
    });

    it("refuses, and does not redirect, a plain request that carries a key: a client that follows the redirect would send it in clear text on every request", async () => {
        const pair = makeCertificate();
        const { b } = await setup({ tls: { mode: "provided", pair, http: "redirect" }, clients: [ALICE] });
        for (const authorization of [`Bearer ${ALICE.key}`, "Bearer wrong-key-0123456789", "Basic dXNlcjpwdw=="]) {
            const refused = await request(`${b.plainUrl}/v1/models`, { agent: false, headers: { authorization } });
            expect(refused.status, authorization).toBe(400);
            expect(refused.headers.location).toBeUndefined();
            expect(refused.json.error.message).toBe(PLAIN_KEY_REFUSAL);
        }
        expect((await request(`${b.plainUrl}/v1/models`, { agent: false })).status).toBe(308);
    });

    it("with plain HTTP off, answers every plain request but the health endpoint with a refusal", async () => {
        const pair = makeCertificate();
        const { b } = await setup({ tls: { mode: "provided", pair, http: "off" } });
        const refused = await request(`${b.plainUrl}/v1/models`, { agent: false });
        expect(refused.status).toBe(400);
        expect(refused.json.error.message).toBe("plain HTTP is off: use https");
        expect((await request(`${b.plainUrl}/nginx-health`, { agent: false })).status).toBe(200);
    });

    it("changes the certificate with a reload: new handshakes get the new one, a stream in flight finishes, nginx keeps running", async () => {
        const first = makeCertificate();
        const second = makeCertificate("IP:127.0.0.1,DNS:localhost", 2, "vllm-nginx second");
        const { b } = await setup({ tls: { mode: "provided", pair: first } });
        const master = b.nginx.proc.pid;
        const inFlight = h2Request(`${b.url}/v1/completions`, first.certificate, body(40));
        await sleep(5 * ITL_MS);
        const out = await b.install([], { mode: "provided", pair: second });
        expect(out.stdout).toContain(`tls: provided certificate, sha256 fingerprint ${fingerprint(second.certificate)}`);
        expect(out.stdout + out.stderr).not.toContain("PRIVATE KEY");
        await waitFor("handshakes with the new certificate", 5000, async () => (await httpsGet(`${b.url}/v1/models`, second.certificate).catch(() => undefined))?.status === 200);
        const finished = await inFlight;
        expect(finished.done).toBe(true);
        expect(finished.tokenArrivals).toHaveLength(40);
        expect(b.nginx.proc.pid).toBe(master);
        await expect(httpsGet(`${b.url}/v1/models`, first.certificate)).rejects.toThrow();
    });

    it("makes a self-signed pair inside the balancer for dev: clients trust its certificate, the key stays in its file, the pair is kept while its names stay", async () => {
        const { b } = await setup({ tls: { mode: "self-signed", names: "IP:127.0.0.1,DNS:localhost" } });
        const certificate = (await runEdge(b.dir, ["certificate"], "")).stdout;
        expect(new X509Certificate(certificate).subjectAltName).toBe("IP Address:127.0.0.1, DNS:localhost");
        expect((await httpsGet(`${b.url}/v1/models`, certificate)).status).toBe(200);
        expect(fs.statSync(path.join(b.dir, "tls.key")).mode & 0o777).toBe(0o600);
        const again = await b.install([], { mode: "self-signed", names: "IP:127.0.0.1,DNS:localhost" });
        expect(again.stdout).toContain(`tls: self-signed certificate, sha256 fingerprint ${fingerprint(certificate)}`);
        expect(again.stdout + again.stderr).not.toContain("PRIVATE KEY");
        await b.install([], { mode: "self-signed", names: "IP:127.0.0.1,DNS:localhost,DNS:llm.internal" });
        const renamed = (await runEdge(b.dir, ["certificate"], "")).stdout;
        expect(fingerprint(renamed)).not.toBe(fingerprint(certificate));
        await waitFor("handshakes with the renamed certificate", 5000, async () => (await httpsGet(`${b.url}/v1/models`, renamed).catch(() => undefined))?.status === 200);
    });

    it("renews a self-signed pair with under 30 days left (what every `pulumi up` runs), keeps one that lasts, and warns of a provided one that is about to expire", async () => {
        const names = "IP:127.0.0.1,DNS:localhost";
        const { b } = await setup({ tls: { mode: "self-signed", names } });
        const lasting = (await runEdge(b.dir, ["certificate"], "")).stdout;
        expect((await runEdge(b.dir, ["renew", names], "", nginxCli(b.nginx))).stdout).toBe("");
        expect((await runEdge(b.dir, ["certificate"], "")).stdout).toBe(lasting);
        // A pair that runs out in 10 days, as a balancer left alone for 355 days has.
        execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "10", "-subj", "/CN=vllm-nginx", "-addext", `subjectAltName=${names}`, "-keyout", path.join(b.dir, "tls.key"), "-out", path.join(b.dir, "tls.crt")], { stdio: "ignore" });
        const ageing = (await runEdge(b.dir, ["certificate"], "")).stdout;
        const renewed = await runEdge(b.dir, ["renew", names], "", nginxCli(b.nginx));
        expect(renewed.stdout).toContain("the self-signed certificate, which expired on");
        const fresh = (await runEdge(b.dir, ["certificate"], "")).stdout;
        expect(fingerprint(fresh)).not.toBe(fingerprint(ageing));
        const days = (Date.parse(new X509Certificate(fresh).validTo) - Date.now()) / 86_400_000;
        expect(days).toBeGreaterThan(360);
        await waitFor("handshakes with the renewed certificate", 5000, async () => (await httpsGet(`${b.url}/v1/models`, fresh).catch(() => undefined))?.status === 200);
        // A provided pair is the operator's: a warning, and it stays.
        fs.writeFileSync(path.join(b.dir, "tls.source"), "provided\n");
        execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "10", "-subj", "/CN=vllm-nginx", "-addext", `subjectAltName=${names}`, "-keyout", path.join(b.dir, "tls.key"), "-out", path.join(b.dir, "tls.crt")], { stdio: "ignore" });
        const provided = (await runEdge(b.dir, ["certificate"], "")).stdout;
        const warned = await runEdge(b.dir, ["renew", names], "", nginxCli(b.nginx));
        expect(warned.stdout).toMatch(/^warning: the provided TLS certificate expires on .*: set a new tlsCertificate and tlsKey, then run `pulumi up`$/m);
        expect((await runEdge(b.dir, ["certificate"], "")).stdout).toBe(provided);
    });

    it("removes a provided pair once TLS is off and nginx's config no longer uses it, and keeps it while the config still does", async () => {
        const { b } = await setup({ tls: { mode: "provided", pair: makeCertificate() } });
        const pairFiles = () => ["tls.crt", "tls.key", "tls.source"].filter((f) => fs.existsSync(path.join(b.dir, f)));
        // The config nginx serves still listens with the pair: it stays, and HTTPS goes on.
        const early = await b.install([], "off");
        expect(early.stdout).toContain("tls: off");
        expect(pairFiles()).toEqual(["tls.crt", "tls.key", "tls.source"]);
        await b.reconfigure([], "off");
        await b.install([], "off");
        expect(pairFiles()).toEqual([]);
        expect(fs.readdirSync(b.dir).filter((f) => f.startsWith("."))).toEqual([]);
        // Served in clear text once every worker of the TLS config has stopped taking connections.
        await waitFor("plain HTTP served by the config without TLS", 10_000, async () => (await request(`${b.plainUrl}/v1/models`, { agent: false })).status === 200);
    });
});
