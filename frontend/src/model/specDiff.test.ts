import { describe, expect, it } from "vitest";

import { describeValue, specLines } from "./specDiff";

describe("specLines", () => {
  const spec = {
    timeout_ms: 3000,
    split: [
      { version: "v1", weight: 90 },
      { version: "v2", weight: 10 },
    ],
    retries: { attempts: 2, retry_on: ["5xx", "reset"] },
  };

  it("draws a spec as YAML-like lines, each with the path of its value", () => {
    expect(specLines(spec, []).map((line) => [line.path, line.text])).toEqual([
      ["timeout_ms", "timeout_ms: 3000"],
      ["split", "split:"],
      ["split[0].version", "  - version: v1"],
      ["split[0].weight", "    weight: 90"],
      ["split[1].version", "  - version: v2"],
      ["split[1].weight", "    weight: 10"],
      ["retries", "retries:"],
      ["retries.attempts", "  attempts: 2"],
      ["retries.retry_on", "  retry_on:"],
      ["retries.retry_on[0]", "    - 5xx"],
      ["retries.retry_on[1]", "    - reset"],
    ]);
  });

  it("marks the lines at or under a changed path, not their parents or look-alikes", () => {
    const marked = specLines(spec, ["split[1].weight", "retries"])
      .filter((line) => line.changed)
      .map((line) => line.path);
    expect(marked).toEqual([
      "split[1].weight",
      "retries",
      "retries.attempts",
      "retries.retry_on",
      "retries.retry_on[0]",
      "retries.retry_on[1]",
    ]);
    expect(specLines({ split: 1, splitter: 2 }, ["split"]).map((line) => line.changed)).toEqual([true, false]);
  });

  it("has no lines for a missing spec and one for an empty one", () => {
    expect(specLines(null, ["x"])).toEqual([]);
    expect(specLines({}, [])).toEqual([{ path: "", text: "{}", changed: false }]);
    expect(specLines({ circuit_breaker: {} }, [])[0]?.text).toBe("circuit_breaker: {}");
  });

  it("quotes strings that would read as something else", () => {
    expect(specLines({ a: "", b: "two words", c: "x: y", d: "spiffe://td/ns/a/sa/b" }, []).map((l) => l.text)).toEqual([
      'a: ""',
      "b: two words",
      'c: "x: y"',
      "d: spiffe://td/ns/a/sa/b",
    ]);
    expect(specLines({ a: "90", b: "true" }, []).map((l) => l.text)).toEqual(['a: "90"', 'b: "true"']);
    expect(describeValue(null)).toBe("(none)");
    expect(describeValue({ a: 1 })).toBe('{"a":1}');
    expect(describeValue(90)).toBe("90");
  });
});
