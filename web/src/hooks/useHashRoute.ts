// Hash routing: `/#/runs/<id>` needs no server route, so `/` is the only page the API serves.
import { useEffect, useState } from "react";

export interface Route {
  page: string;
  id: string | null;
  sub: string | null;
}

/** Parse `#/page/id/sub` (ids are URI-decoded). */
export function parseHash(hash: string): Route {
  const parts = hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  return { page: parts[0] ?? "runs", id: parts[1] ?? null, sub: parts[2] ?? null };
}

/** The link for a page. */
export function href(page: string, id?: string, sub?: string): string {
  return `#/${[page, id, sub].filter((p): p is string => Boolean(p)).map(encodeURIComponent).join("/")}`;
}

export function useHashRoute(): Route {
  const [route, setRoute] = useState(() => parseHash(window.location.hash));
  useEffect(() => {
    const update = () => setRoute(parseHash(window.location.hash));
    window.addEventListener("hashchange", update);
    return () => window.removeEventListener("hashchange", update);
  }, []);
  return route;
}
