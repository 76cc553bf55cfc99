import { describe, expect, it } from "vitest";
import { END, NODE_HEIGHT, START, flowGraph, type FlowGraph } from "./layout";

const act = (id: string) => ({ id, type: "action", action: "core.echo", with: { value: id } });

function targets(graph: FlowGraph, source: string): string[] {
  return graph.edges.filter((e) => e.source === source).map((e) => e.target).sort();
}

function labelled(graph: FlowGraph, source: string): Record<string, string> {
  return Object.fromEntries(graph.edges.filter((e) => e.source === source).map((e) => [e.label, e.target]));
}

describe("flowGraph", () => {
  it("chains a plain sequence from start to end, top to bottom", () => {
    const graph = flowGraph({ steps: [act("a"), { id: "b", type: "set", values: {} }, act("c")] });
    expect(graph.nodes.map((n) => n.id)).toEqual([START, "a", "b", "c", END]);
    expect(targets(graph, START)).toEqual(["a"]);
    expect(targets(graph, "a")).toEqual(["b"]);
    expect(targets(graph, "c")).toEqual([END]);
    const y = (id: string) => graph.nodes.find((n) => n.id === id)?.y ?? Number.NaN;
    expect(y("a")).toBeLessThan(y("b"));
    expect(y("b") - y("a")).toBeGreaterThanOrEqual(NODE_HEIGHT);
  });

  it("draws one node for every step type, with what it does", () => {
    const types = [
      act("echo"),
      { id: "ask", type: "human", task: "approval", title: "OK?" },
      { id: "sub", type: "call", flow: "child" },
      { id: "pause", type: "wait", duration: "5m" },
      { id: "later", type: "wait", until: "2030-01-01T00:00:00Z" },
      { id: "note", type: "set", values: { x: 1 } },
      { id: "pick", type: "switch", value: "${inputs.k}", cases: [{ equals: "a", steps: [act("on_a")] }] },
      { id: "spin", type: "while", condition: "${false}", max_iterations: 3, steps: [act("body")] },
      { id: "stop", type: "succeed" },
    ];
    const graph = flowGraph({ steps: types });
    const detail = Object.fromEntries(graph.nodes.map((n) => [n.id, n.detail]));
    expect(detail).toMatchObject({
      echo: "core.echo",
      ask: "approval task",
      sub: "calls child",
      pause: "wait 5m",
      later: "until 2030-01-01T00:00:00Z",
      note: "set",
      pick: "switch",
      spin: "while, at most 3",
      stop: "succeed",
    });
    expect(labelled(graph, "pick")).toEqual({ "= a": "on_a", default: "spin" });
    expect(labelled(graph, "spin")).toEqual({ repeat: "body" });
    expect(targets(graph, "stop")).toEqual([END]);
  });

  it("fans an if out into then and else and joins both at the next step", () => {
    const graph = flowGraph({
      steps: [{ id: "big", type: "if", condition: "${true}", then: [act("yes")], else: [act("no")] }, act("after")],
    });
    expect(labelled(graph, "big")).toEqual({ then: "yes", else: "no" });
    expect(targets(graph, "yes")).toEqual(["after"]);
    expect(targets(graph, "no")).toEqual(["after"]);
  });

  it("lets an if without else fall through to the next step", () => {
    const graph = flowGraph({ steps: [{ id: "maybe", type: "if", condition: "${true}", then: [act("yes")] }, act("after")] });
    expect(labelled(graph, "maybe")).toEqual({ then: "yes", else: "after" });
  });

  it("nests foreach, parallel and try inside each other", () => {
    const graph = flowGraph({
      steps: [
        {
          id: "each",
          type: "foreach",
          items: "${inputs.rows}",
          steps: [
            {
              id: "both",
              type: "parallel",
              branches: [[act("left")], [{ id: "guard", type: "try", steps: [act("risky")], catch: [act("mend")], finally: [act("tidy")] }]],
            },
          ],
        },
        { id: "boom", type: "fail", message: "no" },
      ],
    });
    expect(graph.nodes.find((n) => n.id === "each")?.detail).toBe("for each item");
    expect(labelled(graph, "each")).toEqual({ each: "both" });
    expect(labelled(graph, "both")).toEqual({ "branch 1": "left", "branch 2": "guard" });
    expect(labelled(graph, "guard")).toEqual({ try: "risky", catch: "mend" });
    expect(targets(graph, "risky")).toEqual(["tidy"]);
    expect(targets(graph, "mend")).toEqual(["tidy"]);
    expect(targets(graph, "left")).toEqual(["boom"]);
    expect(targets(graph, "tidy")).toEqual(["boom"]);
    // fail ends the run: nothing leads from it, and so nothing reaches the end.
    expect(targets(graph, "boom")).toEqual([]);
    expect(graph.edges.some((e) => e.target === END)).toBe(false);
    expect(new Set(graph.edges.map((e) => e.id)).size).toBe(graph.edges.length);
  });

  it("lays out nodes without overlaps", () => {
    const graph = flowGraph({
      steps: [{ id: "p", type: "parallel", branches: [[act("a")], [act("b")], [act("c")]] }],
    });
    const boxes = graph.nodes.map((n) => `${Math.round(n.x)},${Math.round(n.y)}`);
    expect(new Set(boxes).size).toBe(boxes.length);
  });
});
