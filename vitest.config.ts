import { defineConfig } from "vitest/config";

// Four tiers, each runnable on its own: `vitest run --project unit|integration|e2e|vllm`.
export default defineConfig({
    test: {
        pool: "forks",
        isolate: true,
        projects: [
            {
                test: {
                    name: "unit",
                    include: ["test/unit/**/*.test.ts"],
                    pool: "forks",
                    isolate: true,
                },
            },
            {
                test: {
                    name: "integration",
                    include: ["test/integration/**/*.test.ts"],
                    pool: "forks",
                    isolate: true,
                    fileParallelism: false,
                    testTimeout: 120_000,
                    hookTimeout: 120_000,
                },
            },
            {
                test: {
                    name: "e2e",
                    include: ["test/e2e/**/*.test.ts"],
                    pool: "forks",
                    isolate: true,
                    fileParallelism: false,
                    testTimeout: 1_800_000,
                    hookTimeout: 1_800_000,
                },
            },
            {
                // Real vLLM (its CPU build, .ci/vllm-image): the conformance suite and the real-vLLM fleet.
                test: {
                    name: "vllm",
                    include: ["test/vllm/**/*.test.ts"],
                    pool: "forks",
                    isolate: true,
                    fileParallelism: false,
                    testTimeout: 1_800_000,
                    hookTimeout: 1_800_000,
                },
            },
        ],
    },
});
