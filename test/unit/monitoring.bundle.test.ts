import * as fc from "fast-check";
import { describe, expect, it } from "vitest";
import { BUNDLE_MARKER, parseBundle, renderBundle } from "../../components/monitoring/configBundle";
import { prometheusBundle } from "../../components/monitoring/prometheusServer";
import { renderPrometheusConfig } from "../../components/monitoring/prometheusConfig";
import { renderRules } from "../../components/monitoring/rules";

describe("config bundle", () => {
    it("carries the Prometheus config and the rules as two files", () => {
        const config = renderPrometheusConfig({ stack: "dev", replicas: [{ name: "vllm0", address: "172.29.10.10:8000", host: "local" }] });
        const rules = renderRules();
        expect(parseBundle(prometheusBundle(config, rules))).toEqual([
            { path: "prometheus.yml", content: config },
            { path: "rules/vllm-nginx.yml", content: rules },
        ]);
    });

    it("gives back the files it was given, whatever their text", () => {
        const path = fc.array(fc.stringMatching(/^[a-z0-9_-][a-z0-9_.-]{0,8}$/), { minLength: 1, maxLength: 3 }).map((parts) => parts.join("/"));
        const content = fc.string({ maxLength: 200 }).filter((c) => !c.split("\n").some((line) => line.startsWith(BUNDLE_MARKER)));
        fc.assert(
            fc.property(fc.array(fc.record({ path, content }), { maxLength: 4 }), (files) => {
                const expected = files.map((f) => ({ path: f.path, content: f.content.endsWith("\n") ? f.content : `${f.content}\n` }));
                expect(parseBundle(renderBundle(files))).toEqual(expected);
            }),
        );
    });

    it.each(["../etc/passwd", "/etc/prometheus/prometheus.yml", "rules/../x", "a b.yml", ""])("refuses the path %j", (path) => {
        expect(() => renderBundle([{ path, content: "x\n" }])).toThrow(/not a relative path/);
    });

    it("refuses content with a line that would start another file", () => {
        expect(() => renderBundle([{ path: "a.yml", content: `ok\n${BUNDLE_MARKER}b.yml\n` }])).toThrow(/bundle marker/);
    });
});
