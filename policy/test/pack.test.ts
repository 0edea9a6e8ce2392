import { describe, expect, it } from "vitest";
import { policies } from "../policies";

describe("the pack", () => {
    it("has the six rules at their enforcement levels", () => {
        expect(Object.fromEntries(policies.map((p) => [p.name, p.enforcementLevel]))).toEqual({
            "no-open-replica-ports": "mandatory",
            "public-balancer-needs-tls": "advisory",
            "client-keys-need-tls": "mandatory",
            "no-moving-image-tags": "advisory",
            "one-replica-per-gpu": "mandatory",
            "startup-timeout-fits-model": "advisory",
        });
    });
});
