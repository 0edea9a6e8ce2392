import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { afterEach, describe, expect, it } from "vitest";
import { DockerIgnore, contextDigest } from "../../components/docker/build";

const dirs: string[] = [];
afterEach(() => dirs.splice(0).forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

function context(files: Record<string, string>): string {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vllm-nginx-ctx-"));
    dirs.push(dir);
    for (const [name, content] of Object.entries(files)) {
        fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
        fs.writeFileSync(path.join(dir, name), content);
    }
    return dir;
}

function edit(dir: string, name: string, content: string): void {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), content);
}

describe(".dockerignore as Docker reads it", () => {
    const ignore = new DockerIgnore(["# build output", "build", "*.log", "docs/**/*.md", "!docs/keep.md", "/tests/fixtures/", "**/__pycache__", "?.tmp", "[ab].bak"].join("\n"));

    it.each([
        ["build/lib/x.so", true, "a folder excludes everything under it"],
        ["src/build.py", false, "a name matches from the root, not at any depth"],
        ["server.log", true, "* within a segment"],
        ["logs/server.log", false, "* does not cross a folder"],
        ["docs/a/b/c.md", true, "** crosses folders"],
        ["docs/c.md", true, "**/ matches no folder too"],
        ["docs/keep.md", false, "! re-includes, the last matching pattern decides"],
        ["tests/fixtures/big.bin", true, "a leading / and a trailing / are ignored"],
        ["vllm/model/__pycache__/m.pyc", true, "**/ at the start matches at any depth"],
        ["a.tmp", true, "? is one character"],
        ["ab.tmp", false, "? is exactly one character"],
        ["b.bak", true, "character classes"],
        ["c.bak", false, "character classes"],
        ["src/main.py", false, "what no pattern matches is sent"],
    ])("%s excluded: %s (%s)", (file, excluded) => {
        expect(ignore.excludes(file)).toBe(excluded);
    });
});

describe("build context digest", () => {
    it("changes when a file Docker sends changes, and not when an ignored one does", () => {
        const dir = context({ Dockerfile: "FROM x\n", ".dockerignore": "*.md\nscratch/\n", "server.mjs": "v1", "README.md": "a" });
        const first = contextDigest(dir);
        edit(dir, "README.md", "edited");
        edit(dir, "scratch/notes.txt", "new");
        expect(contextDigest(dir)).toBe(first);
        edit(dir, "server.mjs", "v2");
        expect(contextDigest(dir)).not.toBe(first);
    });

    it("always counts the Dockerfile and .dockerignore, even when .dockerignore lists them", () => {
        const dir = context({ Dockerfile: "FROM x\n", ".dockerignore": "Dockerfile\n.dockerignore\n", "app.py": "1" });
        const first = contextDigest(dir);
        edit(dir, "Dockerfile", "FROM y\n");
        const second = contextDigest(dir);
        expect(second).not.toBe(first);
        edit(dir, ".dockerignore", "Dockerfile\n.dockerignore\napp.py\n");
        expect(contextDigest(dir)).not.toBe(second);
    });

    it("counts a .git folder that is sent by its HEAD commit, not its objects", () => {
        const dir = context({ Dockerfile: "FROM x\n", ".git/HEAD": "ref: refs/heads/main\n", ".git/refs/heads/main": "aaaa\n", ".git/objects/pack/p.pack": "1" });
        const first = contextDigest(dir);
        edit(dir, ".git/objects/pack/p.pack", "2");
        expect(contextDigest(dir)).toBe(first);
        edit(dir, ".git/refs/heads/main", "bbbb\n");
        expect(contextDigest(dir)).not.toBe(first);
    });

    it("finds the Dockerfile where the build names it", () => {
        const dir = context({ "docker/Dockerfile": "FROM x\n", ".dockerignore": "docker/\n", "app.py": "1" });
        const first = contextDigest(dir, "docker/Dockerfile");
        edit(dir, "docker/Dockerfile", "FROM y\n");
        expect(contextDigest(dir, "docker/Dockerfile")).not.toBe(first);
    });
});
