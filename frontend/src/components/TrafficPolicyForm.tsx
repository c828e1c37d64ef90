import type { ReactNode } from "react";
import type { ErrorMap } from "../model/errors";
import { LB_POLICIES, RETRY_ON, splitTotal, type TrafficForm } from "../model/trafficForm";
import { FieldErrors } from "./PolicyBits";

type Section = Exclude<keyof TrafficForm, "timeoutMs">;

function fieldId(prefix: string, path: string): string {
  return `${prefix}-${path.replace(/[^A-Za-z0-9_-]/g, "-")}`;
}

interface FieldProps {
  prefix: string;
  errors: ErrorMap;
}

function NumberField({
  prefix,
  errors,
  path,
  label,
  value,
  onChange,
  min,
  max,
  step,
  unit,
  hint,
}: FieldProps & {
  path: string;
  label: string;
  value: string;
  onChange: (value: string) => void;
  min?: number;
  max?: number;
  step?: number | "any";
  unit?: string;
  hint?: string;
}) {
  const id = fieldId(prefix, path);
  const messages = errors[path];
  return (
    <div className="field">
      <label htmlFor={id}>
        {label}
        {unit && <span className="muted"> ({unit})</span>}
      </label>
      <input
        id={id}
        type="number"
        inputMode="decimal"
        min={min}
        max={max}
        step={step ?? 1}
        value={value}
        data-path={path}
        aria-invalid={messages?.length ? true : undefined}
        aria-describedby={messages?.length ? `${id}-error` : undefined}
        onChange={(event) => onChange(event.target.value)}
      />
      {hint && <span className="muted hint">{hint}</span>}
      <FieldErrors id={`${id}-error`} messages={messages} />
    </div>
  );
}

function SectionBox({
  prefix,
  errors,
  path,
  title,
  enabled,
  onToggle,
  children,
}: FieldProps & {
  path: string;
  title: string;
  enabled: boolean;
  onToggle: (enabled: boolean) => void;
  children: ReactNode;
}) {
  const id = fieldId(prefix, path);
  return (
    <fieldset className={`form-section${enabled ? " on" : ""}`} data-section={path}>
      <legend>
        <label className="checkbox">
          <input type="checkbox" checked={enabled} onChange={(event) => onToggle(event.target.checked)} />
          {title}
        </label>
      </legend>
      <FieldErrors id={`${id}-error`} messages={errors[path]} />
      {enabled && <div className="form-grid">{children}</div>}
    </fieldset>
  );
}

/** The traffic policy's form view. Errors arrive keyed by path relative to the item (`spec.split[1].weight`). */
export function TrafficPolicyForm({
  form,
  onChange,
  errors,
  prefix,
}: {
  form: TrafficForm;
  onChange: (form: TrafficForm) => void;
  errors: ErrorMap;
  prefix: string;
}) {
  const set = <K extends Section>(section: K, patch: Partial<TrafficForm[K]>) =>
    onChange({ ...form, [section]: { ...form[section], ...patch } });
  const common = { prefix, errors };
  const total = splitTotal(form.split.rows);
  const sumId = fieldId(prefix, "spec.split-sum");

  return (
    <div className="traffic-form" data-testid="traffic-form">
      <SectionBox
        {...common}
        path="spec.load_balancer"
        title="Load balancer"
        enabled={form.loadBalancer.enabled}
        onToggle={(enabled) => set("loadBalancer", { enabled })}
      >
        <div className="field">
          <label htmlFor={fieldId(prefix, "spec.load_balancer.policy")}>Policy</label>
          <select
            id={fieldId(prefix, "spec.load_balancer.policy")}
            value={form.loadBalancer.policy}
            onChange={(event) => set("loadBalancer", { policy: event.target.value })}
          >
            {LB_POLICIES.map((policy) => (
              <option key={policy} value={policy}>
                {policy.replace("_", " ")}
              </option>
            ))}
          </select>
          <FieldErrors
            id={`${fieldId(prefix, "spec.load_balancer.policy")}-error`}
            messages={errors["spec.load_balancer.policy"]}
          />
        </div>
        {form.loadBalancer.policy === "consistent_hash" && (
          <div className="field">
            <label htmlFor={fieldId(prefix, "spec.load_balancer.hash_header")}>Hash header</label>
            <input
              id={fieldId(prefix, "spec.load_balancer.hash_header")}
              type="text"
              placeholder="x-user-id"
              value={form.loadBalancer.hashHeader}
              aria-invalid={errors["spec.load_balancer.hash_header"]?.length ? true : undefined}
              aria-describedby={`${fieldId(prefix, "spec.load_balancer.hash_header")}-error`}
              onChange={(event) => set("loadBalancer", { hashHeader: event.target.value })}
            />
            <FieldErrors
              id={`${fieldId(prefix, "spec.load_balancer.hash_header")}-error`}
              messages={errors["spec.load_balancer.hash_header"]}
            />
          </div>
        )}
      </SectionBox>

      <fieldset className="form-section on">
        <legend>Timeout</legend>
        <div className="form-grid">
          <NumberField
            {...common}
            path="spec.timeout_ms"
            label="Request timeout"
            unit="ms"
            min={1}
            value={form.timeoutMs}
            hint="Blank: the agent's default."
            onChange={(timeoutMs) => onChange({ ...form, timeoutMs })}
          />
        </div>
      </fieldset>

      <SectionBox
        {...common}
        path="spec.retries"
        title="Retries"
        enabled={form.retries.enabled}
        onToggle={(enabled) => set("retries", { enabled })}
      >
        <NumberField
          {...common}
          path="spec.retries.attempts"
          label="Attempts"
          min={0}
          max={10}
          value={form.retries.attempts}
          onChange={(attempts) => set("retries", { attempts })}
        />
        <NumberField
          {...common}
          path="spec.retries.per_try_timeout_ms"
          label="Per-try timeout"
          unit="ms"
          min={1}
          value={form.retries.perTryTimeoutMs}
          onChange={(perTryTimeoutMs) => set("retries", { perTryTimeoutMs })}
        />
        <fieldset className="field checkbox-group">
          <legend>Retry on</legend>
          {RETRY_ON.map((condition) => (
            <label key={condition} className="checkbox">
              <input
                type="checkbox"
                checked={form.retries.retryOn.includes(condition)}
                onChange={(event) =>
                  set("retries", {
                    retryOn: event.target.checked
                      ? [...form.retries.retryOn, condition]
                      : form.retries.retryOn.filter((entry) => entry !== condition),
                  })
                }
              />
              {condition}
            </label>
          ))}
          <FieldErrors
            id={`${fieldId(prefix, "spec.retries.retry_on")}-error`}
            messages={errors["spec.retries.retry_on"]}
          />
        </fieldset>
        <div className="field">
          <label className="checkbox">
            <input
              type="checkbox"
              checked={form.retries.nonIdempotent}
              aria-describedby={`${fieldId(prefix, "spec.retries.non_idempotent")}-error`}
              onChange={(event) => set("retries", { nonIdempotent: event.target.checked, nonIdempotentGiven: true })}
            />
            Retry non-idempotent requests (POST, PATCH…)
          </label>
          <FieldErrors
            id={`${fieldId(prefix, "spec.retries.non_idempotent")}-error`}
            messages={errors["spec.retries.non_idempotent"]}
          />
        </div>
        <NumberField
          {...common}
          path="spec.retries.max_replay_body_bytes"
          label="Max replay body"
          unit="bytes"
          min={0}
          value={form.retries.maxReplayBodyBytes}
          hint="Blank: 65536."
          onChange={(maxReplayBodyBytes) => set("retries", { maxReplayBodyBytes })}
        />
      </SectionBox>

      <SectionBox
        {...common}
        path="spec.retry_budget"
        title="Retry budget"
        enabled={form.retryBudget.enabled}
        onToggle={(enabled) => set("retryBudget", { enabled })}
      >
        <NumberField
          {...common}
          path="spec.retry_budget.percent"
          label="Retries at most"
          unit="% of requests"
          min={0}
          max={100}
          step="any"
          value={form.retryBudget.percent}
          onChange={(percent) => set("retryBudget", { percent })}
        />
        <NumberField
          {...common}
          path="spec.retry_budget.min_per_second"
          label="But always allow"
          unit="retries/s"
          min={0}
          value={form.retryBudget.minPerSecond}
          onChange={(minPerSecond) => set("retryBudget", { minPerSecond })}
        />
      </SectionBox>

      <SectionBox
        {...common}
        path="spec.circuit_breaker"
        title="Circuit breaker"
        enabled={form.circuitBreaker.enabled}
        onToggle={(enabled) => set("circuitBreaker", { enabled })}
      >
        <NumberField
          {...common}
          path="spec.circuit_breaker.max_connections"
          label="Max connections"
          min={1}
          value={form.circuitBreaker.maxConnections}
          onChange={(maxConnections) => set("circuitBreaker", { maxConnections })}
        />
        <NumberField
          {...common}
          path="spec.circuit_breaker.max_pending_requests"
          label="Max pending requests"
          min={1}
          value={form.circuitBreaker.maxPendingRequests}
          onChange={(maxPendingRequests) => set("circuitBreaker", { maxPendingRequests })}
        />
        <NumberField
          {...common}
          path="spec.circuit_breaker.max_requests"
          label="Max requests in flight"
          min={1}
          value={form.circuitBreaker.maxRequests}
          onChange={(maxRequests) => set("circuitBreaker", { maxRequests })}
        />
      </SectionBox>

      <SectionBox
        {...common}
        path="spec.outlier_detection"
        title="Outlier detection"
        enabled={form.outlierDetection.enabled}
        onToggle={(enabled) => set("outlierDetection", { enabled })}
      >
        <NumberField
          {...common}
          path="spec.outlier_detection.consecutive_5xx"
          label="Consecutive 5xx"
          min={1}
          value={form.outlierDetection.consecutive5xx}
          onChange={(consecutive5xx) => set("outlierDetection", { consecutive5xx })}
        />
        <NumberField
          {...common}
          path="spec.outlier_detection.consecutive_gateway_errors"
          label="Consecutive gateway errors"
          min={1}
          value={form.outlierDetection.consecutiveGatewayErrors}
          onChange={(consecutiveGatewayErrors) => set("outlierDetection", { consecutiveGatewayErrors })}
        />
        <NumberField
          {...common}
          path="spec.outlier_detection.interval_ms"
          label="Interval"
          unit="ms"
          min={100}
          value={form.outlierDetection.intervalMs}
          onChange={(intervalMs) => set("outlierDetection", { intervalMs })}
        />
        <NumberField
          {...common}
          path="spec.outlier_detection.base_ejection_ms"
          label="Base ejection time"
          unit="ms"
          min={100}
          value={form.outlierDetection.baseEjectionMs}
          onChange={(baseEjectionMs) => set("outlierDetection", { baseEjectionMs })}
        />
        <NumberField
          {...common}
          path="spec.outlier_detection.max_ejection_percent"
          label="Max ejected"
          unit="%"
          min={0}
          max={100}
          value={form.outlierDetection.maxEjectionPercent}
          onChange={(maxEjectionPercent) => set("outlierDetection", { maxEjectionPercent })}
        />
      </SectionBox>

      <SectionBox
        {...common}
        path="spec.split"
        title="Traffic split between versions"
        enabled={form.split.enabled}
        onToggle={(enabled) =>
          set("split", {
            enabled,
            rows: enabled && form.split.rows.length === 0 ? [{ version: "v1", weight: "100" }] : form.split.rows,
          })
        }
      >
        <div className="split-rows" data-testid="split-rows">
          {form.split.rows.map((row, index) => {
            const versionPath = `spec.split[${index}].version`;
            const weightPath = `spec.split[${index}].weight`;
            const versionId = fieldId(prefix, versionPath);
            const weightId = fieldId(prefix, weightPath);
            const update = (patch: Partial<typeof row>) =>
              set("split", {
                rows: form.split.rows.map((entry, at) => (at === index ? { ...entry, ...patch } : entry)),
              });
            return (
              <div className="split-row" key={index} data-testid="split-row">
                <div className="field">
                  <label htmlFor={versionId}>Version {index + 1}</label>
                  <input
                    id={versionId}
                    type="text"
                    value={row.version}
                    data-path={versionPath}
                    aria-invalid={errors[versionPath]?.length ? true : undefined}
                    aria-describedby={`${versionId}-error`}
                    onChange={(event) => update({ version: event.target.value })}
                  />
                  <FieldErrors id={`${versionId}-error`} messages={errors[versionPath]} />
                </div>
                <div className="field">
                  <label htmlFor={weightId}>Weight {index + 1} (%)</label>
                  <input
                    id={weightId}
                    type="number"
                    min={0}
                    max={100}
                    step={1}
                    value={row.weight}
                    data-path={weightPath}
                    aria-invalid={errors[weightPath]?.length || errors["spec.split"]?.length ? true : undefined}
                    aria-describedby={`${weightId}-error ${fieldId(prefix, "spec.split")}-error ${sumId}`}
                    onChange={(event) => update({ weight: event.target.value })}
                  />
                  <FieldErrors id={`${weightId}-error`} messages={errors[weightPath]} />
                </div>
                <button
                  type="button"
                  className="button ghost"
                  aria-label={`Remove version ${index + 1}${row.version ? ` (${row.version})` : ""}`}
                  onClick={() => set("split", { rows: form.split.rows.filter((_entry, at) => at !== index) })}
                >
                  Remove
                </button>
              </div>
            );
          })}
          <div className="split-footer">
            <button
              type="button"
              className="button"
              onClick={() => set("split", { rows: [...form.split.rows, { version: "", weight: "0" }] })}
            >
              Add version
            </button>
            <output
              id={sumId}
              className={total.valid ? "split-sum ok" : "split-sum off"}
              data-testid="split-sum"
              data-sum={total.sum}
              aria-live="polite"
            >
              Sum: {total.sum}%{total.valid ? "" : total.wellFormed ? " (must be 100)" : " (weights are whole 0–100)"}
            </output>
          </div>
        </div>
      </SectionBox>

      <SectionBox
        {...common}
        path="spec.fault"
        title="Fault: delay"
        enabled={form.faultDelay.enabled}
        onToggle={(enabled) => set("faultDelay", { enabled })}
      >
        <NumberField
          {...common}
          path="spec.fault.delay.percent"
          label="Delay requests"
          unit="%"
          min={0}
          max={100}
          step="any"
          value={form.faultDelay.percent}
          onChange={(percent) => set("faultDelay", { percent })}
        />
        <NumberField
          {...common}
          path="spec.fault.delay.fixed_delay_ms"
          label="By"
          unit="ms"
          min={1}
          value={form.faultDelay.fixedDelayMs}
          onChange={(fixedDelayMs) => set("faultDelay", { fixedDelayMs })}
        />
        <FieldErrors id={`${fieldId(prefix, "spec.fault.delay")}-error`} messages={errors["spec.fault.delay"]} />
      </SectionBox>
      <SectionBox
        {...common}
        errors={{}}
        path="spec.fault.abort-section"
        title="Fault: abort"
        enabled={form.faultAbort.enabled}
        onToggle={(enabled) => set("faultAbort", { enabled })}
      >
        <NumberField
          {...common}
          path="spec.fault.abort.percent"
          label="Abort requests"
          unit="%"
          min={0}
          max={100}
          step="any"
          value={form.faultAbort.percent}
          onChange={(percent) => set("faultAbort", { percent })}
        />
        <NumberField
          {...common}
          path="spec.fault.abort.http_status"
          label="With status"
          min={200}
          max={599}
          value={form.faultAbort.httpStatus}
          onChange={(httpStatus) => set("faultAbort", { httpStatus })}
        />
        <FieldErrors id={`${fieldId(prefix, "spec.fault.abort")}-error`} messages={errors["spec.fault.abort"]} />
      </SectionBox>
    </div>
  );
}
