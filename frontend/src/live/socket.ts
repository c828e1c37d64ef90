// One WebSocket to /ws/live/ per tab, shared by every view: topics are (re)subscribed on each (re)connect,
// so a restart of the control plane costs a gap in the charts, never a dead page. The rollout feed
// (/ws/rollout/) is a second endpoint with the same protocol and the same reconnecting socket.

export type LiveMessage = { type: string } & Record<string, unknown>;
export type Subscription =
  | { topic: "graph"; namespace: string; window: "1m" | "5m" | "15m" }
  | { topic: "service"; service: string; window: "1m" | "5m" | "15m" }
  | { topic: "rollout" };
type Listener = (message: LiveMessage) => void;
export type ConnectionState = "connecting" | "open" | "closed";

function subjectOf(subscription: Subscription): string {
  switch (subscription.topic) {
    case "graph":
      return `graph:${subscription.namespace}`;
    case "service":
      return `service:${subscription.service}`;
    case "rollout":
      return "rollout";
  }
}

function windowOf(subscription: Subscription): string | undefined {
  return "window" in subscription ? subscription.window : undefined;
}

// Which subscription a server message belongs to.
export function subjectOfMessage(message: LiveMessage): string | null {
  if (message.type === "snapshot" || message.type === "delta") return `graph:${String(message.namespace)}`;
  if (message.type === "service_snapshot" || message.type === "service_delta")
    return `service:${String(message.service)}`;
  if (message.type === "rollout_status" || message.type === "rollout_progress") return "rollout";
  return null;
}

export class LiveSocket {
  private socket: WebSocket | null = null;
  private readonly subscriptions = new Map<string, { subscription: Subscription; listeners: Set<Listener> }>();
  private readonly stateListeners = new Set<(state: ConnectionState) => void>();
  private retryMs = 500;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  state: ConnectionState = "closed";
  readonly url: string;

  constructor(url?: string) {
    this.url = url ?? socketUrl("/ws/live/");
  }

  subscribe(subscription: Subscription, listener: Listener): () => void {
    const key = subjectOf(subscription);
    let entry = this.subscriptions.get(key);
    if (!entry || windowOf(entry.subscription) !== windowOf(subscription)) {
      entry = { subscription, listeners: entry?.listeners ?? new Set() };
      this.subscriptions.set(key, entry);
      this.send({ type: "subscribe", ...subscription });
    }
    entry.listeners.add(listener);
    this.ensureOpen();
    return () => {
      const current = this.subscriptions.get(key);
      if (!current) return;
      current.listeners.delete(listener);
      if (current.listeners.size === 0) {
        this.subscriptions.delete(key);
        this.send({ type: "unsubscribe", ...current.subscription });
      }
    };
  }

  /** Ask for a fresh snapshot of a subscribed topic (the server answers a repeated subscribe with one). */
  refresh(subscription: Subscription): void {
    if (this.subscriptions.has(subjectOf(subscription))) this.send({ type: "subscribe", ...subscription });
  }

  onState(listener: (state: ConnectionState) => void): () => void {
    this.stateListeners.add(listener);
    listener(this.state);
    return () => this.stateListeners.delete(listener);
  }

  private setState(state: ConnectionState): void {
    this.state = state;
    this.stateListeners.forEach((listener) => listener(state));
  }

  private send(message: object): void {
    if (this.socket?.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(message));
  }

  private ensureOpen(): void {
    if (this.socket || this.retryTimer) return;
    this.setState("connecting");
    const socket = new WebSocket(this.url);
    this.socket = socket;
    socket.onopen = () => {
      this.retryMs = 500;
      this.setState("open");
      for (const { subscription } of this.subscriptions.values()) this.send({ type: "subscribe", ...subscription });
    };
    socket.onmessage = (event: MessageEvent<string>) => {
      let message: LiveMessage;
      try {
        message = JSON.parse(event.data) as LiveMessage;
      } catch {
        return;
      }
      const subject = subjectOfMessage(message);
      const targets = subject ? [this.subscriptions.get(subject)] : [...this.subscriptions.values()];
      for (const entry of targets) entry?.listeners.forEach((listener) => listener(message));
    };
    socket.onclose = (event: CloseEvent) => {
      this.socket = null;
      this.setState("closed");
      if (event.code === 4401) {
        window.location.assign(`/login/?next=${encodeURIComponent(window.location.pathname + window.location.search)}`);
        return;
      }
      if (this.subscriptions.size === 0) return;
      this.retryTimer = setTimeout(() => {
        this.retryTimer = null;
        this.ensureOpen();
      }, this.retryMs);
      this.retryMs = Math.min(this.retryMs * 2, 10_000);
    };
  }
}

function socketUrl(path: string): string {
  const scheme = window.location.protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${window.location.host}${path}`;
}

let shared: LiveSocket | null = null;
let sharedRollout: LiveSocket | null = null;

export function liveSocket(): LiveSocket {
  shared ??= new LiveSocket();
  return shared;
}

/** The tab's one socket to /ws/rollout/ (subscribe with `{ topic: "rollout" }`). */
export function rolloutSocket(): LiveSocket {
  sharedRollout ??= new LiveSocket(socketUrl("/ws/rollout/"));
  return sharedRollout;
}
