import { useEffect, useMemo, useState } from "react";
import type { SeriesPoint } from "../api/types";
import { liveSocket, type ConnectionState, type LiveMessage } from "./socket";

export interface LivePoint {
  t: number; // unix seconds
  rps: number;
  error_rate: number;
  p50_ms: number | null;
  p95_ms: number | null;
  p99_ms: number | null;
  in_flight: number;
}

interface SideDelta {
  requests: number;
  errors: number;
  p50_ms: number | null;
  p95_ms: number | null;
  p99_ms: number | null;
  in_flight: number;
}

function fromSnapshot(points: SeriesPoint[], stepS: number): LivePoint[] {
  // A snapshot point covers a whole step; plotted at its end so it lines up with the per-second deltas.
  return points.map((point) => ({ ...point, t: Date.parse(point.time) / 1000 + stepS }));
}

function fromDelta(delta: SideDelta, t: number): LivePoint {
  return {
    t,
    rps: delta.requests,
    error_rate: delta.requests ? delta.errors / delta.requests : 0,
    p50_ms: delta.p50_ms,
    p95_ms: delta.p95_ms,
    p99_ms: delta.p99_ms,
    in_flight: delta.in_flight,
  };
}

/** A service's inbound and outbound golden signals: the window's snapshot, then a point per pushed delta. */
export function useServiceSeries(service: string | null, window: "1m" | "5m" | "15m") {
  const subject = service === null ? null : `${service}/${window}`;
  // Tagged with the subscription it belongs to, so another service's points never show here.
  const [tagged, setSeries] = useState<{ subject: string | null; inbound: LivePoint[]; outbound: LivePoint[] }>({
    subject: null,
    inbound: [],
    outbound: [],
  });
  const [errorTagged, setError] = useState<{ subject: string | null; error: Error | null }>({
    subject: null,
    error: null,
  });
  const ready = tagged.subject === subject && subject !== null;
  const series = ready ? tagged : { inbound: [] as LivePoint[], outbound: [] as LivePoint[] };
  const error = errorTagged.subject === subject ? errorTagged.error : null;
  const [connection, setConnection] = useState<ConnectionState>("closed");
  const [updates, setUpdates] = useState(0);
  const windowS = { "1m": 60, "5m": 300, "15m": 900 }[window];

  useEffect(() => {
    if (!service) return;
    const current = `${service}/${window}`;
    const socket = liveSocket();
    const unsubscribe = socket.subscribe({ topic: "service", service, window }, (message: LiveMessage) => {
      if (message.type === "service_snapshot") {
        const step = Number(message.step_s);
        setSeries({
          subject: current,
          inbound: fromSnapshot(message.inbound as SeriesPoint[], step),
          outbound: fromSnapshot(message.outbound as SeriesPoint[], step),
        });
        setError({ subject: current, error: null });
      } else if (message.type === "service_delta") {
        const t = Date.now() / 1000;
        const cutoff = t - windowS;
        setSeries((previous) =>
          previous.subject !== current
            ? previous
            : {
                subject: current,
                inbound: message.inbound
                  ? [
                      ...previous.inbound.filter((point) => point.t >= cutoff),
                      fromDelta(message.inbound as SideDelta, t),
                    ]
                  : previous.inbound,
                outbound: message.outbound
                  ? [
                      ...previous.outbound.filter((point) => point.t >= cutoff),
                      fromDelta(message.outbound as SideDelta, t),
                    ]
                  : previous.outbound,
              },
        );
        setUpdates((value) => value + 1);
      } else if (message.type === "error") {
        setError({ subject: current, error: new Error(String(message.detail)) });
      }
    });
    const stopState = socket.onState(setConnection);
    return () => {
      stopState();
      unsubscribe();
    };
  }, [service, window, windowS]);

  const { inbound, outbound } = series;
  return useMemo(
    () => ({ inbound, outbound, ready, error, connection, updates }),
    [inbound, outbound, ready, error, connection, updates],
  );
}
