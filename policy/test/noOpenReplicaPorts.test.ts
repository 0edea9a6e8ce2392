import { describe, expect, it } from "vitest";
import { noOpenReplicaPorts } from "../policies";
import { balancer, checkStack, replica, urnOf } from "./fixtures";

describe("no-open-replica-ports (mandatory)", () => {
    it("is mandatory", () => {
        expect(noOpenReplicaPorts.enforcementLevel).toBe("mandatory");
    });

    it("passes the program's default: replica ports on 127.0.0.1, balancer open", async () => {
        expect(await checkStack(noOpenReplicaPorts, [replica("vllm0", { ip: "127.0.0.1" }), replica("vllm1", { ip: "127.0.0.1", port: 8082 }), balancer({ ip: "0.0.0.0" })])).toEqual([]);
    });

    it("accepts every loopback spelling", async () => {
        for (const ip of ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"]) {
            expect(await checkStack(noOpenReplicaPorts, [replica("vllm0", { ip }), balancer()]), ip).toEqual([]);
        }
    });

    it("fires for each replica published on 0.0.0.0 while the balancer checks no key", async () => {
        const vllm0 = replica("vllm0", { ip: "0.0.0.0" });
        const vllm1 = replica("vllm1", { ip: "127.0.0.1", port: 8082 });
        const violations = await checkStack(noOpenReplicaPorts, [vllm0, vllm1, balancer({ clientKeys: false })]);
        expect(violations).toHaveLength(1);
        expect(violations[0].urn).toBe(urnOf(vllm0));
        expect(violations[0].message).toContain("replica vllm0 publishes 0.0.0.0:8081 beyond the loopback without a key of its own (the balancer checks no client key)");
        expect(violations[0].message).toContain("vllm-nginx:replicaPortBind");
        expect(violations[0].message).toContain("vllm-nginx:apiKey");
    });

    it("treats a port without an address as Docker does: every interface", async () => {
        const violations = await checkStack(noOpenReplicaPorts, [replica("vllm0"), balancer()]);
        expect(violations.map((v) => v.message)).toEqual([expect.stringContaining("publishes 0.0.0.0:8081")]);
    });

    it("fires for a LAN address too", async () => {
        expect(await checkStack(noOpenReplicaPorts, [replica("vllm0", { ip: "192.168.1.20" }), balancer()])).toHaveLength(1);
    });

    it("fires when there is no balancer at all", async () => {
        const violations = await checkStack(noOpenReplicaPorts, [replica("vllm0", { ip: "0.0.0.0" })]);
        expect(violations[0].message).toContain("(there is no balancer)");
    });

    it("still fires when client keys guard the balancer: they do not guard a replica reached around it", async () => {
        const violations = await checkStack(noOpenReplicaPorts, [replica("vllm0", { ip: "10.40.0.12" }), balancer({ clientKeys: true })]);
        expect(violations.map((v) => v.message)).toEqual([expect.stringContaining("replica vllm0 publishes 10.40.0.12:8081 beyond the loopback without a key of its own (the balancer's client keys do not guard them)")]);
    });

    it("does not fire for a replica that requires vLLM's key, plain or as a secret in its environment", async () => {
        const secretEnvs = { "4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", value: ["VLLM_API_KEY=a-key-only-the-balancer-sends", "HF_HUB_OFFLINE=1"] };
        for (const envs of [["VLLM_API_KEY=a-key-only-the-balancer-sends"], secretEnvs]) {
            expect(await checkStack(noOpenReplicaPorts, [replica("vllm0", { ip: "10.40.0.12", extraProps: { envs } }), balancer({ clientKeys: true })])).toEqual([]);
        }
    });
});
