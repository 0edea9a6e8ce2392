import { describe, expect, it } from "vitest";
import { startupTimeoutFitsModel } from "../policies";
import { estimateFirstStart, formatDuration, modelParameters, parseSeconds } from "../startup";
import { balancer, checkResource, replica } from "./fixtures";

describe("model size from the model id", () => {
    it.each([
        ["meta-llama/Llama-2-7b-chat-hf", 7e9],
        ["meta-llama/Llama-3.1-70B-Instruct", 70e9],
        ["Qwen/Qwen2.5-0.5B-Instruct", 0.5e9],
        ["mistralai/Mixtral-8x7B-Instruct-v0.1", 56e9],
        ["HuggingFaceTB/SmolLM2-135M-Instruct", 135e6],
        ["Qwen/Qwen3-30B-A3B", 30e9],
        ["Qwen/Qwen2.5-7B-Instruct-1M", 7e9],
        ["deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", 1.5e9],
    ])("%s has %d parameters", (model, parameters) => {
        expect(modelParameters(model)).toBe(parameters);
    });

    it.each(["gpt2", "standin/tiny-chat", "microsoft/Phi-3-mini-4k-instruct"])("%s names no size", (model) => {
        expect(modelParameters(model)).toBeUndefined();
    });

    it("estimates 2 bytes per parameter, the stated download rate, and the load time", () => {
        expect(estimateFirstStart("meta-llama/Llama-2-7b-chat-hf")).toEqual({ parameters: 7e9, bytes: 14e9, downloadSeconds: 280, loadSeconds: 120, totalSeconds: 400 });
        expect(estimateFirstStart("x/Llama-70B", { downloadMBps: 100, loadSeconds: 300 })?.totalSeconds).toBe(1700);
    });

    it("reads seconds and durations", () => {
        expect(parseSeconds("1800")).toBe(1800);
        expect(parseSeconds("30m")).toBe(1800);
        expect(parseSeconds(90)).toBe(90);
        expect(parseSeconds("soon")).toBeUndefined();
        expect(formatDuration(400)).toBe("7m");
        expect(formatDuration(2920)).toBe("49m");
        expect(formatDuration(4000)).toBe("1h 7m");
    });
});

describe("startup-timeout-fits-model (advisory)", () => {
    it("is advisory", () => {
        expect(startupTimeoutFitsModel.enforcementLevel).toBe("advisory");
    });

    it("fires for a 70B model with the default 30 minutes, with the estimate in the message", async () => {
        const violations = await checkResource(startupTimeoutFitsModel, replica("vllm0", { model: "meta-llama/Llama-3.1-70B-Instruct", startupTimeout: "1800" }));
        expect(violations.map((v) => v.message)).toEqual([
            "replica vllm0 waits 30m for meta-llama/Llama-3.1-70B-Instruct to start, but a first start on a host without it in the cache takes about 49m: " +
                "70B parameters x 2 bytes = 140.0 GB, 47m to download at 50 MB/s, plus 2m to load. " +
                "Raise vllm-nginx:startupTimeout to 49m or more, or fill the Hugging Face cache first.",
        ]);
    });

    it("does not fire when the timeout covers the estimate", async () => {
        expect(await checkResource(startupTimeoutFitsModel, replica("vllm0", { model: "meta-llama/Llama-2-7b-chat-hf", startupTimeout: "1800" }))).toEqual([]);
        expect(await checkResource(startupTimeoutFitsModel, replica("vllm0", { model: "meta-llama/Llama-3.1-70B-Instruct", startupTimeout: "3600" }))).toEqual([]);
    });

    it("fires for a small model with a very short timeout", async () => {
        const [violation] = await checkResource(startupTimeoutFitsModel, replica("vllm0", { model: "Qwen/Qwen2.5-0.5B-Instruct", startupTimeout: "60" }));
        expect(violation.message).toContain("waits 60s for Qwen/Qwen2.5-0.5B-Instruct to start, but a first start on a host without it in the cache takes about 3m: 0.5B parameters x 2 bytes = 1.0 GB, 20s to download at 50 MB/s");
    });

    it("takes the download rate and load time from the policy config", async () => {
        const fast = { downloadMBps: 500, loadSeconds: 60 };
        expect(await checkResource(startupTimeoutFitsModel, replica("vllm0", { model: "meta-llama/Llama-3.1-70B-Instruct", startupTimeout: "1800" }), fast)).toEqual([]);
    });

    it("says nothing when the model id names no size, or for the balancer", async () => {
        expect(await checkResource(startupTimeoutFitsModel, replica("vllm0", { model: "standin/tiny-chat", startupTimeout: "10" }))).toEqual([]);
        expect(await checkResource(startupTimeoutFitsModel, balancer())).toEqual([]);
    });
});
