import { useCallback, useEffect, useRef, useState } from "react";
import { Link, useNavigate, useParams } from "react-router";
import { apiSend, ApiError } from "../api/client";
import type { ChangeRequest, ConfigVersionDetail } from "../api/types";
import { useApi, useMe, useNow, useScopeQuery } from "../components/hooks";
import { RolloutBar, SpecBlock } from "../components/PolicyBits";
import { Empty, ErrorState, Loading } from "../components/States";
import { formatAgo } from "../model/format";
import { capabilitiesIn, kindInfo } from "../model/policy";
import { useRolloutFeed } from "../live/useRolloutFeed";
import type { LiveMessage } from "../live/socket";
import { concernsVersion, describeRun, latestRunFor } from "../model/rollout";
import { rolloutView } from "../model/versions";

// Rollout events (/ws/rollout/) trigger a refetch, coalesced: events of one rollout come in quick batches.
const REFETCH_DELAY_MS = 300;
// While agents are pending: a slow poll in case the live feed is down, a slower one in case it misses something
// (an agent that catches up by pulling its config on a heartbeat publishes no event).
const FALLBACK_POLL_MS = 10_000;
const SAFETY_POLL_MS = 30_000;
const AGENT_STATE_HEALTH: Record<string, string> = { acked: "healthy", pending: "degraded", failed: "failing" };

/**
 * `/versions/:number`: one version, its rollout to every agent (live from /ws/rollout/, polled slowly while any
 * agent is pending), its document.
 */
export function VersionPage() {
  const { number = "" } = useParams();
  const valid = /^\d+$/.test(number);
  const [polling, setPolling] = useState(true);
  // The rollout feed: each event concerning this version (its snapshot or a later one) refetches the detail.
  const meshVersion = useRef(0);
  const refetchTimer = useRef<ReturnType<typeof setTimeout> | null>(null);
  const reloadRef = useRef<() => void>(() => undefined);
  const onRolloutMessage = useCallback((message: LiveMessage) => {
    if (!concernsVersion(message, meshVersion.current) || refetchTimer.current !== null) return;
    refetchTimer.current = setTimeout(() => {
      refetchTimer.current = null;
      reloadRef.current();
    }, REFETCH_DELAY_MS);
  }, []);
  useEffect(
    () => () => {
      if (refetchTimer.current !== null) clearTimeout(refetchTimer.current);
      refetchTimer.current = null;
    },
    [],
  );
  const { feed, connection } = useRolloutFeed(valid, onRolloutMessage);
  const live = connection === "open";
  const version = useApi<ConfigVersionDetail>(
    valid ? `/api/v1/config-versions/${number}/` : null,
    {},
    polling ? (live ? SAFETY_POLL_MS : FALLBACK_POLL_MS) : undefined,
  );
  useEffect(() => {
    reloadRef.current = version.reload;
    meshVersion.current = version.data?.mesh_version ?? 0;
  });
  const me = useMe();
  const now = useNow(5000);
  const navigate = useNavigate();
  const scopeQuery = useScopeQuery();
  const [rollbackError, setRollbackError] = useState<string | null>(null);
  const [rollingBack, setRollingBack] = useState(false);

  // Poll while any agent is still pending; stop once every agent acked or failed (events still refetch).
  const view = rolloutView(version.data?.rollout);
  const shouldPoll = !version.data || view.polling;
  if (version.data && shouldPoll !== polling) setPolling(shouldPoll);

  if (!valid) return <Empty title="No such config version" />;
  if (version.state === "error" && !version.data) {
    return version.error instanceof ApiError && version.error.status === 404 ? (
      <Empty title="No such config version">
        <Link to={`/versions${scopeQuery}`}>All versions</Link>
      </Empty>
    ) : (
      <ErrorState error={version.error} onRetry={version.reload} />
    );
  }
  if (!version.data) return <Loading label="Loading the config version…" />;
  const data = version.data;
  const run = latestRunFor(feed, data.mesh_version);
  const canRollBack = capabilitiesIn(me.data, data.namespace).has("propose");

  const rollback = async () => {
    setRollingBack(true);
    setRollbackError(null);
    try {
      const change = await apiSend<ChangeRequest>("POST", `/api/v1/config-versions/${data.number}/rollback/`, {});
      navigate(`/changes/${change.id}${scopeQuery}`, { state: { saved: true } });
    } catch (error) {
      setRollbackError(error instanceof Error ? error.message : String(error));
      setRollingBack(false);
    }
  };

  const byNamespace = new Map<string, typeof data.document>();
  for (const entry of data.document)
    byNamespace.set(entry.namespace, [...(byNamespace.get(entry.namespace) ?? []), entry]);

  return (
    <div className="page version-page">
      <div className="page-header">
        <h1>
          Config version {data.number} <span className="muted">· {data.summary}</span>
        </h1>
        {data.emergency && <span className="tag tag-danger">Emergency apply</span>}
        {canRollBack && (
          <button type="button" className="button" disabled={rollingBack} onClick={() => void rollback()}>
            {rollingBack ? "Opening…" : "Roll back to this version…"}
          </button>
        )}
      </div>
      {rollbackError && (
        <div className="state state-error" role="alert">
          {rollbackError}
        </div>
      )}
      {data.emergency && (
        <p className="notice notice-danger">
          <strong>Applied in an emergency, without approval:</strong> {data.emergency_reason}
        </p>
      )}
      <dl className="summary">
        <div>
          <dt>Namespace</dt>
          <dd>{data.namespace}</dd>
        </div>
        <div>
          <dt>Author</dt>
          <dd>{data.author_name}</dd>
        </div>
        <div>
          <dt>Approved by</dt>
          <dd>{data.approver_names.length ? data.approver_names.join(", ") : "—"}</dd>
        </div>
        <div>
          <dt>Applied</dt>
          <dd title={data.applied_at}>
            {new Date(data.applied_at).toLocaleString()} by {data.applied_by_name}
          </dd>
        </div>
        <div>
          <dt>Change request</dt>
          <dd>
            {data.change_request !== null ? (
              <Link to={`/changes/${data.change_request}${scopeQuery}`}>#{data.change_request}</Link>
            ) : (
              "—"
            )}
          </dd>
        </div>
        <div>
          <dt>Snapshot</dt>
          <dd className="mono">mesh v{data.mesh_version}</dd>
        </div>
      </dl>

      <h2>Rollout</h2>
      <div
        className="rollout-summary"
        data-testid="rollout"
        data-acked={data.rollout.acked}
        data-pending={data.rollout.pending}
        data-failed={data.rollout.failed}
        data-total={data.rollout.total}
        aria-live="polite"
      >
        <RolloutBar rollout={data.rollout} />
        <span className="muted" data-testid="rollout-live" data-connection={connection}>
          {view.polling
            ? live
              ? "● live"
              : `● updating every ${FALLBACK_POLL_MS / 1000} s (live feed ${connection})`
            : view.done
              ? "every agent runs this version"
              : ""}
        </span>
      </div>
      {run && (
        <p className="muted footnote" data-testid="rollout-run">
          {describeRun(run)}
        </p>
      )}
      {data.rollout.agents.length === 0 ? (
        <Empty title="No live agents">Agents that connect later pull this version when they register.</Empty>
      ) : (
        <table className="table compact" data-testid="rollout-agents">
          <thead>
            <tr>
              <th scope="col">Agent</th>
              <th scope="col">Namespace</th>
              <th scope="col">State</th>
              <th scope="col">Config it runs</th>
              <th scope="col">Agent status</th>
              <th scope="col">Detail</th>
            </tr>
          </thead>
          <tbody>
            {data.rollout.agents.map((agent) => (
              <tr key={agent.agent_id} data-state={agent.state} className={agent.state === "failed" ? "row-error" : ""}>
                <td className="mono">{agent.agent_id}</td>
                <td>{agent.namespace}</td>
                <td>
                  <span className={`health health-${AGENT_STATE_HEALTH[agent.state] ?? "idle"}`}>
                    <span className="health-mark" aria-hidden="true" />
                    {agent.state}
                  </span>
                </td>
                <td>{agent.config_version === null ? "none yet" : `mesh v${agent.config_version}`}</td>
                <td>{agent.status}</td>
                <td className={agent.state === "failed" ? "error-text" : "muted"}>{agent.detail || "—"}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <p className="muted footnote">
        Applied {formatAgo(data.applied_at, now)}. An agent counts once it acknowledged this snapshot or a later one;
        disconnected agents are left out.
      </p>

      <h2>Document</h2>
      {data.document.length === 0 ? (
        <Empty title="No policy">This version holds no policy you may view.</Empty>
      ) : (
        [...byNamespace.entries()].map(([namespace, entries]) => (
          <section key={namespace} className="document-namespace">
            <h3>{namespace}</h3>
            <ul className="policy-list">
              {entries.map((entry) => (
                <li key={`${entry.kind}-${entry.name}`} className="policy-card">
                  <div className="policy-head">
                    <span className="tag">{kindInfo(entry.kind).label}</span>
                    <strong>{entry.name}</strong>
                    {entry.service && <span className="muted">service {entry.service}</span>}
                  </div>
                  <SpecBlock spec={entry.spec} />
                </li>
              ))}
            </ul>
          </section>
        ))
      )}
    </div>
  );
}
