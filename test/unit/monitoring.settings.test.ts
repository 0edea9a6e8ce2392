import { describe, expect, it } from "vitest";
import { MONITORING_DEFAULTS, MonitoringSettings, parseMonitoringSettings } from "../../components/monitoring/settings";

/** Parses `value` and returns the settings with every problem reported, as "given: allowed". */
function parse(value: unknown): { settings: MonitoringSettings; problems: string[] } {
    const problems: string[] = [];
    const settings = parseMonitoringSettings(value, (given, allowed) => problems.push(`${JSON.stringify(given)}: ${allowed}`));
    return { settings, problems };
}

const DEFAULTS: MonitoringSettings = {
    prometheus: false,
    grafana: false,
    prometheusImage: "prom/prometheus:v3.13.2",
    exporterImage: "nginx/nginx-prometheus-exporter:1.5.1",
    buildBaseImage: undefined,
    grafanaImage: "grafana/grafana:11.6.14",
    prometheusPort: 9090,
    grafanaPort: 3000,
    bind: "127.0.0.1",
    retention: "15d",
};

describe("parseMonitoringSettings", () => {
    it.each([undefined, null, "", {}])("applies every default when the key is %j: off, the pinned images ready for when it is turned on", (value) => {
        expect(parse(value)).toEqual({ settings: DEFAULTS, problems: [] });
    });

    it("pins upstream images by version, never latest", () => {
        for (const image of [MONITORING_DEFAULTS.prometheusImage, MONITORING_DEFAULTS.exporterImage, MONITORING_DEFAULTS.grafanaImage]) {
            expect(image).toMatch(/:v?\d+\.\d+\.\d+$/);
        }
    });

    it("reads false as everything off and true as Prometheus on", () => {
        expect(parse(false).settings).toMatchObject({ prometheus: false, grafana: false });
        expect(parse("false").settings).toMatchObject({ prometheus: false, grafana: false });
        expect(parse(true)).toEqual({ settings: { ...DEFAULTS, prometheus: true }, problems: [] });
    });

    it("reads a full object, with numbers and booleans as text too (pulumi config set --path)", () => {
        const { settings, problems } = parse({
            prometheus: "true",
            grafana: true,
            prometheusImage: "registry.local/prometheus:v3.13.2",
            exporterImage: "registry.local/exporter:1.5.1",
            grafanaImage: "grafana/grafana:11.6.14",
            prometheusPort: "19090",
            grafanaPort: 13000,
            bind: "0.0.0.0",
            retention: "2w",
        });
        expect(problems).toEqual([]);
        expect(settings).toEqual({
            prometheus: true,
            grafana: true,
            prometheusImage: "registry.local/prometheus:v3.13.2",
            exporterImage: "registry.local/exporter:1.5.1",
            buildBaseImage: undefined,
            grafanaImage: "grafana/grafana:11.6.14",
            prometheusPort: 19090,
            grafanaPort: 13000,
            bind: "0.0.0.0",
            retention: "2w",
        });
    });

    it("reads the object from JSON text, as structured config may arrive", () => {
        expect(parse('{"prometheus": true, "grafana": true}').settings).toMatchObject({ prometheus: true, grafana: true });
    });

    it("builds instead of pulling when buildBaseImage is set: no image to pull is left", () => {
        const { settings, problems } = parse({ buildBaseImage: "vllm-nginx/debian:bookworm" });
        expect(problems).toEqual([]);
        expect(settings).toMatchObject({ buildBaseImage: "vllm-nginx/debian:bookworm", prometheusImage: undefined, exporterImage: undefined });
    });

    it.each([
        [{ prometheus: "yes" }, '{"prometheus":"yes"}: prometheus: true or false'],
        [{ grafana: 1 }, '{"grafana":1}: grafana: true or false'],
        [{ prometheusPort: 99999 }, '{"prometheusPort":99999}: prometheusPort: a whole number from 1 to 65535'],
        [{ grafanaPort: "3000.5" }, '{"grafanaPort":"3000.5"}: grafanaPort: a whole number from 1 to 65535'],
        [{ bind: "localhost" }, '{"bind":"localhost"}: bind: an IPv4 address, e.g. "127.0.0.1" (the default: this host only) or "0.0.0.0"'],
        [{ retention: "15 days" }, '{"retention":"15 days"}: retention: a Prometheus duration: whole numbers with ms, s, m, h, d, w or y, e.g. "15d" or "2w"'],
        [{ prometheusImage: "prom/prometheus latest" }, '{"prometheusImage":"prom/prometheus latest"}: prometheusImage: an image reference without spaces, e.g. "prom/prometheus:v3.13.2"'],
        [{ grafanaImage: 11 }, '{"grafanaImage":11}: grafanaImage: an image reference without spaces, e.g. "prom/prometheus:v3.13.2"'],
        [
            { prometheus: false, grafana: true },
            '{"grafana":true}: grafana: false while prometheus is false: Grafana shows what Prometheus collects',
        ],
        [{ prometheus: true, grafana: true, grafanaPort: 9090 }, '{"grafanaPort":9090}: grafanaPort: a port other than prometheusPort (9090)'],
        [
            { buildBaseImage: "vllm-nginx/debian:bookworm", prometheusImage: "prom/prometheus:v3.13.2" },
            '{"prometheusImage":"prom/prometheus:v3.13.2"}: prometheusImage: not together with buildBaseImage: set the images to pull, or buildBaseImage to build them, not both',
        ],
        [
            { promethues: true },
            '{"promethues":true}: promethues is not a known field; known fields are prometheus, grafana, prometheusImage, exporterImage, buildBaseImage, grafanaImage, prometheusPort, grafanaPort, bind, retention',
        ],
        [
            ["prometheus"],
            '["prometheus"]: an object of prometheus, grafana, prometheusImage, exporterImage, buildBaseImage, grafanaImage, prometheusPort, grafanaPort, bind, retention (each optional), or true or false; e.g. {"prometheus": true, "grafana": true, "grafanaPort": 3000}',
        ],
        [42, expect.stringMatching(/^42: an object of prometheus, /)],
    ])("reports %j with what was given and what is allowed", (value, message) => {
        expect(parse(value).problems).toEqual([message]);
    });

    it("reports every problem at once and falls back to the defaults for those fields", () => {
        const { settings, problems } = parse({ prometheusPort: 0, bind: "::1", retention: "forever", colour: "blue" });
        expect(problems).toHaveLength(4);
        expect(settings).toMatchObject({ prometheusPort: 9090, bind: "127.0.0.1", retention: "15d" });
    });
});
