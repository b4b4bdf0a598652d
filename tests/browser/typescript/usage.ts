// How a frontend uses the client; compiled with --strict against the shipped declarations.
import { createWsClient } from "../../../bridge/server/static/wsclient";

const client = createWsClient({
  token: "demo",
  onResync: (topic: string) => console.log("refetch", topic),
});
const off = client.subscribe("thread:45", (event) => {
  const chunk: string | undefined = event.type === "stream_chunk" ? String(event.data.content) : undefined;
  console.log(chunk, event.seq, event.event_id, event.topic);
}, { onResync: () => undefined });
off();
const offType = client.on("agent_status_changed", (event) => console.log(event.data));
offType();
void client.ping().then((ms: number) => console.log(ms));
console.log(client.state, client.connected);
client.close();
