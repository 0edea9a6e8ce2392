/**
 * The front door's secret files, as one text the edge install reads on its stdin (`scripts/edge.sh`): the
 * client keys as nginx `map` entries, the Authorization header replicas get, and a provided TLS pair. Pure
 * code; its output is a secret and goes nowhere but a secret stdin.
 */
import { API_KEY_CLIENT, EDGE_FILES } from "./render";

/** First line of a bundle; `scripts/edge.sh` refuses anything else. */
export const EDGE_BUNDLE_HEADER = "#vllm-nginx-edge 1";
/** Last line: a bundle without it was cut short. */
export const EDGE_BUNDLE_END = "#end";

export interface EdgeSecretValues {
    /** Every client key, by name. */
    clientKeys: Array<{ name: string; key: string }>;
    /**
     * The replicas' own key (`apiKey`), sent to them in place of the client's key; without client keys, the
     * key nginx checks (as the client `API_KEY_CLIENT`). Unset: replicas get no Authorization.
     */
    replicaKey?: string;
    /** A provided certificate chain and its private key, PEM. */
    tls?: { certificate: string; privateKey: string };
}

const REGEX_SPECIAL = /[\\^$.|?*+()[\]{}]/g;
/** Characters a value may have to be written into an nginx string and a bearer header as it is. */
const BEARER_TOKEN = /^[A-Za-z0-9._~+/=-]+$/;

/**
 * One `map` entry per key: a case-sensitive match of the whole header (nginx's plain `map` strings match
 * regardless of letter case), with the scheme in any case as RFC 7235 has it.
 */
export function clientKeyEntry(name: string, key: string): string {
    if (!BEARER_TOKEN.test(key) || !/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(name)) {
        throw new Error(`client key ${name}: names are plain words and keys bearer tokens (the config reader checks both)`);
    }
    return `"~^(?i:bearer)[ \\t]+${key.replace(REGEX_SPECIAL, "\\$&")}[ \\t]*$" ${name};`;
}

export function renderEdgeSecrets(values: EdgeSecretValues): string {
    if (values.replicaKey !== undefined && !BEARER_TOKEN.test(values.replicaKey)) {
        throw new Error("the replicas' key must be a bearer token (the config reader checks it)");
    }
    const pem = (text: string) => text.replace(/\r\n/g, "\n").trim();
    const checked = values.clientKeys.length === 0 && values.replicaKey !== undefined ? [{ name: API_KEY_CLIENT, key: values.replicaKey }] : values.clientKeys;
    const sections: Array<[string, string]> = [
        [EDGE_FILES.clientKeys, checked.map((c) => clientKeyEntry(c.name, c.key)).join("\n")],
        [EDGE_FILES.replicaAuthorization, values.replicaKey === undefined ? 'default "";' : `default "Bearer ${values.replicaKey}";`],
    ];
    if (values.tls) {
        sections.push([EDGE_FILES.certificate, pem(values.tls.certificate)], [EDGE_FILES.privateKey, pem(values.tls.privateKey)]);
    }
    for (const [, text] of sections) {
        if (/^#(file |end$)/m.test(text)) {
            throw new Error("a secret file holds a line that marks a section of the bundle");
        }
    }
    return [EDGE_BUNDLE_HEADER, ...sections.flatMap(([file, text]) => [`#file ${file}`, ...(text === "" ? [] : [text])]), EDGE_BUNDLE_END, ""].join("\n");
}
