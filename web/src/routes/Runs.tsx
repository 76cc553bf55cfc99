// Runs: a filtered, paged list, and one run live (diagram, timeline, inputs, output).
import { useId, useState } from "react";
import { api, withQuery, type FlowPublic, type RunDetail, type RunPage, type RunPublic } from "../client/api";
import { FlowDiagram } from "../components/FlowDiagram";
import { JsonView } from "../components/JsonView";
import { Pager } from "../components/Pager";
import { ProblemNote } from "../components/ProblemNote";
import { href } from "../hooks/useHashRoute";
import { useApi } from "../hooks/useApi";
import { useRunEvents } from "../hooks/useRunEvents";
import { when } from "./format";

const STATUSES = ["", "pending", "running", "completed", "failed", "cancelled", "timed_out"];
const FINISHED = new Set(["completed", "failed", "cancelled", "timed_out"]);

export function RunList() {
  const flowId = useId();
  const statusId = useId();
  const sinceId = useId();
  const [flow, setFlow] = useState("");
  const [status, setStatus] = useState("");
  const [since, setSince] = useState("");
  const [cursors, setCursors] = useState<string[]>([]);
  const cursor = cursors.at(-1) ?? null;
  const page = useApi(
    () =>
      api<RunPage>(
        "GET",
        withQuery("/api/v1/runs", {
          flow,
          status,
          since: since ? new Date(since).toISOString() : "",
          cursor,
          limit: 50,
        }),
      ),
    [flow, status, since, cursor],
  );
  return (
    <>
      <h1>Runs</h1>
      <form className="filters" aria-label="Filter runs" onSubmit={(e) => e.preventDefault()}>
        <div className="field">
          <label htmlFor={flowId}>Flow</label>
          <input id={flowId} value={flow} onChange={(e) => (setCursors([]), setFlow(e.target.value.trim()))} />
        </div>
        <div className="field">
          <label htmlFor={statusId}>Status</label>
          <select id={statusId} value={status} onChange={(e) => (setCursors([]), setStatus(e.target.value))}>
            {STATUSES.map((s) => (
              <option key={s} value={s}>
                {s || "any"}
              </option>
            ))}
          </select>
        </div>
        <div className="field">
          <label htmlFor={sinceId}>Created since</label>
          <input
            id={sinceId}
            type="datetime-local"
            value={since}
            onChange={(e) => (setCursors([]), setSince(e.target.value))}
          />
        </div>
        <button type="button" onClick={page.reload}>
          Refresh
        </button>
      </form>
      <ProblemNote error={page.error} />
      <RunTable runs={page.data?.items ?? []} />
      <Pager label="Pages of runs" cursors={cursors} setCursors={setCursors} next={page.data?.next_cursor} />
    </>
  );
}

function RunTable({ runs }: { runs: RunPublic[] }) {
  if (runs.length === 0) return <p>No runs.</p>;
  return (
    <table>
      <caption className="visually-hidden">Runs</caption>
      <thead>
        <tr>
          <th scope="col">Run</th>
          <th scope="col">Flow</th>
          <th scope="col">Status</th>
          <th scope="col">Trigger</th>
          <th scope="col">Created</th>
          <th scope="col">Ended</th>
        </tr>
      </thead>
      <tbody>
        {runs.map((run) => (
          <tr key={run.run_id}>
            <td>
              <a href={href("runs", run.run_id)}>{run.run_id}</a>
            </td>
            <td>{run.flow}</td>
            <td>
              <span className={`badge status-${run.status}`}>{run.status}</span>
            </td>
            <td>{run.trigger}</td>
            <td>{when(run.created_at)}</td>
            <td>{when(run.ended_at)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

type StepRecord = { status?: string; started_at?: string; ended_at?: string | null; runs?: number; error?: unknown };

export function RunView({ runId }: { runId: string }) {
  const run = useApi(() => api<RunDetail>("GET", `/api/v1/runs/${encodeURIComponent(runId)}`), [runId]);
  const flowName = run.data?.flow;
  const flowVersion = run.data?.flow_version;
  const flowFolder = run.data?.folder;
  const flow = useApi(
    () =>
      flowName
        ? api<FlowPublic>(
            "GET",
            withQuery(`/api/v1/flows/${encodeURIComponent(flowName)}`, { version: flowVersion, folder: flowFolder }),
          )
        : Promise.resolve(null),
    [flowName, flowVersion, flowFolder],
  );
  const [actionError, setActionError] = useState<unknown>(null);
  const finished = run.data ? FINISHED.has(run.data.status) : false;
  // Each event says something changed; the run's own record is the truth, so reload it.
  useRunEvents(runId, run.data !== null && !finished, () => run.reload());

  async function act(verb: "cancel" | "rerun") {
    setActionError(null);
    try {
      const started = await api<RunPublic>("POST", `/api/v1/runs/${encodeURIComponent(runId)}/${verb}`);
      if (verb === "rerun") window.location.hash = href("runs", started.run_id);
      else run.reload();
    } catch (err) {
      setActionError(err);
    }
  }

  const detail = run.data;
  const steps = (detail?.steps ?? {}) as Record<string, StepRecord>;
  const statuses = Object.fromEntries(Object.entries(steps).map(([id, s]) => [id, s.status]));
  const timeline = Object.entries(steps)
    .filter(([, s]) => s.started_at)
    .sort(([, a], [, b]) => String(a.started_at).localeCompare(String(b.started_at)));
  return (
    <>
      <h1>
        Run <code>{runId}</code>
      </h1>
      <ProblemNote error={run.error} />
      {detail ? (
        <>
          <p className="run-summary">
            Flow <a href={href("flows", detail.flow)}>{detail.flow}</a>, status{" "}
            <span className={`badge status-${detail.status}`} data-testid="run-status" aria-live="polite">
              {detail.status}
            </span>
            {detail.started_by ? `, started by ${detail.started_by}` : ""}.
          </p>
          <div className="actions">
            <button type="button" disabled={finished} onClick={() => void act("cancel")}>
              Cancel run
            </button>
            <button type="button" onClick={() => void act("rerun")}>
              Re-run
            </button>
          </div>
          <ProblemNote error={actionError} />
          {flow.data ? (
            <FlowDiagram document={flow.data.document} statuses={statuses} label={`Diagram of run ${runId}`} />
          ) : null}
          <h2>Timeline</h2>
          <ol className="timeline">
            {timeline.map(([id, s]) => (
              <li key={id}>
                <strong>{id}</strong> <span className={`badge status-${s.status ?? ""}`}>{s.status}</span>{" "}
                {when(s.started_at)} → {when(s.ended_at)}
                {s.runs && s.runs > 1 ? ` (${s.runs} runs)` : ""}
              </li>
            ))}
          </ol>
          <h2>Inputs</h2>
          <JsonView value={detail.inputs} label="Run inputs" />
          <h2>Output</h2>
          <JsonView value={detail.error ?? detail.output ?? null} label={detail.error ? "Run error" : "Run output"} />
        </>
      ) : null}
    </>
  );
}
