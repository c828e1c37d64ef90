import cytoscape, { type Core, type ElementDefinition } from "cytoscape";
import { useEffect, useRef } from "react";
import {
  diffGraph,
  edgeCanvasLabel,
  edgeClasses,
  edgeId,
  placeNear,
  type GraphData,
  type GraphEdge,
  type GraphNode,
  type Point,
} from "../model/graph";

export type EdgeMetric = "rps" | "errors" | "p99";
export type Selection =
  { kind: "node"; id: string } | { kind: "edge"; id: string; source: string; destination: string } | null;

interface Props {
  graph: GraphData;
  metric: EdgeMetric;
  /** Node ids the filter matched, and what to do with them. */
  matched: Set<string> | null;
  filterMode: "find" | "hide";
  /** Where dragged positions are remembered (per namespace and grouping). */
  storageKey: string;
  onSelect: (selection: Selection) => void;
  /** The node or edge the side panel shows, however it was picked (the canvas or the node list). */
  selectedId?: string | null;
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
// Okabe–Ito blue marks mutual TLS; vermillion marks denials (with a dotted line, a bar head and "⊘" in the label).
const MTLS_COLOUR = "#0072b2";
const DENIED_COLOUR = "#d55e00";

// Past this many nodes the graph takes its fast path: a grid instead of layered layout, and edge labels only on
// the selected edge (thousands of labels cannot be read anyway, and measuring them dominates the first render).
export const BIG_GRAPH_NODES = 300;
const NODE_SHAPE: Record<string, string> = { failing: "octagon", degraded: "round-triangle" };

// Colours and shapes travel in each element's data and the stylesheet maps them (`data(colour)`), rather than a
// selector per health value or a style function: Cytoscape matches every element against every selector and calls
// a function style per element on every pass, which is most of the first render of a mesh of thousands of edges.
function look(health: string): { colour: string; shape: string; borderStyle: string; borderWidth: number } {
  return {
    colour: HEALTH_COLOUR[health] ?? HEALTH_COLOUR.idle ?? "#8c8c8c",
    shape: NODE_SHAPE[health] ?? "ellipse",
    borderStyle: health === "idle" ? "dashed" : "solid",
    borderWidth: health === "failing" ? 5 : 3,
  };
}

function stylesheet(big: boolean): cytoscape.StylesheetJson {
  return [
    {
      selector: "node",
      style: {
        "background-color": "#ffffff",
        "border-width": "data(borderWidth)",
        "border-color": "data(colour)",
        "border-style": "data(borderStyle)" as cytoscape.Css.LineStyle,
        shape: "data(shape)" as cytoscape.Css.NodeShape,
        label: "data(name)",
        "font-size": 12,
        "font-family": "Inter, system-ui, sans-serif",
        color: "#1f2933",
        "text-valign": "bottom",
        "text-margin-y": 6,
        width: 34,
        height: 34,
        // Labels too small to read at the current zoom are not drawn: a whole big mesh fitted on screen paints
        // shapes only, and names appear as the user zooms in.
        "min-zoomed-font-size": 7,
      },
    },
    {
      selector: "edge",
      style: {
        width: 2,
        "line-color": "data(colour)",
        "target-arrow-color": "data(colour)",
        "target-arrow-shape": "triangle",
        // Haystack lines are Cytoscape's cheapest edges (no arrows); a big mesh fitted on screen gains nothing
        // from arrow heads a pixel wide, and the selected edge and its neighbourhood get them back.
        "curve-style": big ? "haystack" : "straight",
      },
    },
    {
      selector: big ? "edge:selected" : "edge",
      style: {
        label: "data(label)",
        "curve-style": "straight",
        "font-size": 10,
        color: "#334155",
        "text-background-color": "#ffffff",
        "text-background-opacity": 0.85,
        "text-background-padding": "2px",
        "text-rotation": "autorotate",
        "min-zoomed-font-size": 7,
      },
    },
    // Two calls in opposite directions would draw on top of each other as straight lines.
    { selector: "edge.bidirectional", style: { "curve-style": "bezier" } },
    // Every call over mutual TLS: a thicker line with a square "lock" at the caller's end (and "mTLS" in the label).
    {
      selector: "edge.mtls",
      style: {
        width: 3,
        "source-arrow-shape": "square",
        "source-arrow-color": MTLS_COLOUR,
        "source-arrow-fill": "filled",
      },
    },
    // Some calls in plain text: long dashes, and a hollow square at the caller's end.
    {
      selector: "edge.mtls-partial",
      style: {
        "line-style": "dashed",
        "line-dash-pattern": [8, 4],
        "source-arrow-shape": "square",
        "source-arrow-color": MTLS_COLOUR,
        "source-arrow-fill": "hollow",
      },
    },
    // A policy refuses calls on this edge: vermillion, dotted, a bar instead of an arrow head, "⊘" in the label.
    {
      selector: "edge.denied",
      style: {
        "line-style": "dotted",
        width: 3,
        "line-color": DENIED_COLOUR,
        "target-arrow-color": DENIED_COLOUR,
        "target-arrow-shape": "tee",
      },
    },
    { selector: ".dimmed", style: { opacity: 0.2 } },
    { selector: "node.found", style: { "border-color": "#0072b2", "border-width": 6 } },
    { selector: ".hidden", style: { display: "none" } },
    { selector: ":selected", style: { "overlay-color": "#0072b2", "overlay-opacity": 0.15, "overlay-padding": 6 } },
  ];
}

function nodeElement(node: GraphNode, position?: Point): ElementDefinition {
  return {
    group: "nodes",
    data: { ...node, ...look(node.health) },
    ...(position ? { position: { ...position } } : {}),
  };
}

function edgeElement(edge: GraphEdge, metric: EdgeMetric): ElementDefinition {
  return {
    group: "edges",
    data: {
      ...edge,
      id: edgeId(edge.source, edge.destination),
      target: edge.destination,
      label: edgeCanvasLabel(edge, metric),
      colour: look(edge.health).colour,
    },
    classes: edgeClasses(edge),
  };
}

// Straight lines are the cheap default; a pair of opposite calls curves apart so both stay visible.
function markBidirectional(instance: Core, edges: cytoscape.EdgeCollection): void {
  edges.forEach((edge) => {
    const reverse = instance.getElementById(edgeId(edge.data("destination") as string, edge.data("source") as string));
    if (reverse.nonempty()) {
      edge.addClass("bidirectional");
      reverse.addClass("bidirectional");
    }
  });
}

function loadPositions(key: string): Map<string, Point> {
  try {
    const stored = JSON.parse(window.localStorage.getItem(key) ?? "{}") as Record<string, Point>;
    return new Map(Object.entries(stored));
  } catch {
    return new Map();
  }
}

// A call graph reads left to right; breadth-first layers give that cheaply.
const LAYERED: cytoscape.LayoutOptions = {
  name: "breadthfirst",
  directed: true,
  spacingFactor: 1.3,
  animate: false,
  transform: (_node, position) => ({ x: position.y * 1.6, y: position.x }),
} as cytoscape.LayoutOptions;

// Past a few hundred nodes a layered layout's crossings make it no clearer than a grid, which costs nothing and
// leaves Cytoscape no layout pass to run.
function gridPositions(nodes: GraphNode[]): Map<string, Point> {
  const columns = Math.ceil(Math.sqrt(nodes.length * 1.6));
  return new Map(
    nodes.map((node, index) => [node.id, { x: (index % columns) * 90, y: Math.floor(index / columns) * 90 }]),
  );
}

interface Box {
  x1: number;
  y1: number;
  w: number;
  h: number;
}

// The frame of known positions: asking Cytoscape for a bounding box makes it compute every element's style first.
function boxOf(positions: Iterable<Point>): Box {
  let x1 = Infinity;
  let y1 = Infinity;
  let x2 = -Infinity;
  let y2 = -Infinity;
  for (const { x, y } of positions) {
    x1 = Math.min(x1, x);
    y1 = Math.min(y1, y);
    x2 = Math.max(x2, x);
    y2 = Math.max(y2, y);
  }
  return { x1: x1 - 20, y1: y1 - 20, w: x2 - x1 + 40, h: y2 - y1 + 40 };
}

// Frames the graph by its nodes' centres (Cytoscape's own fit measures every label too).
function fitNodes(instance: Core, padding: number, known?: Box): void {
  const box = known ?? instance.nodes().boundingBox({ includeLabels: false, includeOverlays: false });
  const width = instance.width() - 2 * padding;
  const height = instance.height() - 2 * padding;
  if (box.w <= 0 || box.h <= 0 || width <= 0 || height <= 0) {
    instance.center();
    return;
  }
  const zoom = Math.max(instance.minZoom(), Math.min(instance.maxZoom(), Math.min(width / box.w, height / box.h)));
  instance.viewport({
    zoom,
    pan: {
      x: padding + (width - box.w * zoom) / 2 - box.x1 * zoom,
      y: padding + (height - box.h * zoom) / 2 - box.y1 * zoom,
    },
  });
}

export function GraphCanvas({
  graph,
  metric,
  matched,
  filterMode,
  storageKey,
  onSelect,
  selectedId = null,
  onReady,
}: Props) {
  const container = useRef<HTMLDivElement>(null);
  const cy = useRef<Core | null>(null);
  const shown = useRef<GraphData>({ nodes: [], edges: [] });
  // Read by the first data effect of this instance: where the user left the nodes, and when it started.
  const savedPositions = useRef<Map<string, Point>>(new Map());
  const startedAt = useRef(0);
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
    savedPositions.current = saved;
    startedAt.current = started;
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
      const saved = savedPositions.current;
      const big = graph.nodes.length > BIG_GRAPH_NODES;
      const grid = big ? gridPositions(graph.nodes) : null;
      instance.style(stylesheet(big));
      instance.batch(() => {
        instance.add([
          ...graph.nodes.map((node) => nodeElement(node, saved.get(node.id) ?? grid?.get(node.id))),
          ...graph.edges.map((edge) => edgeElement(edge, metric)),
        ]);
        markBidirectional(instance, instance.edges());
      });
      if (graph.nodes.length) {
        if (!big) {
          instance.layout(LAYERED).run();
          instance.batch(() => {
            for (const [id, position] of saved) instance.getElementById(id).position(position);
          });
        }
        fitNodes(
          instance,
          40,
          grid
            ? boxOf(graph.nodes.map((node) => saved.get(node.id) ?? grid.get(node.id) ?? { x: 0, y: 0 }))
            : undefined,
        );
      }
      const started = startedAt.current;
      // Two frames later the first layout has been painted: what the render benchmark reads.
      requestAnimationFrame(() =>
        requestAnimationFrame(() => {
          const now = performance.now();
          const elapsed = now - started;
          if (container.current) {
            container.current.dataset.renderMs = elapsed.toFixed(1);
            container.current.dataset.renderedAt = now.toFixed(1);
          }
          onReady?.(elapsed);
        }),
      );
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
      for (const node of diff.updateNodes) instance.getElementById(node.id).data({ ...node, ...look(node.health) });
      if (diff.addEdges.length)
        markBidirectional(instance, instance.add(diff.addEdges.map((edge) => edgeElement(edge, metric))).edges());
      for (const edge of diff.updateEdges) {
        const element = instance.getElementById(edgeId(edge.source, edge.destination));
        element.data({ ...edge, label: edgeCanvasLabel(edge, metric), colour: look(edge.health).colour });
        element.classes(edgeClasses(edge));
        if (instance.getElementById(edgeId(edge.destination, edge.source)).nonempty())
          element.addClass("bidirectional");
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
        edge.data("label", edgeCanvasLabel(edge.data() as GraphEdge, metric));
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
          if (!matched.has(edge.data("source") as string) && !matched.has(edge.data("destination") as string))
            edge.addClass("dimmed");
        });
      }
    });
  }, [matched, filterMode, graph]);

  useEffect(() => {
    const instance = cy.current;
    if (!instance) return;
    instance.batch(() => {
      instance.elements(":selected").unselect();
      if (selectedId) instance.getElementById(selectedId).select();
    });
  }, [selectedId, graph]);

  return (
    <div ref={container} className="graph-canvas" data-testid="graph-canvas" aria-label="Service graph" role="img" />
  );
}
