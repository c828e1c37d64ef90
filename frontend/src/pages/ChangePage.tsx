import { useState, type FormEvent } from "react";
import { Link, useLocation, useNavigate, useParams } from "react-router";
import { apiSend, ApiError } from "../api/client";
import type { ChangeDiff, ChangePreview, ChangeRequest } from "../api/types";
import { WarningList } from "../components/ChangeItemEditor";
import { useApi, useMe, useNow, useScopeQuery } from "../components/hooks";
import { Dialog, SpecDiff, StateBadge } from "../components/PolicyBits";
import { Empty, ErrorState, Loading } from "../components/States";
import { formatAgo, formatPercent, formatRate } from "../model/format";
import { allowedActions, approvalSummary, isExpired, kindInfo } from "../model/policy";
import { describeValue } from "../model/specDiff";

// A value changed in place (a number, a string): worth a line of its own above the diff, unlike a whole section
// added or removed, which the diff shows better.
const isLeafChange = (entry: { before: unknown; after: unknown }) =>
  (entry.before === null || typeof entry.before !== "object") &&
  (entry.after === null || typeof entry.after !== "object") &&
  entry.before !== null &&
  entry.after !== null;

type Action = "submit" | "approve" | "reject" | "withdraw" | "apply" | "emergency";

export function ChangePage() {
  const { changeId = "" } = useParams();
  const valid = /^\d+$/.test(changeId);
  const base = `/api/v1/change-requests/${changeId}/`;
  // Others approve and apply while this page is open: keep it current.
  const change = useApi<ChangeRequest>(valid ? base : null, {}, 10_000);
  const diff = useApi<ChangeDiff>(valid ? `${base}diff/` : null);
  const preview = useApi<ChangePreview>(valid ? `${base}preview/` : null);
  const me = useMe();
  const now = useNow(5000);
  const location = useLocation();
  const navigate = useNavigate();
  const scopeQuery = useScopeQuery();
  const [busy, setBusy] = useState<Action | null>(null);
  const [actionError, setActionError] = useState<string | null>(null);
  const [dialog, setDialog] = useState<"reject" | "emergency" | null>(null);
  const [reason, setReason] = useState("");
  const [comment, setComment] = useState("");
  const [approveComment, setApproveComment] = useState("");
  const [commentError, setCommentError] = useState<string | null>(null);
  const saved = (location.state as { saved?: boolean } | null)?.saved === true;

  if (!valid) return <Empty title="No such change request" />;
  if (change.state === "error" && !change.data) {
    return change.error instanceof ApiError && change.error.status === 404 ? (
      <Empty title="No such change request">
        It may be in a namespace you may not view. <Link to={`/changes${scopeQuery}`}>All changes</Link>
      </Empty>
    ) : (
      <ErrorState error={change.error} onRetry={change.reload} />
    );
  }
  if (!change.data) return <Loading label="Loading the change request…" />;
  const data = change.data;
  const actions = allowedActions(data, me.data ?? null, now);
  const expired = isExpired(data, now);

  const reloadAll = () => {
    change.reload();
    diff.reload();
    preview.reload();
  };

  const act = async (action: Action, body?: Record<string, unknown>) => {
    const path = action === "emergency" ? "apply" : action;
    setBusy(action);
    setActionError(null);
    try {
      await apiSend<ChangeRequest>("POST", `${base}${path}/`, body ?? {});
      setDialog(null);
      setReason("");
      setApproveComment("");
    } catch (error) {
      setActionError(error instanceof Error ? error.message : String(error));
    } finally {
      setBusy(null);
      reloadAll();
    }
  };

  const sendComment = async (event: FormEvent) => {
    event.preventDefault();
    if (!comment.trim()) return;
    setCommentError(null);
    try {
      await apiSend("POST", `${base}comments/`, { body: comment });
      setComment("");
      change.reload();
    } catch (error) {
      setCommentError(error instanceof Error ? error.message : String(error));
    }
  };

  const warningCount = data.items.reduce((total, item) => total + (item.warnings?.length ?? 0), 0);
  const stale = diff.data?.items.some((item) => item.stale) ?? false;
  // Approve exactly the content on screen: the diff's digest, which the server checks is still current.
  const reviewedDigest = diff.data?.digest;

  return (
    <div className="page change-page" data-testid="change-page">
      <div className="page-header">
        <h1>
          <span className="muted">#{data.id}</span> {data.title}
        </h1>
        <StateBadge state={expired && data.state === "pending" ? "expired" : data.state} />
        {data.emergency && <span className="tag tag-danger">Emergency apply</span>}
        {data.restores !== null && (
          <Link className="tag" to={`/versions/${data.restores}${scopeQuery}`}>
            Rollback to v{data.restores}
          </Link>
        )}
      </div>
      {saved && data.state === "draft" && (
        <div className="notice" role="status" data-testid="saved-notice">
          Saved as a draft{warningCount ? ` with ${warningCount} warning${warningCount === 1 ? "" : "s"} (below)` : ""}.
          Submit it for review when it is ready.
        </div>
      )}
      {data.description && <p className="description">{data.description}</p>}

      <dl className="summary change-summary">
        <div>
          <dt>Namespace</dt>
          <dd>{data.namespace}</dd>
        </div>
        <div>
          <dt>Author</dt>
          <dd data-testid="change-author">{data.author}</dd>
        </div>
        <div>
          <dt>Created</dt>
          <dd title={data.created_at}>{formatAgo(data.created_at, now)}</dd>
        </div>
        {data.submitted_at && (
          <div>
            <dt>Submitted</dt>
            <dd title={data.submitted_at}>{formatAgo(data.submitted_at, now)}</dd>
          </div>
        )}
        {data.expires_at && (data.state === "pending" || data.state === "approved") && (
          <div>
            <dt>Expires</dt>
            <dd title={data.expires_at} className={expired ? "error-text" : undefined}>
              {expired ? "expired" : new Date(data.expires_at).toLocaleString()}
            </dd>
          </div>
        )}
        <div>
          <dt>Approvals</dt>
          <dd data-testid="approval-count">{approvalSummary(data)}</dd>
        </div>
        {data.decided_by && (
          <div>
            <dt>{data.state === "withdrawn" ? "Withdrawn by" : "Decided by"}</dt>
            <dd>{data.decided_by}</dd>
          </div>
        )}
        {data.applied_version !== null && (
          <div>
            <dt>Applied as</dt>
            <dd>
              <Link to={`/versions/${data.applied_version}${scopeQuery}`} data-testid="applied-version">
                config version {data.applied_version}
              </Link>
            </dd>
          </div>
        )}
      </dl>
      {data.decision_reason && (
        <p className="notice notice-danger">
          <strong>Rejected:</strong> {data.decision_reason}
        </p>
      )}
      {data.emergency_reason && (
        <p className="notice notice-danger">
          <strong>Applied in an emergency, without approval:</strong> {data.emergency_reason}
        </p>
      )}

      <section aria-labelledby="actions-title" className="actions-box">
        <h2 id="actions-title" className="visually-hidden">
          Actions
        </h2>
        {actionError && (
          <div className="state state-error" role="alert" data-testid="action-error">
            {actionError}
          </div>
        )}
        <div className="actions" role="toolbar" aria-label="Change actions">
          {actions.edit && (
            <Link className="button" to={`/changes/${data.id}/edit${scopeQuery}`}>
              Edit
            </Link>
          )}
          {actions.submit && (
            <button
              type="button"
              className="button primary"
              disabled={busy !== null}
              onClick={() => void act("submit")}
            >
              {busy === "submit" ? "Submitting…" : "Submit for review"}
            </button>
          )}
          {actions.approve && (
            <span className="approve-group">
              <label className="visually-hidden" htmlFor="approve-comment">
                Approval comment
              </label>
              <input
                id="approve-comment"
                type="text"
                placeholder="Comment (optional)"
                value={approveComment}
                onChange={(event) => setApproveComment(event.target.value)}
              />
              <button
                type="button"
                className="button primary"
                disabled={busy !== null || !reviewedDigest || stale}
                title={stale ? "The live policy moved on since this change was written." : undefined}
                onClick={() => void act("approve", { digest: reviewedDigest, comment: approveComment })}
              >
                {busy === "approve" ? "Approving…" : "Approve"}
              </button>
            </span>
          )}
          {actions.reject && (
            <button type="button" className="button" disabled={busy !== null} onClick={() => setDialog("reject")}>
              Reject…
            </button>
          )}
          {actions.apply && (
            <button type="button" className="button primary" disabled={busy !== null} onClick={() => void act("apply")}>
              {busy === "apply" ? "Applying…" : "Apply"}
            </button>
          )}
          {actions.withdraw && (
            <button type="button" className="button" disabled={busy !== null} onClick={() => void act("withdraw")}>
              {busy === "withdraw" ? "Withdrawing…" : "Withdraw"}
            </button>
          )}
          {actions.emergencyApply && (
            <button
              type="button"
              className="button danger"
              disabled={busy !== null}
              onClick={() => setDialog("emergency")}
            >
              Emergency apply…
            </button>
          )}
          {actions.approveBlocked && <span className="muted">{actions.approveBlocked}</span>}
          {data.state === "pending" && !actions.approve && !actions.approveBlocked && (
            <span className="muted">
              Waiting for {data.required_approvals - data.approval_count} more approval
              {data.required_approvals - data.approval_count === 1 ? "" : "s"}.
            </span>
          )}
        </div>
      </section>

      <Dialog open={dialog === "reject"} title={`Reject change #${data.id}`} onClose={() => setDialog(null)}>
        <form
          onSubmit={(event) => {
            event.preventDefault();
            if (reason.trim()) void act("reject", { reason });
          }}
        >
          <div className="field">
            <label htmlFor="reject-reason">Reason (the author sees it)</label>
            <textarea
              id="reject-reason"
              rows={4}
              required
              value={reason}
              onChange={(event) => setReason(event.target.value)}
            />
          </div>
          <div className="form-actions">
            <button type="button" className="button ghost" onClick={() => setDialog(null)}>
              Cancel
            </button>
            <button type="submit" className="button primary" disabled={!reason.trim() || busy !== null}>
              Reject
            </button>
          </div>
        </form>
      </Dialog>

      <Dialog
        open={dialog === "emergency"}
        tone="danger"
        title={`Emergency apply of change #${data.id}`}
        onClose={() => setDialog(null)}
      >
        <form
          onSubmit={(event) => {
            event.preventDefault();
            if (reason.trim()) void act("emergency", { emergency_reason: reason });
          }}
        >
          <p className="notice notice-danger" role="alert">
            <strong>This skips review.</strong> The change goes live at once without the approvals it needs
            {data.approval_count < data.required_approvals ? ` (${approvalSummary(data)} so far)` : ""}. It is audited
            and flagged as an emergency wherever it shows.
          </p>
          <div className="field">
            <label htmlFor="emergency-reason">Why it cannot wait for review (required)</label>
            <textarea
              id="emergency-reason"
              rows={4}
              required
              value={reason}
              onChange={(event) => setReason(event.target.value)}
            />
          </div>
          <div className="form-actions">
            <button type="button" className="button ghost" onClick={() => setDialog(null)}>
              Cancel
            </button>
            <button type="submit" className="button danger" disabled={!reason.trim() || busy !== null}>
              Apply without approval
            </button>
          </div>
        </form>
      </Dialog>

      <h2>Approvals</h2>
      {data.approvals.length === 0 ? (
        <p className="muted">
          None yet; {data.required_approvals} needed{data.state === "draft" ? " once it is submitted" : ""}.
        </p>
      ) : (
        <ul className="approvals" data-testid="approvals">
          {data.approvals.map((approval) => (
            <li key={`${approval.approver}-${approval.created_at}`}>
              <strong>{approval.approver}</strong>{" "}
              {approval.current ? (
                <span className="tag tag-ok">current</span>
              ) : (
                <span className="tag tag-warning" title="The change was edited after this approval.">
                  stale: approved an earlier content
                </span>
              )}{" "}
              <span className="muted" title={approval.created_at}>
                {formatAgo(approval.created_at, now)}
              </span>
              {approval.comment && <span> · {approval.comment}</span>}
            </li>
          ))}
        </ul>
      )}

      <h2>Changes</h2>
      {diff.state === "error" && !diff.data && <ErrorState error={diff.error} onRetry={diff.reload} />}
      {!diff.data && diff.state === "loading" && <Loading label="Loading the diff…" />}
      {diff.data && diff.data.digest !== data.digest && (
        <p className="notice">
          The change was edited since this diff was loaded.{" "}
          <button type="button" className="button" onClick={diff.reload}>
            Reload the diff
          </button>
        </p>
      )}
      {diff.data?.items.map((item, index) => {
        const own = data.items[index];
        return (
          <section className="diff-item" key={`${item.kind}-${item.name}-${index}`} data-testid="diff-item">
            <h3>
              <span className={`op op-${item.operation}`}>{item.operation}</span> {kindInfo(item.kind).label}{" "}
              <code>{item.name}</code>
              {item.service && item.service !== item.name && <span className="muted"> → {item.service}</span>}
              {item.stale && (
                <span className="tag tag-danger" title="Applying it would be refused.">
                  stale: the live policy changed since
                </span>
              )}
            </h3>
            <WarningList warnings={own?.warnings} />
            {item.changes.some(isLeafChange) && (
              <ul className="change-paths" aria-label="Changed fields">
                {item.changes.filter(isLeafChange).map((entry) => (
                  <li key={entry.path}>
                    <code>{entry.path}</code>: {describeValue(entry.before)} → {describeValue(entry.after)}
                  </li>
                ))}
              </ul>
            )}
            <SpecDiff before={item.before} after={item.after} changed={item.changes.map((entry) => entry.path)} />
          </section>
        );
      })}

      <h2>Impact on the last hour's traffic</h2>
      <Preview preview={preview} />

      <h2>Comments</h2>
      {data.comments.length === 0 ? (
        <p className="muted">No comments.</p>
      ) : (
        <ul className="comments" data-testid="comments">
          {data.comments.map((entry) => (
            <li key={entry.id}>
              <strong>{entry.author}</strong>{" "}
              <span className="muted" title={entry.created_at}>
                {formatAgo(entry.created_at, now)}
              </span>
              <p>{entry.body}</p>
            </li>
          ))}
        </ul>
      )}
      {actions.comment && (
        <form className="comment-form" onSubmit={(event) => void sendComment(event)}>
          <label htmlFor="comment-body">Add a comment</label>
          <textarea
            id="comment-body"
            rows={3}
            value={comment}
            maxLength={5000}
            aria-describedby="comment-error"
            onChange={(event) => setComment(event.target.value)}
          />
          {commentError && (
            <span id="comment-error" className="field-error" role="alert">
              {commentError}
            </span>
          )}
          <button type="submit" className="button" disabled={!comment.trim()}>
            Comment
          </button>
        </form>
      )}
      <p className="footnote">
        <button type="button" className="button ghost" onClick={() => navigate(`/changes${scopeQuery}`)}>
          ← All changes
        </button>
      </p>
    </div>
  );
}

/** A signed rate: "+0.31", "−0.31", "0". */
function formatShift(rps: number): string {
  const text = formatRate(Math.abs(rps));
  if (text === "0") return "0";
  return `${rps > 0 ? "+" : "−"}${text}`;
}

function Preview({ preview }: { preview: ReturnType<typeof useApi<ChangePreview>> }) {
  if (preview.state === "error" && !preview.data) return <ErrorState error={preview.error} onRetry={preview.reload} />;
  if (!preview.data) return <Loading label="Working out the impact…" />;
  const { authorization, splits, breakers, faults, observed_seconds: seconds } = preview.data;
  const nothing = !authorization.length && !splits.length && !breakers.length && !faults.length;
  return (
    <div className="preview" data-testid="preview">
      {nothing && (
        <p className="muted">
          Nothing this change does shows in the last {Math.round(seconds / 60)} minutes of traffic: no caller is allowed
          or denied differently, no split, breaker or fault changes.
        </p>
      )}
      {authorization.length > 0 && (
        <>
          <h3>Callers whose verdict changes</h3>
          <table className="table compact" data-testid="preview-authorization">
            <thead>
              <tr>
                <th scope="col">Caller</th>
                <th scope="col">Identity</th>
                <th scope="col">Destination</th>
                <th scope="col">rps</th>
                <th scope="col">Now</th>
                <th scope="col">After</th>
              </tr>
            </thead>
            <tbody>
              {authorization.map((row) => (
                <tr key={`${row.source}-${row.destination}`} className={row.after === "denied" ? "row-error" : ""}>
                  <td>{row.source}</td>
                  <td className="mono">{row.source_principal}</td>
                  <td>{row.destination}</td>
                  <td>{formatRate(row.rps)}</td>
                  <td>{row.before}</td>
                  <td>
                    <strong className={row.after === "denied" ? "error-text" : undefined}>{row.after}</strong>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
      {splits.map((split) => (
        <div key={split.service}>
          <h3>
            Split of {split.service} <span className="muted">({formatRate(split.rps)} rps)</span>
          </h3>
          <table className="table compact" data-testid="preview-split">
            <thead>
              <tr>
                <th scope="col">Version</th>
                <th scope="col">Share now</th>
                <th scope="col">Share after</th>
                <th scope="col">rps moving</th>
              </tr>
            </thead>
            <tbody>
              {split.versions.map((row) => (
                <tr key={row.version} data-version={row.version}>
                  <td>{row.version}</td>
                  <td>{formatPercent(row.current_share)}</td>
                  <td>{formatPercent(row.proposed_share)}</td>
                  <td>{formatShift(row.rps_shift)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ))}
      {breakers.length > 0 && (
        <>
          <h3>Breaker and outlier detection</h3>
          <table className="table compact" data-testid="preview-breakers">
            <thead>
              <tr>
                <th scope="col">Workload</th>
                <th scope="col">rps</th>
                <th scope="col">Errors</th>
                <th scope="col">Ejections per interval</th>
                <th scope="col">Mean in flight</th>
                <th scope="col">Limit</th>
              </tr>
            </thead>
            <tbody>
              {breakers.map((row) => {
                const refused =
                  row.max_requests !== null && row.mean_in_flight !== null && row.mean_in_flight > row.max_requests;
                return (
                  <tr
                    key={`${row.service}-${row.workload}`}
                    className={row.likely_ejected || refused ? "row-error" : ""}
                  >
                    <td>{row.workload}</td>
                    <td>{formatRate(row.rps)}</td>
                    <td>{formatPercent(row.error_rate)}</td>
                    <td>
                      {row.expected_ejections_per_interval ?? "—"}
                      {row.likely_ejected && <strong className="error-text"> likely ejected</strong>}
                    </td>
                    <td>{row.mean_in_flight === null ? "—" : row.mean_in_flight.toFixed(2)}</td>
                    <td>
                      {row.max_requests ?? "—"}
                      {refused && <strong className="error-text"> requests refused</strong>}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </>
      )}
      {faults.length > 0 && (
        <>
          <h3>Injected faults</h3>
          <table className="table compact" data-testid="preview-faults">
            <thead>
              <tr>
                <th scope="col">Service</th>
                <th scope="col">rps</th>
                <th scope="col">Aborted rps</th>
                <th scope="col">Delayed rps</th>
              </tr>
            </thead>
            <tbody>
              {faults.map((row) => (
                <tr key={row.service}>
                  <td>{row.service}</td>
                  <td>{formatRate(row.rps)}</td>
                  <td>{formatRate(row.aborted_rps)}</td>
                  <td>{formatRate(row.delayed_rps)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
      <p className="muted footnote">
        Judged against the last{" "}
        {seconds >= 120 ? `${Math.round(seconds / 60)} minutes` : `${Math.round(seconds)} seconds`} the mesh observed
        {preview.data.window_end ? `, up to ${new Date(preview.data.window_end).toLocaleTimeString()}` : ""}.
      </p>
    </div>
  );
}
