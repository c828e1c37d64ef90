// The policy API's shapes (meshui/policy/serializers.py, diff.py, preview.py, progress.py) and the rules of a change
// request's life as the dashboard needs them: which buttons a user sees for a change in a given state. The server
// enforces the same rules (meshui/policy/changes.py); this only keeps the page from offering what would be refused.

export type PolicyKind = "traffic" | "authorization" | "peer_authentication" | "authorization_default";
export type ChangeOperation = "create" | "update" | "delete";
export type ChangeState = "draft" | "pending" | "approved" | "rejected" | "withdrawn" | "expired" | "applied";
export type Spec = Record<string, unknown>;

export interface LivePolicy {
  id: number;
  kind: PolicyKind;
  namespace: string;
  name: string;
  service: string;
  spec: Spec;
  version: number;
  updated_at: string;
}

export interface PolicyWarning {
  code: string;
  field: string;
  message: string;
}

export interface ChangeItem {
  operation: ChangeOperation;
  kind: PolicyKind;
  name: string;
  service: string;
  spec: Spec | null;
  base_digest?: string;
  warnings?: PolicyWarning[];
}

export interface Approval {
  approver: string;
  digest: string;
  current: boolean;
  comment: string;
  created_at: string;
}

export interface ChangeComment {
  id: number;
  author: string;
  body: string;
  created_at: string;
}

export interface ChangeRequest {
  id: number;
  namespace: string;
  title: string;
  description: string;
  state: ChangeState;
  digest: string;
  author: string;
  created_at: string;
  updated_at?: string;
  submitted_at: string | null;
  expires_at: string | null;
  decided_by: string | null;
  decision_reason: string;
  emergency: boolean;
  emergency_reason: string;
  restores: number | null;
  applied_version: number | null;
  required_approvals: number;
  approval_count: number;
  approvals: Approval[];
  comments: ChangeComment[];
  items: ChangeItem[];
}

export interface SpecChange {
  path: string;
  before: unknown;
  after: unknown;
}

export interface DiffItem {
  operation: ChangeOperation;
  kind: PolicyKind;
  name: string;
  service: string;
  before: Spec | null;
  after: Spec | null;
  changes: SpecChange[];
  stale: boolean;
}

export interface ChangeDiff {
  digest: string;
  items: DiffItem[];
}

export interface AuthorizationShift {
  source: string;
  source_principal: string;
  destination: string;
  rps: number;
  before: string;
  after: string;
}

export interface SplitShift {
  service: string;
  rps: number;
  versions: { version: string; current_share: number; proposed_share: number; rps_shift: number }[];
}

export interface BreakerEffect {
  service: string;
  workload: string;
  rps: number;
  error_rate: number;
  expected_ejections_per_interval: number | null;
  likely_ejected: boolean;
  mean_in_flight: number | null;
  max_requests: number | null;
}

export interface FaultEffect {
  service: string;
  rps: number;
  aborted_rps: number;
  delayed_rps: number;
}

export interface ChangePreview {
  window_seconds: number;
  /** The part of the window the mesh actually observed; rates are over this. */
  observed_seconds: number;
  window_end?: string;
  authorization: AuthorizationShift[];
  splits: SplitShift[];
  breakers: BreakerEffect[];
  faults: FaultEffect[];
}

export interface RolloutCounts {
  acked: number;
  pending: number;
  failed: number;
  total: number;
}

export interface RolloutAgent {
  agent_id: string;
  namespace: string;
  status: string;
  config_version: number | null;
  state: "acked" | "pending" | "failed";
  detail: string;
}

export interface DocumentEntry {
  kind: PolicyKind;
  namespace: string;
  name: string;
  service: string;
  spec: Spec;
}

export interface ConfigVersion {
  number: number;
  digest: string;
  namespace: string;
  summary: string;
  author_name: string;
  approver_names: string[];
  applied_by_name: string;
  applied_at: string;
  emergency: boolean;
  emergency_reason: string;
  mesh_version: number;
  change_request: number | null;
  rollout?: RolloutCounts;
}

export interface ConfigVersionDetail extends ConfigVersion {
  document: DocumentEntry[];
  rollout: RolloutCounts & { agents: RolloutAgent[] };
}

export interface KindInfo {
  kind: PolicyKind;
  label: string;
  plural: string;
  endpoint: string;
  /** One per namespace, always named "default", never bound to a service. */
  singleton: boolean;
  /** The editor offers a form view besides YAML. */
  form: boolean;
}

export const KINDS: readonly KindInfo[] = [
  {
    kind: "traffic",
    label: "Traffic policy",
    plural: "Traffic policies",
    endpoint: "/api/v1/traffic-policies/",
    singleton: false,
    form: true,
  },
  {
    kind: "authorization",
    label: "Authorization policy",
    plural: "Authorization policies",
    endpoint: "/api/v1/authorization-policies/",
    singleton: false,
    form: false,
  },
  {
    kind: "peer_authentication",
    label: "Peer authentication",
    plural: "Peer authentication",
    endpoint: "/api/v1/peer-authentications/",
    singleton: true,
    form: true,
  },
  {
    kind: "authorization_default",
    label: "Namespace authorization default",
    plural: "Namespace authorization default",
    endpoint: "/api/v1/authorization-defaults/",
    singleton: true,
    form: true,
  },
];

export const SINGLETON_NAME = "default";

export function kindInfo(kind: string): KindInfo {
  return KINDS.find((entry) => entry.kind === kind) ?? KINDS[0]!;
}

export const STATE_LABELS: Record<ChangeState, string> = {
  draft: "Draft",
  pending: "Awaiting approval",
  approved: "Approved",
  rejected: "Rejected",
  withdrawn: "Withdrawn",
  expired: "Expired",
  applied: "Applied",
};

export const OPEN_STATES: ReadonlySet<ChangeState> = new Set(["draft", "pending", "approved"]);

/** The part of /api/v1/me/ that says what a user may do where. */
export interface Access {
  username: string;
  is_superuser: boolean;
  capabilities_everywhere: string[];
  namespaces: { namespace: string; capabilities: string[] }[];
}

export function capabilitiesIn(access: Access | null | undefined, namespace: string): Set<string> {
  if (!access) return new Set();
  const held = new Set(access.capabilities_everywhere);
  if (access.is_superuser) ["view", "edit", "propose", "approve", "manage"].forEach((cap) => held.add(cap));
  for (const entry of access.namespaces) {
    if (entry.namespace === namespace) entry.capabilities.forEach((cap) => held.add(cap));
  }
  return held;
}

/** Namespaces where the user holds `capability`; null means every namespace. */
export function namespacesWith(access: Access | null | undefined, capability: string): string[] | null {
  if (!access) return [];
  if (access.is_superuser || access.capabilities_everywhere.includes(capability)) return null;
  return access.namespaces.filter((entry) => entry.capabilities.includes(capability)).map((entry) => entry.namespace);
}

export interface ChangeActions {
  edit: boolean;
  submit: boolean;
  approve: boolean;
  reject: boolean;
  withdraw: boolean;
  apply: boolean;
  emergencyApply: boolean;
  comment: boolean;
  /** Why approving is not offered although the user approves here (e.g. their own change, already approved). */
  approveBlocked: string | null;
}

/** A pending change past its deadline: the server expires it on the next touch, so nothing may act on it. */
export function isExpired(change: Pick<ChangeRequest, "state" | "expires_at">, now: Date): boolean {
  if (change.state === "expired") return true;
  if (change.state !== "pending" && change.state !== "approved") return false;
  return change.expires_at !== null && Date.parse(change.expires_at) <= now.getTime();
}

/** The actions a user may take on a change as it stands (mirrors meshui/policy/changes.py). */
export function allowedActions(change: ChangeRequest, access: Access | null | undefined, now: Date): ChangeActions {
  const none: ChangeActions = {
    edit: false,
    submit: false,
    approve: false,
    reject: false,
    withdraw: false,
    apply: false,
    emergencyApply: false,
    comment: false,
    approveBlocked: null,
  };
  if (!access) return none;
  const caps = capabilitiesIn(access, change.namespace);
  const author = change.author === access.username;
  const open = OPEN_STATES.has(change.state);
  const expired = isExpired(change, now);
  const live = open && !expired;
  const deciding = (change.state === "pending" || change.state === "approved") && !expired;
  const approvedByMe = change.approvals.some((approval) => approval.approver === access.username && approval.current);
  const canApprove = caps.has("approve");
  let approveBlocked: string | null = null;
  if (canApprove && deciding) {
    if (author) approveBlocked = "You cannot approve your own change.";
    else if (approvedByMe) approveBlocked = "You approved this content.";
  }
  const enough = change.approval_count >= change.required_approvals;
  return {
    edit: live && author && caps.has("propose"),
    submit: change.state === "draft" && author,
    approve: canApprove && deciding && !author && !approvedByMe,
    reject: canApprove && deciding && !author,
    withdraw: open && (author || caps.has("manage")),
    apply: change.state === "approved" && !expired && enough && (caps.has("propose") || caps.has("approve")),
    emergencyApply: live && caps.has("manage") && !(change.state === "approved" && enough),
    comment: caps.has("propose") || caps.has("approve"),
    approveBlocked,
  };
}

/** "1 of 2", counting only approvals of the current content. */
export function approvalSummary(change: Pick<ChangeRequest, "approval_count" | "required_approvals">): string {
  return `${change.approval_count} of ${change.required_approvals}`;
}
