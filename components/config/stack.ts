import * as pulumi from "@pulumi/pulumi";
import * as runtimeConfig from "@pulumi/pulumi/runtime/config";
import { createHash } from "crypto";
import * as fs from "fs";
import type { KeyProblem, PreviousDeployment } from "../planning";
import { isLoopback } from "../planning/subnet";
import { decodeConfigValue } from "./decode";
import { CONFIG_NAMESPACE, DEFAULTS, ENCRYPTED_CONFIG_KEYS, REPLICA_SECRET_KEYS, SECRET_CONFIG_KEYS, isUnset } from "./keys";
import { parseFleetConfig } from "./parse";
import { FleetConfigError, SECRET_VALUE, type RawConfig } from "./reader";
import type { FleetSecrets, FleetSettings } from "./settings";

/**
 * Reads every `vllm-nginx:` key of the current stack, validates it all at once, and returns the settings
 * and the secrets as secret outputs. Throws a `FleetConfigError` naming every bad key, before any resource
 * is registered, so `pulumi preview` fails with it.
 */
export function readStackConfig(): { settings: FleetSettings; secrets: FleetSecrets } {
    const raw: RawConfig = {};
    const secretValues: RawConfig = {};
    const prefix = `${CONFIG_NAMESPACE}:`;
    for (const [fullKey, value] of Object.entries(pulumi.runtime.allConfig())) {
        if (fullKey.startsWith(prefix)) {
            const key = fullKey.slice(prefix.length);
            (SECRET_CONFIG_KEYS.includes(key) ? secretValues : raw)[key] = decodeConfigValue(value);
        }
    }
    // The plain values of secrets are in the program's config already: they are checked here, and only
    // their digest and secret outputs leave this function.
    const all = pulumi.runtime.allConfig();
    const unencrypted = ENCRYPTED_CONFIG_KEYS.filter((key) => !isUnset(secretValues[key]) && !isConfigSecret(`${prefix}${key}`));
    let settings: FleetSettings | undefined;
    const problems: KeyProblem[] = [];
    try {
        settings = parseFleetConfig(raw, pulumi.getStack(), new pulumi.Config("docker").get("host"), { values: secretValues, unencrypted });
    } catch (error) {
        if (!(error instanceof FleetConfigError)) {
            throw error;
        }
        problems.push(...error.problems);
    }
    problems.push(...checkHostTls(all[`${prefix}hostTls`], raw.hosts));
    if (settings === undefined || problems.length > 0) {
        // A RunError is shown to the user as its message alone, without a stack trace.
        throw new pulumi.RunError(new FleetConfigError(problems).message);
    }
    const stackFile = `Pulumi.${pulumi.getStack()}.yaml`;
    const passphrase = checkEmptyPassphrase(
        SECRET_CONFIG_KEYS.filter((key) => key !== "tlsCertificate" && !isUnset(secretValues[key]) && isConfigSecret(`${prefix}${key}`)),
        process.env,
        fs.existsSync(stackFile) ? fs.readFileSync(stackFile, "utf8") : undefined,
        stackFile,
        beyondLoopback(settings),
    );
    if (passphrase.problems.length > 0) {
        throw new pulumi.RunError(new FleetConfigError(passphrase.problems).message);
    }
    if (passphrase.warning) {
        void pulumi.log.warn(passphrase.warning);
    }
    // The local engine's CPU is this machine's: a remote engine's is not read.
    const localEngines = Object.values(settings.engines).every((engine) => engine === undefined || engine === "" || engine.startsWith("unix://"));
    const cpu = localEngines && fs.existsSync("/proc/cpuinfo") ? cpuImageWarning(settings, fs.readFileSync("/proc/cpuinfo", "utf8"), process.arch) : undefined;
    if (cpu) {
        void pulumi.log.warn(cpu);
    }
    const config = new pulumi.Config(CONFIG_NAMESPACE);
    const digest = createHash("sha256")
        .update(JSON.stringify(REPLICA_SECRET_KEYS.map((key) => all[`${prefix}${key}`] ?? null)))
        .digest("hex");
    const tlsText = all[`${prefix}hostTls`];
    const hostTls = tlsText
        ? Object.fromEntries(Object.keys(JSON.parse(tlsText) as object).map((host) => [host, config.requireSecretObject<Record<string, { ca: string; cert: string; key: string }>>("hostTls").apply((all) => all[host])]))
        : undefined;
    return {
        settings,
        secrets: {
            hfToken: config.getSecret("hfToken"),
            apiKey: config.getSecret("apiKey"),
            hostTls,
            clientKeys: config.getSecret("clientKeys"),
            tlsCertificate: config.getSecret("tlsCertificate"),
            tlsKey: config.getSecret("tlsKey"),
            digest,
        },
    };
}

/**
 * Checks the secret `hostTls` without showing it: a JSON object of `{ca, cert, key}` (PEM text) by the name
 * of a host of `hosts`.
 */
export function checkHostTls(value: string | undefined, hosts: unknown): KeyProblem[] {
    if (value === undefined || value === "") {
        return [];
    }
    const names = Array.isArray(hosts) ? hosts.map((h: { name?: unknown }) => h?.name).filter((n): n is string => typeof n === "string") : [];
    const shape = 'a JSON object of {"ca", "cert", "key"} (PEM text) by host name, e.g. {"gpu-b": {"ca": "-----BEGIN CERTIFICATE-----...", ...}}';
    let parsed: unknown;
    try {
        parsed = JSON.parse(value);
    } catch {
        return [{ key: "hostTls", value: "(secret, not shown)", allowed: shape }];
    }
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
        return [{ key: "hostTls", value: "(secret, not shown)", allowed: shape }];
    }
    const problems: KeyProblem[] = [];
    for (const [host, material] of Object.entries(parsed)) {
        if (!names.includes(host)) {
            problems.push({ key: "hostTls", value: `(secret, for host "${host}")`, allowed: `material for hosts of hosts only: ${names.map((n) => `"${n}"`).join(", ") || "hosts is not set"}` });
        } else if (typeof material !== "object" || material === null || !["ca", "cert", "key"].every((k) => typeof (material as Record<string, unknown>)[k] === "string")) {
            problems.push({ key: "hostTls", value: `(secret, for host "${host}")`, allowed: shape });
        }
    }
    return problems;
}

/** Whether the CLI handed the program `fullKey` as a secret (a value or a structure with an encrypted part). */
function isConfigSecret(fullKey: string): boolean {
    return (runtimeConfig as unknown as { isConfigSecret(key: string): boolean }).isConfigSecret(fullKey);
}

/**
 * What the last deployment of this stack ran, from its own `rollout` output (a stack reference to
 * itself), so that the next one can plan its rollout before anything is created. Undefined on the first
 * deployment.
 */
export async function readPreviousDeployment(): Promise<PreviousDeployment | undefined> {
    const self = new pulumi.StackReference("previous-deployment", { name: `${pulumi.getOrganization()}/${pulumi.getProject()}/${pulumi.getStack()}` });
    const value = await new Promise<unknown>((resolve) => self.getOutput("rollout").apply(resolve));
    if (typeof value !== "object" || value === null) {
        return undefined;
    }
    const { spec, active, groups } = value as Record<string, unknown>;
    if (typeof spec !== "string" || !Array.isArray(active) || !active.every((a) => typeof a === "string")) {
        return undefined;
    }
    const specs = typeof groups === "object" && groups !== null && !Array.isArray(groups) && Object.values(groups).every((g) => typeof g === "string") ? (groups as Record<string, string>) : undefined;
    return specs ? { spec, active, groups: specs } : { spec, active };
}

/** The secrets that guard something a network reaches: the balancer's keys and certificate, the replicas' key, the engines' TLS. */
const GUARDING_KEYS: readonly string[] = ["apiKey", "clientKeys", "tlsKey", "hostTls"];

const SET_A_PASSPHRASE =
    "give the stack a passphrase of its own: `pulumi stack change-secrets-provider passphrase` (the empty one in PULUMI_CONFIG_PASSPHRASE, " +
    "the new one typed at the prompt), then keep PULUMI_CONFIG_PASSPHRASE set to it for scripts/deploy";

/**
 * What the stack opens beyond the loopback: the balancer's listeners on an address other than 127.x,
 * replicas published on one, and `tcp://` engines on another host. Its secrets guard these.
 */
export function beyondLoopback(settings: Pick<FleetSettings, "balancer" | "edge" | "placement" | "engines">): string[] {
    const open: string[] = [];
    if (!isLoopback(settings.balancer.bind)) {
        open.push(`the balancer on ${settings.balancer.bind}:${settings.balancer.port}`);
    }
    for (const slot of settings.placement.slots.filter((s) => s.publish !== undefined && !isLoopback(s.publish))) {
        open.push(`${slot.name} on ${slot.publish}:${slot.hostPort}`);
    }
    for (const [host, engine] of Object.entries(settings.engines)) {
        const address = engine?.startsWith("tcp://") ? new URL(engine).hostname : undefined;
        if (address !== undefined && !isLoopback(address)) {
            open.push(`host ${host}'s engine at ${engine}`);
        }
    }
    return open;
}

/**
 * Secrets encrypted with the empty passphrase, which `scripts/deploy` uses unless one is set: anyone who
 * has the stack file can decrypt them. Refused (a problem per key) when a secret among them guards
 * something beyond the loopback (`open`, from `beyondLoopback`); a warning otherwise. Only for the
 * passphrase provider (a stack file with an `encryptionsalt`, no other `secretsprovider`), with
 * `PULUMI_CONFIG_PASSPHRASE` set and empty and no passphrase file, and with encrypted secrets set (`keys`).
 */
export function checkEmptyPassphrase(
    keys: string[],
    env: Record<string, string | undefined>,
    stackFileText: string | undefined,
    stackFile: string,
    open: string[],
): { problems: KeyProblem[]; warning?: string } {
    if (keys.length === 0 || env.PULUMI_CONFIG_PASSPHRASE !== "" || env.PULUMI_CONFIG_PASSPHRASE_FILE || stackFileText === undefined) {
        return { problems: [] };
    }
    const provider = /^secretsprovider:\s*(\S+)/m.exec(stackFileText)?.[1];
    if (!/^encryptionsalt:/m.test(stackFileText) || (provider !== undefined && !provider.startsWith("passphrase"))) {
        return { problems: [] };
    }
    const guarding = keys.filter((key) => GUARDING_KEYS.includes(key));
    if (open.length > 0 && guarding.length > 0) {
        const where = `${open.slice(0, 3).join(", ")}${open.length > 3 ? ", ..." : ""}`;
        return {
            problems: guarding.map((key) => ({
                key,
                value: SECRET_VALUE,
                allowed: `encrypted with the empty passphrase, which anyone who has ${stackFile} can undo, while it guards what this stack opens beyond the loopback (${where}): ${SET_A_PASSPHRASE}`,
            })),
        };
    }
    return {
        problems: [],
        warning: `the stack's secrets (${keys.join(", ")}) are encrypted with the empty passphrase: anyone who has ${stackFile} can read them. ${SET_A_PASSPHRASE[0].toUpperCase()}${SET_A_PASSPHRASE.slice(1)}`,
    };
}

/**
 * A warning when the CPU backend's default image cannot run on the engine's CPU (`cpuinfo`, from
 * /proc/cpuinfo, and `arch`, Node's name for it): vLLM's x86-64 CPU release image is built for AVX-512,
 * and dies with SIGILL (exit code 132) without it or on arm64.
 */
export function cpuImageWarning(settings: Pick<FleetSettings, "replica" | "images">, cpuinfo: string, arch: string): string | undefined {
    if (settings.replica.backend !== "cpu" || settings.images.vllmImage !== DEFAULTS.cpuImage) {
        return undefined;
    }
    const flags = new Set((/^flags\s*:\s*(.*)$/m.exec(cpuinfo)?.[1] ?? "").split(/\s+/));
    if (arch === "x64" && flags.has("avx512f")) {
        return undefined;
    }
    const why = arch === "x64" ? "this machine's CPU has no AVX-512 (avx512f)" : `this machine is ${arch}, not x86-64`;
    return (
        `vllm-nginx:vllmImage: the default CPU image (${DEFAULTS.cpuImage}) needs an x86-64 CPU with AVX-512, and ${why}: ` +
        "its replicas would exit with SIGILL (code 132). Set vllmImage to an image built for this CPU, or vllmBuild to build one " +
        "(vLLM's docker/Dockerfile.cpu, with VLLM_CPU_DISABLE_AVX512=true for AVX2)"
    );
}
