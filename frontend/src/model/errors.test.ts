import { describe, expect, it } from "vitest";

import { errorsUnder, flattenErrors, isUnder, joinPath, ownerOf, placeErrors } from "./errors";

describe("flattenErrors", () => {
  it("keys each message list by the path of the field it names", () => {
    const body = {
      title: ["This field is required."],
      items: [{}, { spec: { split: ["Split weights sum to 110; they must sum to exactly 100."] } }],
    };
    expect(flattenErrors(body)).toEqual({
      title: ["This field is required."],
      "items[1].spec.split": ["Split weights sum to 110; they must sum to exactly 100."],
    });
  });

  it("reads a list of per-entry errors by index and DRF's digit keys of list fields as indices", () => {
    const body = {
      items: [
        {
          spec: {
            split: [{}, { weight: ["Ensure this value is less than or equal to 100."] }],
            retries: { retry_on: { "1": ['"sometimes" is not a valid choice.'] } },
          },
        },
      ],
    };
    expect(flattenErrors(body)).toEqual({
      "items[0].spec.split[1].weight": ["Ensure this value is less than or equal to 100."],
      "items[0].spec.retries.retry_on[1]": ['"sometimes" is not a valid choice.'],
    });
  });

  it("files non-field errors under the object they belong to", () => {
    expect(
      flattenErrors({ items: [{ spec: { fault: { non_field_errors: ["Give a delay, an abort, or both."] } } }] }),
    ).toEqual({
      "items[0].spec.fault": ["Give a delay, an abort, or both."],
    });
    expect(flattenErrors({ non_field_errors: ["Nope."] })).toEqual({ "": ["Nope."] });
    expect(flattenErrors({ detail: "Not allowed." })).toEqual({ "": ["Not allowed."] });
  });

  it("keeps a list-level message of items apart from the items' own", () => {
    expect(flattenErrors({ items: ["A change request holds at least one item."] })).toEqual({
      items: ["A change request holds at least one item."],
    });
  });

  it("ignores empty entries and nulls and stringifies odd scalars", () => {
    expect(flattenErrors({ items: [{}, {}], other: null, code: 42 })).toEqual({ code: ["42"] });
    expect(flattenErrors(null)).toEqual({});
  });
});

describe("paths", () => {
  it("joins keys and indices", () => {
    expect(joinPath("", "title")).toBe("title");
    expect(joinPath("items", 0)).toBe("items[0]");
    expect(joinPath("items[0]", "spec")).toBe("items[0].spec");
    expect(joinPath("spec.retry_on", "2")).toBe("spec.retry_on[2]");
    expect(joinPath("spec.fault", "non_field_errors")).toBe("spec.fault");
  });

  it("tells what lies under a path, not just what starts with its text", () => {
    expect(isUnder("spec.split[0].weight", "spec.split")).toBe(true);
    expect(isUnder("spec.split", "spec.split")).toBe(true);
    expect(isUnder("spec.splitter", "spec.split")).toBe(false);
    expect(isUnder("anything", "")).toBe(true);
  });

  it("takes one item's errors with paths relative to it", () => {
    const map = flattenErrors({
      title: ["x"],
      items: [{ name: ["bad name"] }, { spec: { timeout_ms: ["too long"] } }],
    });
    expect(errorsUnder(map, "items[1]")).toEqual({ "spec.timeout_ms": ["too long"] });
    expect(errorsUnder(map, "items[0]")).toEqual({ name: ["bad name"] });
    expect(errorsUnder(map, "items[2]")).toEqual({});
  });

  it("finds the deepest claimed owner of a path", () => {
    const claimed = ["spec.retries", "spec.retries.attempts", "spec.retries.retry_on", "spec.split"];
    expect(ownerOf("spec.retries.attempts", claimed)).toBe("spec.retries.attempts");
    expect(ownerOf("spec.retries.retry_on[1]", claimed)).toBe("spec.retries.retry_on");
    expect(ownerOf("spec.retries.bogus", claimed)).toBe("spec.retries");
    expect(ownerOf("spec.split[0].weight", claimed)).toBe("spec.split");
    expect(ownerOf("spec.timeout_ms", claimed)).toBeNull();
  });
});

describe("placeErrors", () => {
  it("puts each message at the input that shows its field and the rest at the top", () => {
    const placed = placeErrors(
      {
        "spec.split": ["Split weights sum to 110; they must sum to exactly 100."],
        "spec.split[1].weight": ["A valid integer is required."],
        "spec.retries.retry_on[0]": ["bad choice"],
        "spec.timout_ms": ["Unknown field."],
        "": ["Something else."],
      },
      ["spec.split", "spec.split[1].weight", "spec.retries.retry_on"],
    );
    expect(placed.byField).toEqual({
      "spec.split": ["Split weights sum to 110; they must sum to exactly 100."],
      "spec.split[1].weight": ["A valid integer is required."],
      "spec.retries.retry_on": ["[0]: bad choice"],
    });
    expect(placed.unplaced).toEqual(["spec.timout_ms: Unknown field.", "Something else."]);
  });

  it("names the deeper path a section shows on its behalf", () => {
    const placed = placeErrors({ "spec.split[0].version": ["Duplicate."] }, ["spec"]);
    expect(placed.byField).toEqual({ spec: ["split[0].version: Duplicate."] });
  });
});
