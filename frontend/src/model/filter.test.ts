import { describe, expect, it } from "vitest";

import {
  FILTER_HELP,
  describeCondition,
  matches,
  parseFilter,
  type Condition,
  type Filterable,
  type ParseResult,
} from "./filter";

function conditionsOf(text: string): Condition[] {
  const result = parseFilter(text);
  if (!result.ok) throw new Error(`expected "${text}" to parse, got: ${result.error} at ${result.position}`);
  return result.conditions;
}

function errorOf(text: string): { error: string; position: number } {
  const result: ParseResult = parseFilter(text);
  if (result.ok) throw new Error(`expected "${text}" to fail`);
  return { error: result.error, position: result.position };
}

const reviews: Filterable = {
  name: "reviews",
  namespace: "Shop",
  rps: 12.5,
  error_rate: 0.05,
  p50_ms: 20,
  p95_ms: 180,
  p99_ms: 300,
  health: "degraded",
};

describe("parseFilter", () => {
  it("accepts empty or blank text as no conditions", () => {
    expect(parseFilter("")).toEqual({ ok: true, conditions: [] });
    expect(parseFilter("   \t ")).toEqual({ ok: true, conditions: [] });
  });

  it("reads a numeric condition", () => {
    expect(conditionsOf("rps > 10")).toEqual([{ field: "rps", op: ">", value: 10 }]);
    expect(conditionsOf("rps>=0.5")).toEqual([{ field: "rps", op: ">=", value: 0.5 }]);
  });

  it("reads every numeric operator", () => {
    for (const op of [">", ">=", "<", "<=", "=", "!="]) {
      expect(conditionsOf(`rps ${op} 3`)).toEqual([{ field: "rps", op, value: 3 }]);
    }
  });

  it("stores error rates as fractions, with or without %", () => {
    expect(conditionsOf("errors > 5%")).toEqual([{ field: "errors", op: ">", value: 0.05 }]);
    expect(conditionsOf("errors > 5")).toEqual([{ field: "errors", op: ">", value: 0.05 }]);
    expect(conditionsOf("errors > 5 %")).toEqual([{ field: "errors", op: ">", value: 0.05 }]);
    expect(conditionsOf("errors >= 0.5%")[0]?.value).toBeCloseTo(0.005);
  });

  it("converts latency units to ms", () => {
    expect(conditionsOf("p99 > 250")[0]?.value).toBe(250);
    expect(conditionsOf("p99 > 250ms")[0]?.value).toBe(250);
    expect(conditionsOf("p99 > 250 ms")[0]?.value).toBe(250);
    expect(conditionsOf("p99 > 1s")[0]?.value).toBe(1000);
    expect(conditionsOf("p95 < 1.5 S")[0]?.value).toBe(1500);
    expect(conditionsOf("p50 < 500us")[0]?.value).toBeCloseTo(0.5);
    expect(conditionsOf("p50 < 500µs")[0]?.value).toBeCloseTo(0.5);
  });

  it("resolves field aliases", () => {
    expect(conditionsOf("error > 1, error_rate > 1, err > 1").map((c) => c.field)).toEqual([
      "errors",
      "errors",
      "errors",
    ]);
    expect(conditionsOf("latency > 1s")).toEqual([{ field: "p99", op: ">", value: 1000 }]);
    expect(conditionsOf("ns = shop")).toEqual([{ field: "namespace", op: "=", value: "shop" }]);
    expect(conditionsOf("RPS > 1")[0]?.field).toBe("rps");
  });

  it("reads string operators with bare and quoted values", () => {
    expect(conditionsOf("name ^= rev")).toEqual([{ field: "name", op: "^=", value: "rev" }]);
    expect(conditionsOf("name $= 'iews'")).toEqual([{ field: "name", op: "$=", value: "iews" }]);
    expect(conditionsOf('name *= "cat and dog, too"')).toEqual([
      { field: "name", op: "*=", value: "cat and dog, too" },
    ]);
    expect(conditionsOf("namespace != kube-system")).toEqual([{ field: "namespace", op: "!=", value: "kube-system" }]);
  });

  it("normalises health values and rejects unknown ones", () => {
    expect(conditionsOf("health = FAILING")).toEqual([{ field: "health", op: "=", value: "failing" }]);
    expect(conditionsOf("health != 'idle'")).toEqual([{ field: "health", op: "!=", value: "idle" }]);
    const { error, position } = errorOf("health = broken");
    expect(error).toMatch(/Unknown health "broken".*idle, healthy, degraded, failing/);
    expect(position).toBe(9);
  });

  it("joins clauses with and (any case) or commas", () => {
    expect(conditionsOf("ns = shop and rps >= 1")).toEqual([
      { field: "namespace", op: "=", value: "shop" },
      { field: "rps", op: ">=", value: 1 },
    ]);
    expect(conditionsOf("rps > 1 AND errors > 2, p99 > 3")).toHaveLength(3);
    expect(conditionsOf("rps>1,rps<5")).toHaveLength(2);
  });

  it("does not mistake a word starting with and for the keyword", () => {
    expect(conditionsOf("name = android")).toEqual([{ field: "name", op: "=", value: "android" }]);
  });

  it("names the known fields for an unknown one", () => {
    const { error, position } = errorOf("rps > 1 and colour = red");
    expect(error).toContain('Unknown field "colour"');
    expect(error).toContain("namespace");
    expect(error).toContain("p99");
    expect(position).toBe(12);
  });

  it("does not treat object prototype names as fields or units", () => {
    expect(errorOf("constructor > 1").error).toContain('Unknown field "constructor"');
    expect(errorOf("p99 > 5constructor").error).toContain('Unknown unit "constructor"');
  });

  it("reports a missing field", () => {
    expect(errorOf("> 5")).toEqual({ error: expect.stringContaining("Expected a field name"), position: 0 });
  });

  it("reports a missing operator where it should be", () => {
    const { error, position } = errorOf("rps 5");
    expect(error).toMatch(/Expected an operator after "rps"/);
    expect(position).toBe(4);
  });

  it("reports a missing value", () => {
    expect(errorOf("rps >")).toEqual({ error: expect.stringContaining("Missing value"), position: 5 });
    expect(errorOf("name = , rps > 1").position).toBe(7);
    expect(errorOf("name = and rps > 1").position).toBe(7);
  });

  it("reports a bad number at the value", () => {
    const { error, position } = errorOf("rps > lots");
    expect(error).toBe('"lots" is not a number');
    expect(position).toBe(6);
    expect(errorOf("rps > 1.2.3").error).toBe('"1.2.3" is not a number');
  });

  it("rejects operators that do not apply to the field", () => {
    const text = errorOf("rps ^= 5");
    expect(text.error).toMatch(/Operator "\^=" does not apply to rps/);
    expect(text.position).toBe(4);
    expect(errorOf("name > 5").error).toMatch(/Operator ">" does not apply to name; use one of = != \^= \$= \*=/);
    expect(errorOf("health *= fail").error).toMatch(/does not apply to health/);
  });

  it("rejects units that do not fit the field", () => {
    const rps = errorOf("rps > 5ms");
    expect(rps.error).toMatch(/rps takes a plain number/);
    expect(rps.position).toBe(7);
    expect(errorOf("p99 > 5min").error).toMatch(/Unknown unit "min" for p99/);
    expect(errorOf("errors > 5ms").error).toMatch(/Unknown unit "ms" for errors/);
  });

  it("reports an unterminated quote at the quote", () => {
    expect(errorOf('name = "rev')).toEqual({ error: "Unterminated quoted string", position: 7 });
  });

  it("reports text that is neither and nor a comma between clauses", () => {
    const { error, position } = errorOf("rps > 1 or rps < 0");
    expect(error).toBe('Expected "and" or "," before "or"');
    expect(position).toBe(8);
  });

  it("reports a dangling and or comma", () => {
    expect(errorOf("rps > 1 and").position).toBe(11);
    expect(errorOf("rps > 1 ,  ").error).toMatch(/Expected a condition/);
  });
});

describe("matches", () => {
  const check = (text: string, item: Filterable = reviews) => matches(item, conditionsOf(text));

  it("matches everything without conditions", () => {
    expect(matches(reviews, [])).toBe(true);
  });

  it("compares numbers", () => {
    expect(check("rps > 10")).toBe(true);
    expect(check("rps > 12.5")).toBe(false);
    expect(check("rps >= 12.5")).toBe(true);
    expect(check("rps < 12.5")).toBe(false);
    expect(check("rps <= 12.5")).toBe(true);
    expect(check("rps = 12.5")).toBe(true);
    expect(check("rps != 12.5")).toBe(false);
  });

  it("compares error rates as percentages, tolerating binary fractions", () => {
    expect(check("errors > 4%")).toBe(true);
    expect(check("errors > 5%")).toBe(false);
    expect(check("errors = 5")).toBe(true);
    expect(check("errors = 1.23%", { ...reviews, error_rate: 0.0123 })).toBe(true);
    expect(check("errors >= 1.23%", { ...reviews, error_rate: 0.0123 })).toBe(true);
  });

  it("compares latencies in any unit", () => {
    expect(check("p99 > 250ms")).toBe(true);
    expect(check("p99 >= 0.3s")).toBe(true);
    expect(check("p99 > 0.3s")).toBe(false);
    expect(check("p50 < 20001us")).toBe(true);
    expect(check("p95 = 180")).toBe(true);
  });

  it("never matches a latency condition when the latency is unknown", () => {
    const idle = { ...reviews, p50_ms: null, p95_ms: null, p99_ms: null };
    for (const text of ["p99 > 0", "p99 < 1000", "p99 = 0", "p99 != 5", "p50 >= 0", "p95 <= 1"]) {
      expect(check(text, idle)).toBe(false);
    }
  });

  it("compares text case-insensitively", () => {
    expect(check("name = REVIEWS")).toBe(true);
    expect(check("ns = shop")).toBe(true);
    expect(check("name != reviews")).toBe(false);
    expect(check("name ^= Rev")).toBe(true);
    expect(check("name ^= view")).toBe(false);
    expect(check("name $= IEWS")).toBe(true);
    expect(check("name *= vie")).toBe(true);
    expect(check("name *= cat")).toBe(false);
  });

  it("compares health", () => {
    expect(check("health = degraded")).toBe(true);
    expect(check("health = failing")).toBe(false);
    expect(check("health != failing")).toBe(true);
  });

  it("requires every condition to hold", () => {
    expect(check("ns = shop and rps >= 1")).toBe(true);
    expect(check("ns = shop and rps >= 100")).toBe(false);
    expect(check("ns = other, rps >= 1")).toBe(false);
  });
});

describe("FILTER_HELP", () => {
  it("has 6 to 8 examples, each of which parses", () => {
    expect(FILTER_HELP.length).toBeGreaterThanOrEqual(6);
    expect(FILTER_HELP.length).toBeLessThanOrEqual(8);
    for (const { example, meaning } of FILTER_HELP) {
      expect(parseFilter(example).ok, example).toBe(true);
      expect(meaning.length).toBeGreaterThan(0);
    }
  });
});

describe("describeCondition", () => {
  const described = (text: string) => conditionsOf(text).map(describeCondition);

  it("shows error rates as percentages", () => {
    expect(described("errors > 5")).toEqual(["error rate > 5%"]);
    expect(described("err <= 0.25%")).toEqual(["error rate <= 0.25%"]);
    expect(described("errors = 1.23%")).toEqual(["error rate = 1.23%"]);
  });

  it("shows latencies in a readable unit", () => {
    expect(described("p99 > 250ms")).toEqual(["p99 > 250 ms"]);
    expect(described("latency > 1.5s")).toEqual(["p99 > 1.5 s"]);
    expect(described("p50 < 200us")).toEqual(["p50 < 200 µs"]);
  });

  it("shows rates as plain numbers", () => {
    expect(described("rps >= 10")).toEqual(["rps >= 10"]);
  });

  it("spells out string operators", () => {
    expect(described("name ^= rev")).toEqual(['name starts with "rev"']);
    expect(described("name $= iews")).toEqual(['name ends with "iews"']);
    expect(described("ns *= op")).toEqual(['namespace contains "op"']);
    expect(described("name = cat")).toEqual(['name is "cat"']);
    expect(described("name != cat")).toEqual(['name is not "cat"']);
    expect(described("health = failing")).toEqual(["health is failing"]);
  });
});
