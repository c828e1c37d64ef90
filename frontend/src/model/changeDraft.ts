// The change editor's items: what each one proposes, its spec held by the view being edited (a form or YAML), and
// the payload it becomes. Switching views converts the spec; a switch that would lose something is refused.
import { kindInfo, SINGLETON_NAME, type ChangeItem, type ChangeOperation, type PolicyKind, type Spec } from "./policy";
import {
  emptyTrafficForm,
  specFromTrafficForm,
  trafficFormFromSpec,
  trafficFormPaths,
  unsupportedPaths,
  type TrafficForm,
} from "./trafficForm";
import { parseSpecYaml, specToYaml, type ParsedSpec } from "./yamlSpec";

export type SpecView = "form" | "yaml";

export interface DraftItem {
  key: number;
  operation: ChangeOperation;
  kind: PolicyKind;
  name: string;
  service: string;
  view: SpecView;
  yaml: string;
  traffic: TrafficForm;
  /** The one choice of the namespace-wide kinds: peer authentication's mode, the authorization default. */
  choice: string;
  /** Why the last switch of view was refused. */
  viewError: string | null;
}

export const PEER_MODES = ["STRICT", "PERMISSIVE"] as const;
export const DEFAULTS = ["allow-all", "deny-all"] as const;

function defaultChoice(kind: PolicyKind): string {
  if (kind === "peer_authentication") return "STRICT";
  if (kind === "authorization_default") return "allow-all";
  return "";
}

const STARTER_YAML: Record<PolicyKind, string> = {
  traffic: "",
  authorization: 'action: ALLOW\nrules:\n  - from:\n      namespaces: ["*"]\n',
  peer_authentication: "mode: STRICT\n",
  authorization_default: "default: allow-all\n",
};

export function newDraftItem(key: number, kind: PolicyKind = "traffic", service = ""): DraftItem {
  const info = kindInfo(kind);
  return {
    key,
    operation: "create",
    kind,
    name: info.singleton ? SINGLETON_NAME : service,
    service: info.singleton ? "" : service,
    view: info.form ? "form" : "yaml",
    yaml: STARTER_YAML[kind],
    traffic: emptyTrafficForm(),
    choice: defaultChoice(kind),
    viewError: null,
  };
}

/** A draft item editing `item` (a change's item, or a live policy to update or delete). */
export function draftFromItem(key: number, item: Omit<ChangeItem, "spec"> & { spec: Spec | null }): DraftItem {
  const draft = { ...newDraftItem(key, item.kind), operation: item.operation, name: item.name, service: item.service };
  const spec = item.spec;
  draft.yaml = specToYaml(spec);
  if (item.kind === "traffic" && unsupportedPaths(spec).length === 0) {
    return { ...draft, view: "form", traffic: trafficFormFromSpec(spec) };
  }
  const choiceKey =
    item.kind === "peer_authentication" ? "mode" : item.kind === "authorization_default" ? "default" : null;
  if (choiceKey && spec && Object.keys(spec).length === 1 && typeof spec[choiceKey] === "string") {
    return { ...draft, view: "form", choice: spec[choiceKey] as string };
  }
  return { ...draft, view: "yaml" };
}

/** The item switched to another kind: its name follows the kind's rules, its spec starts afresh. */
export function withKind(item: DraftItem, kind: PolicyKind): DraftItem {
  const fresh = newDraftItem(item.key, kind, kindInfo(kind).singleton ? "" : item.service);
  return { ...fresh, operation: item.operation };
}

/** The spec the item's current view holds (null for a delete). */
export function draftSpec(item: DraftItem): ParsedSpec {
  if (item.operation === "delete") return { ok: true, spec: null };
  if (item.view === "yaml") return parseSpecYaml(item.yaml);
  if (item.kind === "traffic") return { ok: true, spec: specFromTrafficForm(item.traffic) };
  if (item.kind === "peer_authentication") return { ok: true, spec: { mode: item.choice } };
  if (item.kind === "authorization_default") return { ok: true, spec: { default: item.choice } };
  return parseSpecYaml(item.yaml);
}

/** The item shown in another view, or the same item with `viewError` saying why it cannot be. */
export function switchView(item: DraftItem, view: SpecView): DraftItem {
  if (view === item.view) return item;
  if (view === "yaml") {
    const current = draftSpec(item);
    return { ...item, view, yaml: current.ok ? specToYaml(current.spec) : item.yaml, viewError: null };
  }
  if (!kindInfo(item.kind).form) return { ...item, viewError: "This kind is edited in YAML only." };
  const parsed = parseSpecYaml(item.yaml);
  if (!parsed.ok) return { ...item, viewError: `Fix the YAML first: ${parsed.error}` };
  if (item.kind === "traffic") {
    const unsupported = unsupportedPaths(parsed.spec);
    if (unsupported.length) {
      return { ...item, viewError: `The form cannot show ${unsupported.join(", ")}; keep editing in YAML.` };
    }
    return { ...item, view, traffic: trafficFormFromSpec(parsed.spec), viewError: null };
  }
  const choiceKey = item.kind === "peer_authentication" ? "mode" : "default";
  const spec = parsed.spec ?? {};
  const extra = Object.keys(spec).filter((key) => key !== choiceKey);
  if (extra.length) return { ...item, viewError: `The form cannot show ${extra.join(", ")}; keep editing in YAML.` };
  const value = spec[choiceKey];
  return {
    ...item,
    view,
    choice: typeof value === "string" ? value : defaultChoice(item.kind),
    viewError: null,
  };
}

export type Payload = { ok: true; item: ChangeItem } | { ok: false; error: string };

/** The item as the API takes it. Traffic policies are named after their service; namespace-wide kinds "default". */
export function itemPayload(item: DraftItem): Payload {
  const parsed = draftSpec(item);
  if (!parsed.ok) return { ok: false, error: `The YAML does not parse: ${parsed.error}` };
  const info = kindInfo(item.kind);
  const service = info.singleton ? "" : item.service.trim();
  const name = info.singleton ? SINGLETON_NAME : item.kind === "traffic" ? service : item.name.trim();
  return {
    ok: true,
    item: {
      operation: item.operation,
      kind: item.kind,
      name,
      service,
      spec: item.operation === "delete" ? null : parsed.spec,
    },
  };
}

/** The paths (relative to the item) whose errors the item's editor shows next to an input. */
export function claimedPaths(item: DraftItem): string[] {
  const info = kindInfo(item.kind);
  const paths = ["operation", "kind"];
  if (!info.singleton) paths.push("service");
  if (!info.singleton && item.kind !== "traffic") paths.push("name");
  if (item.operation === "delete") return paths;
  if (item.view === "yaml") paths.push("spec");
  else if (item.kind === "traffic") paths.push(...trafficFormPaths(item.traffic));
  else if (item.kind === "peer_authentication") paths.push("spec.mode");
  else if (item.kind === "authorization_default") paths.push("spec.default");
  return paths;
}
