import { Link } from "react-router";
import type { ConfigVersion, Page } from "../api/types";
import { useApi, useNow, useScope, useScopeQuery } from "../components/hooks";
import { RolloutBar } from "../components/PolicyBits";
import { Empty, ErrorState, Loading } from "../components/States";
import { formatAgo } from "../model/format";

/** `/versions`: every applied config version, newest first, with how far each reached the agents. */
export function VersionsPage() {
  const scope = useScope();
  const scopeQuery = useScopeQuery();
  const now = useNow(10_000);
  const versions = useApi<Page<ConfigVersion>>(
    "/api/v1/config-versions/",
    { namespace: scope.namespace || undefined, page_size: 100 },
    10_000,
  );
  if (versions.state === "error" && !versions.data)
    return <ErrorState error={versions.error} onRetry={versions.reload} />;
  if (!versions.data) return <Loading label="Loading config versions…" />;
  const rows = versions.data.results;
  return (
    <div className="page">
      <div className="page-header">
        <h1>Config versions</h1>
        <span className="muted">
          {versions.data.count ?? rows.length} applied{scope.namespace ? ` in ${scope.namespace}` : ""} · immutable ·
          roll back from a version's page
        </span>
      </div>
      {rows.length === 0 ? (
        <Empty title="No config versions yet">
          A version is recorded each time an approved change request is applied.{" "}
          <Link to={`/changes${scopeQuery}`}>Change requests</Link>
        </Empty>
      ) : (
        <table className="table" data-testid="versions">
          <thead>
            <tr>
              <th scope="col">Version</th>
              <th scope="col">Summary</th>
              <th scope="col">Namespace</th>
              <th scope="col">Author</th>
              <th scope="col">Approvers</th>
              <th scope="col">Applied</th>
              <th scope="col">Rollout</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((version) => (
              <tr key={version.number} data-version={version.number} className={version.emergency ? "row-error" : ""}>
                <td>
                  <Link to={`/versions/${version.number}${scopeQuery}`}>v{version.number}</Link>
                </td>
                <td>
                  {version.summary}
                  {version.emergency && (
                    <span className="tag tag-danger" title={version.emergency_reason}>
                      emergency
                    </span>
                  )}
                </td>
                <td>{version.namespace}</td>
                <td>{version.author_name}</td>
                <td>{version.approver_names.length ? version.approver_names.join(", ") : "—"}</td>
                <td title={version.applied_at}>
                  {formatAgo(version.applied_at, now)}
                  <span className="muted"> by {version.applied_by_name}</span>
                </td>
                <td>
                  <RolloutBar rollout={version.rollout} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}
