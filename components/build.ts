import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import * as path from "path";

export interface LocalBuild {
    /** Local name and tag of the built image. */
    imageName: string;
    /** Build context folder, absolute. */
    context: string;
    /** Dockerfile path, relative to the context. */
    dockerfile: string;
    target?: string;
    args: Record<string, string>;
}

/**
 * Builds an image on the Docker host and keeps it there: no registry, no push, and the classic builder,
 * which works on engines without BuildKit or buildx. Its `repoDigest` is the local image ID, which
 * changes with every different build, so containers that run it are replaced when it changes.
 */
export function buildLocalImage(name: string, build: LocalBuild, parent: pulumi.Resource): docker.Image {
    return new docker.Image(
        name,
        {
            imageName: build.imageName,
            skipPush: true,
            build: {
                context: build.context,
                dockerfile: path.resolve(build.context, build.dockerfile),
                target: build.target,
                args: build.args,
                builderVersion: "BuilderV1",
            },
        },
        { parent },
    );
}
