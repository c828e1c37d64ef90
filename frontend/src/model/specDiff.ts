// A spec drawn as YAML-like lines, each knowing the path of the value it shows, so the lines the server's diff names
// (meshui/policy/diff.py: "split[0].weight", or "fault" for a whole section added) can be highlighted.
import { isUnder } from "./errors";

export interface SpecLine {
  /** The path of the value this line shows (a key's path for `key:` header lines). */
  path: string;
  text: string;
  changed: boolean;
}

function scalar(value: unknown): string {
  if (value === null || value === undefined) return "null";
  if (typeof value !== "string") return String(value);
  // Plain where YAML would read it back as the same string; quoted where it would read as something else.
  const plain =
    /^[A-Za-z0-9_./:@*-][A-Za-z0-9_ ./:@*-]*$/.test(value) &&
    !/: |:$| $/.test(value) &&
    !/^(true|false|null|~|[-+]?(\d[\d_]*)?\.?\d+([eE][-+]?\d+)?)$/i.test(value);
  return plain ? value : JSON.stringify(value);
}

function isEmptyContainer(value: unknown): boolean {
  if (Array.isArray(value)) return value.length === 0;
  return typeof value === "object" && value !== null && Object.keys(value).length === 0;
}

function isContainer(value: unknown): value is Record<string, unknown> | unknown[] {
  return typeof value === "object" && value !== null;
}

function render(value: unknown, path: string, indent: string): { path: string; text: string }[] {
  const lines: { path: string; text: string }[] = [];
  if (Array.isArray(value)) {
    value.forEach((entry, index) => {
      const inner = `${path}[${index}]`;
      if (!isContainer(entry) || isEmptyContainer(entry)) {
        lines.push({
          path: inner,
          text: `${indent}- ${isEmptyContainer(entry) ? JSON.stringify(entry) : scalar(entry)}`,
        });
        return;
      }
      const nested = render(entry, inner, `${indent}  `);
      const first = nested[0];
      if (first) first.text = `${indent}- ${first.text.slice(indent.length + 2)}`;
      lines.push(...nested);
    });
    return lines;
  }
  if (isContainer(value)) {
    for (const [key, inner] of Object.entries(value)) {
      const innerPath = path ? `${path}.${key}` : key;
      if (!isContainer(inner) || isEmptyContainer(inner)) {
        lines.push({
          path: innerPath,
          text: `${indent}${key}: ${isEmptyContainer(inner) ? JSON.stringify(inner) : scalar(inner)}`,
        });
      } else {
        lines.push({ path: innerPath, text: `${indent}${key}:` });
        lines.push(...render(inner, innerPath, `${indent}  `));
      }
    }
    return lines;
  }
  lines.push({ path, text: `${indent}${scalar(value)}` });
  return lines;
}

/** `spec` as lines, those at or under a path in `changed` marked. A null spec (nothing there) has no lines. */
export function specLines(spec: unknown, changed: readonly string[]): SpecLine[] {
  if (spec === null || spec === undefined) return [];
  if (isEmptyContainer(spec)) return [{ path: "", text: JSON.stringify(spec), changed: false }];
  return render(spec, "", "").map((line) => ({
    ...line,
    changed: changed.some((path) => path !== "" && isUnder(line.path, path)),
  }));
}

/** How a changed value reads in a one-line summary. */
export function describeValue(value: unknown): string {
  if (value === null || value === undefined) return "(none)";
  if (isContainer(value)) return JSON.stringify(value);
  return scalar(value);
}
