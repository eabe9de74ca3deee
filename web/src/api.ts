// The dashboard API client: every call carries the bearer token; the live stream is read with
// fetch (EventSource cannot send an Authorization header, and tokens stay out of URLs).

export type Json = Record<string, any>;

const TOKEN_KEY = "taskpilot.token";

/** The token from `#token=…` (what `taskpilot token --url` prints), else this tab's session. */
export function storedToken(): string | null {
  const fromUrl = location.hash.match(/[#&]token=([^&]+)/)?.[1];
  if (fromUrl) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(fromUrl));
    history.replaceState(null, "", location.pathname + "#/");
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

export function saveToken(token: string | null): void {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

export class ApiError extends Error {
  constructor(public status: number, message: string) {
    super(message);
  }
}

export class Api {
  /** ``signedOut`` runs when the API refuses the token (expired, revoked): sign in again. */
  constructor(
    private token: string,
    private signedOut: () => void = () => {},
  ) {}

  private headers(extra: Record<string, string> = {}): Record<string, string> {
    return { Authorization: `Bearer ${this.token}`, ...extra };
  }

  async request<T = any>(method: string, path: string, body?: unknown): Promise<T> {
    const response = await fetch(path, {
      method,
      headers: this.headers(body === undefined ? {} : { "Content-Type": "application/json" }),
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (response.status === 401) this.signedOut();
    if (!response.ok) {
      let detail = response.statusText;
      try {
        const parsed = await response.json();
        detail = typeof parsed.detail === "string" ? parsed.detail : JSON.stringify(parsed.detail);
      } catch {
        /* not JSON */
      }
      throw new ApiError(response.status, `${response.status} ${detail}`);
    }
    if (response.status === 204) return undefined as T;
    const type = response.headers.get("content-type") ?? "";
    return (type.includes("json") ? response.json() : response.text()) as Promise<T>;
  }

  get<T = any>(path: string): Promise<T> {
    return this.request<T>("GET", path);
  }

  post<T = any>(path: string, body?: unknown): Promise<T> {
    return this.request<T>("POST", path, body ?? {});
  }

  put<T = any>(path: string, body: unknown): Promise<T> {
    return this.request<T>("PUT", path, body);
  }

  del(path: string): Promise<void> {
    return this.request("DELETE", path);
  }

  /** A list and the cursor of its next page (the API puts it in X-Next-Cursor). */
  async page<T = any>(path: string): Promise<{ items: T[]; next: string | null }> {
    const response = await fetch(path, { headers: this.headers() });
    if (!response.ok) throw new ApiError(response.status, `${response.status} ${response.statusText}`);
    return { items: await response.json(), next: response.headers.get("X-Next-Cursor") };
  }

  /** Upload with progress (fetch cannot report upload progress; XMLHttpRequest can). */
  upload(path: string, form: FormData, progress: (share: number) => void): Promise<Json> {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", path);
      xhr.setRequestHeader("Authorization", `Bearer ${this.token}`);
      xhr.upload.onprogress = (e) => e.lengthComputable && progress(e.loaded / e.total);
      xhr.onload = () =>
        xhr.status < 300
          ? resolve(JSON.parse(xhr.responseText))
          : reject(new ApiError(xhr.status, xhr.responseText));
      xhr.onerror = () => reject(new ApiError(0, "network error"));
      xhr.send(form);
    });
  }

  /** Server-sent events of a tenant; reconnects until `signal` aborts. */
  async stream(
    tenant: string,
    onEvent: (event: string, data: Json) => void,
    signal: AbortSignal,
    onState: (connected: boolean) => void = () => {},
  ): Promise<void> {
    let delay = 500;
    while (!signal.aborted) {
      try {
        const response = await fetch(`/v1/tenants/${tenant}/stream`, { headers: this.headers(), signal });
        if (!response.ok || !response.body) throw new ApiError(response.status, "stream refused");
        onState(true);
        delay = 500;
        await readEvents(response.body, onEvent);
      } catch (error) {
        if (signal.aborted) return;
        if (error instanceof ApiError && (error.status === 401 || error.status === 403)) return;
      }
      onState(false);
      onEvent("resync", {});
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 10_000);
    }
  }
}

/** Parse a text/event-stream body (https://html.spec.whatwg.org/#event-stream-interpretation). */
export async function readEvents(
  body: ReadableStream<Uint8Array>,
  onEvent: (event: string, data: Json) => void,
): Promise<void> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end: number;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message";
      const data: string[] = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
      }
      if (data.length) {
        try {
          onEvent(event, JSON.parse(data.join("\n")));
        } catch {
          /* ignore a malformed event */
        }
      }
    }
  }
}

export const money = (usd: number | null | undefined, digits = 4): string =>
  usd == null ? "–" : `$${usd.toFixed(digits)}`;

export const ms = (value: number | null | undefined): string =>
  value == null ? "–" : value < 1000 ? `${Math.round(value)} ms` : `${(value / 1000).toFixed(1)} s`;

export const pct = (value: number | null | undefined): string =>
  value == null ? "–" : `${(value * 100).toFixed(0)}%`;

export const when = (iso: string | null | undefined): string =>
  iso ? new Date(iso).toLocaleString() : "–";
