// Config versions as the charts and the graph's replay control mark them, and a version's rollout as a page shows it.
import type { ConfigVersion, RolloutCounts } from "./policy";

export interface VersionMarker {
  number: number;
  /** Unix seconds of the apply. */
  t: number;
  label: string;
  emergency: boolean;
}

/** The versions applied within [startS, endS] (in `namespace` when given), oldest first. */
export function versionMarkers(
  versions: readonly Pick<ConfigVersion, "number" | "applied_at" | "namespace" | "emergency">[],
  startS: number,
  endS: number,
  namespace?: string,
): VersionMarker[] {
  return versions
    .filter((version) => !namespace || version.namespace === namespace)
    .map((version) => ({ version, t: Date.parse(version.applied_at) / 1000 }))
    .filter(({ t }) => Number.isFinite(t) && t >= startS && t <= endS)
    .sort((a, b) => a.t - b.t || a.version.number - b.version.number)
    .map(({ version, t }) => ({
      number: version.number,
      t,
      label: `v${version.number}${version.emergency ? " (emergency)" : ""}`,
      emergency: version.emergency,
    }));
}

/** Where a marker sits along a window, as a percentage from its start (clamped to the window). */
export function markerOffset(t: number, startS: number, endS: number): number {
  if (endS <= startS) return 100;
  return Math.min(100, Math.max(0, ((t - startS) / (endS - startS)) * 100));
}

export interface RolloutView {
  done: boolean;
  /** Share of agents that acked, 0 to 100. */
  percent: number;
  label: string;
  /** Still waiting on agents: a page should keep polling. */
  polling: boolean;
}

export function rolloutView(rollout: RolloutCounts | undefined | null): RolloutView {
  if (!rollout) return { done: false, percent: 0, label: "unknown", polling: false };
  const { acked, pending, failed, total } = rollout;
  const percent = total ? Math.round((acked / total) * 100) : 100;
  const parts = [`${acked} of ${total} acked`];
  if (pending) parts.push(`${pending} pending`);
  if (failed) parts.push(`${failed} failed`);
  return { done: total > 0 && acked === total, percent, label: parts.join(" · "), polling: pending > 0 };
}
