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

/**
 * Builds an image on the Docker host and keeps it there: no registry, no push, and the classic builder,
 * which works on engines without BuildKit or buildx. The build runs again when a file Docker would send
 * (the context minus `.dockerignore`), the Dockerfile, the target or a build arg changes; its `imageId`
 * then changes, and the containers that run it are replaced.
 */
export function buildLocalImage(name: string, build: LocalBuild, opts: pulumi.CustomResourceOptions): docker.RemoteImage {
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
            triggers: { context: contextDigest(build.context, build.dockerfile) },
        },
        opts,
    );
}

/**
 * An image pulled by name, or built on the Docker host from `build`: exactly one of the two. Returns its
 * ID, which is what containers run, so that a new image replaces them. Children are named `<name>-pull`
 * or `<name>-build`.
 */
export function pullOrBuild(name: string, image: { pull?: string; build?: LocalBuild }, opts: pulumi.CustomResourceOptions): pulumi.Output<string> {
    if ((image.pull === undefined) === (image.build === undefined)) {
        throw new Error(`${name}: set exactly one image to pull or to build`);
    }
    if (image.build) {
        return buildLocalImage(`${name}-build`, image.build, opts).imageId;
    }
    return new docker.RemoteImage(`${name}-pull`, { name: image.pull!, keepLocally: true }, opts).imageId;
}

/**
 * A digest of what `docker build` sends for `dir`: the names and contents of every file that
 * `.dockerignore` does not exclude, plus the Dockerfile and `.dockerignore` themselves (Docker always
 * sends those). A `.git` folder that is sent is summarised by its HEAD commit rather than read whole.
 * A missing folder gives a digest of nothing, and the build reports it.
 */
export function contextDigest(dir: string, dockerfile = "Dockerfile"): string {
    const ignore = readDockerignore(dir);
    const always = new Set([path.normalize(dockerfile), ".dockerignore"]);
    const hash = createHash("sha256");
    const add = (relative: string, content: Buffer | string) => hash.update(relative).update("\0").update(content).update("\0");
    const walk = (folder: string) => {
        let entries: fs.Dirent[];
        try {
            entries = fs.readdirSync(folder, { withFileTypes: true });
        } catch {
            return;
        }
        for (const entry of entries.sort((a, b) => a.name.localeCompare(b.name))) {
            const full = path.join(folder, entry.name);
            const relative = path.relative(dir, full).split(path.sep).join("/");
            if (entry.isDirectory()) {
                if (entry.name === ".git" && !ignore.excludes(relative)) {
                    add(relative, gitHead(full));
                } else {
                    walk(full);
                }
            } else if (entry.isFile() && (always.has(path.normalize(relative)) || !ignore.excludes(relative))) {
                add(relative, fs.readFileSync(full));
            }
        }
    };
    walk(dir);
    return hash.digest("hex");
}

function gitHead(gitDir: string): string {
    const read = (file: string) => (fs.existsSync(file) ? fs.readFileSync(file, "utf8").trim() : "");
    const head = read(path.join(gitDir, "HEAD"));
    const ref = /^ref: (.+)$/.exec(head)?.[1];
    return ref ? `${head}\n${read(path.join(gitDir, ref))}` : head;
}

/** The rules of a context's `.dockerignore` (none when the file is absent). */
export function readDockerignore(dir: string): DockerIgnore {
    const file = path.join(dir, ".dockerignore");
    return new DockerIgnore(fs.existsSync(file) ? fs.readFileSync(file, "utf8") : "");
}

/**
 * `.dockerignore` as Docker reads it: one pattern per line, `#` comments, `!` re-includes, `*` and `?`
 * within one path segment, `**` across segments, a leading `/` ignored; a pattern that matches a folder
 * excludes everything under it; the last pattern that matches decides.
 */
export class DockerIgnore {
    private readonly rules: { exclude: boolean; pattern: RegExp }[];

    constructor(text: string) {
        this.rules = text
            .split(/\r?\n/)
            .map((line) => line.trim())
            .filter((line) => line !== "" && !line.startsWith("#"))
            .map((line) => {
                const negated = line.startsWith("!");
                const pattern = path.posix.normalize((negated ? line.slice(1) : line).trim()).replace(/^\/+/, "").replace(/\/+$/, "");
                return { exclude: !negated, pattern: globToRegExp(pattern) };
            });
    }

    /** Whether Docker leaves the file at `relative` (slash-separated, from the context root) out of the build. */
    excludes(relative: string): boolean {
        const segments = relative.split("/");
        const candidates = segments.map((_, i) => segments.slice(0, i + 1).join("/"));
        let excluded = false;
        for (const rule of this.rules) {
            if (candidates.some((candidate) => rule.pattern.test(candidate))) {
                excluded = rule.exclude;
            }
        }
        return excluded;
    }
}

function globToRegExp(pattern: string): RegExp {
    let out = "";
    for (let i = 0; i < pattern.length; i++) {
        const c = pattern[i];
        if (c === "*" && pattern[i + 1] === "*") {
            // `**/` matches any number of folders (none included); a trailing `**` matches everything.
            if (pattern[i + 2] === "/") {
                out += "(?:.*/)?";
                i += 2;
            } else {
                out += ".*";
                i += 1;
            }
        } else if (c === "*") {
            out += "[^/]*";
        } else if (c === "?") {
            out += "[^/]";
        } else if (c === "[") {
            const end = pattern.indexOf("]", i + 1);
            if (end < 0) {
                out += "\\[";
            } else {
                out += `[${pattern.slice(i + 1, end).replace(/^!/, "^").replace(/\\/g, "\\\\")}]`;
                i = end;
            }
        } else if (c === "\\" && i + 1 < pattern.length) {
            out += escapeRegExp(pattern[i + 1]);
            i += 1;
        } else {
            out += escapeRegExp(c);
        }
    }
    return new RegExp(`^${out}$`);
}

function escapeRegExp(text: string): string {
    return text.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
}
