import { useMemo } from "react";
import { Link, useParams } from "react-router";
import type {
  Agent,
  ConfigVersion,
  GraphResponse,
  Instance,
  Page,
  Service,
  ServiceMetrics,
  Workload,
} from "../api/types";
import { useApi, useNow, useScope, useScopeQuery } from "../components/hooks";
import { LiveChart } from "../components/LiveChart";
import { TraceList } from "../components/GraphSidePanel";
import { Empty, ErrorState, HealthBadge, Loading } from "../components/States";
import { useServiceSeries } from "../live/useServiceSeries";
import { formatAgo, formatMs, formatPercent, formatRate } from "../model/format";
import { versionMarkers } from "../model/versions";

const LIVE = new Set(["1m", "5m", "15m"]);

export function ServicePage() {
  const { serviceId = "" } = useParams();
  const scope = useScope();
  const scopeQuery = useScopeQuery();
  const service = useApi<Service>(/^\d+$/.test(serviceId) ? `/api/v1/services/${serviceId}/` : null);
  const key = service.data ? `${service.data.name}.${service.data.namespace}` : null;
  const liveWindow = (LIVE.has(scope.window) ? scope.window : "15m") as "1m" | "5m" | "15m";
  const live = useServiceSeries(key, liveWindow);
  const graph = useApi<GraphResponse>(
    service.data ? "/api/v1/graph/" : null,
    { namespace: service.data?.namespace, window: scope.window },
    15_000,
  );

  // Config versions of the service's namespace, marked on the charts where they fall in the window.
  const versions = useApi<Page<ConfigVersion>>(
    service.data ? "/api/v1/config-versions/" : null,
    { namespace: service.data?.namespace, page_size: 50 },
    15_000,
  );
  const { inbound, outbound } = live;
  const firstT = inbound.t[0];
  const lastT = inbound.t[inbound.t.length - 1];
  const markers = useMemo(
    () =>
      versions.data && firstT !== undefined && lastT !== undefined
        ? versionMarkers(versions.data.results, firstT, lastT + 10, service.data?.namespace)
        : [],
    [versions.data, firstT, lastT, service.data?.namespace],
  );
  const charts = useMemo(
    () => ({
      rps: [inbound.t, inbound.rps],
      rpsOut: [outbound.t, outbound.rps],
      errors: [inbound.t, inbound.errorPercent],
      latency: [inbound.t, inbound.p50, inbound.p95, inbound.p99],
      inFlight: [inbound.t, inbound.inFlight],
    }),
    [inbound, outbound],
  );

  if (!/^\d+$/.test(serviceId)) return <Empty title="No such service" />;
  if (service.state === "error") {
    return "status" in service.error && service.error.status === 404 ? (
      <Empty title="No such service">
        It may have been removed, or it is in a namespace you may not view.{" "}
        <Link to={`/services${scopeQuery}`}>All services</Link>
      </Empty>
    ) : (
      <ErrorState error={service.error} onRetry={service.reload} />
    );
  }
  if (!service.data) return <Loading label="Loading the service…" />;
  const node = graph.data?.nodes.find((candidate) => candidate.id === key);
  const edgesIn = graph.data?.edges.filter((edge) => edge.destination === key) ?? [];
  const edgesOut = graph.data?.edges.filter((edge) => edge.source === key) ?? [];

  return (
    <div className="page service-page">
      <div className="page-header">
        <h1>
          {service.data.name} <span className="muted">· {service.data.namespace}</span>
        </h1>
        {node && <HealthBadge health={node.health} />}
        <span className={`tag tag-live ${live.connection}`} data-testid="service-live">
          ● Live, last {liveWindow}
          {live.connection === "open" ? "" : ` (${live.connection})`}
        </span>
        <Link
          className="button"
          to={`/traces${scopeQuery}${scopeQuery ? "&" : "?"}service=${encodeURIComponent(service.data.name)}`}
        >
          Traces
        </Link>
      </div>
      {live.error && <ErrorState error={live.error} />}
      {!live.ready ? (
        <Loading label="Waiting for live metrics…" />
      ) : (
        <div className="charts" data-updates={live.updates}>
          <LiveChart
            title="Requests per second"
            testId="chart-rps"
            series={[{ label: "inbound", colour: "#0072b2" }]}
            data={charts.rps}
            format={(value) => formatRate(value)}
            markers={markers}
          />
          <LiveChart
            title="Error rate (%)"
            testId="chart-errors"
            series={[{ label: "inbound", colour: "#d55e00" }]}
            data={charts.errors}
            markers={markers}
            format={(value) => `${value.toFixed(value < 10 ? 1 : 0)}%`}
          />
          <LiveChart
            title="Latency"
            testId="chart-latency"
            series={[
              { label: "p50", colour: "#009e73" },
              { label: "p95", colour: "#e69f00", dash: [6, 3] },
              { label: "p99", colour: "#cc79a7", dash: [2, 2] },
            ]}
            data={charts.latency}
            markers={markers}
            format={(value) => formatMs(value)}
          />
          <LiveChart
            title="In flight"
            testId="chart-inflight"
            series={[{ label: "inbound", colour: "#56b4e9" }]}
            data={charts.inFlight}
            markers={markers}
            format={(value) => value.toFixed(2)}
          />
          <LiveChart
            title="Outbound requests per second"
            testId="chart-rps-out"
            series={[{ label: "outbound", colour: "#0072b2", dash: [4, 2] }]}
            data={charts.rpsOut}
            markers={markers}
            format={(value) => formatRate(value)}
          />
        </div>
      )}
      <div className="columns">
        <section>
          <h2>Inbound edges</h2>
          <EdgeTable edges={edgesIn} end="source" loading={!graph.data} />
          <h2>Outbound edges</h2>
          <EdgeTable edges={edgesOut} end="destination" loading={!graph.data} />
          <DeniedCallers serviceId={service.data.id} window={scope.window} />
        </section>
        <section>
          <h2>Instances</h2>
          <Instances service={service.data} />
          <h2>Recent traces</h2>
          <TraceList path="/api/v1/traces/" query={{ service: service.data.name }} />
        </section>
      </div>
    </div>
  );
}

function EdgeTable({
  edges,
  end,
  loading,
}: {
  edges: GraphResponse["edges"];
  end: "source" | "destination";
  loading: boolean;
}) {
  if (loading) return <Loading />;
  if (edges.length === 0) return <p className="muted">None in this window.</p>;
  return (
    <table className="table compact">
      <thead>
        <tr>
          <th scope="col">{end === "source" ? "From" : "To"}</th>
          <th scope="col">rps</th>
          <th scope="col">errors</th>
          <th scope="col">p99</th>
          <th scope="col">health</th>
        </tr>
      </thead>
      <tbody>
        {edges.map((edge) => (
          <tr key={`${edge.source}->${edge.destination}`}>
            <td>{edge[end]}</td>
            <td>{formatRate(edge.rps)}</td>
            <td>{formatPercent(edge.error_rate)}</td>
            <td>{formatMs(edge.p99_ms)}</td>
            <td>
              <HealthBadge health={edge.health} />
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

/** The callers an authorization policy refused most in the window, as the service's sidecars saw them. */
function DeniedCallers({ serviceId, window }: { serviceId: number; window: string }) {
  // One step as long as the window: only the denied callers are read here, and the step limits stay met.
  const metrics = useApi<ServiceMetrics>(`/api/v1/services/${serviceId}/metrics/`, { window, step: window }, 15_000);
  const callers = metrics.data?.denied_callers ?? [];
  return (
    <section aria-labelledby="denied-callers" data-testid="denied-callers">
      <h2 id="denied-callers">Denied callers</h2>
      {metrics.state === "error" && !metrics.data ? (
        <ErrorState error={metrics.error} onRetry={metrics.reload} />
      ) : !metrics.data ? (
        <Loading />
      ) : callers.length === 0 ? (
        <p className="muted">No caller was denied in this window.</p>
      ) : (
        <table className="table compact">
          <thead>
            <tr>
              <th scope="col">Caller (workload)</th>
              <th scope="col">denied</th>
              <th scope="col">denied rps</th>
            </tr>
          </thead>
          <tbody>
            {callers.map((caller) => (
              <tr key={caller.source_workload} className="row-error">
                <td className="mono">{caller.source_workload || "unknown caller"}</td>
                <td>{caller.denied}</td>
                <td>{formatRate(caller.denied_rps)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

function Instances({ service }: { service: Service }) {
  const instances = useApi<Page<Instance>>("/api/v1/instances/", { service: service.id, page_size: 200 }, 10_000);
  const workloads = useApi<Page<Workload>>("/api/v1/workloads/", { service: service.id, page_size: 200 });
  const agents = useApi<Page<Agent>>("/api/v1/agents/", { namespace: service.namespace, page_size: 500 }, 10_000);
  const now = useNow(2000);
  if (instances.state === "error") return <ErrorState error={instances.error} onRetry={instances.reload} />;
  if (!instances.data) return <Loading />;
  if (instances.data.results.length === 0) return <p className="muted">No instances registered.</p>;
  const workloadName = new Map(workloads.data?.results.map((workload) => [workload.id, workload.name]));
  const agentOf = new Map(
    agents.data?.results.filter((agent) => agent.instance !== null).map((agent) => [agent.instance, agent]),
  );
  return (
    <table className="table compact" data-testid="instances">
      <thead>
        <tr>
          <th scope="col">Workload</th>
          <th scope="col">Address</th>
          <th scope="col">Health</th>
          <th scope="col">Agent</th>
          <th scope="col">Config</th>
          <th scope="col">Heartbeat</th>
        </tr>
      </thead>
      <tbody>
        {instances.data.results.map((instance) => {
          const agent = agentOf.get(instance.id);
          return (
            <tr key={instance.id}>
              <td>{workloadName.get(instance.workload) ?? instance.workload}</td>
              <td className="mono">
                {instance.address}:{instance.port}
              </td>
              <td>
                <HealthBadge health={instance.health} />
              </td>
              <td>{agent ? `${agent.agent_id} (${agent.status})` : "—"}</td>
              <td>{agent && agent.config_version !== null ? `v${agent.config_version}` : "—"}</td>
              <td>{formatAgo(agent?.last_heartbeat ?? instance.last_seen, now)}</td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}
