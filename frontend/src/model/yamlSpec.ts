// A policy spec as YAML text and back. JSON is valid YAML, so a pasted JSON spec parses too; YAML 1.2's core
// schema keeps `on`/`yes` as strings, so nothing turns into a boolean behind the author's back.
import { parse, stringify, YAMLParseError } from "yaml";
import type { Spec } from "./policy";

export function specToYaml(spec: unknown): string {
  if (spec === null || spec === undefined) return "";
  return stringify(spec, { indent: 2, lineWidth: 0 });
}

export type ParsedSpec = { ok: true; spec: Spec | null } | { ok: false; error: string; line?: number };

/** The spec a YAML text holds: a mapping, or null for an empty text. */
export function parseSpecYaml(text: string): ParsedSpec {
  if (!text.trim()) return { ok: true, spec: null };
  let value: unknown;
  try {
    value = parse(text, { prettyErrors: true, uniqueKeys: true });
  } catch (error) {
    if (error instanceof YAMLParseError) {
      const line = error.linePos?.[0]?.line;
      const first = error.message.split("\n")[0] ?? error.message;
      return { ok: false, error: first, line };
    }
    return { ok: false, error: error instanceof Error ? error.message : String(error) };
  }
  if (value === null || value === undefined) return { ok: true, spec: null };
  if (typeof value !== "object" || Array.isArray(value)) {
    return { ok: false, error: "A spec is a mapping of fields (key: value), not a single value or a list." };
  }
  return { ok: true, spec: value as Spec };
}
