// The bearer session: kept in memory and in sessionStorage (one tab, gone when it closes).
// No cookies: the API authenticates bearer tokens only, so the console sends the header itself.

const KEY = "amosflow.session";

export interface Session {
  token: string;
  expiresAt: string;
  username: string;
}

let current: Session | null = null;
const listeners = new Set<(session: Session | null) => void>();

function stored(): Session | null {
  try {
    const raw = window.sessionStorage.getItem(KEY);
    if (!raw) return null;
    const parsed = JSON.parse(raw) as Session;
    return Date.parse(parsed.expiresAt) > Date.now() ? parsed : null;
  } catch {
    return null;
  }
}

/** The signed-in session, if any and not expired. */
export function getSession(): Session | null {
  if (current === null) current = stored();
  if (current !== null && Date.parse(current.expiresAt) <= Date.now()) setSession(null);
  return current;
}

/** Sign in (a session) or out (null); every subscriber hears about it. */
export function setSession(session: Session | null): void {
  current = session;
  if (session === null) window.sessionStorage.removeItem(KEY);
  else window.sessionStorage.setItem(KEY, JSON.stringify(session));
  for (const listener of listeners) listener(session);
}

/** Be told when the session changes; returns the unsubscribe function. */
export function onSessionChange(listener: (session: Session | null) => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}
