import { useVirtualizer } from "@tanstack/react-virtual";
import { useEffect, useMemo, useRef, useState } from "react";
import type { Row, Span, TraceDetail } from "../model/waterfall";
import { buildRows, ticks } from "../model/waterfall";
import { formatDurationUs } from "../model/format";

const ROW_HEIGHT = 28;

/** The trace as a waterfall: one row per span (virtualised: traces of 10 000 spans stay responsive). */
export function Waterfall({
  detail,
  selected,
  onSelect,
}: {
  detail: TraceDetail;
  selected: string | null;
  onSelect: (span: Span) => void;
}) {
  const [collapsed, setCollapsed] = useState<ReadonlySet<string>>(() => new Set());
  const rows = useMemo(() => buildRows(detail, collapsed), [detail, collapsed]);
  const total = Math.max(detail.trace.duration_us, 1);
  const scroller = useRef<HTMLDivElement>(null);
  const virtualizer = useVirtualizer({
    count: rows.length,
    getScrollElement: () => scroller.current,
    estimateSize: () => ROW_HEIGHT,
    overscan: 20,
  });
  const toggle = (row: Row) =>
    setCollapsed((current) => {
      const next = new Set(current);
      if (next.has(row.span.span_id)) next.delete(row.span.span_id);
      else next.add(row.span.span_id);
      return next;
    });
  const marks = useMemo(() => ticks(total, 6), [total]);
  const box = useRef<HTMLDivElement>(null);
  // Two frames after the rows change they are on screen: stamped for the render benchmark.
  useEffect(() => {
    let second = 0;
    const first = requestAnimationFrame(() => {
      second = requestAnimationFrame(() => {
        if (!box.current) return;
        box.current.dataset.paintedAt = performance.now().toFixed(1);
        box.current.dataset.paintedRows = String(rows.length);
      });
    });
    return () => {
      cancelAnimationFrame(first);
      cancelAnimationFrame(second);
    };
  }, [rows]);

  return (
    <div className="waterfall" data-testid="waterfall" ref={box}>
      <div className="waterfall-head" aria-hidden="true">
        <div className="waterfall-label">Service · operation</div>
        <div className="waterfall-timeline">
          {marks.map((mark) => (
            <span key={mark} className="tick" style={{ left: `${(mark / total) * 100}%` }}>
              {formatDurationUs(mark)}
            </span>
          ))}
        </div>
      </div>
      <div className="waterfall-body" ref={scroller} role="tree" aria-label="Spans">
        <div style={{ height: virtualizer.getTotalSize(), position: "relative" }}>
          {virtualizer.getVirtualItems().map((item) => {
            const row = rows[item.index];
            if (!row) return null;
            const span = row.span;
            return (
              <div
                key={span.span_id}
                role="treeitem"
                aria-level={row.depth + 1}
                aria-expanded={row.hasChildren ? !row.collapsed : undefined}
                aria-selected={selected === span.span_id}
                data-span={span.span_id}
                data-service={span.service}
                className={`waterfall-row${row.error ? " is-error" : ""}${row.onCriticalPath ? " is-critical" : ""}${selected === span.span_id ? " is-selected" : ""}`}
                style={{
                  position: "absolute",
                  top: 0,
                  left: 0,
                  right: 0,
                  height: ROW_HEIGHT,
                  transform: `translateY(${item.start}px)`,
                }}
              >
                <div className="waterfall-label" style={{ paddingLeft: 8 + row.depth * 14 }}>
                  {row.hasChildren ? (
                    <button
                      type="button"
                      className="twisty"
                      aria-label={row.collapsed ? `Expand ${span.operation}` : `Collapse ${span.operation}`}
                      onClick={() => toggle(row)}
                    >
                      {row.collapsed ? "▸" : "▾"}
                    </button>
                  ) : (
                    <span className="twisty" aria-hidden="true" />
                  )}
                  <button type="button" className="span-name" onClick={() => onSelect(span)}>
                    {row.error && (
                      <span className="error-mark" aria-label="error">
                        !
                      </span>
                    )}
                    <strong>{span.service}</strong> {span.operation}
                  </button>
                </div>
                <div className="waterfall-timeline" onClick={() => onSelect(span)}>
                  <div
                    className="bar"
                    style={{
                      left: `${(row.offsetUs / total) * 100}%`,
                      width: `max(2px, ${(row.durationUs / total) * 100}%)`,
                    }}
                    title={`${span.service} ${span.operation}: ${formatDurationUs(row.durationUs)}`}
                  >
                    {row.criticalSegments.map((segment) => (
                      <span
                        key={`${segment.startUs}`}
                        className="critical"
                        style={{
                          left: `${((segment.startUs - row.offsetUs) / Math.max(row.durationUs, 1)) * 100}%`,
                          width: `${((segment.endUs - segment.startUs) / Math.max(row.durationUs, 1)) * 100}%`,
                        }}
                      />
                    ))}
                  </div>
                  <span
                    className="bar-label"
                    style={{ left: `calc(${((row.offsetUs + row.durationUs) / total) * 100}% + 4px)` }}
                  >
                    {formatDurationUs(row.durationUs)}
                  </span>
                </div>
              </div>
            );
          })}
        </div>
      </div>
    </div>
  );
}

export function SpanDetails({ span, onClose }: { span: Span; onClose: () => void }) {
  const attributes = Object.entries(span.attributes).sort(([a], [b]) => a.localeCompare(b));
  return (
    <div className="panel" data-testid="span-details">
      <div className="panel-header">
        <h2>
          {span.service} · {span.operation}
        </h2>
        <button type="button" className="button ghost close" aria-label="Close span details" onClick={onClose}>
          ×
        </button>
      </div>
      <dl className="kv">
        <dt>Span</dt>
        <dd className="mono">{span.span_id}</dd>
        <dt>Kind</dt>
        <dd>{span.kind}</dd>
        <dt>Duration</dt>
        <dd>{formatDurationUs(span.duration_us)}</dd>
        <dt>Status</dt>
        <dd className={span.status === "error" ? "error-text" : ""}>
          {span.status}
          {span.status_message ? `: ${span.status_message}` : ""}
        </dd>
        {span.source_workload && (
          <>
            <dt>From</dt>
            <dd>{span.source_workload}</dd>
          </>
        )}
        {span.destination_service && (
          <>
            <dt>To</dt>
            <dd>
              {span.destination_service}
              {span.destination_workload ? ` (${span.destination_workload})` : ""}
            </dd>
          </>
        )}
      </dl>
      <h3>Attributes</h3>
      {attributes.length === 0 ? (
        <p className="muted">None.</p>
      ) : (
        <dl className="kv">
          {attributes.map(([key, value]) => (
            <div key={key} className="kv-row">
              <dt className="mono">{key}</dt>
              <dd className="mono">{typeof value === "string" ? value : JSON.stringify(value)}</dd>
            </div>
          ))}
        </dl>
      )}
      <h3>Events</h3>
      {span.events.length === 0 ? (
        <p className="muted">None.</p>
      ) : (
        <pre className="mono">{JSON.stringify(span.events, null, 2)}</pre>
      )}
    </div>
  );
}
