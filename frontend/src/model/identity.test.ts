import { describe, expect, it } from "vitest";

import {
  caChangeActions,
  certificateExpiry,
  EXPIRY_WARNING_MS,
  formatFingerprint,
  formatUntil,
  orderRoots,
  parseTtl,
  retireBlocked,
  tokenHint,
  tokenView,
  type CaChange,
  type CaRoot,
} from "./identity";

const NOW = new Date("2026-03-01T12:00:00Z");
const at = (offsetMs: number) => new Date(NOW.getTime() + offsetMs).toISOString();
const MIN = 60_000;
const HOUR = 60 * MIN;

describe("formatUntil", () => {
  it("says how far away a future instant is", () => {
    expect(formatUntil(at(30_000), NOW)).toBe("in 30 s");
    expect(formatUntil(at(5 * MIN), NOW)).toBe("in 5 min");
    expect(formatUntil(at(2 * HOUR + 15 * MIN), NOW)).toBe("in 2 h 15 min");
    expect(formatUntil(at(23 * HOUR), NOW)).toBe("in 23 h");
    expect(formatUntil(at(10 * 24 * HOUR), NOW)).toBe("in 10 d");
  });

  it("reads past instants as ago, and null as never", () => {
    expect(formatUntil(at(-10 * MIN), NOW)).toBe("10 min ago");
    expect(formatUntil(null, NOW)).toBe("never");
    expect(formatUntil("not a date", NOW)).toBe("—");
  });
});

describe("certificateExpiry", () => {
  it("tells an agent without a certificate", () => {
    expect(certificateExpiry(null, NOW)).toEqual({ state: "none", label: "no certificate", warning: false });
    expect(certificateExpiry(undefined, NOW).state).toBe("none");
  });

  it("is valid, without a warning, with two hours or more left", () => {
    expect(certificateExpiry(at(EXPIRY_WARNING_MS), NOW)).toEqual({
      state: "valid",
      label: "expires in 2 h",
      warning: false,
    });
    expect(certificateExpiry(at(20 * HOUR), NOW).state).toBe("valid");
  });

  it("warns under two hours left", () => {
    expect(certificateExpiry(at(EXPIRY_WARNING_MS - 1000), NOW)).toMatchObject({ state: "expiring", warning: true });
    expect(certificateExpiry(at(45 * MIN), NOW)).toEqual({
      state: "expiring",
      label: "expires in 45 min",
      warning: true,
    });
  });

  it("warns once expired, at the very instant too", () => {
    expect(certificateExpiry(at(0), NOW)).toMatchObject({ state: "expired", warning: true });
    expect(certificateExpiry(at(-3 * HOUR), NOW)).toEqual({
      state: "expired",
      label: "expired 3 h ago",
      warning: true,
    });
  });
});

describe("tokenView", () => {
  const usable = { state: "usable" as const, expires_at: at(23 * HOUR), revoked_at: null };

  it("offers revoking a usable token", () => {
    expect(tokenView(usable, NOW)).toEqual({
      state: "usable",
      label: "usable · expires in 23 h",
      revocable: true,
      health: "healthy",
    });
  });

  it("counts a usable token whose time ran out since the list was fetched as expired", () => {
    expect(tokenView({ ...usable, expires_at: at(-MIN) }, NOW)).toMatchObject({
      state: "expired",
      label: "expired 1 min ago",
      revocable: false,
    });
  });

  it("takes the server's expired and revoked states", () => {
    expect(tokenView({ ...usable, state: "expired" }, NOW)).toMatchObject({ state: "expired", revocable: false });
    expect(tokenView({ ...usable, state: "revoked", revoked_at: at(-2 * MIN) }, NOW)).toEqual({
      state: "revoked",
      label: "revoked 2 min ago",
      revocable: false,
      health: "failing",
    });
  });

  it("puts revoked before expired", () => {
    expect(tokenView({ state: "expired", expires_at: at(-HOUR), revoked_at: at(-2 * HOUR) }, NOW).state).toBe(
      "revoked",
    );
  });

  it("shows a token without its secret", () => {
    expect(tokenHint("a1b2c3")).toBe("meshjoin_a1b2c3_…");
  });
});

describe("parseTtl", () => {
  it("reads durations as the server does", () => {
    expect(parseTtl("90s")).toEqual({ seconds: 90 });
    expect(parseTtl(" 30m ")).toEqual({ seconds: 1800 });
    expect(parseTtl("24h")).toEqual({ seconds: 86_400 });
    expect(parseTtl("30d")).toEqual({ seconds: 30 * 86_400 });
  });

  it("refuses what the server would", () => {
    expect(parseTtl("31d")).toEqual({ error: "A join token is usable for at most 30 days." });
    expect(parseTtl("721h")).toHaveProperty("error");
    for (const bad of ["", "0h", "1w", "h", "1.5h", "-1h", "24 h"]) expect(parseTtl(bad)).toHaveProperty("error");
  });
});

describe("CA roots", () => {
  const root = (fingerprint: string, notAfter: string, signing = false, id: string | null = fingerprint): CaRoot => ({
    id,
    fingerprint_sha256: fingerprint,
    subject: `CN=${fingerprint}`,
    not_after: notAfter,
    signing,
  });

  it("lists the signing root first, then the rest latest expiry first", () => {
    const roots = [
      root("old", "2030-01-01T00:00:00Z"),
      root("new", "2036-01-01T00:00:00Z", true),
      root("middle", "2033-01-01T00:00:00Z"),
    ];
    expect(orderRoots(roots).map((entry) => entry.fingerprint_sha256)).toEqual(["new", "middle", "old"]);
    expect(roots[0]?.fingerprint_sha256).toBe("old"); // the input stays as it was
  });

  it("breaks ties by fingerprint, so the order never flickers", () => {
    const same = "2030-01-01T00:00:00Z";
    expect(orderRoots([root("bb", same), root("aa", same)]).map((entry) => entry.fingerprint_sha256)).toEqual([
      "aa",
      "bb",
    ]);
  });

  it("retires only a non-signing root with an id, on a writable CA", () => {
    const old = root("old", "2030-01-01T00:00:00Z");
    expect(retireBlocked(old, { read_only: false })).toBeNull();
    expect(retireBlocked(root("new", "2036-01-01T00:00:00Z", true), { read_only: false })).toMatch(/rotate first/);
    expect(retireBlocked(old, { read_only: true })).toMatch(/mounted Secret/);
    expect(retireBlocked(root("secret", "2030-01-01T00:00:00Z", false, null), { read_only: false })).toMatch(/no id/);
  });

  it("formats a fingerprint as colon-separated byte pairs", () => {
    expect(formatFingerprint("0a1bff")).toBe("0A:1B:FF");
    expect(formatFingerprint("")).toBe("");
  });
});

describe("caChangeActions", () => {
  const change: CaChange = {
    id: 1,
    operation: "rotate",
    root_id: "",
    new_root_id: "",
    reason: "yearly rotation",
    state: "pending",
    requested_by: "alice",
    required_approvals: 1,
    approvals: [],
    created_at: "2026-12-04T10:00:00Z",
    expires_at: "2026-12-07T10:00:00Z",
    decided_by: null,
    decided_at: null,
    decision_reason: "",
    emergency_reason: "",
  };
  const approver = { username: "bob", admin: false, approver: true };

  it("lets another approver approve or reject, and the requester withdraw", () => {
    expect(caChangeActions(change, approver)).toEqual({ approve: true, reject: true, withdraw: false });
    expect(caChangeActions(change, { username: "alice", admin: true, approver: true })).toEqual({
      approve: false,
      reject: false,
      withdraw: true,
    });
  });

  it("does not offer a second approval by the same person", () => {
    const approved = { ...change, approvals: [{ approver: "bob", approved_at: "2026-12-04T11:00:00Z" }] };
    expect(caChangeActions(approved, approver).approve).toBe(false);
  });

  it("offers nothing on a decided change, nor approval to someone who may not approve everywhere", () => {
    expect(caChangeActions({ ...change, state: "applied" }, approver)).toEqual({
      approve: false,
      reject: false,
      withdraw: false,
    });
    expect(caChangeActions(change, { username: "carol", admin: true, approver: false })).toEqual({
      approve: false,
      reject: false,
      withdraw: true,
    });
  });
});
