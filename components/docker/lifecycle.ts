import type * as docker from "@pulumi/docker";
import type { RestartPolicy } from "../config";
import { dockerDuration } from "./duration";
import { labelList } from "./labels";

export type Role = "replica" | "balancer" | "relay" | "gate" | "prometheus" | "nginx-exporter" | "grafana";

export interface LifecycleArgs {
    /** The stack name, written as a label on the container. */
    prefix: string;
    role: Role;
    /**
     * Shell command that exits 0 while the service is healthy. Without one (an image without a shell), the
     * container has no healthcheck and `pulumi up` does not wait for it.
     */
    healthProbe?: string;
    /** Defaults to 3. */
    probeTimeoutSeconds?: number;
    /** Failed probes before this long after start do not count (model loading). Defaults to 0. */
    startPeriodSeconds?: number;
    /** How long `pulumi up` waits for the container to be healthy. Defaults to 60. */
    waitSeconds?: number;
    restartPolicy: RestartPolicy;
    /** Time to finish in-flight requests after the stop signal, before SIGKILL. */
    stopGraceSeconds: number;
    extraLabels?: docker.types.input.ContainerLabel[];
}

/**
 * What every long-running container of the fleet shares: a healthcheck that `pulumi up` waits on, a
 * restart policy, a stop grace period for in-flight requests, bounded logs and the stack's labels.
 */
export function lifecycle(args: LifecycleArgs): Partial<docker.ContainerArgs> {
    const probe = args.healthProbe;
    return {
        ...(probe === undefined
            ? { wait: false }
            : {
                  healthcheck: {
                      tests: ["CMD-SHELL", probe],
                      // No startInterval: it needs Docker API 1.44 (Engine 25); Debian 12 ships 20.10.
                      // Durations as Docker reports them, so a refresh finds no difference.
                      interval: dockerDuration(5),
                      timeout: dockerDuration(args.probeTimeoutSeconds ?? 3),
                      retries: 3,
                      startPeriod: dockerDuration(args.startPeriodSeconds ?? 0),
                  },
                  wait: true,
                  waitTimeout: args.waitSeconds ?? 60,
              }),
        restart: args.restartPolicy,
        destroyGraceSeconds: args.stopGraceSeconds,
        stopTimeout: args.stopGraceSeconds,
        logDriver: "json-file",
        logOpts: { "max-size": "50m", "max-file": "5" },
        labels: [...labelList({ stack: args.prefix, role: args.role }), ...(args.extraLabels ?? [])],
    };
}
