import { Link } from "react-router";
import type { ConfigVersion, Page } from "../api/types";
import { markerOffset, versionMarkers } from "../model/versions";
import { useApi, useScopeQuery } from "./hooks";

/** The config versions applied within a replayed window, as marks along it: each a link to its version. */
export function VersionTimeline({ namespace, startS, endS }: { namespace: string; startS: number; endS: number }) {
  const scopeQuery = useScopeQuery();
  const versions = useApi<Page<ConfigVersion>>("/api/v1/config-versions/", {
    namespace: namespace || undefined,
    page_size: 100,
  });
  if (!versions.data) return null;
  const markers = versionMarkers(versions.data.results, startS, endS, namespace || undefined);
  const time = (t: number) => new Date(t * 1000).toLocaleTimeString();
  return (
    <div className="version-timeline" data-testid="replay-versions" data-count={markers.length}>
      <div className="timeline-track" aria-hidden="true">
        {markers.map((marker) => (
          <span
            key={marker.number}
            className={marker.emergency ? "timeline-mark emergency" : "timeline-mark"}
            style={{ left: `${markerOffset(marker.t, startS, endS)}%` }}
            title={`${marker.label} applied ${time(marker.t)}`}
          />
        ))}
        <span className="timeline-end timeline-start">{time(startS)}</span>
        <span className="timeline-end">{time(endS)}</span>
      </div>
      <div className="timeline-labels">
        {markers.length === 0 ? (
          <span className="muted">No config change in this window.</span>
        ) : (
          <>
            <span className="muted">Config changes in this window:</span>
            {markers.map((marker) => (
              <Link
                key={marker.number}
                className={marker.emergency ? "tag tag-danger" : "tag"}
                to={`/versions/${marker.number}${scopeQuery}`}
              >
                {marker.label} · {time(marker.t)}
              </Link>
            ))}
          </>
        )}
      </div>
    </div>
  );
}
