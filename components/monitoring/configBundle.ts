/**
 * Prometheus reads its config and its rule files from separate files, and one `docker exec` carries one
 * standard input: several files travel as one text, each after a marker line naming its path. The
 * install script (`prometheusServer.ts`) splits them with a plain `sh` loop, which busybox (the
 * upstream image) and Debian (the CI image) both run.
 */

/** Starts every file in a bundle: the marker, then the file's path relative to the config folder. */
export const BUNDLE_MARKER = "#vllm-nginx-file ";

export interface BundleFile {
    /** Path relative to Prometheus's config folder, e.g. `prometheus.yml` or `rules/vllm-nginx.yml`. */
    path: string;
    content: string;
}

/** Joins files into one text. Each content ends with a line break; paths stay inside the folder. */
export function renderBundle(files: BundleFile[]): string {
    return files
        .map((file) => {
            if (!/^[A-Za-z0-9_-][A-Za-z0-9_.-]*(\/[A-Za-z0-9_-][A-Za-z0-9_.-]*)*$/.test(file.path) || file.path.split("/").includes("..")) {
                throw new Error(`renderBundle: ${JSON.stringify(file.path)} is not a relative path of plain names`);
            }
            const content = file.content.endsWith("\n") ? file.content : `${file.content}\n`;
            if (content.split("\n").some((line) => line.startsWith(BUNDLE_MARKER))) {
                throw new Error(`renderBundle: ${file.path} has a line that starts with the bundle marker "${BUNDLE_MARKER}"`);
            }
            return `${BUNDLE_MARKER}${file.path}\n${content}`;
        })
        .join("");
}

/** Splits a bundle back into its files, as the install script does. */
export function parseBundle(text: string): BundleFile[] {
    const files: BundleFile[] = [];
    for (const line of text.split("\n").slice(0, text.endsWith("\n") ? -1 : undefined)) {
        if (line.startsWith(BUNDLE_MARKER)) {
            files.push({ path: line.slice(BUNDLE_MARKER.length), content: "" });
        } else if (files.length > 0) {
            files[files.length - 1].content += `${line}\n`;
        }
    }
    return files;
}

/**
 * A `sh` function, `unbundle DIR`, that reads a bundle on standard input and writes its files under
 * DIR, creating folders as needed. No single quote in it, so that it can sit inside a single-quoted
 * `sh -c`.
 */
export const UNBUNDLE_FUNCTION = `unbundle() {
  out=""
  while IFS= read -r line || [ -n "$line" ]; do
    case "$line" in
      "${BUNDLE_MARKER}"*)
        out="$1/\${line#"${BUNDLE_MARKER}"}"
        mkdir -p "\${out%/*}"
        : > "$out" ;;
      *)
        if [ -n "$out" ]; then printf "%s\\n" "$line" >> "$out"; fi ;;
    esac
  done
}`;
