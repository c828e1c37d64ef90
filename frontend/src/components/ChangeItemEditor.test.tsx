import { cleanup, fireEvent, render, screen, within } from "@testing-library/react";
import { useState } from "react";
import { afterEach, describe, expect, it } from "vitest";

import { newDraftItem, type DraftItem } from "../model/changeDraft";
import { errorsUnder, flattenErrors } from "../model/errors";
import { ChangeItemEditor } from "./ChangeItemEditor";

afterEach(cleanup);

function splitItem(): DraftItem {
  const item = { ...newDraftItem(1, "traffic"), service: "reviews", name: "reviews" };
  item.traffic.split = {
    enabled: true,
    rows: [
      { version: "v1", weight: "90" },
      { version: "v2", weight: "20" },
    ],
  };
  return item;
}

function Harness({ initial, body }: { initial: DraftItem; body: unknown }) {
  const [item, setItem] = useState(initial);
  return (
    <ChangeItemEditor
      item={item}
      index={0}
      errors={errorsUnder(flattenErrors(body), "items[0]")}
      services={["reviews"]}
      onChange={setItem}
    />
  );
}

describe("ChangeItemEditor", () => {
  it("shows the API's split error inside the split section, and the weights as invalid", () => {
    const body = { items: [{ spec: { split: ["Split weights sum to 110; they must sum to exactly 100."] } }] };
    render(<Harness initial={splitItem()} body={body} />);
    const section = screen.getByRole("group", { name: "Traffic split between versions" });
    expect(within(section).getByRole("alert").textContent).toContain("sum to 110");
    expect(within(section).getByLabelText("Weight 2 (%)").getAttribute("aria-invalid")).toBe("true");
    expect(within(section).getByTestId("split-sum").textContent).toBe("Sum: 110% (must be 100)");
    expect(screen.queryByTestId("item-errors")).toBeNull();
  });

  it("puts an error on a row's field beside that field, and what no input shows at the top", () => {
    const body = {
      items: [{ spec: { split: [{}, { weight: ["A valid integer is required."] }], timout_ms: ["Unknown field."] } }],
    };
    render(<Harness initial={splitItem()} body={body} />);
    const weight = screen.getByLabelText("Weight 2 (%)");
    const described = (weight.getAttribute("aria-describedby") ?? "").split(" ")[0] ?? "";
    expect(document.getElementById(described)?.textContent).toBe("A valid integer is required.");
    expect(screen.getByTestId("item-errors").textContent).toContain("spec.timout_ms: Unknown field.");
  });

  it("updates the live sum as weights change and switches to YAML and back", () => {
    render(<Harness initial={splitItem()} body={{}} />);
    fireEvent.change(screen.getByLabelText("Weight 2 (%)"), { target: { value: "10" } });
    expect(screen.getByTestId("split-sum").textContent).toBe("Sum: 100%");
    fireEvent.click(screen.getByRole("button", { name: "YAML" }));
    const yaml = screen.getByLabelText("Spec (YAML or JSON)") as HTMLTextAreaElement;
    expect(yaml.value).toContain("weight: 10");
    fireEvent.change(yaml, { target: { value: "split:\n  - version: v1\n    weight: 100\n" } });
    fireEvent.click(screen.getByRole("button", { name: "Form" }));
    expect(screen.getByRole("button", { name: "Form" }).getAttribute("aria-pressed")).toBe("true");
    expect((screen.getByLabelText("Weight 1 (%)") as HTMLInputElement).value).toBe("100");
    expect(screen.queryByLabelText("Weight 2 (%)")).toBeNull();
  });

  it("keeps the YAML view when the form cannot show the spec, and says why", () => {
    render(<Harness initial={{ ...splitItem(), view: "yaml", yaml: "timout_ms: 5\n" }} body={{}} />);
    fireEvent.click(screen.getByRole("button", { name: "Form" }));
    expect(screen.getByRole("button", { name: "YAML" }).getAttribute("aria-pressed")).toBe("true");
    expect(screen.getByRole("alert").textContent).toContain("timout_ms");
  });
});
