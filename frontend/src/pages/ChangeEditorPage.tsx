import { useState, type FormEvent } from "react";
import { Link, useNavigate, useParams, useSearchParams } from "react-router";
import { apiSend, ApiError } from "../api/client";
import type { ChangeRequest, LivePolicy, Namespace, Page, PolicyKind, Service } from "../api/types";
import { ChangeItemEditor } from "../components/ChangeItemEditor";
import { useApi, useMe, useScopeQuery } from "../components/hooks";
import { FieldErrors } from "../components/PolicyBits";
import { Empty, ErrorState, Loading } from "../components/States";
import { draftFromItem, itemPayload, newDraftItem, type DraftItem } from "../model/changeDraft";
import { errorsUnder, flattenErrors, type ErrorMap } from "../model/errors";
import { allowedActions, KINDS, kindInfo, namespacesWith } from "../model/policy";

interface Draft {
  namespace: string;
  title: string;
  description: string;
  items: DraftItem[];
}

/** `/changes/new` (optionally `?ns=&kind=&service=`, or `?from=<kind>:<policy id>&op=update|delete`). */
export function ChangeEditorPage() {
  const { changeId } = useParams();
  return changeId ? <EditExisting changeId={changeId} /> : <CreateNew />;
}

function CreateNew() {
  const [params] = useSearchParams();
  const from = params.get("from");
  const [fromKind, fromId] = from?.split(":") ?? [];
  const fromInfo = fromKind ? KINDS.find((kind) => kind.kind === fromKind) : undefined;
  const source = useApi<LivePolicy>(
    fromInfo && fromId && /^\d+$/.test(fromId) ? `${fromInfo.endpoint}${fromId}/` : null,
  );
  if (from) {
    if (!fromInfo || !fromId) return <Empty title="Nothing to propose a change to">The link names no policy.</Empty>;
    if (source.state === "error") return <ErrorState error={source.error} onRetry={source.reload} />;
    if (!source.data) return <Loading label="Loading the live policy…" />;
    const policy = source.data;
    const operation = params.get("op") === "delete" ? "delete" : "update";
    const verb = operation === "delete" ? "Delete" : "Change";
    return (
      <Editor
        initial={{
          namespace: policy.namespace,
          title: `${verb} ${kindInfo(policy.kind).label.toLowerCase()} ${policy.name}`,
          description: "",
          items: [draftFromItem(1, { ...policy, operation, spec: operation === "delete" ? null : policy.spec })],
        }}
      />
    );
  }
  const kind = (KINDS.find((entry) => entry.kind === params.get("kind"))?.kind ?? "traffic") as PolicyKind;
  return (
    <Editor
      initial={{
        namespace: params.get("ns") ?? "",
        title: "",
        description: "",
        items: [newDraftItem(1, kind, params.get("service") ?? "")],
      }}
    />
  );
}

function EditExisting({ changeId }: { changeId: string }) {
  const change = useApi<ChangeRequest>(/^\d+$/.test(changeId) ? `/api/v1/change-requests/${changeId}/` : null);
  const me = useMe();
  if (!/^\d+$/.test(changeId)) return <Empty title="No such change request" />;
  if (change.state === "error") return <ErrorState error={change.error} onRetry={change.reload} />;
  if (!change.data || me.state === "loading") return <Loading label="Loading the change request…" />;
  const data = change.data;
  if (!allowedActions(data, me.data ?? null, new Date()).edit) {
    return (
      <Empty title="This change cannot be edited">
        Only its author edits an open change request (it is {data.state}).{" "}
        <Link to={`/changes/${data.id}`}>Back to change #{data.id}</Link>
      </Empty>
    );
  }
  return (
    <Editor
      existing={data}
      initial={{
        namespace: data.namespace,
        title: data.title,
        description: data.description,
        items: data.items.map((item, index) => draftFromItem(index + 1, item)),
      }}
    />
  );
}

function Editor({ initial, existing }: { initial: Draft; existing?: ChangeRequest }) {
  const navigate = useNavigate();
  const scopeQuery = useScopeQuery();
  const me = useMe();
  const [draft, setDraft] = useState<Draft>(initial);
  const [errors, setErrors] = useState<ErrorMap>({});
  const [failure, setFailure] = useState<string | null>(null);
  const [saving, setSaving] = useState(false);
  const [nextKey, setNextKey] = useState(initial.items.length + 1);
  const namespaces = useApi<Page<Namespace>>("/api/v1/namespaces/", { page_size: 500, ordering: "name" });
  const services = useApi<Page<Service>>(draft.namespace ? "/api/v1/services/" : null, {
    namespace: draft.namespace,
    page_size: 500,
    ordering: "name",
  });
  const proposable = namespacesWith(me.data, "propose");
  const choices = (namespaces.data?.results.map((namespace) => namespace.name) ?? []).filter(
    (name) => proposable === null || proposable.includes(name),
  );
  const serviceNames = services.data?.results.map((service) => service.name) ?? [];

  const setItem = (index: number, item: DraftItem) =>
    setDraft((current) => ({ ...current, items: current.items.map((entry, at) => (at === index ? item : entry)) }));

  const save = async (event: FormEvent) => {
    event.preventDefault();
    setFailure(null);
    const payloads = draft.items.map(itemPayload);
    const local: ErrorMap = {};
    payloads.forEach((payload, index) => {
      if (!payload.ok) local[`items[${index}]`] = [payload.error];
    });
    if (!draft.namespace) local.namespace = ["Pick a namespace."];
    if (Object.keys(local).length) {
      setErrors(local);
      return;
    }
    const items = payloads.flatMap((payload) => (payload.ok ? [payload.item] : []));
    setSaving(true);
    try {
      const saved = existing
        ? await apiSend<ChangeRequest>("PATCH", `/api/v1/change-requests/${existing.id}/`, {
            title: draft.title,
            description: draft.description,
            items,
          })
        : await apiSend<ChangeRequest>("POST", "/api/v1/change-requests/", {
            namespace: draft.namespace,
            title: draft.title,
            description: draft.description,
            items,
          });
      setErrors({});
      navigate(`/changes/${saved.id}${scopeQuery}`, { state: { saved: true } });
    } catch (error) {
      if (error instanceof ApiError && error.status === 400 && error.body && typeof error.body === "object") {
        setErrors(flattenErrors(error.body));
        setFailure("The change was not saved: fix the fields marked below.");
      } else {
        setFailure(error instanceof Error ? error.message : String(error));
      }
    } finally {
      setSaving(false);
    }
  };

  if (me.state === "ready" && proposable !== null && proposable.length === 0) {
    return (
      <Empty title="You cannot propose changes">
        Proposing a policy change needs the editor role in a namespace. Ask an admin.
      </Empty>
    );
  }

  const topErrors = Object.entries(errors)
    .filter(([path]) => !["title", "description", "namespace", "items"].includes(path) && !path.startsWith("items["))
    .flatMap(([path, messages]) => messages.map((message) => (path ? `${path}: ${message}` : message)));

  return (
    <div className="page change-editor">
      <div className="page-header">
        <h1>{existing ? `Edit change #${existing.id}` : "Propose a policy change"}</h1>
        {existing && existing.state !== "draft" && (
          <span className="tag tag-warning">Editing voids the approvals it has: it goes back to review.</span>
        )}
      </div>
      <form onSubmit={(event) => void save(event)} aria-label="Change request" noValidate>
        {failure && (
          <div className="state state-error" role="alert" data-testid="save-error">
            {failure}
            {topErrors.length > 0 && (
              <ul>
                {topErrors.map((message) => (
                  <li key={message}>{message}</li>
                ))}
              </ul>
            )}
          </div>
        )}
        <div className="form-card">
          <div className="form-grid">
            <div className="field">
              <label htmlFor="change-namespace">Namespace of the change</label>
              <select
                id="change-namespace"
                value={draft.namespace}
                disabled={Boolean(existing)}
                aria-invalid={errors.namespace ? true : undefined}
                aria-describedby="change-namespace-error"
                onChange={(event) => setDraft({ ...draft, namespace: event.target.value })}
              >
                <option value="">Pick one…</option>
                {(draft.namespace && !choices.includes(draft.namespace) ? [draft.namespace, ...choices] : choices).map(
                  (name) => (
                    <option key={name} value={name}>
                      {name}
                    </option>
                  ),
                )}
              </select>
              <FieldErrors id="change-namespace-error" messages={errors.namespace} />
            </div>
            <div className="field wide">
              <label htmlFor="change-title">Title</label>
              <input
                id="change-title"
                type="text"
                value={draft.title}
                required
                maxLength={200}
                placeholder="Send 10 % of reviews traffic to v2"
                aria-invalid={errors.title ? true : undefined}
                aria-describedby="change-title-error"
                onChange={(event) => setDraft({ ...draft, title: event.target.value })}
              />
              <FieldErrors id="change-title-error" messages={errors.title} />
            </div>
          </div>
          <div className="field">
            <label htmlFor="change-description">Description</label>
            <textarea
              id="change-description"
              rows={3}
              value={draft.description}
              maxLength={5000}
              placeholder="Why, and how to tell it works."
              aria-describedby="change-description-error"
              onChange={(event) => setDraft({ ...draft, description: event.target.value })}
            />
            <FieldErrors id="change-description-error" messages={errors.description} />
          </div>
        </div>

        <h2>Items</h2>
        <FieldErrors id="change-items-error" messages={errors.items} />
        {draft.items.map((item, index) => (
          <ChangeItemEditor
            key={item.key}
            item={item}
            index={index}
            errors={errorsUnder(errors, `items[${index}]`)}
            warnings={existing?.items[index]?.warnings}
            services={serviceNames}
            onChange={(next) => setItem(index, next)}
            onRemove={
              draft.items.length > 1
                ? () => setDraft({ ...draft, items: draft.items.filter((_entry, at) => at !== index) })
                : undefined
            }
          />
        ))}
        <div className="form-actions">
          <button
            type="button"
            className="button"
            onClick={() => {
              setDraft({ ...draft, items: [...draft.items, newDraftItem(nextKey)] });
              setNextKey(nextKey + 1);
            }}
          >
            Add item
          </button>
          <span className="spacer" />
          <Link
            className="button ghost"
            to={existing ? `/changes/${existing.id}${scopeQuery}` : `/policies${scopeQuery}`}
          >
            Cancel
          </Link>
          <button type="submit" className="button primary" disabled={saving}>
            {saving ? "Saving…" : existing ? "Save changes" : "Save draft"}
          </button>
        </div>
      </form>
    </div>
  );
}
