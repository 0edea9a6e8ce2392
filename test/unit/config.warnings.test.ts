import { describe, expect, it } from "vitest";
import { DEFAULTS } from "../../components/config/keys";
import { FleetConfigError } from "../../components/config/reader";
import { beyondLoopback, checkEmptyPassphrase, cpuImageWarning } from "../../components/config/stack";

describe("secrets under the empty passphrase", () => {
    const PASSPHRASE_STACK = "encryptionsalt: v1:YElMsJ+Kjng=:v1:7vW1nm4wyKYp0Bdv:ngk9uwc1haKUzMdBItaS/LeYIxylIA==\nconfig:\n  vllm-nginx:model: m\n";
    const check = (keys: string[], env: Record<string, string | undefined>, text?: string | null, open: string[] = []) =>
        checkEmptyPassphrase(keys, env, text === null ? undefined : (text ?? PASSPHRASE_STACK), "Pulumi.prod.yaml", open);
    const EMPTY = { PULUMI_CONFIG_PASSPHRASE: "" };

    it("warns, naming the secrets and the stack file, when nothing they guard is beyond the loopback", () => {
        const { problems, warning } = check(["apiKey", "clientKeys"], EMPTY);
        expect(problems).toEqual([]);
        expect(warning).toContain("the stack's secrets (apiKey, clientKeys) are encrypted with the empty passphrase: anyone who has Pulumi.prod.yaml can read them.");
        expect(warning).toContain("pulumi stack change-secrets-provider passphrase");
    });

    it("refuses, naming each guarding key and what it guards, when the stack opens something beyond the loopback", () => {
        const open = ["the balancer on 0.0.0.0:8000", "gpu-b-vllm0 on 10.0.0.12:8081", "gpu-b-vllm1 on 10.0.0.12:8082", "gpu-c-vllm0 on 10.0.0.13:8081"];
        const { problems, warning } = check(["hfToken", "apiKey", "clientKeys"], EMPTY, undefined, open);
        expect(warning).toBeUndefined();
        // hfToken guards nothing a network reaches: a warning's matter, not a refusal's.
        expect(problems.map((p) => p.key)).toEqual(["apiKey", "clientKeys"]);
        expect(new FleetConfigError(problems).message).toContain(
            "vllm-nginx:clientKeys = (secret): encrypted with the empty passphrase, which anyone who has Pulumi.prod.yaml can undo, while it guards what this stack opens beyond the loopback " +
                "(the balancer on 0.0.0.0:8000, gpu-b-vllm0 on 10.0.0.12:8081, gpu-b-vllm1 on 10.0.0.12:8082, ...): give the stack a passphrase of its own: `pulumi stack change-secrets-provider passphrase`",
        );
    });

    it("only warns for a secret that guards nothing a network reaches (hfToken), even beyond the loopback", () => {
        const { problems, warning } = check(["hfToken"], EMPTY, undefined, ["the balancer on 0.0.0.0:8000"]);
        expect(problems).toEqual([]);
        expect(warning).toContain("(hfToken)");
    });

    it.each([
        ["no secret is set", [], EMPTY, PASSPHRASE_STACK],
        ["a passphrase is set", ["apiKey"], { PULUMI_CONFIG_PASSPHRASE: "correct horse" }, PASSPHRASE_STACK],
        ["the passphrase comes from a file", ["apiKey"], { PULUMI_CONFIG_PASSPHRASE: "", PULUMI_CONFIG_PASSPHRASE_FILE: "/run/secrets/p" }, PASSPHRASE_STACK],
        ["the stack uses a KMS", ["apiKey"], EMPTY, "secretsprovider: awskms://alias/vllm\nencryptedkey: AQIC\nconfig: {}\n"],
        ["the stack uses the service's provider (no salt)", ["apiKey"], EMPTY, "config: {}\n"],
        ["there is no stack file", ["apiKey"], EMPTY, null],
    ])("says nothing, and refuses nothing beyond the loopback, when %s", (_case, keys, env, text) => {
        expect(check(keys, env, text, ["the balancer on 0.0.0.0:8000"])).toEqual({ problems: [] });
    });
});

describe("what a stack opens beyond the loopback", () => {
    const slot = (name: string, publish: string, hostPort: number) => ({ name, publish, hostPort });
    const settings = (bind: string, slots: ReturnType<typeof slot>[], engines: Record<string, string | undefined> = { local: undefined }) =>
        ({ balancer: { bind, port: 8000 }, edge: {}, placement: { slots }, engines }) as unknown as Parameters<typeof beyondLoopback>[0];

    it("is nothing for a balancer and replicas on 127.x and a local engine", () => {
        expect(beyondLoopback(settings("127.0.0.1", [slot("vllm0", "127.0.0.1", 8081)], { local: "unix:///var/run/docker.sock" }))).toEqual([]);
    });

    it("names the balancer on another address, replicas published beyond 127.x, and tcp:// engines on other hosts", () => {
        expect(
            beyondLoopback(settings("0.0.0.0", [slot("a-vllm0", "127.0.0.1", 8081), slot("b-vllm0", "10.0.0.12", 8081)], { a: undefined, b: "ssh://root@10.0.0.12", c: "tcp://10.0.0.13:2376", d: "tcp://127.0.0.1:2376" })),
        ).toEqual(["the balancer on 0.0.0.0:8000", "b-vllm0 on 10.0.0.12:8081", "host c's engine at tcp://10.0.0.13:2376"]);
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
