import * as fc from "fast-check";
import * as yaml from "js-yaml";
import { describe, expect, it } from "vitest";
import { YamlValue, toYaml } from "../../components/monitoring/yaml";

describe("toYaml", () => {
    it("writes block style with plain words, durations and quoted PromQL and keywords", () => {
        expect(
            toYaml({
                global: { scrape_interval: "5s", external_labels: { stack: "dev" } },
                rule_files: ["rules/*.yml"],
                targets: ["172.29.10.10:8000", "nginx-exporter:9113"],
                expr: 'up{job="vllm"} == 0',
                empty: [],
                none: {},
                skipped: undefined,
                count: 3,
                on: true,
            }),
        ).toBe(
            [
                "global:",
                "  scrape_interval: 5s",
                "  external_labels:",
                "    stack: dev",
                "rule_files:",
                "  - 'rules/*.yml'",
                "targets:",
                "  - '172.29.10.10:8000'",
                "  - nginx-exporter:9113",
                "expr: 'up{job=\"vllm\"} == 0'",
                "empty: []",
                "none: {}",
                "count: 3",
                // YAML 1.1 reads a bare on as true, so the key is quoted.
                "'on': true",
                "",
            ].join("\n"),
        );
    });

    it("writes multi-line strings as literal blocks", () => {
        const text = toYaml([{ expr: "a\n/ b" }]);
        expect(text).toBe("- expr: |-\n    a\n    / b\n");
        expect(yaml.load(text)).toEqual([{ expr: "a\n/ b" }]);
    });

    it.each(["true", "no", "null", "~", "1.5", "0x1F", "12:30", "- x", "a: b", "#c", "x:", "'q'", "", " lead", "trail ", "é\u2028", "tab\there"])(
        "quotes %j so that it reads back as the same string",
        (text) => {
            expect(yaml.load(toYaml({ value: text }))).toEqual({ value: text });
        },
    );

    it("reads back as the same value, whatever the value", () => {
        const key = fc.string({ minLength: 1, maxLength: 12 });
        const leaf = fc.oneof(fc.string({ maxLength: 40 }), fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.boolean(), fc.constant(null));
        const value: fc.Arbitrary<YamlValue> = fc.letrec<{ node: YamlValue }>((tie) => ({
            node: fc.oneof(
                { depthSize: "small", withCrossShrink: true },
                leaf,
                fc.array(tie("node"), { maxLength: 4 }),
                fc.dictionary(key, tie("node"), { maxKeys: 4 }),
            ),
        })).node;
        fc.assert(
            fc.property(value, (v) => {
                expect(yaml.load(toYaml(v))).toEqual(normalise(v));
            }),
            { numRuns: 500 },
        );
    });
});

/** js-yaml reads -0 as 0 and drops nothing else. */
function normalise(v: YamlValue): unknown {
    if (typeof v === "number" && Object.is(v, -0)) {
        return 0;
    }
    if (Array.isArray(v)) {
        return v.map(normalise);
    }
    if (v !== null && typeof v === "object") {
        return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, normalise(x as YamlValue)]));
    }
    return v;
}
