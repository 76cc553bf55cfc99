import { cleanup, fireEvent, render, screen, waitFor } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { ApiProblem } from "../client/api";
import type { Task } from "../client/tasks";
import { TaskForm } from "./TaskForm";

afterEach(cleanup);

function task(overrides: Partial<Task> = {}): Task {
  return {
    id: "t1",
    run_id: "r1",
    step_id: "approve",
    flow: "invoice-approval",
    folder: "default",
    kind: "approval",
    title: "Approve invoice",
    assignees: ["role:approver"],
    form: null,
    status: "open",
    claimed_by: null,
    created_at: "2026-01-01T00:00:00Z",
    due_at: null,
    escalated: false,
    started_by: "ops",
    decision: null,
    console_url: "/#/tasks/t1",
    ...overrides,
  };
}

describe("TaskForm", () => {
  it("approves with the comment typed into the labelled field", async () => {
    const onDecide = vi.fn(async () => undefined);
    render(<TaskForm task={task()} onDecide={onDecide} />);
    fireEvent.change(screen.getByLabelText("Comment"), { target: { value: "looks right" } });
    fireEvent.click(screen.getByRole("button", { name: "Approve" }));
    await waitFor(() => expect(onDecide).toHaveBeenCalledWith("approved", "looks right", {}));
  });

  it("rejects, and shows the API's refusal with its pointers", async () => {
    const onDecide = vi.fn(async () => {
      throw new ApiProblem(409, "Conflict", "the task is already decided", [{ pointer: "/outcome", detail: "too late" }]);
    });
    render(<TaskForm task={task()} onDecide={onDecide} />);
    fireEvent.click(screen.getByRole("button", { name: "Reject" }));
    const alert = await screen.findByRole("alert");
    expect(onDecide).toHaveBeenCalledWith("rejected", "", {});
    expect(alert.textContent).toContain("already decided");
    expect(alert.textContent).toContain("/outcome: too late");
  });

  it("renders a form task's JSON Schema and submits what was typed", async () => {
    const onDecide = vi.fn(async () => undefined);
    const form = {
      type: "object",
      required: ["amount"],
      properties: { amount: { type: "number", title: "Corrected amount" }, note: { type: "string", title: "Note" } },
    };
    render(<TaskForm task={task({ kind: "form", form })} onDecide={onDecide} />);
    fireEvent.change(screen.getByLabelText(/Corrected amount/), { target: { value: "120.5" } });
    fireEvent.click(screen.getByRole("button", { name: "Submit" }));
    await waitFor(() => expect(onDecide).toHaveBeenCalledWith("submitted", "", { amount: 120.5 }));
  });

  it("does not submit a form that its schema refuses", async () => {
    const onDecide = vi.fn(async () => undefined);
    const form = { type: "object", required: ["amount"], properties: { amount: { type: "number", title: "Amount" } } };
    render(<TaskForm task={task({ kind: "form", form })} onDecide={onDecide} />);
    fireEvent.click(screen.getByRole("button", { name: "Submit" }));
    expect((await screen.findAllByText(/must have required property/)).length).toBeGreaterThan(0);
    expect(onDecide).not.toHaveBeenCalled();
  });

  it("offers nothing to decide on a task that is no longer open", () => {
    const { container } = render(<TaskForm task={task({ status: "decided" })} onDecide={vi.fn()} />);
    expect(container.innerHTML).toBe("");
  });
});
