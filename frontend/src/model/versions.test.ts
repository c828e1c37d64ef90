import { describe, expect, it } from "vitest";

import { markerOffset, rolloutView, versionMarkers } from "./versions";

describe("version markers", () => {
  const versions = [
    { number: 3, applied_at: "2026-01-01T12:05:00Z", namespace: "shop", emergency: true },
    { number: 2, applied_at: "2026-01-01T12:01:00Z", namespace: "shop", emergency: false },
    { number: 1, applied_at: "2026-01-01T11:00:00Z", namespace: "shop", emergency: false },
    { number: 4, applied_at: "2026-01-01T12:02:00Z", namespace: "other", emergency: false },
  ];
  const start = Date.parse("2026-01-01T12:00:00Z") / 1000;
  const end = start + 600;

  it("keeps the versions applied in the window, oldest first, of the namespace asked for", () => {
    expect(versionMarkers(versions, start, end, "shop")).toEqual([
      { number: 2, t: start + 60, label: "v2", emergency: false },
      { number: 3, t: start + 300, label: "v3 (emergency)", emergency: true },
    ]);
    expect(versionMarkers(versions, start, end).map((marker) => marker.number)).toEqual([2, 4, 3]);
    expect(versionMarkers([{ ...versions[0]!, applied_at: "garbage" }], start, end)).toEqual([]);
  });

  it("places a marker along the window", () => {
    expect(markerOffset(start + 300, start, end)).toBe(50);
    expect(markerOffset(start - 5, start, end)).toBe(0);
    expect(markerOffset(end + 5, start, end)).toBe(100);
    expect(markerOffset(start, start, start)).toBe(100);
  });
});

describe("rolloutView", () => {
  it("says how far a version got and whether to keep polling", () => {
    expect(rolloutView({ acked: 7, pending: 0, failed: 0, total: 7 })).toEqual({
      done: true,
      percent: 100,
      label: "7 of 7 acked",
      polling: false,
    });
    expect(rolloutView({ acked: 3, pending: 3, failed: 1, total: 7 })).toEqual({
      done: false,
      percent: 43,
      label: "3 of 7 acked · 3 pending · 1 failed",
      polling: true,
    });
    expect(rolloutView({ acked: 0, pending: 0, failed: 0, total: 0 })).toMatchObject({ done: false, percent: 100 });
    expect(rolloutView(undefined)).toMatchObject({ polling: false, label: "unknown" });
  });
});
