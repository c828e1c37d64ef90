import { describe, expect, it } from "vitest";
import { addSideDelta, seriesColumns, stepsFromSnapshot, type SeriesPoint, type SideDelta } from "./series";

const point = (time: string, requests: number, errorRate = 0): SeriesPoint => ({
  time,
  requests,
  rps: requests / 10,
  error_rate: errorRate,
  p50_ms: 5,
  p95_ms: 20,
  p99_ms: 50,
  in_flight: 0.5,
});
const delta = (requests: number, errors = 0, p99: number | null = 80): SideDelta => ({
  requests,
  errors,
  p50_ms: p99 === null ? null : 4,
  p95_ms: p99 === null ? null : 30,
  p99_ms: p99,
  in_flight: 0.2,
});
const T0 = Date.parse("2026-12-03T10:00:00Z") / 1000;

describe("stepsFromSnapshot", () => {
  it("turns rates back into counts per step", () => {
    const [step] = stepsFromSnapshot([point("2026-12-03T10:00:00Z", 200, 0.05)], 10);
    expect(step).toMatchObject({ start: T0, requests: 200, errors: 10, p99_ms: 50, inFlightSeconds: 5 });
  });
});

describe("addSideDelta", () => {
  const snapshot = stepsFromSnapshot([point("2026-12-03T09:59:50Z", 100), point("2026-12-03T10:00:00Z", 30)], 10);

  it("adds a delta to the step it falls in, keeping one point per step", () => {
    const steps = addSideDelta(snapshot, delta(12, 3), T0 + 4.5, 10, 60);
    expect(steps).toHaveLength(2);
    expect(steps[1]).toMatchObject({ start: T0, requests: 42, errors: 3, p99_ms: 80 });
    expect(snapshot[1]?.requests).toBe(30);
  });

  it("opens the next step when the time crosses into it", () => {
    const steps = addSideDelta(snapshot, delta(7), T0 + 10.2, 10, 60);
    expect(steps.map((step) => step.start)).toEqual([T0 - 10, T0, T0 + 10]);
    expect(steps[2]?.requests).toBe(7);
  });

  it("keeps the last percentiles when a delta carries no requests", () => {
    const steps = addSideDelta(snapshot, delta(0, 0, null), T0 + 3, 10, 60);
    expect(steps[1]?.p99_ms).toBe(50);
  });

  it("drops steps that left the window", () => {
    const steps = addSideDelta(snapshot, delta(1), T0 + 75, 10, 60);
    expect(steps.map((step) => step.start)).toEqual([T0 + 70]);
  });
});

describe("seriesColumns", () => {
  it("divides full steps by their width and the filling one by the time it has run", () => {
    const steps = addSideDelta(
      stepsFromSnapshot([point("2026-12-03T09:59:50Z", 100)], 10),
      delta(8, 2),
      T0 + 4,
      10,
      60,
    );
    const columns = seriesColumns(steps, T0 + 4, 10);
    expect(columns.t).toEqual([T0 - 10, T0]);
    expect(columns.rps).toEqual([10, 2]);
    expect(columns.errorPercent).toEqual([0, 25]);
    expect(columns.inFlight[1]).toBeCloseTo(0.05);
  });

  it("counts a step that just opened as a second long rather than dividing by zero", () => {
    const steps = addSideDelta([], delta(3), T0, 10, 60);
    expect(seriesColumns(steps, T0, 10).rps).toEqual([3]);
  });
});
