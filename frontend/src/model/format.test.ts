import { describe, expect, it } from "vitest";

import {
  formatAgo,
  formatBytes,
  formatDurationUs,
  formatMs,
  formatPercent,
  formatRate,
  formatTimestamp,
  toDateTimeLocal,
} from "./format";

describe("formatMs", () => {
  it("shows a dash for a missing value", () => {
    expect(formatMs(null)).toBe("—");
    expect(formatMs(undefined)).toBe("—");
    expect(formatMs(Number.NaN)).toBe("—");
  });

  it("uses more decimals the smaller the value", () => {
    expect(formatMs(0)).toBe("0.00 ms");
    expect(formatMs(0.42)).toBe("0.42 ms");
    expect(formatMs(4.2)).toBe("4.2 ms");
    expect(formatMs(42.345)).toBe("42.3 ms");
    expect(formatMs(250)).toBe("250 ms");
    expect(formatMs(999.4)).toBe("999 ms");
  });

  it("switches to seconds from 1000 ms", () => {
    expect(formatMs(1000)).toBe("1.00 s");
    expect(formatMs(1250)).toBe("1.25 s");
    expect(formatMs(61_000)).toBe("61.00 s");
  });

  it("moves to the next tier when rounding reaches it", () => {
    expect(formatMs(0.999)).toBe("1.0 ms");
    expect(formatMs(99.96)).toBe("100 ms");
    expect(formatMs(999.6)).toBe("1.00 s");
  });
});

describe("formatDurationUs", () => {
  it("keeps microseconds below a millisecond", () => {
    expect(formatDurationUs(0)).toBe("0 µs");
    expect(formatDurationUs(850)).toBe("850 µs");
    expect(formatDurationUs(999.4)).toBe("999 µs");
  });

  it("delegates to formatMs from 1000 µs", () => {
    expect(formatDurationUs(1000)).toBe("1.0 ms");
    expect(formatDurationUs(4200)).toBe("4.2 ms");
    expect(formatDurationUs(250_000)).toBe("250 ms");
    expect(formatDurationUs(1_250_000)).toBe("1.25 s");
    expect(formatDurationUs(999.7)).toBe("1.0 ms");
  });
});

describe("formatRate", () => {
  it("shows zero plainly", () => {
    expect(formatRate(0)).toBe("0");
  });

  it("picks decimals by magnitude", () => {
    expect(formatRate(0.531)).toBe("0.53");
    expect(formatRate(12.44)).toBe("12.4");
    expect(formatRate(250.4)).toBe("250");
    expect(formatRate(9999)).toBe("9999");
  });

  it("abbreviates thousands from 10 000", () => {
    expect(formatRate(10_000)).toBe("10.0k");
    expect(formatRate(12_345)).toBe("12.3k");
    expect(formatRate(2_500_000)).toBe("2.5M");
  });

  it("keeps a tiny non-zero rate visible", () => {
    expect(formatRate(0.004)).toBe("<0.01");
    expect(formatRate(0.005)).toBe("0.01");
  });
});

describe("formatPercent", () => {
  it("formats zero without decimals", () => {
    expect(formatPercent(0)).toBe("0%");
  });

  it("does not round a small but real error rate down to zero", () => {
    expect(formatPercent(0.00001)).toBe("<0.01%");
    expect(formatPercent(0.0001)).toBe("0.01%");
  });

  it("uses two decimals below 10% and one above", () => {
    expect(formatPercent(0.0123)).toBe("1.23%");
    expect(formatPercent(0.05)).toBe("5.00%");
    expect(formatPercent(0.125)).toBe("12.5%");
    expect(formatPercent(1)).toBe("100.0%");
    expect(formatPercent(0.09999)).toBe("10.0%");
  });
});

describe("formatBytes", () => {
  it("keeps bytes whole", () => {
    expect(formatBytes(0)).toBe("0 B");
    expect(formatBytes(1023)).toBe("1023 B");
  });

  it("uses binary units with one decimal", () => {
    expect(formatBytes(1024)).toBe("1.0 KiB");
    expect(formatBytes(1536)).toBe("1.5 KiB");
    expect(formatBytes(5 * 1024 ** 2)).toBe("5.0 MiB");
    expect(formatBytes(3.25 * 1024 ** 3)).toBe("3.3 GiB");
  });

  it("goes up a unit when rounding would read 1024.0", () => {
    expect(formatBytes(1024 ** 2 - 1)).toBe("1.0 MiB");
  });

  it("stays in GiB for anything larger", () => {
    expect(formatBytes(2048 * 1024 ** 3)).toBe("2048.0 GiB");
  });
});

describe("formatTimestamp", () => {
  it("shows local time to the millisecond", () => {
    // No offset: parsed as local time, so the expectation holds in any time zone.
    expect(formatTimestamp("2026-12-03T09:04:05.007")).toBe("09:04:05.007");
  });

  it("converts a UTC timestamp to local time", () => {
    const iso = "2026-12-03T10:00:00.123456Z";
    const date = new Date(iso);
    const pad = (n: number) => String(n).padStart(2, "0");
    expect(formatTimestamp(iso)).toBe(
      `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.123`,
    );
  });

  it("shows a dash for an unreadable timestamp", () => {
    expect(formatTimestamp("not a date")).toBe("—");
  });
});

describe("formatAgo", () => {
  const now = new Date("2026-12-03T12:00:00Z");
  const before = (seconds: number) => new Date(now.getTime() - seconds * 1000).toISOString();

  it("says never for no timestamp", () => {
    expect(formatAgo(null, now)).toBe("never");
  });

  it("says just now for the last few seconds and for the future", () => {
    expect(formatAgo(before(0), now)).toBe("just now");
    expect(formatAgo(before(4.9), now)).toBe("just now");
    expect(formatAgo(before(-30), now)).toBe("just now");
  });

  it("uses the largest whole unit", () => {
    expect(formatAgo(before(5), now)).toBe("5 s ago");
    expect(formatAgo(before(12), now)).toBe("12 s ago");
    expect(formatAgo(before(59), now)).toBe("59 s ago");
    expect(formatAgo(before(60), now)).toBe("1 min ago");
    expect(formatAgo(before(3 * 60 + 59), now)).toBe("3 min ago");
    expect(formatAgo(before(2 * 3600 + 10), now)).toBe("2 h ago");
    expect(formatAgo(before(23 * 3600 + 3599), now)).toBe("23 h ago");
    expect(formatAgo(before(4 * 86400 + 5), now)).toBe("4 d ago");
  });

  it("shows a dash for an unreadable timestamp", () => {
    expect(formatAgo("yesterday", now)).toBe("—");
  });
});

describe("toDateTimeLocal", () => {
  it("gives the local wall time to the minute, as a datetime-local input reads it", () => {
    const date = new Date(2026, 11, 3, 9, 5, 42);
    expect(toDateTimeLocal(date.toISOString())).toBe("2026-12-03T09:05");
    // And back: the input's value parses to the same minute.
    expect(new Date(toDateTimeLocal(date.toISOString())).getTime()).toBe(new Date(2026, 11, 3, 9, 5).getTime());
  });

  it("is empty for something that is not a time", () => {
    expect(toDateTimeLocal("not a time")).toBe("");
  });
});
