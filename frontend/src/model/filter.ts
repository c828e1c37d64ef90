// The topology graph's find/hide filter: a small condition language typed into one text box,
// e.g. `ns = shop and errors > 5%`. Parsing reports the character position of a problem so the
// input can point at it.

export type FilterField = "name" | "namespace" | "rps" | "errors" | "p50" | "p95" | "p99" | "health";
export type FilterOp = ">" | ">=" | "<" | "<=" | "=" | "!=" | "^=" | "$=" | "*=";

export interface Condition {
  field: FilterField;
  op: FilterOp;
  /** Numbers are normalised: `errors` as a fraction (5% → 0.05), latencies in ms. */
  value: number | string;
}

export type ParseResult = { ok: true; conditions: Condition[] } | { ok: false; error: string; position: number };

export interface Filterable {
  name: string;
  namespace: string;
  rps: number;
  error_rate: number;
  p50_ms: number | null;
  p95_ms: number | null;
  p99_ms: number | null;
  health: string;
}

// Maps, not object literals: a typed word like "constructor" must not find Object.prototype members.
const FIELD_NAMES: ReadonlyMap<string, FilterField> = new Map([
  ["name", "name"],
  ["namespace", "namespace"],
  ["ns", "namespace"],
  ["rps", "rps"],
  ["errors", "errors"],
  ["error", "errors"],
  ["error_rate", "errors"],
  ["err", "errors"],
  ["p50", "p50"],
  ["p95", "p95"],
  ["p99", "p99"],
  ["latency", "p99"],
  ["health", "health"],
]);

const KNOWN_FIELDS_TEXT = "name, namespace (ns), rps, errors (error, error_rate, err), p50, p95, p99 (latency), health";

const NUMERIC_OPS: readonly FilterOp[] = [">", ">=", "<", "<=", "=", "!="];
const TEXT_OPS: readonly FilterOp[] = ["=", "!=", "^=", "$=", "*="];
// Health is a fixed set of four words: partial matches (^=, *=) would only ever equal `=`.
const HEALTH_OPS: readonly FilterOp[] = ["=", "!="];
export const HEALTH_VALUES: readonly string[] = ["idle", "healthy", "degraded", "failing"];

// Longest first, so `>=` is not read as `>` followed by a value starting with `=`.
const OPERATOR_TOKENS: readonly [string, FilterOp][] = [
  [">=", ">="],
  ["<=", "<="],
  ["!=", "!="],
  ["^=", "^="],
  ["$=", "$="],
  ["*=", "*="],
  ["==", "="],
  [">", ">"],
  ["<", "<"],
  ["=", "="],
];

const LATENCY_UNITS_MS: ReadonlyMap<string, number> = new Map([
  ["ms", 1],
  ["s", 1000],
  ["us", 0.001],
  ["µs", 0.001], // micro sign
  ["μs", 0.001], // Greek mu, which some keyboards type instead
]);

function opsFor(field: FilterField): readonly FilterOp[] {
  if (field === "health") return HEALTH_OPS;
  if (field === "name" || field === "namespace") return TEXT_OPS;
  return NUMERIC_OPS;
}

function isLatency(field: FilterField): field is "p50" | "p95" | "p99" {
  return field === "p50" || field === "p95" || field === "p99";
}

class FilterSyntaxError extends Error {
  readonly position: number;
  constructor(message: string, position: number) {
    super(message);
    this.position = position;
  }
}

const WORD_CHAR = /[A-Za-z0-9_]/;
const NUMBER_TOKEN = /^([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)([A-Za-zµμ%]*)$/;

/** A cursor over the filter text; every error carries the index where the problem starts. */
class Scanner {
  pos = 0;
  constructor(readonly text: string) {}

  skipSpace(): void {
    while (this.pos < this.text.length && /\s/.test(this.text[this.pos] ?? "")) this.pos += 1;
  }

  atEnd(): boolean {
    return this.pos >= this.text.length;
  }

  /** Whether the word `and` (not a prefix like `android`) starts at the cursor. */
  atAnd(): boolean {
    const word = this.text.slice(this.pos, this.pos + 3).toLowerCase();
    return word === "and" && !WORD_CHAR.test(this.text[this.pos + 3] ?? "");
  }

  /** End of a clause's value: end of text, a comma, or the `and` keyword. */
  atClauseEnd(): boolean {
    return this.atEnd() || this.text[this.pos] === "," || this.atAnd();
  }

  readWhile(pattern: RegExp): string {
    const start = this.pos;
    while (this.pos < this.text.length && pattern.test(this.text[this.pos] ?? "")) this.pos += 1;
    return this.text.slice(start, this.pos);
  }
}

export function parseFilter(text: string): ParseResult {
  const scanner = new Scanner(text);
  const conditions: Condition[] = [];
  scanner.skipSpace();
  if (scanner.atEnd()) return { ok: true, conditions };
  try {
    for (;;) {
      conditions.push(parseCondition(scanner));
      scanner.skipSpace();
      if (scanner.atEnd()) return { ok: true, conditions };
      if (scanner.text[scanner.pos] === ",") {
        scanner.pos += 1;
      } else if (scanner.atAnd()) {
        scanner.pos += 3;
      } else {
        const rest = scanner.readWhile(/\S/);
        throw new FilterSyntaxError(`Expected "and" or "," before "${rest}"`, scanner.pos - rest.length);
      }
      scanner.skipSpace();
      if (scanner.atEnd()) throw new FilterSyntaxError('Expected a condition after "and" or ","', scanner.pos);
    }
  } catch (error) {
    if (error instanceof FilterSyntaxError) return { ok: false, error: error.message, position: error.position };
    throw error;
  }
}

function parseCondition(scanner: Scanner): Condition {
  scanner.skipSpace();
  const fieldStart = scanner.pos;
  const word = scanner.readWhile(WORD_CHAR);
  if (word === "") {
    throw new FilterSyntaxError(`Expected a field name (one of ${KNOWN_FIELDS_TEXT})`, fieldStart);
  }
  const field = FIELD_NAMES.get(word.toLowerCase());
  if (field === undefined) {
    throw new FilterSyntaxError(`Unknown field "${word}"; known fields: ${KNOWN_FIELDS_TEXT}`, fieldStart);
  }

  scanner.skipSpace();
  const opStart = scanner.pos;
  const allowed = opsFor(field);
  const token = OPERATOR_TOKENS.find(([spelling]) => scanner.text.startsWith(spelling, opStart));
  if (token === undefined) {
    throw new FilterSyntaxError(`Expected an operator after "${word}" (one of ${allowed.join(" ")})`, opStart);
  }
  const [spelling, op] = token;
  if (!allowed.includes(op)) {
    const message = `Operator "${op}" does not apply to ${field}; use one of ${allowed.join(" ")}`;
    throw new FilterSyntaxError(message, opStart);
  }
  scanner.pos += spelling.length;

  scanner.skipSpace();
  const valueStart = scanner.pos;
  if (scanner.atClauseEnd()) throw new FilterSyntaxError(`Missing value after "${word} ${op}"`, valueStart);

  if (field === "name" || field === "namespace" || field === "health") {
    const value = readText(scanner);
    if (field === "health") {
      const lower = value.toLowerCase();
      if (!HEALTH_VALUES.includes(lower)) {
        throw new FilterSyntaxError(`Unknown health "${value}"; use one of ${HEALTH_VALUES.join(", ")}`, valueStart);
      }
      return { field, op, value: lower };
    }
    return { field, op, value };
  }
  return { field, op, value: readNumber(scanner, field) };
}

/** A quoted string (so values may hold spaces, commas or the word "and") or a bare word. */
function readText(scanner: Scanner): string {
  const quote = scanner.text[scanner.pos];
  if (quote === '"' || quote === "'") {
    const start = scanner.pos;
    const close = scanner.text.indexOf(quote, start + 1);
    if (close === -1) throw new FilterSyntaxError("Unterminated quoted string", start);
    scanner.pos = close + 1;
    return scanner.text.slice(start + 1, close);
  }
  return scanner.readWhile(/[^\s,]/);
}

function readNumber(scanner: Scanner, field: FilterField): number {
  const start = scanner.pos;
  const raw = scanner.readWhile(/[^\s,]/);
  const match = NUMBER_TOKEN.exec(raw);
  const number = match?.[1] === undefined ? Number.NaN : Number(match[1]);
  if (match === null || !Number.isFinite(number)) {
    throw new FilterSyntaxError(`"${raw}" is not a number`, start);
  }
  let unit = match[2] ?? "";
  let unitStart = start + (match[1]?.length ?? 0);
  if (unit === "") {
    // Allow a unit after a space (`250 ms`), but only a known one, so `rps > 5 and ...` keeps its `and`.
    const save = scanner.pos;
    scanner.skipSpace();
    const afterSpace = scanner.pos;
    const next = scanner.readWhile(/[^\s,]/).toLowerCase();
    if (next === "%" || (isLatency(field) && LATENCY_UNITS_MS.has(next))) {
      unit = next;
      unitStart = afterSpace;
    } else {
      scanner.pos = save;
    }
  }
  return applyUnit(number, unit.toLowerCase(), field, unitStart);
}

function applyUnit(number: number, unit: string, field: FilterField, unitStart: number): number {
  if (field === "errors") {
    // Error rates are typed as percentages with or without the sign: `errors > 5` means 5%.
    if (unit === "" || unit === "%") return number / 100;
    throw new FilterSyntaxError(`Unknown unit "${unit}" for errors; use a percentage like 5%`, unitStart);
  }
  if (isLatency(field)) {
    if (unit === "") return number;
    const factor = LATENCY_UNITS_MS.get(unit);
    if (factor === undefined) {
      throw new FilterSyntaxError(`Unknown unit "${unit}" for ${field}; use ms, s or us`, unitStart);
    }
    return number * factor;
  }
  if (unit !== "") throw new FilterSyntaxError(`${field} takes a plain number, without "${unit}"`, unitStart);
  return number;
}

// Typed percentages come back as binary fractions (1.23 / 100 is not exactly 0.0123): `=` tolerates that.
function nearlyEqual(a: number, b: number): boolean {
  return Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(a), Math.abs(b));
}

function compareNumber(actual: number, op: FilterOp, expected: number): boolean {
  switch (op) {
    case ">":
      return actual > expected && !nearlyEqual(actual, expected);
    case ">=":
      return actual >= expected || nearlyEqual(actual, expected);
    case "<":
      return actual < expected && !nearlyEqual(actual, expected);
    case "<=":
      return actual <= expected || nearlyEqual(actual, expected);
    case "=":
      return nearlyEqual(actual, expected);
    case "!=":
      return !nearlyEqual(actual, expected);
    default:
      return false;
  }
}

function compareText(actual: string, op: FilterOp, expected: string): boolean {
  const a = actual.toLowerCase();
  const e = expected.toLowerCase();
  switch (op) {
    case "=":
      return a === e;
    case "!=":
      return a !== e;
    case "^=":
      return a.startsWith(e);
    case "$=":
      return a.endsWith(e);
    case "*=":
      return a.includes(e);
    default:
      return false;
  }
}

function numericValue(item: Filterable, field: FilterField): number | null {
  switch (field) {
    case "rps":
      return item.rps;
    case "errors":
      return item.error_rate;
    case "p50":
      return item.p50_ms;
    case "p95":
      return item.p95_ms;
    case "p99":
      return item.p99_ms;
    default:
      return null;
  }
}

function matchesOne(item: Filterable, c: Condition): boolean {
  if (c.field === "name" || c.field === "namespace" || c.field === "health") {
    return compareText(item[c.field], c.op, String(c.value));
  }
  const actual = numericValue(item, c.field);
  // No requests means no latency: an unknown p99 is neither above nor below (nor unequal to) anything.
  if (actual === null || typeof c.value !== "number") return false;
  return compareNumber(actual, c.op, c.value);
}

/** Whether `item` satisfies every condition (an empty list matches everything). */
export function matches(item: Filterable, conditions: Condition[]): boolean {
  return conditions.every((c) => matchesOne(item, c));
}

export const FILTER_HELP: { example: string; meaning: string }[] = [
  { example: "errors > 5%", meaning: "error rate above 5% (the % is optional: errors > 5 is the same)" },
  { example: "rps > 10", meaning: "more than 10 requests per second" },
  { example: "p99 > 250ms", meaning: "99th-percentile latency above 250 ms (units: ms, s, us; default ms)" },
  { example: "health = failing", meaning: "health is idle, healthy, degraded or failing (= or !=)" },
  { example: "name ^= rev", meaning: "name starts with rev ($= ends with, *= contains); case-insensitive" },
  { example: 'name *= "cat"', meaning: "quote values that hold spaces, commas or the word and" },
  { example: "ns = shop and rps >= 1", meaning: "join conditions with and or a comma: all must hold" },
  {
    example: "latency >= 1s, err != 0",
    meaning: "aliases: latency = p99, err/error/error_rate = errors, ns = namespace",
  },
];

const TEXT_OP_WORDS: Partial<Record<FilterOp, string>> = {
  "=": "is",
  "!=": "is not",
  "^=": "starts with",
  "$=": "ends with",
  "*=": "contains",
};

/** Up to `decimals` decimals without trailing zeros: a condition reads as typed ("5%", not "5.00%"). */
function trimmed(n: number, decimals: number): string {
  return String(Number(n.toFixed(decimals)));
}

function describeNumber(c: Condition & { value: number }): string {
  if (c.field === "errors") return `${trimmed(c.value * 100, 4)}%`;
  if (isLatency(c.field)) {
    if (Math.abs(c.value) >= 1000) return `${trimmed(c.value / 1000, 3)} s`;
    if (c.value !== 0 && Math.abs(c.value) < 1) return `${trimmed(c.value * 1000, 3)} µs`;
    return `${trimmed(c.value, 3)} ms`;
  }
  return trimmed(c.value, 3);
}

export function describeCondition(c: Condition): string {
  const label = c.field === "errors" ? "error rate" : c.field;
  if (typeof c.value === "number") return `${label} ${c.op} ${describeNumber({ ...c, value: c.value })}`;
  const verb = TEXT_OP_WORDS[c.op] ?? c.op;
  return c.field === "health" ? `${label} ${verb} ${c.value}` : `${label} ${verb} "${c.value}"`;
}
