// Newer/Older buttons over a keyset-paged list: the page keeps the stack of cursors it walked.
import type { Dispatch, SetStateAction } from "react";

export function Pager({
  label,
  cursors,
  setCursors,
  next,
}: {
  label: string;
  cursors: string[];
  setCursors: Dispatch<SetStateAction<string[]>>;
  next: string | null | undefined;
}) {
  return (
    <nav aria-label={label} className="pager">
      <button type="button" disabled={cursors.length === 0} onClick={() => setCursors((c) => c.slice(0, -1))}>
        Newer
      </button>
      <button type="button" disabled={!next} onClick={() => setCursors((c) => [...c, next ?? ""])}>
        Older
      </button>
    </nav>
  );
}
