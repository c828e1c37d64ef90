import { describe, expect, it } from "vitest";

import { claimedPaths, draftFromItem, draftSpec, itemPayload, newDraftItem, switchView, withKind } from "./changeDraft";
import { parseSpecYaml, specToYaml } from "./yamlSpec";

describe("YAML specs", () => {
  it("round-trips a spec, and takes JSON as YAML", () => {
    const spec = { split: [{ version: "v1", weight: 90 }], retries: { attempts: 2, retry_on: ["5xx", "reset"] } };
    expect(parseSpecYaml(specToYaml(spec))).toEqual({ ok: true, spec });
    expect(parseSpecYaml(JSON.stringify(spec))).toEqual({ ok: true, spec });
  });

  it("reads an empty text as no spec", () => {
    expect(parseSpecYaml("  \n")).toEqual({ ok: true, spec: null });
    expect(specToYaml(null)).toBe("");
  });

  it("keeps on/yes as strings (YAML 1.2)", () => {
    expect(parseSpecYaml("mode: on")).toEqual({ ok: true, spec: { mode: "on" } });
  });

  it("says where the YAML breaks and refuses what is no mapping", () => {
    const broken = parseSpecYaml("split:\n  - version: v1\n weight: 3\n");
    expect(broken.ok).toBe(false);
    if (!broken.ok) expect(broken.line).toBeGreaterThan(0);
    expect(parseSpecYaml("a: 1\na: 2").ok).toBe(false); // a duplicate key is an error, not a silent overwrite
    expect(parseSpecYaml("- a\n- b")).toMatchObject({ ok: false });
    expect(parseSpecYaml("just text")).toMatchObject({ ok: false });
  });
});

describe("draft items", () => {
  it("names a traffic policy after its service", () => {
    const item = { ...newDraftItem(1, "traffic"), service: "reviews" };
    item.traffic.split = {
      enabled: true,
      rows: [
        { version: "v1", weight: "90" },
        { version: "v2", weight: "10" },
      ],
    };
    expect(itemPayload(item)).toEqual({
      ok: true,
      item: {
        operation: "create",
        kind: "traffic",
        name: "reviews",
        service: "reviews",
        spec: {
          split: [
            { version: "v1", weight: 90 },
            { version: "v2", weight: 10 },
          ],
        },
      },
    });
  });

  it("names the namespace-wide kinds 'default' and binds them to no service", () => {
    const item = { ...newDraftItem(1, "peer_authentication"), service: "web", name: "x", choice: "PERMISSIVE" };
    expect(itemPayload(item)).toEqual({
      ok: true,
      item: {
        operation: "create",
        kind: "peer_authentication",
        name: "default",
        service: "",
        spec: { mode: "PERMISSIVE" },
      },
    });
    const fallback = newDraftItem(2, "authorization_default");
    expect(draftSpec(fallback)).toEqual({ ok: true, spec: { default: "allow-all" } });
  });

  it("sends no spec for a delete", () => {
    const item = { ...newDraftItem(1, "authorization"), operation: "delete" as const, name: "old", yaml: "junk: [" };
    expect(itemPayload(item)).toEqual({
      ok: true,
      item: { operation: "delete", kind: "authorization", name: "old", service: "", spec: null },
    });
  });

  it("refuses a payload whose YAML does not parse", () => {
    const item = { ...newDraftItem(1, "authorization"), name: "a", yaml: "action: [" };
    expect(itemPayload(item)).toMatchObject({ ok: false });
  });

  it("switches between the form and YAML without losing the spec", () => {
    let item = { ...newDraftItem(1, "traffic"), service: "reviews" };
    item.traffic.timeoutMs = "1500";
    item = switchView(item, "yaml");
    expect(item.view).toBe("yaml");
    expect(parseSpecYaml(item.yaml)).toEqual({ ok: true, spec: { timeout_ms: 1500 } });
    item = { ...item, yaml: "timeout_ms: 2000\nsplit:\n  - version: v1\n    weight: 100\n" };
    item = switchView(item, "form");
    expect(item.view).toBe("form");
    expect(item.traffic.timeoutMs).toBe("2000");
    expect(item.traffic.split.rows).toEqual([{ version: "v1", weight: "100" }]);
  });

  it("refuses to switch to the form when it would drop something", () => {
    const item = { ...newDraftItem(1, "traffic"), view: "yaml" as const, yaml: "timout_ms: 5\n" };
    const after = switchView(item, "form");
    expect(after.view).toBe("yaml");
    expect(after.viewError).toContain("timout_ms");
    const broken = switchView({ ...item, yaml: "a: [" }, "form");
    expect(broken.viewError).toMatch(/^Fix the YAML first/);
    const authz = switchView(newDraftItem(2, "authorization"), "form");
    expect(authz.view).toBe("yaml");
    const peer = switchView(
      { ...newDraftItem(3, "peer_authentication"), view: "yaml", yaml: "mode: PERMISSIVE\n" },
      "form",
    );
    expect(peer).toMatchObject({ view: "form", choice: "PERMISSIVE", viewError: null });
  });

  it("opens a change's item in the form when the form can show it", () => {
    const traffic = draftFromItem(1, {
      operation: "update",
      kind: "traffic",
      name: "reviews",
      service: "reviews",
      spec: { split: [{ version: "v1", weight: 100 }] },
    });
    expect(traffic.view).toBe("form");
    expect(draftSpec(traffic)).toEqual({ ok: true, spec: { split: [{ version: "v1", weight: 100 }] } });
    const odd = draftFromItem(2, { operation: "update", kind: "traffic", name: "r", service: "r", spec: { x: 1 } });
    expect(odd.view).toBe("yaml");
    const mode = draftFromItem(3, {
      operation: "update",
      kind: "peer_authentication",
      name: "default",
      service: "",
      spec: { mode: "PERMISSIVE" },
    });
    expect(mode).toMatchObject({ view: "form", choice: "PERMISSIVE" });
  });

  it("starts afresh when the kind changes, keeping the service where the kind has one", () => {
    const item = { ...newDraftItem(1, "traffic"), service: "reviews" };
    expect(withKind(item, "authorization")).toMatchObject({ kind: "authorization", service: "reviews", view: "yaml" });
    expect(withKind(item, "peer_authentication")).toMatchObject({ name: "default", service: "", view: "form" });
  });

  it("claims the inputs its view shows", () => {
    const traffic = newDraftItem(1, "traffic");
    expect(claimedPaths(traffic)).toContain("spec.split");
    expect(claimedPaths(traffic)).not.toContain("name");
    expect(claimedPaths({ ...traffic, view: "yaml" })).toContain("spec");
    expect(claimedPaths(newDraftItem(2, "authorization"))).toEqual(["operation", "kind", "service", "name", "spec"]);
    expect(claimedPaths({ ...newDraftItem(3, "authorization"), operation: "delete" })).not.toContain("spec");
  });
});
