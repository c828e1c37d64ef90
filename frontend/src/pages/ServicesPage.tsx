import { Link } from "react-router";
import type { GraphResponse, Page, Service } from "../api/types";
import { useApi, useScope, useScopeQuery } from "../components/hooks";
import { Empty, ErrorState, HealthBadge, Loading } from "../components/States";
import { formatMs, formatPercent, formatRate } from "../model/format";

export function ServicesPage() {
  const scope = useScope();
  const scopeQuery = useScopeQuery();
  const services = useApi<Page<Service>>("/api/v1/services/", {
    namespace: scope.namespace || undefined,
    page_size: 500,
    ordering: "name",
  });
  const graph = useApi<GraphResponse>(
    "/api/v1/graph/",
    { namespace: scope.namespace || undefined, window: scope.window },
    15_000,
  );
  if (services.state === "error") return <ErrorState error={services.error} onRetry={services.reload} />;
  if (!services.data) return <Loading label="Loading services…" />;
  const nodes = new Map(graph.data?.nodes.map((node) => [node.id, node]));
  return (
    <div className="page">
      <div className="page-header">
        <h1>Services</h1>
        <span className="muted">signals over the last {scope.window}</span>
      </div>
      {services.data.results.length === 0 ? (
        <Empty title="No services yet">Services appear when their sidecars register (try `make demo`).</Empty>
      ) : (
        <table className="table" data-testid="services">
          <thead>
            <tr>
              <th scope="col">Service</th>
              <th scope="col">Namespace</th>
              <th scope="col">Health</th>
              <th scope="col">rps</th>
              <th scope="col">Errors</th>
              <th scope="col">p50</th>
              <th scope="col">p99</th>
            </tr>
          </thead>
          <tbody>
            {services.data.results.map((service) => {
              const node = nodes.get(`${service.name}.${service.namespace}`);
              return (
                <tr key={service.id}>
                  <td>
                    <Link to={`/services/${service.id}${scopeQuery}`}>{service.name}</Link>
                  </td>
                  <td>{service.namespace}</td>
                  <td>
                    <HealthBadge health={node?.health ?? "idle"} />
                  </td>
                  <td>{node ? formatRate(node.rps) : "—"}</td>
                  <td>{node ? formatPercent(node.error_rate) : "—"}</td>
                  <td>{formatMs(node?.p50_ms)}</td>
                  <td>{formatMs(node?.p99_ms)}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
    </div>
  );
}
