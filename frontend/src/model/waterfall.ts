// Trace waterfall rows: spans in tree order with their offsets, collapse state, errors and critical
// path, plus the axis ticks and a span-by-span alignment of two traces. Traces reach 10 000 spans, so
// everything here is one pass (plus sorting siblings), and iterative rather than recursive.

export interface Span {
  span_id: string;
  parent_span_id: string;
  service: string;
  namespace: string;
  operation: string;
  kind: string;
  start: string;
  end: string;
  duration_us: number;
  /** "unset" | "ok" | "error" */
  status: string;
  status_message: string;
  attributes: Record<string, unknown>;
  events: unknown[];
  resource: Record<string, unknown>;
  source_workload: string;
  destination_service: string;
  destination_workload: string;
  children: string[];
  depth: number;
}

/** A slice of the critical path, in µs since the trace start. */
export interface Segment {
  span_id: string;
  start_us: number;
  end_us: number;
}

export interface TraceDetail {
  trace: {
    trace_id: string;
    root_service: string;
    root_operation: string;
    start: string;
    end: string;
    duration_us: number;
    span_count: number;
    error: boolean;
    services: string[];
  };
  spans: Span[];
  roots: string[];
  critical_path: Segment[];
}

export interface Row {
  span: Span;
  depth: number;
  offsetUs: number;
  durationUs: number;
  hasChildren: boolean;
  collapsed: boolean;
  onCriticalPath: boolean;
  criticalSegments: { startUs: number; endUs: number }[];
  error: boolean;
}

const ISO_PARTS = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:[.,](\d+))?(Z|[+-]\d{2}:?\d{2})?$/i;

/**
 * Microseconds since the epoch of an ISO timestamp, or NaN. Date keeps only milliseconds, and spans a
 * few µs long need the rest, so the fractional seconds are read here. No offset is taken as UTC: the
 * API always sends one, and the browser's zone must not shift a trace.
 */
export function parseIsoUs(iso: string): number {
  const parts = ISO_PARTS.exec(iso.trim());
  if (parts === null) return Number.NaN;
  const [, seconds = "", fraction = "", zone = "Z"] = parts;
  const ms = Date.parse(`${seconds}${zone.toUpperCase()}`);
  if (Number.isNaN(ms)) return Number.NaN;
  // Digits past the sixth (nanoseconds) are dropped: the waterfall draws nothing finer than a µs.
  const micros = fraction === "" ? 0 : Number(fraction.slice(0, 6).padEnd(6, "0"));
  return ms * 1000 + micros;
}

/** An HTTP status from an attribute that exporters send as a number or as a string; NaN otherwise. */
function statusCode(value: unknown): number {
  if (typeof value === "number") return value;
  if (typeof value === "string" && value.trim() !== "") return Number(value);
  return Number.NaN;
}

/** Server errors count even when the span's status was left unset, as proxies often do. */
export function isErrorSpan(span: Span): boolean {
  if (span.status === "error") return true;
  return statusCode(span.attributes["http.response.status_code"]) >= 500;
}

function finiteOr(n: number, fallback: number): number {
  return Number.isFinite(n) ? n : fallback;
}

interface Tree {
  byId: Map<string, Span>;
  startUs: Map<string, number>;
  children: Map<string, Span[]>;
  /** The roots the API named, in its order. */
  roots: Span[];
}

function compareIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function bySpanStart(startUs: Map<string, number>) {
  return (a: Span, b: Span): number => {
    const delta = (startUs.get(a.span_id) ?? 0) - (startUs.get(b.span_id) ?? 0);
    return delta !== 0 ? delta : compareIds(a.span_id, b.span_id);
  };
}

function buildTree(detail: TraceDetail): Tree {
  const byId = new Map<string, Span>();
  const startUs = new Map<string, number>();
  for (const span of detail.spans) {
    byId.set(span.span_id, span);
    startUs.set(span.span_id, finiteOr(parseIsoUs(span.start), 0));
  }
  const order = bySpanStart(startUs);
  const children = new Map<string, Span[]>();
  for (const span of detail.spans) {
    const kids: Span[] = [];
    for (const id of span.children) {
      const child = byId.get(id);
      if (child !== undefined && child !== span) kids.push(child);
    }
    kids.sort(order);
    children.set(span.span_id, kids);
  }
  const roots: Span[] = [];
  for (const id of detail.roots) {
    const span = byId.get(id);
    if (span !== undefined) roots.push(span);
  }
  return { byId, startUs, children, roots };
}

interface Visit {
  span: Span;
  depth: number;
  hasChildren: boolean;
  collapsed: boolean;
}

/** Marks every span reachable from `from` (collapse ignored) in `reached`. */
function reach(tree: Tree, from: Span[], reached: Set<string>): void {
  const stack = [...from];
  while (stack.length > 0) {
    const span = stack.pop();
    if (span === undefined || reached.has(span.span_id)) continue;
    reached.add(span.span_id);
    for (const kid of tree.children.get(span.span_id) ?? []) stack.push(kid);
  }
}

/**
 * The given roots, then the tops of subtrees no root reaches (a broken parent link), then one span of
 * each remaining cycle: malformed traces still show every span exactly once.
 */
function allRoots(tree: Tree): Span[] {
  const reached = new Set<string>();
  reach(tree, tree.roots, reached);
  if (reached.size === tree.byId.size) return tree.roots;
  const order = bySpanStart(tree.startUs);
  const lost = [...tree.byId.values()].filter((s) => !reached.has(s.span_id)).sort(order);
  const lostIds = new Set(lost.map((s) => s.span_id));
  const tops = lost.filter((s) => !lostIds.has(s.parent_span_id) || s.parent_span_id === s.span_id);
  reach(tree, tops, reached);
  const roots = [...tree.roots, ...tops];
  for (const span of lost) {
    if (reached.has(span.span_id)) continue;
    roots.push(span);
    reach(tree, [span], reached);
  }
  return roots;
}

/** Depth-first from the roots in order, children by start time; a collapsed span's subtree is skipped. */
function walk(tree: Tree, collapsed: ReadonlySet<string>, visit: (v: Visit) => void): void {
  const visited = new Set<string>();
  // Reversed onto a stack so the first root (and first child) is popped first; iterative, because a
  // chain of 10 000 nested spans would overflow the call stack.
  const stack = allRoots(tree)
    .map((span) => ({ span, depth: 0 }))
    .reverse();
  while (stack.length > 0) {
    const top = stack.pop();
    if (top === undefined || visited.has(top.span.span_id)) continue;
    visited.add(top.span.span_id);
    const kids = tree.children.get(top.span.span_id) ?? [];
    const hasChildren = kids.length > 0;
    const isCollapsed = hasChildren && collapsed.has(top.span.span_id);
    visit({ span: top.span, depth: top.depth, hasChildren, collapsed: isCollapsed });
    if (isCollapsed) continue;
    for (let i = kids.length - 1; i >= 0; i -= 1) {
      const kid = kids[i];
      if (kid !== undefined) stack.push({ span: kid, depth: top.depth + 1 });
    }
  }
}

function criticalSegmentsBySpan(detail: TraceDetail): Map<string, { startUs: number; endUs: number }[]> {
  const bySpan = new Map<string, { startUs: number; endUs: number }[]>();
  for (const segment of detail.critical_path) {
    const list = bySpan.get(segment.span_id) ?? [];
    list.push({ startUs: segment.start_us, endUs: segment.end_us });
    bySpan.set(segment.span_id, list);
  }
  return bySpan;
}

export function buildRows(detail: TraceDetail, collapsed: ReadonlySet<string>): Row[] {
  const tree = buildTree(detail);
  const traceStart = finiteOr(parseIsoUs(detail.trace.start), 0);
  const critical = criticalSegmentsBySpan(detail);
  const rows: Row[] = [];
  walk(tree, collapsed, ({ span, depth, hasChildren, collapsed: isCollapsed }) => {
    const segments = critical.get(span.span_id) ?? [];
    rows.push({
      span,
      depth,
      offsetUs: (tree.startUs.get(span.span_id) ?? traceStart) - traceStart,
      durationUs: span.duration_us,
      hasChildren,
      collapsed: isCollapsed,
      onCriticalPath: segments.length > 0,
      criticalSegments: segments,
      error: isErrorSpan(span),
    });
  });
  return rows;
}

/** Services in the order they first did something, for a legend that reads like the request's journey. */
export function traceServices(detail: TraceDetail): string[] {
  const timed = detail.spans.map((span) => ({ span, start: finiteOr(parseIsoUs(span.start), 0) }));
  timed.sort((a, b) => a.start - b.start || compareIds(a.span.span_id, b.span.span_id));
  const services: string[] = [];
  const seen = new Set<string>();
  for (const { span } of timed) {
    if (seen.has(span.service)) continue;
    seen.add(span.service);
    services.push(span.service);
  }
  return services;
}

/**
 * Axis ticks at multiples of a 1/2/5 × 10ⁿ µs step, from 0 up to totalUs (never past it, so every tick
 * lies on the axis), with at most about `count` intervals. Steps below 1 µs are pointless and not used.
 */
export function ticks(totalUs: number, count: number): number[] {
  if (!Number.isFinite(totalUs) || totalUs <= 0 || !Number.isFinite(count) || count < 1) return [0];
  const raw = totalUs / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const normalised = raw / magnitude;
  const nice = normalised <= 1 ? 1 : normalised <= 2 ? 2 : normalised <= 5 ? 5 : 10;
  const step = Math.max(1, nice * magnitude);
  const result: number[] = [];
  // Multiplying, not accumulating, keeps ticks exact (no 0.30000000000000004 drift).
  for (let i = 0; i * step <= totalUs; i += 1) result.push(i * step);
  return result;
}

/** A span's identity across two traces of the same request: what it did, and which time it did it. */
function alignmentKeys(rows: Row[]): string[] {
  const occurrences = new Map<string, number>();
  return rows.map(({ span }) => {
    const base = JSON.stringify([span.service, span.operation, span.kind]);
    const n = occurrences.get(base) ?? 0;
    occurrences.set(base, n + 1);
    return JSON.stringify([span.service, span.operation, span.kind, n]);
  });
}

export interface ComparedRow {
  key: string;
  a: Row | null;
  b: Row | null;
  deltaUs: number | null;
}

/**
 * The spans of two traces side by side, matched by (service, operation, kind, occurrence). Rows follow
 * trace a's order; a span only b has comes right after the row of b's previous matched span.
 */
export function compareTraces(a: TraceDetail, b: TraceDetail): ComparedRow[] {
  const rowsA = buildRows(a, new Set());
  const rowsB = buildRows(b, new Set());
  const keysA = alignmentKeys(rowsA);
  const keysB = alignmentKeys(rowsB);

  const result: ComparedRow[] = rowsA.map((row, i) => ({ key: keysA[i] ?? "", a: row, b: null, deltaUs: null }));
  const indexByKey = new Map(result.map((entry, i) => [entry.key, i]));
  // b-only rows are collected per anchor (index into result, -1 = before everything) and spliced in once.
  const extras = new Map<number, ComparedRow[]>();
  let anchor = -1;
  rowsB.forEach((row, i) => {
    const key = keysB[i] ?? "";
    const index = indexByKey.get(key);
    const entry = index === undefined ? undefined : result[index];
    if (index !== undefined && entry?.a) {
      entry.b = row;
      entry.deltaUs = row.durationUs - entry.a.durationUs;
      anchor = index;
      return;
    }
    const list = extras.get(anchor) ?? [];
    list.push({ key, a: null, b: row, deltaUs: null });
    extras.set(anchor, list);
  });

  const merged: ComparedRow[] = [...(extras.get(-1) ?? [])];
  result.forEach((entry, i) => {
    merged.push(entry);
    // A loop, not push(...list): thousands of b-only rows would exceed the argument limit of a spread.
    for (const extra of extras.get(i) ?? []) merged.push(extra);
  });
  return merged;
}
