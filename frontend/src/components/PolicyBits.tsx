import { useEffect, useId, useRef, type ReactNode } from "react";
import type { ChangeState, RolloutCounts } from "../api/types";
import { STATE_LABELS } from "../model/policy";
import { specLines } from "../model/specDiff";
import { rolloutView } from "../model/versions";
import { specToYaml } from "../model/yamlSpec";

export function StateBadge({ state }: { state: ChangeState }) {
  return (
    <span className={`state-badge state-${state}`} data-testid="change-state" data-state={state}>
      {STATE_LABELS[state] ?? state}
    </span>
  );
}

/** Messages for one field, announced when they appear; `id` is what the input's aria-describedby names. */
export function FieldErrors({ id, messages }: { id: string; messages: string[] | undefined }) {
  if (!messages?.length) return null;
  return (
    <span id={id} className="field-error" role="alert">
      {messages.join(" ")}
    </span>
  );
}

export function SpecBlock({ spec, label }: { spec: unknown; label?: string }) {
  if (spec === null || spec === undefined) return <p className="muted">No spec.</p>;
  return (
    <pre className="spec-block" aria-label={label}>
      {specToYaml(spec)}
    </pre>
  );
}

/** One side of a diff: the spec's lines, the changed ones marked (and named for screen readers). */
function DiffSide({
  spec,
  changed,
  side,
  title,
}: {
  spec: unknown;
  changed: string[];
  side: "before" | "after";
  title: string;
}) {
  const lines = specLines(spec, changed);
  return (
    <div className={`diff-side diff-${side}`} data-testid={`diff-${side}`}>
      <div className="diff-title">{title}</div>
      {lines.length === 0 ? (
        <p className="muted diff-empty">{side === "before" ? "Nothing live yet." : "Removed."}</p>
      ) : (
        <pre>
          {lines.map((line, index) => (
            <span
              key={`${line.path}-${index}`}
              className={line.changed ? "diff-line changed" : "diff-line"}
              data-path={line.path}
            >
              {line.changed && <span className="visually-hidden">{side === "before" ? "removed: " : "added: "}</span>}
              {line.text}
              {"\n"}
            </span>
          ))}
        </pre>
      )}
    </div>
  );
}

export function SpecDiff({ before, after, changed }: { before: unknown; after: unknown; changed: string[] }) {
  return (
    <div className="diff">
      <DiffSide spec={before} changed={changed} side="before" title="Live now" />
      <DiffSide spec={after} changed={changed} side="after" title="Proposed" />
    </div>
  );
}

export function RolloutBar({ rollout }: { rollout: RolloutCounts | undefined }) {
  const view = rolloutView(rollout);
  const failed = rollout && rollout.total ? (rollout.failed / rollout.total) * 100 : 0;
  return (
    <div className="rollout">
      <div
        className="rollout-bar"
        role="progressbar"
        aria-valuemin={0}
        aria-valuemax={rollout?.total ?? 0}
        aria-valuenow={rollout?.acked ?? 0}
        aria-valuetext={view.label}
      >
        <span className="rollout-acked" style={{ width: `${view.percent}%` }} />
        <span className="rollout-failed" style={{ width: `${failed}%` }} />
      </div>
      <span className="rollout-label">{view.label}</span>
    </div>
  );
}

/** A modal dialog (the browser's own <dialog>: focus kept inside, Escape closes). */
export function Dialog({
  open,
  title,
  onClose,
  children,
  tone,
}: {
  open: boolean;
  title: string;
  onClose: () => void;
  children: ReactNode;
  tone?: "danger";
}) {
  const ref = useRef<HTMLDialogElement>(null);
  const titleId = useId();
  useEffect(() => {
    const dialog = ref.current;
    if (!dialog) return;
    if (open && !dialog.open) {
      if (typeof dialog.showModal === "function") dialog.showModal();
      else dialog.setAttribute("open", "");
    } else if (!open && dialog.open) {
      dialog.close();
    }
  }, [open]);
  return (
    <dialog
      ref={ref}
      className={`dialog${tone ? ` dialog-${tone}` : ""}`}
      aria-labelledby={titleId}
      onClose={onClose}
      onCancel={onClose}
    >
      <h2 id={titleId}>{title}</h2>
      {open && children}
    </dialog>
  );
}
