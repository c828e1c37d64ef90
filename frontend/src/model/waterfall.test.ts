import { describe, expect, it } from "vitest";

import {
  buildRows,
  compareTraces,
  isErrorSpan,
  parseIsoUs,
  ticks,
  traceServices,
  type Segment,
  type Span,
  type TraceDetail,
} from "./waterfall";

const T0 = Date.UTC(2026, 11, 3, 10, 0, 0) * 1000; // µs

/** ISO timestamp `us` microseconds after T0, with all six fractional digits as the API sends them. */
function at(us: number): string {
  const total = T0 + us;
  const seconds = Math.floor(total / 1_000_000);
  const fraction = String(total - seconds * 1_000_000).padStart(6, "0");
  return `${new Date(seconds * 1000).toISOString().slice(0, 19)}.${fraction}Z`;
}

interface SpanSpec {
  id: string;
  parent?: string;
  start: number;
  duration: number;
  service?: string;
  operation?: string;
  kind?: string;
  status?: string;
  attributes?: Record<string, unknown>;
}

function span(spec: SpanSpec): Span {
  return {
    span_id: spec.id,
    parent_span_id: spec.parent ?? "",
    service: spec.service ?? "svc",
    namespace: "shop",
    operation: spec.operation ?? `op-${spec.id}`,
    kind: spec.kind ?? "server",
    start: at(spec.start),
    end: at(spec.start + spec.duration),
    duration_us: spec.duration,
    status: spec.status ?? "unset",
    status_message: "",
    attributes: spec.attributes ?? {},
    events: [],
    resource: {},
    source_workload: "",
    destination_service: "",
    destination_workload: "",
    children: [],
    depth: 0,
  };
}

/** A trace from flat specs: children lists and depths are derived from the parent links, as the API does. */
function trace(specs: SpanSpec[], criticalPath: Segment[] = [], roots?: string[]): TraceDetail {
  const spans = specs.map(span);
  const byId = new Map(spans.map((s) => [s.span_id, s]));
  for (const s of spans) byId.get(s.parent_span_id)?.children.push(s.span_id);
  const rootIds = roots ?? spans.filter((s) => !byId.has(s.parent_span_id)).map((s) => s.span_id);
  const start = Math.min(...specs.map((s) => s.start));
  const end = Math.max(...specs.map((s) => s.start + s.duration));
  return {
    trace: {
      trace_id: "t1",
      root_service: spans[0]?.service ?? "",
      root_operation: spans[0]?.operation ?? "",
      start: at(start),
      end: at(end),
      duration_us: end - start,
      span_count: spans.length,
      error: false,
      services: [],
    },
    spans,
    roots: rootIds,
    critical_path: criticalPath,
  };
}

// frontend → (reviews, then ratings), reviews → db; children listed out of start order on purpose.
const shop = trace(
  [
    { id: "root", start: 0, duration: 1000, service: "frontend", operation: "GET /" },
    { id: "ratings", parent: "root", start: 600, duration: 300, service: "ratings" },
    { id: "reviews", parent: "root", start: 100, duration: 400, service: "reviews" },
    { id: "db", parent: "reviews", start: 150, duration: 200, service: "mysql", kind: "client" },
  ],
  [
    { span_id: "root", start_us: 0, end_us: 100 },
    { span_id: "reviews", start_us: 100, end_us: 150 },
    { span_id: "db", start_us: 150, end_us: 350 },
    { span_id: "reviews", start_us: 350, end_us: 500 },
    { span_id: "root", start_us: 500, end_us: 1000 },
  ],
);

describe("parseIsoUs", () => {
  it("keeps the microseconds that Date drops", () => {
    expect(parseIsoUs("2026-12-03T10:00:00.123456Z")).toBe(T0 + 123_456);
    expect(parseIsoUs("2026-12-03T10:00:00.000001Z") - parseIsoUs("2026-12-03T10:00:00Z")).toBe(1);
  });

  it("pads short fractions and drops digits below a microsecond", () => {
    expect(parseIsoUs("2026-12-03T10:00:00.5Z")).toBe(T0 + 500_000);
    expect(parseIsoUs("2026-12-03T10:00:00.123456789Z")).toBe(T0 + 123_456);
  });

  it("honours offsets and reads a missing one as UTC", () => {
    expect(parseIsoUs("2026-12-03T11:00:00.000010+01:00")).toBe(T0 + 10);
    expect(parseIsoUs("2026-12-03T10:00:00.000010")).toBe(T0 + 10);
  });

  it("is NaN for anything else", () => {
    expect(parseIsoUs("yesterday")).toBeNaN();
    expect(parseIsoUs("2026-13-45T10:00:00Z")).toBeNaN();
  });
});

describe("isErrorSpan", () => {
  const base = { id: "s", start: 0, duration: 1 };

  it("follows the span status", () => {
    expect(isErrorSpan(span({ ...base, status: "error" }))).toBe(true);
    expect(isErrorSpan(span({ ...base, status: "ok" }))).toBe(false);
  });

  it("counts HTTP 5xx responses, as numbers or numeric strings", () => {
    expect(isErrorSpan(span({ ...base, attributes: { "http.response.status_code": 503 } }))).toBe(true);
    expect(isErrorSpan(span({ ...base, attributes: { "http.response.status_code": "500" } }))).toBe(true);
    expect(isErrorSpan(span({ ...base, attributes: { "http.response.status_code": 404 } }))).toBe(false);
    expect(isErrorSpan(span({ ...base, attributes: { "http.response.status_code": "oops" } }))).toBe(false);
    expect(isErrorSpan(span({ ...base, attributes: { "http.response.status_code": "" } }))).toBe(false);
    expect(isErrorSpan(span({ ...base, attributes: { "http.response.status_code": null } }))).toBe(false);
  });
});

describe("buildRows", () => {
  it("lists spans depth-first with children in start order", () => {
    const rows = buildRows(shop, new Set());
    expect(rows.map((r) => [r.span.span_id, r.depth])).toEqual([
      ["root", 0],
      ["reviews", 1],
      ["db", 2],
      ["ratings", 1],
    ]);
  });

  it("gives offsets from the trace start in microseconds, and durations", () => {
    const rows = buildRows(shop, new Set());
    expect(rows.map((r) => [r.offsetUs, r.durationUs])).toEqual([
      [0, 1000],
      [100, 400],
      [150, 200],
      [600, 300],
    ]);
  });

  it("skips the descendants of collapsed spans and marks them collapsed", () => {
    const rows = buildRows(shop, new Set(["reviews"]));
    expect(rows.map((r) => r.span.span_id)).toEqual(["root", "reviews", "ratings"]);
    expect(rows.find((r) => r.span.span_id === "reviews")).toMatchObject({ hasChildren: true, collapsed: true });
    expect(buildRows(shop, new Set(["root"])).map((r) => r.span.span_id)).toEqual(["root"]);
  });

  it("does not mark a leaf collapsed", () => {
    const rows = buildRows(shop, new Set(["db"]));
    expect(rows.find((r) => r.span.span_id === "db")).toMatchObject({ hasChildren: false, collapsed: false });
    expect(rows).toHaveLength(4);
  });

  it("attaches each span's critical path segments", () => {
    const rows = buildRows(shop, new Set());
    const reviews = rows.find((r) => r.span.span_id === "reviews");
    expect(reviews?.onCriticalPath).toBe(true);
    expect(reviews?.criticalSegments).toEqual([
      { startUs: 100, endUs: 150 },
      { startUs: 350, endUs: 500 },
    ]);
    const ratings = rows.find((r) => r.span.span_id === "ratings");
    expect(ratings).toMatchObject({ onCriticalPath: false, criticalSegments: [] });
  });

  it("flags errors by status or HTTP status", () => {
    const detail = trace([
      { id: "a", start: 0, duration: 10, status: "error" },
      { id: "b", parent: "a", start: 1, duration: 2, attributes: { "http.response.status_code": "502" } },
      { id: "c", parent: "a", start: 3, duration: 2, attributes: { "http.response.status_code": 200 } },
    ]);
    expect(buildRows(detail, new Set()).map((r) => r.error)).toEqual([true, true, false]);
  });

  it("orders siblings that start together by span id", () => {
    const detail = trace([
      { id: "p", start: 0, duration: 10 },
      { id: "z", parent: "p", start: 5, duration: 1 },
      { id: "m", parent: "p", start: 5, duration: 1 },
      { id: "a", parent: "p", start: 6, duration: 1 },
    ]);
    expect(buildRows(detail, new Set()).map((r) => r.span.span_id)).toEqual(["p", "m", "z", "a"]);
  });

  it("keeps the given root order, even against start order", () => {
    const detail = trace(
      [
        { id: "early", start: 0, duration: 10 },
        { id: "late", start: 50, duration: 10 },
      ],
      [],
      ["late", "early"],
    );
    expect(buildRows(detail, new Set()).map((r) => r.span.span_id)).toEqual(["late", "early"]);
  });

  it("still shows spans no root reaches, and survives cycles and unknown ids", () => {
    const detail = trace(
      [
        { id: "root", start: 0, duration: 100 },
        { id: "orphan", parent: "lost", start: 20, duration: 10 },
        { id: "orphan-child", parent: "orphan", start: 21, duration: 5 },
        { id: "x", parent: "y", start: 40, duration: 1 },
        { id: "y", parent: "x", start: 41, duration: 1 },
      ],
      [],
      ["root", "missing"],
    );
    const cycleX = detail.spans.find((s) => s.span_id === "x");
    cycleX?.children.push("nowhere");
    const rows = buildRows(detail, new Set());
    expect(rows.map((r) => [r.span.span_id, r.depth])).toEqual([
      ["root", 0],
      ["orphan", 0],
      ["orphan-child", 1],
      ["x", 0],
      ["y", 1],
    ]);
  });

  it("does not surface the spans under a collapsed span as orphans", () => {
    const detail = trace([
      { id: "root", start: 0, duration: 100 },
      { id: "kid", parent: "root", start: 1, duration: 10 },
      { id: "orphan", parent: "gone", start: 5, duration: 1 },
      { id: "orphan-kid", parent: "orphan", start: 6, duration: 1 },
    ]);
    detail.roots = ["root"];
    expect(buildRows(detail, new Set(["root", "orphan"])).map((r) => r.span.span_id)).toEqual(["root", "orphan"]);
  });

  it("handles 10 000 spans, including a chain too deep for recursion", () => {
    const specs: SpanSpec[] = [{ id: "s0", start: 0, duration: 20_000 }];
    // Half a wide fan under the root, half a 5000-deep chain.
    for (let i = 1; i < 5000; i += 1) specs.push({ id: `s${i}`, parent: "s0", start: i, duration: 1 });
    for (let i = 5000; i < 10_000; i += 1) {
      specs.push({ id: `s${i}`, parent: i === 5000 ? "s0" : `s${i - 1}`, start: i, duration: 20_000 - i });
    }
    const detail = trace(specs);
    const rows = buildRows(detail, new Set());
    expect(rows).toHaveLength(10_000);
    expect(rows[rows.length - 1]).toMatchObject({ depth: 5000, offsetUs: 9999 });
    expect(buildRows(detail, new Set(["s5000"]))).toHaveLength(5001);
  });
});

describe("traceServices", () => {
  it("lists services in the order they first started", () => {
    expect(traceServices(shop)).toEqual(["frontend", "reviews", "mysql", "ratings"]);
  });

  it("lists each service once", () => {
    const detail = trace([
      { id: "a", start: 0, duration: 10, service: "web" },
      { id: "b", parent: "a", start: 2, duration: 1, service: "api" },
      { id: "c", parent: "a", start: 1, duration: 1, service: "web" },
    ]);
    expect(traceServices(detail)).toEqual(["web", "api"]);
  });
});

describe("ticks", () => {
  it("uses 1/2/5 steps from zero up to the total", () => {
    expect(ticks(1000, 5)).toEqual([0, 200, 400, 600, 800, 1000]);
    expect(ticks(1000, 10)).toEqual([0, 100, 200, 300, 400, 500, 600, 700, 800, 900, 1000]);
    expect(ticks(2300, 4)).toEqual([0, 1000, 2000]);
    expect(ticks(7_300_000, 6)).toEqual([0, 2_000_000, 4_000_000, 6_000_000]);
  });

  it("gives about the requested count", () => {
    for (const total of [37, 999, 12_345, 8_000_001]) {
      const result = ticks(total, 8);
      expect(result.length).toBeGreaterThanOrEqual(4);
      expect(result.length).toBeLessThanOrEqual(9);
      expect(result[result.length - 1]).toBeLessThanOrEqual(total);
    }
  });

  it("never steps below one microsecond", () => {
    expect(ticks(3, 10)).toEqual([0, 1, 2, 3]);
  });

  it("is just zero for an empty or invalid range", () => {
    expect(ticks(0, 5)).toEqual([0]);
    expect(ticks(-5, 5)).toEqual([0]);
    expect(ticks(1000, 0)).toEqual([0]);
    expect(ticks(Number.NaN, 5)).toEqual([0]);
  });
});

describe("compareTraces", () => {
  it("pairs spans by service, operation, kind and occurrence", () => {
    const a = trace([
      { id: "a1", start: 0, duration: 1000, service: "web", operation: "GET /" },
      { id: "a2", parent: "a1", start: 10, duration: 100, service: "db", operation: "query" },
      { id: "a3", parent: "a1", start: 200, duration: 100, service: "db", operation: "query" },
    ]);
    const b = trace([
      { id: "b1", start: 0, duration: 1500, service: "web", operation: "GET /" },
      { id: "b2", parent: "b1", start: 10, duration: 120, service: "db", operation: "query" },
      { id: "b3", parent: "b1", start: 200, duration: 400, service: "db", operation: "query" },
    ]);
    const result = compareTraces(a, b);
    expect(result.map((r) => [r.a?.span.span_id, r.b?.span.span_id, r.deltaUs])).toEqual([
      ["a1", "b1", 500],
      ["a2", "b2", 20],
      ["a3", "b3", 300],
    ]);
    expect(new Set(result.map((r) => r.key)).size).toBe(3);
  });

  it("keeps unmatched spans of either trace, b's after its previous matched span", () => {
    const a = trace([
      { id: "a1", start: 0, duration: 100, service: "web", operation: "GET /" },
      { id: "a2", parent: "a1", start: 10, duration: 10, service: "cache", operation: "get" },
      { id: "a3", parent: "a1", start: 50, duration: 10, service: "db", operation: "query" },
    ]);
    const b = trace([
      { id: "b0", start: 0, duration: 5, service: "auth", operation: "check" },
      { id: "b1", start: 10, duration: 200, service: "web", operation: "GET /" },
      { id: "b2", parent: "b1", start: 20, duration: 10, service: "db", operation: "query" },
      { id: "b3", parent: "b1", start: 40, duration: 10, service: "db", operation: "retry" },
    ]);
    const result = compareTraces(a, b);
    expect(result.map((r) => [r.a?.span.span_id ?? null, r.b?.span.span_id ?? null, r.deltaUs])).toEqual([
      [null, "b0", null],
      ["a1", "b1", 100],
      ["a2", null, null],
      ["a3", "b2", 0],
      [null, "b3", null],
    ]);
  });

  it("tells spans apart by kind", () => {
    const a = trace([{ id: "a", start: 0, duration: 10, service: "web", operation: "GET", kind: "client" }]);
    const b = trace([{ id: "b", start: 0, duration: 10, service: "web", operation: "GET", kind: "server" }]);
    expect(compareTraces(a, b)).toHaveLength(2);
  });

  it("compares a trace with itself as all zero deltas", () => {
    expect(compareTraces(shop, shop).map((r) => r.deltaUs)).toEqual([0, 0, 0, 0]);
  });
});
