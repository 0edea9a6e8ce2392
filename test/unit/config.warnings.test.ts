import { describe, expect, it } from "vitest";
import { DEFAULTS } from "../../components/config/keys";
import { cpuImageWarning, emptyPassphraseWarning } from "../../components/config/stack";

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

describe("the default CPU image on this machine's CPU", () => {
    const cpu = { replica: { backend: "cpu" }, images: { vllmImage: DEFAULTS.cpuImage, nginxBaseImage: "debian:12.12-slim" } } as unknown as Parameters<typeof cpuImageWarning>[0];
    const info = (flags: string) => `processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: ${flags}\n`;

    it("warns, naming the key and the missing flag, on an x86-64 CPU without AVX-512", () => {
        expect(cpuImageWarning(cpu, info("fpu sse2 avx avx2 fma"), "x64")).toMatch(/^vllm-nginx:vllmImage: the default CPU image .* needs an x86-64 CPU with AVX-512, and this machine's CPU has no AVX-512 \(avx512f\): its replicas would exit with SIGILL/);
    });

    it("warns on arm64", () => {
        expect(cpuImageWarning(cpu, info("fp asimd"), "arm64")).toContain("this machine is arm64, not x86-64");
    });

    it("says nothing with AVX-512, with an image of the user's, or on the gpu backend", () => {
        expect(cpuImageWarning(cpu, info("fpu avx2 avx512f avx512_bf16"), "x64")).toBeUndefined();
        expect(cpuImageWarning({ ...cpu, images: { ...cpu.images, vllmImage: "registry.internal/vllm-cpu:avx2" } }, info("avx2"), "x64")).toBeUndefined();
        expect(cpuImageWarning({ ...cpu, replica: { ...cpu.replica, backend: "gpu" } }, info("avx2"), "x64")).toBeUndefined();
    });
});
