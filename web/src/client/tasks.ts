// The human-task inbox, `/api/v1/tasks`: list, claim, unclaim and decide.
import { api, withQuery, type Schemas } from "./api";

export type Task = Schemas["TaskPublic"];
export type TaskPage = Schemas["TaskPage"];
export type Decision = Schemas["TaskDecisionPublic"];
export type Outcome = Schemas["TaskDecide"]["outcome"];

export interface TaskFilter {
  scope: "mine" | "all";
  status: "open" | "decided" | "all";
  folder?: string;
  overdue?: boolean;
  cursor?: string | null;
  limit?: number;
}

/** The inbox: tasks by scope, status, folder and whether they are overdue. */
export function listTasks(filter: TaskFilter): Promise<TaskPage> {
  return api<TaskPage>("GET", withQuery("/api/v1/tasks", { ...filter }));
}

export function getTask(id: string): Promise<Task> {
  return api<Task>("GET", `/api/v1/tasks/${encodeURIComponent(id)}`);
}

export function claimTask(id: string, claim: boolean): Promise<Task> {
  const verb = claim ? "claim" : "unclaim";
  return api<Task>("POST", `/api/v1/tasks/${encodeURIComponent(id)}/${verb}`, undefined, { "X-Amos-Channel": "console" });
}

/** Decide a task; the channel header lets the audit trail say it came from the console. */
export function decideTask(
  id: string,
  outcome: Outcome,
  comment: string,
  data: Record<string, unknown> = {},
): Promise<Task> {
  return api<Task>(
    "POST",
    `/api/v1/tasks/${encodeURIComponent(id)}/decide`,
    { outcome, comment, data },
    { "X-Amos-Channel": "console" },
  );
}
