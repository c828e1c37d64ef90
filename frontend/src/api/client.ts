// The dashboard talks to the control plane only through /api/v1 (session cookie + CSRF token).

export class ApiError extends Error {
  readonly status: number;
  readonly fields: Record<string, string[]>;
  /** The answer's body as sent: a 400's errors nest as the input did (`{"items": [{}, {"spec": {...}}]}`). */
  readonly body: unknown;

  constructor(status: number, message: string, fields: Record<string, string[]> = {}, body: unknown = null) {
    super(message);
    this.status = status;
    this.fields = fields;
    this.body = body;
  }
}

export function csrfToken(): string {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match?.[1] ? decodeURIComponent(match[1]) : "";
}

type Query = Record<string, string | number | boolean | undefined | null | string[]>;

export function withQuery(path: string, query: Query = {}): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value === undefined || value === null || value === "") continue;
    if (Array.isArray(value)) value.forEach((item) => params.append(key, item));
    else params.set(key, String(value));
  }
  const text = params.toString();
  return text ? `${path}${path.includes("?") ? "&" : "?"}${text}` : path;
}

// DRF errors are {"detail": "..."} or {"field": ["message", ...], ...}: keep both for the UI.
function describeError(status: number, body: unknown): ApiError {
  if (body && typeof body === "object") {
    const record = body as Record<string, unknown>;
    if (typeof record.detail === "string") return new ApiError(status, record.detail, {}, body);
    const fields: Record<string, string[]> = {};
    for (const [key, value] of Object.entries(record)) {
      if (Array.isArray(value)) fields[key] = value.map(String);
    }
    const first = Object.entries(fields)[0];
    if (first) return new ApiError(status, `${first[0]}: ${first[1].join(" ")}`, fields, body);
    if (status === 400)
      return new ApiError(status, "The server refused some fields; see the messages beside them.", {}, body);
  }
  return new ApiError(status, `The server answered ${status}.`, {}, body);
}

export async function apiGet<T>(path: string, query: Query = {}, signal?: AbortSignal): Promise<T> {
  const response = await fetch(withQuery(path, query), {
    credentials: "same-origin",
    headers: { Accept: "application/json" },
    signal,
  });
  if (response.status === 401 || response.status === 403) {
    // A session that expired sends the user back to the login page, then here again.
    if (response.status === 401 || !(await hasSession())) {
      window.location.assign(`/login/?next=${encodeURIComponent(window.location.pathname + window.location.search)}`);
    }
  }
  const body: unknown = await response.json().catch(() => null);
  if (!response.ok) throw describeError(response.status, body);
  return body as T;
}

/** POST, PATCH or DELETE a JSON body with the session's CSRF token; the answer's JSON, or an ApiError. */
export async function apiSend<T>(
  method: "POST" | "PATCH" | "PUT" | "DELETE",
  path: string,
  body?: unknown,
): Promise<T> {
  const response = await fetch(path, {
    method,
    credentials: "same-origin",
    headers: { Accept: "application/json", "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) {
    window.location.assign(`/login/?next=${encodeURIComponent(window.location.pathname + window.location.search)}`);
  }
  const answer: unknown = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) throw describeError(response.status, answer);
  return answer as T;
}

async function hasSession(): Promise<boolean> {
  const response = await fetch("/api/v1/me/", { credentials: "same-origin" });
  return response.ok;
}

export async function logout(): Promise<void> {
  const form = document.createElement("form");
  form.method = "post";
  form.action = "/logout/";
  const input = document.createElement("input");
  input.type = "hidden";
  input.name = "csrfmiddlewaretoken";
  input.value = csrfToken();
  form.appendChild(input);
  document.body.appendChild(form);
  form.submit();
}
