import { describe, expect, it } from "vitest";

import { parseFilter, type Condition } from "./filter";
import {
  addDelta,
  currentGraph,
  diffGraph,
  edgeCanvasLabel,
  edgeClasses,
  edgeId,
  edgeLabel,
  edgeSecurity,
  filterGraph,
  healthOf,
  newLiveGraph,
  placeNear,
  splitNodeId,
  type EdgeDelta,
  type GraphData,
  type GraphEdge,
  type GraphNode,
  type HealthThresholds,
  type Point,
  type Stats,
} from "./graph";

const T: HealthThresholds = { degraded: 0.001, failing: 0.1 };

const zeroStats: Stats = {
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

function node(id: string, stats: Partial<Stats> = {}): GraphNode {
  const dot = id.lastIndexOf(".");
  return { ...zeroStats, id, name: id.slice(0, dot), namespace: id.slice(dot + 1), ...stats };
}

function edge(source: string, destination: string, stats: Partial<Stats> = {}): GraphEdge {
  return { ...zeroStats, source, destination, ...stats };
}

function delta(source: string, destination: string, counts: Partial<EdgeDelta> = {}): EdgeDelta {
  return {
    source,
    destination,
    requests: 0,
    errors: 0,
    bytes: 0,
    p50_ms: null,
    p95_ms: null,
    p99_ms: null,
    in_flight: 0,
    ...counts,
  };
}

// A snapshot over 10 s: the product page calls reviews 100 times, 10 of them failing.
const base: GraphData = {
  nodes: [
    node("product.shop"),
    node("reviews.shop", {
      requests: 100,
      rps: 10,
      error_rate: 0.1,
      p50_ms: 5,
      p95_ms: 20,
      p99_ms: 40,
      bytes: 1000,
      mtls_share: 1,
      denied_rps: 0.5,
      health: "failing",
    }),
  ],
  edges: [
    edge("product.shop", "reviews.shop", {
      requests: 100,
      rps: 10,
      error_rate: 0.1,
      p50_ms: 5,
      p95_ms: 20,
      p99_ms: 40,
      bytes: 1000,
      mtls_share: 1,
      denied_rps: 0.5,
      health: "failing",
    }),
  ],
};

describe("edgeId and splitNodeId", () => {
  it("names an edge by its ends", () => {
    expect(edgeId("a.ns", "b.ns")).toBe("a.ns->b.ns");
  });

  it("splits node ids at the last dot, as the server does", () => {
    expect(splitNodeId("reviews.shop")).toEqual({ name: "reviews", namespace: "shop" });
    expect(splitNodeId("reviews.v2.shop")).toEqual({ name: "reviews.v2", namespace: "shop" });
    expect(splitNodeId("unknown")).toEqual({ name: "unknown", namespace: "" });
  });
});

describe("healthOf", () => {
  it("is idle without requests, whatever the error rate", () => {
    expect(healthOf(0, 0, T)).toBe("idle");
    expect(healthOf(0, 1, T)).toBe("idle");
  });

  it("applies the thresholds inclusively", () => {
    expect(healthOf(10, 0, T)).toBe("healthy");
    expect(healthOf(10, 0.0009, T)).toBe("healthy");
    expect(healthOf(10, 0.001, T)).toBe("degraded");
    expect(healthOf(10, 0.0999, T)).toBe("degraded");
    expect(healthOf(10, 0.1, T)).toBe("failing");
    expect(healthOf(10, 1, T)).toBe("failing");
  });
});

describe("live merge", () => {
  it("returns the snapshot's numbers at the snapshot time with no deltas", () => {
    const graph = currentGraph(newLiveGraph(base, 10, 1_000), 1_000, T);
    expect(graph.edges).toEqual(base.edges);
    expect(graph.nodes).toEqual(base.nodes);
  });

  it("adds delta counts and stretches the window by the time since the snapshot", () => {
    let state = newLiveGraph(base, 10, 1_000);
    state = addDelta(state, [delta("product.shop", "reviews.shop", { requests: 5, errors: 0, bytes: 50 })]);
    state = addDelta(state, [delta("product.shop", "reviews.shop", { requests: 5, errors: 1, bytes: 50 })]);
    const graph = currentGraph(state, 3_000, T);
    const [merged] = graph.edges;
    // 110 requests over 10 + 2 s; (10 + 1) errors of 110.
    expect(merged).toMatchObject({ requests: 110, rps: 9.167, error_rate: 0.1, bytes: 1100, health: "failing" });
    // Percentiles, mTLS share and denied rate cannot be merged from deltas: they stay the snapshot's.
    expect(merged).toMatchObject({ p50_ms: 5, p95_ms: 20, p99_ms: 40, mtls_share: 1, denied_rps: 0.5 });
  });

  it("recomputes health as the error rate falls", () => {
    const state = addDelta(newLiveGraph(base, 10, 0), [delta("product.shop", "reviews.shop", { requests: 900 })]);
    const graph = currentGraph(state, 0, T);
    expect(graph.edges[0]).toMatchObject({ requests: 1000, error_rate: 0.01, health: "degraded" });
    expect(graph.nodes.find((n) => n.id === "reviews.shop")).toMatchObject({
      requests: 1000,
      error_rate: 0.01,
      health: "degraded",
    });
  });

  it("never measures over less than the snapshot's window, even with a clock behind", () => {
    const state = addDelta(newLiveGraph(base, 10, 5_000), [delta("product.shop", "reviews.shop", { requests: 10 })]);
    expect(currentGraph(state, 1_000, T).edges[0]?.rps).toBe(11);
  });

  it("does not mutate the state it is given", () => {
    const first = addDelta(newLiveGraph(base, 10, 0), [delta("product.shop", "reviews.shop", { requests: 1 })]);
    const second = addDelta(first, [delta("product.shop", "reviews.shop", { requests: 2 })]);
    expect(first.added.get("product.shop->reviews.shop")?.requests).toBe(1);
    expect(second.added.get("product.shop->reviews.shop")?.requests).toBe(3);
    expect(second.base).toBe(base);
    expect(base.edges[0]?.requests).toBe(100);
  });

  it("adds edges and nodes that only the deltas know", () => {
    const state = addDelta(newLiveGraph(base, 10, 0), [
      delta("reviews.shop", "ratings.shop", { requests: 20, errors: 2, bytes: 300, p99_ms: 9 }),
    ]);
    const graph = currentGraph(state, 0, T);
    expect(graph.edges).toHaveLength(2);
    expect(graph.edges[1]).toEqual({
      source: "reviews.shop",
      destination: "ratings.shop",
      requests: 20,
      rps: 2,
      error_rate: 0.1,
      p50_ms: null,
      p95_ms: null,
      p99_ms: null,
      bytes: 300,
      mtls_share: 0,
      denied_rps: 0,
      health: "failing",
    });
    const ratings = graph.nodes.find((n) => n.id === "ratings.shop");
    expect(ratings).toMatchObject({ name: "ratings", namespace: "shop", requests: 20, rps: 2, p99_ms: null });
    expect(graph.nodes.map((n) => n.id)).toEqual(["product.shop", "reviews.shop", "ratings.shop"]);
  });

  it("adds a new source node as idle: nodes count what they receive", () => {
    const state = addDelta(newLiveGraph(base, 10, 0), [delta("gateway.edge", "product.shop", { requests: 30 })]);
    const graph = currentGraph(state, 0, T);
    expect(graph.nodes.find((n) => n.id === "gateway.edge")).toMatchObject({
      name: "gateway",
      namespace: "edge",
      requests: 0,
      health: "idle",
    });
    expect(graph.nodes.find((n) => n.id === "product.shop")).toMatchObject({ requests: 30, rps: 3, health: "healthy" });
  });

  it("sums a node's incoming edges and keeps its base percentiles", () => {
    const twoCallers: GraphData = {
      nodes: [...base.nodes, node("gateway.edge")],
      edges: [
        ...base.edges,
        edge("gateway.edge", "reviews.shop", { requests: 50, rps: 5, bytes: 10, health: "healthy" }),
      ],
    };
    const state = addDelta(newLiveGraph(twoCallers, 10, 0), [
      delta("gateway.edge", "reviews.shop", { requests: 50, errors: 5, bytes: 10 }),
    ]);
    const reviews = currentGraph(state, 0, T).nodes.find((n) => n.id === "reviews.shop");
    // 100 + 100 requests; 10 + 5 errors; bytes 1000 + 20.
    expect(reviews).toMatchObject({ requests: 200, rps: 20, error_rate: 0.075, bytes: 1020, p99_ms: 40 });
    expect(reviews?.health).toBe("degraded");
  });

  it("keeps a base node without incoming edges as it was", () => {
    const graph = currentGraph(newLiveGraph(base, 10, 0), 60_000, T);
    expect(graph.nodes[0]).toEqual(base.nodes[0]);
  });

  it("ignores deltas that carry nothing", () => {
    const state = addDelta(newLiveGraph(base, 10, 0), [delta("x.ns", "y.ns")]);
    expect(state.added.size).toBe(0);
    expect(currentGraph(state, 0, T).nodes).toHaveLength(2);
  });
});

describe("diffGraph", () => {
  it("reports nothing for identical graphs", () => {
    expect(diffGraph(base, structuredClone(base))).toEqual({
      addNodes: [],
      removeNodes: [],
      updateNodes: [],
      addEdges: [],
      removeEdges: [],
      updateEdges: [],
    });
  });

  it("finds added, removed and changed elements", () => {
    const next: GraphData = {
      nodes: [node("reviews.shop", { ...base.nodes[1], p99_ms: 41 }), node("ratings.shop")],
      edges: [edge("reviews.shop", "ratings.shop")],
    };
    const diff = diffGraph(base, next);
    expect(diff.addNodes.map((n) => n.id)).toEqual(["ratings.shop"]);
    expect(diff.removeNodes).toEqual(["product.shop"]);
    expect(diff.updateNodes.map((n) => n.id)).toEqual(["reviews.shop"]);
    expect(diff.addEdges).toEqual([edge("reviews.shop", "ratings.shop")]);
    expect(diff.removeEdges).toEqual(["product.shop->reviews.shop"]);
    expect(diff.updateEdges).toEqual([]);
  });

  it("notices a change in any stats field", () => {
    const changes: Partial<Stats>[] = [
      { requests: 101 },
      { rps: 10.1 },
      { error_rate: 0.2 },
      { p50_ms: null },
      { p95_ms: 21 },
      { p99_ms: 39 },
      { bytes: 1 },
      { mtls_share: 0.5 },
      { denied_rps: 0 },
      { health: "healthy" },
    ];
    for (const change of changes) {
      const first = base.edges[0];
      if (first === undefined) throw new Error("no edge");
      const diff = diffGraph(base, { ...base, edges: [{ ...first, ...change }] });
      expect(diff.updateEdges, JSON.stringify(change)).toHaveLength(1);
    }
  });

  it("feeds the live graph's ticks through without changing unaffected nodes", () => {
    const state = newLiveGraph(base, 10, 0);
    const before = currentGraph(state, 0, T);
    const after = currentGraph(addDelta(state, [delta("product.shop", "reviews.shop", { requests: 1 })]), 0, T);
    const diff = diffGraph(before, after);
    expect(diff.updateEdges).toHaveLength(1);
    expect(diff.updateNodes.map((n) => n.id)).toEqual(["reviews.shop"]);
  });
});

describe("placeNear", () => {
  const graphOf = (...pairs: [string, string][]): GraphData => ({
    nodes: [],
    edges: pairs.map(([s, d]) => edge(s, d)),
  });
  const distance = (a: Point, b: Point) => Math.hypot(a.x - b.x, a.y - b.y);

  it("puts the first node at the origin", () => {
    expect(placeNear("a", graphOf(), new Map())).toEqual({ x: 0, y: 0 });
  });

  it("puts a node between its placed neighbours when that spot is free", () => {
    const positions = new Map<string, Point>([
      ["a", { x: 0, y: 0 }],
      ["b", { x: 200, y: 100 }],
    ]);
    expect(placeNear("n", graphOf(["a", "n"], ["n", "b"]), positions)).toEqual({ x: 100, y: 50 });
  });

  it("steps off a single neighbour to a spot at least 40 px from every node", () => {
    const positions = new Map<string, Point>([["a", { x: 10, y: 20 }]]);
    const spot = placeNear("n", graphOf(["n", "a"]), positions);
    expect(distance(spot, { x: 10, y: 20 })).toBeCloseTo(80);
    expect(spot).toEqual({ x: 90, y: 20 });
  });

  it("is deterministic and avoids crowded spots", () => {
    const positions = new Map<string, Point>([
      ["a", { x: 0, y: 0 }],
      ["b", { x: 80, y: 0 }],
      ["c", { x: 0, y: 80 }],
      ["d", { x: -80, y: 0 }],
      ["e", { x: 0, y: -80 }],
    ]);
    const graph = graphOf(["a", "n"]);
    const spot = placeNear("n", graph, positions);
    expect(placeNear("n", graph, positions)).toEqual(spot);
    for (const p of positions.values()) expect(distance(spot, p)).toBeGreaterThanOrEqual(40);
    expect(distance(spot, { x: 0, y: 0 })).toBeCloseTo(80);
  });

  it("finds room even when the nearest ring is full", () => {
    const positions = new Map<string, Point>([["hub", { x: 0, y: 0 }]]);
    for (let i = 0; i < 8; i += 1) {
      const angle = (2 * Math.PI * i) / 8;
      positions.set(`s${i}`, { x: 80 * Math.cos(angle), y: 80 * Math.sin(angle) });
    }
    const spot = placeNear("n", graphOf(["hub", "n"]), positions);
    for (const p of positions.values()) expect(distance(spot, p)).toBeGreaterThanOrEqual(40);
    expect(distance(spot, { x: 0, y: 0 })).toBeCloseTo(160);
  });

  it("counts neighbours in both directions and ignores unplaced ones", () => {
    const positions = new Map<string, Point>([
      ["caller", { x: 0, y: 0 }],
      ["callee", { x: 400, y: 0 }],
    ]);
    expect(placeNear("n", graphOf(["caller", "n"], ["n", "callee"], ["n", "ghost"]), positions)).toEqual({
      x: 200,
      y: 0,
    });
  });

  it("puts a node without placed neighbours right of everything", () => {
    const positions = new Map<string, Point>([
      ["a", { x: -50, y: 0 }],
      ["b", { x: 300, y: 200 }],
    ]);
    expect(placeNear("n", graphOf(["n", "ghost"]), positions)).toEqual({ x: 420, y: 100 });
  });

  it("ignores the node's own old position", () => {
    const positions = new Map<string, Point>([
      ["n", { x: 1000, y: 1000 }],
      ["a", { x: 0, y: 0 }],
    ]);
    expect(placeNear("n", graphOf(), positions)).toEqual({ x: 120, y: 0 });
  });
});

describe("filterGraph", () => {
  const graph: GraphData = {
    nodes: [
      node("product.shop", { requests: 10, rps: 1, health: "healthy" }),
      node("reviews.shop", { requests: 100, rps: 10, error_rate: 0.1, health: "failing" }),
      node("coredns.kube", { requests: 5, rps: 0.5, health: "healthy" }),
    ],
    edges: [],
  };
  const parsed = (text: string): Condition[] => {
    const result = parseFilter(text);
    if (!result.ok) throw new Error(result.error);
    return result.conditions;
  };

  // What the matches mean (highlight or hide) is the canvas's business: the same ids serve both modes.
  it("returns the ids of matching nodes", () => {
    expect([...filterGraph(graph, parsed("ns = shop")).matched].sort()).toEqual(["product.shop", "reviews.shop"]);
    expect([...filterGraph(graph, parsed("errors > 5%")).matched]).toEqual(["reviews.shop"]);
  });

  it("matches nothing without conditions, so an empty box hides and highlights nothing", () => {
    expect(filterGraph(graph, []).matched.size).toBe(0);
  });
});

describe("edgeLabel", () => {
  const e = edge("a.ns", "b.ns", { rps: 12.44, error_rate: 0.0123, p99_ms: 250 });

  it("formats the chosen metric", () => {
    expect(edgeLabel(e, "rps")).toBe("12.4 rps");
    expect(edgeLabel(e, "errors")).toBe("1.23%");
    expect(edgeLabel(e, "p99")).toBe("250 ms");
  });

  it("shows a dash for an unknown latency", () => {
    expect(edgeLabel({ ...e, p99_ms: null }, "p99")).toBe("—");
  });
});

describe("edge security", () => {
  it("counts an edge as mTLS from 99 % of its calls, partly below, plain at none", () => {
    expect(edgeSecurity({ mtls_share: 1 })).toBe("mtls");
    expect(edgeSecurity({ mtls_share: 0.99 })).toBe("mtls");
    expect(edgeSecurity({ mtls_share: 0.989 })).toBe("partial");
    expect(edgeSecurity({ mtls_share: 0.01 })).toBe("partial");
    expect(edgeSecurity({ mtls_share: 0 })).toBe("plain");
  });

  it("gives the canvas a class for mTLS, partial mTLS and denials", () => {
    expect(edgeClasses({ mtls_share: 1, denied_rps: 0 })).toBe("mtls");
    expect(edgeClasses({ mtls_share: 0.5, denied_rps: 0 })).toBe("mtls-partial");
    expect(edgeClasses({ mtls_share: 0, denied_rps: 0 })).toBe("");
    expect(edgeClasses({ mtls_share: 1, denied_rps: 0.2 })).toBe("mtls denied");
    expect(edgeClasses({ mtls_share: 0, denied_rps: 0.001 })).toBe("denied");
  });

  it("says in the label what the style shows", () => {
    const e = edge("a.ns", "b.ns", { rps: 12.44 });
    expect(edgeCanvasLabel(e, "rps")).toBe("12.4 rps");
    expect(edgeCanvasLabel({ ...e, mtls_share: 1 }, "rps")).toBe("mTLS · 12.4 rps");
    expect(edgeCanvasLabel({ ...e, mtls_share: 0.5 }, "rps")).toBe("12.4 rps");
    expect(edgeCanvasLabel({ ...e, mtls_share: 1, denied_rps: 0.5 }, "rps")).toBe("mTLS · 12.4 rps · ⊘ 0.50 denied/s");
  });
});
