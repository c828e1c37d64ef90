import { describe, expect, it } from "vitest";

import {
  concernsVersion,
  describeRun,
  EMPTY_FEED,
  foldRollout,
  latestRunFor,
  MAX_RUNS,
  type RolloutFeed,
} from "./rollout";

function progress(rollout: string, seq: number, version: number, counts: Record<string, number> = {}, done = false) {
  const acked = counts.acked ?? 0;
  const rejected = counts.rejected ?? 0;
  const unreachable = counts.unreachable ?? 0;
  const total = counts.total ?? 3;
  return {
    type: "rollout_progress",
    rollout,
    seq,
    version,
    triggered_by: 7,
    total,
    acked,
    rejected,
    unreachable,
    failed: rejected + unreachable,
    pending: total - acked - rejected - unreachable,
    namespaces: {},
    outcomes: [],
    done,
    error: "",
  };
}

describe("foldRollout", () => {
  it("keeps the status a subscribe answers with", () => {
    const feed = foldRollout(EMPTY_FEED, { type: "rollout_status", version: 12, agents: 7, current: 5, behind: 2 });
    expect(feed.status).toEqual({ version: 12, agents: 7, current: 5, behind: 2 });
    expect(feed.changes).toBe(1);
  });

  it("keeps each rollout's running counts, whole, from its latest event", () => {
    let feed = foldRollout(EMPTY_FEED, progress("r1", 1, 12));
    feed = foldRollout(feed, progress("r1", 2, 12, { acked: 2 }));
    feed = foldRollout(feed, progress("r1", 3, 12, { acked: 2, unreachable: 1 }, true));
    expect(feed.order).toEqual(["r1"]);
    expect(feed.runs.r1).toMatchObject({ seq: 3, acked: 2, failed: 1, pending: 0, done: true, version: 12 });
    expect(feed.changes).toBe(3);
  });

  it("ignores an event older than one it already holds (a missed one is repaired by the next)", () => {
    const ahead = foldRollout(foldRollout(EMPTY_FEED, progress("r1", 1, 12)), progress("r1", 4, 12, { acked: 3 }));
    expect(foldRollout(ahead, progress("r1", 2, 12, { acked: 1 }))).toBe(ahead);
    expect(foldRollout(ahead, progress("r1", 4, 12, { acked: 1 }))).toBe(ahead);
  });

  it("leaves the feed alone for anything else", () => {
    for (const message of [
      null,
      "text",
      3,
      { type: "pong" },
      { type: "error", detail: "x" },
      { type: "rollout_progress" },
    ])
      expect(foldRollout(EMPTY_FEED, message)).toBe(EMPTY_FEED);
  });

  it("remembers a bounded number of rollouts, dropping the oldest", () => {
    let feed: RolloutFeed = EMPTY_FEED;
    for (let index = 0; index < MAX_RUNS + 5; index += 1) feed = foldRollout(feed, progress(`r${index}`, 1, index));
    expect(feed.order).toHaveLength(MAX_RUNS);
    expect(feed.order[0]).toBe("r5");
    expect(Object.keys(feed.runs)).toHaveLength(MAX_RUNS);
    expect(feed.runs.r0).toBeUndefined();
  });

  it("reads missing or odd numbers as zero", () => {
    const feed = foldRollout(EMPTY_FEED, { type: "rollout_progress", rollout: "r", seq: 1, version: "x", acked: null });
    expect(feed.runs.r).toMatchObject({ version: 0, acked: 0, total: 0, done: false, error: "" });
  });
});

describe("which events concern a version", () => {
  it("finds the latest run pushing that mesh version or a later one", () => {
    let feed = foldRollout(EMPTY_FEED, progress("a", 1, 10));
    feed = foldRollout(feed, progress("b", 1, 12));
    feed = foldRollout(feed, progress("c", 1, 11));
    expect(latestRunFor(feed, 12)?.rollout).toBe("b");
    expect(latestRunFor(feed, 11)?.rollout).toBe("c");
    expect(latestRunFor(feed, 13)).toBeNull();
  });

  it("refetches for progress of this snapshot or a later one, and after each (re)subscribe", () => {
    expect(concernsVersion(progress("r", 1, 12), 12)).toBe(true);
    expect(concernsVersion(progress("r", 1, 13), 12)).toBe(true);
    expect(concernsVersion(progress("r", 1, 11), 12)).toBe(false);
    expect(concernsVersion({ type: "rollout_status", version: 3 }, 12)).toBe(true);
    expect(concernsVersion({ type: "error" }, 12)).toBe(false);
    expect(concernsVersion(null, 12)).toBe(false);
  });

  it("describes a run in words", () => {
    const feed = foldRollout(EMPTY_FEED, progress("r", 2, 12, { acked: 1, rejected: 1 }));
    expect(describeRun(feed.runs.r!)).toBe("rolling out mesh v12: 1 of 3 acked · 1 pending · 1 failed");
    const done = foldRollout(feed, { ...progress("r", 3, 12, { acked: 3 }, true), error: "" });
    expect(describeRun(done.runs.r!)).toBe("rollout of mesh v12 finished: 3 of 3 acked");
    const failed = foldRollout(feed, { ...progress("r", 3, 12, { acked: 1 }, true), error: "worker lost" });
    expect(describeRun(failed.runs.r!)).toMatch(/\(worker lost\)$/);
  });
});
