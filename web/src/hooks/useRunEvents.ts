// Follow a run live: each step event and the run's end arrive by SSE and trigger `onEvent`.
import { useEffect, useRef } from "react";
import { streamEvents, type ServerEvent } from "../client/sse";

export function useRunEvents(runId: string | null, active: boolean, onEvent: (event: ServerEvent) => void): void {
  const handler = useRef(onEvent);
  handler.current = onEvent;
  useEffect(() => {
    if (runId === null || !active) return undefined;
    const abort = new AbortController();
    streamEvents(`/api/v1/runs/${encodeURIComponent(runId)}/events`, (e) => handler.current(e), abort.signal).catch(
      (err: unknown) => {
        // An aborted stream is the page leaving; anything else is shown by the next reload.
        if (!abort.signal.aborted) console.warn("run events stopped:", err);
      },
    );
    return () => abort.abort();
  }, [runId, active]);
}
