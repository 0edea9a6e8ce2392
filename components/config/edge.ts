/**
 * The balancer's front door in stack config: client keys with their limits, TLS, and what the public port
 * serves. Keys, certificates and private keys are secrets: they are read here only to be checked, and a
 * problem with one names where it is, never what it is.
 */
import { X509Certificate, createHash, createPrivateKey } from "crypto";
import { isIpv4 } from "../planning/subnet";
import { DEFAULTS, isUnset } from "./keys";
import { ConfigReader, SECRET_VALUE, type RawConfig } from "./reader";
import { PLAIN_HTTP, TLS_MODES, type ClientKeySettings, type EdgeSettings, type TlsSettings } from "./settings";

/** The secret config values (decoded), and which of those that must be encrypted are stored in plain text. */
export interface SecretConfig {
    values?: RawConfig;
    /** Secret keys whose value the stack file holds in plain text. */
    unencrypted?: string[];
}

/** RFC 6750's b64token characters, so that a key is a valid bearer token and needs no quoting anywhere. */
const KEY_PATTERN = /^[A-Za-z0-9._~+/=-]{16,256}$/;
const KEY_FORM = "a bearer token of 16 to 256 characters: letters, digits and - . _ ~ + / =";
const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const NAME_FORM = "a name of up to 64 letters, digits, '_', '.' and '-', starting with a letter or digit (names are public: logs, headers, the config output)";
/** Words nginx's `map` reads as its own parameters, not as values. */
const RESERVED_NAMES = ["default", "hostnames", "include", "volatile"];
const CLIENT_FIELDS = ["name", "key", "rps", "burst", "concurrent", "models"];
const CLIENT_FORM = 'a list of {name, key, rps?, burst?, concurrent?, models?}, e.g. [{"name": "alice", "key": "<secret>", "rps": 5, "concurrent": 4, "models": ["llama"]}]';
const TLS_FIELDS = ["mode", "http", "httpPort", "hosts"];
const MAX_LIMIT = 1_000_000;
/**
 * SHA-256 of the client keys Pulumi.multihost.yaml ships as examples. They are encrypted for the empty
 * passphrase, so they are public: a stack copied from the example must not accept them.
 */
const PUBLISHED_KEY_DIGESTS = ["5158d48c97bc4dbc70df9e51cbee00000a50207bb3cb0ca75c773b9164f2227e", "7257b59a5f52b09ba512622183f90f73174ea81fd860bdc42e07e381b045a108"];

export function readEdge(read: ConfigReader, secrets: SecretConfig, lbPort: number): EdgeSettings {
    const values = secrets.values ?? {};
    for (const key of secrets.unencrypted ?? []) {
        read.problem(key, SECRET_VALUE, `stored in plain text in the stack file: set it with \`pulumi config set --secret ${key} ...\` (for clientKeys, each key with \`pulumi config set --secret --path 'clientKeys[0].key' ...\`)`);
    }
    const tls = readTls(read, values, lbPort);
    const clients = readClientKeys(read, values.clientKeys);
    const apiKey = values.apiKey;
    if (!isUnset(apiKey) && !(typeof apiKey === "string" && /^[A-Za-z0-9._~+/=-]{1,4096}$/.test(apiKey))) {
        read.problem("apiKey", SECRET_VALUE, "the balancer checks it (without clientKeys) and sends it to the replicas: a bearer token of letters, digits and - . _ ~ + / =");
    }
    return {
        clients,
        replicaKey: !isUnset(apiKey),
        tls,
        exposeMetrics: read.boolean("exposeMetrics", DEFAULTS.exposeMetrics),
    };
}

function readClientKeys(read: ConfigReader, value: unknown): ClientKeySettings[] {
    if (isUnset(value)) {
        return [];
    }
    if (!Array.isArray(value)) {
        read.problem("clientKeys", SECRET_VALUE, CLIENT_FORM);
        return [];
    }
    const clients: ClientKeySettings[] = [];
    const seenNames = new Map<string, number>();
    const seenKeys = new Map<string, number>();
    value.forEach((entry: unknown, i) => {
        const at = `clientKeys[${i}]`;
        if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
            read.problem(at, SECRET_VALUE, CLIENT_FORM);
            return;
        }
        const fields = entry as Record<string, unknown>;
        for (const field of Object.keys(fields).filter((f) => !CLIENT_FIELDS.includes(f))) {
            // A misspelt field may well hold the key.
            read.problem(`${at}.${field}`, SECRET_VALUE, `not a field of a client key; its fields are ${CLIENT_FIELDS.join(", ")}`);
        }
        const name = fields.name;
        if (typeof name !== "string" || !NAME_PATTERN.test(name)) {
            read.problem(`${at}.name`, typeof name === "string" || typeof name === "number" ? name : SECRET_VALUE, NAME_FORM);
        } else if (RESERVED_NAMES.includes(name.toLowerCase())) {
            read.problem(`${at}.name`, name, `a name other than ${RESERVED_NAMES.join(", ")} (nginx's own words)`);
        } else if (seenNames.has(name.toLowerCase())) {
            read.problem(`${at}.name`, name, `names are unique (letter case aside): clientKeys[${seenNames.get(name.toLowerCase())}] is named so too`);
        } else {
            seenNames.set(name.toLowerCase(), i);
        }
        const key = fields.key;
        if (typeof key !== "string" || !KEY_PATTERN.test(key)) {
            read.problem(`${at}.key`, isUnset(key) ? undefined : SECRET_VALUE, `required: ${KEY_FORM}`);
        } else if (seenKeys.has(key)) {
            read.problem(`${at}.key`, SECRET_VALUE, `keys are unique: clientKeys[${seenKeys.get(key)}] has the same key`);
        } else if (PUBLISHED_KEY_DIGESTS.includes(createHash("sha256").update(key).digest("hex"))) {
            read.problem(
                `${at}.key`,
                SECRET_VALUE,
                "the example key of Pulumi.multihost.yaml, which anyone with this repository can decrypt (it is encrypted for the empty passphrase): " +
                    `set your own with \`pulumi config set --path --secret 'vllm-nginx:${at}.key' "$(openssl rand -hex 24)"\``,
            );
        } else {
            seenKeys.set(key, i);
        }
        const sub = new ConfigReader(fields);
        const rps = readRate(sub);
        const hasBurst = sub.has("burst");
        const burst = sub.integer("burst", rps === undefined ? 0 : Math.ceil(rps), 0, MAX_LIMIT);
        const concurrent = sub.has("concurrent") ? sub.integer("concurrent", 1, 1, MAX_LIMIT) : undefined;
        for (const problem of sub.problems) {
            read.problem(`${at}.${problem.key}`, problem.value, problem.allowed);
        }
        if (hasBurst && rps === undefined && !sub.reported("rps")) {
            read.problem(`${at}.burst`, fields.burst, "only together with rps (burst is how many requests above the rate are let through at once)");
        }
        const models = fields.models;
        const modelList = models === undefined ? undefined : Array.isArray(models) && models.length > 0 && models.every((m) => typeof m === "string" && m !== "") ? (models as string[]) : null;
        if (modelList === null) {
            read.problem(`${at}.models`, models, 'a list of the names this key may use as model (models or adapters the endpoint serves), e.g. ["llama", "sql"]');
        }
        clients.push({ name: typeof name === "string" ? name : "", rps, burst: rps === undefined ? undefined : burst, concurrent, ...(modelList ? { models: modelList } : {}) });
    });
    return clients;
}

/** `rps`: requests per second above 0; nginx counts whole requests per second or per minute. */
function readRate(sub: ConfigReader): number | undefined {
    const value = sub.value("rps");
    if (value === undefined) {
        return undefined;
    }
    const rps = typeof value === "number" ? value : typeof value === "string" && /^\d+(\.\d+)?$/.test(value.trim()) ? Number(value) : NaN;
    const perMinute = rps * 60;
    if (!(rps > 0) || rps > MAX_LIMIT || Math.abs(perMinute - Math.round(perMinute)) > 1e-9) {
        sub.problem("rps", value, `requests per second, above 0 and at most ${MAX_LIMIT}: a whole number, or a fraction that is a whole number per minute (0.5 is 30 a minute)`);
        return undefined;
    }
    return rps;
}

function readTls(read: ConfigReader, secrets: RawConfig, lbPort: number): TlsSettings {
    const defaults: TlsSettings = { mode: DEFAULTS.tlsMode, http: DEFAULTS.tlsHttp, httpPort: DEFAULTS.tlsHttpPort, hosts: [...DEFAULTS.tlsHosts] };
    const value = read.value("tls");
    let given: Record<string, unknown> = {};
    if (typeof value === "string") {
        given = { mode: value };
    } else if (typeof value === "object" && value !== null && !Array.isArray(value)) {
        given = value as Record<string, unknown>;
    } else if (value !== undefined) {
        read.problem("tls", value, 'an object {mode, http?, httpPort?, hosts?}, e.g. {"mode": "self-signed"}, or just the mode');
    }
    for (const field of Object.keys(given).filter((f) => !TLS_FIELDS.includes(f))) {
        read.problem(`tls.${field}`, given[field], `not a field of tls; its fields are ${TLS_FIELDS.join(", ")}`);
    }
    const sub = new ConfigReader(given);
    const tls: TlsSettings = {
        mode: sub.oneOf("mode", TLS_MODES, defaults.mode),
        http: sub.oneOf("http", PLAIN_HTTP, defaults.http),
        httpPort: sub.integer("httpPort", defaults.httpPort, 1, 65535),
        hosts: sub.stringList("hosts") ?? defaults.hosts,
    };
    for (const problem of sub.problems) {
        read.problem(`tls.${problem.key}`, problem.value, problem.allowed);
    }
    if (tls.mode === "off") {
        for (const field of ["http", "httpPort", "hosts"].filter((f) => sub.has(f))) {
            read.problem(`tls.${field}`, given[field], 'only with tls.mode "self-signed" or "provided"');
        }
    }
    if (sub.has("httpPort") && tls.http !== "redirect" && tls.mode !== "off") {
        read.problem("tls.httpPort", given.httpPort, 'only with tls.http "redirect" (plain HTTP is not published otherwise)');
    }
    if (tls.http === "redirect" && tls.httpPort === lbPort) {
        read.problem("tls.httpPort", tls.httpPort, `a port other than lbPort (${lbPort}), which serves HTTPS`);
    }
    if (sub.has("hosts") && tls.mode === "provided") {
        read.problem("tls.hosts", given.hosts, 'only with tls.mode "self-signed" (a provided certificate names its own hosts)');
    }
    for (const host of tls.hosts) {
        if (!isIpv4(host) && !/^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/.test(host)) {
            read.problem("tls.hosts", given.hosts, `host names or IPv4 addresses for the certificate, e.g. ["localhost", "127.0.0.1", "llm.example.com"]; "${host}" is neither`);
            break;
        }
    }
    readTlsPair(read, secrets, tls.mode);
    return tls;
}

/** `tlsCertificate` and `tlsKey`: both with mode `provided`, a PEM pair that belongs together and has not expired. */
function readTlsPair(read: ConfigReader, secrets: RawConfig, mode: TlsSettings["mode"]): void {
    const certificate = secrets.tlsCertificate;
    const key = secrets.tlsKey;
    if (mode !== "provided") {
        for (const [name, value] of [["tlsCertificate", certificate], ["tlsKey", key]] as const) {
            if (!isUnset(value)) {
                read.problem(name, SECRET_VALUE, 'only with tls.mode "provided"');
            }
        }
        return;
    }
    if (typeof certificate !== "string" || isUnset(certificate)) {
        read.problem("tlsCertificate", undefined, 'required with tls.mode "provided": the PEM certificate chain, `pulumi config set --secret tlsCertificate -- "$(cat fullchain.pem)"`');
    }
    if (typeof key !== "string" || isUnset(key)) {
        read.problem("tlsKey", undefined, 'required with tls.mode "provided": the PEM private key, `pulumi config set --secret tlsKey -- "$(cat privkey.pem)"`');
    }
    if (typeof certificate !== "string" || typeof key !== "string" || isUnset(certificate) || isUnset(key)) {
        return;
    }
    let cert: X509Certificate;
    try {
        cert = new X509Certificate(certificate);
    } catch {
        read.problem("tlsCertificate", SECRET_VALUE, "a PEM certificate (-----BEGIN CERTIFICATE-----), the server's first, then its chain");
        return;
    }
    let privateKey: ReturnType<typeof createPrivateKey>;
    try {
        privateKey = createPrivateKey(key);
    } catch {
        read.problem("tlsKey", SECRET_VALUE, "a PEM private key without a passphrase (-----BEGIN PRIVATE KEY----- or -----BEGIN EC/RSA PRIVATE KEY-----)");
        return;
    }
    if (!cert.checkPrivateKey(privateKey)) {
        read.problem("tlsKey", SECRET_VALUE, `the private key of tlsCertificate (${cert.subject.replace(/\n/g, ", ")}); this key belongs to another certificate`);
    }
    if (new Date(cert.validTo).getTime() < Date.now()) {
        read.problem("tlsCertificate", SECRET_VALUE, `a certificate that has not expired; this one expired on ${cert.validTo}`);
    }
}
