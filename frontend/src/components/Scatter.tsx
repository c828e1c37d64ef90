import { useMemo } from "react";
import type { TraceSummary } from "../api/types";
import { formatDurationUs, formatTimestamp } from "../model/format";

const WIDTH = 900;
const HEIGHT = 200;
const PAD = { left: 64, right: 16, top: 12, bottom: 28 };

/** Duration over time of a page of traces; a dot is a link to its trace (Jaeger's search scatter). */
export function Scatter({ traces, onOpen }: { traces: TraceSummary[]; onOpen: (traceId: string) => void }) {
  const layout = useMemo(() => {
    const times = traces.map((trace) => Date.parse(trace.start));
    const durations = traces.map((trace) => trace.duration_us);
    const t0 = Math.min(...times);
    const t1 = Math.max(...times);
    const maxDuration = Math.max(...durations, 1);
    const x = (time: number) => PAD.left + (t1 === t0 ? 0.5 : (time - t0) / (t1 - t0)) * (WIDTH - PAD.left - PAD.right);
    const y = (duration: number) => HEIGHT - PAD.bottom - (duration / maxDuration) * (HEIGHT - PAD.top - PAD.bottom);
    return { x, y, t0, t1, maxDuration };
  }, [traces]);
  if (traces.length === 0) return null;
  return (
    <svg
      className="scatter"
      viewBox={`0 0 ${WIDTH} ${HEIGHT}`}
      role="group"
      aria-label="Trace durations over time"
      data-testid="scatter"
    >
      <line x1={PAD.left} x2={WIDTH - PAD.right} y1={HEIGHT - PAD.bottom} y2={HEIGHT - PAD.bottom} className="axis" />
      <line x1={PAD.left} x2={PAD.left} y1={PAD.top} y2={HEIGHT - PAD.bottom} className="axis" />
      <text x={PAD.left - 6} y={PAD.top + 8} textAnchor="end" className="axis-label">
        {formatDurationUs(layout.maxDuration)}
      </text>
      <text x={PAD.left - 6} y={HEIGHT - PAD.bottom} textAnchor="end" className="axis-label">
        0
      </text>
      <text x={PAD.left} y={HEIGHT - 8} className="axis-label">
        {formatTimestamp(new Date(layout.t0).toISOString())}
      </text>
      <text x={WIDTH - PAD.right} y={HEIGHT - 8} textAnchor="end" className="axis-label">
        {formatTimestamp(new Date(layout.t1).toISOString())}
      </text>
      {traces.map((trace) => (
        <circle
          key={trace.trace_id}
          cx={layout.x(Date.parse(trace.start))}
          cy={layout.y(trace.duration_us)}
          r={Math.min(9, 3 + Math.sqrt(trace.span_count))}
          className={trace.error ? "dot dot-error" : "dot"}
          tabIndex={0}
          role="link"
          aria-label={`${trace.root_service} ${trace.root_operation}, ${formatDurationUs(trace.duration_us)}${trace.error ? ", error" : ""}`}
          onClick={() => onOpen(trace.trace_id)}
          onKeyDown={(event) => {
            if (event.key === "Enter" || event.key === " ") onOpen(trace.trace_id);
          }}
        >
          <title>
            {trace.root_service} {trace.root_operation} · {formatDurationUs(trace.duration_us)}
          </title>
        </circle>
      ))}
    </svg>
  );
}
