import { useEffect, useMemo, useState } from "react";
import {
  addDelta,
  currentGraph,
  newLiveGraph,
  type EdgeDelta,
  type GraphData,
  type HealthThresholds,
  type LiveGraphState,
} from "../model/graph";
import { liveSocket, type ConnectionState, type LiveMessage } from "./socket";

const DEFAULT_THRESHOLDS: HealthThresholds = { degraded: 0.001, failing: 0.1 };
// Counts merge exactly; percentiles cannot, so a fresh snapshot refreshes them (and slides the window).
const RESNAPSHOT_MS = 30_000;

export function useLiveGraph(
  namespace: string | null,
  window: "1m" | "5m" | "15m",
): { graph: GraphData | null; error: Error | null; connection: ConnectionState } {
  const subject = namespace === null ? null : `${namespace}/${window}`;
  // Tagged with the subscription it belongs to, so a change of namespace shows nothing stale.
  const [tagged, setState] = useState<{ subject: string | null; state: LiveGraphState | null }>({
    subject: null,
    state: null,
  });
  const [errorTagged, setError] = useState<{ subject: string | null; error: Error | null }>({
    subject: null,
    error: null,
  });
  const state = tagged.subject === subject ? tagged.state : null;
  const error = errorTagged.subject === subject ? errorTagged.error : null;
  const [thresholds, setThresholds] = useState<HealthThresholds>(DEFAULT_THRESHOLDS);
  const [connection, setConnection] = useState<ConnectionState>("closed");
  const [now, setNow] = useState(() => Date.now());

  useEffect(() => {
    if (namespace === null) return;
    const current = `${namespace}/${window}`;
    const socket = liveSocket();
    const subscription = { topic: "graph" as const, namespace, window };
    const unsubscribe = socket.subscribe(subscription, (message: LiveMessage) => {
      if (message.type === "snapshot") {
        const base = { nodes: message.nodes, edges: message.edges } as GraphData;
        if (message.health_thresholds) setThresholds(message.health_thresholds as HealthThresholds);
        setState({ subject: current, state: newLiveGraph(base, Number(message.window_s), Date.now()) });
        setError({ subject: current, error: null });
      } else if (message.type === "delta") {
        setState((previous) =>
          previous.subject === current && previous.state
            ? { subject: current, state: addDelta(previous.state, message.edges as EdgeDelta[]) }
            : previous,
        );
        setNow(Date.now());
      } else if (message.type === "error") {
        setError({ subject: current, error: new Error(String(message.detail)) });
      }
    });
    const stopState = socket.onState(setConnection);
    const refresher = setInterval(() => socket.refresh(subscription), RESNAPSHOT_MS);
    return () => {
      clearInterval(refresher);
      stopState();
      unsubscribe();
    };
  }, [namespace, window]);

  const graph = useMemo(() => (state ? currentGraph(state, now, thresholds) : null), [state, now, thresholds]);
  return { graph, error, connection };
}
