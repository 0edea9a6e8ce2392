import { describe, expect, it } from "vitest";
import { nginxSeconds, parseDurationSeconds, parseSizeBytes } from "../../components/config/units";

describe("durations", () => {
    it.each([
        ["30s", 30],
        ["10m", 600],
        ["1h30m", 5400],
        ["3600", 3600],
        ["500ms", 0.5],
        ["1d", 86400],
    ])("%s is %d seconds", (text, seconds) => {
        expect(parseDurationSeconds(text)).toBe(seconds);
    });

    it.each(["", "s", "10 minutes", "1y", "-5s", "1.5h", "10s garbage"])("rejects %j", (text) => {
        expect(parseDurationSeconds(text)).toBeUndefined();
    });

    it("renders seconds for nginx", () => {
        expect(nginxSeconds(3600)).toBe("3600s");
        expect(nginxSeconds(0.5)).toBe("500ms");
    });
});

describe("sizes", () => {
    it.each([
        ["10.24gb", Math.floor(10.24 * 1024 ** 3)],
        ["100m", 100 * 1024 ** 2],
        ["512k", 512 * 1024],
        ["1G", 1024 ** 3],
        ["2048", 2048],
    ])("%s is %d bytes", (text, bytes) => {
        expect(parseSizeBytes(text)).toBe(bytes);
    });

    it.each(["", "gb", "ten", "1tb", "-1m"])("rejects %j", (text) => {
        expect(parseSizeBytes(text)).toBeUndefined();
    });
});
