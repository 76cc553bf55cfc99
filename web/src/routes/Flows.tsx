// The catalog: every flow the caller may read, and one flow's versions and diagram.
import { api, withQuery, type FlowPublic, type FlowSummary, type VersionPublic } from "../client/api";
import { FlowDiagram } from "../components/FlowDiagram";
import { ProblemNote } from "../components/ProblemNote";
import { href } from "../hooks/useHashRoute";
import { useApi } from "../hooks/useApi";
import { when } from "./format";

export function FlowList() {
  const flows = useApi(() => api<FlowSummary[]>("GET", "/api/v1/flows"), []);
  return (
    <>
      <h1>Flows</h1>
      <ProblemNote error={flows.error} />
      <table>
        <caption className="visually-hidden">Flows in the catalog</caption>
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">Folder</th>
            <th scope="col">Description</th>
            <th scope="col">Saved</th>
          </tr>
        </thead>
        <tbody>
          {(flows.data ?? []).map((flow) => (
            <tr key={`${flow.folder}:${flow.name}`}>
              <td>
                <a href={href("flows", flowId(flow.folder, flow.name))}>{flow.name}</a>
              </td>
              <td>{flow.folder}</td>
              <td>{flow.description ?? ""}</td>
              <td>{when(flow.version.committed_at)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}

/** A flow's id in a link: `<folder>:<name>` (folder names have no colon); a bare name also works. */
export function flowId(folder: string, name: string): string {
  return `${folder}:${name}`;
}

export function FlowDetail({ id, version }: { id: string; version: string | null }) {
  const [folder, name] = id.includes(":") ? [id.slice(0, id.indexOf(":")), id.slice(id.indexOf(":") + 1)] : ["", id];
  const path = `/api/v1/flows/${encodeURIComponent(name)}`;
  const flow = useApi(
    () => api<FlowPublic>("GET", withQuery(path, { version: version ?? "", folder })),
    [id, version],
  );
  const history = useApi(() => api<VersionPublic[]>("GET", withQuery(`${path}/history`, { folder })), [id]);
  return (
    <>
      <h1>Flow {name}</h1>
      <ProblemNote error={flow.error ?? history.error} />
      {flow.data ? (
        <>
          <p>
            Folder {flow.data.folder}; version <code>{flow.data.version.commit.slice(0, 10)}</code> by{" "}
            {flow.data.version.author}.
          </p>
          <FlowDiagram document={flow.data.document} label={`Diagram of flow ${name}`} />
        </>
      ) : null}
      <h2>Versions</h2>
      <table>
        <caption className="visually-hidden">Versions of flow {name}</caption>
        <thead>
          <tr>
            <th scope="col">Commit</th>
            <th scope="col">Message</th>
            <th scope="col">Author</th>
            <th scope="col">Saved</th>
          </tr>
        </thead>
        <tbody>
          {(history.data ?? []).map((v) => (
            <tr key={v.commit}>
              <td>
                <a href={href("flows", id, v.commit)}>
                  <code>{v.commit.slice(0, 10)}</code>
                </a>
              </td>
              <td>{v.message}</td>
              <td>{v.author}</td>
              <td>{when(v.committed_at)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}
