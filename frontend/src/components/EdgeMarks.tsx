import type { EdgeSecurity } from "../model/graph";

// Small pictures of the graph's edge styles (GraphCanvas's stylesheet), for the legend: the same colours, line
// patterns and end markers, so the legend reads like the canvas.
const MTLS_COLOUR = "#0072b2";
const DENIED_COLOUR = "#d55e00";
const PLAIN_COLOUR = "#8c8c8c";

export function EdgeSwatch({ kind }: { kind: EdgeSecurity | "denied" }) {
  const dash = kind === "partial" ? "8 4" : kind === "denied" ? "2 3" : undefined;
  const colour = kind === "denied" ? DENIED_COLOUR : PLAIN_COLOUR;
  const width = kind === "plain" ? 2 : 3;
  return (
    <svg className="edge-swatch" width="34" height="12" viewBox="0 0 34 12" aria-hidden="true">
      <line x1="6" y1="6" x2="28" y2="6" stroke={colour} strokeWidth={width} strokeDasharray={dash} />
      {kind === "mtls" && <rect x="1" y="2" width="8" height="8" fill={MTLS_COLOUR} />}
      {kind === "partial" && <rect x="1.5" y="2.5" width="7" height="7" fill="#ffffff" stroke={MTLS_COLOUR} />}
      {kind === "denied" ? (
        <line x1="30" y1="1" x2="30" y2="11" stroke={DENIED_COLOUR} strokeWidth="3" />
      ) : (
        <polygon points="27,1 33,6 27,11" fill={colour} />
      )}
    </svg>
  );
}

/** A padlock drawn in SVG (no emoji font needed), for the places the dashboard says "every call is mTLS". */
export function LockIcon({ title }: { title?: string }) {
  return (
    <svg
      className="lock-icon"
      width="12"
      height="14"
      viewBox="0 0 12 14"
      role={title ? "img" : undefined}
      aria-label={title}
      aria-hidden={title ? undefined : true}
    >
      <path d="M3 6V4a3 3 0 0 1 6 0v2" fill="none" stroke="currentColor" strokeWidth="1.6" />
      <rect x="1" y="6" width="10" height="7.5" rx="1.5" fill="currentColor" />
    </svg>
  );
}
