import { describe, expect, it } from "vitest";

import { subjectOfMessage } from "./socket";

describe("subjectOfMessage", () => {
  it("routes each server message to the subscription it belongs to", () => {
    expect(subjectOfMessage({ type: "snapshot", namespace: "shop" })).toBe("graph:shop");
    expect(subjectOfMessage({ type: "service_delta", service: "web.shop" })).toBe("service:web.shop");
    expect(subjectOfMessage({ type: "rollout_status", version: 3 })).toBe("rollout");
    expect(subjectOfMessage({ type: "rollout_progress", rollout: "r" })).toBe("rollout");
  });

  it("leaves errors to every subscription of the socket", () => {
    expect(subjectOfMessage({ type: "error", detail: "no" })).toBeNull();
  });
});
