import { useMemo } from "react";
import { Link, useSearchParams } from "react-router";
import type { TraceDetail } from "../api/types";
import { useApi, useScopeQuery } from "../components/hooks";
import { Empty, ErrorState, Loading } from "../components/States";
import { formatDurationUs } from "../model/format";
import { compareTraces } from "../model/waterfall";

const TRACE_ID = /^[0-9a-f]{32}$/;

export function TraceComparePage() {
  const [params] = useSearchParams();
  const scopeQuery = useScopeQuery();
  const a = params.get("a") ?? "";
  const b = params.get("b") ?? "";
  const valid = TRACE_ID.test(a) && TRACE_ID.test(b);
  const left = useApi<TraceDetail>(valid ? `/api/v1/traces/${a}/` : null);
  const right = useApi<TraceDetail>(valid ? `/api/v1/traces/${b}/` : null);
  const rows = useMemo(
    () => (left.data && right.data ? compareTraces(left.data, right.data) : []),
    [left.data, right.data],
  );

  if (!valid) {
    return (
      <Empty title="Pick two traces to compare">
        Select two traces in the <Link to={`/traces${scopeQuery}`}>trace search</Link> and press “Compare”.
      </Empty>
    );
  }
  if (left.state === "error") return <ErrorState error={left.error} onRetry={left.reload} />;
  if (right.state === "error") return <ErrorState error={right.error} onRetry={right.reload} />;
  if (!left.data || !right.data) return <Loading label="Loading both traces…" />;
  return (
    <div className="page compare-page">
      <div className="page-header">
        <h1>Compare traces</h1>
      </div>
      <table className="table" data-testid="compare-table">
        <thead>
          <tr>
            <th scope="col">Span</th>
            <th scope="col">
              <Link to={`/traces/${a}${scopeQuery}`}>A</Link> · {formatDurationUs(left.data.trace.duration_us)}
            </th>
            <th scope="col">
              <Link to={`/traces/${b}${scopeQuery}`}>B</Link> · {formatDurationUs(right.data.trace.duration_us)}
            </th>
            <th scope="col">B − A</th>
          </tr>
        </thead>
        <tbody>
          {rows.map((row) => {
            const span = row.a?.span ?? row.b?.span;
            const depth = row.a?.depth ?? row.b?.depth ?? 0;
            return (
              <tr key={row.key} className={!row.a || !row.b ? "row-only-one" : ""}>
                <td style={{ paddingLeft: 8 + depth * 14 }}>
                  <strong>{span?.service}</strong> {span?.operation}
                </td>
                <td className={row.a?.error ? "error-text" : ""}>{row.a ? formatDurationUs(row.a.durationUs) : "—"}</td>
                <td className={row.b?.error ? "error-text" : ""}>{row.b ? formatDurationUs(row.b.durationUs) : "—"}</td>
                <td className={row.deltaUs !== null && row.deltaUs > 0 ? "slower" : "faster"}>
                  {row.deltaUs === null
                    ? row.a
                      ? "only in A"
                      : "only in B"
                    : `${row.deltaUs > 0 ? "+" : row.deltaUs < 0 ? "−" : ""}${formatDurationUs(Math.abs(row.deltaUs))}`}
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}
