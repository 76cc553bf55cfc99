// A flow document drawn as a graph, one way only: the DSL is the truth, the diagram is read
// from it and never edited. Every step is a node; branches and loops fan out and join again.
import dagre from "@dagrejs/dagre";

export const NODE_WIDTH = 190;
export const NODE_HEIGHT = 58;
export const START = "__start";
export const END = "__end";

export interface GraphNode {
  id: string;
  kind: string;
  label: string;
  detail: string;
  x: number;
  y: number;
}

export interface GraphEdge {
  id: string;
  source: string;
  target: string;
  label: string;
}

export interface FlowGraph {
  nodes: GraphNode[];
  edges: GraphEdge[];
}

type Step = Record<string, unknown>;
interface Exit {
  from: string;
  label: string;
}

function steps(value: unknown): Step[] {
  return Array.isArray(value) ? value.filter((s): s is Step => typeof s === "object" && s !== null) : [];
}

function text(value: unknown): string {
  return typeof value === "string" ? value : JSON.stringify(value) ?? "";
}

/** What a node says below its name: the action, the task kind, the loop or the branch. */
function detailOf(step: Step): string {
  switch (step.type) {
    case "action":
      return text(step.action);
    case "human":
      return `${text(step.task ?? "approval")} task`;
    case "call":
      return `calls ${text(step.flow)}`;
    case "wait":
      return step.duration ? `wait ${text(step.duration)}` : `until ${text(step.until)}`;
    case "foreach":
      return `for each ${text(step.as ?? "item")}`;
    case "while":
      return `while, at most ${text(step.max_iterations)}`;
    default:
      return text(step.type);
  }
}

class Builder {
  readonly nodes: Omit<GraphNode, "x" | "y">[] = [];
  readonly edges: GraphEdge[] = [];

  node(id: string, kind: string, label: string, detail: string): void {
    this.nodes.push({ id, kind, label, detail });
  }

  link(entries: Exit[], target: string): void {
    for (const entry of entries) {
      this.edges.push({
        id: `${entry.from}->${target}#${this.edges.length}`,
        source: entry.from,
        target,
        label: entry.label,
      });
    }
  }

  /** Add a step list entered from `entries`; return where control leaves it. */
  sequence(list: Step[], entries: Exit[]): Exit[] {
    let current = entries;
    for (const step of list) current = this.step(step, current);
    return current;
  }

  private branch(list: Step[], from: string, label: string): Exit[] {
    return list.length ? this.sequence(list, [{ from, label }]) : [{ from, label }];
  }

  private step(step: Step, entries: Exit[]): Exit[] {
    const id = text(step.id);
    const kind = text(step.type);
    this.node(id, kind, typeof step.name === "string" ? step.name : id, detailOf(step));
    this.link(entries, id);
    switch (kind) {
      case "if":
        return [
          ...this.branch(steps(step.then), id, "then"),
          ...this.branch(steps(step.else), id, "else"),
        ];
      case "switch": {
        const cases = Array.isArray(step.cases) ? (step.cases as Step[]) : [];
        return [
          ...cases.flatMap((c) => this.branch(steps(c.steps), id, `= ${text(c.equals)}`)),
          ...this.branch(steps(step.default), id, "default"),
        ];
      }
      case "foreach":
      case "while":
        return this.branch(steps(step.steps), id, kind === "foreach" ? "each" : "repeat");
      case "parallel": {
        const branches = Array.isArray(step.branches) ? step.branches : [];
        return branches.flatMap((b, i) => this.branch(steps(b), id, `branch ${i + 1}`));
      }
      case "try": {
        const after = [
          ...this.branch(steps(step.steps), id, "try"),
          ...(steps(step.catch).length ? this.sequence(steps(step.catch), [{ from: id, label: "catch" }]) : []),
        ];
        const fin = steps(step.finally);
        return fin.length ? this.sequence(fin, after.map((e) => ({ ...e, label: e.label === "try" ? "" : e.label }))) : after;
      }
      case "fail":
      case "succeed":
        return step.type === "succeed" ? [{ from: id, label: "" }] : [];
      default:
        return [{ from: id, label: "" }];
    }
  }
}

/** The graph of a flow document, laid out top to bottom with dagre. */
export function flowGraph(document: Record<string, unknown>): FlowGraph {
  const builder = new Builder();
  builder.node(START, "start", "start", "");
  const exits = builder.sequence(steps(document.steps), [{ from: START, label: "" }]);
  builder.node(END, "end", "end", "");
  builder.link(exits, END);

  const g = new dagre.graphlib.Graph({ multigraph: true });
  g.setGraph({ rankdir: "TB", nodesep: 30, ranksep: 44, edgesep: 12 });
  g.setDefaultEdgeLabel(() => ({}));
  for (const node of builder.nodes) g.setNode(node.id, { width: NODE_WIDTH, height: NODE_HEIGHT });
  for (const edge of builder.edges) g.setEdge(edge.source, edge.target, {}, edge.id);
  dagre.layout(g);
  const nodes = builder.nodes.map((node) => {
    const at = g.node(node.id) as { x: number; y: number };
    // dagre gives centres; the diagram places nodes by their top-left corner.
    return { ...node, x: at.x - NODE_WIDTH / 2, y: at.y - NODE_HEIGHT / 2 };
  });
  return { nodes, edges: builder.edges };
}
