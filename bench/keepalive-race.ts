/**
 * Reproduces the upstream keep-alive race: a request that nginx writes on an idle connection at the
 * moment the replica closes it (vLLM/uvicorn: after 5 s idle) fails with 502, because a POST that was
 * sent is never resent. Several independent lanes (one stand-in + one nginx each) send a request, wait
 * ~5 s (±4 ms) after the previous response, and send another; the rendered config (keepalive_timeout 4s) and
 * the same config with `keepalive_timeout 60s` in the upstream are compared.
 *
 *   node --import tsx bench/keepalive-race.ts [--trials 20] [--lanes 6]     (~trials * 5 s * 2)
 *
 * Loopback only, bounded: lanes * trials * 2 configs requests in all.
 */
import { performance } from "perf_hooks";
import { Nginx, freePort, renderOurs, request, sleep, startNginx, startStandIn } from "../test/support";

const argv = process.argv.slice(2);
const flag = (name: string, fallback: number) => (argv.includes(name) ? Number(argv[argv.indexOf(name) + 1]) : fallback);
const TRIALS = Math.min(100, flag("--trials", 20));
const LANES = Math.min(8, flag("--lanes", 6));

type Conf = (ports: number[], port: number) => string;

async function lane(id: string, conf: Conf): Promise<{ trials: number; failed: number; errors: string[] }> {
    const standIn = await startStandIn({ replicaId: id, args: ["--itl-ms", "1", "--disable-uvicorn-access-log"] });
    const port = await freePort();
    let lb: Nginx | undefined;
    let failed = 0;
    try {
        lb = await startNginx(conf([standIn.port], port), port);
        for (let t = 0; t < TRIALS; t += 1) {
            await request(`${lb.url}/v1/completions`, { body: { prompt: "x", max_tokens: 1 } });
            const end = performance.now();
            const at = end + 4998 + Math.random() * 8; // around the replica's 5 s idle close
            while (performance.now() < at - 3) {
                await sleep(1);
            }
            while (performance.now() < at) {
                // spin for the last milliseconds, for precision
            }
            const r = await request(`${lb.url}/v1/completions`, { body: { prompt: "x", max_tokens: 1 } });
            if (r.status !== 200) {
                failed += 1;
            }
        }
        return { trials: TRIALS, failed, errors: lb.errorLog().split("\n").filter((l) => l.includes("[error]")) };
    } finally {
        await lb?.stop();
        await standIn.kill();
    }
}

async function run(name: string, conf: Conf): Promise<void> {
    const lanes = await Promise.all(Array.from({ length: LANES }, (_, i) => lane(`${name}-${i}`, conf)));
    const trials = lanes.reduce((a, l) => a + l.trials, 0);
    const failed = lanes.reduce((a, l) => a + l.failed, 0);
    console.log(`${name.padEnd(28)} ${failed} of ${trials} requests failed (${((100 * failed) / trials).toFixed(1)}%)`);
    for (const e of lanes.flatMap((l) => l.errors).slice(0, 3)) {
        console.log(`    ${e.replace(/^.*\[error\] /, "")}`);
    }
}

async function main(): Promise<void> {
    console.log(`${LANES} lanes x ${TRIALS} requests sent ~5 s (+-4 ms) after the previous response, per config`);
    await run("keepalive_timeout 60s", (ports, port) => renderOurs(ports, port).replace("keepalive_timeout 4s;", "keepalive_timeout 60s;"));
    await run("rendered (keepalive 4s)", (ports, port) => renderOurs(ports, port));
}

main().then(
    () => process.exit(0),
    (err) => {
        console.error(err);
        process.exit(1);
    },
);
