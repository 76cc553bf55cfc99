// How the pages show an API problem or any other failure: a status message, never a crash.
import { ApiProblem } from "../client/api";

export function problemText(error: unknown): string {
  if (error instanceof ApiProblem) {
    const where = error.errors.map((e) => `${e.pointer || "/"}: ${e.detail}`).join("; ");
    return `${error.title}${error.detail ? `: ${error.detail}` : ""}${where ? ` (${where})` : ""}`;
  }
  return error instanceof Error ? error.message : String(error);
}

export function ProblemNote({ error }: { error: unknown }) {
  if (error === null || error === undefined) return null;
  return (
    <p className="problem" role="alert">
      {problemText(error)}
    </p>
  );
}
