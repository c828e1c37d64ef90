// The /ws/rollout/ feed (meshui/live/consumers.py RolloutConsumer, meshui/rollout/progress.py) folded into what a
// page needs: where the agents stand, each rollout's latest running counts, and whether an event concerns a
// given config version (so the page refetches it).

export interface RolloutSummary {
  total: number;
  acked: number;
  rejected: number;
  unreachable: number;
  failed: number;
  pending: number;
}

/** Sent once after each subscribe: the current mesh version and how many connected agents hold it. */
export interface RolloutStatusMessage {
  type: "rollout_status";
  version: number;
  agents: number;
  current: number;
  behind: number;
}

export interface RolloutOutcome {
  agent_id: string;
  namespace: string;
  outcome: string;
  applied_version: number | null;
  detail: string;
  attempts: number;
}

/** One rollout's progress: running counts (whole, so a missed event is repaired by the next), new outcomes. */
export interface RolloutProgressMessage extends RolloutSummary {
  type: "rollout_progress";
  rollout: string;
  seq: number;
  /** The mesh (snapshot) version this rollout pushes. */
  version: number;
  triggered_by: number;
  namespaces: Record<string, RolloutSummary>;
  outcomes: RolloutOutcome[];
  done: boolean;
  error: string;
}

export interface RolloutRun extends RolloutSummary {
  rollout: string;
  version: number;
  seq: number;
  done: boolean;
  error: string;
}

export interface RolloutFeed {
  status: Omit<RolloutStatusMessage, "type"> | null;
  /** Rollouts by id, each at its highest seq seen. */
  runs: Record<string, RolloutRun>;
  /** Ids in the order they were first seen, oldest first (bounded by MAX_RUNS). */
  order: string[];
  /** How many messages changed the feed: a page can key a refetch on it. */
  changes: number;
}

export const MAX_RUNS = 20;

export const EMPTY_FEED: RolloutFeed = { status: null, runs: {}, order: [], changes: 0 };

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null;
}

function count(value: unknown): number {
  return typeof value === "number" && Number.isFinite(value) ? value : 0;
}

/**
 * The feed after one message. Unknown messages, and progress older than what the feed already holds for that
 * rollout (the layer may deliver out of order after a reconnect), leave it as it was (the same object).
 */
export function foldRollout(feed: RolloutFeed, message: unknown): RolloutFeed {
  if (!isRecord(message)) return feed;
  if (message.type === "rollout_status") {
    return {
      ...feed,
      status: {
        version: count(message.version),
        agents: count(message.agents),
        current: count(message.current),
        behind: count(message.behind),
      },
      changes: feed.changes + 1,
    };
  }
  if (message.type !== "rollout_progress" || typeof message.rollout !== "string") return feed;
  const id = message.rollout;
  const seq = count(message.seq);
  const previous = feed.runs[id];
  if (previous && previous.seq >= seq) return feed;
  const run: RolloutRun = {
    rollout: id,
    version: count(message.version),
    seq,
    total: count(message.total),
    acked: count(message.acked),
    rejected: count(message.rejected),
    unreachable: count(message.unreachable),
    failed: count(message.failed),
    pending: count(message.pending),
    done: message.done === true,
    error: typeof message.error === "string" ? message.error : "",
  };
  const order = previous ? feed.order : [...feed.order, id];
  const dropped = order.length > MAX_RUNS ? order.slice(0, order.length - MAX_RUNS) : [];
  const runs = { ...feed.runs, [id]: run };
  for (const old of dropped) delete runs[old];
  return { ...feed, runs, order: order.slice(dropped.length), changes: feed.changes + 1 };
}

/** The latest run pushing `meshVersion` or later (a later snapshot also brings agents to this version), if any. */
export function latestRunFor(feed: RolloutFeed, meshVersion: number): RolloutRun | null {
  for (let index = feed.order.length - 1; index >= 0; index -= 1) {
    const run = feed.runs[feed.order[index] ?? ""];
    if (run && run.version >= meshVersion) return run;
  }
  return null;
}

/** Whether a message may change the rollout of a config version holding `meshVersion`: worth a refetch. */
export function concernsVersion(message: unknown, meshVersion: number): boolean {
  if (!isRecord(message)) return false;
  // A (re)subscribe's status follows a gap in which events may have been missed.
  if (message.type === "rollout_status") return true;
  return message.type === "rollout_progress" && count(message.version) >= meshVersion;
}

/** A live run's progress in words: "rolling out mesh v12: 5 of 7 acked · 2 pending". */
export function describeRun(run: RolloutRun): string {
  const parts = [`${run.acked} of ${run.total} acked`];
  if (run.pending) parts.push(`${run.pending} pending`);
  if (run.failed) parts.push(`${run.failed} failed`);
  const head = run.done ? `rollout of mesh v${run.version} finished` : `rolling out mesh v${run.version}`;
  return `${head}: ${parts.join(" · ")}${run.error ? ` (${run.error})` : ""}`;
}
