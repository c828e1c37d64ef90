import { useId } from "react";
import type { PolicyWarning } from "../api/types";
import { claimedPaths, DEFAULTS, PEER_MODES, switchView, withKind, type DraftItem } from "../model/changeDraft";
import { placeErrors, type ErrorMap } from "../model/errors";
import { KINDS, kindInfo, type ChangeOperation, type PolicyKind } from "../model/policy";
import { parseSpecYaml } from "../model/yamlSpec";
import { FieldErrors } from "./PolicyBits";
import { TrafficPolicyForm } from "./TrafficPolicyForm";

const OPERATIONS: { value: ChangeOperation; label: string }[] = [
  { value: "create", label: "Create" },
  { value: "update", label: "Update" },
  { value: "delete", label: "Delete" },
];

export function WarningList({ warnings }: { warnings: PolicyWarning[] | undefined }) {
  if (!warnings?.length) return null;
  return (
    <ul className="warnings" data-testid="item-warnings" aria-label="Warnings">
      {warnings.map((warning) => (
        <li key={`${warning.code}-${warning.field}`}>
          <span className="tag tag-warning">{warning.code}</span> <code>{warning.field}</code> {warning.message}
        </li>
      ))}
    </ul>
  );
}

/** One item of a change: what it proposes and its spec, in the form or in YAML. */
export function ChangeItemEditor({
  item,
  index,
  errors,
  warnings,
  services,
  onChange,
  onRemove,
}: {
  item: DraftItem;
  index: number;
  /** Errors of this item, paths relative to it (`spec.split`, `name`). */
  errors: ErrorMap;
  warnings?: PolicyWarning[];
  services: string[];
  onChange: (item: DraftItem) => void;
  onRemove?: () => void;
}) {
  const prefix = `item${index}${useId().replace(/:/g, "")}`;
  const info = kindInfo(item.kind);
  const placed = placeErrors(errors, claimedPaths(item));
  const byField = placed.byField;
  const yamlCheck = item.view === "yaml" && item.operation !== "delete" ? parseSpecYaml(item.yaml) : null;
  const id = (path: string) => `${prefix}-${path.replace(/[^A-Za-z0-9_-]/g, "-")}`;
  const invalid = (path: string) => (byField[path]?.length ? true : undefined);

  return (
    <section className="item-editor" aria-labelledby={`${prefix}-title`} data-testid="change-item">
      <div className="item-header">
        <h3 id={`${prefix}-title`}>Item {index + 1}</h3>
        {onRemove && (
          <button type="button" className="button ghost" onClick={onRemove} aria-label={`Remove item ${index + 1}`}>
            Remove
          </button>
        )}
      </div>
      {placed.unplaced.length > 0 && (
        <ul className="item-errors" role="alert" data-testid="item-errors">
          {placed.unplaced.map((message) => (
            <li key={message}>{message}</li>
          ))}
        </ul>
      )}
      <WarningList warnings={warnings} />
      <div className="form-grid">
        <div className="field">
          <label htmlFor={id("kind")}>Kind</label>
          <select
            id={id("kind")}
            value={item.kind}
            aria-invalid={invalid("kind")}
            aria-describedby={`${id("kind")}-error`}
            onChange={(event) => onChange(withKind(item, event.target.value as PolicyKind))}
          >
            {KINDS.map((kind) => (
              <option key={kind.kind} value={kind.kind}>
                {kind.label}
              </option>
            ))}
          </select>
          <FieldErrors id={`${id("kind")}-error`} messages={byField.kind} />
        </div>
        <div className="field">
          <label htmlFor={id("operation")}>Operation</label>
          <select
            id={id("operation")}
            value={item.operation}
            aria-invalid={invalid("operation")}
            aria-describedby={`${id("operation")}-error`}
            onChange={(event) => onChange({ ...item, operation: event.target.value as ChangeOperation })}
          >
            {OPERATIONS.map((operation) => (
              <option key={operation.value} value={operation.value}>
                {operation.label}
              </option>
            ))}
          </select>
          <FieldErrors id={`${id("operation")}-error`} messages={byField.operation} />
        </div>
        {!info.singleton && (
          <div className="field">
            <label htmlFor={id("service")}>
              Service{item.kind === "authorization" && <span className="muted"> (blank: whole namespace)</span>}
            </label>
            <input
              id={id("service")}
              type="text"
              list={`${prefix}-services`}
              value={item.service}
              autoComplete="off"
              aria-invalid={invalid("service")}
              aria-describedby={`${id("service")}-error`}
              onChange={(event) =>
                onChange({
                  ...item,
                  service: event.target.value,
                  name: item.kind === "traffic" ? event.target.value : item.name,
                })
              }
            />
            <datalist id={`${prefix}-services`}>
              {services.map((service) => (
                <option key={service} value={service} />
              ))}
            </datalist>
            <FieldErrors id={`${id("service")}-error`} messages={byField.service} />
          </div>
        )}
        {!info.singleton && item.kind !== "traffic" && (
          <div className="field">
            <label htmlFor={id("name")}>Name</label>
            <input
              id={id("name")}
              type="text"
              value={item.name}
              aria-invalid={invalid("name")}
              aria-describedby={`${id("name")}-error`}
              onChange={(event) => onChange({ ...item, name: event.target.value })}
            />
            <FieldErrors id={`${id("name")}-error`} messages={byField.name} />
          </div>
        )}
        <p className="muted field-note">
          {info.singleton
            ? "One per namespace, named “default”."
            : item.kind === "traffic"
              ? "A traffic policy is named after its service."
              : ""}
        </p>
      </div>

      {item.operation === "delete" ? (
        <p className="muted">Deleting sends no spec: the live policy goes when the change is applied.</p>
      ) : (
        <div className="spec-editor">
          <div className="view-switch" role="group" aria-label={`Spec view of item ${index + 1}`}>
            {info.form && (
              <button
                type="button"
                className={item.view === "form" ? "button active" : "button"}
                aria-pressed={item.view === "form"}
                onClick={() => onChange(switchView(item, "form"))}
              >
                Form
              </button>
            )}
            <button
              type="button"
              className={item.view === "yaml" ? "button active" : "button"}
              aria-pressed={item.view === "yaml"}
              onClick={() => onChange(switchView(item, "yaml"))}
            >
              YAML
            </button>
            {item.viewError && (
              <span className="field-error" role="alert">
                {item.viewError}
              </span>
            )}
          </div>
          {item.view === "yaml" ? (
            <div className="field">
              <label htmlFor={id("spec")}>Spec (YAML or JSON)</label>
              <textarea
                id={id("spec")}
                className="yaml-input"
                rows={Math.max(8, item.yaml.split("\n").length + 1)}
                spellCheck={false}
                value={item.yaml}
                aria-invalid={invalid("spec") || (yamlCheck && !yamlCheck.ok) ? true : undefined}
                aria-describedby={`${id("spec")}-error ${id("spec")}-parse`}
                onChange={(event) => onChange({ ...item, yaml: event.target.value, viewError: null })}
              />
              {yamlCheck && !yamlCheck.ok && (
                <span id={`${id("spec")}-parse`} className="field-error" role="alert">
                  {yamlCheck.line ? `Line ${yamlCheck.line}: ` : ""}
                  {yamlCheck.error}
                </span>
              )}
              <FieldErrors id={`${id("spec")}-error`} messages={byField.spec} />
            </div>
          ) : item.kind === "traffic" ? (
            <TrafficPolicyForm
              form={item.traffic}
              prefix={prefix}
              errors={byField}
              onChange={(traffic) => onChange({ ...item, traffic })}
            />
          ) : (
            <div className="field">
              <label htmlFor={id("choice")}>
                {item.kind === "peer_authentication" ? "Mutual TLS mode" : "Requests no policy decides"}
              </label>
              <select
                id={id("choice")}
                value={item.choice}
                aria-describedby={`${id("choice")}-error`}
                onChange={(event) => onChange({ ...item, choice: event.target.value })}
              >
                {(item.kind === "peer_authentication" ? PEER_MODES : DEFAULTS).map((choice) => (
                  <option key={choice} value={choice}>
                    {choice === "STRICT"
                      ? "STRICT: mutual TLS only"
                      : choice === "PERMISSIVE"
                        ? "PERMISSIVE: plaintext accepted too"
                        : choice === "allow-all"
                          ? "allow-all: allowed"
                          : "deny-all: denied"}
                  </option>
                ))}
              </select>
              <FieldErrors
                id={`${id("choice")}-error`}
                messages={byField[item.kind === "peer_authentication" ? "spec.mode" : "spec.default"]}
              />
            </div>
          )}
        </div>
      )}
    </section>
  );
}
