// A small typed client over fetch. The types come from the API's own OpenAPI document
// (`npm run generate` writes schema.ts); routes not in it yet are typed in tasks.ts.
import type { components } from "./schema";
import { getSession, setSession } from "./session";

export type Schemas = components["schemas"];
export type RunPublic = Schemas["RunPublic"];
export type RunDetail = Schemas["RunDetail"];
export type RunPage = Schemas["RunPage"];
export type FlowSummary = Schemas["FlowSummary"];
export type FlowPublic = Schemas["FlowPublic"];
export type VersionPublic = Schemas["VersionPublic"];
export type TriggerPublic = Schemas["TriggerPublic"];
export type Me = Schemas["Me"];
export type AccessToken = Schemas["AccessToken"];

/** One entry of a problem's `errors`: where (JSON Pointer) and what. */
export interface ProblemPointer {
  pointer: string;
  detail: string;
}

/** An RFC 9457 problem answered by the API, as an error the pages can show. */
export class ApiProblem extends Error {
  readonly status: number;
  readonly title: string;
  readonly detail: string;
  readonly errors: ProblemPointer[];

  constructor(status: number, title: string, detail: string, errors: ProblemPointer[] = []) {
    super(detail || title);
    this.name = "ApiProblem";
    this.status = status;
    this.title = title;
    this.detail = detail;
    this.errors = errors;
  }
}

type Query = Record<string, string | number | boolean | null | undefined>;

/** `path?query` with empty values left out. */
export function withQuery(path: string, query: Query = {}): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== "" && value !== false) {
      params.set(key, String(value));
    }
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

/** Headers for an API call: JSON and the bearer token of the session. */
export function authHeaders(extra: Record<string, string> = {}): Record<string, string> {
  const session = getSession();
  const headers: Record<string, string> = { Accept: "application/json", ...extra };
  if (session) headers.Authorization = `Bearer ${session.token}`;
  return headers;
}

async function problemOf(response: Response): Promise<ApiProblem> {
  try {
    const body = (await response.json()) as Partial<Schemas["Problem"]>;
    return new ApiProblem(
      response.status,
      body.title ?? response.statusText,
      body.detail ?? "",
      (body.errors ?? []) as ProblemPointer[],
    );
  } catch {
    return new ApiProblem(response.status, response.statusText, "");
  }
}

/** Call the API; a 401 ends the session (the sign-in page shows), other errors throw. */
export async function api<T>(
  method: string,
  path: string,
  body?: unknown,
  extraHeaders: Record<string, string> = {},
): Promise<T> {
  const headers = authHeaders(extraHeaders);
  const init: RequestInit = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (response.status === 401 && getSession() !== null) setSession(null);
  if (!response.ok) throw await problemOf(response);
  if (response.status === 204) return undefined as T;
  return (await response.json()) as T;
}

/** Exchange a username and password for a session token. */
export async function signIn(username: string, password: string): Promise<void> {
  const token = await api<AccessToken>("POST", "/api/v1/auth/login", { username, password });
  setSession({ token: token.access_token, expiresAt: token.expires_at, username });
}
