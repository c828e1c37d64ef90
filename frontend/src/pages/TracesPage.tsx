import { useMemo, useState, type FormEvent } from "react";
import { Link, useLocation, useNavigate, useSearchParams } from "react-router";
import type { Page, TraceSummary } from "../api/types";
import { useApi, useScope, useScopeQuery, WINDOW_SECONDS } from "../components/hooks";
import { Scatter } from "../components/Scatter";
import { Empty, ErrorState, Loading } from "../components/States";
import { formatDurationUs, formatTimestamp, toDateTimeLocal } from "../model/format";

const FIELDS = ["service", "operation", "tags", "min_duration", "max_duration", "errors"] as const;
const SORTS = [
  { key: "start", label: "Start" },
  { key: "duration_us", label: "Duration" },
  { key: "span_count", label: "Spans" },
];

export function TracesPage() {
  const [params, setParams] = useSearchParams();
  const scope = useScope();
  const scopeQuery = useScopeQuery();
  const navigate = useNavigate();
  const [draft, setDraft] = useState(() => Object.fromEntries(FIELDS.map((field) => [field, params.get(field) ?? ""])));
  const [selected, setSelected] = useState<string[]>([]);
  const sort = params.get("sort") ?? "-start";
  // Only a page of this same search is followed from the URL.
  const cursorUrl = params.get("page")?.startsWith("/api/v1/traces/?") ? params.get("page") : null;
  // The time range ends now (re-read on each search) unless the URL pins an end.
  // A search's "now" travels with its navigation (router state, not the URL), so pressing Search changes the
  // query once: the filters and the time range together.
  const location = useLocation();
  const [openedAt] = useState(() => Date.now());
  const searchedAt = (location.state as { searchedAt?: number } | null)?.searchedAt ?? openedAt;
  const end = params.get("end") ?? null;
  const range = useMemo(() => {
    const until = end ? new Date(end) : new Date(searchedAt);
    return {
      start: new Date(until.getTime() - (WINDOW_SECONDS[scope.window] ?? 300) * 1000).toISOString(),
      end: end ?? undefined,
    };
  }, [end, searchedAt, scope.window]);

  // The URL changed (back button, a shared link): the form shows its search again.
  const searchKey = FIELDS.map((field) => params.get(field) ?? "").join("\u0000");
  const [draftSource, setDraftSource] = useState(searchKey);
  if (draftSource !== searchKey) {
    setDraftSource(searchKey);
    setDraft(Object.fromEntries(FIELDS.map((field) => [field, params.get(field) ?? ""])));
  }

  const query: Record<string, string | undefined> = {};
  for (const field of FIELDS) query[field] = params.get(field) || undefined;
  const traces = useApi<Page<TraceSummary>>(
    cursorUrl ?? "/api/v1/traces/",
    cursorUrl
      ? {}
      : { ...query, namespace: scope.namespace || undefined, sort, start: range.start, end: range.end, limit: 25 },
  );

  const setEnd = (value: string | null) =>
    setParams(
      (current) => {
        const next = new URLSearchParams(current);
        if (value) next.set("end", value);
        else next.delete("end");
        next.delete("page");
        return next;
      },
      { state: location.state },
    );

  const submit = (event: FormEvent) => {
    event.preventDefault();
    setParams(
      (current) => {
        const next = new URLSearchParams(current);
        for (const field of FIELDS) {
          const value = draft[field]?.trim();
          if (value) next.set(field, value);
          else next.delete(field);
        }
        next.delete("page");
        return next;
      },
      { state: { searchedAt: Date.now() } },
    );
  };
  const setSort = (key: string) =>
    setParams(
      (current) => {
        const next = new URLSearchParams(current);
        next.set("sort", sort === `-${key}` ? key : `-${key}`);
        next.delete("page");
        return next;
      },
      { state: location.state },
    );
  const goTo = (url: string | null) =>
    setParams(
      (current) => {
        const next = new URLSearchParams(current);
        if (url)
          next.set("page", new URL(url, window.location.origin).pathname + new URL(url, window.location.origin).search);
        else next.delete("page");
        return next;
      },
      { state: location.state },
    );
  const fieldError = (name: string) =>
    traces.state === "error" && "fields" in traces.error
      ? (traces.error as { fields: Record<string, string[]> }).fields[name]?.join(" ")
      : undefined;

  return (
    <div className="page traces-page">
      <div className="page-header">
        <h1>Traces</h1>
        {selected.length === 2 && (
          <Link
            className="button primary"
            to={`/traces/compare${scopeQuery}${scopeQuery ? "&" : "?"}a=${selected[0]}&b=${selected[1]}`}
          >
            Compare the two selected
          </Link>
        )}
      </div>
      <form className="search-form" onSubmit={submit} aria-label="Search traces">
        <label>
          Service
          <input
            name="service"
            value={draft.service}
            onChange={(event) => setDraft({ ...draft, service: event.target.value })}
            placeholder="reviews"
          />
        </label>
        <label>
          Operation
          <input
            name="operation"
            value={draft.operation}
            onChange={(event) => setDraft({ ...draft, operation: event.target.value })}
            placeholder="GET /reviews"
          />
        </label>
        <label>
          Tags
          <input
            name="tags"
            value={draft.tags}
            onChange={(event) => setDraft({ ...draft, tags: event.target.value })}
            placeholder="http.response.status_code=500"
            aria-invalid={Boolean(fieldError("tags"))}
          />
          {fieldError("tags") && <span className="field-error">{fieldError("tags")}</span>}
        </label>
        <label>
          Min duration
          <input
            name="min_duration"
            value={draft.min_duration}
            onChange={(event) => setDraft({ ...draft, min_duration: event.target.value })}
            placeholder="250ms"
          />
          {fieldError("min_duration") && <span className="field-error">{fieldError("min_duration")}</span>}
        </label>
        <label>
          Max duration
          <input
            name="max_duration"
            value={draft.max_duration}
            onChange={(event) => setDraft({ ...draft, max_duration: event.target.value })}
            placeholder="2s"
          />
          {fieldError("max_duration") && <span className="field-error">{fieldError("max_duration")}</span>}
        </label>
        <label className="checkbox">
          <input
            type="checkbox"
            name="errors"
            checked={draft.errors === "true"}
            onChange={(event) => setDraft({ ...draft, errors: event.target.checked ? "true" : "" })}
          />
          Errors only
        </label>
        <button type="submit" className="button primary">
          Search
        </button>
        <label>
          Ending at
          <input
            type="datetime-local"
            name="end"
            value={end ? toDateTimeLocal(end) : ""}
            onChange={(event) => setEnd(event.target.value ? new Date(event.target.value).toISOString() : null)}
          />
        </label>
        <span className="muted">
          traces from the {scope.window} before {end ? new Date(end).toLocaleString() : "now"} (window picker above)
        </span>
      </form>
      {traces.state === "error" &&
        !fieldError("tags") &&
        !fieldError("min_duration") &&
        !fieldError("max_duration") && <ErrorState error={traces.error} onRetry={traces.reload} />}
      {traces.state === "loading" && !traces.data && <Loading label="Searching traces…" />}
      {traces.data && traces.data.results.length === 0 && (
        <Empty title="No traces match">Widen the time window, or remove a condition.</Empty>
      )}
      {traces.data && traces.data.results.length > 0 && (
        <>
          <Scatter traces={traces.data.results} onOpen={(id) => navigate(`/traces/${id}${scopeQuery}`)} />
          <table className="table" data-testid="trace-results">
            <thead>
              <tr>
                <th scope="col">
                  <span className="visually-hidden">Select to compare</span>
                </th>
                <th scope="col">Trace</th>
                <th scope="col">Services</th>
                {SORTS.map((column) => (
                  <th
                    key={column.key}
                    scope="col"
                    aria-sort={sort === column.key ? "ascending" : sort === `-${column.key}` ? "descending" : "none"}
                  >
                    <button type="button" className="sort" onClick={() => setSort(column.key)}>
                      {column.label} {sort === column.key ? "▲" : sort === `-${column.key}` ? "▼" : ""}
                    </button>
                  </th>
                ))}
              </tr>
            </thead>
            <tbody>
              {traces.data.results.map((trace) => (
                <tr key={trace.trace_id} className={trace.error ? "row-error" : ""}>
                  <td>
                    <input
                      type="checkbox"
                      aria-label={`Select trace ${trace.trace_id} to compare`}
                      checked={selected.includes(trace.trace_id)}
                      onChange={(event) =>
                        setSelected((current) =>
                          event.target.checked
                            ? [...current, trace.trace_id].slice(-2)
                            : current.filter((id) => id !== trace.trace_id),
                        )
                      }
                    />
                  </td>
                  <td>
                    <Link to={`/traces/${trace.trace_id}${scopeQuery}`}>
                      {trace.root_service}: {trace.root_operation}
                    </Link>
                    {trace.error && <span className="tag tag-error">error</span>}
                    <div className="mono muted">{trace.trace_id}</div>
                  </td>
                  <td>{trace.services.join(", ")}</td>
                  <td>{formatTimestamp(trace.start)}</td>
                  <td>{formatDurationUs(trace.duration_us)}</td>
                  <td>{trace.span_count}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <div className="pager">
            <button
              type="button"
              className="button"
              disabled={!traces.data.previous}
              onClick={() => goTo(traces.data?.previous ?? null)}
            >
              ← Newer
            </button>
            <button
              type="button"
              className="button"
              disabled={!traces.data.next}
              onClick={() => goTo(traces.data?.next ?? null)}
            >
              Older →
            </button>
          </div>
        </>
      )}
    </div>
  );
}
