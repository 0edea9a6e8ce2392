import { describe, expect, it } from "vitest";
import { dockerDuration } from "../../components/docker/duration";

describe("dockerDuration", () => {
    it.each([
        [0, "0s"],
        [5, "5s"],
        [59, "59s"],
        [60, "1m0s"],
        [120, "2m0s"],
        [1800, "30m0s"],
        [3600, "1h0m0s"],
        [5430, "1h30m30s"],
    ])("%d s is %s, as Docker reports it back", (seconds, text) => {
        expect(dockerDuration(seconds)).toBe(text);
    });

    it.each([-1, 1.5, NaN])("refuses %d", (seconds) => {
        expect(() => dockerDuration(seconds)).toThrow(/whole number/);
    });
});
