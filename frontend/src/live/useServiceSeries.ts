import { useEffect, useMemo, useState } from "react";
import {
  addSideDelta,
  seriesColumns,
  stepsFromSnapshot,
  type Columns,
  type SeriesPoint,
  type SideDelta,
  type Step,
} from "../model/series";
import { liveSocket, type ConnectionState, type LiveMessage } from "./socket";

const EMPTY: Columns = { t: [], rps: [], errorPercent: [], p50: [], p95: [], p99: [], inFlight: [] };

interface Tagged {
  subject: string | null;
  stepS: number;
  inbound: Step[];
  outbound: Step[];
  at: number; // unix seconds of the last change
}

/** A service's inbound and outbound golden signals: the window's snapshot, then each pushed delta folded in. */
export function useServiceSeries(service: string | null, window: "1m" | "5m" | "15m") {
  const subject = service === null ? null : `${service}/${window}`;
  // Tagged with the subscription it belongs to, so another service's points never show here.
  const [tagged, setTagged] = useState<Tagged>({ subject: null, stepS: 10, inbound: [], outbound: [], at: 0 });
  const [errorTagged, setError] = useState<{ subject: string | null; error: Error | null }>({
    subject: null,
    error: null,
  });
  const [connection, setConnection] = useState<ConnectionState>("closed");
  const [updates, setUpdates] = useState(0);
  const windowS = { "1m": 60, "5m": 300, "15m": 900 }[window];

  useEffect(() => {
    if (!service) return;
    const current = `${service}/${window}`;
    const socket = liveSocket();
    const unsubscribe = socket.subscribe({ topic: "service", service, window }, (message: LiveMessage) => {
      if (message.type === "service_snapshot") {
        const stepS = Number(message.step_s);
        setTagged({
          subject: current,
          stepS,
          inbound: stepsFromSnapshot(message.inbound as SeriesPoint[], stepS),
          outbound: stepsFromSnapshot(message.outbound as SeriesPoint[], stepS),
          at: Date.now() / 1000,
        });
        setError({ subject: current, error: null });
      } else if (message.type === "service_delta") {
        const now = Date.now() / 1000;
        setTagged((previous) =>
          previous.subject !== current
            ? previous
            : {
                ...previous,
                inbound: message.inbound
                  ? addSideDelta(previous.inbound, message.inbound as SideDelta, now, previous.stepS, windowS)
                  : previous.inbound,
                outbound: message.outbound
                  ? addSideDelta(previous.outbound, message.outbound as SideDelta, now, previous.stepS, windowS)
                  : previous.outbound,
                at: now,
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

  const ready = tagged.subject === subject && subject !== null;
  const error = errorTagged.subject === subject ? errorTagged.error : null;
  const inbound = useMemo(
    () => (ready ? seriesColumns(tagged.inbound, tagged.at, tagged.stepS) : EMPTY),
    [ready, tagged],
  );
  const outbound = useMemo(
    () => (ready ? seriesColumns(tagged.outbound, tagged.at, tagged.stepS) : EMPTY),
    [ready, tagged],
  );
  return { inbound, outbound, ready, error, connection, updates };
}
