import { useId, useRef, useState, type FormEvent } from "react";
import { Link, useSearchParams } from "react-router";
import { apiSend, ApiError } from "../api/client";
import type { Agent, CaChange, CaRoot, CaStatus, IssuedCertificate, JoinToken, Namespace, Page } from "../api/types";
import { useApi, useMe, useNow, useScope, useScopeQuery } from "../components/hooks";
import { Dialog, FieldErrors } from "../components/PolicyBits";
import { Empty, ErrorState, Loading } from "../components/States";
import { formatAgo } from "../model/format";
import {
  caChangeActions,
  certificateExpiry,
  formatFingerprint,
  formatUntil,
  orderRoots,
  parseTtl,
  retireBlocked,
  tokenHint,
  tokenView,
  type CaViewer,
} from "../model/identity";
import { namespacesWith } from "../model/policy";

const TTL_CHOICES = ["1h", "24h", "7d", "30d"];
const DEFAULT_TTL = "24h";
const CERTIFICATE_PAGE = 100;

/**
 * `/identity`: workload identity. The CA's roots (rotations and retirements reviewed by a second person), join tokens of the
 * namespaces the user administers (the secret shown once, on creation), and the certificates the CA issued.
 */
export function IdentityPage() {
  const me = useMe();
  const scope = useScope();
  const managed = namespacesWith(me.data, "manage");
  const managesSome = managed === null || managed.length > 0;
  const everywhere = me.data?.capabilities_everywhere ?? [];
  const viewer: CaViewer = {
    username: me.data?.username ?? "",
    admin: Boolean(me.data && (me.data.is_superuser || everywhere.includes("manage"))),
    approver: Boolean(me.data && (me.data.is_superuser || everywhere.includes("approve"))),
  };
  return (
    <div className="page identity-page">
      <div className="page-header">
        <h1>Identity</h1>
        <span className="muted">
          workload certificates (SPIFFE ids) from the mesh's CA, and the join tokens agents prove themselves with
          {scope.namespace ? ` · ${scope.namespace}` : ""}
        </span>
      </div>
      <CertificateAuthority viewer={viewer} />
      {me.data && managesSome ? (
        <JoinTokens managed={managed} namespace={scope.namespace} />
      ) : me.data ? (
        <section aria-labelledby="tokens-heading">
          <h2 id="tokens-heading">Join tokens</h2>
          <p className="muted">Join tokens are for the admins of a namespace; you administer none.</p>
        </section>
      ) : null}
      <Certificates namespace={scope.namespace} />
    </div>
  );
}

// ---------------------------------------------------------------------------------------------------------------
// The certificate authority

interface CaProps {
  viewer: CaViewer;
}

type CaDialog = { kind: "rotate" } | { kind: "retire"; root: CaRoot } | { kind: "reject"; change: CaChange } | null;

function CertificateAuthority({ viewer }: CaProps) {
  const ca = useApi<CaStatus>("/api/v1/ca/", {}, 60_000);
  const reviewer = viewer.admin || viewer.approver;
  const changes = useApi<Page<CaChange>>(reviewer ? "/api/v1/ca-changes/" : null, {}, 15_000);
  const now = useNow(30_000);
  const [dialog, setDialog] = useState<CaDialog>(null);
  const [reason, setReason] = useState("");
  const [emergency, setEmergency] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const status = ca.data;

  const close = () => {
    setDialog(null);
    setReason("");
    setEmergency(false);
  };

  const send = async (path: string, body: object, done: (change: CaChange) => string) => {
    setBusy(true);
    setError(null);
    setNotice(null);
    try {
      const change = await apiSend<CaChange>("POST", path, body);
      setNotice(done(change));
      close();
      ca.reload();
      changes.reload();
    } catch (caught) {
      setError(caught instanceof Error ? caught.message : String(caught));
      close();
    } finally {
      setBusy(false);
    }
  };

  const request = (body: { operation: "rotate" } | { operation: "retire"; id: string }) =>
    void send(
      "/api/v1/ca-changes/",
      emergency ? { ...body, emergency_reason: reason } : { ...body, reason },
      (change) =>
        change.state === "applied"
          ? `CA change #${change.id} applied without approval (emergency).`
          : `CA change #${change.id} is waiting for ${change.required_approvals} approval(s) from someone else.`,
    );

  if (ca.state === "error" && !status) return <ErrorState error={ca.error} onRetry={ca.reload} />;
  if (!status) return <Loading label="Loading the CA…" />;
  const roots = orderRoots(status.roots);
  const canOperate = viewer.admin && !status.read_only;
  const pending = (changes.data?.results ?? []).filter((change) => change.state === "pending");
  return (
    <section aria-labelledby="ca-heading" data-testid="ca" data-read-only={status.read_only}>
      <div className="section-header">
        <h2 id="ca-heading">Certificate authority</h2>
        {canOperate && (
          <button type="button" className="button" disabled={busy} onClick={() => setDialog({ kind: "rotate" })}>
            Rotate CA…
          </button>
        )}
      </div>
      {status.read_only ? (
        <p className="notice" data-testid="ca-read-only">
          <strong>Read only.</strong> The CA comes from a mounted Secret (<code>MESH_CA_CERT_FILE</code>,{" "}
          <code>MESH_CA_KEY_FILE</code>): rotate it by updating the Secret, not here.
        </p>
      ) : (
        !viewer.admin && (
          <p className="muted">
            Admins of every namespace request CA rotations and root retirements; approvers of every namespace approve
            them.
          </p>
        )
      )}
      {error && (
        <div className="state state-error" role="alert">
          {error}
        </div>
      )}
      {notice && (
        <p className="notice" role="status" data-testid="ca-notice">
          {notice}
        </p>
      )}
      {roots.length === 0 ? (
        <Empty title="No root yet">The CA generates its root when the control plane first issues a certificate.</Empty>
      ) : (
        <table className="table" data-testid="ca-roots">
          <thead>
            <tr>
              <th scope="col">Root</th>
              <th scope="col">Fingerprint (SHA-256)</th>
              <th scope="col">Expires</th>
              <th scope="col">Role</th>
              {canOperate && <th scope="col">Action</th>}
            </tr>
          </thead>
          <tbody>
            {roots.map((root) => {
              const blocked = retireBlocked(root, status);
              const expiry = certificateExpiry(root.not_after, now);
              return (
                <tr
                  key={root.fingerprint_sha256}
                  data-root={root.id ?? ""}
                  data-fingerprint={root.fingerprint_sha256}
                  data-signing={root.signing}
                >
                  <td>
                    <div>{root.subject}</div>
                    {root.id && <div className="muted mono">id {root.id}</div>}
                  </td>
                  <td className="mono fingerprint">{formatFingerprint(root.fingerprint_sha256)}</td>
                  <td title={root.not_after} className={expiry.warning ? "expiry-warning" : undefined}>
                    {new Date(root.not_after).toLocaleDateString()}{" "}
                    <span className="muted">({formatUntil(root.not_after, now)})</span>
                  </td>
                  <td>
                    {root.signing ? (
                      <span className="tag tag-ok">signing</span>
                    ) : (
                      <span className="tag">trusted, not signing</span>
                    )}
                  </td>
                  {canOperate && (
                    <td>
                      {blocked ? (
                        <span className="muted">—</span>
                      ) : (
                        <button
                          type="button"
                          className="button"
                          disabled={busy}
                          onClick={() => setDialog({ kind: "retire", root })}
                        >
                          Retire…
                        </button>
                      )}
                    </td>
                  )}
                </tr>
              );
            })}
          </tbody>
        </table>
      )}

      {reviewer && (
        <CaChanges
          changes={pending}
          viewer={viewer}
          busy={busy}
          now={now}
          onApprove={(change) =>
            void send(`/api/v1/ca-changes/${change.id}/approve/`, {}, (done) =>
              done.state === "applied"
                ? `CA change #${done.id} approved and applied.`
                : `CA change #${done.id} approved; it needs ${done.required_approvals - done.approvals.length} more.`,
            )
          }
          onReject={(change) => setDialog({ kind: "reject", change })}
          onWithdraw={(change) =>
            void send(`/api/v1/ca-changes/${change.id}/withdraw/`, {}, (done) => `CA change #${done.id} withdrawn.`)
          }
        />
      )}

      <Dialog open={dialog?.kind === "rotate"} title="Rotate the CA" onClose={close}>
        <p>A new root is generated and signs every certificate from now on.</p>
        <ul>
          <li>Agents receive the new trust bundle with the next config push and re-issue their certificates.</li>
          <li>
            The old root stays trusted until you retire it, so calls between agents that have re-issued and agents that
            have not keep working.
          </li>
        </ul>
        <CaRequestFields reason={reason} emergency={emergency} onReason={setReason} onEmergency={setEmergency} />
        <div className="form-actions">
          <button type="button" className="button ghost" onClick={close}>
            Cancel
          </button>
          <button
            type="button"
            className={emergency ? "button danger" : "button primary"}
            disabled={busy || (emergency && !reason.trim())}
            onClick={() => request({ operation: "rotate" })}
          >
            {emergency ? "Rotate now" : "Request rotation"}
          </button>
        </div>
      </Dialog>

      <Dialog open={dialog?.kind === "retire"} tone="danger" title="Retire a root" onClose={close}>
        {dialog?.kind === "retire" && (
          <>
            <p className="notice notice-danger">
              <strong>Certificates this root signed stop being trusted.</strong> Agents that have not re-issued since
              the last rotation lose their mutual-TLS calls until they do.
            </p>
            <p>
              Root <span className="mono">{dialog.root.id}</span>
              <br />
              <span className="mono fingerprint">{formatFingerprint(dialog.root.fingerprint_sha256)}</span>
            </p>
            <CaRequestFields reason={reason} emergency={emergency} onReason={setReason} onEmergency={setEmergency} />
            <div className="form-actions">
              <button type="button" className="button ghost" onClick={close}>
                Cancel
              </button>
              <button
                type="button"
                className="button danger"
                disabled={busy || (emergency && !reason.trim())}
                onClick={() => dialog.root.id && request({ operation: "retire", id: dialog.root.id })}
              >
                {emergency ? "Retire now" : "Request retirement"}
              </button>
            </div>
          </>
        )}
      </Dialog>

      <Dialog open={dialog?.kind === "reject"} title="Reject a CA change" onClose={close}>
        {dialog?.kind === "reject" && (
          <form
            onSubmit={(event: FormEvent) => {
              event.preventDefault();
              void send(
                `/api/v1/ca-changes/${dialog.change.id}/reject/`,
                { reason },
                (done) => `CA change #${done.id} rejected.`,
              );
            }}
          >
            <label className="field">
              <span>Why (the requester sees this)</span>
              <textarea name="reason" value={reason} onChange={(event) => setReason(event.target.value)} required />
            </label>
            <div className="form-actions">
              <button type="button" className="button ghost" onClick={close}>
                Cancel
              </button>
              <button type="submit" className="button danger" disabled={busy || !reason.trim()}>
                Reject
              </button>
            </div>
          </form>
        )}
      </Dialog>
    </section>
  );
}

function CaRequestFields({
  reason,
  emergency,
  onReason,
  onEmergency,
}: {
  reason: string;
  emergency: boolean;
  onReason: (value: string) => void;
  onEmergency: (value: boolean) => void;
}) {
  const id = useId();
  return (
    <>
      <p className="muted">
        Someone else who may approve in every namespace approves it; it is applied with the last approval.
      </p>
      <label className="field" htmlFor={`${id}-reason`}>
        <span>{emergency ? "Why it cannot wait for approval (audited)" : "Reason (optional)"}</span>
        <textarea id={`${id}-reason`} name="reason" value={reason} onChange={(event) => onReason(event.target.value)} />
      </label>
      <label className="checkbox">
        <input type="checkbox" checked={emergency} onChange={(event) => onEmergency(event.target.checked)} /> Apply now,
        without approval (emergency)
      </label>
    </>
  );
}

function CaChanges({
  changes,
  viewer,
  busy,
  now,
  onApprove,
  onReject,
  onWithdraw,
}: {
  changes: CaChange[];
  viewer: CaViewer;
  busy: boolean;
  now: Date;
  onApprove: (change: CaChange) => void;
  onReject: (change: CaChange) => void;
  onWithdraw: (change: CaChange) => void;
}) {
  return (
    <div data-testid="ca-changes">
      <h3>Changes awaiting approval</h3>
      {changes.length === 0 ? (
        <p className="muted">None.</p>
      ) : (
        <table className="table">
          <thead>
            <tr>
              <th scope="col">Change</th>
              <th scope="col">Requested by</th>
              <th scope="col">Approvals</th>
              <th scope="col">Expires</th>
              <th scope="col">Action</th>
            </tr>
          </thead>
          <tbody>
            {changes.map((change) => {
              const allowed = caChangeActions(change, viewer);
              return (
                <tr key={change.id} data-testid="ca-change" data-change={change.id} data-operation={change.operation}>
                  <td>
                    #{change.id} {change.operation === "rotate" ? "rotate the CA" : `retire root ${change.root_id}`}
                    {change.reason && <div className="muted">{change.reason}</div>}
                  </td>
                  <td>{change.requested_by}</td>
                  <td>
                    {change.approvals.length} of {change.required_approvals}
                    {change.approvals.length > 0 && (
                      <div className="muted">{change.approvals.map((approval) => approval.approver).join(", ")}</div>
                    )}
                  </td>
                  <td title={change.expires_at}>{formatUntil(change.expires_at, now)}</td>
                  <td className="actions">
                    {allowed.approve && (
                      <button
                        type="button"
                        className="button primary"
                        disabled={busy}
                        onClick={() => onApprove(change)}
                      >
                        Approve
                      </button>
                    )}
                    {allowed.reject && (
                      <button type="button" className="button" disabled={busy} onClick={() => onReject(change)}>
                        Reject…
                      </button>
                    )}
                    {allowed.withdraw && (
                      <button type="button" className="button ghost" disabled={busy} onClick={() => onWithdraw(change)}>
                        Withdraw
                      </button>
                    )}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
    </div>
  );
}

// ---------------------------------------------------------------------------------------------------------------
// Join tokens

interface TokenDraft {
  namespace: string;
  service_account: string;
  ttl: string;
  description: string;
}

function JoinTokens({ managed, namespace }: { managed: string[] | null; namespace: string }) {
  const tokens = useApi<Page<JoinToken>>("/api/v1/join-tokens/", { page_size: 500 }, 30_000);
  const namespaces = useApi<Page<Namespace>>(managed === null ? "/api/v1/namespaces/" : null, {
    page_size: 500,
    ordering: "name",
  });
  const now = useNow(15_000);
  const choices = managed ?? namespaces.data?.results.map((entry) => entry.name) ?? [];
  const [created, setCreated] = useState<JoinToken | null>(null);
  const [revoking, setRevoking] = useState<JoinToken | null>(null);
  const [revokeError, setRevokeError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [showAll, setShowAll] = useState(true);

  const revoke = async (token: JoinToken) => {
    setBusy(true);
    setRevokeError(null);
    try {
      await apiSend<null>("DELETE", `/api/v1/join-tokens/${token.id}/`);
      setRevoking(null);
      tokens.reload();
    } catch (caught) {
      setRevokeError(caught instanceof Error ? caught.message : String(caught));
      setRevoking(null);
    } finally {
      setBusy(false);
    }
  };

  const rows = (tokens.data?.results ?? []).filter(
    (token) => (!namespace || token.namespace === namespace) && (showAll || tokenView(token, now).revocable),
  );
  return (
    <section aria-labelledby="tokens-heading" data-testid="join-tokens">
      <h2 id="tokens-heading">Join tokens</h2>
      <p className="muted">
        An agent presents a join token once, to get its first certificate: the token grants the identity of its
        namespace and service account, nothing else. Tokens are stored hashed; the secret is shown only when created.
      </p>
      <TokenForm
        key={namespace}
        choices={choices}
        initialNamespace={namespace && choices.includes(namespace) ? namespace : (choices[0] ?? "")}
        onCreated={(token) => {
          setCreated(token);
          tokens.reload();
        }}
      />
      {created?.token && <CreatedToken token={created} onDone={() => setCreated(null)} />}
      {revokeError && (
        <div className="state state-error" role="alert">
          {revokeError}
        </div>
      )}
      <div className="section-header">
        <h3>Tokens{namespace ? ` in ${namespace}` : ""}</h3>
        <label className="checkbox">
          <input type="checkbox" checked={!showAll} onChange={(event) => setShowAll(!event.target.checked)} />
          usable only
        </label>
      </div>
      {tokens.state === "error" && !tokens.data ? (
        <ErrorState error={tokens.error} onRetry={tokens.reload} />
      ) : !tokens.data ? (
        <Loading label="Loading join tokens…" />
      ) : rows.length === 0 ? (
        <Empty title="No join tokens">
          {showAll ? "Create one above for an agent to join with." : "None is usable: create one above."}
        </Empty>
      ) : (
        <table className="table" data-testid="join-token-list">
          <thead>
            <tr>
              <th scope="col">Token</th>
              <th scope="col">Namespace</th>
              <th scope="col">Service account</th>
              <th scope="col">Description</th>
              <th scope="col">State</th>
              <th scope="col">Created</th>
              <th scope="col">Last used</th>
              <th scope="col">Action</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((token) => {
              const view = tokenView(token, now);
              return (
                <tr key={token.id} data-prefix={token.prefix} data-state={view.state}>
                  <td className="mono">{tokenHint(token.prefix)}</td>
                  <td>{token.namespace}</td>
                  <td>{token.service_account || <span className="muted">any</span>}</td>
                  <td>{token.description || <span className="muted">—</span>}</td>
                  <td data-testid="token-state" title={view.state === "usable" ? token.expires_at : undefined}>
                    <span className={`health health-${view.health}`}>
                      <span className="health-mark" aria-hidden="true" />
                      {view.label}
                    </span>
                  </td>
                  <td title={token.created_at}>{formatAgo(token.created_at, now)}</td>
                  <td title={token.last_used_at ?? ""}>{formatAgo(token.last_used_at, now)}</td>
                  <td>
                    {view.revocable ? (
                      <button type="button" className="button" disabled={busy} onClick={() => setRevoking(token)}>
                        Revoke…
                      </button>
                    ) : (
                      <span className="muted">—</span>
                    )}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
      <Dialog open={revoking !== null} tone="danger" title="Revoke a join token" onClose={() => setRevoking(null)}>
        {revoking && (
          <>
            <p>
              <span className="mono">{tokenHint(revoking.prefix)}</span> for{" "}
              <strong>
                {revoking.namespace}
                {revoking.service_account ? ` / ${revoking.service_account}` : ""}
              </strong>{" "}
              stops working at once: no agent can join with it any more. Agents that already joined keep their
              certificates and renew them with those.
            </p>
            <div className="form-actions">
              <button type="button" className="button ghost" onClick={() => setRevoking(null)}>
                Cancel
              </button>
              <button type="button" className="button danger" disabled={busy} onClick={() => void revoke(revoking)}>
                {busy ? "Revoking…" : "Revoke token"}
              </button>
            </div>
          </>
        )}
      </Dialog>
    </section>
  );
}

function TokenForm({
  choices,
  initialNamespace,
  onCreated,
}: {
  choices: string[];
  initialNamespace: string;
  onCreated: (token: JoinToken) => void;
}) {
  const [draft, setDraft] = useState<TokenDraft>({
    namespace: initialNamespace,
    service_account: "",
    ttl: DEFAULT_TTL,
    description: "",
  });
  const [errors, setErrors] = useState<Record<string, string[]>>({});
  const [topError, setTopError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const ids = useId();
  // The namespace list may arrive after the form: take its first entry then, unless the user picked one.
  const namespace = draft.namespace || initialNamespace;

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    const ttl = parseTtl(draft.ttl);
    const local: Record<string, string[]> = {};
    if (!namespace) local.namespace = ["Pick a namespace."];
    if ("error" in ttl) local.ttl = [ttl.error];
    setErrors(local);
    setTopError(null);
    if (Object.keys(local).length) return;
    setBusy(true);
    try {
      const token = await apiSend<JoinToken>("POST", "/api/v1/join-tokens/", {
        namespace,
        service_account: draft.service_account.trim(),
        ttl: draft.ttl.trim(),
        description: draft.description.trim(),
      });
      setDraft({ namespace, service_account: "", ttl: DEFAULT_TTL, description: "" });
      onCreated(token);
    } catch (caught) {
      if (caught instanceof ApiError && caught.status === 400 && Object.keys(caught.fields).length) {
        const { non_field_errors: general, ...fields } = caught.fields;
        setErrors(fields);
        if (general) setTopError(general.join(" "));
      } else {
        setTopError(caught instanceof Error ? caught.message : String(caught));
      }
    } finally {
      setBusy(false);
    }
  };

  const field = (name: keyof TokenDraft) => ({
    id: `${ids}-${name}`,
    "aria-invalid": errors[name] ? true : undefined,
    "aria-describedby": `${ids}-${name}-error`,
  });
  return (
    <form className="form-card" aria-label="New join token" onSubmit={(event) => void submit(event)}>
      <div className="form-grid">
        <div className="field">
          <label htmlFor={`${ids}-namespace`}>Namespace</label>
          <select
            {...field("namespace")}
            value={namespace}
            onChange={(event) => setDraft({ ...draft, namespace: event.target.value })}
          >
            {choices.length === 0 && <option value="">none you administer</option>}
            {choices.map((name) => (
              <option key={name} value={name}>
                {name}
              </option>
            ))}
          </select>
          <FieldErrors id={`${ids}-namespace-error`} messages={errors.namespace} />
        </div>
        <div className="field">
          <label htmlFor={`${ids}-service_account`}>Service account</label>
          <input
            {...field("service_account")}
            type="text"
            value={draft.service_account}
            maxLength={63}
            placeholder="any in the namespace"
            onChange={(event) => setDraft({ ...draft, service_account: event.target.value })}
          />
          <FieldErrors id={`${ids}-service_account-error`} messages={errors.service_account} />
        </div>
        <div className="field">
          <label htmlFor={`${ids}-ttl`}>Usable for</label>
          <input
            {...field("ttl")}
            type="text"
            list={`${ids}-ttl-choices`}
            value={draft.ttl}
            size={8}
            onChange={(event) => setDraft({ ...draft, ttl: event.target.value })}
          />
          <datalist id={`${ids}-ttl-choices`}>
            {TTL_CHOICES.map((choice) => (
              <option key={choice} value={choice} />
            ))}
          </datalist>
          <span className="hint muted">30m, 24h, 7d; at most 30d</span>
          <FieldErrors id={`${ids}-ttl-error`} messages={errors.ttl} />
        </div>
        <div className="field wide">
          <label htmlFor={`${ids}-description`}>Description</label>
          <input
            {...field("description")}
            type="text"
            value={draft.description}
            maxLength={200}
            placeholder="What joins with it: reviews v3 on node-7"
            onChange={(event) => setDraft({ ...draft, description: event.target.value })}
          />
          <FieldErrors id={`${ids}-description-error`} messages={errors.description} />
        </div>
      </div>
      {topError && (
        <div className="field-error" role="alert">
          {topError}
        </div>
      )}
      <div className="form-actions">
        <button type="submit" className="button primary" disabled={busy || choices.length === 0}>
          {busy ? "Creating…" : "Create join token"}
        </button>
      </div>
    </form>
  );
}

/** The new token's secret, once: copy it now or never. */
function CreatedToken({ token, onDone }: { token: JoinToken; onDone: () => void }) {
  const input = useRef<HTMLInputElement>(null);
  const [copied, setCopied] = useState<"yes" | "select" | null>(null);
  const secret = token.token ?? "";
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(secret);
      setCopied("yes");
    } catch {
      // No clipboard access (a page served over plain HTTP from another host): select it for Ctrl+C.
      input.current?.select();
      setCopied("select");
    }
  };
  return (
    <div className="secret-box" role="region" aria-label="New join token" data-testid="created-token">
      <p className="notice notice-danger" role="alert">
        <strong>Copy this token now: it is shown once.</strong> The control plane keeps only its hash and cannot show it
        again. It grants{" "}
        <strong>
          {token.namespace}
          {token.service_account ? ` / ${token.service_account}` : " (any service account)"}
        </strong>{" "}
        until {new Date(token.expires_at).toLocaleString()}.
      </p>
      <div className="secret-row">
        <input
          ref={input}
          className="mono secret"
          type="text"
          readOnly
          value={secret}
          aria-label="Join token secret"
          data-testid="token-secret"
          onFocus={(event) => event.target.select()}
        />
        <button type="button" className="button" onClick={() => void copy()}>
          Copy
        </button>
        <button type="button" className="button ghost" onClick={onDone}>
          I have copied it
        </button>
      </div>
      {copied && (
        <span className="muted" role="status">
          {copied === "yes" ? "Copied to the clipboard." : "Selected: press Ctrl+C (or ⌘C) to copy."}
        </span>
      )}
    </div>
  );
}

// ---------------------------------------------------------------------------------------------------------------
// Issued certificates

function Certificates({ namespace }: { namespace: string }) {
  const [params, setParams] = useSearchParams();
  const scopeQuery = useScopeQuery();
  const agent = params.get("agent") ?? "";
  const [typed, setTyped] = useState(agent);
  const certificates = useApi<Page<IssuedCertificate>>(
    "/api/v1/certificates/",
    { agent_id: agent || undefined, page_size: CERTIFICATE_PAGE, ordering: "-issued_at" },
    30_000,
  );
  const agents = useApi<Page<Agent>>("/api/v1/agents/", {
    namespace: namespace || undefined,
    page_size: 500,
    ordering: "agent_id",
  });
  const now = useNow(30_000);
  const listId = useId();
  const setAgent = (value: string) =>
    setParams((current) => {
      const next = new URLSearchParams(current);
      if (value) next.set("agent", value);
      else next.delete("agent");
      return next;
    });
  const rows = (certificates.data?.results ?? []).filter((row) => !namespace || row.namespace === namespace);
  const total = certificates.data?.count;
  return (
    <section aria-labelledby="certificates-heading" data-testid="certificates">
      <h2 id="certificates-heading">Issued certificates</h2>
      <form
        className="toolbar"
        role="search"
        aria-label="Filter certificates"
        onSubmit={(event) => {
          event.preventDefault();
          setAgent(typed.trim());
        }}
      >
        <label>
          Agent
          <input
            type="search"
            list={listId}
            value={typed}
            size={40}
            placeholder="every agent"
            aria-label="Agent id"
            onChange={(event) => setTyped(event.target.value)}
          />
        </label>
        <datalist id={listId}>
          {agents.data?.results.map((entry) => (
            <option key={entry.id} value={entry.agent_id} />
          ))}
        </datalist>
        <button type="submit" className="button">
          Filter
        </button>
        {agent && (
          <button
            type="button"
            className="button ghost"
            onClick={() => {
              setTyped("");
              setAgent("");
            }}
          >
            Every agent
          </button>
        )}
      </form>
      {certificates.state === "error" && !certificates.data ? (
        <ErrorState error={certificates.error} onRetry={certificates.reload} />
      ) : !certificates.data ? (
        <Loading label="Loading certificates…" />
      ) : rows.length === 0 ? (
        <Empty title="No certificates">
          {agent ? `None issued to ${agent}.` : "Agents get one when they join with a token."}
        </Empty>
      ) : (
        <>
          <table className="table compact" data-testid="certificate-list">
            <thead>
              <tr>
                <th scope="col">SPIFFE id</th>
                <th scope="col">Agent</th>
                <th scope="col">Serial</th>
                <th scope="col">Root (SHA-256)</th>
                <th scope="col">Proof</th>
                <th scope="col">Issued</th>
                <th scope="col">Expires</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((row) => {
                const expiry = certificateExpiry(row.not_after, now);
                return (
                  <tr key={row.serial} data-serial={row.serial}>
                    <td className="mono spiffe">{row.spiffe_id}</td>
                    <td className="mono">
                      {row.agent_id ? (
                        <Link
                          to={`/identity${scopeQuery}${scopeQuery ? "&" : "?"}agent=${encodeURIComponent(row.agent_id)}`}
                          onClick={() => setTyped(row.agent_id)}
                        >
                          {row.agent_id}
                        </Link>
                      ) : (
                        "—"
                      )}
                    </td>
                    <td className="mono serial" title={row.serial}>
                      {row.serial.length > 16 ? `${row.serial.slice(0, 16)}…` : row.serial}
                    </td>
                    <td className="mono" title={row.authority}>
                      {row.authority ? `${formatFingerprint(row.authority).slice(0, 23)}…` : "—"}
                    </td>
                    <td>{row.credential || "—"}</td>
                    <td title={row.issued_at}>{formatAgo(row.issued_at, now)}</td>
                    <td title={row.not_after} data-state={expiry.state}>
                      <span className={expiry.warning ? "expiry-warning" : undefined}>
                        {expiry.warning && <span aria-hidden="true">⚠ </span>}
                        {expiry.label}
                      </span>
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
          {total !== undefined && total > CERTIFICATE_PAGE && (
            <p className="muted footnote">
              The latest {CERTIFICATE_PAGE} of {total}; filter by agent to see one agent's history.
            </p>
          )}
        </>
      )}
    </section>
  );
}
