// Workload identity as the dashboard shows it (meshui/identity/serializers.py, actions.py): how close an agent's
// certificate is to expiring, what a join token is good for now, and the CA's roots in the order that reads best.

import { formatAgo } from "./format";

/** A join token as listed; `token` (the secret) only in the answer to its creation, once. */
export interface JoinToken {
  id: number;
  namespace: string;
  service_account: string;
  description: string;
  prefix: string;
  created_at: string;
  expires_at: string;
  revoked_at: string | null;
  last_used_at: string | null;
  state: JoinTokenState;
  token?: string;
}

export type JoinTokenState = "usable" | "expired" | "revoked";

export interface IssuedCertificate {
  serial: string;
  spiffe_id: string;
  namespace: string;
  service_account: string;
  agent_id: string;
  authority: string;
  credential: string;
  not_before: string;
  not_after: string;
  issued_at: string;
}

export interface CaRoot {
  /** null for roots read from a mounted Secret (they cannot be retired here). */
  id: string | null;
  fingerprint_sha256: string;
  subject: string;
  not_after: string;
  signing: boolean;
}

export interface CaStatus {
  read_only: boolean;
  roots: CaRoot[];
}

export type CaChangeState = "pending" | "applied" | "rejected" | "withdrawn" | "expired";

/** A rotation of the CA or a root's retirement: approved by someone other than its requester, applied with the
 *  last approval (meshui/identity/ca_changes.py). */
export interface CaChange {
  id: number;
  operation: "rotate" | "retire";
  /** The root to retire ("" for a rotation). */
  root_id: string;
  /** The root a rotation made, once applied. */
  new_root_id: string;
  reason: string;
  state: CaChangeState;
  requested_by: string;
  required_approvals: number;
  approvals: { approver: string; approved_at: string }[];
  created_at: string;
  expires_at: string;
  decided_by: string | null;
  decided_at: string | null;
  decision_reason: string;
  emergency_reason: string;
}

/** Who is looking, as the CA change rules see them. */
export interface CaViewer {
  username: string;
  /** Holds 'manage' in every namespace. */
  admin: boolean;
  /** Holds 'approve' in every namespace. */
  approver: boolean;
}

/** What ``viewer`` may do with ``change`` (the server checks again; this decides which buttons show). */
export function caChangeActions(
  change: CaChange,
  viewer: CaViewer,
): { approve: boolean; reject: boolean; withdraw: boolean } {
  if (change.state !== "pending") return { approve: false, reject: false, withdraw: false };
  const own = change.requested_by === viewer.username;
  const approved = change.approvals.some((approval) => approval.approver === viewer.username);
  return {
    approve: viewer.approver && !own && !approved,
    reject: viewer.approver && !own,
    withdraw: own || viewer.admin,
  };
}

/** The marker every join token starts with (meshui/identity/models.py JOIN_TOKEN_PREFIX). */
export const JOIN_TOKEN_MARKER = "meshjoin";
/** Join tokens are usable for at most this long (the server refuses more). */
export const MAX_TOKEN_TTL_S = 30 * 86_400;
/** Less than this left on a certificate is worth a warning: agents renew well before. */
export const EXPIRY_WARNING_MS = 2 * 3_600_000;

/** How far away a future instant is, as "in 3 h" (past instants read as formatAgo does). */
export function formatUntil(iso: string | null, now: Date): string {
  if (iso === null) return "never";
  const then = new Date(iso).getTime();
  if (Number.isNaN(then)) return "—";
  const seconds = Math.floor((then - now.getTime()) / 1000);
  if (seconds <= 0) return formatAgo(iso, now);
  if (seconds < 60) return `in ${seconds} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `in ${minutes} min`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `in ${hours} h${minutes % 60 && hours < 10 ? ` ${minutes % 60} min` : ""}`;
  return `in ${Math.floor(hours / 24)} d`;
}

export type ExpiryState = "none" | "expired" | "expiring" | "valid";

export interface CertificateExpiry {
  state: ExpiryState;
  /** What a table cell says: "expires in 3 h", "expired 5 min ago", "no certificate". */
  label: string;
  /** Worth a warning style (expired, or under EXPIRY_WARNING_MS left). */
  warning: boolean;
}

/** Where a certificate stands against `now`: none, expired, expiring within two hours, or valid. */
export function certificateExpiry(notAfter: string | null | undefined, now: Date): CertificateExpiry {
  if (!notAfter) return { state: "none", label: "no certificate", warning: false };
  const left = new Date(notAfter).getTime() - now.getTime();
  if (Number.isNaN(left)) return { state: "none", label: "no certificate", warning: false };
  if (left <= 0) return { state: "expired", label: `expired ${formatAgo(notAfter, now)}`, warning: true };
  const label = `expires ${formatUntil(notAfter, now)}`;
  if (left < EXPIRY_WARNING_MS) return { state: "expiring", label, warning: true };
  return { state: "valid", label, warning: false };
}

export interface TokenView {
  state: JoinTokenState;
  /** "usable · expires in 23 h", "revoked 2 min ago", "expired 1 d ago". */
  label: string;
  /** Revoking means something only while the token still works. */
  revocable: boolean;
  /** The health class the state shows with (shape and colour). */
  health: "healthy" | "idle" | "failing";
}

/**
 * A token's state as of `now`: the server's word, except that a token the list showed usable has expired since
 * if its time ran out while the page was open.
 */
export function tokenView(token: Pick<JoinToken, "state" | "expires_at" | "revoked_at">, now: Date): TokenView {
  if (token.state === "revoked" || token.revoked_at !== null) {
    return {
      state: "revoked",
      label: token.revoked_at ? `revoked ${formatAgo(token.revoked_at, now)}` : "revoked",
      revocable: false,
      health: "failing",
    };
  }
  const expires = new Date(token.expires_at).getTime();
  if (token.state === "expired" || (Number.isFinite(expires) && expires <= now.getTime())) {
    return { state: "expired", label: `expired ${formatAgo(token.expires_at, now)}`, revocable: false, health: "idle" };
  }
  return {
    state: "usable",
    label: `usable · expires ${formatUntil(token.expires_at, now)}`,
    revocable: true,
    health: "healthy",
  };
}

/** How a token is shown without its secret: `meshjoin_<prefix>_…`. */
export function tokenHint(prefix: string): string {
  return `${JOIN_TOKEN_MARKER}_${prefix}_…`;
}

const TTL = /^(\d{1,6})([smhd])$/;
const UNIT_S: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400 };

/** A TTL as the server reads it ("90s", "30m", "24h", "7d"): its seconds, or an error to show beside the field. */
export function parseTtl(text: string): { seconds: number } | { error: string } {
  const match = TTL.exec(text.trim());
  const amount = match ? Number(match[1]) : 0;
  const unit = match?.[2];
  if (!match || !unit || amount === 0) return { error: "A duration such as 30m, 24h or 7d." };
  const seconds = amount * (UNIT_S[unit] ?? 1);
  if (seconds > MAX_TOKEN_TTL_S) return { error: "A join token is usable for at most 30 days." };
  return { seconds };
}

/**
 * The CA's roots as the page lists them: the signing root first, then the others newest expiry first (the next
 * to retire is usually the oldest, at the bottom); ties by fingerprint so the order never flickers.
 */
export function orderRoots(roots: readonly CaRoot[]): CaRoot[] {
  return [...roots].sort(
    (a, b) =>
      Number(b.signing) - Number(a.signing) ||
      Date.parse(b.not_after) - Date.parse(a.not_after) ||
      a.fingerprint_sha256.localeCompare(b.fingerprint_sha256),
  );
}

/** Why a root cannot be retired from the dashboard, or null when it can. */
export function retireBlocked(root: CaRoot, status: Pick<CaStatus, "read_only">): string | null {
  if (status.read_only) return "The CA comes from a mounted Secret: change the Secret to retire a root.";
  if (root.signing) return "The signing root cannot be retired: rotate first.";
  if (root.id === null) return "This root has no id the control plane can retire.";
  return null;
}

/** A SHA-256 fingerprint as people compare them: upper-case byte pairs joined by colons. */
export function formatFingerprint(hex: string): string {
  const clean = hex.replace(/[^0-9a-f]/gi, "").toUpperCase();
  return clean.match(/.{1,2}/g)?.join(":") ?? "";
}
