import { Link } from "react-router";
import type { Agent, Page } from "../api/types";
import { useApi, useNow, useScope, useScopeQuery } from "../components/hooks";
import { Empty, ErrorState, Loading } from "../components/States";
import { formatAgo } from "../model/format";
import { certificateExpiry } from "../model/identity";

const STATUS_HEALTH: Record<string, string> = { connected: "healthy", stale: "degraded", disconnected: "failing" };

export function AgentsPage() {
  const scope = useScope();
  const scopeQuery = useScopeQuery();
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
  const warnings = rows.filter((agent) => certificateExpiry(agent.certificate_not_after, now).warning).length;
  return (
    <div className="page">
      <div className="page-header">
        <h1>Agents</h1>
        <span className="muted">
          {rows.length} sidecar{rows.length === 1 ? "" : "s"}
          {Object.entries(counts).map(([status, count]) => ` · ${count} ${status}`)}
        </span>
        {warnings > 0 && (
          <span className="tag tag-warning" data-testid="certificate-warnings">
            ⚠ {warnings} certificate{warnings === 1 ? "" : "s"} expired or expiring within 2 h
          </span>
        )}
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
              <th scope="col">Identity (SPIFFE id)</th>
              <th scope="col">Certificate</th>
              <th scope="col">Admin address</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((agent) => {
              const expiry = certificateExpiry(agent.certificate_not_after, now);
              return (
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
                  <td className="mono spiffe">
                    {agent.certificate_spiffe_id ? (
                      <Link
                        to={`/identity${scopeQuery}${scopeQuery ? "&" : "?"}agent=${encodeURIComponent(agent.agent_id)}`}
                        title="The certificates issued to this agent"
                      >
                        {agent.certificate_spiffe_id}
                      </Link>
                    ) : (
                      <span className="muted">—</span>
                    )}
                  </td>
                  <td
                    data-testid="certificate-expiry"
                    data-state={expiry.state}
                    title={agent.certificate_not_after ?? "This agent holds no certificate from the mesh's CA."}
                  >
                    {expiry.warning ? (
                      <span className="expiry-warning">
                        <span aria-hidden="true">⚠ </span>
                        {expiry.label}
                      </span>
                    ) : (
                      <span className={expiry.state === "none" ? "muted" : undefined}>{expiry.label}</span>
                    )}
                  </td>
                  <td className="mono">{agent.admin_address || "—"}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
    </div>
  );
}
