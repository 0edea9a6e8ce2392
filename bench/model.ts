/**
 * The mixed-length workload of the benchmark, the imbalance measure, and the queueing model that gives
 * the ideal join-the-shortest-queue (JSQ) reference. Pure code.
 */

export interface ReplicaModel {
    replicas: number;
    /** Sequences a replica runs at once (`--max-num-seqs`); FIFO queue beyond. */
    seats: number;
    itlMs: number;
    /** Token gap grows as itl * (1 + batchSlowdown * (running - 1)). */
    batchSlowdown: number;
}

export interface MixSpec {
    seconds: number;
    /** Offered load as a fraction of the replicas' capacity (seats busy). */
    load: number;
    seed: number;
    /** Share of short requests; the rest are long. */
    shortShare: number;
    /** Token ranges, inclusive. */
    short: [number, number];
    long: [number, number];
}

export interface Arrival {
    /** ms from the start of the run. */
    at: number;
    tokens: number;
}

export interface Interval {
    replica: number;
    start: number;
    end: number;
}

export function mulberry32(seed: number): () => number {
    let a = seed >>> 0;
    return () => {
        a = (a + 0x6d2b79f5) >>> 0;
        let t = a;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
}

/** Poisson arrivals at `load` times the capacity, sizes drawn from the short/long mix (fixed seed). */
export function mixedSchedule(model: ReplicaModel, mix: MixSpec): Arrival[] {
    const rand = mulberry32(mix.seed);
    const uniform = ([lo, hi]: [number, number]) => lo + Math.floor(rand() * (hi - lo + 1));
    const mean = ([lo, hi]: [number, number]) => (lo + hi) / 2;
    const meanTokens = mix.shortShare * mean(mix.short) + (1 - mix.shortShare) * mean(mix.long);
    const capacityPerSecond = (model.replicas * model.seats) / ((meanTokens * model.itlMs) / 1000);
    const rate = mix.load * capacityPerSecond;
    const out: Arrival[] = [];
    for (let t = 0; ; ) {
        t += (-Math.log(1 - rand()) / rate) * 1000;
        if (t > mix.seconds * 1000) {
            return out;
        }
        out.push({ at: t, tokens: rand() < mix.shortShare ? uniform(mix.short) : uniform(mix.long) });
    }
}

/**
 * Imbalance: the time average, over [from, to] sampled every 50 ms, of (max - min) / mean of the
 * requests in flight per replica (samples with nothing in flight are skipped). 0 is perfectly even;
 * 1 means the spread between the busiest and the idlest replica equals the mean load.
 */
export function imbalance(intervals: Interval[], replicas: number, from: number, to: number): number {
    let sum = 0;
    let samples = 0;
    for (let t = from; t <= to; t += 50) {
        const counts = new Array<number>(replicas).fill(0);
        for (const iv of intervals) {
            if (iv.start <= t && t < iv.end) {
                counts[iv.replica]! += 1;
            }
        }
        const mean = counts.reduce((a, b) => a + b, 0) / replicas;
        if (mean > 0) {
            sum += (Math.max(...counts) - Math.min(...counts)) / mean;
            samples += 1;
        }
    }
    return samples > 0 ? sum / samples : NaN;
}

/**
 * The same arrivals dispatched by a model balancer, on replicas modelled as the stand-in behaves: up to
 * `seats` running at once, FIFO queue beyond, every running request gets one token per
 * itl * (1 + slowdown * (running - 1)) ms. Fluid, event-driven simulation; no network or proxy cost.
 *   - "jsq": at its arrival a request goes to the replica with the fewest requests in the system
 *     (running plus waiting), ties to the lowest index: the ideal join-the-shortest-queue balancer.
 *   - "rr": round robin in arrival order (what `direct` does), to check the model against a measurement.
 */
export function simulate(schedule: Arrival[], model: ReplicaModel, policy: "jsq" | "rr"): { e2e: number[]; imbalance: number } {
    interface Job {
        arrival: number;
        remaining: number;
        replica: number;
    }
    const running: Job[][] = Array.from({ length: model.replicas }, () => []);
    const queues: Job[][] = Array.from({ length: model.replicas }, () => []);
    const intervals: Interval[] = [];
    const e2e: number[] = [];
    const rate = (n: number) => 1 / (model.itlMs * (1 + model.batchSlowdown * (n - 1))); // tokens per ms
    let t = 0;
    let next = 0;
    for (;;) {
        let dt = Infinity;
        for (const jobs of running) {
            for (const j of jobs) {
                dt = Math.min(dt, j.remaining / rate(jobs.length));
            }
        }
        const nextArrival = next < schedule.length ? schedule[next]!.at : Infinity;
        if (dt === Infinity && nextArrival === Infinity) {
            break;
        }
        const step = Math.min(dt, nextArrival - t);
        for (const jobs of running) {
            const r = rate(jobs.length);
            for (const j of jobs) {
                j.remaining -= step * r;
            }
        }
        t += step;
        running.forEach((jobs, k) => {
            for (const j of jobs.filter((x) => x.remaining <= 1e-9)) {
                jobs.splice(jobs.indexOf(j), 1);
                e2e.push(t - j.arrival);
                intervals.push({ replica: j.replica, start: j.arrival, end: t });
            }
            while (jobs.length < model.seats && queues[k]!.length > 0) {
                jobs.push(queues[k]!.shift()!);
            }
        });
        while (next < schedule.length && schedule[next]!.at <= t + 1e-9) {
            const a = schedule[next]!;
            let k = next % model.replicas;
            if (policy === "jsq") {
                const load = (c: number) => running[c]!.length + queues[c]!.length;
                k = 0;
                for (let c = 1; c < model.replicas; c += 1) {
                    if (load(c) < load(k)) {
                        k = c;
                    }
                }
            }
            const job: Job = { arrival: a.at, remaining: a.tokens, replica: k };
            (running[k]!.length < model.seats ? running[k]! : queues[k]!).push(job);
            next += 1;
        }
    }
    const last = schedule.length > 0 ? schedule[schedule.length - 1]!.at : 0;
    return { e2e, imbalance: imbalance(intervals, model.replicas, 0, last) };
}
