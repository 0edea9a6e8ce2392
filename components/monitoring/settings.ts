/**
 * The `vllm-nginx:monitoring` stack config key: one structured value that turns Prometheus and Grafana on
 * or off and picks their images, ports and retention. Pure code, called by config validation at preview
 * time; every problem is reported with what was given and what is allowed.
 */

/** The validated, fully defaulted monitoring settings. */
export interface MonitoringSettings {
    /** Run Prometheus (with its rules) and the nginx exporter. */
    prometheus: boolean;
    /** Run Grafana with the fleet's dashboard. Needs `prometheus`. */
    grafana: boolean;
    /** Prometheus image to pull; unset when `buildBaseImage` is set. */
    prometheusImage?: string;
    /** nginx exporter image to pull; unset when `buildBaseImage` is set. */
    exporterImage?: string;
    /**
     * Build Prometheus and the nginx exporter from Debian's packages (`images/prometheus`,
     * `images/nginx-exporter`) on this Debian-based image instead of pulling them.
     */
    buildBaseImage?: string;
    grafanaImage: string;
    /** Host port of Prometheus's web UI and API. */
    prometheusPort: number;
    /** Host port of Grafana. */
    grafanaPort: number;
    /** Host address both ports are published on. */
    bind: string;
    /** How long Prometheus keeps samples (`--storage.tsdb.retention.time`), e.g. `15d`. */
    retention: string;
}

/** Defaults, applied in {@link parseMonitoringSettings} only. */
export const MONITORING_DEFAULTS = {
    prometheus: false,
    grafana: false,
    prometheusImage: "prom/prometheus:v3.13.2",
    exporterImage: "nginx/nginx-prometheus-exporter:1.5.1",
    grafanaImage: "grafana/grafana:11.6.14",
    prometheusPort: 9090,
    grafanaPort: 3000,
    bind: "127.0.0.1",
    retention: "15d",
} as const;

/** Every field the key accepts. */
export const MONITORING_FIELDS = [
    "prometheus",
    "grafana",
    "prometheusImage",
    "exporterImage",
    "buildBaseImage",
    "grafanaImage",
    "prometheusPort",
    "grafanaPort",
    "bind",
    "retention",
] as const;

type Field = (typeof MONITORING_FIELDS)[number];

/** Prometheus's duration syntax for retention: units ms, s, m, h, d, w, y, e.g. `15d`, `1w2d`. */
const RETENTION = /^(?:\d+(?:ms|s|m|h|d|w|y))+$/;

const EXAMPLE = '{"prometheus": true, "grafana": true, "grafanaPort": 3000}';

/**
 * Validates the `monitoring` value and applies the defaults. Unset (`undefined`, `null`, `""`) means every
 * default; `true` and `false` are short for `{prometheus: true}` and `{prometheus: false, grafana: false}`.
 * Each problem is reported through `problem(value, allowed)`, where `value` names the field it came from
 * (`{"prometheusPort": 99999}`) and `allowed` says what the field accepts; the returned settings then
 * use the default for that field, so that every problem is found in one pass.
 */
export function parseMonitoringSettings(value: unknown, problem: (value: unknown, allowed: string) => void): MonitoringSettings {
    const raw = normalise(value, problem);
    const given = (field: Field): unknown => {
        const v = raw[field];
        return v === null || v === "" ? undefined : v;
    };
    const report = (field: Field, allowed: string) => problem({ [field]: raw[field] }, `${field}: ${allowed}`);

    for (const field of Object.keys(raw)) {
        if (!(MONITORING_FIELDS as readonly string[]).includes(field)) {
            problem({ [field]: raw[field] }, `${field} is not a known field; known fields are ${MONITORING_FIELDS.join(", ")}`);
        }
    }

    const bool = (field: "prometheus" | "grafana"): boolean => {
        const v = given(field);
        if (v === undefined) {
            return MONITORING_DEFAULTS[field];
        }
        if (v === true || v === "true") {
            return true;
        }
        if (v === false || v === "false") {
            return false;
        }
        report(field, "true or false");
        return MONITORING_DEFAULTS[field];
    };
    const port = (field: "prometheusPort" | "grafanaPort"): number => {
        const v = given(field);
        if (v === undefined) {
            return MONITORING_DEFAULTS[field];
        }
        const n = typeof v === "number" ? v : typeof v === "string" && /^\d+$/.test(v.trim()) ? Number(v) : NaN;
        if (!Number.isInteger(n) || n < 1 || n > 65535) {
            report(field, "a whole number from 1 to 65535");
            return MONITORING_DEFAULTS[field];
        }
        return n;
    };
    const image = (field: "prometheusImage" | "exporterImage" | "grafanaImage" | "buildBaseImage"): string | undefined => {
        const v = given(field);
        if (v === undefined) {
            return undefined;
        }
        if (typeof v !== "string" || /\s/.test(v)) {
            report(field, 'an image reference without spaces, e.g. "prom/prometheus:v3.13.2"');
            return undefined;
        }
        return v;
    };

    const prometheus = bool("prometheus");
    const grafana = bool("grafana");
    const buildBaseImage = image("buildBaseImage");
    const prometheusImage = image("prometheusImage");
    const exporterImage = image("exporterImage");
    if (buildBaseImage !== undefined) {
        for (const field of ["prometheusImage", "exporterImage"] as const) {
            if (given(field) !== undefined) {
                report(field, "not together with buildBaseImage: set the images to pull, or buildBaseImage to build them, not both");
            }
        }
    }
    if (grafana && !prometheus) {
        report("grafana", "false while prometheus is false: Grafana shows what Prometheus collects");
    }
    const prometheusPort = port("prometheusPort");
    const grafanaPort = port("grafanaPort");
    if (prometheus && grafana && prometheusPort === grafanaPort) {
        report("grafanaPort", `a port other than prometheusPort (${prometheusPort})`);
    }

    const bindValue = given("bind");
    let bind: string = MONITORING_DEFAULTS.bind;
    if (bindValue !== undefined) {
        if (typeof bindValue === "string" && isIpv4(bindValue)) {
            bind = bindValue;
        } else {
            report("bind", 'an IPv4 address, e.g. "127.0.0.1" (the default: this host only) or "0.0.0.0"');
        }
    }

    const retentionValue = given("retention");
    let retention: string = MONITORING_DEFAULTS.retention;
    if (retentionValue !== undefined) {
        if (typeof retentionValue === "string" && RETENTION.test(retentionValue.trim())) {
            retention = retentionValue.trim();
        } else {
            report("retention", 'a Prometheus duration: whole numbers with ms, s, m, h, d, w or y, e.g. "15d" or "2w"');
        }
    }

    return {
        prometheus,
        grafana: grafana && prometheus,
        prometheusImage: buildBaseImage === undefined ? (prometheusImage ?? MONITORING_DEFAULTS.prometheusImage) : undefined,
        exporterImage: buildBaseImage === undefined ? (exporterImage ?? MONITORING_DEFAULTS.exporterImage) : undefined,
        buildBaseImage,
        grafanaImage: image("grafanaImage") ?? MONITORING_DEFAULTS.grafanaImage,
        prometheusPort,
        grafanaPort,
        bind,
        retention,
    };
}

/** The value as an object of fields: unset is `{}`, a boolean is the shorthand, JSON text is parsed. */
function normalise(value: unknown, problem: (value: unknown, allowed: string) => void): Record<string, unknown> {
    if (value === undefined || value === null || value === "") {
        return {};
    }
    if (value === true || value === "true") {
        return { prometheus: true };
    }
    if (value === false || value === "false") {
        return { prometheus: false, grafana: false };
    }
    if (typeof value === "string" && value.trim().startsWith("{")) {
        try {
            return normalise(JSON.parse(value), problem);
        } catch {
            // Reported below as not an object.
        }
    }
    if (typeof value !== "object" || Array.isArray(value)) {
        problem(value, `an object of ${MONITORING_FIELDS.join(", ")} (each optional), or true or false; e.g. ${EXAMPLE}`);
        return {};
    }
    return value as Record<string, unknown>;
}

function isIpv4(text: string): boolean {
    const parts = text.split(".");
    return parts.length === 4 && parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255);
}
