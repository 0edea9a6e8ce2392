import { describe, expect, it } from "vitest";
import { movingReason, parseImageReference } from "../images";
import { noMovingImageTags } from "../policies";
import { UNKNOWN, checkResource, remoteImage, replica } from "./fixtures";

describe("image references", () => {
    it("splits registry ports, tags and digests", () => {
        expect(parseImageReference("localhost:5000/vllm/vllm-openai")).toEqual({ repository: "localhost:5000/vllm/vllm-openai", digest: undefined });
        expect(parseImageReference("localhost:5000/vllm:v1")).toEqual({ repository: "localhost:5000/vllm", tag: "v1", digest: undefined });
        expect(parseImageReference("nginx@sha256:abc")).toEqual({ repository: "nginx", digest: "sha256:abc" });
    });

    it("calls no tag, latest and the usual branch tags moving, and versions or digests not", () => {
        expect(movingReason("nginx")).toBe("has no tag, so Docker takes `latest`");
        expect(movingReason("nginx:latest")).toBe("uses the moving tag `latest`");
        expect(movingReason("ghcr.io/x/y:nightly")).toBe("uses the moving tag `nightly`");
        expect(movingReason("nginx:1.28.0")).toBeUndefined();
        expect(movingReason("vllm/vllm-openai:v0.11.0")).toBeUndefined();
        expect(movingReason("nginx:latest@sha256:abc")).toBeUndefined();
    });
});

describe("no-moving-image-tags (advisory)", () => {
    it("is advisory", () => {
        expect(noMovingImageTags.enforcementLevel).toBe("advisory");
    });

    it("fires for a pulled image with latest or no tag", async () => {
        expect((await checkResource(noMovingImageTags, remoteImage("vllm/vllm-openai:latest")))[0].message).toContain(
            "image `vllm/vllm-openai:latest` uses the moving tag `latest`",
        );
        expect((await checkResource(noMovingImageTags, remoteImage("vllm/vllm-openai")))[0].message).toContain("has no tag");
    });

    it("does not fire for a pulled image with a version", async () => {
        expect(await checkResource(noMovingImageTags, remoteImage("vllm/vllm-openai:v0.11.0"))).toEqual([]);
    });

    it("checks a build's image args, not the local name the build is given", async () => {
        const nginx = (base: string) =>
            remoteImage("vllm-nginx/dev-nginx-lb:latest", { context: "images/nginx", buildArgs: { NGINX_BASE_IMAGE: base, http_proxy: "http://proxy:3128" } });
        expect((await checkResource(noMovingImageTags, nginx("nginx:latest"))).map((v) => v.message)).toEqual([
            expect.stringContaining("build arg NGINX_BASE_IMAGE `nginx:latest` uses the moving tag `latest`"),
        ]);
        expect((await checkResource(noMovingImageTags, nginx("nginx")))[0].message).toContain("build arg NGINX_BASE_IMAGE `nginx` has no tag");
        expect(await checkResource(noMovingImageTags, nginx("nginx:1.28.0"))).toEqual([]);
        const standin = remoteImage("vllm-nginx/e2e-vllm:latest", { context: "test/standin", buildArgs: { BASE_IMAGE: "debian" } });
        expect((await checkResource(noMovingImageTags, standin))[0].message).toContain("build arg BASE_IMAGE `debian` has no tag");
    });

    it("fires for a container that names an image directly, and not for an image ID, known or not yet", async () => {
        const named = replica("vllm0", { extraProps: { image: "vllm/vllm-openai:latest" } });
        expect((await checkResource(noMovingImageTags, named))[0].message).toContain("container image `vllm/vllm-openai:latest`");
        expect(await checkResource(noMovingImageTags, replica("vllm0"))).toEqual([]);
        expect(await checkResource(noMovingImageTags, replica("vllm0", { extraProps: { image: UNKNOWN } }))).toEqual([]);
    });
});
