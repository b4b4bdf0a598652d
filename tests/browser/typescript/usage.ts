// How a frontend uses the client; compiled with --strict against the shipped declarations.
import { createWsClient, positionsFromResponse, POSITIONS_HEADER, REFUSALS } from "../../../bridge/server/static/wsclient";
import type { Refusal } from "../../../bridge/server/static/wsclient";

const client = createWsClient({
  token: "demo",
  onResync: (topic: string) => console.log("refetch", topic),
  onRefused: (refusal: Refusal) => console.log(refusal.kind === "unauthenticated" ? "sign in" : refusal.reason),
});
client.addEventListener("refused", (event) => console.log(event.detail.code, REFUSALS[4401]));
console.log(client.refusal?.kind);
const off = client.subscribe("thread:45", (event) => {
  const chunk: string | undefined = event.type === "stream_chunk" ? String(event.data.content) : undefined;
  console.log(chunk, event.seq, event.event_id, event.topic);
}, { onResync: () => undefined });
off();
// A view loaded over REST follows its topic from where the snapshot stood.
async function openBoard(id: string): Promise<() => void> {
  const response = await fetch(`/api/boards/${id}`);
  const body = (await response.json()) as { tasks: { task_id: string; version: number }[] };
  const versions = new Map(body.tasks.map((t) => [t.task_id, t.version]));
  const since = positionsFromResponse(response)[`board:${id}`] ?? null;
  return client.subscribe<{ task_id: string; version: number }>(`board:${id}`, (event) => {
    versions.set(event.data.task_id, event.data.version);
  }, {
    since,
    contains: (event) => (versions.get(event.data.task_id) ?? 0) >= event.data.version,
  });
}
void openBoard("6f1c").then((close) => close());
console.log(POSITIONS_HEADER.length, client.stats.rewinds, client.stats.snapshotSkipped);
const offType = client.on("agent_status_changed", (event) => console.log(event.data));
offType();
void client.ping().then((ms: number) => console.log(ms));
console.log(client.state, client.connected);
client.close();
