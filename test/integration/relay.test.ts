/**
 * The relay between the balancer and the replicas of other hosts (components/relay), on the real nginx
 * and its stream module: the balancer's rendered config in front of the egress, the egress in front of a
 * gate, the gate in front of a stand-in. Each end's key and certificate come from the command its
 * container runs. What a stranger on the network reaches at the gate, and what the balancer's clients
 * keep: streams token by token, and a client's abort that stops the generation.
 */
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as tls from "tls";
import { performance } from "perf_hooks";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Nginx, StandIn, freePort, metricValue, rawExchange, renderOurs, request, scrape, sleep, startNginx, startStandIn, stopAll, stream, tokenEvents } from "../support";
import { EGRESS_PEER_FILE, RELAY_DIR, peerFile, relayIdentityScript, relayServerName, renderEgressConfig, renderGateConfig, type RelayRoute } from "../../components/relay/render";

const ITL_MS = 30;
const MODEL = "m";
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vllm-nginx-relay-"));
const end = (name: string) => path.join(dir, name);
/** An end's config as its container would have it, with its directory in place of the container's. */
const at = (config: string, name: string) => config.split(RELAY_DIR).join(end(name));

let replica: StandIn | undefined;
let relay: Nginx | undefined;
let balancer: Nginx | undefined;
let gatePort = 0;
let route: RelayRoute;
/** An egress port open only to a network the tests are not on, and one for a replica the gate does not know. */
let closedPort = 0;
let unknownPort = 0;

/** A TLS client of the gate, as a stranger on the network: `cert` to present, and the request to send once connected. */
function strangerAtGate(options: { cert?: { key: string; cert: string }; servername?: string; maxVersion?: tls.SecureVersion }): Promise<{ handshake: boolean; answer: string; error?: string }> {
    return new Promise((resolve) => {
        let answer = "";
        let handshake = false;
        const socket = tls.connect({ host: "127.0.0.1", port: gatePort, servername: options.servername ?? route.replica + ".relay.vllm-nginx", rejectUnauthorized: false, maxVersion: options.maxVersion, ...options.cert }, () => {
            handshake = true;
            // /tokenize: one of the paths vLLM's --api-key does not guard.
            const body = JSON.stringify({ model: MODEL, prompt: "hello" });
            socket.write(`POST /tokenize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
        });
        const timer = setTimeout(() => socket.destroy(), 5000);
        socket.on("data", (d: Buffer) => (answer += d.toString("latin1")));
        socket.on("error", (error) => {
            clearTimeout(timer);
            resolve({ handshake, answer, error: error.message });
        });
        socket.on("close", () => {
            clearTimeout(timer);
            resolve({ handshake, answer });
        });
    });
}

const requestsSeen = async () => metricValue(await scrape(replica!), "vllm:request_success_total", { finished_reason: "length" }) + metricValue(await scrape(replica!), "vllm:request_success_total", { finished_reason: "stop" });

beforeAll(async () => {
    for (const name of ["egress", "gate", "stranger"]) {
        execFileSync("sh", ["-c", `set -e\n${relayIdentityScript(end(name))}`], { stdio: "pipe" });
    }
    // What the install does: each end gets the other's certificate, and only that.
    fs.copyFileSync(path.join(end("egress"), "self.crt"), path.join(end("gate"), "peers", EGRESS_PEER_FILE));
    fs.copyFileSync(path.join(end("gate"), "self.crt"), path.join(end("egress"), "peers", peerFile("b")));

    replica = await startStandIn({ replicaId: "b0", args: ["--itl-ms", String(ITL_MS), "--served-model-name", MODEL, "--disable-uvicorn-access-log"] });
    [gatePort, closedPort, unknownPort] = [await freePort(), await freePort(), await freePort()];
    const egressPort = await freePort();
    route = { replica: "b-vllm0", host: "b", egressPort, gate: `127.0.0.1:${gatePort}`, replicaAddress: `127.0.0.1:${replica.port}` };
    const timing = { timeoutSeconds: 60 };
    const streamConfig = [
        at(renderGateConfig([route], { ...timing, port: gatePort }), "gate"),
        at(renderEgressConfig([route], { ...timing, allow: "127.0.0.0/8" }), "egress"),
        at(renderEgressConfig([{ ...route, egressPort: closedPort }], { ...timing, allow: "10.255.255.0/24" }), "egress"),
        at(renderEgressConfig([{ ...route, replica: "b-vllm9", egressPort: unknownPort }], { ...timing, allow: "127.0.0.0/8" }), "egress"),
    ].join("\n");
    relay = await startNginx("", egressPort, { stream: streamConfig });
    const lbPort = await freePort();
    balancer = await startNginx(renderOurs([egressPort], lbPort), lbPort);
});

afterAll(async () => {
    await balancer?.stop();
    await relay?.stop();
    await stopAll([replica]);
    fs.rmSync(dir, { recursive: true, force: true });
});

describe("the relay (egress and gate), on the real nginx", () => {
    it("carries a stream from the balancer to a replica of another host token by token", async () => {
        const result = await stream(`${balancer!.url}/v1/chat/completions`, { model: MODEL, stream: true, max_tokens: 20, messages: [{ role: "user", content: "hi" }] }, { agent: false }).result;
        expect(result.status).toBe(200);
        expect(result.done).toBe(true);
        expect(result.replica).toBe("b0");
        const events = tokenEvents(result);
        expect(events.length).toBe(20);
        // One read per token, not one burst at the end.
        const arrivals = events.map((e) => e.at);
        expect(arrivals[arrivals.length - 1] - arrivals[0]).toBeGreaterThan(10 * ITL_MS);
    });

    it("ends the replica's generation within a second of the client leaving", async () => {
        const h = stream(`${balancer!.url}/v1/completions`, { model: MODEL, prompt: "p", stream: true, max_tokens: 2000 }, { agent: false });
        await h.firstEvent;
        await sleep(3 * ITL_MS);
        const result = h.result;
        const t0 = performance.now();
        h.abort();
        await result;
        let tookMs = Infinity;
        while (performance.now() - t0 < 3000) {
            if (metricValue(await scrape(replica!), "vllm:num_requests_running") === 0) {
                tookMs = performance.now() - t0;
                break;
            }
            await sleep(20);
        }
        expect(tookMs).toBeLessThan(1000);
    });

    it("answers nothing in clear text at the gate", async () => {
        const before = await requestsSeen();
        const plain = await rawExchange(gatePort, ["GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n"], 1000, 5000);
        expect(plain.statuses).toEqual([]);
        expect(plain.text).not.toContain("HTTP/1.1");
        expect(await requestsSeen()).toBe(before);
    });

    it("refuses a TLS client without a certificate, with one it does not trust, and any TLS below 1.3", async () => {
        const stranger = { key: fs.readFileSync(path.join(end("stranger"), "self.key"), "utf8"), cert: fs.readFileSync(path.join(end("stranger"), "self.crt"), "utf8") };
        const without = await strangerAtGate({});
        const foreign = await strangerAtGate({ cert: stranger });
        const old = await strangerAtGate({ cert: stranger, maxVersion: "TLSv1.2" });
        for (const [what, attempt] of Object.entries({ without, foreign, old })) {
            expect(attempt.answer, what).not.toContain("HTTP/1.1");
        }
        expect(old.handshake).toBe(false);
        // The gate's certificate has no secret in it, and carries the relay's name.
        const gateCertificate = execFileSync("openssl", ["x509", "-noout", "-ext", "subjectAltName", "-in", path.join(end("gate"), "self.crt")], { encoding: "utf8" });
        expect(gateCertificate).toContain("DNS:*.relay.vllm-nginx");
    });

    it("passes the egress's own certificate only to the replica the server name names", async () => {
        const egress = { key: fs.readFileSync(path.join(end("egress"), "self.key"), "utf8"), cert: fs.readFileSync(path.join(end("egress"), "self.crt"), "utf8") };
        const named = await strangerAtGate({ cert: egress });
        expect(named.answer).toMatch(/^HTTP\/1\.1 200 /);
        expect(named.answer).toContain('"tokens"');
        const unknown = await strangerAtGate({ cert: egress, servername: relayServerName("b-vllm9") });
        expect(unknown.answer).toBe("");
        // Through the egress, a replica the gate does not know is no answer either.
        expect((await rawExchange(unknownPort, ["GET /health HTTP/1.1\r\nHost: x\r\n\r\n"], 1000, 5000)).statuses).toEqual([]);
    });

    it("takes connections at the egress only from the network it allows", async () => {
        const open = await request(`http://127.0.0.1:${route.egressPort}/health`, { agent: false, timeoutMs: 5000 });
        expect(open.status).toBe(200);
        const closed = await rawExchange(closedPort, ["GET /health HTTP/1.1\r\nHost: x\r\n\r\n"], 1000, 5000);
        expect(closed.statuses).toEqual([]);
        expect(closed.closedByServer).toBe(true);
    });
});
