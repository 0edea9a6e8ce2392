import { describe, expect, it } from "vitest";
import { renderNginxConfig } from "../../components/nginx/render";
import { GUIDE_TOPOLOGY } from "./balancerConfig";


describe("rendered nginx config", () => {
    const rendered = renderNginxConfig(GUIDE_TOPOLOGY);
    const text = rendered.text;

    it("matches the reviewed snapshot for the gpu stack", async () => {
        await expect(text).toMatchFileSnapshot("__snapshots__/gpu-stack.nginx.conf");
    });

    it("balances in Lua before keepalive, over every replica with max_fails and fail_timeout", () => {
        const upstream = text.slice(text.indexOf("upstream vllm_backend {"), text.indexOf("\n}\n", text.indexOf("upstream vllm_backend {")));
        expect(upstream.indexOf("balancer_by_lua_block")).toBeLessThan(upstream.indexOf("keepalive 32;"));
        expect(upstream).toContain("server 172.29.20.10:8000 max_fails=3 fail_timeout=30s;");
        expect(upstream).toContain("server 172.29.20.11:8000 max_fails=3 fail_timeout=30s;");
        expect(text).toContain('method = "least_conn",');
        expect(text).toContain("max_fails = 3,");
        expect(text).toContain("fail_timeout = 30,");
    });

    it.each(["round_robin", "random_two_least_conn", "cache_aware"] as const)("renders the %s method for the Lua balancer", (balancer) => {
        const other = renderNginxConfig({ ...GUIDE_TOPOLOGY, method: balancer }).text;
        expect(other).toContain(`method = "${balancer}",`);
        expect(other).not.toMatch(/^\s+(least_conn|random two least_conn|hash)\b/m);
    });

    it("reads the routing key only in cache_aware mode: an access phase after auth and limits, the session header, the load bound", () => {
        expect(text).not.toContain("access_by_lua");
        const cache = renderNginxConfig({ ...GUIDE_TOPOLOGY, method: "cache_aware", sessionHeader: "x-session-id", loadBound: 1.5 }).text;
        expect(cache).toContain('access_by_lua_block { require("vllm_nginx.routing").access() }');
        expect(cache).toContain('session_header = "x-session-id",');
        expect(cache).toContain("load_bound = 1.5,");
    });

    it("lists every replica for the Lua balancer with the rotation's placeholder, filled in as nginx's down is", () => {
        const states = renderNginxConfig({
            ...GUIDE_TOPOLOGY,
            upstreams: [
                { name: "vllm0", address: "172.29.20.10:8000", state: "draining" },
                { name: "vllm1", address: "172.29.20.11:8000" },
            ],
        }).text;
        expect(states).toContain('{ name = "vllm0", address = "172.29.20.10:8000", out = " down" },');
        expect(states).toContain('{ name = "vllm1", address = "172.29.20.11:8000", out = "" },');
    });

    it("probes /health every healthCheckInterval, waiting up to 3 s for a busy replica's answer whatever the interval", () => {
        expect(text).toContain("health_interval = 1,");
        expect(text).toContain('health_path = "/health",');
        expect(text).toContain("health_timeout_ms = 3000,");
        const fast = renderNginxConfig({ ...GUIDE_TOPOLOGY, healthCheckIntervalSeconds: 0.5 }).text;
        expect(fast).toContain("health_interval = 0.5,");
        expect(fast).toContain("health_timeout_ms = 3000,");
    });

    it("serves the balancer's state on the internal listener only", () => {
        const [, publicServer, statusServer] = text.split(/^server \{$/m);
        expect(publicServer).not.toContain("/nginx-routing");
        expect(statusServer).toContain("location = /nginx-routing {");
    });

    it.each([
        ["HTTP/1.1 to the replicas", "proxy_http_version 1.1;"],
        ["keep-alive to the replicas (no Connection: close)", 'proxy_set_header Connection "";'],
        ["streamed tokens pass at once (pain point 1)", "proxy_buffering off;"],
        ["hour-long reads for long generations (pain point 2)", "proxy_read_timeout 3600s;"],
        ["long sends", "proxy_send_timeout 3600s;"],
        ["Host header, never the client's", "proxy_set_header Host $proxy_host;"],
        ["X-Real-IP", "proxy_set_header X-Real-IP $remote_addr;"],
        ["X-Forwarded-For", "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;"],
        ["X-Forwarded-Proto", "proxy_set_header X-Forwarded-Proto $scheme;"],
        ["room for long prompts", "client_max_body_size 100m;"],
        ["retry only when no request reached a replica", "proxy_next_upstream error timeout;"],
        ["client aborts close the upstream connection (pain point 6)", "proxy_ignore_client_abort off;"],
        ["a health endpoint of its own", "location = /nginx-health {"],
        ["in-flight counts shared by all workers (least_conn per fleet, not per worker)", "lua_shared_dict vllm_routing 10m;"],
        ["nginx's peer state shared by all workers", "zone vllm_backend 1m;"],
        ["idle upstream connections closed before vLLM's 5 s keep-alive closes them", "keepalive_timeout 4s;"],
    ])("has %s", (_what, directive) => {
        expect(text).toContain(directive);
    });

    it("never resends a request once it was sent or a response began", () => {
        expect(text).not.toContain("non_idempotent");
        expect(text).not.toMatch(/proxy_next_upstream[^;]*http_5/);
    });

    it("addresses replicas by IP, so nginx starts without resolving any name (pain point 10)", () => {
        const servers = text.slice(text.indexOf("upstream vllm_backend {"), text.indexOf("\n}\n", text.indexOf("upstream vllm_backend {"))).split("\n").filter((l) => l.trim().startsWith("server "));
        expect(servers).toHaveLength(2);
        for (const line of servers) {
            expect(line).toMatch(/server \d+\.\d+\.\d+\.\d+:\d+ /);
        }
    });

    it("serves an id that changes with the config, so a reload can be confirmed", () => {
        const { id } = rendered;
        expect(id).toMatch(/^[0-9a-f]{12}$/);
        expect(text).toContain(`return 200 "ok ${id} in=vllm0,vllm1 out=\\n";`);
        expect(text.split("\n")[0]).toBe(`# vllm-nginx balancer for stack "gpu"; config ${id}.`);
        const changed = renderNginxConfig({ ...GUIDE_TOPOLOGY, upstreams: GUIDE_TOPOLOGY.upstreams.slice(0, 1) });
        expect(changed.id).not.toBe(id);
        expect(renderNginxConfig(GUIDE_TOPOLOGY)).toEqual(rendered);
    });

    it("takes a replica out of rotation without removing it: draining and down servers are nginx's `down`, weights are kept", () => {
        const states = renderNginxConfig({
            ...GUIDE_TOPOLOGY,
            upstreams: [
                { name: "vllm0", address: "172.29.20.10:8000", state: "draining" },
                { name: "vllm1", address: "172.29.20.11:8000", weight: 2 },
                { name: "vllm2", address: "172.29.20.12:8000", state: "down" },
            ],
        }).text;
        expect(states).toContain("server 172.29.20.10:8000 max_fails=3 fail_timeout=30s down;  # vllm0 (draining)");
        expect(states).toContain("server 172.29.20.11:8000 weight=2 max_fails=3 fail_timeout=30s;  # vllm1");
        expect(states).toContain("server 172.29.20.12:8000 max_fails=3 fail_timeout=30s down;  # vllm2 (out of rotation)");
        expect(states).toContain('return 200 "ok');
        expect(states).toMatch(/ in=vllm1 out=vllm0,vllm2\\n";/);
    });

    it("with model groups, hands the Lua balancer each group's names, method and replicas, and reads every request's body in the access phase", () => {
        const groups = [
            { name: "chat", method: "cache_aware" as const, sessionHeader: "x-user-id", loadBound: 1.5, served: [{ id: "llama", root: "meta-llama/Llama-3.1-8B-Instruct" }, { id: "sql", root: "org/sql-lora", parent: "llama" }] },
            { name: "embed", method: "least_conn" as const, sessionHeader: "x-user-id", loadBound: 1.25, served: [{ id: "minilm", root: "sentence-transformers/all-MiniLM-L6-v2" }] },
        ];
        const upstreams = GUIDE_TOPOLOGY.upstreams.map((u, i) => ({ ...u, group: i === 0 ? "chat" : "embed" }));
        const grouped = renderNginxConfig({ ...GUIDE_TOPOLOGY, method: "least_conn", upstreams, groups }).text;
        expect(grouped).toContain(`{ name = "vllm0", address = "172.29.20.10:8000", out = "", group = "chat" },`);
        expect(grouped).toContain(`{ name = "vllm1", address = "172.29.20.11:8000", out = "", group = "embed" },`);
        expect(grouped).toContain('{ name = "chat", method = "cache_aware", session_header = "x-user-id", load_bound = 1.5,');
        expect(grouped).toContain('models = { { id = "llama", root = "meta-llama/Llama-3.1-8B-Instruct" }, { id = "sql", root = "org/sql-lora", parent = "llama" } } },');
        expect(grouped).toContain('{ name = "embed", method = "least_conn",');
        // least_conn at the top level, yet the body is read: the model picks the group.
        expect(grouped).toContain('access_by_lua_block { require("vllm_nginx.routing").access() }');
        // Without groups, neither: the snapshot above is the one-group config, unchanged.
        expect(text).not.toContain("groups = {");
        expect(text).not.toContain("group = ");
    });

    it("refuses to render an empty upstream", () => {
        expect(() => renderNginxConfig({ ...GUIDE_TOPOLOGY, upstreams: [] })).toThrow(/at least one upstream/);
    });
});
