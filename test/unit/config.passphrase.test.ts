import { describe, expect, it } from "vitest";
import { emptyPassphraseWarning } from "../../components/config/stack";

describe("secrets under the empty passphrase", () => {
    const PASSPHRASE_STACK = "encryptionsalt: v1:YElMsJ+Kjng=:v1:7vW1nm4wyKYp0Bdv:ngk9uwc1haKUzMdBItaS/LeYIxylIA==\nconfig:\n  vllm-nginx:model: m\n";
    const warn = (keys: string[], env: Record<string, string | undefined>, text?: string | null) => emptyPassphraseWarning(keys, env, text === null ? undefined : (text ?? PASSPHRASE_STACK), "Pulumi.prod.yaml");

    it("warns, naming the secrets and the stack file, when they are encrypted for the empty passphrase", () => {
        const message = warn(["apiKey", "clientKeys"], { PULUMI_CONFIG_PASSPHRASE: "" });
        expect(message).toContain("the stack's secrets (apiKey, clientKeys) are encrypted with the empty passphrase: anyone who has Pulumi.prod.yaml can read them.");
        expect(message).toContain("pulumi stack change-secrets-provider passphrase");
    });

    it.each([
        ["no secret is set", [], { PULUMI_CONFIG_PASSPHRASE: "" }, PASSPHRASE_STACK],
        ["a passphrase is set", ["apiKey"], { PULUMI_CONFIG_PASSPHRASE: "correct horse" }, PASSPHRASE_STACK],
        ["the passphrase comes from a file", ["apiKey"], { PULUMI_CONFIG_PASSPHRASE: "", PULUMI_CONFIG_PASSPHRASE_FILE: "/run/secrets/p" }, PASSPHRASE_STACK],
        ["the stack uses a KMS", ["apiKey"], { PULUMI_CONFIG_PASSPHRASE: "" }, "secretsprovider: awskms://alias/vllm\nencryptedkey: AQIC\nconfig: {}\n"],
        ["the stack uses the service's provider (no salt)", ["apiKey"], { PULUMI_CONFIG_PASSPHRASE: "" }, "config: {}\n"],
        ["there is no stack file", ["apiKey"], { PULUMI_CONFIG_PASSPHRASE: "" }, null],
    ])("says nothing when %s", (_case, keys, env, text) => {
        expect(warn(keys, env, text)).toBeUndefined();
    });
});
