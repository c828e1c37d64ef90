import type { Agent, Page } from "../api/types";
import { useApi, useNow, useScope } from "../components/hooks";
import { Empty, ErrorState, Loading } from "../components/States";
import { formatAgo } from "../model/format";

const STATUS_HEALTH: Record<string, string> = { connected: "healthy", stale: "degraded", disconnected: "failing" };

export function AgentsPage() {
  const scope = useScope();
  const agents = useApi<Page<Agent>>(
    "/api/v1/agents/",
    { namespace: scope.namespace || undefined, page_size: 500, ordering: "agent_id" },
    5_000,
  );
  const now = useNow(1000);
  if (agents.state === "error" && !agents.data) return <ErrorState error={agents.error} onRetry={agents.reload} />;
  if (!agents.data) return <Loading label="Loading agents…" />;
  const rows = agents.data.results;
  const counts = rows.reduce<Record<string, number>>(
    (total, agent) => ({ ...total, [agent.status]: (total[agent.status] ?? 0) + 1 }),
    {},
  );
  return (
    <div className="page">
      <div className="page-header">
        <h1>Agents</h1>
        <span className="muted">
          {rows.length} sidecar{rows.length === 1 ? "" : "s"}
          {Object.entries(counts).map(([status, count]) => ` · ${count} ${status}`)}
        </span>
      </div>
      {rows.length === 0 ? (
        <Empty title="No agents registered">Agents appear here when a sidecar registers with the control plane.</Empty>
      ) : (
        <table className="table" data-testid="agents">
          <thead>
            <tr>
              <th scope="col">Agent</th>
              <th scope="col">Namespace</th>
              <th scope="col">Status</th>
              <th scope="col">Version</th>
              <th scope="col">Config applied</th>
              <th scope="col">Last heartbeat</th>
              <th scope="col">Admin address</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((agent) => (
              <tr key={agent.id}>
                <td className="mono">{agent.agent_id}</td>
                <td>{agent.namespace}</td>
                <td>
                  <span className={`health health-${STATUS_HEALTH[agent.status] ?? "idle"}`}>
                    <span className="health-mark" aria-hidden="true" />
                    {agent.status}
                  </span>
                </td>
                <td>{agent.version || "—"}</td>
                <td>{agent.config_version === null ? "none yet" : `v${agent.config_version}`}</td>
                <td title={agent.last_heartbeat ?? ""}>{formatAgo(agent.last_heartbeat, now)}</td>
                <td className="mono">{agent.admin_address || "—"}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}
