// The service graph: the API's snapshot, merged with the live WebSocket deltas, diffed for Cytoscape so
// the layout is not recomputed, and new nodes placed next to what they talk to.

import { matches, type Condition } from "./filter";
import { formatMs, formatPercent, formatRate } from "./format";

export type Health = "idle" | "healthy" | "degraded" | "failing";

export interface Stats {
  requests: number;
  rps: number;
  error_rate: number;
  p50_ms: number | null;
  p95_ms: number | null;
  p99_ms: number | null;
  bytes: number;
  mtls_share: number;
  denied_rps: number;
  health: Health;
}

export interface GraphNode extends Stats {
  id: string;
  name: string;
  namespace: string;
}

export interface GraphEdge extends Stats {
  source: string;
  destination: string;
}

export interface GraphData {
  nodes: GraphNode[];
  edges: GraphEdge[];
}

/** Error rates at which an element turns degraded and failing (e.g. 0.001 and 0.10). */
export interface HealthThresholds {
  degraded: number;
  failing: number;
}

/** A WebSocket delta's edge: counts for the last ~second. */
export interface EdgeDelta {
  source: string;
  destination: string;
  requests: number;
  errors: number;
  bytes: number;
  p50_ms: number | null;
  p95_ms: number | null;
  p99_ms: number | null;
  in_flight: number;
}

export function edgeId(source: string, destination: string): string {
  return `${source}->${destination}`;
}

/** The server's rule (telemetry/graph.py `health`), so live values colour the same as a reload would. */
export function healthOf(requests: number, errorRate: number, t: HealthThresholds): Health {
  if (requests <= 0) return "idle";
  if (errorRate >= t.failing) return "failing";
  if (errorRate >= t.degraded) return "degraded";
  return "healthy";
}

/** "reviews.shop" → name "reviews", namespace "shop"; as the server names nodes (split at the last dot). */
export function splitNodeId(id: string): { name: string; namespace: string } {
  const dot = id.lastIndexOf(".");
  if (dot === -1) return { name: id, namespace: "" };
  return { name: id.slice(0, dot), namespace: id.slice(dot + 1) };
}

// ---------------------------------------------------------------------------------------------------
// Live merge

interface AddedCounts {
  source: string;
  destination: string;
  requests: number;
  errors: number;
  bytes: number;
}

export interface LiveGraphState {
  base: GraphData;
  windowS: number;
  snapshotAtMs: number;
  added: Map<string, AddedCounts>;
}

export function newLiveGraph(base: GraphData, windowS: number, snapshotAtMs: number): LiveGraphState {
  return { base, windowS, snapshotAtMs, added: new Map() };
}

/**
 * Adds a delta's counts. Percentiles and in-flight are dropped: percentiles of two windows cannot be
 * combined without their histograms, and in-flight is a gauge, not a count.
 */
export function addDelta(state: LiveGraphState, edges: EdgeDelta[]): LiveGraphState {
  const added = new Map(state.added);
  for (const delta of edges) {
    // An all-zero delta carries nothing, and must not conjure an idle edge that the snapshot lacks.
    if (delta.requests === 0 && delta.errors === 0 && delta.bytes === 0) continue;
    const id = edgeId(delta.source, delta.destination);
    const before = added.get(id);
    added.set(id, {
      source: delta.source,
      destination: delta.destination,
      requests: (before?.requests ?? 0) + delta.requests,
      errors: (before?.errors ?? 0) + delta.errors,
      bytes: (before?.bytes ?? 0) + delta.bytes,
    });
  }
  return { ...state, added };
}

const round = (n: number, decimals: number): number => {
  const factor = 10 ** decimals;
  return Math.round(n * factor) / factor;
};

/** Rates and error rate of counts over `windowS`, rounded as the server rounds them. */
function rates(requests: number, errors: number, windowS: number, t: HealthThresholds) {
  const errorRate = requests > 0 ? errors / requests : 0;
  return {
    rps: windowS > 0 ? round(requests / windowS, 3) : 0,
    error_rate: round(errorRate, 4),
    health: healthOf(requests, errorRate, t),
  };
}

/** Error count behind a snapshot's rounded error rate; exact enough to add live errors to. */
function errorsOf(stats: Pick<Stats, "requests" | "error_rate">): number {
  return Math.round(stats.error_rate * stats.requests);
}

/**
 * The snapshot plus every delta since, as of `nowMs`. The counts then cover the snapshot's window plus
 * the time since it was taken, so rates are over that longer window. Percentiles, mTLS share and denied
 * rate stay the snapshot's: deltas carry no histograms or denials to merge them with.
 */
export function currentGraph(state: LiveGraphState, nowMs: number, t: HealthThresholds): GraphData {
  const windowS = state.windowS + Math.max(0, nowMs - state.snapshotAtMs) / 1000;
  const edges: GraphEdge[] = [];
  const errorsByEdge: number[] = [];

  for (const base of state.base.edges) {
    const extra = state.added.get(edgeId(base.source, base.destination));
    const requests = base.requests + (extra?.requests ?? 0);
    const errors = errorsOf(base) + (extra?.errors ?? 0);
    edges.push({ ...base, requests, bytes: base.bytes + (extra?.bytes ?? 0), ...rates(requests, errors, windowS, t) });
    errorsByEdge.push(errors);
  }
  const baseEdgeIds = new Set(state.base.edges.map((e) => edgeId(e.source, e.destination)));
  for (const [id, extra] of state.added) {
    if (baseEdgeIds.has(id)) continue;
    edges.push({
      source: extra.source,
      destination: extra.destination,
      requests: extra.requests,
      bytes: extra.bytes,
      p50_ms: null,
      p95_ms: null,
      p99_ms: null,
      mtls_share: 0,
      denied_rps: 0,
      ...rates(extra.requests, extra.errors, windowS, t),
    });
    errorsByEdge.push(extra.errors);
  }

  // A node's traffic is what it received, as on the server: the sum of its incoming edges.
  const inbound = new Map<string, { requests: number; errors: number; bytes: number }>();
  edges.forEach((edge, index) => {
    const sum = inbound.get(edge.destination) ?? { requests: 0, errors: 0, bytes: 0 };
    sum.requests += edge.requests;
    sum.errors += errorsByEdge[index] ?? 0;
    sum.bytes += edge.bytes;
    inbound.set(edge.destination, sum);
  });

  const nodes: GraphNode[] = [];
  const seen = new Set<string>();
  const pushNode = (node: GraphNode): void => {
    const sum = inbound.get(node.id);
    nodes.push(
      sum === undefined
        ? node
        : { ...node, requests: sum.requests, bytes: sum.bytes, ...rates(sum.requests, sum.errors, windowS, t) },
    );
    seen.add(node.id);
  };
  for (const node of state.base.nodes) pushNode(node);
  for (const edge of edges) {
    for (const id of [edge.source, edge.destination]) {
      if (!seen.has(id)) pushNode(idleNode(id));
    }
  }
  return { nodes, edges };
}

/** A node the snapshot did not have: no traffic yet, no percentiles. */
export function idleNode(id: string): GraphNode {
  return {
    id,
    ...splitNodeId(id),
    requests: 0,
    rps: 0,
    error_rate: 0,
    p50_ms: null,
    p95_ms: null,
    p99_ms: null,
    bytes: 0,
    mtls_share: 0,
    denied_rps: 0,
    health: "idle",
  };
}

// ---------------------------------------------------------------------------------------------------
// Diffing

export interface GraphDiff {
  addNodes: GraphNode[];
  removeNodes: string[];
  updateNodes: GraphNode[];
  addEdges: GraphEdge[];
  removeEdges: string[];
  updateEdges: GraphEdge[];
}

// A Record over keyof Stats: adding a field to Stats fails to compile until it is compared here too.
const STATS_FIELDS: Record<keyof Stats, true> = {
  requests: true,
  rps: true,
  error_rate: true,
  p50_ms: true,
  p95_ms: true,
  p99_ms: true,
  bytes: true,
  mtls_share: true,
  denied_rps: true,
  health: true,
};
const STATS_KEYS = Object.keys(STATS_FIELDS) as (keyof Stats)[];

export function statsDiffer(a: Stats, b: Stats): boolean {
  return STATS_KEYS.some((key) => a[key] !== b[key]);
}

function diffById<T extends Stats>(prev: T[], next: T[], idOf: (item: T) => string) {
  const before = new Map(prev.map((item) => [idOf(item), item]));
  const after = new Set<string>();
  const add: T[] = [];
  const update: T[] = [];
  for (const item of next) {
    const id = idOf(item);
    after.add(id);
    const old = before.get(id);
    if (old === undefined) add.push(item);
    else if (statsDiffer(old, item)) update.push(item);
  }
  const remove = [...before.keys()].filter((id) => !after.has(id));
  return { add, remove, update };
}

/** What changed between two graphs, so Cytoscape can patch elements in place instead of re-laying out. */
export function diffGraph(prev: GraphData, next: GraphData): GraphDiff {
  const nodes = diffById(prev.nodes, next.nodes, (n) => n.id);
  const edges = diffById(prev.edges, next.edges, (e) => edgeId(e.source, e.destination));
  return {
    addNodes: nodes.add,
    removeNodes: nodes.remove,
    updateNodes: nodes.update,
    addEdges: edges.add,
    removeEdges: edges.remove,
    updateEdges: edges.update,
  };
}

// ---------------------------------------------------------------------------------------------------
// Placement

export interface Point {
  x: number;
  y: number;
}

/** Distance from a neighbour at which a new node is tried first. */
export const PLACE_RADIUS = 80;
/** Closest a new node may sit to a placed one. */
export const PLACE_CLEARANCE = 40;
/** Gap between the placed nodes' bounding box and a new node with no placed neighbour. */
export const PLACE_GAP = 120;

function isClear(p: Point, placed: Point[]): boolean {
  return placed.every((q) => Math.hypot(p.x - q.x, p.y - q.y) >= PLACE_CLEARANCE);
}

/**
 * Where a node that just appeared goes, without re-running the layout: beside what it talks to, or to
 * the right of everything when it talks to nothing placed yet. Deterministic, so a reload lands the same.
 */
export function placeNear(nodeId: string, graph: GraphData, positions: Map<string, Point>): Point {
  const placed: Point[] = [];
  for (const [id, p] of positions) if (id !== nodeId) placed.push(p);
  if (placed.length === 0) return { x: 0, y: 0 };

  const neighbours: Point[] = [];
  const counted = new Set<string>();
  for (const edge of graph.edges) {
    const other = edge.source === nodeId ? edge.destination : edge.destination === nodeId ? edge.source : null;
    if (other === null || other === nodeId || counted.has(other)) continue;
    counted.add(other);
    const p = positions.get(other);
    if (p !== undefined) neighbours.push(p);
  }

  if (neighbours.length === 0) {
    const xs = placed.map((p) => p.x);
    const ys = placed.map((p) => p.y);
    return { x: Math.max(...xs) + PLACE_GAP, y: (Math.min(...ys) + Math.max(...ys)) / 2 };
  }

  const centre = {
    x: neighbours.reduce((s, p) => s + p.x, 0) / neighbours.length,
    y: neighbours.reduce((s, p) => s + p.y, 0) / neighbours.length,
  };
  if (isClear(centre, placed)) return centre;
  // Rings of growing radius with ~63 px between candidates: a placed node blocks at most two of a
  // ring's 8·k spots, so ring k > placed/4 always has a free one and the loop ends.
  for (let ring = 1; ; ring += 1) {
    const spots = 8 * ring;
    for (let i = 0; i < spots; i += 1) {
      const angle = (2 * Math.PI * i) / spots;
      const spot = {
        x: centre.x + PLACE_RADIUS * ring * Math.cos(angle),
        y: centre.y + PLACE_RADIUS * ring * Math.sin(angle),
      };
      if (isClear(spot, placed)) return spot;
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// Filtering and labels

/**
 * Ids of the nodes the conditions pick out: the UI highlights them in "find" mode and hides them in
 * "hide" mode. No conditions pick out nothing, so an empty box neither highlights nor hides everything.
 */
export function filterGraph(graph: GraphData, conditions: Condition[]): { matched: Set<string> } {
  const matched = new Set<string>();
  if (conditions.length === 0) return { matched };
  for (const node of graph.nodes) if (matches(node, conditions)) matched.add(node.id);
  return { matched };
}

export function edgeLabel(edge: GraphEdge, metric: "rps" | "errors" | "p99"): string {
  switch (metric) {
    case "rps":
      return `${formatRate(edge.rps)} rps`;
    case "errors":
      return formatPercent(edge.error_rate);
    case "p99":
      return formatMs(edge.p99_ms);
  }
}

/** At or above this share of requests over mutual TLS an edge counts as fully mTLS (a stray plain call aside). */
export const MTLS_FULL_SHARE = 0.99;

export type EdgeSecurity = "mtls" | "partial" | "plain";

/** Whether an edge's calls travel over mutual TLS: all of them, some, or none. */
export function edgeSecurity(edge: Pick<Stats, "mtls_share">): EdgeSecurity {
  if (edge.mtls_share >= MTLS_FULL_SHARE) return "mtls";
  return edge.mtls_share > 0 ? "partial" : "plain";
}

/** The style classes of an edge on the canvas: its mTLS status, and `denied` while a policy refuses calls on it. */
export function edgeClasses(edge: Pick<Stats, "mtls_share" | "denied_rps">): string {
  const security = edgeSecurity(edge);
  return [
    security === "mtls" ? "mtls" : security === "partial" ? "mtls-partial" : "",
    edge.denied_rps > 0 ? "denied" : "",
  ]
    .filter(Boolean)
    .join(" ");
}

/**
 * An edge's label on the canvas: the metric, with words for what its style shows, so nobody depends on telling
 * colours or line patterns apart: "mTLS · 12 rps", "12 rps · ⊘ 0.5 denied/s".
 */
export function edgeCanvasLabel(edge: GraphEdge, metric: "rps" | "errors" | "p99"): string {
  const parts = [edgeLabel(edge, metric)];
  if (edgeSecurity(edge) === "mtls") parts.unshift("mTLS");
  if (edge.denied_rps > 0) parts.push(`⊘ ${formatRate(edge.denied_rps)} denied/s`);
  return parts.join(" · ");
}
