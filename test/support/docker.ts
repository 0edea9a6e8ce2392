import { execFileSync } from "child_process";

/**
 * Fails with how to get them when the Docker engine, or the local image `image` (the Debian base the
 * tests build on), is missing.
 */
export function requireDocker(image?: string): void {
    try {
        execFileSync("docker", ["info"], { stdio: "ignore" });
    } catch {
        throw new Error("these tests need a Docker engine: run .ci/docker-engine (installs Debian's docker.io and starts dockerd)");
    }
    if (image === undefined) {
        return;
    }
    try {
        execFileSync("docker", ["image", "inspect", image], { stdio: "ignore" });
    } catch {
        throw new Error(`these tests need the local base image ${image}: run .ci/base-image (debootstrap + docker import)`);
    }
}
