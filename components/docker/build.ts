import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import { createHash } from "crypto";
import * as fs from "fs";
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

/** Folders that never belong to an image's inputs. */
const SKIPPED = new Set([".git", "node_modules", "__pycache__"]);

/**
 * Builds an image on the Docker host and keeps it there: no registry, no push, and the classic builder,
 * which works on engines without BuildKit or buildx. The build runs again when a file of the context,
 * the Dockerfile, the target or a build arg changes; its `imageId` then changes, and the containers
 * that run it are replaced.
 */
export function buildLocalImage(name: string, build: LocalBuild, parent: pulumi.Resource): docker.RemoteImage {
    return new docker.RemoteImage(
        name,
        {
            name: build.imageName,
            keepLocally: true,
            build: {
                context: build.context,
                dockerfile: build.dockerfile,
                target: build.target,
                buildArgs: build.args,
                useLegacyBuilder: true,
            },
            triggers: { context: contextDigest(build.context) },
        },
        { parent },
    );
}

/**
 * A digest of every file under `dir` (names and contents), so that an edit of the build context
 * triggers a new build. A missing folder gives a digest of nothing, and the build reports it.
 */
export function contextDigest(dir: string): string {
    const hash = createHash("sha256");
    const walk = (folder: string) => {
        let entries: fs.Dirent[];
        try {
            entries = fs.readdirSync(folder, { withFileTypes: true });
        } catch {
            return;
        }
        for (const entry of entries.sort((a, b) => a.name.localeCompare(b.name))) {
            const full = path.join(folder, entry.name);
            if (entry.isDirectory() && !SKIPPED.has(entry.name)) {
                walk(full);
            } else if (entry.isFile()) {
                hash.update(path.relative(dir, full)).update("\0").update(fs.readFileSync(full)).update("\0");
            }
        }
    };
    walk(dir);
    return hash.digest("hex");
}
