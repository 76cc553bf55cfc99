// Server-Sent Events over fetch. EventSource cannot send an Authorization header, so the
// console reads the stream itself; the parser follows the WHATWG event-stream rules.
import { authHeaders } from "./api";

export interface ServerEvent {
  event: string;
  data: string;
  id: string | null;
}

/** An incremental event-stream parser: feed it text chunks, it returns complete events. */
export class SseParser {
  private buffer = "";
  private event = "";
  private data: string[] = [];
  private id: string | null = null;
  private pendingCR = false;

  /** Parse `chunk` (any split: mid-line, mid-CRLF) and return the events it completed. */
  feed(chunk: string): ServerEvent[] {
    let text = chunk;
    if (this.pendingCR && text.startsWith("\n")) text = text.slice(1);
    this.pendingCR = false;
    this.buffer += text;
    const out: ServerEvent[] = [];
    for (;;) {
      const match = /\r\n|\r|\n/.exec(this.buffer);
      if (match === null) break;
      // A lone CR at the very end may be the first half of a CRLF split across chunks.
      if (match[0] === "\r" && match.index === this.buffer.length - 1) {
        this.pendingCR = true;
      }
      const line = this.buffer.slice(0, match.index);
      this.buffer = this.buffer.slice(match.index + match[0].length);
      const event = this.line(line);
      if (event !== null) out.push(event);
    }
    return out;
  }

  private line(line: string): ServerEvent | null {
    if (line === "") return this.dispatch();
    if (line.startsWith(":")) return null;
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.event = value;
    else if (field === "data") this.data.push(value);
    else if (field === "id" && !value.includes("\0")) this.id = value;
    return null;
  }

  private dispatch(): ServerEvent | null {
    const hadData = this.data.length > 0;
    const event: ServerEvent = { event: this.event || "message", data: this.data.join("\n"), id: this.id };
    this.event = "";
    this.data = [];
    return hadData ? event : null;
  }
}

/** Read `path` as an event stream until it ends or `signal` aborts; call `onEvent` for each. */
export async function streamEvents(
  path: string,
  onEvent: (event: ServerEvent) => void,
  signal: AbortSignal,
): Promise<void> {
  const response = await fetch(path, {
    headers: authHeaders({ Accept: "text/event-stream" }),
    signal,
  });
  if (!response.ok || response.body === null) {
    throw new Error(`event stream refused: ${response.status}`);
  }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  const parser = new SseParser();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    for (const event of parser.feed(value)) onEvent(event);
  }
}
