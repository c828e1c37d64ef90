// DRF's 400 bodies nest their messages the way the input was nested:
//   {"title": ["..."], "items": [{}, {"spec": {"split": ["..."], "retries": {"retry_on": {"0": ["..."]}}}}]}
// flattenErrors turns that into one message list per path ("items[1].spec.split", "items[1].spec.retries.retry_on[0]")
// so each input can find its own, and ownerOf finds the input (or section) that should show a deeper path.

export type ErrorMap = Record<string, string[]>;

const NON_FIELD = new Set(["non_field_errors", "detail"]);

/** `prefix` and `key` joined as a path: list indices (and DRF's digit keys for list fields) as `[i]`. */
export function joinPath(prefix: string, key: string | number): string {
  if (typeof key === "number" || /^\d+$/.test(key)) return `${prefix}[${key}]`;
  if (NON_FIELD.has(key)) return prefix;
  return prefix ? `${prefix}.${key}` : key;
}

function add(map: ErrorMap, path: string, messages: string[]): void {
  if (!messages.length) return;
  map[path] = [...(map[path] ?? []), ...messages];
}

/** Every message of a DRF error body, by the path of the field it names ("" for the whole request). */
export function flattenErrors(body: unknown, prefix = ""): ErrorMap {
  const map: ErrorMap = {};
  const walk = (value: unknown, path: string) => {
    if (value === null || value === undefined) return;
    if (typeof value === "string") {
      add(map, path, [value]);
    } else if (Array.isArray(value)) {
      if (value.every((entry) => typeof entry === "string")) add(map, path, value as string[]);
      else value.forEach((entry, index) => walk(entry, joinPath(path, index)));
    } else if (typeof value === "object") {
      for (const [key, inner] of Object.entries(value as Record<string, unknown>)) walk(inner, joinPath(path, key));
    } else {
      add(map, path, [String(value)]);
    }
  };
  walk(body, prefix);
  return map;
}

/** Whether `path` is `prefix` itself or lies beneath it (`spec.split[0].weight` is under `spec.split`). */
export function isUnder(path: string, prefix: string): boolean {
  if (prefix === "") return true;
  if (path === prefix) return true;
  return path.startsWith(`${prefix}.`) || path.startsWith(`${prefix}[`);
}

/** The errors beneath `prefix`, with paths relative to it (`items[0].spec.split` → `spec.split` for `items[0]`). */
export function errorsUnder(map: ErrorMap, prefix: string): ErrorMap {
  const result: ErrorMap = {};
  for (const [path, messages] of Object.entries(map)) {
    if (!isUnder(path, prefix)) continue;
    let rest = path.slice(prefix.length);
    if (rest.startsWith(".")) rest = rest.slice(1);
    add(result, rest, messages);
  }
  return result;
}

/** The claimed path that shows errors of `path`: the deepest one that `path` lies under, or null. */
export function ownerOf(path: string, claimed: readonly string[]): string | null {
  let best: string | null = null;
  for (const candidate of claimed) {
    if (isUnder(path, candidate) && (best === null || candidate.length > best.length)) best = candidate;
  }
  return best;
}

export interface PlacedErrors {
  /** Messages by claimed path; a message from deeper down names its own path relative to the owner. */
  byField: ErrorMap;
  /** Messages nothing claimed, each prefixed with its path. */
  unplaced: string[];
}

/** Distribute errors over the fields a view shows (`claimed`); the rest are shown together at the top. */
export function placeErrors(map: ErrorMap, claimed: readonly string[]): PlacedErrors {
  const byField: ErrorMap = {};
  const unplaced: string[] = [];
  for (const [path, messages] of Object.entries(map)) {
    const owner = ownerOf(path, claimed);
    if (owner === null) {
      unplaced.push(...messages.map((message) => (path ? `${path}: ${message}` : message)));
      continue;
    }
    let rest = path.slice(owner.length);
    if (rest.startsWith(".")) rest = rest.slice(1);
    add(
      byField,
      owner,
      messages.map((message) => (rest ? `${rest}: ${message}` : message)),
    );
  }
  return { byField, unplaced };
}
