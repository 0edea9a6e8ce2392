/**
 * `scripts/status <stack> [--json] [--outputs FILE]`: each replica of a deployed stack, in rotation or
 * not, its health and load, and the balancer's config id. Reads the stack's outputs with the Pulumi
 * CLI, asks Prometheus when the stack has one (`prometheusUrl`), and each replica's `/metrics` when it
 * has none or Prometheus does not answer. Exit code: 0 all well, 1 something is down or out of
 * rotation, 2 the command could not run.
 */
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as http from "http";
import * as https from "https";
import {
    ReplicaLoad,
    STATUS_QUERIES,
    UP_QUERY,
    StatusReport,
    buildReport,
    formatReport,
    loadFromMetrics,
    loadsFromPrometheus,
    parseStackOutputs,
    reportHealthy,
    reportJson,
} from "./statusReport";

const USAGE =
    "usage: scripts/status <stack> [--json] [--outputs FILE] [--ca FILE]\n  --json          print the report as JSON\n  --outputs FILE  read the stack's outputs from FILE (as `pulumi stack output --json` prints them)\n" +
    "  --ca FILE       trust this certificate (PEM) for an https endpoint, e.g. a self-signed balancer's (see README, the front door)";

interface Args {
    stack: string;
    json: boolean;
    outputsFile?: string;
    ca?: string;
}

function parseArgs(argv: string[]): Args {
    let stack: string | undefined;
    let json = false;
    let outputsFile: string | undefined;
    let caFile: string | undefined;
    for (let i = 0; i < argv.length; i++) {
        const arg = argv[i];
        if (arg === "--json") {
            json = true;
        } else if (arg === "--outputs") {
            outputsFile = argv[++i];
        } else if (arg === "--ca") {
            caFile = argv[++i];
        } else if (arg === "-h" || arg === "--help") {
            console.log(USAGE);
            process.exit(0);
        } else if (!arg.startsWith("-") && stack === undefined) {
            stack = arg;
        } else {
            throw new UsageError(`unexpected argument ${JSON.stringify(arg)}`);
        }
    }
    if (stack === undefined || (argv.includes("--outputs") && !outputsFile) || (argv.includes("--ca") && !caFile)) {
        throw new UsageError(stack === undefined ? "no stack given" : `${argv.includes("--ca") && !caFile ? "--ca" : "--outputs"} needs a file`);
    }
    return { stack, json, outputsFile, ca: caFile === undefined ? undefined : fs.readFileSync(caFile, "utf8") };
}

class UsageError extends Error {}

/** A GET on the loopback or the stack's hosts, with a short timeout; never through a proxy. Over HTTPS, trusting `ca` (else the system's CAs). */
function get(url: string, timeoutMs = 3000, ca?: string): Promise<{ status: number; text: string }> {
    return new Promise((resolve, reject) => {
        const options = { agent: false as const, timeout: timeoutMs };
        const answer = (res: http.IncomingMessage) => {
            let text = "";
            res.setEncoding("utf8").on("data", (d: string) => (text += d));
            res.on("end", () => resolve({ status: res.statusCode ?? 0, text }));
        };
        const req = url.startsWith("https:") ? https.get(url, { ...options, ca }, answer) : http.get(url, options, answer);
        req.on("timeout", () => req.destroy(new Error(`no answer from ${url} within ${timeoutMs} ms`)));
        req.on("error", reject);
    });
}

function readOutputs(args: Args): unknown {
    const text = args.outputsFile
        ? fs.readFileSync(args.outputsFile, "utf8")
        : execFileSync("pulumi", ["stack", "output", "--json", "--stack", args.stack, "--non-interactive"], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
    return JSON.parse(text);
}

/** Prometheus's `up` for each replica of the `vllm` job: whether its last scrape (through the relay, for a replica of another host) answered. */
async function prometheusUp(url: string): Promise<Record<string, boolean>> {
    const r = await get(`${url}/api/v1/query?query=${encodeURIComponent(UP_QUERY)}`);
    const body = JSON.parse(r.text) as { status: string; data?: { result: Array<{ metric: Record<string, string>; value: [number, string] }> } };
    if (r.status !== 200 || body.status !== "success" || !body.data) {
        throw new Error(`Prometheus answered ${r.status} to ${UP_QUERY}`);
    }
    return Object.fromEntries(body.data.result.map((s) => [s.metric.replica, s.value[1] === "1"]));
}

async function prometheusLoads(url: string): Promise<Map<string, ReplicaLoad>> {
    const answers: Partial<Record<keyof ReplicaLoad, Array<{ replica?: string; value: number }>>> = {};
    await Promise.all(
        (Object.entries(STATUS_QUERIES) as Array<[keyof ReplicaLoad, string]>).map(async ([field, query]) => {
            const r = await get(`${url}/api/v1/query?query=${encodeURIComponent(query)}`);
            const body = JSON.parse(r.text) as { status: string; data?: { result: Array<{ metric: Record<string, string>; value: [number, string] }> } };
            if (r.status !== 200 || body.status !== "success" || !body.data) {
                throw new Error(`Prometheus answered ${r.status} to ${query}`);
            }
            answers[field] = body.data.result.map((s) => ({ replica: s.metric.replica, value: Number(s.value[1]) }));
        }),
    );
    return loadsFromPrometheus(answers);
}

async function metricsLoads(replicas: Array<{ name: string; url?: string }>): Promise<Map<string, ReplicaLoad>> {
    const loads = new Map<string, ReplicaLoad>();
    await Promise.all(
        replicas.flatMap((r) => (r.url === undefined ? [] : [{ name: r.name, url: r.url }])).map(async (r) => {
            const answer = await get(`${r.url}/metrics`).catch(() => undefined);
            if (answer?.status === 200) {
                loads.set(r.name, loadFromMetrics(answer.text));
            }
        }),
    );
    return loads;
}

async function collect(args: Args): Promise<StatusReport> {
    const outputs = parseStackOutputs(readOutputs(args));
    let balancerError: string | undefined;
    const [balancer, ...health] = await Promise.all([
        get(`${outputs.endpoint}/nginx-health`, 3000, args.ca).catch((error: Error) => {
            const untrusted = /self[- ]signed|unable to verify|certificate/i.test(error.message);
            balancerError = untrusted ? `${error.message}: pass its certificate with --ca (README, the front door)` : error.message;
            return undefined;
        }),
        ...outputs.replicas.map((r) => (r.url === undefined ? Promise.resolve(undefined) : get(`${r.url}/health`).catch(() => undefined))),
    ]);
    let loads: Map<string, ReplicaLoad>;
    let source: StatusReport["source"];
    let scraped: Record<string, boolean> | undefined;
    if (outputs.prometheusUrl) {
        try {
            [loads, scraped] = await Promise.all([prometheusLoads(outputs.prometheusUrl), prometheusUp(outputs.prometheusUrl)]);
            source = { kind: "prometheus", url: outputs.prometheusUrl, ttftWindow: "1m" };
        } catch (error) {
            loads = await metricsLoads(outputs.replicas);
            source = { kind: "metrics", ttftWindow: "since start", reason: `Prometheus at ${outputs.prometheusUrl} did not answer: ${(error as Error).message}` };
        }
    } else {
        loads = await metricsLoads(outputs.replicas);
        source = { kind: "metrics", ttftWindow: "since start", reason: "the stack has no Prometheus" };
    }
    return buildReport({
        stack: args.stack,
        outputs,
        balancerHealth: balancer?.status === 200 ? balancer.text : undefined,
        balancerError: balancer === undefined ? balancerError : balancer.status === 200 ? undefined : `it answered ${balancer.status}`,
        healthCodes: Object.fromEntries(outputs.replicas.map((r, i) => [r.name, health[i]?.status])),
        scraped,
        loads,
        source,
    });
}

async function main(): Promise<number> {
    let args: Args;
    try {
        args = parseArgs(process.argv.slice(2));
    } catch (error) {
        console.error(`${(error as Error).message}\n${USAGE}`);
        return 2;
    }
    let report: StatusReport;
    try {
        report = await collect(args);
    } catch (error) {
        const e = error as { stderr?: string; message: string; code?: string };
        const why =
            e.code === "ENOENT"
                ? "the Pulumi CLI was not found: install it (https://www.pulumi.com/docs/install/), build it with .ci/pulumi-toolchain, or pass --outputs FILE"
                : e.stderr?.trim() || e.message;
        console.error(`status of stack ${args.stack}: ${why}`);
        return 2;
    }
    process.stdout.write(args.json ? reportJson(report) : formatReport(report));
    return reportHealthy(report) ? 0 : 1;
}

void main().then((code) => process.exit(code));
