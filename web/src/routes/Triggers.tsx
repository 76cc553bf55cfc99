// Triggers: schedules and webhooks that start flows, as stored (read-only here).
import { api, type TriggerPublic } from "../client/api";
import { ProblemNote } from "../components/ProblemNote";
import { useApi } from "../hooks/useApi";
import { when } from "./format";

function summary(document: Record<string, unknown>): string {
  const kind = typeof document.type === "string" ? document.type : "trigger";
  const flow = typeof document.flow === "string" ? ` → ${document.flow}` : "";
  const cron = typeof document.cron === "string" ? ` (${document.cron})` : "";
  return `${kind}${cron}${flow}`;
}

export function Triggers() {
  const triggers = useApi(() => api<TriggerPublic[]>("GET", "/api/v1/triggers"), []);
  return (
    <>
      <h1>Triggers</h1>
      <ProblemNote error={triggers.error} />
      <table>
        <caption className="visually-hidden">Triggers</caption>
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">Folder</th>
            <th scope="col">What</th>
            <th scope="col">Saved</th>
          </tr>
        </thead>
        <tbody>
          {(triggers.data ?? []).map((t) => (
            <tr key={t.name}>
              <td>{t.name}</td>
              <td>{t.folder}</td>
              <td>{summary(t.document)}</td>
              <td>{when(t.version.committed_at)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {triggers.data?.length === 0 ? <p>No triggers.</p> : null}
    </>
  );
}
