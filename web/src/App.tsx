// The console's frame: skip link, header with navigation, and the page the hash names.
import { useEffect, useState } from "react";
import { api, type Me } from "./client/api";
import { getSession, onSessionChange, setSession, type Session } from "./client/session";
import { href, useHashRoute } from "./hooks/useHashRoute";
import { FlowDetail, FlowList } from "./routes/Flows";
import { Inbox, TaskView } from "./routes/Inbox";
import { RunList, RunView } from "./routes/Runs";
import { SignIn } from "./routes/SignIn";
import { Triggers } from "./routes/Triggers";

const PAGES = [
  ["runs", "Runs"],
  ["tasks", "Inbox"],
  ["flows", "Flows"],
  ["triggers", "Triggers"],
] as const;

function Page() {
  const route = useHashRoute();
  switch (route.page) {
    case "flows":
      return route.id ? <FlowDetail id={route.id} version={route.sub} /> : <FlowList />;
    case "tasks":
      return route.id ? <TaskView key={route.id} taskId={route.id} /> : <Inbox />;
    case "triggers":
      return <Triggers />;
    default:
      return route.id ? <RunView key={route.id} runId={route.id} /> : <RunList />;
  }
}

export function App() {
  const [session, setCurrent] = useState<Session | null>(getSession);
  const [me, setMe] = useState<Me | null>(null);
  const route = useHashRoute();
  useEffect(() => onSessionChange(setCurrent), []);
  useEffect(() => {
    if (session === null) return;
    api<Me>("GET", "/api/v1/me").then(setMe, () => setMe(null));
  }, [session]);
  // Moving to another page puts keyboard focus on its content, as a page load would.
  useEffect(() => {
    document.getElementById("main")?.focus();
  }, [route.page, route.id]);

  if (session === null) return <SignIn />;
  return (
    <>
      <a className="skip" href="#main" onClick={(e) => (e.preventDefault(), document.getElementById("main")?.focus())}>
        Skip to content
      </a>
      <header className="top">
        <span className="brand">AMOS FLOW</span>
        <nav aria-label="Console">
          <ul>
            {PAGES.map(([page, label]) => (
              <li key={page}>
                <a href={href(page)} aria-current={route.page === page ? "page" : undefined}>
                  {label}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <span className="who">{me?.username ?? session.username}</span>
        <button type="button" onClick={() => setSession(null)}>
          Sign out
        </button>
      </header>
      <main id="main" tabIndex={-1}>
        <Page />
      </main>
    </>
  );
}
