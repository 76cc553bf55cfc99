// Deciding a task: approve or reject with a comment, or fill in the task's JSON Schema form.
import Form from "@rjsf/core";
import type { RJSFSchema } from "@rjsf/utils";
import validator from "@rjsf/validator-ajv8";
import { useId, useState } from "react";
import type { Outcome, Task } from "../client/tasks";
import { ProblemNote } from "./ProblemNote";

export interface TaskFormProps {
  task: Task;
  onDecide: (outcome: Outcome, comment: string, data: Record<string, unknown>) => Promise<void>;
}

/** The decision controls for an open task; nothing for a task that is no longer open. */
export function TaskForm({ task, onDecide }: TaskFormProps) {
  const commentId = useId();
  const [comment, setComment] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  if (task.status !== "open") return null;

  async function decide(outcome: Outcome, data: Record<string, unknown> = {}) {
    setBusy(true);
    setError(null);
    try {
      await onDecide(outcome, comment, data);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  }

  const commentField = (
    <div className="field">
      <label htmlFor={commentId}>Comment</label>
      <textarea
        id={commentId}
        value={comment}
        rows={3}
        onChange={(event) => setComment(event.target.value)}
      />
    </div>
  );

  if (task.kind === "form" && task.form) {
    return (
      <section aria-label="Task form" className="task-form">
        <Form
          schema={task.form as RJSFSchema}
          validator={validator}
          noHtml5Validate
          disabled={busy}
          onSubmit={({ formData }) => void decide("submitted", (formData ?? {}) as Record<string, unknown>)}
        >
          {commentField}
          <button type="submit" disabled={busy}>
            Submit
          </button>
        </Form>
        <ProblemNote error={error} />
      </section>
    );
  }

  return (
    <form
      aria-label="Decision"
      className="task-form"
      onSubmit={(event) => {
        event.preventDefault();
        void decide("approved");
      }}
    >
      {commentField}
      <div className="actions">
        <button type="submit" disabled={busy}>
          Approve
        </button>
        <button type="button" className="danger" disabled={busy} onClick={() => void decide("rejected")}>
          Reject
        </button>
      </div>
      <ProblemNote error={error} />
    </form>
  );
}
