import { useEffect, useRef, useState } from "react";
import { EMPTY_FEED, foldRollout, type RolloutFeed } from "../model/rollout";
import { rolloutSocket, type ConnectionState, type LiveMessage } from "./socket";

/**
 * The rollout feed of /ws/rollout/ while `enabled`: the folded feed, the socket's state, and `onMessage` called for
 * every message (a page refetches what it concerns). The socket reconnects and resubscribes on its own.
 */
export function useRolloutFeed(
  enabled: boolean,
  onMessage?: (message: LiveMessage) => void,
): { feed: RolloutFeed; connection: ConnectionState } {
  const [feed, setFeed] = useState<RolloutFeed>(EMPTY_FEED);
  const [connection, setConnection] = useState<ConnectionState>("closed");
  const callback = useRef(onMessage);
  useEffect(() => {
    callback.current = onMessage;
  });

  useEffect(() => {
    if (!enabled) return;
    const socket = rolloutSocket();
    const unsubscribe = socket.subscribe({ topic: "rollout" }, (message) => {
      setFeed((previous) => foldRollout(previous, message));
      callback.current?.(message);
    });
    const stopState = socket.onState(setConnection);
    return () => {
      stopState();
      unsubscribe();
    };
  }, [enabled]);

  return { feed, connection: enabled ? connection : "closed" };
}
