import { useState } from "react";
import { Link } from "react-router";
import type { Instance, Page, Service, TraceSummary } from "../api/types";
import { edgeSecurity, splitNodeId, type GraphData, type GraphEdge, type Stats } from "../model/graph";
import { formatAgo, formatBytes, formatDurationUs, formatMs, formatPercent, formatRate } from "../model/format";
import { LockIcon } from "./EdgeMarks";
import type { Selection } from "./GraphCanvas";
import { useApi, useNow, useScopeQuery, WINDOW_SECONDS } from "./hooks";
import { Empty, ErrorState, HealthBadge, Loading } from "./States";

const SECURITY_WORDS = { mtls: "every call", partial: "some calls in plain text", plain: "no call" } as const;

/** An edge's mutual-TLS share and the rate of calls a policy refused on it. */
function EdgeSecurityFacts({ edge }: { edge: GraphEdge }) {
  const security = edgeSecurity(edge);
  const denied = edge.denied_rps > 0;
  return (
    <dl className="signals" data-testid="edge-security" data-security={security} data-denied={denied}>
      <div>
        <dt>mTLS share</dt>
        <dd>
          {security === "mtls" && <LockIcon title="mutual TLS" />} {formatPercent(edge.mtls_share)}{" "}
          <span className="muted">({SECURITY_WORDS[security]})</span>
        </dd>
      </div>
      <div>
        <dt>Denied</dt>
        <dd className={denied ? "error-text" : undefined}>
          {denied && <span aria-hidden="true">⊘ </span>}
          {formatRate(edge.denied_rps)} rps
        </dd>
      </div>
    </dl>
  );
}

function Signals({ stats }: { stats: Stats }) {
  return (
    <dl className="signals" data-testid="signals">
      <div>
        <dt>Traffic</dt>
        <dd>{formatRate(stats.rps)} rps</dd>
      </div>
      <div>
        <dt>Errors</dt>
        <dd>{formatPercent(stats.error_rate)}</dd>
      </div>
      <div>
        <dt>p50</dt>
        <dd>{formatMs(stats.p50_ms)}</dd>
      </div>
      <div>
        <dt>p95</dt>
        <dd>{formatMs(stats.p95_ms)}</dd>
      </div>
      <div>
        <dt>p99</dt>
        <dd>{formatMs(stats.p99_ms)}</dd>
      </div>
      <div>
        <dt>Bytes</dt>
        <dd>{formatBytes(stats.bytes)}</dd>
      </div>
    </dl>
  );
}

export function TraceList({
  path,
  query,
  slowestOf,
}: {
  path: string;
  query: Record<string, string | number | undefined>;
  /** Instead of the newest: the slowest traces of this window ("5m"), as it stood when the list opened. */
  slowestOf?: string;
}) {
  const [openedAt] = useState(() => Date.now());
  const slowest = slowestOf
    ? {
        sort: "-duration_us",
        start: new Date(openedAt - (WINDOW_SECONDS[slowestOf] ?? 300) * 1000).toISOString(),
      }
    : {};
  const traces = useApi<Page<TraceSummary>>(path, { limit: 8, ...query, ...slowest });
  const scopeQuery = useScopeQuery();
  if (traces.state === "error") return <ErrorState error={traces.error} onRetry={traces.reload} />;
  if (!traces.data) return <Loading label="Loading traces…" />;
  if (traces.data.results.length === 0) return <Empty title="No traces in this window" />;
  return (
    <ul className="trace-list" data-testid="panel-traces">
      {traces.data.results.map((trace) => (
        <li key={trace.trace_id}>
          <Link to={`/traces/${trace.trace_id}${scopeQuery}`} className={trace.error ? "error-text" : ""}>
            <span className="mono">{trace.trace_id.slice(0, 12)}</span> {trace.root_operation} ·{" "}
            {formatDurationUs(trace.duration_us)}
            {trace.error ? " · error" : ""}
          </Link>
        </li>
      ))}
    </ul>
  );
}

function ServiceInstances({ name, namespace }: { name: string; namespace: string }) {
  const services = useApi<Page<Service>>("/api/v1/services/", { name, namespace });
  const service = services.data?.results[0];
  const instances = useApi<Page<Instance>>(service ? "/api/v1/instances/" : null, {
    service: service?.id,
    page_size: 100,
  });
  const now = useNow(5000);
  const scopeQuery = useScopeQuery();
  if (services.state === "error") return <ErrorState error={services.error} />;
  if (!services.data) return <Loading />;
  if (!service) return <p className="muted">Not a registered service (traffic only).</p>;
  return (
    <>
      <p>
        <Link to={`/services/${service.id}${scopeQuery}`} className="button">
          Open service page
        </Link>
      </p>
      <h3>Instances</h3>
      {!instances.data ? (
        <Loading />
      ) : instances.data.results.length === 0 ? (
        <p className="muted">No instances registered.</p>
      ) : (
        <ul className="instance-list" data-testid="panel-instances">
          {instances.data.results.map((instance) => (
            <li key={instance.id}>
              <HealthBadge health={instance.health} /> {instance.address}:{instance.port}{" "}
              <span className="muted">seen {formatAgo(instance.last_seen, now)}</span>
            </li>
          ))}
        </ul>
      )}
    </>
  );
}

export function GraphSidePanel({
  selection,
  graph,
  window,
  onClose,
}: {
  selection: NonNullable<Selection>;
  graph: GraphData;
  window: string;
  onClose: () => void;
}) {
  const scopeQuery = useScopeQuery();
  const close = (
    <button type="button" className="button ghost close" aria-label="Close details" onClick={onClose}>
      ×
    </button>
  );
  if (selection.kind === "node") {
    const node = graph.nodes.find((candidate) => candidate.id === selection.id);
    if (!node) return <Empty title="That node left the graph">{close}</Empty>;
    const { name, namespace } = splitNodeId(node.id);
    const callers = graph.edges.filter((edge) => edge.destination === node.id);
    const callees = graph.edges.filter((edge) => edge.source === node.id);
    return (
      <div className="panel" data-testid="side-panel">
        <div className="panel-header">
          <h2>{node.name}</h2>
          {close}
        </div>
        <p className="muted">
          namespace {namespace} · <HealthBadge health={node.health} />
        </p>
        <h3>Into it, last {window}</h3>
        <Signals stats={node} />
        <h3>Calls</h3>
        <p className="muted">
          {callers.length} caller{callers.length === 1 ? "" : "s"}:{" "}
          {callers.map((edge) => splitNodeId(edge.source).name).join(", ") || "none"}
          <br />
          {callees.length} callee{callees.length === 1 ? "" : "s"}:{" "}
          {callees.map((edge) => splitNodeId(edge.destination).name).join(", ") || "none"}
        </p>
        <ServiceInstances name={name} namespace={namespace} />
        <h3>
          Slowest traces, last {window}{" "}
          <Link
            to={`/traces${scopeQuery}${scopeQuery ? "&" : "?"}service=${encodeURIComponent(name)}&sort=-duration_us`}
          >
            search all
          </Link>
        </h3>
        <TraceList path="/api/v1/traces/" query={{ service: name }} slowestOf={window} />
      </div>
    );
  }
  const edge = graph.edges.find(
    (candidate) => candidate.source === selection.source && candidate.destination === selection.destination,
  );
  if (!edge) return <Empty title="That edge left the graph">{close}</Empty>;
  return (
    <div className="panel" data-testid="side-panel">
      <div className="panel-header">
        <h2>
          {splitNodeId(edge.source).name} → {splitNodeId(edge.destination).name}
        </h2>
        {close}
      </div>
      <p className="muted">
        <HealthBadge health={edge.health} />
      </p>
      <EdgeSecurityFacts edge={edge} />
      <Signals stats={edge} />
      <h3>Traces on this edge</h3>
      <TraceList
        path={`/api/v1/edges/${encodeURIComponent(edge.source)}/${encodeURIComponent(edge.destination)}/traces/`}
        query={{ window }}
      />
    </div>
  );
}
