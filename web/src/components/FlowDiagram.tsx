// The read-only diagram of a flow, optionally coloured by each step's status in a run.
import { Handle, Position, ReactFlow, type Edge, type Node, type NodeProps } from "@xyflow/react";
import { useMemo } from "react";
import { flowGraph } from "../graph/layout";

export type StepStatuses = Record<string, string | undefined>;

interface StepData extends Record<string, unknown> {
  label: string;
  detail: string;
  kind: string;
  status: string | undefined;
}

/** What a person reads for a step's status; a human step that is under way waits for someone. */
export function statusText(kind: string, status: string | undefined): string {
  if (status === undefined) return "";
  if (kind === "human" && (status === "running" || status === "waiting")) return "waiting for a person";
  return status;
}

function StepNode({ data }: NodeProps<Node<StepData>>) {
  const said = statusText(data.kind, data.status);
  return (
    <div
      role="group"
      className={`step step-${data.kind} ${data.status ? `status-${data.status}` : ""}`}
      data-status={data.status ?? ""}
      aria-label={`${data.label}: ${data.detail}${said ? `, ${said}` : ""}`}
    >
      <Handle type="target" position={Position.Top} isConnectable={false} />
      <strong>{data.label}</strong>
      <span className="detail">{data.detail}</span>
      {said ? <span className="status">{said}</span> : null}
      <Handle type="source" position={Position.Bottom} isConnectable={false} />
    </div>
  );
}

const nodeTypes = { step: StepNode };

/** The diagram of `document`; `statuses` maps step ids to their status in a run. */
export function FlowDiagram({
  document,
  statuses = {},
  label,
}: {
  document: Record<string, unknown>;
  statuses?: StepStatuses;
  label: string;
}) {
  const graph = useMemo(() => flowGraph(document), [document]);
  const nodes: Node<StepData>[] = graph.nodes.map((n) => ({
    id: n.id,
    type: "step",
    position: { x: n.x, y: n.y },
    data: { label: n.label, detail: n.detail, kind: n.kind, status: statuses[n.id] },
    draggable: false,
    connectable: false,
  }));
  const edges: Edge[] = graph.edges.map((e) => ({
    id: e.id,
    source: e.source,
    target: e.target,
    ...(e.label ? { label: e.label } : {}),
  }));
  return (
    <figure className="diagram" aria-label={label}>
      <ReactFlow
        nodes={nodes}
        edges={edges}
        nodeTypes={nodeTypes}
        nodesDraggable={false}
        nodesConnectable={false}
        elementsSelectable={false}
        edgesFocusable={false}
        fitView
        minZoom={0.2}
        proOptions={{ hideAttribution: false }}
      />
      <figcaption className="visually-hidden">{label}</figcaption>
    </figure>
  );
}
