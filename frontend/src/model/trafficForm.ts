// The traffic policy form's state and its conversion to and from a spec (meshui/policy/validation.py's
// TrafficPolicySpecSerializer). Inputs hold text; a section is in the spec exactly when it is switched on, so a spec
// goes through the form and back unchanged. A spec holding something the form cannot show (an unknown key, a value
// of another type) is left to the YAML view: unsupportedPaths says what, and the editor will not switch.
import type { Spec } from "./policy";

export const LB_POLICIES = ["round_robin", "least_request", "random", "consistent_hash"] as const;
export const RETRY_ON = ["5xx", "connect-failure", "reset"] as const;

export interface SplitRow {
  version: string;
  weight: string;
}

export interface TrafficForm {
  loadBalancer: { enabled: boolean; policy: string; hashHeader: string };
  timeoutMs: string;
  retries: {
    enabled: boolean;
    attempts: string;
    perTryTimeoutMs: string;
    retryOn: string[];
    nonIdempotent: boolean;
    /** The spec names non_idempotent (even as false): the form writes it back whatever its value. */
    nonIdempotentGiven: boolean;
    maxReplayBodyBytes: string;
  };
  retryBudget: { enabled: boolean; percent: string; minPerSecond: string };
  circuitBreaker: { enabled: boolean; maxConnections: string; maxPendingRequests: string; maxRequests: string };
  outlierDetection: {
    enabled: boolean;
    consecutive5xx: string;
    consecutiveGatewayErrors: string;
    intervalMs: string;
    baseEjectionMs: string;
    maxEjectionPercent: string;
  };
  split: { enabled: boolean; rows: SplitRow[] };
  faultDelay: { enabled: boolean; percent: string; fixedDelayMs: string };
  faultAbort: { enabled: boolean; percent: string; httpStatus: string };
}

export function emptyTrafficForm(): TrafficForm {
  return {
    loadBalancer: { enabled: false, policy: "round_robin", hashHeader: "" },
    timeoutMs: "",
    retries: {
      enabled: false,
      attempts: "2",
      perTryTimeoutMs: "",
      retryOn: ["5xx", "connect-failure"],
      nonIdempotent: false,
      nonIdempotentGiven: false,
      maxReplayBodyBytes: "",
    },
    retryBudget: { enabled: false, percent: "20", minPerSecond: "10" },
    circuitBreaker: { enabled: false, maxConnections: "", maxPendingRequests: "", maxRequests: "" },
    outlierDetection: {
      enabled: false,
      consecutive5xx: "5",
      consecutiveGatewayErrors: "",
      intervalMs: "10000",
      baseEjectionMs: "30000",
      maxEjectionPercent: "",
    },
    split: { enabled: false, rows: [] },
    faultDelay: { enabled: false, percent: "", fixedDelayMs: "" },
    faultAbort: { enabled: false, percent: "", httpStatus: "503" },
  };
}

// Each section's keys: spec key → form key. The order is the spec's canonical order.
const SECTIONS = {
  load_balancer: ["policy", "hash_header"],
  retries: ["attempts", "per_try_timeout_ms", "retry_on", "non_idempotent", "max_replay_body_bytes"],
  retry_budget: ["percent", "min_per_second"],
  circuit_breaker: ["max_connections", "max_pending_requests", "max_requests"],
  outlier_detection: [
    "consecutive_5xx",
    "consecutive_gateway_errors",
    "interval_ms",
    "base_ejection_ms",
    "max_ejection_percent",
  ],
} as const;
const TOP_LEVEL = new Set([...Object.keys(SECTIONS), "timeout_ms", "split", "fault"]);

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The paths of a spec that the form cannot show faithfully; empty when the form can edit it. */
export function unsupportedPaths(spec: Spec | null): string[] {
  if (spec === null) return [];
  const bad: string[] = [];
  const numberAt = (value: unknown, path: string) => {
    if (value !== undefined && typeof value !== "number") bad.push(path);
  };
  for (const [key, value] of Object.entries(spec)) {
    if (!TOP_LEVEL.has(key)) {
      bad.push(key);
      continue;
    }
    if (key === "timeout_ms") {
      numberAt(value, key);
      continue;
    }
    if (key === "split") {
      if (!Array.isArray(value)) bad.push(key);
      else
        value.forEach((entry, index) => {
          if (!isRecord(entry)) return bad.push(`split[${index}]`);
          for (const inner of Object.keys(entry)) {
            if (inner !== "version" && inner !== "weight") bad.push(`split[${index}].${inner}`);
          }
          if (typeof entry.version !== "string") bad.push(`split[${index}].version`);
          numberAt(entry.weight, `split[${index}].weight`);
          if (entry.weight === undefined) bad.push(`split[${index}].weight`);
        });
      continue;
    }
    if (key === "fault") {
      if (!isRecord(value) || (!("delay" in value) && !("abort" in value))) {
        bad.push(key);
        continue;
      }
      for (const [part, fields] of Object.entries(value)) {
        const allowed =
          part === "delay" ? ["percent", "fixed_delay_ms"] : part === "abort" ? ["percent", "http_status"] : null;
        if (allowed === null || !isRecord(fields)) {
          bad.push(`fault.${part}`);
          continue;
        }
        for (const [field, inner] of Object.entries(fields)) {
          if (!allowed.includes(field)) bad.push(`fault.${part}.${field}`);
          else numberAt(inner, `fault.${part}.${field}`);
        }
      }
      continue;
    }
    const allowed: readonly string[] = SECTIONS[key as keyof typeof SECTIONS];
    if (!isRecord(value)) {
      bad.push(key);
      continue;
    }
    for (const [field, inner] of Object.entries(value)) {
      const path = `${key}.${field}`;
      if (!allowed.includes(field)) bad.push(path);
      else if (key === "load_balancer") {
        if (typeof inner !== "string") bad.push(path);
        else if (field === "policy" && !(LB_POLICIES as readonly string[]).includes(inner)) bad.push(path);
      } else if (field === "retry_on") {
        if (!Array.isArray(inner) || inner.some((entry) => !(RETRY_ON as readonly string[]).includes(entry as string)))
          bad.push(path);
        else if (new Set(inner).size !== inner.length) bad.push(path);
      } else if (field === "non_idempotent") {
        if (typeof inner !== "boolean") bad.push(path);
      } else numberAt(inner, path);
    }
  }
  return bad;
}

const text = (value: unknown): string => (value === undefined || value === null ? "" : String(value));

/** The form showing `spec` (check unsupportedPaths first: what it lists is dropped). */
export function trafficFormFromSpec(spec: Spec | null): TrafficForm {
  const form = emptyTrafficForm();
  if (!spec) return form;
  const lb = isRecord(spec.load_balancer) ? spec.load_balancer : null;
  if (lb)
    form.loadBalancer = { enabled: true, policy: text(lb.policy) || "round_robin", hashHeader: text(lb.hash_header) };
  form.timeoutMs = text(spec.timeout_ms);
  const retries = isRecord(spec.retries) ? spec.retries : null;
  if (retries) {
    form.retries = {
      enabled: true,
      attempts: text(retries.attempts),
      perTryTimeoutMs: text(retries.per_try_timeout_ms),
      retryOn: Array.isArray(retries.retry_on) ? retries.retry_on.map(String) : [],
      nonIdempotent: retries.non_idempotent === true,
      nonIdempotentGiven: "non_idempotent" in retries,
      maxReplayBodyBytes: text(retries.max_replay_body_bytes),
    };
  }
  const budget = isRecord(spec.retry_budget) ? spec.retry_budget : null;
  if (budget)
    form.retryBudget = { enabled: true, percent: text(budget.percent), minPerSecond: text(budget.min_per_second) };
  const breaker = isRecord(spec.circuit_breaker) ? spec.circuit_breaker : null;
  if (breaker) {
    form.circuitBreaker = {
      enabled: true,
      maxConnections: text(breaker.max_connections),
      maxPendingRequests: text(breaker.max_pending_requests),
      maxRequests: text(breaker.max_requests),
    };
  }
  const outlier = isRecord(spec.outlier_detection) ? spec.outlier_detection : null;
  if (outlier) {
    form.outlierDetection = {
      enabled: true,
      consecutive5xx: text(outlier.consecutive_5xx),
      consecutiveGatewayErrors: text(outlier.consecutive_gateway_errors),
      intervalMs: text(outlier.interval_ms),
      baseEjectionMs: text(outlier.base_ejection_ms),
      maxEjectionPercent: text(outlier.max_ejection_percent),
    };
  }
  if (Array.isArray(spec.split)) {
    form.split = {
      enabled: true,
      rows: spec.split.filter(isRecord).map((entry) => ({ version: text(entry.version), weight: text(entry.weight) })),
    };
  }
  const fault = isRecord(spec.fault) ? spec.fault : null;
  const delay = fault && isRecord(fault.delay) ? fault.delay : null;
  const abort = fault && isRecord(fault.abort) ? fault.abort : null;
  if (delay)
    form.faultDelay = { enabled: true, percent: text(delay.percent), fixedDelayMs: text(delay.fixed_delay_ms) };
  if (abort) form.faultAbort = { enabled: true, percent: text(abort.percent), httpStatus: text(abort.http_status) };
  return form;
}

/** A number typed into the form: omitted when blank; text that is no number is sent as is, for the API to name. */
export function numberField(value: string): number | string | undefined {
  const trimmed = value.trim();
  if (!trimmed) return undefined;
  const parsed = Number(trimmed);
  return Number.isFinite(parsed) ? parsed : trimmed;
}

function compact(entries: [string, unknown][]): Record<string, unknown> {
  return Object.fromEntries(entries.filter(([, value]) => value !== undefined));
}

/** The spec the form describes: only the sections switched on, only the fields filled in. */
export function specFromTrafficForm(form: TrafficForm): Spec {
  const spec: Spec = {};
  if (form.loadBalancer.enabled) {
    spec.load_balancer = compact([
      ["policy", form.loadBalancer.policy],
      ["hash_header", form.loadBalancer.policy === "consistent_hash" ? form.loadBalancer.hashHeader : undefined],
    ]);
  }
  const timeout = numberField(form.timeoutMs);
  if (timeout !== undefined) spec.timeout_ms = timeout;
  if (form.retries.enabled) {
    const retries = form.retries;
    spec.retries = compact([
      ["attempts", numberField(retries.attempts)],
      ["per_try_timeout_ms", numberField(retries.perTryTimeoutMs)],
      ["retry_on", retries.retryOn],
      ["non_idempotent", retries.nonIdempotent || retries.nonIdempotentGiven ? retries.nonIdempotent : undefined],
      ["max_replay_body_bytes", numberField(retries.maxReplayBodyBytes)],
    ]);
  }
  if (form.retryBudget.enabled) {
    spec.retry_budget = compact([
      ["percent", numberField(form.retryBudget.percent)],
      ["min_per_second", numberField(form.retryBudget.minPerSecond)],
    ]);
  }
  if (form.circuitBreaker.enabled) {
    spec.circuit_breaker = compact([
      ["max_connections", numberField(form.circuitBreaker.maxConnections)],
      ["max_pending_requests", numberField(form.circuitBreaker.maxPendingRequests)],
      ["max_requests", numberField(form.circuitBreaker.maxRequests)],
    ]);
  }
  if (form.outlierDetection.enabled) {
    const outlier = form.outlierDetection;
    spec.outlier_detection = compact([
      ["consecutive_5xx", numberField(outlier.consecutive5xx)],
      ["consecutive_gateway_errors", numberField(outlier.consecutiveGatewayErrors)],
      ["interval_ms", numberField(outlier.intervalMs)],
      ["base_ejection_ms", numberField(outlier.baseEjectionMs)],
      ["max_ejection_percent", numberField(outlier.maxEjectionPercent)],
    ]);
  }
  if (form.split.enabled) {
    spec.split = form.split.rows.map((row) =>
      compact([
        ["version", row.version],
        ["weight", numberField(row.weight)],
      ]),
    );
  }
  if (form.faultDelay.enabled || form.faultAbort.enabled) {
    spec.fault = compact([
      [
        "delay",
        form.faultDelay.enabled
          ? compact([
              ["percent", numberField(form.faultDelay.percent)],
              ["fixed_delay_ms", numberField(form.faultDelay.fixedDelayMs)],
            ])
          : undefined,
      ],
      [
        "abort",
        form.faultAbort.enabled
          ? compact([
              ["percent", numberField(form.faultAbort.percent)],
              ["http_status", numberField(form.faultAbort.httpStatus)],
            ])
          : undefined,
      ],
    ]);
  }
  return spec;
}

export interface SplitTotal {
  sum: number;
  /** Every weight is a whole number from 0 to 100. */
  wellFormed: boolean;
  /** Well formed and summing to exactly 100, as the API requires. */
  valid: boolean;
}

/** The live sum under the split rows. */
export function splitTotal(rows: readonly SplitRow[]): SplitTotal {
  let sum = 0;
  let wellFormed = true;
  for (const row of rows) {
    const weight = numberField(row.weight);
    if (typeof weight !== "number" || !Number.isInteger(weight) || weight < 0 || weight > 100) {
      wellFormed = false;
      continue;
    }
    sum += weight;
  }
  return { sum, wellFormed, valid: wellFormed && sum === 100 && rows.length > 0 };
}

/** The paths (relative to the item, under `spec.`) the form shows errors at. */
export function trafficFormPaths(form: TrafficForm): string[] {
  const paths = [
    "spec.load_balancer",
    "spec.load_balancer.policy",
    "spec.load_balancer.hash_header",
    "spec.timeout_ms",
    "spec.retries",
    "spec.retries.attempts",
    "spec.retries.per_try_timeout_ms",
    "spec.retries.retry_on",
    "spec.retries.non_idempotent",
    "spec.retries.max_replay_body_bytes",
    "spec.retry_budget",
    "spec.retry_budget.percent",
    "spec.retry_budget.min_per_second",
    "spec.circuit_breaker",
    "spec.circuit_breaker.max_connections",
    "spec.circuit_breaker.max_pending_requests",
    "spec.circuit_breaker.max_requests",
    "spec.outlier_detection",
    "spec.outlier_detection.consecutive_5xx",
    "spec.outlier_detection.consecutive_gateway_errors",
    "spec.outlier_detection.interval_ms",
    "spec.outlier_detection.base_ejection_ms",
    "spec.outlier_detection.max_ejection_percent",
    "spec.split",
    "spec.fault",
    "spec.fault.delay",
    "spec.fault.delay.percent",
    "spec.fault.delay.fixed_delay_ms",
    "spec.fault.abort",
    "spec.fault.abort.percent",
    "spec.fault.abort.http_status",
  ];
  form.split.rows.forEach((_row, index) => {
    paths.push(`spec.split[${index}].version`, `spec.split[${index}].weight`);
  });
  return paths;
}
