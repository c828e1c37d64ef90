// A service's live golden signals as fixed steps (the server's 10 s buckets): the snapshot fills the window, each
// pushed delta (about a second of traffic) adds to the step it falls in, so the chart's points keep one width.

export interface SeriesPoint {
  time: string; // ISO, the start of the step
  requests: number;
  rps: number;
  error_rate: number;
  p50_ms: number | null;
  p95_ms: number | null;
  p99_ms: number | null;
  in_flight: number;
}

export interface SideDelta {
  requests: number;
  errors: number;
  p50_ms: number | null;
  p95_ms: number | null;
  p99_ms: number | null;
  in_flight: number;
}

export interface Step {
  start: number; // unix seconds
  requests: number;
  errors: number;
  // Percentiles cannot be merged from summaries: a step shows the last ones it was given.
  p50_ms: number | null;
  p95_ms: number | null;
  p99_ms: number | null;
  // Request-seconds spent in flight, so the mean over the step's elapsed time can be taken.
  inFlightSeconds: number;
}

export interface Columns {
  t: number[];
  rps: number[];
  errorPercent: number[];
  p50: (number | null)[];
  p95: (number | null)[];
  p99: (number | null)[];
  inFlight: number[];
}

export function stepsFromSnapshot(points: SeriesPoint[], stepS: number): Step[] {
  return points.map((point) => ({
    start: Date.parse(point.time) / 1000,
    requests: point.requests,
    errors: Math.round(point.error_rate * point.requests),
    p50_ms: point.p50_ms,
    p95_ms: point.p95_ms,
    p99_ms: point.p99_ms,
    inFlightSeconds: point.in_flight * stepS,
  }));
}

/** `steps` with one delta added at `nowS`; steps older than the window are dropped. Returns a new array. */
export function addSideDelta(steps: Step[], delta: SideDelta, nowS: number, stepS: number, windowS: number): Step[] {
  const start = Math.floor(nowS / stepS) * stepS;
  const kept = steps.filter((step) => step.start > nowS - windowS - stepS);
  const index = kept.findIndex((step) => step.start === start);
  const current = index >= 0 ? kept[index] : undefined;
  const merged: Step = {
    start,
    requests: (current?.requests ?? 0) + delta.requests,
    errors: (current?.errors ?? 0) + delta.errors,
    p50_ms: delta.requests ? delta.p50_ms : (current?.p50_ms ?? null),
    p95_ms: delta.requests ? delta.p95_ms : (current?.p95_ms ?? null),
    p99_ms: delta.requests ? delta.p99_ms : (current?.p99_ms ?? null),
    // A delta's in-flight is its mean over the push interval (about a second).
    inFlightSeconds: (current?.inFlightSeconds ?? 0) + delta.in_flight,
  };
  if (index >= 0) return kept.map((step, position) => (position === index ? merged : step));
  return [...kept, merged].sort((a, b) => a.start - b.start);
}

/** Chart columns; the step still filling is divided by the time it has run, not by its full width. */
export function seriesColumns(steps: Step[], nowS: number, stepS: number): Columns {
  const columns: Columns = { t: [], rps: [], errorPercent: [], p50: [], p95: [], p99: [], inFlight: [] };
  for (const step of steps) {
    const elapsed = Math.min(stepS, Math.max(1, nowS - step.start));
    columns.t.push(step.start);
    columns.rps.push(step.requests / elapsed);
    columns.errorPercent.push(step.requests ? (100 * step.errors) / step.requests : 0);
    columns.p50.push(step.p50_ms);
    columns.p95.push(step.p95_ms);
    columns.p99.push(step.p99_ms);
    columns.inFlight.push(step.inFlightSeconds / elapsed);
  }
  return columns;
}
