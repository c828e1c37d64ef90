import { describe, expect, it } from "vitest";

import {
  emptyTrafficForm,
  numberField,
  specFromTrafficForm,
  splitTotal,
  trafficFormFromSpec,
  trafficFormPaths,
  unsupportedPaths,
} from "./trafficForm";

// Every field the form shows, as the API stores a validated spec.
const FULL = {
  load_balancer: { policy: "consistent_hash", hash_header: "x-user" },
  timeout_ms: 3000,
  retries: {
    attempts: 2,
    per_try_timeout_ms: 1000,
    retry_on: ["reset", "5xx"],
    non_idempotent: false,
    max_replay_body_bytes: 65536,
  },
  retry_budget: { percent: 20, min_per_second: 10 },
  circuit_breaker: { max_connections: 100, max_pending_requests: 10, max_requests: 50 },
  outlier_detection: {
    consecutive_5xx: 5,
    consecutive_gateway_errors: 3,
    interval_ms: 10000,
    base_ejection_ms: 30000,
    max_ejection_percent: 50,
  },
  split: [
    { version: "v1", weight: 90 },
    { version: "v2", weight: 10 },
  ],
  fault: { delay: { percent: 5.5, fixed_delay_ms: 200 }, abort: { percent: 1, http_status: 503 } },
};

describe("the traffic policy form", () => {
  it("gives back the spec it was filled from", () => {
    expect(unsupportedPaths(FULL)).toEqual([]);
    expect(specFromTrafficForm(trafficFormFromSpec(FULL))).toEqual(FULL);
    const small = { split: [{ version: "v1", weight: 100 }] };
    expect(specFromTrafficForm(trafficFormFromSpec(small))).toEqual(small);
    expect(specFromTrafficForm(trafficFormFromSpec({ retries: { attempts: 1, retry_on: ["5xx"] } }))).toEqual({
      retries: { attempts: 1, retry_on: ["5xx"] },
    });
  });

  it("writes nothing for an empty form and only the sections switched on", () => {
    expect(specFromTrafficForm(emptyTrafficForm())).toEqual({});
    const form = emptyTrafficForm();
    form.timeoutMs = " 2500 ";
    form.circuitBreaker = { enabled: true, maxConnections: "", maxPendingRequests: "", maxRequests: "20" };
    form.retryBudget.percent = "50"; // filled in but switched off
    expect(specFromTrafficForm(form)).toEqual({ timeout_ms: 2500, circuit_breaker: { max_requests: 20 } });
  });

  it("sends a hash header only with consistent hashing", () => {
    const form = emptyTrafficForm();
    form.loadBalancer = { enabled: true, policy: "least_request", hashHeader: "x-user" };
    expect(specFromTrafficForm(form)).toEqual({ load_balancer: { policy: "least_request" } });
    form.loadBalancer.policy = "consistent_hash";
    expect(specFromTrafficForm(form)).toEqual({ load_balancer: { policy: "consistent_hash", hash_header: "x-user" } });
  });

  it("writes non_idempotent when set, or when the spec named it", () => {
    const form = emptyTrafficForm();
    form.retries.enabled = true;
    expect(specFromTrafficForm(form).retries).toEqual({ attempts: 2, retry_on: ["5xx", "connect-failure"] });
    form.retries.nonIdempotent = true;
    expect(specFromTrafficForm(form).retries).toMatchObject({ non_idempotent: true });
  });

  it("writes split rows and a fault's parts as given", () => {
    const form = emptyTrafficForm();
    form.split = {
      enabled: true,
      rows: [
        { version: "v1", weight: "90" },
        { version: "v2", weight: "" },
      ],
    };
    form.faultAbort = { enabled: true, percent: "100", httpStatus: "503" };
    expect(specFromTrafficForm(form)).toEqual({
      split: [{ version: "v1", weight: 90 }, { version: "v2" }],
      fault: { abort: { percent: 100, http_status: 503 } },
    });
  });

  it("leaves text that is no number for the API to name", () => {
    expect(numberField("")).toBeUndefined();
    expect(numberField("  ")).toBeUndefined();
    expect(numberField("12")).toBe(12);
    expect(numberField("1.5")).toBe(1.5);
    expect(numberField("ten")).toBe("ten");
  });

  it("lists what it cannot show, so the editor stays in YAML", () => {
    expect(unsupportedPaths(null)).toEqual([]);
    expect(unsupportedPaths({ timout_ms: 5 })).toEqual(["timout_ms"]);
    expect(unsupportedPaths({ timeout_ms: "5" })).toEqual(["timeout_ms"]);
    expect(unsupportedPaths({ retries: { attempts: 1, retry_on: ["5xx", "sometimes"], extra: 1 } })).toEqual([
      "retries.retry_on",
      "retries.extra",
    ]);
    expect(unsupportedPaths({ split: [{ version: "v1", weight: 50, label: "x" }, "v2"] })).toEqual([
      "split[0].label",
      "split[1]",
    ]);
    expect(unsupportedPaths({ fault: {} })).toEqual(["fault"]);
    expect(unsupportedPaths({ fault: { delay: { percent: 1, fixed_delay_ms: 2, jitter: 3 } } })).toEqual([
      "fault.delay.jitter",
    ]);
    expect(unsupportedPaths({ load_balancer: { policy: "ring" } })).toEqual(["load_balancer.policy"]);
  });

  it("claims a path for each split row's inputs", () => {
    const form = emptyTrafficForm();
    form.split = {
      enabled: true,
      rows: [
        { version: "v1", weight: "50" },
        { version: "v2", weight: "50" },
      ],
    };
    const paths = trafficFormPaths(form);
    expect(paths).toContain("spec.split");
    expect(paths).toContain("spec.split[1].weight");
    expect(paths).not.toContain("spec.split[2].weight");
  });
});

describe("splitTotal", () => {
  it("sums the weights and says whether the API will take them", () => {
    expect(
      splitTotal([
        { version: "v1", weight: "90" },
        { version: "v2", weight: "10" },
      ]),
    ).toEqual({ sum: 100, wellFormed: true, valid: true });
    expect(
      splitTotal([
        { version: "v1", weight: "90" },
        { version: "v2", weight: "20" },
      ]),
    ).toEqual({ sum: 110, wellFormed: true, valid: false });
  });

  it("counts only whole weights from 0 to 100", () => {
    expect(
      splitTotal([
        { version: "v1", weight: "50.5" },
        { version: "v2", weight: "" },
        { version: "v3", weight: "50" },
      ]),
    ).toEqual({ sum: 50, wellFormed: false, valid: false });
    expect(splitTotal([])).toEqual({ sum: 0, wellFormed: true, valid: false });
  });
});
