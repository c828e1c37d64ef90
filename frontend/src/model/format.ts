// Number and time formatting shared by every page, so tables, labels and tooltips read the same.

/** Shown wherever a value is unknown (no requests, no percentile), rather than a misleading 0. */
export const MISSING = "—";

/** `n` with exactly `decimals` decimals, or null when rounding reaches `limit` (the next tier applies). */
function fixedBelow(n: number, decimals: number, limit: number): string | null {
  const text = n.toFixed(decimals);
  return Math.abs(Number(text)) < limit ? text : null;
}

export function formatMs(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return MISSING;
  // Each tier is checked after rounding: 99.96 ms must read "100 ms", not "100.0 ms".
  const small = fixedBelow(ms, 2, 1);
  if (small !== null) return `${small} ms`;
  const medium = fixedBelow(ms, 1, 100);
  if (medium !== null) return `${medium} ms`;
  const large = fixedBelow(ms, 0, 1000);
  if (large !== null) return `${large} ms`;
  return `${(ms / 1000).toFixed(2)} s`;
}

export function formatDurationUs(us: number): string {
  if (!Number.isFinite(us)) return MISSING;
  const micro = fixedBelow(us, 0, 1000);
  if (micro !== null) return `${micro} µs`;
  return formatMs(us / 1000);
}

export function formatRate(rps: number): string {
  if (!Number.isFinite(rps)) return MISSING;
  if (rps === 0) return "0";
  // As with percentages: a trickle of traffic must not read as none.
  if (rps > 0 && rps < 0.005) return "<0.01";
  const small = fixedBelow(rps, 2, 1);
  if (small !== null) return small;
  const medium = fixedBelow(rps, 1, 100);
  if (medium !== null) return medium;
  const large = fixedBelow(rps, 0, 10_000);
  if (large !== null) return large;
  // "M" keeps a very busy edge's label short instead of "1234.5k".
  const thousands = fixedBelow(rps / 1000, 1, 1000);
  if (thousands !== null) return `${thousands}k`;
  return `${(rps / 1_000_000).toFixed(1)}M`;
}

export function formatPercent(fraction: number): string {
  if (!Number.isFinite(fraction)) return MISSING;
  if (fraction === 0) return "0%";
  // A handful of errors among millions must not read "0.00%": that hides that errors happen at all.
  if (fraction > 0 && fraction < 0.0001) return "<0.01%";
  const percent = fraction * 100;
  const small = fixedBelow(percent, 2, 10);
  if (small !== null) return `${small}%`;
  return `${percent.toFixed(1)}%`;
}

const BYTE_UNITS = ["KiB", "MiB", "GiB"] as const;

export function formatBytes(n: number): string {
  if (!Number.isFinite(n)) return MISSING;
  if (Math.abs(n) < 1024) return `${Math.round(n)} B`;
  let value = n / 1024;
  let index = 0;
  // Compare the rounded value, so 1023.96 KiB reads "1.0 MiB" rather than "1024.0 KiB".
  while (Math.abs(Number(value.toFixed(1))) >= 1024 && index < BYTE_UNITS.length - 1) {
    value /= 1024;
    index += 1;
  }
  return `${value.toFixed(1)} ${BYTE_UNITS[index] ?? "GiB"}`;
}

function pad(n: number, width: number): string {
  return String(n).padStart(width, "0");
}

/** Local wall-clock time to the millisecond: spans and log lines within one second must be told apart. */
export function formatTimestamp(iso: string): string {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return MISSING;
  const hms = [date.getHours(), date.getMinutes(), date.getSeconds()].map((part) => pad(part, 2)).join(":");
  return `${hms}.${pad(date.getMilliseconds(), 3)}`;
}

export function formatAgo(iso: string | null, now: Date): string {
  if (iso === null) return "never";
  const then = new Date(iso).getTime();
  if (Number.isNaN(then)) return MISSING;
  const seconds = Math.floor((now.getTime() - then) / 1000);
  // Slightly-ahead clocks (agent vs. browser) put events in the future; they happened "just now".
  if (seconds < 5) return "just now";
  if (seconds < 60) return `${seconds} s ago`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.floor(minutes / 60);
  if (hours < 24) return `${hours} h ago`;
  return `${Math.floor(hours / 24)} d ago`;
}

/** An instant as a `datetime-local` input's value (local time, to the minute). */
export function toDateTimeLocal(iso: string): string {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  const pad = (value: number) => String(value).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}
