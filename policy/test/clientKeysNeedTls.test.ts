import { describe, expect, it } from "vitest";
import { clientKeysNeedTls } from "../policies";
import { balancer, checkResource, replica } from "./fixtures";

describe("client-keys-need-tls (mandatory)", () => {
    it("is mandatory", () => {
        expect(clientKeysNeedTls.enforcementLevel).toBe("mandatory");
    });

    it("fires for a balancer that checks keys on 0.0.0.0 without TLS", async () => {
        const violations = await checkResource(clientKeysNeedTls, balancer({ ip: "0.0.0.0", clientKeys: true, tls: "off" }));
        expect(violations.map((v) => v.message)).toEqual([
            expect.stringContaining("the balancer checks client keys (vllm-nginx.client-keys=on) on 0.0.0.0:8000 beyond the loopback without TLS (vllm-nginx.tls=off): every request carries its key in clear text"),
        ]);
    });

    it("does not fire with TLS on, on the loopback, or without keys", async () => {
        expect(await checkResource(clientKeysNeedTls, balancer({ ip: "0.0.0.0", clientKeys: true, tls: "on" }))).toEqual([]);
        expect(await checkResource(clientKeysNeedTls, balancer({ ip: "127.0.0.1", clientKeys: true, tls: "off" }))).toEqual([]);
        expect(await checkResource(clientKeysNeedTls, balancer({ ip: "0.0.0.0", clientKeys: false, tls: "off" }))).toEqual([]);
    });

    it("leaves replicas alone", async () => {
        expect(await checkResource(clientKeysNeedTls, replica("vllm0", { ip: "0.0.0.0" }))).toEqual([]);
    });
});
