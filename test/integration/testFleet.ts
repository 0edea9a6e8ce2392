/**
 * Stand-ins and nginx balancers started by one test, all stopped after it, pass or fail. The file
 * fails at once, saying how to install nginx, when the binary is missing.
 */
import { afterEach, beforeAll } from "vitest";
import { BALANCER_HEALTH_PATH } from "../../components/nginx/render";
import { Nginx, StandIn, nginxVersion, startNginx, startStandIn, stopAll } from "../support";

export function useTestFleet() {
    const replicas: StandIn[] = [];
    const balancers: Nginx[] = [];

    beforeAll(() => {
        nginxVersion();
    });
    afterEach(async () => {
        await Promise.all(balancers.splice(0).map((b) => b.stop()));
        await stopAll(replicas.splice(0));
    });

    return {
        /** `n` stand-ins serving model "m", with replica ids r0, r1, ... */
        async standIns(n: number, args: string[] = []): Promise<StandIn[]> {
            const started = await Promise.all(
                Array.from({ length: n }, (_, i) => startStandIn({ replicaId: `r${i}`, args: ["--served-model-name", "m", "--disable-uvicorn-access-log", ...args] })),
            );
            replicas.push(...started);
            return started;
        },
        /** Stops `standIn` with the others after the test (one started on a chosen port, say). */
        adopt(standIn: StandIn): StandIn {
            replicas.push(standIn);
            return standIn;
        },
        /** nginx on `conf`, ready once its health endpoint answers (when the config has one). */
        async nginx(conf: string, port: number, options: Parameters<typeof startNginx>[2] = {}): Promise<Nginx> {
            const n = await startNginx(conf, port, { readyPath: conf.includes(BALANCER_HEALTH_PATH) ? BALANCER_HEALTH_PATH : undefined, ...options });
            balancers.push(n);
            return n;
        },
    };
}
