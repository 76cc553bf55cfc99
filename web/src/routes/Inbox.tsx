// The inbox: tasks that flows hand to people, and one task with its decision form.
import { useId, useState } from "react";
import { claimTask, decideTask, getTask, listTasks, type Task, type TaskFilter } from "../client/tasks";
import { Pager } from "../components/Pager";
import { ProblemNote } from "../components/ProblemNote";
import { TaskForm } from "../components/TaskForm";
import { href } from "../hooks/useHashRoute";
import { useApi } from "../hooks/useApi";
import { when } from "./format";

function overdue(task: Task): boolean {
  return task.status === "open" && task.due_at !== null && Date.parse(task.due_at) < Date.now();
}

export function Inbox() {
  const scopeId = useId();
  const statusId = useId();
  const folderId = useId();
  const overdueId = useId();
  const [filter, setFilter] = useState<TaskFilter>({ scope: "mine", status: "open" });
  const [cursors, setCursors] = useState<string[]>([]);
  const cursor = cursors.at(-1) ?? null;
  const page = useApi(() => listTasks({ ...filter, cursor, limit: 50 }), [JSON.stringify(filter), cursor]);
  const change = (next: Partial<TaskFilter>) => {
    setCursors([]);
    setFilter((f) => ({ ...f, ...next }));
  };
  const tasks = page.data?.items ?? [];
  return (
    <>
      <h1>Inbox</h1>
      <form className="filters" aria-label="Filter tasks" onSubmit={(e) => e.preventDefault()}>
        <div className="field">
          <label htmlFor={scopeId}>Show</label>
          <select id={scopeId} value={filter.scope} onChange={(e) => change({ scope: e.target.value as TaskFilter["scope"] })}>
            <option value="mine">Mine and my roles'</option>
            <option value="all">All I may see</option>
          </select>
        </div>
        <div className="field">
          <label htmlFor={statusId}>Status</label>
          <select
            id={statusId}
            value={filter.status}
            onChange={(e) => change({ status: e.target.value as TaskFilter["status"] })}
          >
            <option value="open">Open</option>
            <option value="decided">Decided</option>
            <option value="all">All</option>
          </select>
        </div>
        <div className="field">
          <label htmlFor={folderId}>Folder</label>
          <input id={folderId} value={filter.folder ?? ""} onChange={(e) => change({ folder: e.target.value.trim() })} />
        </div>
        <div className="field checkbox">
          <input
            id={overdueId}
            type="checkbox"
            checked={filter.overdue ?? false}
            onChange={(e) => change({ overdue: e.target.checked })}
          />
          <label htmlFor={overdueId}>Overdue only</label>
        </div>
        <button type="button" onClick={page.reload}>
          Refresh
        </button>
      </form>
      <ProblemNote error={page.error} />
      {tasks.length === 0 && !page.loading ? <p>No tasks.</p> : null}
      {tasks.length > 0 ? (
        <table>
          <caption className="visually-hidden">Tasks</caption>
          <thead>
            <tr>
              <th scope="col">Task</th>
              <th scope="col">Kind</th>
              <th scope="col">Flow</th>
              <th scope="col">Status</th>
              <th scope="col">Claimed by</th>
              <th scope="col">Due</th>
            </tr>
          </thead>
          <tbody>
            {tasks.map((task) => (
              <tr key={task.id}>
                <td>
                  <a href={href("tasks", task.id)}>{task.title || task.step_id}</a>
                </td>
                <td>{task.kind}</td>
                <td>{task.flow}</td>
                <td>
                  <span className={`badge status-${task.status}`}>{task.status}</span>
                  {overdue(task) ? <span className="badge overdue"> overdue</span> : null}
                  {task.escalated ? <span className="badge escalated"> escalated</span> : null}
                </td>
                <td>{task.claimed_by ?? "—"}</td>
                <td>{when(task.due_at)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
      <Pager label="Pages of tasks" cursors={cursors} setCursors={setCursors} next={page.data?.next_cursor} />
    </>
  );
}

export function TaskView({ taskId }: { taskId: string }) {
  const task = useApi(() => getTask(taskId), [taskId]);
  const [error, setError] = useState<unknown>(null);
  const current = task.data;

  async function claim(take: boolean) {
    setError(null);
    try {
      await claimTask(taskId, take);
      task.reload();
    } catch (err) {
      setError(err);
    }
  }

  return (
    <>
      <h1>{current ? current.title || `Task ${current.step_id}` : "Task"}</h1>
      <ProblemNote error={task.error ?? error} />
      {current ? (
        <>
          <dl className="facts">
            <dt>Kind</dt>
            <dd>{current.kind}</dd>
            <dt>Status</dt>
            <dd>
              <span className={`badge status-${current.status}`} data-testid="task-status">
                {current.status}
              </span>
            </dd>
            <dt>Run</dt>
            <dd>
              <a href={href("runs", current.run_id)}>{current.run_id}</a> (flow {current.flow}, step {current.step_id})
            </dd>
            <dt>Started by</dt>
            <dd>{current.started_by ?? "—"}</dd>
            <dt>Due</dt>
            <dd>
              {when(current.due_at)}
              {current.escalated ? " (escalated)" : ""}
            </dd>
            <dt>Claimed by</dt>
            <dd>{current.claimed_by ?? "nobody"}</dd>
          </dl>
          {current.status === "open" ? (
            <div className="actions">
              {current.claimed_by === null ? (
                <button type="button" onClick={() => void claim(true)}>
                  Claim
                </button>
              ) : (
                <button type="button" onClick={() => void claim(false)}>
                  Unclaim
                </button>
              )}
            </div>
          ) : null}
          <TaskForm
            task={current}
            onDecide={async (outcome, comment, data) => {
              await decideTask(taskId, outcome, comment, data);
              task.reload();
            }}
          />
          {current.decision ? (
            <section aria-label="Decision">
              <h2>Decision</h2>
              <p data-testid="decision">
                {String(current.decision.outcome ?? "decided")}
                {current.decision.by ? ` by ${String(current.decision.by)}` : ""}
                {current.decision.comment ? `: “${String(current.decision.comment)}”` : ""}
              </p>
            </section>
          ) : null}
        </>
      ) : null}
    </>
  );
}
