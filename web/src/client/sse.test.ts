import { describe, expect, it } from "vitest";
import { SseParser } from "./sse";

describe("SseParser", () => {
  it("parses named events with JSON data", () => {
    const events = new SseParser().feed('event: step.started\ndata: {"step":"a"}\n\n');
    expect(events).toEqual([{ event: "step.started", data: '{"step":"a"}', id: null }]);
  });

  it("joins multi-line data, keeps ids, ignores comments and defaults the name", () => {
    const events = new SseParser().feed(": ping\nid: 7\ndata: one\ndata:two\n\n");
    expect(events).toEqual([{ event: "message", data: "one\ntwo", id: "7" }]);
  });

  it("completes events split anywhere across chunks, CRLF included", () => {
    const parser = new SseParser();
    const text = 'event: run.completed\r\ndata: {"status":"completed"}\r\n\r\nevent: x\r\ndata: 2\r\n\r\n';
    const out = [];
    for (const ch of text) out.push(...parser.feed(ch));
    expect(out.map((e) => [e.event, e.data])).toEqual([
      ["run.completed", '{"status":"completed"}'],
      ["x", "2"],
    ]);
  });

  it("does not dispatch an event without data, nor one that has not ended", () => {
    const parser = new SseParser();
    expect(parser.feed("event: lonely\n\n")).toEqual([]);
    expect(parser.feed("data: half")).toEqual([]);
    expect(parser.feed("\n\n")).toEqual([{ event: "message", data: "half", id: null }]);
  });
});
