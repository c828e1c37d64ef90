import cytoscape, { type Core, type ElementDefinition } from "cytoscape";
import { useEffect, useRef } from "react";
import { diffGraph, edgeId, edgeLabel, placeNear, type GraphData, type GraphEdge, type GraphNode, type Point } from "../model/graph";

export type EdgeMetric = "rps" | "errors" | "p99";
export type Selection = { kind: "node"; id: string } | { kind: "edge"; id: string; source: string; destination: string } | null;

interface Props {
  graph: GraphData;
  metric: EdgeMetric;
  /** Node ids the filter matched, and what to do with them. */
  matched: Set<string> | null;
  filterMode: "find" | "hide";
  /** Where dragged positions are remembered (per namespace and grouping). */
  storageKey: string;
  onSelect: (selection: Selection) => void;
  onReady?: (ms: number) => void;
}

// Okabe–Ito colours: told apart with the common colour-vision deficiencies; shapes and line styles carry the
// same meaning for anyone who cannot tell them apart at all.
const HEALTH_COLOUR: Record<string, string> = {
  idle: "#8c8c8c",
  healthy: "#009e73",
  degraded: "#e69f00",
  failing: "#d55e00",
};

const STYLE: cytoscape.StylesheetJson = [
  {
    selector: "node",
    style: {
      "background-color": "#ffffff",
      "border-width": 3,
      "border-color": (node: cytoscape.NodeSingular) => HEALTH_COLOUR[node.data("health") as string] ?? "#8c8c8c",
      label: "data(name)",
      "font-size": 12,
      "font-family": "Inter, system-ui, sans-serif",
      color: "#1f2933",
      "text-valign": "bottom",
      "text-margin-y": 6,
      width: 34,
      height: 34,
    },
  },
  { selector: "node[health = 'failing']", style: { shape: "octagon", "border-width": 5 } },
  { selector: "node[health = 'degraded']", style: { shape: "round-triangle" } },
  { selector: "node[health = 'idle']", style: { "border-style": "dashed" } },
  {
    selector: "edge",
    style: {
      width: 2,
      "line-color": (edge: cytoscape.EdgeSingular) => HEALTH_COLOUR[edge.data("health") as string] ?? "#8c8c8c",
      "target-arrow-color": (edge: cytoscape.EdgeSingular) => HEALTH_COLOUR[edge.data("health") as string] ?? "#8c8c8c",
      "target-arrow-shape": "triangle",
      "curve-style": "bezier",
      label: "data(label)",
      "font-size": 10,
      color: "#334155",
      "text-background-color": "#ffffff",
      "text-background-opacity": 0.85,
      "text-background-padding": "2px",
      "text-rotation": "autorotate",
    },
  },
  { selector: "edge.mtls", style: { width: 3, "line-style": "solid", "source-arrow-shape": "square", "source-arrow-color": "#0072b2" } },
  { selector: "edge.denied", style: { "line-style": "dotted", width: 3, "line-color": "#d55e00", "target-arrow-shape": "tee" } },
  { selector: ".dimmed", style: { opacity: 0.2 } },
  { selector: "node.found", style: { "border-color": "#0072b2", "border-width": 6 } },
  { selector: ".hidden", style: { display: "none" } },
  { selector: ":selected", style: { "overlay-color": "#0072b2", "overlay-opacity": 0.15, "overlay-padding": 6 } },
];

function nodeElement(node: GraphNode, position?: Point): ElementDefinition {
  return { group: "nodes", data: { ...node }, ...(position ? { position: { ...position } } : {}) };
}

function edgeClasses(edge: GraphEdge): string {
  return [edge.mtls_share >= 0.99 ? "mtls" : "", edge.denied_rps > 0 ? "denied" : ""].filter(Boolean).join(" ");
}

function edgeElement(edge: GraphEdge, metric: EdgeMetric): ElementDefinition {
  return {
    group: "edges",
    data: { ...edge, id: edgeId(edge.source, edge.destination), target: edge.destination, label: edgeLabel(edge, metric) },
    classes: edgeClasses(edge),
  };
}

function loadPositions(key: string): Map<string, Point> {
  try {
    const stored = JSON.parse(window.localStorage.getItem(key) ?? "{}") as Record<string, Point>;
    return new Map(Object.entries(stored));
  } catch {
    return new Map();
  }
}

function layoutFor(count: number): cytoscape.LayoutOptions {
  // A call graph reads left to right; breadth-first layers give that cheaply. Past a few hundred nodes the
  // layered layout's crossings make it no clearer than a grid, which costs nothing.
  if (count > 300) return { name: "grid", animate: false, avoidOverlap: true };
  return {
    name: "breadthfirst",
    directed: true,
    spacingFactor: 1.3,
    animate: false,
    transform: (_node, position) => ({ x: position.y * 1.6, y: position.x }),
  } as cytoscape.LayoutOptions;
}

export function GraphCanvas({ graph, metric, matched, filterMode, storageKey, onSelect, onReady }: Props) {
  const container = useRef<HTMLDivElement>(null);
  const cy = useRef<Core | null>(null);
  const shown = useRef<GraphData>({ nodes: [], edges: [] });
  const selectRef = useRef(onSelect);
  useEffect(() => {
    selectRef.current = onSelect;
  });

  // One Cytoscape instance per grouping; later data is applied as a diff so positions stay.
  useEffect(() => {
    if (!container.current) return;
    const started = performance.now();
    const saved = loadPositions(storageKey);
    const instance = cytoscape({
      container: container.current,
      style: STYLE,
      elements: [],
      minZoom: 0.05,
      maxZoom: 3,
      textureOnViewport: true,
      hideEdgesOnViewport: true,
    });
    cy.current = instance;
    shown.current = { nodes: [], edges: [] };
    instance.on("tap", "node", (event) => selectRef.current({ kind: "node", id: event.target.id() as string }));
    instance.on("tap", "edge", (event) =>
      selectRef.current({
        kind: "edge",
        id: event.target.id() as string,
        source: event.target.data("source") as string,
        destination: event.target.data("destination") as string,
      }),
    );
    instance.on("tap", (event) => {
      if (event.target === instance) selectRef.current(null);
    });
    instance.on("dragfree", "node", () => {
      const positions: Record<string, Point> = {};
      instance.nodes().forEach((node) => {
        positions[node.id()] = { ...node.position() };
      });
      window.localStorage.setItem(storageKey, JSON.stringify(positions));
    });
    (instance as unknown as { savedPositions: Map<string, Point> }).savedPositions = saved;
    (instance as unknown as { startedAt: number }).startedAt = started;
    return () => {
      instance.destroy();
      cy.current = null;
    };
  }, [storageKey]);

  useEffect(() => {
    const instance = cy.current;
    if (!instance) return;
    const first = instance.elements().length === 0;
    const previous = shown.current;
    shown.current = graph;
    if (first) {
      const saved = (instance as unknown as { savedPositions: Map<string, Point> }).savedPositions;
      instance.batch(() => {
        instance.add([...graph.nodes.map((node) => nodeElement(node)), ...graph.edges.map((edge) => edgeElement(edge, metric))]);
      });
      if (graph.nodes.length) {
        instance.layout(layoutFor(graph.nodes.length)).run();
        instance.batch(() => {
          for (const [id, position] of saved) instance.getElementById(id).position(position);
        });
        instance.fit(undefined, 40);
      }
      const startedAt = (instance as unknown as { startedAt: number }).startedAt;
      onReady?.(performance.now() - startedAt);
      return;
    }
    const diff = diffGraph(previous, graph);
    const positions = new Map<string, Point>();
    instance.nodes().forEach((node) => {
      positions.set(node.id(), { ...node.position() });
    });
    instance.batch(() => {
      instance.remove(diff.removeEdges.map((id) => `#${CSS.escape(id)}`).join(",") || "#__none");
      instance.remove(diff.removeNodes.map((id) => `#${CSS.escape(id)}`).join(",") || "#__none");
      for (const node of diff.addNodes) {
        const position = placeNear(node.id, graph, positions);
        positions.set(node.id, position);
        instance.add(nodeElement(node, position));
      }
      for (const node of diff.updateNodes) instance.getElementById(node.id).data({ ...node });
      for (const edge of diff.addEdges) instance.add(edgeElement(edge, metric));
      for (const edge of diff.updateEdges) {
        const element = instance.getElementById(edgeId(edge.source, edge.destination));
        element.data({ ...edge, label: edgeLabel(edge, metric) });
        element.classes(edgeClasses(edge));
      }
    });
    // onReady is a notification, not an input.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [graph]);

  useEffect(() => {
    const instance = cy.current;
    if (!instance) return;
    instance.batch(() => {
      instance.edges().forEach((edge) => {
        edge.data("label", edgeLabel(edge.data() as GraphEdge, metric));
      });
    });
  }, [metric]);

  useEffect(() => {
    const instance = cy.current;
    if (!instance) return;
    instance.batch(() => {
      instance.elements().removeClass("dimmed found hidden");
      if (!matched) return;
      instance.nodes().forEach((node) => {
        const hit = matched.has(node.id());
        if (filterMode === "find") node.addClass(hit ? "found" : "dimmed");
        else if (hit) node.addClass("hidden");
      });
      if (filterMode === "find") {
        instance.edges().forEach((edge) => {
          if (!matched.has(edge.data("source") as string) && !matched.has(edge.data("destination") as string)) edge.addClass("dimmed");
        });
      }
    });
  }, [matched, filterMode, graph]);

  return <div ref={container} className="graph-canvas" data-testid="graph-canvas" aria-label="Service graph" role="img" />;
}
