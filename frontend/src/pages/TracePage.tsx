import { useState } from "react";
import { Link, useParams } from "react-router";
import type { TraceDetail } from "../api/types";
import { useApi, useScopeQuery } from "../components/hooks";
import { Empty, ErrorState, Loading } from "../components/States";
import { SpanDetails, Waterfall } from "../components/Waterfall";
import { formatDurationUs, formatTimestamp } from "../model/format";
import { traceServices, type Span } from "../model/waterfall";

export function TracePage() {
  const { traceId = "" } = useParams();
  const scopeQuery = useScopeQuery();
  const valid = /^[0-9a-f]{32}$/.test(traceId);
  const detail = useApi<TraceDetail>(valid ? `/api/v1/traces/${traceId}/` : null);
  const [selected, setSelected] = useState<Span | null>(null);

  if (!valid) return <Empty title="That is not a trace id">A trace id is 32 lowercase hex digits.</Empty>;
  if (detail.state === "error") {
    return detail.error.message.includes("Not found") || ("status" in detail.error && detail.error.status === 404) ? (
      <Empty title="No such trace">
        It may have expired, or it touched no namespace you may view.{" "}
        <Link to={`/traces${scopeQuery}`}>Search traces</Link>
      </Empty>
    ) : (
      <ErrorState error={detail.error} onRetry={detail.reload} />
    );
  }
  if (!detail.data) return <Loading label="Loading the trace…" />;
  const { trace } = detail.data;
  const services = traceServices(detail.data);
  const errors = detail.data.spans.filter((span) => span.status === "error").length;
  return (
    <div className="page trace-page">
      <div className="page-header">
        <h1>
          {trace.root_service}: {trace.root_operation}
        </h1>
        <Link to={`/traces${scopeQuery}`} className="button ghost">
          ← Back to search
        </Link>
      </div>
      <dl className="summary" data-testid="trace-summary">
        <div>
          <dt>Trace</dt>
          <dd className="mono">{trace.trace_id}</dd>
        </div>
        <div>
          <dt>Started</dt>
          <dd>{formatTimestamp(trace.start)}</dd>
        </div>
        <div>
          <dt>Duration</dt>
          <dd>{formatDurationUs(trace.duration_us)}</dd>
        </div>
        <div>
          <dt>Spans</dt>
          <dd>{trace.span_count}</dd>
        </div>
        <div>
          <dt>Errors</dt>
          <dd className={errors ? "error-text" : ""}>{errors}</dd>
        </div>
        <div>
          <dt>Services crossed</dt>
          <dd data-testid="trace-services">{services.join(" → ")}</dd>
        </div>
      </dl>
      <p className="muted">
        <span className="critical-key" aria-hidden="true" /> critical path: the spans that set the trace's end-to-end
        time.
      </p>
      <div className="trace-layout">
        <Waterfall detail={detail.data} selected={selected?.span_id ?? null} onSelect={setSelected} />
        {selected && <SpanDetails span={selected} onClose={() => setSelected(null)} />}
      </div>
    </div>
  );
}
