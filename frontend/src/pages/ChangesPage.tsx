import { Link, useSearchParams } from "react-router";
import type { ChangeRequest, Page } from "../api/types";
import { useApi, useMe, useNow, useScope, useScopeQuery } from "../components/hooks";
import { StateBadge } from "../components/PolicyBits";
import { Empty, ErrorState, Loading } from "../components/States";
import { formatAgo } from "../model/format";
import { approvalSummary, isExpired, namespacesWith, STATE_LABELS, type ChangeState } from "../model/policy";

const TABS = [
  { key: "awaiting", label: "Awaiting my review" },
  { key: "mine", label: "Mine" },
  { key: "all", label: "All" },
] as const;
type Tab = (typeof TABS)[number]["key"];

/** `/changes`: every change request, my own, or (`?awaiting=me`) my approvals inbox; filtered by state. */
export function ChangesPage() {
  const [params, setParams] = useSearchParams();
  const scope = useScope();
  const scopeQuery = useScopeQuery();
  const me = useMe();
  const now = useNow(10_000);
  const tab: Tab = params.get("awaiting") === "me" ? "awaiting" : params.get("author") ? "mine" : "all";
  const stateFilter = (params.get("state") ?? "") as ChangeState | "";
  const username = me.data?.username;
  const changes = useApi<Page<ChangeRequest>>(
    tab === "mine" && !username ? null : "/api/v1/change-requests/",
    {
      namespace: scope.namespace || undefined,
      state: stateFilter || undefined,
      awaiting: tab === "awaiting" ? "me" : undefined,
      author: tab === "mine" ? username : undefined,
      page_size: 100,
      ordering: "-created_at",
    },
    15_000,
  );
  const proposes = namespacesWith(me.data, "propose");
  const canPropose = proposes === null || (proposes?.length ?? 0) > 0;

  const tabLink = (next: Tab) => {
    const updated = new URLSearchParams(params);
    updated.delete("awaiting");
    updated.delete("author");
    if (next === "awaiting") updated.set("awaiting", "me");
    if (next === "mine") updated.set("author", "me");
    const text = updated.toString();
    return `/changes${text ? `?${text}` : ""}`;
  };
  const setState = (value: string) =>
    setParams((current) => {
      const updated = new URLSearchParams(current);
      if (value) updated.set("state", value);
      else updated.delete("state");
      return updated;
    });

  const rows = changes.data?.results ?? [];
  return (
    <div className="page">
      <div className="page-header">
        <h1>Change requests</h1>
        {canPropose && (
          <Link className="button primary" to={`/changes/new${scopeQuery}`}>
            Propose a change
          </Link>
        )}
      </div>
      <div className="tabs">
        <nav aria-label="Which changes">
          {TABS.map((entry) => (
            <Link
              key={entry.key}
              to={tabLink(entry.key)}
              aria-current={tab === entry.key ? "page" : undefined}
              className={tab === entry.key ? "tab active" : "tab"}
            >
              {entry.label}
              {entry.key === "awaiting" && tab === "awaiting" && changes.data
                ? ` (${changes.data.count ?? rows.length})`
                : ""}
            </Link>
          ))}
        </nav>
        <label className="tab-filter">
          State
          <select value={stateFilter} onChange={(event) => setState(event.target.value)}>
            <option value="">any</option>
            {Object.entries(STATE_LABELS).map(([value, label]) => (
              <option key={value} value={value}>
                {label}
              </option>
            ))}
          </select>
        </label>
      </div>
      <section id="changes-panel" aria-label={TABS.find((entry) => entry.key === tab)?.label}>
        {changes.state === "error" && !changes.data ? (
          <ErrorState error={changes.error} onRetry={changes.reload} />
        ) : !changes.data ? (
          <Loading label="Loading change requests…" />
        ) : rows.length === 0 ? (
          <Empty title={tab === "awaiting" ? "Nothing waits for your review" : "No change requests"}>
            {tab === "awaiting"
              ? "Submitted changes you may approve show up here."
              : `None${scope.namespace ? ` in ${scope.namespace}` : ""}${stateFilter ? ` in state ${stateFilter}` : ""}.`}
          </Empty>
        ) : (
          <table className="table" data-testid="changes">
            <thead>
              <tr>
                <th scope="col">#</th>
                <th scope="col">Title</th>
                <th scope="col">Namespace</th>
                <th scope="col">State</th>
                <th scope="col">Author</th>
                <th scope="col">Approvals</th>
                <th scope="col">Created</th>
                <th scope="col">Expires</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((change) => (
                <tr key={change.id} data-change={change.id}>
                  <td>{change.id}</td>
                  <td>
                    <Link to={`/changes/${change.id}${scopeQuery}`}>{change.title}</Link>
                    {change.emergency && <span className="tag tag-danger">emergency</span>}
                  </td>
                  <td>{change.namespace}</td>
                  <td>
                    <StateBadge
                      state={isExpired(change, now) && change.state === "pending" ? "expired" : change.state}
                    />
                  </td>
                  <td>{change.author}</td>
                  <td>{approvalSummary(change)}</td>
                  <td title={change.created_at}>{formatAgo(change.created_at, now)}</td>
                  <td title={change.expires_at ?? ""}>
                    {change.expires_at && (change.state === "pending" || change.state === "approved")
                      ? new Date(change.expires_at).toLocaleString()
                      : "—"}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>
    </div>
  );
}
