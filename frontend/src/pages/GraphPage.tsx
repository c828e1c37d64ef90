import { useEffect, useMemo, useState } from "react";
import { Link, useSearchParams } from "react-router";
import type { GraphResponse } from "../api/types";
import type { EdgeMetric, Selection } from "../components/GraphCanvas";
import { GraphSidePanel } from "../components/GraphSidePanel";
import { EdgeSwatch } from "../components/EdgeMarks";
import { useApi, useScope, useScopeQuery, WINDOW_SECONDS } from "../components/hooks";
import { Empty, ErrorState, HealthBadge, Loading } from "../components/States";
import { VersionTimeline } from "../components/VersionTimeline";
import { useLiveGraph } from "../live/useLiveGraph";
import { FILTER_HELP, parseFilter } from "../model/filter";
import { filterGraph, type GraphData } from "../model/graph";
import { formatMs, formatPercent, formatRate, toDateTimeLocal } from "../model/format";

// Cytoscape is most of this page's code: it downloads while the page asks for the graph, not before.
// Not React.lazy: a Suspense boundary holds back what it reveals (React batches reveals for up to 300 ms),
// which would delay every first graph by that much.
const loadGraphCanvas = () => import("../components/GraphCanvas");
type GraphCanvasModule = Awaited<ReturnType<typeof loadGraphCanvas>>;
const LIVE_WINDOWS = new Set(["1m", "5m", "15m"]);
const NODE_LIST_LIMIT = 100;

export function GraphPage() {
  const scope = useScope();
  const scopeQuery = useScopeQuery();
  const [params, setParams] = useSearchParams();
  const group = params.get("group") === "workload" ? "workload" : "service";
  const metric = (
    ["rps", "errors", "p99"].includes(params.get("label") ?? "") ? params.get("label") : "rps"
  ) as EdgeMetric;
  const at = params.get("at");
  const filterText = params.get("filter") ?? "";
  const filterMode = params.get("mode") === "hide" ? "hide" : "find";
  const [draftFilter, setDraftFilter] = useState(filterText);
  const [selection, setSelection] = useState<Selection>(null);
  const [showHelp, setShowHelp] = useState(false);
  // Start loading (and compiling) Cytoscape now, while the graph is being fetched, not once it has arrived.
  const [canvas, setCanvas] = useState<GraphCanvasModule | null>(null);
  const [canvasError, setCanvasError] = useState<Error | null>(null);
  useEffect(() => {
    loadGraphCanvas().then(setCanvas, (error: unknown) =>
      setCanvasError(error instanceof Error ? error : new Error(String(error))),
    );
  }, []);

  const setParam = (key: string, value: string | null) =>
    setParams((current) => {
      const next = new URLSearchParams(current);
      if (value) next.set(key, value);
      else next.delete(key);
      return next;
    });

  // Live over the WebSocket where the server streams it (one namespace, by service, short windows);
  // otherwise the REST graph, polled while live and read once for a replayed window.
  const streamed = !at && scope.namespace !== "" && group === "service" && LIVE_WINDOWS.has(scope.window);
  const live = useLiveGraph(streamed ? scope.namespace : null, scope.window as "1m" | "5m" | "15m");
  const polled = useApi<GraphResponse>(
    streamed ? null : "/api/v1/graph/",
    { window: scope.window, namespace: scope.namespace || undefined, group, at: at ?? undefined },
    at ? undefined : 10_000,
  );
  const graph: GraphData | null = streamed ? live.graph : (polled.data ?? null);
  const failure = streamed ? live.error : polled.state === "error" ? polled.error : null;

  const parsed = useMemo(() => parseFilter(filterText), [filterText]);
  const matched = useMemo(
    () => (graph && parsed.ok && parsed.conditions.length ? filterGraph(graph, parsed.conditions).matched : null),
    [graph, parsed],
  );
  const draftParsed = useMemo(() => parseFilter(draftFilter), [draftFilter]);
  // The URL changed (back button, a shared link): the box shows its filter again.
  const [draftSource, setDraftSource] = useState(filterText);
  if (draftSource !== filterText) {
    setDraftSource(filterText);
    setDraftFilter(filterText);
  }

  const storageKey = `meshui.positions.${scope.namespace || "*"}.${group}`;
  const windowEnd = streamed ? null : polled.data?.window.end;

  return (
    <div className="page graph-page">
      <div className="page-header">
        <h1>Topology</h1>
        <div className="live-indicator" data-testid="graph-mode">
          {at ? (
            <span className="tag tag-replay">Replay · window ending {new Date(at).toLocaleString()}</span>
          ) : streamed ? (
            <span className={`tag tag-live ${live.connection}`}>
              ● Live {live.connection === "open" ? "" : `(${live.connection})`}
            </span>
          ) : (
            <span className="tag">Refreshing every 10 s</span>
          )}
        </div>
      </div>
      <div className="toolbar" role="toolbar" aria-label="Graph options">
        <label>
          View
          <select
            value={group}
            onChange={(event) => setParam("group", event.target.value === "workload" ? "workload" : null)}
          >
            <option value="service">services</option>
            <option value="workload">workloads</option>
          </select>
        </label>
        <label>
          Edge labels
          <select
            value={metric}
            onChange={(event) => setParam("label", event.target.value === "rps" ? null : event.target.value)}
          >
            <option value="rps">requests/s</option>
            <option value="errors">error %</option>
            <option value="p99">p99 latency</option>
          </select>
        </label>
        <form
          className="filter-form"
          onSubmit={(event) => {
            event.preventDefault();
            if (draftParsed.ok) setParam("filter", draftFilter.trim() || null);
          }}
        >
          <label>
            Filter
            <input
              type="search"
              name="filter"
              placeholder="errors > 5% and rps > 1"
              value={draftFilter}
              aria-invalid={!draftParsed.ok}
              aria-describedby="filter-error"
              onChange={(event) => setDraftFilter(event.target.value)}
            />
          </label>
          <select
            aria-label="Filter mode"
            value={filterMode}
            onChange={(event) => setParam("mode", event.target.value === "hide" ? "hide" : null)}
          >
            <option value="find">find</option>
            <option value="hide">hide</option>
          </select>
          <button type="submit" className="button" disabled={!draftParsed.ok}>
            Apply
          </button>
          <button
            type="button"
            className="button ghost"
            aria-expanded={showHelp}
            onClick={() => setShowHelp((value) => !value)}
          >
            ?
          </button>
          {!draftParsed.ok && (
            <span id="filter-error" className="field-error" role="alert">
              {draftParsed.error} (at character {draftParsed.position + 1})
            </span>
          )}
        </form>
        <div className="replay">
          <label>
            Replay window ending
            <input
              type="datetime-local"
              value={at ? toDateTimeLocal(at) : ""}
              onChange={(event) =>
                setParam("at", event.target.value ? new Date(event.target.value).toISOString() : null)
              }
            />
          </label>
          {at && (
            <button type="button" className="button" onClick={() => setParam("at", null)}>
              Back to live
            </button>
          )}
        </div>
      </div>
      {at && (
        <VersionTimeline
          namespace={scope.namespace}
          startS={Date.parse(at) / 1000 - (WINDOW_SECONDS[scope.window] ?? 300)}
          endS={Date.parse(at) / 1000}
        />
      )}
      {showHelp && (
        <div className="help-box" data-testid="filter-help">
          <p>
            Conditions on nodes, joined by <code>and</code> or commas. <em>find</em> highlights the matches,{" "}
            <em>hide</em> hides them.
          </p>
          <table>
            <tbody>
              {FILTER_HELP.map((entry) => (
                <tr key={entry.example}>
                  <td>
                    <code>{entry.example}</code>
                  </td>
                  <td>{entry.meaning}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <div className="graph-layout">
        <section className="graph-area" aria-label="Graph">
          {failure && <ErrorState error={failure} onRetry={streamed ? undefined : polled.reload} />}
          {!graph && !failure && <Loading label="Loading the graph…" />}
          {graph && graph.nodes.length === 0 && (
            <Empty title="No traffic in this window">
              Nothing went through the mesh {scope.namespace ? `in ${scope.namespace} ` : ""}in the last {scope.window}
              {windowEnd ? ` before ${new Date(windowEnd).toLocaleTimeString()}` : ""}. Start the demo (
              <code>make demo</code>) or send requests through a sidecar.
            </Empty>
          )}
          {graph && graph.nodes.length > 0 && canvas && (
            <canvas.GraphCanvas
              key={storageKey}
              graph={graph}
              metric={metric}
              matched={matched}
              filterMode={filterMode}
              storageKey={storageKey}
              onSelect={setSelection}
              selectedId={selection?.id ?? null}
            />
          )}
          {graph && graph.nodes.length > 0 && !canvas && !canvasError && <Loading label="Drawing the graph…" />}
          {canvasError && <ErrorState error={canvasError} />}
          <Legend />
        </section>
        <aside className="side-panel" aria-label="Details">
          {selection && graph ? (
            <GraphSidePanel
              selection={selection}
              graph={graph}
              window={scope.window}
              onClose={() => setSelection(null)}
            />
          ) : (
            <NodeList
              graph={graph}
              matched={matched}
              filterMode={filterMode}
              onSelect={(id) => setSelection({ kind: "node", id })}
            />
          )}
        </aside>
      </div>
      <p className="muted footnote">
        Node and edge figures are over the last {scope.window}; click a node or an edge for its signals and traces.{" "}
        <Link to={`/traces${scopeQuery}`}>Search traces</Link>
      </p>
    </div>
  );
}

function Legend() {
  return (
    <div className="legend" aria-label="Legend">
      <HealthBadge health="healthy" />
      <HealthBadge health="degraded" />
      <HealthBadge health="failing" />
      <HealthBadge health="idle" />
      <span className="legend-item" data-legend="mtls">
        <EdgeSwatch kind="mtls" /> mTLS, every call
      </span>
      <span className="legend-item" data-legend="partial">
        <EdgeSwatch kind="partial" /> partly mTLS
      </span>
      <span className="legend-item" data-legend="plain">
        <EdgeSwatch kind="plain" /> plain text
      </span>
      <span className="legend-item" data-legend="denied">
        <EdgeSwatch kind="denied" /> ⊘ calls denied
      </span>
    </div>
  );
}

function NodeList({
  graph,
  matched,
  filterMode,
  onSelect,
}: {
  graph: GraphData | null;
  matched: Set<string> | null;
  filterMode: "find" | "hide";
  onSelect: (id: string) => void;
}) {
  const [showAll, setShowAll] = useState(false);
  if (!graph) return null;
  const nodes = graph.nodes.filter(
    (node) => !matched || (filterMode === "find" ? matched.has(node.id) : !matched.has(node.id)),
  );
  // The busiest first; on a big mesh only the top of the list until asked (the filter narrows it down).
  const ranked = [...nodes].sort((a, b) => b.rps - a.rps || a.id.localeCompare(b.id));
  const shown = showAll ? ranked : ranked.slice(0, NODE_LIST_LIMIT);
  return (
    <div className="node-list">
      <h2>
        {nodes.length} of {graph.nodes.length} nodes
      </h2>
      <ul data-testid="node-list">
        {shown.map((node) => (
          <li key={node.id}>
            <button type="button" className="node-button" data-node={node.id} onClick={() => onSelect(node.id)}>
              <HealthBadge health={node.health} />
              <span className="node-name">{node.id}</span>
              <span className="muted">
                {formatRate(node.rps)} rps · {formatPercent(node.error_rate)} · p99 {formatMs(node.p99_ms)}
              </span>
            </button>
          </li>
        ))}
      </ul>
      {shown.length < ranked.length && (
        <button type="button" className="button ghost" onClick={() => setShowAll(true)}>
          Show all {ranked.length}
        </button>
      )}
    </div>
  );
}
