import { describe, expect, it } from "vitest";
import { publicBalancerNeedsTls } from "../policies";
import { balancer, checkResource, replica } from "./fixtures";

describe("public-balancer-needs-tls (advisory)", () => {
    it("is advisory", () => {
        expect(publicBalancerNeedsTls.enforcementLevel).toBe("advisory");
    });

    it("fires for a balancer on 0.0.0.0 without TLS", async () => {
        const violations = await checkResource(publicBalancerNeedsTls, balancer({ ip: "0.0.0.0", tls: "off" }));
        expect(violations.map((v) => v.message)).toEqual([
            expect.stringContaining("the balancer publishes 0.0.0.0:8000 beyond the loopback without TLS (vllm-nginx.tls=off): prompts and completions cross"),
        ]);
    });

    it("leaves a balancer that checks client keys to client-keys-need-tls", async () => {
        expect(await checkResource(publicBalancerNeedsTls, balancer({ ip: "0.0.0.0", clientKeys: true }))).toEqual([]);
        const [violation] = await checkResource(publicBalancerNeedsTls, balancer({ ip: "0.0.0.0", clientKeys: false }));
        expect(violation.message).toContain("(vllm-nginx.tls=unset): prompts and completions cross the network in clear text");
    });

    it("does not fire with TLS on, or on the loopback", async () => {
        expect(await checkResource(publicBalancerNeedsTls, balancer({ ip: "0.0.0.0", tls: "on" }))).toEqual([]);
        expect(await checkResource(publicBalancerNeedsTls, balancer({ ip: "127.0.0.1", tls: "off" }))).toEqual([]);
    });

    it("leaves replicas to the replica rule", async () => {
        expect(await checkResource(publicBalancerNeedsTls, replica("vllm0", { ip: "0.0.0.0" }))).toEqual([]);
    });
});
