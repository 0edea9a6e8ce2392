/**
 * The front door as rendered: client keys checked at the server's rewrite phase (before a location or a
 * replica is chosen), limits per key, TLS, what the public port refuses, and the secret files' text.
 */
import { describe, expect, it } from "vitest";
import type { EdgeSettings } from "../../components/config/settings";
import { OPEN_EDGE_SETTINGS, edgeConfig, edgeLabels, edgePorts, edgeScheme, renderEdgeSecrets, subjectAltNames } from "../../components/edge";
import { endpointHost } from "../../components/fleet";
import { API_KEY_CLIENT, FORWARDED_PATHS, type EdgeConfig } from "../../components/edge/render";
import { clientKeyEntry } from "../../components/edge/secrets";
import { BalancerConfig, fillTemplate, renderNginxConfig, renderTemplate } from "../../components/nginx/render";
import { GUIDE_TOPOLOGY } from "./balancerConfig";

const BASE: BalancerConfig = { ...GUIDE_TOPOLOGY, stack: "prod" };

const SETTINGS: EdgeSettings = {
    clients: [
        { name: "alice", rps: 5, burst: 10, concurrent: 4 },
        { name: "bob", rps: 5, burst: 10 },
        { name: "ci", rps: 0.5, burst: 1, concurrent: 1 },
        { name: "ops" },
    ],
    replicaKey: false,
    tls: { mode: "provided", http: "redirect", httpPort: 80, hosts: [] },
    exposeMetrics: false,
};
const EDGE = edgeConfig(SETTINGS, 8443);
const text = renderNginxConfig({ ...BASE, edge: EDGE }).text;

/** The body of the first block that starts with `head`. */
function block(source: string, head: string): string {
    const start = source.indexOf(head);
    expect(start, head).toBeGreaterThanOrEqual(0);
    let depth = 0;
    for (let i = source.indexOf("{", start); i < source.length; i += 1) {
        depth += source[i] === "{" ? 1 : source[i] === "}" ? -1 : 0;
        if (depth === 0) {
            return source.slice(start, i + 1);
        }
    }
    throw new Error(`unclosed block ${head}`);
}

/** The public server: the one that proxies. */
const publicServer = (source: string) => {
    const servers = [...source.matchAll(/^server \{/gm)].map((m) => block(source.slice(m.index!), "server {"));
    return servers.find((s) => s.includes("proxy_pass"))!;
};

describe("the front door, rendered", () => {
    it("matches the reviewed snapshot (names and limits only)", async () => {
        await expect(text).toMatchFileSnapshot("__snapshots__/edge-stack.nginx.conf");
    });

    it("holds names only: the keys are in a file the config includes", () => {
        expect(text).toContain("include /etc/nginx/vllm-nginx/edge/client-keys.map;");
        expect(text).toContain("include /etc/nginx/vllm-nginx/edge/replica-authorization.map;");
        expect(text).not.toMatch(/Bearer [^<]/);
        expect(text).toContain("# Client keys (alice, bob, ci, ops)");
    });

    it("checks the key at the server's rewrite phase, before any location (and so before any replica) is chosen", () => {
        const server = publicServer(text);
        const check = server.indexOf("if ($vllm_unauthorized) {");
        expect(check).toBeGreaterThan(0);
        expect(check).toBeLessThan(server.indexOf("location"));
        expect(block(server.slice(check), "if ($vllm_unauthorized)")).toContain(`return 401 '{"error": "Unauthorized"}';`);
        // Only the probes' paths and CORS preflights go without a key.
        expect(block(text, "map $uri $vllm_key_free")).toMatch(/\/health 1;\s+\/ping 1;\s+\/version 1;\s+\/nginx-health 1;/);
        expect(block(text, 'map "$request_method:$vllm_key_free:$vllm_client" $vllm_unauthorized')).toContain('"~^OPTIONS:" 0;');
    });

    it("matches keys with their letter case (nginx's plain map strings ignore it) and the scheme in any case", () => {
        expect(clientKeyEntry("alice", "Ab.c+d/e=f~g-h_i0123")).toBe('"~^(?i:bearer)[ \\t]+Ab\\.c\\+d/e=f~g-h_i0123[ \\t]*$" alice;');
        expect(() => clientKeyEntry("alice", 'quote"key-0123456789')).toThrow(/bearer tokens/);
    });

    it("limits each key in zones of keys with the same limits, answering 429 with Retry-After in vLLM's error shape", () => {
        expect(text).toContain("limit_req_zone $vllm_rate_5rs_b10 zone=vllm_rate_5rs_b10:1m rate=5r/s;");
        expect(block(text, "map $vllm_client $vllm_rate_5rs_b10")).toMatch(/alice alice;\s+bob bob;/);
        expect(text).toContain("limit_req_zone $vllm_rate_30rm_b1 zone=vllm_rate_30rm_b1:1m rate=30r/m;");
        expect(text).toContain("limit_conn_zone $vllm_conn_4 zone=vllm_conn_4:1m;");
        const server = publicServer(text);
        for (const line of ["limit_req zone=vllm_rate_5rs_b10 burst=10 nodelay;", "limit_req zone=vllm_rate_30rm_b1 burst=1 nodelay;", "limit_conn vllm_conn_4 4;", "limit_conn vllm_conn_1 1;", "limit_req_status 429;", "limit_conn_status 429;", "error_page 429 @vllm_limited;"]) {
            expect(server).toContain(line);
        }
        const limited = block(server, "location @vllm_limited");
        expect(limited).toContain("add_header Retry-After $vllm_retry_after always;");
        expect(limited).toContain(`"type": "RateLimitError", "param": null, "code": 429`);
        // A key allowed one request every 2 s is told to wait 2 s.
        expect(block(text, "map $vllm_client $vllm_retry_after")).toMatch(/default 1;\s+ci 2;/);
        expect(text).not.toMatch(/zone=\S*ops/);
    });

    /** Every location of the public server that proxies (the routing may add more than `location /`). */
    const proxyingLocations = (source: string) => {
        const server = publicServer(source);
        const locations = [...server.matchAll(/^ {4}location [^{]*\{/gm)].map((m) => block(server.slice(m.index!), m[0]));
        const proxying = locations.filter((l) => l.includes("proxy_pass"));
        expect(proxying.length).toBeGreaterThan(0);
        return { server, proxying };
    };

    it("keeps the 429 and 413 answers in every location that proxies (nginx drops inherited error_page once a location has one)", () => {
        const { server, proxying } = proxyingLocations(text);
        for (const location of proxying) {
            const own = location.match(/error_page[^;]*;/g) ?? [];
            const effective = (own.length > 0 ? own : (server.match(/^ {4}error_page[^;]*;/gm) ?? [])).join(" ");
            expect(effective).toMatch(/error_page[^;]*\b429\b[^;]*@vllm_limited/);
            expect(effective).toMatch(/error_page[^;]*\b413\b[^;]*@vllm_too_large/);
        }
    });

    it("tells the replica the key's name, never the key, and sends the replicas' own key in place of the client's, from every location that proxies", () => {
        // A location with proxy_set_header of its own inherits none from the server: each must set both.
        for (const location of proxyingLocations(text).proxying) {
            expect(location).toContain("proxy_set_header X-Client-Name $vllm_client;");
            expect(location).toContain("proxy_set_header Authorization $vllm_replica_authorization;");
        }
        expect(text).toMatch(/'client=\$vllm_client';/);
    });

    it("serves TLS 1.2 and 1.3 only, with forward-secret AEAD suites, and HTTP/2", () => {
        const server = publicServer(text);
        expect(server).toContain("listen 443 ssl http2;");
        expect(server).toContain("ssl_protocols TLSv1.2 TLSv1.3;");
        const ciphers = /ssl_ciphers ([^;]+);/.exec(server)![1]!.split(":");
        expect(ciphers.length).toBeGreaterThan(0);
        for (const cipher of ciphers) {
            expect(cipher).toMatch(/^ECDHE-(ECDSA|RSA)-(AES(128|256)-GCM-SHA(256|384)|CHACHA20-POLY1305)$/);
        }
        expect(server).toContain("ssl_certificate /etc/nginx/vllm-nginx/edge/tls.crt;");
        expect(server).toContain("ssl_session_tickets off;");
    });

    it("redirects plain HTTP to HTTPS on the public port, and keeps the health endpoint there for probes", () => {
        const plain = block(text, "# Plain HTTP");
        expect(plain).toContain("listen 80;");
        expect(plain).toContain("return 308 https://$host:8443$request_uri;");
        // A request with a key is refused there, never redirected: the key already crossed in clear text.
        expect(plain.indexOf("if ($http_authorization)")).toBeLessThan(plain.indexOf("return 308"));
        expect(plain).toContain("location = /nginx-health {");
        expect(plain).not.toContain("proxy_pass");
        const off = renderNginxConfig({ ...BASE, edge: { ...EDGE, tls: { ...EDGE.tls!, http: "off" } } }).text;
        expect(block(off, "# Plain HTTP")).toContain('"message": "plain HTTP is off: use https"');
        const standard = renderNginxConfig({ ...BASE, edge: { ...EDGE, tls: { ...EDGE.tls!, publicPort: 443 } } }).text;
        expect(standard).toContain("return 308 https://$host$request_uri;");
    });

    it("reports the rotation in both health endpoints when the template is filled in", () => {
        const { template } = renderTemplate({ ...BASE, edge: EDGE });
        const filled = fillTemplate(template, { vllm0: "active", vllm1: "draining" });
        expect(filled.match(/in=vllm0 out=vllm1\\n/g)).toHaveLength(2);
        expect(filled).not.toContain("{{");
    });

    it("forwards only the API's and the probes' paths, answering any other 404 after the key check; /metrics only when told to pass it", () => {
        const server = publicServer(text);
        const forwarded = block(text, "map $uri $vllm_forwarded");
        expect(forwarded).toContain("default 0;");
        for (const p of ["/v1/completions", "/v1/chat/completions", "/v1/models", "/tokenize", "/invocations", "/health", "/nginx-health"]) {
            expect(forwarded).toContain(`    ${p} 1;`);
        }
        for (const p of ["/metrics", "/nginx-status", "/server_info", "/reset_prefix_cache", "/v1/load_lora_adapter", "/load", "/docs", "/openapi.json"]) {
            expect(forwarded).not.toContain(`${p} 1;`);
        }
        expect(block(server, "if ($vllm_forwarded = 0)")).toContain(`return 404 '{"detail": "Not Found"}';`);
        expect(server.indexOf("if ($vllm_unauthorized)")).toBeLessThan(server.indexOf("if ($vllm_forwarded = 0)"));
        const exposed = renderNginxConfig({ ...BASE, edge: { ...EDGE, exposeMetrics: true } }).text;
        expect(block(exposed, "map $uri $vllm_forwarded")).toContain('"~^/metrics(/.*)?$" 1;');
        expect(FORWARDED_PATHS).not.toContain("/metrics");
    });

    it("never sends a replica the client's Host (vLLM before 0.22 skipped its key check for `Host: x?`)", () => {
        for (const config of [text, renderNginxConfig(BASE).text]) {
            expect(config).toContain("proxy_set_header Host $proxy_host;");
            expect(config).not.toContain("proxy_set_header Host $host;");
        }
    });

    it("without client keys but with the replicas' apiKey, checks that key itself and sends it on", () => {
        const checked = renderNginxConfig({ ...BASE, edge: { ...edgeConfig(OPEN_EDGE_SETTINGS, 8000), replicaKey: true } }).text;
        expect(checked).toContain(`is named ${API_KEY_CLIENT}`);
        expect(block(checked, "map $http_authorization $vllm_client")).toContain("include /etc/nginx/vllm-nginx/edge/client-keys.map;");
        expect(block(publicServer(checked), "if ($vllm_unauthorized)")).toContain(`return 401 '{"error": "Unauthorized"}';`);
        expect(checked).toContain("proxy_set_header Authorization $vllm_replica_authorization;");
        // What passes without a key is limited per address, as with client keys.
        expect(publicServer(checked)).toContain("limit_req zone=vllm_anonymous burst=20 nodelay;");
        expect(publicServer(checked)).toContain("limit_conn vllm_anonymous_conn 16;");
        const bundle = renderEdgeSecrets({ clientKeys: [], replicaKey: "replica-key-0123456789" });
        expect(bundle).toContain(`#file client-keys.map\n"~^(?i:bearer)[ \\t]+replica-key-0123456789[ \\t]*$" ${API_KEY_CLIENT};\n`);
        expect(bundle).toContain('#file replica-authorization.map\ndefault "Bearer replica-key-0123456789";');
        // With client keys, the replicas' key is not one of them.
        expect(renderEdgeSecrets({ clientKeys: [{ name: "alice", key: "alice-key-0123456789" }], replicaKey: "replica-key-0123456789" })).not.toContain(API_KEY_CLIENT);
    });

    it("refuses paths nginx and a replica would read differently, and drops slow clients", () => {
        const server = publicServer(text);
        expect(block(text, "map $request_uri $vllm_bad_path")).toMatch(/"~\*\^\[\^\?\]\*%2\[ef\]" 1;/);
        expect(server.indexOf("if ($vllm_bad_path)")).toBeLessThan(server.indexOf("location"));
        for (const line of ["client_header_timeout 10s;", "client_body_timeout 10s;", "large_client_header_buffers 4 16k;", "reset_timedout_connection on;", "error_page 413 @vllm_too_large;"]) {
            expect(server).toContain(line);
        }
    });

    it("without keys checks none, but still refuses what the public port never serves and strips a client's X-Client-Name", () => {
        const open = renderNginxConfig(BASE).text;
        expect(open).toContain('map $http_authorization $vllm_client { default ""; }');
        expect(open).not.toContain("$vllm_unauthorized");
        expect(open).not.toContain("limit_req");
        expect(open).not.toContain("proxy_set_header Authorization");
        expect(open).toContain("proxy_set_header X-Client-Name $vllm_client;");
        expect(open).toContain("if ($vllm_forwarded = 0) {");
        expect(publicServer(open)).toContain("listen 80;");
        expect(open).not.toContain("ssl");
    });
});

describe("the front door's secret files", () => {
    it("are one text: a header, a file per section, an end line", () => {
        const bundle = renderEdgeSecrets({ clientKeys: [{ name: "alice", key: "alice-key-0123456789" }], replicaKey: "replica-key-0123", tls: { certificate: "-----BEGIN CERTIFICATE-----\r\nAAA\r\n-----END CERTIFICATE-----\r\n", privateKey: "-----BEGIN PRIVATE KEY-----\nBBB\n-----END PRIVATE KEY-----\n" } });
        expect(bundle).toBe(
            [
                "#vllm-nginx-edge 1",
                "#file client-keys.map",
                '"~^(?i:bearer)[ \\t]+alice-key-0123456789[ \\t]*$" alice;',
                "#file replica-authorization.map",
                'default "Bearer replica-key-0123";',
                "#file tls.crt",
                "-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----",
                "#file tls.key",
                "-----BEGIN PRIVATE KEY-----\nBBB\n-----END PRIVATE KEY-----",
                "#end",
                "",
            ].join("\n"),
        );
        expect(renderEdgeSecrets({ clientKeys: [] })).toBe('#vllm-nginx-edge 1\n#file client-keys.map\n#file replica-authorization.map\ndefault "";\n#end\n');
    });

    it("refuses a replica key nginx could not send as it is, and a PEM that would end a section", () => {
        expect(() => renderEdgeSecrets({ clientKeys: [], replicaKey: 'a"b' })).toThrow(/bearer token/);
        expect(() => renderEdgeSecrets({ clientKeys: [], tls: { certificate: "x\n#end\ny", privateKey: "k" } })).toThrow(/marks a section/);
    });
});

describe("what the balancer's container gets from the front door", () => {
    const off: EdgeSettings = { clients: [], replicaKey: false, tls: { mode: "off", http: "off", httpPort: 80, hosts: ["localhost"] }, exposeMetrics: false };

    it("publishes nginx's plain port without TLS; its HTTPS port with TLS, and plain HTTP only to redirect", () => {
        const publish = { port: 8000, bind: "0.0.0.0" };
        expect(edgePorts(off, publish)).toEqual([{ internal: 80, external: 8000, ip: "0.0.0.0" }]);
        expect(edgePorts(SETTINGS, publish)).toEqual([
            { internal: 443, external: 8000, ip: "0.0.0.0" },
            { internal: 80, external: 80, ip: "0.0.0.0" },
        ]);
        expect(edgePorts({ ...SETTINGS, tls: { ...SETTINGS.tls, http: "off" } }, publish)).toEqual([{ internal: 443, external: 8000, ip: "0.0.0.0" }]);
    });

    it("labels whether keys are checked (not how many: a new label value replaces the container) and whether TLS is on, and names the scheme", () => {
        expect(edgeLabels(SETTINGS)).toEqual({ clientKeys: "on", tls: "on" });
        expect(edgeLabels(off)).toEqual({ clientKeys: "off", tls: "off" });
        expect([edgeScheme(SETTINGS), edgeScheme(off)]).toEqual(["https", "http"]);
    });

    it("names the self-signed certificate's hosts and addresses as openssl takes them", () => {
        expect(subjectAltNames(["localhost", "127.0.0.1", "llm.example.com"])).toBe("DNS:localhost,IP:127.0.0.1,DNS:llm.example.com");
    });

    it("renders HTTPS on the container's TLS port", () => {
        const config: EdgeConfig = edgeConfig(SETTINGS, 8000);
        expect(config.tls).toEqual({ mode: "provided", http: "redirect", listen: "443", publicPort: 8000 });
        expect(edgeConfig(off, 8000).tls).toBeUndefined();
    });
});

describe("the endpoint's host", () => {
    const tls = (mode: "off" | "self-signed" | "provided", hosts = ["localhost", "127.0.0.1"]) => ({ ...OPEN_EDGE_SETTINGS, tls: { ...OPEN_EDGE_SETTINGS.tls, mode, hosts } });
    it("is the bind address, else a self-signed certificate's first name, else a remote engine's host, else the loopback", () => {
        expect(endpointHost("10.0.0.5", "ssh://deploy@gpu-a", tls("self-signed"))).toBe("10.0.0.5");
        expect(endpointHost("0.0.0.0", undefined, tls("self-signed", ["llm.example.com"]))).toBe("llm.example.com");
        expect(endpointHost("0.0.0.0", "ssh://deploy@gpu-a.example.internal:2222", tls("off"))).toBe("gpu-a.example.internal");
        expect(endpointHost("0.0.0.0", "tcp://10.40.0.11:2376", tls("provided"))).toBe("10.40.0.11");
        expect(endpointHost("0.0.0.0", "unix:///var/run/docker.sock", tls("off"))).toBe("127.0.0.1");
        expect(endpointHost("0.0.0.0", undefined, tls("off"))).toBe("127.0.0.1");
    });
});
