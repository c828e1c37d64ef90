import { describe, expect, it } from "vitest";

import { allowedActions, capabilitiesIn, isExpired, namespacesWith, type Access, type ChangeRequest } from "./policy";

const NOW = new Date("2026-01-01T12:00:00Z");
const LATER = "2026-01-02T12:00:00Z";
const EARLIER = "2026-01-01T11:00:00Z";

const editor: Access = {
  username: "editor",
  is_superuser: false,
  capabilities_everywhere: [],
  namespaces: [{ namespace: "shop", capabilities: ["edit", "propose", "view"] }],
};
const approver: Access = {
  username: "approver",
  is_superuser: false,
  capabilities_everywhere: [],
  namespaces: [{ namespace: "shop", capabilities: ["approve", "view"] }],
};
const admin: Access = {
  username: "admin",
  is_superuser: true,
  capabilities_everywhere: ["approve", "edit", "manage", "propose", "view"],
  namespaces: [],
};
const viewer: Access = {
  username: "viewer",
  is_superuser: false,
  capabilities_everywhere: ["view"],
  namespaces: [],
};

function change(overrides: Partial<ChangeRequest> = {}): ChangeRequest {
  return {
    id: 1,
    namespace: "shop",
    title: "Canary",
    description: "",
    state: "draft",
    digest: "d".repeat(64),
    author: "editor",
    created_at: EARLIER,
    submitted_at: null,
    expires_at: null,
    decided_by: null,
    decision_reason: "",
    emergency: false,
    emergency_reason: "",
    restores: null,
    applied_version: null,
    required_approvals: 1,
    approval_count: 0,
    approvals: [],
    comments: [],
    items: [],
    ...overrides,
  };
}

const on = (actions: ReturnType<typeof allowedActions>) =>
  Object.entries(actions)
    .filter(([key, value]) => key !== "approveBlocked" && value === true)
    .map(([key]) => key)
    .sort();

describe("capabilities", () => {
  it("joins everywhere and per-namespace grants", () => {
    expect([...capabilitiesIn(editor, "shop")].sort()).toEqual(["edit", "propose", "view"]);
    expect([...capabilitiesIn(editor, "other")]).toEqual([]);
    expect(capabilitiesIn(viewer, "any").has("view")).toBe(true);
    expect(capabilitiesIn(admin, "any").has("manage")).toBe(true);
    expect(capabilitiesIn(null, "shop").size).toBe(0);
  });

  it("lists the namespaces where a user may do something (null: everywhere)", () => {
    expect(namespacesWith(editor, "propose")).toEqual(["shop"]);
    expect(namespacesWith(approver, "propose")).toEqual([]);
    expect(namespacesWith(admin, "propose")).toBeNull();
  });
});

describe("allowedActions", () => {
  it("lets the author edit, submit and withdraw a draft, and nobody approve it", () => {
    expect(on(allowedActions(change(), editor, NOW))).toEqual(["comment", "edit", "submit", "withdraw"]);
    expect(on(allowedActions(change(), approver, NOW))).toEqual(["comment"]);
    expect(on(allowedActions(change(), viewer, NOW))).toEqual([]);
  });

  it("lets another approver approve or reject a pending change, never its author", () => {
    const pending = change({ state: "pending", submitted_at: EARLIER, expires_at: LATER });
    expect(on(allowedActions(pending, approver, NOW))).toEqual(["approve", "comment", "reject"]);
    const own = allowedActions(pending, editor, NOW);
    expect(on(own)).toEqual(["comment", "edit", "withdraw"]);
    expect(own.approveBlocked).toBeNull(); // the editor does not approve at all
    const selfApprover = allowedActions({ ...pending, author: "approver" }, approver, NOW);
    expect(selfApprover.approve).toBe(false);
    expect(selfApprover.approveBlocked).toMatch(/own change/);
  });

  it("does not offer a second approval of the same content", () => {
    const approval = { approver: "approver", digest: "d".repeat(64), current: true, comment: "", created_at: EARLIER };
    const pending = change({
      state: "pending",
      expires_at: LATER,
      approvals: [approval],
      approval_count: 1,
      required_approvals: 2,
    });
    const actions = allowedActions(pending, approver, NOW);
    expect(actions.approve).toBe(false);
    expect(actions.approveBlocked).toMatch(/approved this content/);
    // A stale approval (the content changed since) does not count: approving again is offered.
    const stale = { ...pending, approvals: [{ ...approval, current: false }], approval_count: 0 };
    expect(allowedActions(stale, approver, NOW).approve).toBe(true);
  });

  it("offers apply once approved with enough approvals, to proposers and approvers", () => {
    const approved = change({ state: "approved", expires_at: LATER, approval_count: 1 });
    expect(allowedActions(approved, editor, NOW).apply).toBe(true);
    expect(allowedActions(approved, approver, NOW).apply).toBe(true);
    expect(allowedActions(approved, viewer, NOW).apply).toBe(false);
    expect(allowedActions({ ...approved, approval_count: 0 }, editor, NOW).apply).toBe(false);
  });

  it("offers emergency apply only to admins, and only where a normal apply is not possible", () => {
    const pending = change({ state: "pending", expires_at: LATER, author: "editor" });
    expect(allowedActions(pending, admin, NOW).emergencyApply).toBe(true);
    expect(allowedActions(pending, editor, NOW).emergencyApply).toBe(false);
    const approved = { ...pending, state: "approved" as const, approval_count: 1 };
    expect(allowedActions(approved, admin, NOW)).toMatchObject({ apply: true, emergencyApply: false });
  });

  it("offers nothing but comments on a closed or expired change", () => {
    for (const state of ["applied", "rejected", "withdrawn", "expired"] as const) {
      expect(on(allowedActions(change({ state }), editor, NOW))).toEqual(["comment"]);
    }
    const overdue = change({ state: "pending", expires_at: EARLIER });
    expect(isExpired(overdue, NOW)).toBe(true);
    expect(on(allowedActions(overdue, approver, NOW))).toEqual(["comment"]);
    expect(on(allowedActions(overdue, editor, NOW))).toEqual(["comment", "withdraw"]);
  });

  it("lets an admin withdraw someone else's open change", () => {
    expect(allowedActions(change({ state: "pending", expires_at: LATER }), admin, NOW).withdraw).toBe(true);
  });

  it("offers nothing before it knows who the user is", () => {
    expect(on(allowedActions(change(), null, NOW))).toEqual([]);
  });
});
