import { Link } from "react-router";
import type { LivePolicy, Page } from "../api/types";
import { useApi, useMe, useNow, useScope, useScopeQuery } from "../components/hooks";
import { SpecBlock } from "../components/PolicyBits";
import { Empty, ErrorState, Loading } from "../components/States";
import { formatAgo } from "../model/format";
import { capabilitiesIn, KINDS, namespacesWith, type Access, type KindInfo } from "../model/policy";

/** `/policies`: the live policy of the namespace picked at the top, by kind. Read-only: changes go through review. */
export function PoliciesPage() {
  const scope = useScope();
  const scopeQuery = useScopeQuery();
  const me = useMe();
  const proposes = namespacesWith(me.data, "propose");
  const canPropose = proposes === null || (proposes?.length ?? 0) > 0;
  return (
    <div className="page policies-page">
      <div className="page-header">
        <h1>Policies</h1>
        <span className="muted">
          live{scope.namespace ? ` in ${scope.namespace}` : " in every namespace"} · changed only through reviewed
          change requests
        </span>
        {canPropose && (
          <Link className="button primary" to={`/changes/new${scopeQuery}`}>
            Propose a change
          </Link>
        )}
      </div>
      {KINDS.map((kind) => (
        <KindSection key={kind.kind} kind={kind} namespace={scope.namespace} me={me.data ?? null} />
      ))}
    </div>
  );
}

function KindSection({ kind, namespace, me }: { kind: KindInfo; namespace: string; me: Access | null }) {
  const scopeQuery = useScopeQuery();
  const now = useNow(30_000);
  const headingId = `kind-${kind.kind}`;
  const policies = useApi<Page<LivePolicy>>(
    kind.endpoint,
    { namespace: namespace || undefined, page_size: 500, ordering: "name" },
    30_000,
  );
  const joiner = scopeQuery ? `${scopeQuery}&` : "?";
  const canProposeIn = (name: string) => capabilitiesIn(me, name).has("propose");
  const proposes = namespacesWith(me, "propose");
  const showNew = namespace ? canProposeIn(namespace) : proposes === null || proposes.length > 0;
  return (
    <section className="policy-kind" aria-labelledby={headingId} data-testid={`policies-${kind.kind}`}>
      <div className="section-header">
        <h2 id={headingId}>{kind.plural}</h2>
        {showNew && (
          <Link className="button" to={`/changes/new${joiner}kind=${kind.kind}`}>
            {kind.singleton ? "Set" : "New"} {kind.label.toLowerCase()}
          </Link>
        )}
      </div>
      {policies.state === "error" && !policies.data ? (
        <ErrorState error={policies.error} onRetry={policies.reload} />
      ) : !policies.data ? (
        <Loading label={`Loading ${kind.label.toLowerCase()}s…`} />
      ) : policies.data.results.length === 0 ? (
        <Empty title={`No ${kind.singleton ? kind.label.toLowerCase() : kind.plural.toLowerCase()}`}>
          {kind.singleton
            ? "The mesh's default applies until one is set."
            : `None${namespace ? ` in ${namespace}` : ""} yet.`}
        </Empty>
      ) : (
        <ul className="policy-list">
          {policies.data.results.map((policy) => (
            <li key={policy.id} className="policy-card" data-testid="policy" data-name={policy.name}>
              <div className="policy-head">
                <strong>{policy.name}</strong>
                <span className="muted">
                  {policy.namespace}
                  {policy.service ? ` · service ${policy.service}` : " · whole namespace"}
                </span>
                <Link
                  className="tag"
                  to={`/versions/${policy.version}${scopeQuery}`}
                  title="The version that last wrote it"
                >
                  v{policy.version}
                </Link>
                <span className="muted" title={policy.updated_at}>
                  updated {formatAgo(policy.updated_at, now)}
                </span>
                {canProposeIn(policy.namespace) && (
                  <span className="policy-actions">
                    <Link className="button" to={`/changes/new${joiner}from=${policy.kind}:${policy.id}&op=update`}>
                      Edit…
                    </Link>
                    <Link
                      className="button ghost"
                      to={`/changes/new${joiner}from=${policy.kind}:${policy.id}&op=delete`}
                    >
                      Delete…
                    </Link>
                  </span>
                )}
              </div>
              <SpecBlock spec={policy.spec} label={`Spec of ${policy.name}`} />
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}
