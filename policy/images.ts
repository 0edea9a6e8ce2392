/** Tags that name whatever was pushed last rather than one image. */
export const MOVING_TAGS: readonly string[] = ["latest", "main", "master", "nightly", "edge", "stable"];

export interface ImageReference {
    /** Registry and repository, e.g. `vllm/vllm-openai`. */
    repository: string;
    tag?: string;
    /** `sha256:...` when the reference pins a digest. */
    digest?: string;
}

/** Splits `registry:port/path/name:tag@sha256:...` into its parts. */
export function parseImageReference(reference: string): ImageReference {
    const [nameAndTag, digest] = reference.trim().split("@", 2);
    const lastSlash = nameAndTag.lastIndexOf("/");
    const colon = nameAndTag.indexOf(":", lastSlash + 1);
    return colon < 0
        ? { repository: nameAndTag, digest }
        : { repository: nameAndTag.slice(0, colon), tag: nameAndTag.slice(colon + 1), digest };
}

/**
 * Why a reference may give a different image tomorrow, or undefined when it names one image: pinned by
 * digest, or by a tag that is not one of the moving ones.
 */
export function movingReason(reference: string): string | undefined {
    const ref = parseImageReference(reference);
    if (ref.digest) {
        return undefined;
    }
    if (ref.tag === undefined || ref.tag === "") {
        return "has no tag, so Docker takes `latest`";
    }
    if (MOVING_TAGS.includes(ref.tag.toLowerCase())) {
        return `uses the moving tag \`${ref.tag}\``;
    }
    return undefined;
}

/** Build args that name an image (`NGINX_BASE_IMAGE`, `BASE_IMAGE`, ...): what a Dockerfile's `FROM` reads. */
export function imageBuildArgs(buildArgs: Record<string, unknown> | undefined): [string, string][] {
    return Object.entries(buildArgs ?? {}).filter(
        (entry): entry is [string, string] => /(^|_)IMAGE$/i.test(entry[0]) && typeof entry[1] === "string" && entry[1] !== "",
    );
}
