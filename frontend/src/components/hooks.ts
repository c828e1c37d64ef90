import { useCallback, useEffect, useState } from "react";
import { useSearchParams } from "react-router";
import { apiGet, ApiError } from "../api/client";
import type { Me } from "../api/types";

export type Loadable<T> =
  { state: "loading"; data?: T } | { state: "error"; error: ApiError | Error; data?: T } | { state: "ready"; data: T };

type Query = Parameters<typeof apiGet>[1];

/** GET a resource whenever the path or query changes; `refreshMs` polls it, keeping the last data while reloading. */
export function useApi<T>(
  path: string | null,
  query: Query = {},
  refreshMs?: number,
): Loadable<T> & { reload: () => void } {
  // Each answer is tagged with the request it answers: until the current one's arrives, the hook reports
  // loading with the last data it had (a poll or a changed query does not blank the page).
  const [result, setResult] = useState<{ key: string | null; path: string | null; loaded: Loadable<T> }>({
    key: null,
    path: null,
    loaded: { state: "loading" },
  });
  const [tick, setTick] = useState(0);
  const key = path === null ? null : JSON.stringify([path, query, tick]);
  const reload = useCallback(() => setTick((value) => value + 1), []);

  useEffect(() => {
    if (key === null || path === null) return;
    const controller = new AbortController();
    apiGet<T>(path, query, controller.signal)
      .then((data) => setResult({ key, path, loaded: { state: "ready", data } }))
      .catch((error: unknown) => {
        if (controller.signal.aborted) return;
        setResult((previous) => ({
          key,
          path,
          loaded: {
            state: "error",
            error: error instanceof Error ? error : new Error(String(error)),
            data: previous.loaded.data,
          },
        }));
      });
    return () => controller.abort();
    // The key stands for path and query.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [key]);

  useEffect(() => {
    if (!refreshMs || key === null) return;
    const timer = setInterval(reload, refreshMs);
    return () => clearInterval(timer);
  }, [refreshMs, key, reload]);

  const loaded: Loadable<T> =
    result.key === key
      ? result.loaded
      : ({ state: "loading", data: result.path === path ? result.loaded.data : undefined } as Loadable<T>);
  return { ...loaded, reload };
}

export const WINDOWS = ["1m", "5m", "15m", "1h", "6h", "1d"] as const;
export const WINDOW_SECONDS: Record<string, number> = {
  "1m": 60,
  "5m": 300,
  "15m": 900,
  "1h": 3600,
  "6h": 21600,
  "1d": 86400,
};
export type WindowChoice = (typeof WINDOWS)[number];

/** The namespace and time window every page shares, kept in the URL so each view is a shareable link. */
export function useScope(): {
  namespace: string;
  window: WindowChoice;
  setNamespace: (namespace: string) => void;
  setWindow: (window: WindowChoice) => void;
} {
  const [params, setParams] = useSearchParams();
  const raw = params.get("window");
  const window = (WINDOWS as readonly string[]).includes(raw ?? "") ? (raw as WindowChoice) : "5m";
  const update = (key: string, value: string) =>
    setParams((current) => {
      const next = new URLSearchParams(current);
      if (value) next.set(key, value);
      else next.delete(key);
      return next;
    });
  return {
    namespace: params.get("ns") ?? "",
    window,
    setNamespace: (namespace) => update("ns", namespace),
    setWindow: (value) => update("window", value),
  };
}

/** A link's search string that keeps the shared scope (namespace, window). */
export function useScopeQuery(): string {
  const [params] = useSearchParams();
  const kept = new URLSearchParams();
  for (const key of ["ns", "window"]) {
    const value = params.get(key);
    if (value) kept.set(key, value);
  }
  const text = kept.toString();
  return text ? `?${text}` : "";
}

export function useMe(): Loadable<Me> {
  return useApi<Me>("/api/v1/me/");
}

/** The current time, ticking every `ms`, for "3 s ago" labels. */
export function useNow(ms = 1000): Date {
  const [now, setNow] = useState(() => new Date());
  useEffect(() => {
    const timer = setInterval(() => setNow(new Date()), ms);
    return () => clearInterval(timer);
  }, [ms]);
  return now;
}
